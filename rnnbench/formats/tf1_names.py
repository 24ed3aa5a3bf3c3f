"""TF1 variable names of ``BasicRNNCell`` weights, shared by the TF1 arrays and checkpoint
formats (NumPy only).

Written names (what TF1 itself creates for each structure, with default scopes)::

    one layer (dynamic_rnn):           rnn/basic_rnn_cell/{kernel,bias}
    stacked (MultiRNNCell):            rnn/multi_rnn_cell/cell_{k}/basic_rnn_cell/...
    one bidirectional layer:           bidirectional_rnn/{fw,bw}/basic_rnn_cell/...
    stacked bidirectional:             stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/
                                       {fw,bw}/basic_rnn_cell/...

The last is one ``bidirectional_dynamic_rnn`` per layer, outputs concatenated in between (the
names tf.contrib's ``stack_bidirectional_dynamic_rnn`` gave), which is what PyTorch and Keras
compute. A ``MultiRNNCell`` *inside* ``bidirectional_dynamic_rnn``
(``.../fw/multi_rnn_cell/cell_{k}/...``) computes something else (each direction's stack runs
on its own) and is refused.

Reading accepts any outer scope (``encoder/rnn/...``): the layer is the last ``cell_{k}`` of the
path, the direction its ``fw``/``bw`` part; other variables (optimizer slots, other layers) are
ignored; ``prefix`` keeps only names starting with it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

CELL = "basic_rnn_cell"
_VAR = re.compile(r"^(?P<scope>(?:.*/)?)basic_rnn_cell/(?P<var>kernel|bias)(?::0)?$")
_OTHER_CELLS = re.compile(r"(basic_lstm_cell|lstm_cell|gru_cell|lstm_fused_cell)/kernel")
_LAYER = re.compile(r"^cell_(\d+)$")


def names_for(spec: RNNSpec) -> list[list[tuple[str, str]]]:
    """``[layer][direction] -> (kernel name, bias name)`` as TF1 creates them (see above)."""
    out = []
    for k in range(spec.num_layers):
        if not spec.bidirectional:
            scopes = ["rnn/" if spec.num_layers == 1 else f"rnn/multi_rnn_cell/cell_{k}/"]
        elif spec.num_layers == 1:
            scopes = ["bidirectional_rnn/fw/", "bidirectional_rnn/bw/"]
        else:
            base = f"stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/"
            scopes = [base + "fw/", base + "bw/"]
        out.append([(f"{s}{CELL}/kernel", f"{s}{CELL}/bias") for s in scopes])
    return out


def to_named_arrays(weights: RNNWeights) -> dict[str, np.ndarray]:
    """Name -> array for every kernel and bias (bias = b_ih + b_hh)."""
    out = {}
    for k, row in enumerate(names_for(weights.spec)):
        for d, (kname, bname) in enumerate(row):
            dw = weights[k, d]
            out[kname] = np.concatenate([dw.w_ih, dw.w_hh], axis=0)
            out[bname] = dw.bias
    return out


def cell_variables(names: list[str]) -> list[str]:
    return [n for n in names if _VAR.match(n)]


def from_named_arrays(
    arrays: dict[str, Any], *, nonlinearity: str, prefix: str | None, where: str
) -> RNNWeights:
    """Parse name -> array (see the module docstring) into canonical weights."""
    names = [n for n in arrays if prefix is None or n.startswith(prefix)]
    found: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    bidirectional = set()
    for name in names:
        m = _VAR.match(name)
        if not m:
            continue
        parts = [p for p in m["scope"].split("/") if p]
        dir_at = [i for i, p in enumerate(parts) if p in ("fw", "bw")]
        if dir_at and "multi_rnn_cell" in parts[dir_at[-1] :]:
            raise LayoutError(
                f"{where}: {name} is a MultiRNNCell inside bidirectional_dynamic_rnn, whose "
                "directions each run their own stack; PyTorch, Keras and rnnbench concatenate "
                "both directions between layers",
                "rebuild the TF1 model with one bidirectional_dynamic_rnn per layer (see "
                "docs/porting.md)",
            )
        layer_at = [i for i, p in enumerate(parts) if _LAYER.match(p)]
        layer = int(_LAYER.match(parts[layer_at[-1]]).group(1)) if layer_at else 0  # type: ignore[union-attr]
        direction = 1 if dir_at and parts[dir_at[-1]] == "bw" else 0
        bidirectional.add(bool(dir_at))
        cut = min(
            [i for i, p in enumerate(parts) if p in ("multi_rnn_cell", "fw", "bw")]
            + layer_at
            + [len(parts)]
        )
        root = "/".join(parts[:cut])
        found.setdefault(root, {}).setdefault((layer, direction), {})[m["var"]] = arrays[name]
    if not found:
        other = [n for n in names if _OTHER_CELLS.search(n)]
        what = f"only other cells ({other[0]}, ...)" if other else "no BasicRNNCell variables"
        shown = ", ".join(sorted(names)[:6]) or "none"
        raise LayoutError(
            f"{where} holds {what} (variables: {shown})",
            "rnnbench reads BasicRNNCell kernel/bias variables (.../basic_rnn_cell/kernel)",
        )
    if len(found) > 1:
        raise LayoutError(
            f"{where} holds BasicRNNCell variables of {len(found)} RNNs (scopes: "
            f"{', '.join(sorted(r or '(top)' for r in found))})",
            "pick one with --prefix SCOPE/",
        )
    if len(bidirectional) > 1:
        raise LayoutError(f"{where} mixes bidirectional and one-directional cells")
    cells = next(iter(found.values()))
    bi = bidirectional.pop()
    num_layers = max(layer for layer, _ in cells) + 1
    structure: list[Any] = []
    for k in range(num_layers):
        pairs = []
        for d in range(2 if bi else 1):
            entry = cells.get((k, d), {})
            if set(entry) != {"kernel", "bias"}:
                missing = sorted({"kernel", "bias"} - set(entry))
                raise LayoutError(
                    f"{where}: layer {k} {'backward' if d else 'forward'} cell lacks "
                    f"{', '.join(missing) or 'its variables'}",
                    "every layer 0..N-1 needs a kernel and a bias per direction",
                )
            pairs.append((entry["kernel"], entry["bias"]))
        structure.append(tuple(pairs) if bi else pairs[0])
    try:
        return RNNWeights.from_tf1(structure, nonlinearity=nonlinearity, bidirectional=bi)
    except LayoutError as exc:
        raise LayoutError(f"{where}: {str(exc).splitlines()[0]}", exc.hint) from exc
