"""TF1 variable names of ``BasicRNNCell``, ``LSTMCell`` / ``BasicLSTMCell`` and ``GRUCell``
weights, shared by the TF1 arrays and checkpoint formats (NumPy only).

Each cell's variables, under the cell's scope::

    BasicRNNCell:    basic_rnn_cell/{kernel (I+H, H), bias (H,)}
    LSTMCell:        lstm_cell/{kernel (I+H, 4H), bias (4H,)}       gates i, j, f, o
    BasicLSTMCell:   basic_lstm_cell/{kernel, bias}                 (the same, read only)
    GRUCell:         gru_cell/gates/{kernel (I+H, 2H), bias (2H,)}  gates r, u
                     gru_cell/candidate/{kernel (I+H, H), bias (H,)}

Written scopes (what TF1 itself creates for each structure, with default scopes)::

    one layer (dynamic_rnn):           rnn/<cell>/...
    stacked (MultiRNNCell):            rnn/multi_rnn_cell/cell_{k}/<cell>/...
    one bidirectional layer:           bidirectional_rnn/{fw,bw}/<cell>/...
    stacked bidirectional:             stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/
                                       {fw,bw}/<cell>/...

The last is one ``bidirectional_dynamic_rnn`` per layer, outputs concatenated in between (the
names tf.contrib's ``stack_bidirectional_dynamic_rnn`` gave), which is what PyTorch and Keras
compute. A ``MultiRNNCell`` *inside* ``bidirectional_dynamic_rnn``
(``.../fw/multi_rnn_cell/cell_{k}/...``) computes something else (each direction's stack runs
on its own) and is refused.

The file says the cell (the variable names). What it does not say: an LSTM's ``forget_bias``,
which ``LSTMCell`` adds to the forget gate at run time (1.0 by default) and never stores, so it
is an argument here; and a GRUCell is always reset-before (its candidate multiplies ``r * h`` by
the kernel), so a reset-after GRU cannot be written. An ``LSTMCell`` with peepholes
(``w_i_diag``, ``w_f_diag``, ``w_o_diag``) or a projection (``projection/kernel``) computes
something the canonical LSTM cannot hold, and is refused.

Reading accepts any outer scope (``encoder/rnn/...``): the layer is the last ``cell_{k}`` of the
path, the direction its ``fw``/``bw`` part; other variables (optimizer slots, other layers) are
ignored; ``prefix`` keeps only names starting with it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rnnbench import layouts
from rnnbench.errors import LayoutError
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

# The scope each cell class creates its variables in, as written.
CELL_SCOPE = {"rnn": "basic_rnn_cell", "lstm": "lstm_cell", "gru": "gru_cell"}
# Scope -> cell, as read (BasicLSTMCell's weights mean what LSTMCell's do).
_SCOPE_CELL = {
    "basic_rnn_cell": "rnn",
    "lstm_cell": "lstm",
    "basic_lstm_cell": "lstm",
    "gru_cell": "gru",
}
# The variables of one cell (the names below its scope).
CELL_VARS = {
    "rnn": ("kernel", "bias"),
    "lstm": ("kernel", "bias"),
    "gru": ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"),
}
_PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")
_PROJECTION = ("projection/kernel", "projection/bias")
_VAR = re.compile(
    r"^(?P<scope>(?:.*/)?)(?P<cell>basic_rnn_cell|basic_lstm_cell|lstm_cell|gru_cell)/"
    r"(?P<var>kernel|bias|gates/kernel|gates/bias|candidate/kernel|candidate/bias|"
    r"w_i_diag|w_f_diag|w_o_diag|projection/kernel|projection/bias)(?::0)?$"
)
_OTHER_CELLS = re.compile(r"(lstm_fused_cell|lstm_block_cell|gru_block_cell|cudnn_\w+)/")
_LAYER = re.compile(r"^cell_(\d+)$")
TF1_FORMATS = ("tf1-npz", "tf1-ckpt")


def _allowed(cell: str) -> tuple[str, ...]:
    if cell == "lstm":
        return CELL_VARS["lstm"] + _PEEPHOLES + _PROJECTION  # the last two only to refuse them
    return CELL_VARS[cell]


def names_for(spec: RNNSpec) -> list[list[dict[str, str]]]:
    """``[layer][direction] -> {variable: full name}`` as TF1 creates them (see above); the
    variables are ``CELL_VARS[spec.cell]``."""
    cell = CELL_SCOPE[spec.cell]
    out = []
    for k in range(spec.num_layers):
        if not spec.bidirectional:
            scopes = ["rnn/" if spec.num_layers == 1 else f"rnn/multi_rnn_cell/cell_{k}/"]
        elif spec.num_layers == 1:
            scopes = ["bidirectional_rnn/fw/", "bidirectional_rnn/bw/"]
        else:
            base = f"stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/"
            scopes = [base + "fw/", base + "bw/"]
        out.append([{v: f"{s}{cell}/{v}" for v in CELL_VARS[spec.cell]} for s in scopes])
    return out


def lstm_note(spec: RNNSpec, forget_bias: float) -> list[str]:
    """The note a TF1 LSTM file needs: its bias is only right for one ``forget_bias``."""
    if spec.cell != "lstm":
        return []
    fb = repr(float(forget_bias))
    return [
        f"build the TF1 cell with forget_bias={fb} (LSTMCell/BasicLSTMCell add it to the forget "
        "gate at run time; the stored bias has it taken out); read the file back with "
        f"--forget-bias {fb}"
    ]


def to_named_arrays(weights: RNNWeights, forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """Name -> array for every TF1 variable (one bias per direction: b_ih + b_hh, less
    ``forget_bias`` on an LSTM's forget gate). Raises LayoutError for a reset-after GRU."""
    spec = weights.spec
    native = layouts.to_tf1(weights, forget_bias=forget_bias)
    per_layer = [native] if spec.num_layers == 1 else list(native)
    out = {}
    for k, row in enumerate(names_for(spec)):
        entries = per_layer[k] if spec.bidirectional else (per_layer[k],)
        for d, names in enumerate(row):
            entry = entries[d]
            if spec.cell == "gru":
                arrays = {v: entry[v] for v in CELL_VARS["gru"]}
            else:
                arrays = dict(zip(("kernel", "bias"), entry))
            for var, name in names.items():
                out[name] = np.asarray(arrays[var])
    return out


def cell_variables(names: list[str]) -> list[str]:
    """The names of cell variables rnnbench reads (or refuses with a reason)."""
    return [n for n in names if _VAR.match(n)]


def from_named_arrays(
    arrays: dict[str, Any],
    *,
    nonlinearity: str,
    prefix: str | None,
    where: str,
    forget_bias: float = 1.0,
) -> RNNWeights:
    """Parse name -> array (see the module docstring) into canonical weights. An LSTM's
    ``forget_bias`` (not in the file) is added back to its forget gate."""
    names = [n for n in arrays if prefix is None or n.startswith(prefix)]
    found: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    cells: dict[str, set[str]] = {}
    bidirectional = set()
    for name in sorted(names):
        m = _VAR.match(name)
        if not m:
            continue
        cell, var = _SCOPE_CELL[m["cell"]], m["var"]
        if var not in _allowed(cell):
            continue  # e.g. .../basic_rnn_cell/gates/kernel: not a variable of that cell
        if var in _PEEPHOLES:
            raise LayoutError(
                f"{where}: {name} is a peephole weight (LSTMCell(use_peepholes=True)); "
                "PyTorch's LSTM and rnnbench's have no peephole term, so no exact conversion "
                "exists",
                "convert an LSTMCell built with use_peepholes=False",
            )
        if var in _PROJECTION:
            raise LayoutError(
                f"{where}: {name} is an output projection (LSTMCell(num_proj=...)); rnnbench's "
                "LSTM has no projection (PyTorch's proj_size)",
                "convert an LSTMCell built without num_proj",
            )
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
        found.setdefault(root, {}).setdefault((layer, direction), {})[var] = arrays[name]
        cells.setdefault(root, set()).add(cell)
    if not found:
        other = [n for n in names if _OTHER_CELLS.search(n)]
        what = f"only other cells ({other[0]}, ...)" if other else "no RNN cell variables"
        shown = ", ".join(sorted(names)[:6]) or "none"
        raise LayoutError(
            f"{where} holds {what} (variables: {shown})",
            "rnnbench reads BasicRNNCell, LSTMCell/BasicLSTMCell and GRUCell variables "
            "(.../basic_rnn_cell/kernel, .../lstm_cell/kernel, .../gru_cell/gates/kernel)",
        )
    if len(found) > 1:
        raise LayoutError(
            f"{where} holds cell variables of {len(found)} RNNs (scopes: "
            f"{', '.join(sorted(r or '(top)' for r in found))})",
            "pick one with --prefix SCOPE/",
        )
    root_cells = next(iter(cells.values()))
    if len(root_cells) > 1:
        raise LayoutError(
            f"{where} mixes {' and '.join(sorted(root_cells))} cells in one RNN",
            "rnnbench's spec has one cell for all stacked layers",
        )
    if len(bidirectional) > 1:
        raise LayoutError(f"{where} mixes bidirectional and one-directional cells")
    cell = root_cells.pop()
    by_layer = next(iter(found.values()))
    bi = bidirectional.pop()
    num_layers = max(layer for layer, _ in by_layer) + 1
    wanted = CELL_VARS[cell]
    structure: list[Any] = []
    for k in range(num_layers):
        entries: list[Any] = []
        for d in range(2 if bi else 1):
            entry = by_layer.get((k, d), {})
            missing = [v for v in wanted if v not in entry]
            if missing:
                raise LayoutError(
                    f"{where}: layer {k} {'backward' if d else 'forward'} cell lacks "
                    f"{', '.join(missing)}",
                    f"every layer 0..N-1 needs {', '.join(wanted)} per direction",
                )
            entries.append(
                {v: entry[v] for v in wanted} if cell == "gru" else (entry["kernel"], entry["bias"])
            )
        structure.append(tuple(entries) if bi else entries[0])
    kwargs: dict[str, Any] = {"bidirectional": bi, "cell": cell}
    if cell == "rnn":
        kwargs["nonlinearity"] = nonlinearity
    if cell == "lstm":
        kwargs["forget_bias"] = forget_bias
    try:
        return RNNWeights.from_tf1(structure, **kwargs)
    except LayoutError as exc:
        raise LayoutError(f"{where}: {str(exc).splitlines()[0]}", exc.hint) from exc
