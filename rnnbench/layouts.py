"""Converters between the canonical weights and each library's layout, in pure NumPy.

None of these imports its library: library objects (a ``torch.nn.LSTM``, a Keras layer, tensors)
are read by duck typing. Every ``from_*`` returns ``(spec, layers)`` where ``layers[k][d]`` is
the canonical ``(w_ih, w_hh, b_ih, b_hh)`` of layer k, direction d (0 forward, 1 reverse);
``RNNWeights`` checks shapes and values. Every ``to_*`` takes an ``RNNWeights``.

Every gate reordering goes through :mod:`rnnbench.gates` (the one table of gate orders); below,
G is the number of gate blocks (1 RNN, 4 LSTM, 3 GRU), H the hidden size, I the layer's input.

- torch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: ``weight_ih_l{k}`` (G*H, I), ``weight_hh_l{k}``
  (G*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*H,); ``_reverse`` suffix for the backward
  direction. Computes W @ x. Two biases: every round trip is exact. ``nn.GRU`` applies the reset
  gate after the recurrent product only (a reset-before GRU has no torch layout).
- Keras ``SimpleRNN`` / ``LSTM`` / ``GRU``: ``[kernel (I, G*H), recurrent_kernel (H, G*H),
  bias]``; bias (G*H,) is ``b_ih + b_hh``, except ``GRU(reset_after=True)``: (2, 3H) =
  ``[b_ih; b_hh]``. ``Bidirectional.get_weights()`` is the forward layer's list, then the
  backward layer's.
- TF1 ``BasicRNNCell``: ``kernel`` (I+H, H), rows :I multiply x, rows I: multiply h; ``bias``
  (H,). ``LSTMCell`` / ``BasicLSTMCell``: kernel (I+H, 4H), bias (4H,), plus a ``forget_bias``
  the cell adds to the forget gate at run time (not stored: it is folded into the canonical
  bias here). ``GRUCell`` (reset before the recurrent product): ``gates/kernel`` (I+H, 2H),
  ``gates/bias`` (2H,), ``candidate/kernel`` (I+H, H), ``candidate/bias`` (H,).
- ONNX ``RNN`` / ``LSTM`` / ``GRU``: ``W`` (dirs, G*H, I), ``R`` (dirs, G*H, H), ``B``
  (dirs, 2*G*H) = [Wb, Rb]. A GRU's formula is the node attribute ``linear_before_reset``
  (1 = reset after, 0 = reset before, ONNX's default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from rnnbench import gates
from rnnbench.arrays import to_numpy
from rnnbench.errors import LayoutError, ShapeError
from rnnbench.spec import CELLS, Nonlinearity, RNNSpec

if TYPE_CHECKING:
    from rnnbench.weights import RNNWeights

Arrays4 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
LayerArrays = list[list[Arrays4]]

_SUFFIX = ("", "_reverse")
_ONNX_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}
_CELL_BY_GATES = {g: cell for cell, g in CELLS.items()}  # 1 -> rnn, 4 -> lstm, 3 -> gru
_CLASS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_RESET_BEFORE_WORKS = (
    "a reset-before GRU is Keras GRU(reset_after=False), TF1 GRUCell or ONNX GRU with "
    "linear_before_reset=0"
)
TF1_GRU_KEYS = ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")


def _t(a: np.ndarray) -> np.ndarray:
    """A contiguous transposed copy (exact)."""
    return np.ascontiguousarray(np.asarray(a).T)


def _nonlinearity(value: Any, where: str) -> str:
    name = str(getattr(value, "__name__", value)).lower()
    if name not in _ONNX_ACTIVATIONS:
        raise LayoutError(
            f"{where} uses activation {name!r}, which a vanilla RNN spec cannot hold",
            "rnnbench covers tanh and relu RNNs",
        )
    return name


def _gated_nonlinearity(nonlinearity: Any, cell: str, where: str) -> str:
    """A gated cell's ``nonlinearity`` argument: None or tanh (its candidate's activation)."""
    if nonlinearity is None:
        return "tanh"
    name = str(getattr(nonlinearity, "__name__", nonlinearity)).lower()
    if name != "tanh":
        raise LayoutError(
            f"{where}: nonlinearity={nonlinearity!r} was given for {_CLASS[cell]} weights",
            f"an {_CLASS[cell]} has sigmoid gates and a tanh candidate: drop nonlinearity "
            "(it is a vanilla-RNN setting)",
        )
    return name


def _cell_nonlinearity(value: Any, cell: str, where: str) -> Nonlinearity:
    """A vanilla RNN's activation (tanh or relu), or a gated cell's (None or tanh)."""
    if cell == "rnn":
        return cast(Nonlinearity, _nonlinearity(value, where))
    return cast(Nonlinearity, _gated_nonlinearity(value, cell, where))


def _zeros_like_bias(w: np.ndarray) -> np.ndarray:
    return np.zeros(w.shape[-1], dtype=w.dtype)


def _pairs(w: RNNWeights) -> list[list[Arrays4]]:
    return [[dw.arrays() for dw in row] for row in w.layers]


def _per_layer(w: RNNWeights, items: list[Any]) -> Any:
    """One layer's entry alone, a list for stacked layers (the documented to_* convention)."""
    return items[0] if w.spec.num_layers == 1 else items


def _lib(a: np.ndarray, library: str, cell: str, axis: int = -1) -> np.ndarray:
    return gates.to_library(a, library, cell, axis=axis)


def _canon(a: np.ndarray, library: str, cell: str, axis: int = -1) -> np.ndarray:
    return gates.from_library(a, library, cell, axis=axis)


def _check_cell(found: str, given: str | None, where: str) -> None:
    """Refuse a ``cell=`` that the arrays contradict (e.g. LSTM weights read as a GRU)."""
    if given is not None and given != found:
        raise LayoutError(
            f"{where} holds {_CLASS[found]} weights, but cell={given!r} ({_CLASS.get(given, '?')})"
            " was given",
            f"drop cell=, or pass the {_CLASS.get(given, given)} weights it names",
        )


