"""Converters between the canonical weights and each library's layout, in pure NumPy.

None of these imports its library: library objects (a ``torch.nn.RNN``, a Keras layer, tensors)
are read by duck typing. Every ``from_*`` returns ``(spec, layers)`` where ``layers[k][d]`` is
the canonical ``(w_ih, w_hh, b_ih, b_hh)`` of layer k, direction d (0 forward, 1 reverse);
``RNNWeights`` checks shapes and values. Every ``to_*`` takes an ``RNNWeights``.

Layouts (vanilla RNN; H hidden, I input of the layer):
- torch ``nn.RNN``: ``weight_ih_l{k}`` (H, I), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``,
  ``bias_hh_l{k}`` (H,); ``_reverse`` suffix for the backward direction. Computes W @ x.
- Keras ``SimpleRNN``: ``[kernel (I, H), recurrent_kernel (H, H), bias (H,)]``;
  ``Bidirectional.get_weights()`` is the forward layer's list, then the backward layer's.
- TF1 ``BasicRNNCell``: ``kernel`` (I+H, H), rows :I multiply x, rows I: multiply h; ``bias`` (H,).
- ONNX ``RNN``: ``W`` (dirs, H, I), ``R`` (dirs, H, H), ``B`` (dirs, 2H) = [Wb, Rb].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rnnbench.arrays import to_numpy
from rnnbench.errors import LayoutError, ShapeError
from rnnbench.spec import RNNSpec

if TYPE_CHECKING:
    from rnnbench.weights import RNNWeights

Arrays4 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
LayerArrays = list[list[Arrays4]]

_SUFFIX = ("", "_reverse")
_ONNX_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


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


def _zeros_like_bias(w: np.ndarray) -> np.ndarray:
    return np.zeros(w.shape[-1], dtype=w.dtype)


def _pairs(w: RNNWeights) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    return [[dw.arrays() for dw in row] for row in w.layers]


def _per_layer(w: RNNWeights, items: list[Any]) -> Any:
    """One layer's entry alone, a list for stacked layers (the documented to_* convention)."""
    return items[0] if w.spec.num_layers == 1 else items


# --- PyTorch -----------------------------------------------------------------------------
def torch_key(kind: str, layer: int, direction: int) -> str:
    """``weight_ih`` / ``weight_hh`` / ``bias_ih`` / ``bias_hh`` name of nn.RNN's state dict."""
    return f"{kind}_l{layer}{_SUFFIX[direction]}"


def to_torch(w: RNNWeights) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, row in enumerate(_pairs(w)):
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(row):
            out[torch_key("weight_ih", k, d)] = _t(w_ih)
            out[torch_key("weight_hh", k, d)] = _t(w_hh)
            if w.spec.bias:
                out[torch_key("bias_ih", k, d)] = b_ih.copy()
                out[torch_key("bias_hh", k, d)] = b_hh.copy()
    return out