def _cell_of_gates(width: int, hidden: int, where: str, shapes: str) -> str:
    """The cell whose G * hidden is ``width``."""
    g, rest = divmod(width, hidden) if hidden else (0, 1)
    if rest or g not in _CELL_BY_GATES:
        raise ShapeError(
            f"{where}: {shapes} is {width} / {hidden} gate blocks wide, which is no cell "
            "(1 RNN, 4 LSTM, 3 GRU)",
            "pass the layer's arrays unchanged",
        )
    return _CELL_BY_GATES[g]


def _refuse_reset_before(spec: RNNSpec, library: str, why: str) -> None:
    if spec.cell == "gru" and not spec.reset_after:
        raise LayoutError(
            f"{library} has no layout for a reset-before GRU (reset_after=False): {why}; the "
            "two formulas differ for any full recurrent matrix, so the weights are not "
            "convertible",
            _RESET_BEFORE_WORKS,
        )


# --- PyTorch -----------------------------------------------------------------------------
def torch_key(kind: str, layer: int, direction: int) -> str:
    """``weight_ih`` / ``weight_hh`` / ``bias_ih`` / ``bias_hh`` name of nn.RNN's state dict."""
    return f"{kind}_l{layer}{_SUFFIX[direction]}"


def to_torch(w: RNNWeights) -> dict[str, np.ndarray]:
    """The state dict of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (arrays; exact for every cell).

    A reset-before GRU (``reset_after=False``) raises LayoutError: ``nn.GRU`` applies the reset
    gate after the recurrent product (``r * (W_hn h + b_hn)``), and no choice of its weights
    reproduces ``W_hn (r * h)`` in general.
    """
    spec = w.spec
    _refuse_reset_before(
        spec, "PyTorch", "nn.GRU applies the reset gate after the recurrent product"
    )
    out: dict[str, np.ndarray] = {}
    for k, row in enumerate(_pairs(w)):
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(row):
            out[torch_key("weight_ih", k, d)] = _t(_lib(w_ih, "torch", spec.cell))
            out[torch_key("weight_hh", k, d)] = _t(_lib(w_hh, "torch", spec.cell))
            if spec.bias:
                out[torch_key("bias_ih", k, d)] = _lib(b_ih, "torch", spec.cell)
                out[torch_key("bias_hh", k, d)] = _lib(b_hh, "torch", spec.cell)
    return out


# nn.RNNBase.mode -> (cell, nonlinearity); a gated cell's nonlinearity is fixed.
_TORCH_MODES: dict[str, tuple[str, str | None]] = {
    "RNN_TANH": ("rnn", "tanh"),
    "RNN_RELU": ("rnn", "relu"),
    "LSTM": ("lstm", None),
    "GRU": ("gru", None),
}