def from_torch(
    module_or_state_dict: Any,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    spec: RNNSpec | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From an ``nn.RNN`` (its settings are read off the module) or a state dict.

    A bare state dict cannot say its nonlinearity: pass ``nonlinearity`` ("tanh" by default).
    ``prefix`` selects one RNN inside a larger model's state dict ("encoder.rnn."); when omitted
    it is found from the unique key ending in ``weight_ih_l0``.
    """
    obj = module_or_state_dict
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        mode = getattr(obj, "mode", None)
        if mode not in ("RNN_TANH", "RNN_RELU"):
            raise LayoutError(
                f"expected a torch.nn.RNN, got {type(obj).__name__} (mode {mode!r})",
                "pass an nn.RNN or its state_dict(); LSTM and GRU are not built yet",
            )
        module_nl = "tanh" if mode == "RNN_TANH" else "relu"
        if nonlinearity is not None and nonlinearity != module_nl:
            raise LayoutError(
                f"nonlinearity={nonlinearity!r} contradicts the module's {module_nl!r}",
                "leave nonlinearity out when passing a module",
            )
        nonlinearity = module_nl
        state = obj.state_dict()
    elif isinstance(obj, dict) or hasattr(obj, "keys"):
        state = obj
    else:
        raise LayoutError(
            f"from_torch expects an nn.RNN or a state dict, got {type(obj).__name__}",
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
    num_layers = 0
    while prefix + torch_key("weight_ih", num_layers, 0) in state:
        num_layers += 1
    bidirectional = prefix + torch_key("weight_ih", 0, 1) in state
    has_bias = prefix + torch_key("bias_ih", 0, 0) in state
    w0 = to_numpy(state[first])
    if w0.ndim != 2:
        raise ShapeError(f"{first} has shape {w0.shape}, expected (hidden, input)")
    found_spec = RNNSpec(
        input_size=int(w0.shape[1]),
        hidden_size=int(w0.shape[0]),
        num_layers=num_layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity or "tanh",  # type: ignore[arg-type]
        bias=has_bias,
    )
    if spec is not None and spec != found_spec:
        raise LayoutError(
            f"the state dict holds {found_spec}, not the given {spec}",
            "drop spec= or pass the state dict that matches it",
        )
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
                        "pass the complete state dict of the nn.RNN",
                    )
                got[kind] = to_numpy(state[key])
            w_ih, w_hh = _t(got["weight_ih"]), _t(got["weight_hh"])
            b_ih = got.get("bias_ih", _zeros_like_bias(w_ih))
            b_hh = got.get("bias_hh", _zeros_like_bias(w_ih))
            row.append((w_ih, w_hh, b_ih, b_hh))
        layers.append(row)
    rnn_like = {
        k
        for k in state
        if k.startswith(prefix)
        and k[len(prefix) :].split("_l")[0]
        in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    extra = sorted(rnn_like - expected_keys)
    if extra:
        raise LayoutError(
            f"state dict has keys a {spec.describe()} RNN does not hold: {extra}",
            "projections (weight_hr) and gaps in layer numbering are not supported",
        )
    return spec, layers


# --- Keras -------------------------------------------------------------------------------
def to_keras(w: RNNWeights) -> Any:
    items = []
    for row in _pairs(w):
        weights: list[np.ndarray] = []
        for w_ih, w_hh, b_ih, b_hh in row:
            weights += [w_ih.copy(), w_hh.copy()]
            if w.spec.bias:
                weights.append(b_ih + b_hh)
        items.append(weights)
    return _per_layer(w, items)


def _keras_layers(obj: Any) -> list[Any]:
    """The RNN layers of a model, a list of layers, or one layer."""
    if hasattr(obj, "get_weights") and not hasattr(obj, "layers"):
        return [obj]
    if hasattr(obj, "layers"):  # a Model or Sequential
        found = [
            layer
            for layer in obj.layers
            if hasattr(layer, "forward_layer") or type(layer).__name__ == "SimpleRNN"
        ]
        if not found:
            raise LayoutError(
                f"{type(obj).__name__} holds no SimpleRNN or Bidirectional layer",
                "pass the model that holds the RNN, or the layer itself",
            )
        return found
    return list(obj)


def _keras_layer_arrays(layer: Any, index: int) -> tuple[list[np.ndarray], bool, str, bool]:
    """(weights, bidirectional, nonlinearity, use_bias) of one Keras layer object."""
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
    if type(inner).__name__ != "SimpleRNN":
        raise LayoutError(
            f"layer {index} is a {type(inner).__name__}, not a SimpleRNN",
            "LSTM and GRU are not built yet",
        )
    weights = [to_numpy(a) for a in layer.get_weights()]
    if not weights:
        raise LayoutError(
            f"layer {index} ({type(layer).__name__}) has no weights yet",
            "build it first, e.g. by calling it on an input or model.build(input_shape)",
        )
    nl = _nonlinearity(inner.activation, f"Keras layer {index}")
    return weights, bidirectional, nl, bool(inner.use_bias)


def from_keras(
    layer_or_weights: Any,
    *,
    nonlinearity: str | None = None,
    bidirectional: bool | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From a Keras SimpleRNN / Bidirectional layer, a model holding them, a list of layers, or
    ``get_weights()`` lists (one flat list for one layer, a list of lists when stacked).

    A flat weight list tells its layout by its length: 2 or 3 arrays (kernel, recurrent kernel,
    bias) for one direction, 4 or 6 for a Bidirectional wrapper (forward layer's, then backward's).
    """
    obj = layer_or_weights
    per_layer: list[tuple[list[np.ndarray], bool, str | None, bool]] = []
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
            per_layer.append((weights, bi, nonlinearity, n in (3, 6)))
    else:
        for i, layer in enumerate(_keras_layers(obj)):
            weights, bi, nl, use_bias = _keras_layer_arrays(layer, i)
            if nonlinearity is not None and nonlinearity != nl:
                raise LayoutError(
                    f"nonlinearity={nonlinearity!r} contradicts layer {i}'s {nl!r}",
                    "leave nonlinearity out when passing layers",
                )
            per_layer.append((weights, bi, nl, use_bias))
    bis = {bi for _, bi, _, _ in per_layer}
    nls = {nl or "tanh" for _, _, nl, _ in per_layer}
    biases = {b for _, _, _, b in per_layer}
    if len(bis) > 1 or len(nls) > 1 or len(biases) > 1:
        raise LayoutError(
            "the Keras layers differ in direction, activation or use_bias",
            "rnnbench's spec has one setting for all stacked layers",
        )
    bi, use_bias = bis.pop(), biases.pop()
    per_dir = 3 if use_bias else 2
    layers: LayerArrays = []
    for i, (weights, _, _, _) in enumerate(per_layer):
        row = []
        for d in range(2 if bi else 1):
            part = weights[d * per_dir : (d + 1) * per_dir]
            kernel, recurrent = part[0], part[1]
            if kernel.ndim != 2 or recurrent.ndim != 2:
                raise ShapeError(
                    f"Keras layer {i}: kernel {kernel.shape} and recurrent_kernel "
                    f"{recurrent.shape} must both be 2-D",
                    "pass [kernel (I, H), recurrent_kernel (H, H), bias (H,)]",
                )
            bias = part[2] if use_bias else _zeros_like_bias(kernel)
            row.append((kernel.copy(), recurrent.copy(), bias.copy(), _zeros_like_bias(kernel)))
        layers.append(row)
    kernel0 = layers[0][0][0]
    spec = RNNSpec(
        input_size=int(kernel0.shape[0]),
        hidden_size=int(kernel0.shape[1]),
        num_layers=len(layers),
        bidirectional=bi,
        nonlinearity=nls.pop(),  # type: ignore[arg-type]
        bias=use_bias,
    )
    return spec, layers


# --- TF1 ---------------------------------------------------------------------------------
def to_tf1(w: RNNWeights) -> Any:
    items: list[Any] = []
    for row in _pairs(w):
        pairs = [
            (np.concatenate([w_ih, w_hh], axis=0), b_ih + b_hh) for w_ih, w_hh, b_ih, b_hh in row
        ]
        items.append(pairs[0] if len(pairs) == 1 else tuple(pairs))
    return _per_layer(w, items)


def _is_array(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype")


def _split_tf1(kernel: Any, bias: Any, input_size: int | None, where: str) -> Arrays4:
    k = to_numpy(kernel)
    b = to_numpy(bias)
    if k.ndim != 2:
        raise ShapeError(
            f"{where}: kernel has shape {k.shape}, expected 2-D (I+H, H)",
            "pass the BasicRNNCell kernel, rows :I for x and rows I: for h",
        )
    hidden = k.shape[1]
    rows = k.shape[0]
    if rows <= hidden or (input_size is not None and rows != input_size + hidden):
        want = f"{input_size} + {hidden} = {input_size + hidden}" if input_size else f"I + {hidden}"
        raise ShapeError(
            f"{where}: kernel has {rows} rows, which do not fit I + H = {want} for hidden size "
            f"{hidden} (columns)",
            "a BasicRNNCell kernel stacks W_xh (I rows) on W_hh (H rows)",
        )
    if b.shape != (hidden,):
        raise ShapeError(
            f"{where}: bias has shape {b.shape}, but the kernel has {hidden} columns",
            f"pass a bias of shape ({hidden},)",
        )
    i = rows - hidden
    return (k[:i].copy(), k[i:].copy(), b.copy(), _zeros_like_bias(k))


def from_tf1(
    kernel: Any,
    bias: Any = None,
    *,
    nonlinearity: str = "tanh",
    input_size: int | None = None,
    bidirectional: bool | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From TF1 BasicRNNCell weights.

    ``from_tf1(kernel, bias)`` for one cell; otherwise the structure :func:`to_tf1` returns:
    a tuple ``(kernel, bias)`` (one layer), a tuple of two such pairs (one bidirectional layer,
    forward then backward), or a *list* with one of those per stacked layer. Pass
    ``bidirectional`` when a hand-made list is ambiguous. ``nonlinearity`` is the cell's
    ``activation`` (TF1's default is tanh); a checkpoint does not record it.
    """
    if bias is not None:
        structure: list[Any] = [((kernel, bias),)]
    else:
        if not isinstance(kernel, (list, tuple)) or not kernel:
            raise LayoutError(
                "from_tf1 needs a kernel and a bias, or the structure to_tf1() returns",
                "call from_tf1(kernel, bias)",
            )
        if all(_is_array(a) for a in kernel):  # (kernel, bias)
            structure = [(tuple(kernel),)]
        elif isinstance(kernel, tuple) and bidirectional is not False:  # one bidirectional layer
            structure = [tuple(kernel)]
        else:  # a list of layers
            structure = []
            for entry in kernel:
                if all(_is_array(a) for a in entry):
                    structure.append((tuple(entry),))
                else:
                    structure.append(tuple(entry))
    dirs = {len(layer) for layer in structure}
    if bidirectional is not None:
        dirs.add(2 if bidirectional else 1)
    if len(dirs) != 1 or dirs.issubset({1, 2}) is False:
        raise LayoutError(
            "the TF1 layers differ in their number of directions",
            "pass (kernel, bias) per direction, forward then backward, the same for every layer",
        )
    layers: LayerArrays = []
    for k, layer in enumerate(structure):
        row = []
        for d, pair in enumerate(layer):
            if len(pair) != 2:
                raise LayoutError(
                    f"TF1 layer {k} direction {d}: expected (kernel, bias), got {len(pair)} items",
                    "pass (kernel, bias) pairs",
                )
            want_in = input_size if k == 0 else None
            row.append(_split_tf1(pair[0], pair[1], want_in, f"TF1 layer {k} direction {d}"))
        layers.append(row)
    spec = RNNSpec(
        input_size=int(layers[0][0][0].shape[0]),
        hidden_size=int(layers[0][0][0].shape[1]),
        num_layers=len(layers),
        bidirectional=dirs.pop() == 2,
        nonlinearity=_nonlinearity(nonlinearity, "from_tf1"),  # type: ignore[arg-type]
        bias=True,
    )
    return spec, layers


# --- ONNX --------------------------------------------------------------------------------
def onnx_activation(nonlinearity: str) -> str:
    """The ONNX ``activations`` attribute value for a nonlinearity ("Tanh", "Relu")."""
    return _ONNX_ACTIVATIONS[nonlinearity]


def to_onnx(w: RNNWeights) -> Any:
    items = []
    for row in _pairs(w):
        W = np.stack([_t(w_ih) for w_ih, _, _, _ in row])
        R = np.stack([_t(w_hh) for _, w_hh, _, _ in row])
        B = np.stack([np.concatenate([b_ih, b_hh]) for _, _, b_ih, b_hh in row])
        items.append((W, R, B))
    return _per_layer(w, items)


def _onnx_layer(W: Any, R: Any, B: Any, where: str) -> list[Arrays4]:
    W, R = to_numpy(W), to_numpy(R)
    if W.ndim != 3 or R.ndim != 3:
        raise ShapeError(
            f"{where}: W {W.shape} and R {R.shape} must be 3-D (num_directions, H, I/H)",
            "pass the ONNX RNN initializers unchanged",
        )
    dirs, hidden = W.shape[0], W.shape[1]
    if dirs not in (1, 2):
        raise ShapeError(f"{where}: W has {dirs} directions; ONNX allows 1 or 2")
    if R.shape != (dirs, hidden, hidden):
        raise ShapeError(
            f"{where}: R has shape {R.shape}, but W {W.shape} needs R of shape "
            f"({dirs}, {hidden}, {hidden})",
            "W and R must agree on directions and hidden size",
        )
    if B is None:
        Bn = np.zeros((dirs, 2 * hidden), dtype=W.dtype)
    else:
        Bn = to_numpy(B)
        if Bn.shape != (dirs, 2 * hidden):
            raise ShapeError(
                f"{where}: B has shape {Bn.shape}, but W {W.shape} needs B of shape "
                f"({dirs}, {2 * hidden}) = [Wb, Rb]",
                "B concatenates the input and recurrent biases per direction",
            )
    return [(_t(W[d]), _t(R[d]), Bn[d, :hidden].copy(), Bn[d, hidden:].copy()) for d in range(dirs)]


def from_onnx(
    W: Any,
    R: Any = None,
    B: Any = None,
    *,
    nonlinearity: str = "tanh",
    bias: bool | None = None,
) -> tuple[RNNSpec, LayerArrays]:
    """From ONNX RNN arrays ``W, R, B`` (B optional), or a list of ``(W, R, B)`` per layer.

    ``nonlinearity`` accepts "tanh"/"relu" or ONNX's "Tanh"/"Relu". ``bias`` defaults to
    whether B was given (for a list, whether any layer's B is not None).
    """
    if R is None:
        if not isinstance(W, (list, tuple)) or not W:
            raise LayoutError(
                "from_onnx needs W and R (and B), or a list of (W, R, B) per layer",
                "call from_onnx(W, R, B)",
            )
        triples = [tuple(t) + (None,) * (3 - len(t)) for t in W]
    else:
        triples = [(W, R, B)]
    layers = [_onnx_layer(w_, r_, b_, f"ONNX layer {k}") for k, (w_, r_, b_) in enumerate(triples)]
    if len({len(row) for row in layers}) != 1:
        raise LayoutError("the ONNX layers differ in their number of directions")
    has_bias = any(t[2] is not None for t in triples) if bias is None else bias
    spec = RNNSpec(
        input_size=int(layers[0][0][0].shape[0]),
        hidden_size=int(layers[0][0][0].shape[1]),
        num_layers=len(layers),
        bidirectional=len(layers[0]) == 2,
        nonlinearity=_nonlinearity(nonlinearity, "from_onnx"),  # type: ignore[arg-type]
        bias=has_bias,
    )
    return spec, layers