def from_torch(
    module_or_state_dict: Any,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    spec: RNNSpec | None = None,
    cell: str | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (settings read off the module) or a state
    dict (tensors or arrays).

    A state dict says its cell by the shape of ``weight_hh_l0``, (G*H, H): G = 1 RNN, 4 LSTM,
    3 GRU (always reset-after: ``nn.GRU`` has no other formula). ``cell`` or ``spec``, when
    given, must agree with it (LSTM weights read as a GRU spec are refused). A bare state dict
    cannot say a vanilla RNN's nonlinearity: pass ``nonlinearity`` ("tanh" by default).
    ``prefix`` selects one RNN inside a larger model's state dict ("encoder.rnn."); when omitted
    it is found from the unique key ending in ``weight_ih_l0``. Projections (``proj_size`` > 0,
    ``weight_hr_l*``) are refused: the canonical cell has none.
    """
    obj = module_or_state_dict
    module_cell: str | None = None
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        mode = getattr(obj, "mode", None)
        if mode not in _TORCH_MODES:
            raise LayoutError(
                f"expected a torch.nn.RNN, nn.LSTM or nn.GRU, got {type(obj).__name__} "
                f"(mode {mode!r})",
                "pass the recurrent module or its state_dict()",
            )
        if int(getattr(obj, "proj_size", 0) or 0) > 0:
            raise LayoutError(
                f"the nn.LSTM has proj_size={obj.proj_size}: its hidden state is projected by "
                "weight_hr, which the canonical LSTM (and every other library's) does not have",
                "use an nn.LSTM with proj_size=0",
            )
        module_cell, module_nl = _TORCH_MODES[mode]
        _check_cell(module_cell, cell, f"the {type(obj).__name__} module")
        if module_nl is not None:
            if nonlinearity is not None and nonlinearity != module_nl:
                raise LayoutError(
                    f"nonlinearity={nonlinearity!r} contradicts the module's {module_nl!r}",
                    "leave nonlinearity out when passing a module",
                )
            nonlinearity = module_nl
        state = obj.state_dict()
    elif isinstance(obj, Mapping) or hasattr(obj, "keys"):
        state = obj
    else:
        raise LayoutError(
            f"from_torch expects an nn.RNN/LSTM/GRU or a state dict, got {type(obj).__name__}",
            "pass module or module.state_dict()",
        )
    state = {str(k): v for k, v in state.items()}
    if prefix is None:
        found = [k[: -len("weight_ih_l0")] for k in state if k.endswith("weight_ih_l0")]
        if len(found) != 1:
            what = "no key ends in" if not found else f"{len(found)} keys end in"
            raise LayoutError(
                f"{what} 'weight_ih_l0' in the state dict (keys: {sorted(state)[:8]}...)",
                "pass prefix='name.of.the.rnn.' to pick the RNN's keys",
            )
        prefix = found[0]
    first = prefix + "weight_ih_l0"
    if first not in state:
        raise LayoutError(f"state dict has no key {first!r}", "check the prefix")
    projected = sorted(k for k in state if k.startswith(prefix + "weight_hr_l"))
    if projected:
        raise LayoutError(
            f"the state dict holds {projected[0]}: an nn.LSTM with proj_size > 0, whose hidden "
            "state is projected, which the canonical LSTM (and every other library's) does not "
            "have",
            "use an nn.LSTM with proj_size=0",
        )
    num_layers = 0
    while prefix + torch_key("weight_ih", num_layers, 0) in state:
        num_layers += 1
    bidirectional = prefix + torch_key("weight_ih", 0, 1) in state
    has_bias = prefix + torch_key("bias_ih", 0, 0) in state
    w0 = to_numpy(state[first])
    hh_key = prefix + "weight_hh_l0"
    if hh_key not in state:
        raise LayoutError(f"state dict is missing key {hh_key!r}", "pass the complete state dict")
    hh0 = to_numpy(state[hh_key])
    if w0.ndim != 2 or hh0.ndim != 2:
        raise ShapeError(
            f"{first} has shape {w0.shape} and {hh_key} {hh0.shape}, expected "
            "(gates * hidden, input) and (gates * hidden, hidden)"
        )
    hidden = int(hh0.shape[1])
    found_cell = _cell_of_gates(
        int(hh0.shape[0]), hidden, "the state dict", f"{hh_key} {hh0.shape}"
    )
    if module_cell is not None and found_cell != module_cell:
        raise LayoutError(f"the module's {hh_key} {hh0.shape} does not fit its mode")
    _check_cell(found_cell, cell, "the state dict")
    if spec is not None and spec.cell != found_cell:
        raise LayoutError(
            f"the state dict holds {_CLASS[found_cell]} weights ({hh_key} {hh0.shape}), not the "
            f"weights of the given {_CLASS[spec.cell]} spec ({spec.describe()})",
            f"pass the {_CLASS[spec.cell]}'s state dict, or a spec with cell={found_cell!r}",
        )
    if found_cell == "rnn":
        nl = nonlinearity or (spec.nonlinearity if spec is not None else "tanh")
    else:
        nl = _gated_nonlinearity(nonlinearity, found_cell, "from_torch")
    found_spec = RNNSpec(
        input_size=int(w0.shape[1]),
        hidden_size=hidden,
        num_layers=num_layers,
        bidirectional=bidirectional,
        nonlinearity=nl,  # type: ignore[arg-type]
        bias=has_bias,
        cell=found_cell,
        reset_after=True if found_cell == "gru" else None,
    )
    if spec is not None and spec != found_spec:
        hint = "drop spec= or pass the state dict that matches it"
        if spec.cell == "gru" and not spec.reset_after:
            hint = (
                "nn.GRU is reset-after only: its weights are a GRU with reset_after=True; "
                + _RESET_BEFORE_WORKS
            )
        raise LayoutError(f"the state dict holds {found_spec}, not the given {spec}", hint)
    spec = found_spec
    expected_keys = set()
    layers: LayerArrays = []
    for k in range(spec.num_layers):
        row = []
        for d in range(spec.num_directions):
            names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if spec.bias else [])
            got = {}
            for kind in names:
                key = prefix + torch_key(kind, k, d)
                expected_keys.add(key)
                if key not in state:
                    raise LayoutError(
                        f"state dict is missing key {key!r} (layer {k}, "
                        f"{'reverse' if d else 'forward'} direction)",
                        f"pass the complete state dict of the nn.{_CLASS[spec.cell]}",
                    )
                got[kind] = to_numpy(state[key])
            c = spec.cell
            w_ih = _canon(_t(got["weight_ih"]), "torch", c)
            w_hh = _canon(_t(got["weight_hh"]), "torch", c)
            b_ih = _canon(got["bias_ih"], "torch", c) if spec.bias else _zeros_like_bias(w_ih)
            b_hh = _canon(got["bias_hh"], "torch", c) if spec.bias else _zeros_like_bias(w_ih)
            row.append((w_ih, w_hh, b_ih, b_hh))
        layers.append(row)
    rnn_like = {
        k
        for k in state
        if k.startswith(prefix)
        and k[len(prefix) :].split("_l")[0] in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    extra = sorted(rnn_like - expected_keys)
    if extra:
        raise LayoutError(
            f"state dict has keys a {spec.describe()} RNN does not hold: {extra}",
            "gaps in layer numbering, or biases on some layers only, are not supported",
        )
    return spec, layers


# --- Keras -------------------------------------------------------------------------------
def to_keras(w: RNNWeights) -> Any:
    """Per layer the ``get_weights()`` list of the Keras layer: ``[kernel (I, G*H),
    recurrent_kernel (H, G*H), bias]`` in Keras' gate order (LSTM i,f,c,o; GRU z,r,h), the bias
    omitted without ``spec.bias``. The bias is ``b_ih + b_hh`` (G*H,) (exact only when ``b_hh``
    is zero), except for a reset-after GRU: (2, 3H) = ``[b_ih; b_hh]`` (always exact). A
    Bidirectional layer's list is the forward list then the backward list; a list per layer
    when stacked.
    """
    spec = w.spec
    c = spec.cell
    two_biases = c == "gru" and bool(spec.reset_after)
    items = []
    for row in _pairs(w):
        weights: list[np.ndarray] = []
        for w_ih, w_hh, b_ih, b_hh in row:
            weights += [_lib(w_ih, "keras", c), _lib(w_hh, "keras", c)]
            if spec.bias:
                if two_biases:
                    weights.append(np.stack([_lib(b_ih, "keras", c), _lib(b_hh, "keras", c)]))
                else:
                    weights.append(_lib(b_ih + b_hh, "keras", c))
        items.append(weights)
    return _per_layer(w, items)


_KERAS_CELLS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _keras_layers(obj: Any) -> list[Any]:
    """The RNN layers of a model, a list of layers, or one layer."""
    if hasattr(obj, "get_weights") and not hasattr(obj, "layers"):
        return [obj]
    if hasattr(obj, "layers"):  # a Model or Sequential
        found = [
            layer
            for layer in obj.layers
            if hasattr(layer, "forward_layer") or type(layer).__name__ in _KERAS_CELLS
        ]
        if not found:
            raise LayoutError(
                f"{type(obj).__name__} holds no SimpleRNN, LSTM, GRU or Bidirectional layer",
                "pass the model that holds the RNN, or the layer itself",
            )
        return found
    return list(obj)


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", fn)).lower()


def _keras_layer_arrays(
    layer: Any, index: int
) -> tuple[list[np.ndarray], bool, str, str, bool, bool | None]:
    """(weights, bidirectional, cell, nonlinearity, use_bias, reset_after) of one Keras layer."""
    inner = layer
    bidirectional = hasattr(layer, "forward_layer")
    if bidirectional:
        merge = getattr(layer, "merge_mode", "concat")
        if merge != "concat":
            raise LayoutError(
                f"Bidirectional layer {index} has merge_mode={merge!r}",
                "rnnbench's bidirectional output concatenates: use merge_mode='concat'",
            )
        inner = layer.forward_layer
    kind = type(inner).__name__
    if kind not in _KERAS_CELLS:
        raise LayoutError(
            f"layer {index} is a {kind}, not a SimpleRNN, LSTM or GRU",
            "pass the recurrent layer (or a model of recurrent layers)",
        )
    cell = _KERAS_CELLS[kind]
    weights = [to_numpy(a) for a in layer.get_weights()]
    if not weights:
        raise LayoutError(
            f"layer {index} ({type(layer).__name__}) has no weights yet",
            "build it first, e.g. by calling it on an input or model.build(input_shape)",
        )
    reset_after: bool | None = None
    if cell == "rnn":
        nl = _nonlinearity(inner.activation, f"Keras layer {index}")
    else:
        act = _activation_name(inner.activation)
        rec = _activation_name(inner.recurrent_activation)
        if act != "tanh" or rec != "sigmoid":
            raise LayoutError(
                f"Keras layer {index} ({kind}) has activation={act!r} and "
                f"recurrent_activation={rec!r}: non-default activations",
                f"rnnbench's {kind} has a tanh candidate and sigmoid gates (Keras' defaults)",
            )
        nl = "tanh"
        if cell == "gru":
            reset_after = bool(inner.reset_after)
    return weights, bidirectional, cell, nl, bool(inner.use_bias), reset_after


def _keras_list_cell(weights: list[np.ndarray], i: int) -> tuple[str, bool | None]:
    """(cell, reset_after read off the bias) of one direction's ``[kernel, recurrent, bias?]``."""
    kernel, recurrent = weights[0], weights[1]
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ShapeError(
            f"Keras layer {i}: kernel {kernel.shape} and recurrent_kernel "
            f"{recurrent.shape} must both be 2-D",
            "pass [kernel (I, G*H), recurrent_kernel (H, G*H), bias]",
        )
    hidden = recurrent.shape[0]
    if recurrent.shape[1] != kernel.shape[1]:
        raise ShapeError(
            f"Keras layer {i}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} "
            "differ in width",
            "both are gates * hidden wide: pass layer.get_weights() unchanged",
        )
    cell = _cell_of_gates(
        int(kernel.shape[1]), int(hidden), f"Keras layer {i}", f"kernel {kernel.shape}"
    )
    found: bool | None = None
    if len(weights) == 3 and cell == "gru":
        found = weights[2].ndim == 2
    return cell, found


def from_keras(
    layer_or_weights: Any,
    *,
    nonlinearity: str | None = None,
    bidirectional: bool | None = None,
    cell: str | None = None,
    reset_after: bool | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From a Keras SimpleRNN / LSTM / GRU / Bidirectional layer, a model holding them, a list of
    layers, or ``get_weights()`` lists (one flat list for one layer, a list of lists when
    stacked).

    Layers say everything (cell, activations, GRU ``reset_after``); an LSTM or GRU whose
    ``activation`` is not tanh or ``recurrent_activation`` not sigmoid is refused. A weight
    list tells its layout by its shapes: 2 or 3 arrays (kernel, recurrent kernel, bias) for one
    direction, 4 or 6 for a Bidirectional wrapper (forward layer's, then backward's); the cell
    by ``kernel.shape[1] / recurrent_kernel.shape[0]`` (1 RNN, 4 LSTM, 3 GRU); a GRU's formula
    by its bias: (2, 3H) is ``reset_after=True``, (3H,) ``reset_after=False``. A GRU list without
    bias needs ``reset_after``. ``cell`` / ``reset_after``, when given, must agree with the
    arrays. The one bias goes to ``b_ih`` (``b_hh`` zero); a reset-after GRU's two rows go to
    ``b_ih`` and ``b_hh``. Keras LSTM's ``unit_forget_bias`` only sets the bias' initial value,
    which the weights already hold: nothing to convert.
    """
    obj = layer_or_weights
    # (weights, bidirectional, cell, nonlinearity, use_bias, reset_after)
    per_layer: list[tuple[list[np.ndarray], bool, str, str | None, bool, bool | None]] = []
    is_arrays = isinstance(obj, (list, tuple)) and all(hasattr(a, "shape") for a in obj)
    is_nested = (
        isinstance(obj, (list, tuple))
        and obj
        and all(isinstance(e, (list, tuple)) and all(hasattr(a, "shape") for a in e) for e in obj)
    )
    if is_arrays or is_nested:
        lists = [list(obj)] if is_arrays else [list(e) for e in obj]
        for i, weights in enumerate(lists):
            weights = [to_numpy(a) for a in weights]
            n = len(weights)
            bi = n in (4, 6) if bidirectional is None else bidirectional
            if n not in ((4, 6) if bi else (2, 3)):
                raise LayoutError(
                    f"Keras weight list {i} has {n} arrays; expected 2 or 3 (one direction: "
                    "kernel, recurrent_kernel[, bias]) or 4 or 6 (Bidirectional)",
                    "pass layer.get_weights() unchanged",
                )
            per_dir = n // (2 if bi else 1)
            found_cell, found_ra = _keras_list_cell(weights[:per_dir], i)
            if bi:
                back = _keras_list_cell(weights[per_dir:], i)
                if back != (found_cell, found_ra):
                    raise LayoutError(
                        f"Keras weight list {i}: the forward and backward arrays hold different "
                        "cells or GRU formulas",
                        "pass a Bidirectional layer's get_weights() unchanged",
                    )
            _check_cell(found_cell, cell, f"Keras weight list {i}")
            ra: bool | None = None
            if found_cell == "gru":
                if found_ra is None:
                    if reset_after is None:
                        raise LayoutError(
                            f"Keras weight list {i} is a GRU without bias, whose arrays do not "
                            "say its formula",
                            "pass reset_after=True (Keras' default) or reset_after=False",
                        )
                    found_ra = reset_after
                elif reset_after is not None and reset_after != found_ra:
                    raise LayoutError(
                        f"Keras weight list {i} has a {'(2, 3H)' if found_ra else '(3H,)'} "
                        f"bias, a GRU(reset_after={found_ra})'s, but reset_after={reset_after} "
                        "was given",
                        "drop reset_after=, or pass the weights of the GRU it names",
                    )
                ra = found_ra
            nl = (
                nonlinearity
                if found_cell == "rnn"
                else _gated_nonlinearity(nonlinearity, found_cell, f"Keras weight list {i}")
            )
            per_layer.append((weights, bi, found_cell, nl, per_dir == 3, ra))
    else:
        for i, layer in enumerate(_keras_layers(obj)):
            weights, bi, found_cell, nl, use_bias, ra = _keras_layer_arrays(layer, i)
            _check_cell(found_cell, cell, f"Keras layer {i}")
            if nonlinearity is not None and nonlinearity != nl:
                raise LayoutError(
                    f"nonlinearity={nonlinearity!r} contradicts layer {i}'s {nl!r}",
                    "leave nonlinearity out when passing layers",
                )
            if reset_after is not None and ra is not None and reset_after != ra:
                raise LayoutError(
                    f"reset_after={reset_after} contradicts layer {i}'s reset_after={ra}",
                    "leave reset_after out when passing layers",
                )
            if bidirectional is not None and bidirectional != bi:
                raise LayoutError(
                    f"bidirectional={bidirectional} contradicts layer {i} ({type(layer).__name__})",
                    "leave bidirectional out when passing layers",
                )
            per_layer.append((weights, bi, found_cell, nl, use_bias, ra))
    settings = {(bi, c, nl or "tanh", b, ra) for _, bi, c, nl, b, ra in per_layer}
    if len(settings) > 1:
        raise LayoutError(
            "the Keras layers differ in cell, direction, activation, use_bias or reset_after",
            "rnnbench's spec has one setting for all stacked layers",
        )
    bi, found_cell, nl, use_bias, ra = settings.pop()
    per_dir = 3 if use_bias else 2
    two_biases = found_cell == "gru" and bool(ra)
    layers: LayerArrays = []
    for i, (weights, *_) in enumerate(per_layer):
        row = []
        for d in range(2 if bi else 1):
            part = weights[d * per_dir : (d + 1) * per_dir]
            kernel = _canon(part[0], "keras", found_cell)
            recurrent = _canon(part[1], "keras", found_cell)
            zeros = _zeros_like_bias(kernel)
            b_ih, b_hh = zeros, zeros.copy()
            if use_bias:
                bias = part[2]
                want = (2, kernel.shape[1]) if two_biases else (kernel.shape[1],)
                if bias.shape != want:
                    raise ShapeError(
                        f"Keras layer {i}: bias has shape {bias.shape}, expected {want}",
                        "pass layer.get_weights() unchanged",
                    )
                if two_biases:
                    b_ih = _canon(bias[0], "keras", found_cell)
                    b_hh = _canon(bias[1], "keras", found_cell)
                else:
                    b_ih = _canon(bias, "keras", found_cell)
            row.append((kernel, recurrent, b_ih, b_hh))
        layers.append(row)
    kernel0, recurrent0 = layers[0][0][0], layers[0][0][1]
    spec = RNNSpec(
        input_size=int(kernel0.shape[0]),
        hidden_size=int(recurrent0.shape[0]),
        num_layers=len(layers),
        bidirectional=bi,
        nonlinearity=nl,  # type: ignore[arg-type]
        bias=use_bias,
        cell=found_cell,
        reset_after=ra,
    )
    return spec, layers


# --- TF1 ---------------------------------------------------------------------------------
def to_tf1(w: RNNWeights, *, forget_bias: float = 1.0) -> Any:
    """TF1 cell weights, one entry per direction: a tuple of two for a bidirectional layer, a
    list per layer when stacked.

    - RNN (``BasicRNNCell``): ``(kernel (I+H, H), bias (H,))``.
    - LSTM (``LSTMCell`` / ``BasicLSTMCell``): ``(kernel (I+H, 4H) in i,j,f,o order, bias (4H,))``
      for a cell built with this ``forget_bias``: TF1 adds it to the forget gate at run time, so
      it is subtracted from the stored f block here.
    - GRU (``GRUCell``, reset-before only): ``{"gates/kernel": (I+H, 2H) [r | u], "gates/bias":
      (2H,), "candidate/kernel": (I+H, H), "candidate/bias": (H,)}``. A reset-after GRU raises
      LayoutError.

    Rows :I of a kernel multiply x, rows I: multiply h. The bias is ``b_ih + b_hh`` (exact only
    when ``b_hh`` is zero). ``forget_bias`` matters for an LSTM only.
    """
    spec = w.spec
    c = spec.cell
    if c == "gru" and spec.reset_after:
        raise LayoutError(
            "TF1 GRUCell applies the reset gate before the recurrent product, so it cannot hold "
            "a reset-after GRU (PyTorch's and Keras' default): the two formulas differ",
            "convert a reset-after GRU to Keras GRU (reset_after=True) or to ONNX GRU with "
            "linear_before_reset=1; for TF1 use a spec with reset_after=False",
        )
    h = spec.hidden_size
    items: list[Any] = []
    for row in _pairs(w):
        entries: list[Any] = []
        for w_ih, w_hh, b_ih, b_hh in row:
            kernel = np.concatenate([w_ih, w_hh], axis=0)
            bias = b_ih + b_hh
            if c == "lstm":
                bias[h : 2 * h] -= np.asarray(forget_bias, dtype=bias.dtype)  # canonical f block
            kernel, bias = _lib(kernel, "tf1", c), _lib(bias, "tf1", c)
            if c == "gru":
                entries.append(
                    {
                        "gates/kernel": np.ascontiguousarray(kernel[:, : 2 * h]),
                        "gates/bias": bias[: 2 * h].copy(),
                        "candidate/kernel": np.ascontiguousarray(kernel[:, 2 * h :]),
                        "candidate/bias": bias[2 * h :].copy(),
                    }
                )
            else:
                entries.append((kernel, bias))
        items.append(entries[0] if len(entries) == 1 else tuple(entries))
    return _per_layer(w, items)


def _is_array(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype")


def _is_tf1_direction(entry: Any) -> bool:
    """A GRUCell dict, or a (kernel, bias) pair of arrays."""
    if isinstance(entry, Mapping):
        return True
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and all(_is_array(a) for a in entry)


def _tf1_kernel_bias(
    kernel: Any, bias: Any, gate_count: int, input_size: int | None, where: str, what: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(kernel, bias, I)`` of a kernel (I+H, gate_count*H) and bias, shapes checked."""
    k = to_numpy(kernel)
    b = to_numpy(bias)
    cls = {1: "BasicRNNCell", 4: "LSTMCell"}.get(gate_count, "GRUCell")
    if k.ndim != 2:
        raise ShapeError(
            f"{where}: {what}kernel has shape {k.shape}, expected 2-D (I+H, {gate_count}H)",
            f"pass the {cls} kernel, rows :I for x and rows I: for h",
        )
    cols, rows = k.shape[1], k.shape[0]
    hidden = cols // gate_count
    if (
        cols % gate_count
        or rows <= hidden
        or (input_size is not None and rows != input_size + hidden)
    ):
        want = f"{input_size} + {hidden} = {input_size + hidden}" if input_size else f"I + {hidden}"
        hint = f"a {cls} kernel stacks W_x (I rows) on W_h (H rows)"
        if gate_count == 1 and cols % 4 == 0 and rows > cols // 4:
            hint += f"; for an LSTMCell kernel (I+H, 4H) pass cell='lstm' (H = {cols // 4})"
        raise ShapeError(
            f"{where}: {what}kernel {k.shape} has {rows} rows, which do not fit I + H = {want} "
            f"for hidden size {hidden} ({cols} columns)",
            hint,
        )
    if b.shape != (cols,):
        raise ShapeError(
            f"{where}: {what}bias has shape {b.shape}, but the kernel has {cols} columns",
            f"pass a bias of shape ({cols},)",
        )
    return k, b, rows - hidden


def _from_tf1_direction(
    entry: Any, cell: str, forget_bias: float, input_size: int | None, where: str
) -> Arrays4:
    if cell == "gru":
        keys = set(entry)
        if keys != set(TF1_GRU_KEYS):
            missing = [key for key in TF1_GRU_KEYS if key not in keys]
            extra = sorted(str(key) for key in keys - set(TF1_GRU_KEYS))
            raise LayoutError(
                f"{where}: a TF1 GRUCell dict needs exactly the keys {', '.join(TF1_GRU_KEYS)}"
                f" (missing: {missing or 'none'}; unexpected: {extra or 'none'})",
                "pass {'gates/kernel': ..., 'gates/bias': ..., 'candidate/kernel': ..., "
                "'candidate/bias': ...} per direction",
            )
        gk, gb, i = _tf1_kernel_bias(
            entry["gates/kernel"], entry["gates/bias"], 2, input_size, where, "gates/"
        )
        ck, cb, _ = _tf1_kernel_bias(
            entry["candidate/kernel"], entry["candidate/bias"], 1, i, where, "candidate/"
        )
        if ck.shape[1] * 2 != gk.shape[1]:
            raise ShapeError(
                f"{where}: candidate/kernel {ck.shape} does not match gates/kernel {gk.shape}",
                "gates/kernel is (I+H, 2H) and candidate/kernel (I+H, H)",
            )
        kernel = np.concatenate([gk, ck], axis=1)
        bias = np.concatenate([gb, cb])
    else:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            raise LayoutError(
                f"{where}: expected (kernel, bias), got {type(entry).__name__}",
                "pass (kernel, bias) pairs",
            )
        kernel, bias, i = _tf1_kernel_bias(entry[0], entry[1], CELLS[cell], input_size, where, "")
    kernel = _canon(kernel, "tf1", cell)
    b_ih = _canon(bias, "tf1", cell)
    if cell == "lstm":
        h = kernel.shape[1] // 4
        b_ih[h : 2 * h] += np.asarray(forget_bias, dtype=b_ih.dtype)  # canonical f block
    return (
        np.ascontiguousarray(kernel[:i]),
        np.ascontiguousarray(kernel[i:]),
        b_ih,
        _zeros_like_bias(kernel),
    )


def from_tf1(
    kernel: Any,
    bias: Any = None,
    *,
    nonlinearity: str = "tanh",
    input_size: int | None = None,
    bidirectional: bool | None = None,
    cell: str = "rnn",
    forget_bias: float = 1.0,
) -> tuple[RNNSpec, LayerArrays]:
    """From TF1 cell weights: ``BasicRNNCell`` / ``LSTMCell`` / ``BasicLSTMCell`` pairs or
    ``GRUCell`` dicts.

    ``from_tf1(kernel, bias)`` for one cell; otherwise the structure :func:`to_tf1` returns:
    one direction (a ``(kernel, bias)`` pair, or a GRUCell dict with exactly the keys
    "gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"), a tuple of two
    directions (one bidirectional layer, forward then backward), or a *list* with one of those
    per stacked layer. Pass ``bidirectional`` when a hand-made list is ambiguous.

    A pair is a vanilla RNN unless ``cell="lstm"`` (an LSTM kernel (I+H, 4H) cannot be told
    from an RNN kernel by its shape); a dict is a GRU (reset-before: GRUCell's formula).
    ``forget_bias`` is the LSTM cell's (TF1's default 1.0; a checkpoint does not record it): it
    is added to the canonical forget-gate bias. ``nonlinearity`` is a BasicRNNCell's
    ``activation`` (TF1's default is tanh); a checkpoint does not record it either. The bias
    goes to ``b_ih``; ``b_hh`` is zero.
    """
    if bias is not None:
        structure: list[list[Any]] = [[(kernel, bias)]]
    elif _is_tf1_direction(kernel):
        structure = [[kernel]]
    elif not isinstance(kernel, (list, tuple)) or not kernel:
        raise LayoutError(
            "from_tf1 needs a kernel and a bias, a GRUCell dict, or the structure to_tf1() returns",
            "call from_tf1(kernel, bias)",
        )
    elif (
        isinstance(kernel, tuple)
        and bidirectional is not False
        and all(_is_tf1_direction(e) for e in kernel)
    ):  # one bidirectional layer
        structure = [list(kernel)]
    else:  # a list of layers
        structure = [[e] if _is_tf1_direction(e) else list(e) for e in kernel]
    dirs = {len(layer) for layer in structure}
    if bidirectional is not None:
        dirs.add(2 if bidirectional else 1)
    if len(dirs) != 1 or not dirs.issubset({1, 2}):
        raise LayoutError(
            "the TF1 layers differ in their number of directions",
            "pass (kernel, bias) per direction, forward then backward, the same for every layer",
        )
    kinds = {isinstance(e, Mapping) for layer in structure for e in layer}
    if kinds == {True}:
        if cell not in ("rnn", "gru"):  # "rnn" is the default: a dict alone says GRU
            raise LayoutError(
                f"the TF1 weights are GRUCell dicts, but cell={cell!r} was given",
                "drop cell=, or pass the (kernel, bias) pairs of the cell it names",
            )
        found_cell = "gru"
    elif kinds == {False}:
        if cell == "gru":
            raise LayoutError(
                "cell='gru' was given, but the TF1 weights are (kernel, bias) pairs: a GRUCell "
                "holds four arrays",
                "pass {'gates/kernel', 'gates/bias', 'candidate/kernel', 'candidate/bias'} "
                "dicts per direction",
            )
        if cell not in CELLS:
            raise LayoutError(f"unknown cell {cell!r}", "use 'rnn', 'lstm' or 'gru'")
        found_cell = cell
    else:
        raise LayoutError(
            "the TF1 structure mixes GRUCell dicts and (kernel, bias) pairs",
            "rnnbench's spec has one cell for all stacked layers",
        )
    layers: LayerArrays = []
    for k, layer in enumerate(structure):
        row = []
        for d, entry in enumerate(layer):
            where = f"TF1 layer {k} direction {d}"
            want_in = input_size if k == 0 else None
            row.append(_from_tf1_direction(entry, found_cell, forget_bias, want_in, where))
        layers.append(row)
    spec = RNNSpec(
        input_size=int(layers[0][0][0].shape[0]),
        hidden_size=int(layers[0][0][1].shape[0]),
        num_layers=len(layers),
        bidirectional=dirs.pop() == 2,
        nonlinearity=_cell_nonlinearity(nonlinearity, found_cell, "from_tf1"),
        bias=True,
        cell=found_cell,
        reset_after=False if found_cell == "gru" else None,
    )
    return spec, layers


# --- ONNX --------------------------------------------------------------------------------
def onnx_activation(nonlinearity: str) -> str:
    """The ONNX ``activations`` attribute value for a nonlinearity ("Tanh", "Relu")."""
    return _ONNX_ACTIVATIONS[nonlinearity]


def onnx_op(spec: RNNSpec) -> str:
    """The ONNX operator of the spec's cell: "RNN", "LSTM" or "GRU"."""
    return _CLASS[spec.cell]


def onnx_attributes(spec: RNNSpec) -> dict[str, Any]:
    """The node attributes rnnbench writes for one layer of ``spec``: ``hidden_size``,
    ``direction`` ("forward" / "bidirectional"), ``activations`` (per direction: RNN [Tanh or
    Relu]; LSTM [Sigmoid, Tanh, Tanh]; GRU [Sigmoid, Tanh]) and, for a GRU, always
    ``linear_before_reset`` = int(reset_after) (ONNX's default when omitted is 0, reset-before,
    unlike PyTorch's and Keras' default)."""
    if spec.cell == "rnn":
        per_dir = [onnx_activation(spec.nonlinearity)]
    elif spec.cell == "lstm":
        per_dir = ["Sigmoid", "Tanh", "Tanh"]
    else:
        per_dir = ["Sigmoid", "Tanh"]
    attrs: dict[str, Any] = {
        "hidden_size": spec.hidden_size,
        "direction": "bidirectional" if spec.bidirectional else "forward",
        "activations": per_dir * spec.num_directions,
    }
    if spec.cell == "gru":
        attrs["linear_before_reset"] = int(bool(spec.reset_after))
    return attrs


def to_onnx(w: RNNWeights) -> Any:
    """ONNX ``(W, R, B)`` per layer (exact for every cell): W (dirs, G*H, I), R (dirs, G*H, H),
    B (dirs, 2*G*H) = [Wb | Rb], in ONNX's gate order (LSTM i,o,f,c; GRU z,r,h). A GRU's
    formula goes in the node's ``linear_before_reset`` (see :func:`onnx_attributes`)."""
    c = w.spec.cell
    items = []
    for row in _pairs(w):
        W = np.stack([_t(_lib(w_ih, "onnx", c)) for w_ih, _, _, _ in row])
        R = np.stack([_t(_lib(w_hh, "onnx", c)) for _, w_hh, _, _ in row])
        B = np.stack(
            [
                np.concatenate([_lib(b_ih, "onnx", c), _lib(b_hh, "onnx", c)])
                for _, _, b_ih, b_hh in row
            ]
        )
        items.append((W, R, B))
    return _per_layer(w, items)


def _onnx_layer(W: Any, R: Any, B: Any, P: Any, where: str) -> tuple[str, list[Arrays4]]:
    W, R = to_numpy(W), to_numpy(R)
    if W.ndim != 3 or R.ndim != 3:
        raise ShapeError(
            f"{where}: W {W.shape} and R {R.shape} must be 3-D (num_directions, G*H, I/H)",
            "pass the ONNX RNN/LSTM/GRU initializers unchanged",
        )
    dirs, width, hidden = W.shape[0], W.shape[1], R.shape[-1]
    if dirs not in (1, 2):
        raise ShapeError(f"{where}: W has {dirs} directions; ONNX allows 1 or 2")
    if R.shape[0] != dirs or R.shape[1] != width:
        raise ShapeError(
            f"{where}: R has shape {R.shape}, but W {W.shape} needs R of shape "
            f"({dirs}, {width}, H)",
            "W and R must agree on directions and gates * hidden size",
        )
    cell = _cell_of_gates(int(width), int(hidden), where, f"W {W.shape} over R {R.shape}")
    if P is not None and to_numpy(P).any():
        raise LayoutError(
            f"{where}: the ONNX LSTM has non-zero peephole weights P: the canonical LSTM "
            "(like nn.LSTM and Keras LSTM) has no peephole term",
            "only peephole-free LSTMs (P omitted or zero) convert",
        )
    if B is None:
        Bn = np.zeros((dirs, 2 * width), dtype=W.dtype)
    else:
        Bn = to_numpy(B)
        if Bn.shape != (dirs, 2 * width):
            raise ShapeError(
                f"{where}: B has shape {Bn.shape}, but W {W.shape} needs B of shape "
                f"({dirs}, {2 * width}) = [Wb, Rb]",
                "B concatenates the input and recurrent biases per direction",
            )
    return cell, [
        (
            _canon(_t(W[d]), "onnx", cell),
            _canon(_t(R[d]), "onnx", cell),
            _canon(Bn[d, :width], "onnx", cell),
            _canon(Bn[d, width:], "onnx", cell),
        )
        for d in range(dirs)
    ]


def from_onnx(
    W: Any,
    R: Any = None,
    B: Any = None,
    *,
    nonlinearity: str = "tanh",
    bias: bool | None = None,
    cell: str | None = None,
    linear_before_reset: int = 0,
    P: Any = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From ONNX RNN / LSTM / GRU arrays ``W, R, B`` (B optional), or a list of ``(W, R, B)``
    (or ``(W, R, B, P)``) per layer.

    The cell is read off the shapes (``W.shape[1] / R.shape[-1]`` gate blocks: 1 RNN, 4 LSTM,
    3 GRU); ``cell``, when given, must agree. ``linear_before_reset`` is the GRU node's
    attribute: 1 is the reset-after GRU (PyTorch's), 0 (ONNX's default when the attribute is
    omitted) the reset-before one. A non-zero peephole ``P`` is refused (nn.LSTM and the
    canonical cell have none). ``nonlinearity`` (an RNN's) accepts "tanh"/"relu" or ONNX's
    "Tanh"/"Relu". ``bias`` defaults to whether B was given (for a list, whether any layer's B
    is not None).
    """
    if R is None:
        if not isinstance(W, (list, tuple)) or not W:
            raise LayoutError(
                "from_onnx needs W and R (and B), or a list of (W, R, B) per layer",
                "call from_onnx(W, R, B)",
            )
        entries = [tuple(t) + (None,) * (4 - len(t)) for t in W]
        if P is not None:
            raise LayoutError(
                "P= was given with a list of layers", "put each layer's P in its (W, R, B, P)"
            )
    else:
        entries = [(W, R, B, P)]
    cells: set[str] = set()
    layers: LayerArrays = []
    for k, (w_, r_, b_, p_) in enumerate(entries):
        found, row = _onnx_layer(w_, r_, b_, p_, f"ONNX layer {k}")
        cells.add(found)
        layers.append(row)
    if len(cells) != 1:
        raise LayoutError("the ONNX layers hold different cells", "one cell for all layers")
    found_cell = cells.pop()
    _check_cell(found_cell, cell, "the ONNX arrays")
    if len({len(row) for row in layers}) != 1:
        raise LayoutError("the ONNX layers differ in their number of directions")
    lbr = int(linear_before_reset)
    if lbr not in (0, 1):
        raise LayoutError(f"linear_before_reset={linear_before_reset!r}", "ONNX allows 0 or 1")
    if lbr and found_cell != "gru":
        raise LayoutError(
            f"linear_before_reset=1 was given for {_CLASS[found_cell]} arrays",
            "linear_before_reset is a GRU attribute: drop it",
        )
    has_bias = any(t[2] is not None for t in entries) if bias is None else bias
    spec = RNNSpec(
        input_size=int(layers[0][0][0].shape[0]),
        hidden_size=int(layers[0][0][1].shape[0]),
        num_layers=len(layers),
        bidirectional=len(layers[0]) == 2,
        nonlinearity=_cell_nonlinearity(nonlinearity, found_cell, "from_onnx"),
        bias=has_bias,
        cell=found_cell,
        reset_after=bool(lbr) if found_cell == "gru" else None,
    )
    return spec, layers
