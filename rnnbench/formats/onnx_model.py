"""An ONNX model of ``RNN`` nodes (``.onnx``), written with ``onnx.helper`` so that onnxruntime
runs it, and read back from the nodes' initializers and attributes.

The model written: input ``X`` (T, B, I), time-major as ONNX's RNN wants it (``layout`` 0; the
batch-major ``layout=1`` is not implemented by onnxruntime's CPU kernel); one ``RNN`` node per
layer (ONNX's RNN is one layer), whose ``Y`` (T, dirs, B, H) is transposed to (T, B, dirs, H)
and reshaped to (T, B, dirs * H) for the next layer; outputs ``Y`` (T, B, dirs * H) and ``Y_h``
(layers * dirs, B, H), the same as ``torch.nn.RNN(batch_first=False)``. Weights: ``W`` (dirs, H,
I), ``R`` (dirs, H, H), ``B`` (dirs, 2H) = [Wb, Rb]: both biases, exact. The activation is an
attribute, so the file records the nonlinearity. onnxruntime's RNN runs float32 only: weights
are written as float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.layouts import onnx_activation
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = True
TWO_BIASES = True
OPSET = 17
IR_VERSION = 8  # what onnxruntime >= 1.14 reads
_ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu"}


def build_model(weights: RNNWeights) -> Any:
    """The ``onnx.ModelProto`` described in the module docstring."""
    onnx = import_library("onnx", "onnx")
    from onnx import TensorProto, helper, numpy_helper

    spec = weights.spec
    dirs, hidden = spec.num_directions, spec.hidden_size
    native = weights.astype(np.float32).to_onnx()
    triples = [native] if spec.num_layers == 1 else native
    act = onnx_activation(spec.nonlinearity)
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "concat_directions")]
    nodes = []
    current, finals = "X", []
    for k, (W, R, B) in enumerate(triples):
        names = [f"W_{k}", f"R_{k}"] + ([f"B_{k}"] if spec.bias else [])
        for name, arr in zip(names, (W, R, B)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        nodes += [
            helper.make_node(
                "RNN",
                [current, *names],
                [f"Y_{k}", f"Y_h_{k}"],
                name=f"rnn_{k}",
                hidden_size=hidden,
                activations=[act] * dirs,
                direction="bidirectional" if spec.bidirectional else "forward",
            ),
            helper.make_node("Transpose", [f"Y_{k}"], [f"Y_t_{k}"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"Y_t_{k}", "concat_directions"], [f"X_{k + 1}"]),
        ]
        current = f"X_{k + 1}"
        finals.append(f"Y_h_{k}")
    nodes.append(helper.make_node("Identity", [current], ["Y"]))
    nodes.append(helper.make_node("Concat", finals, ["Y_h"], axis=0))
    graph = helper.make_graph(
        nodes,
        "rnnbench_rnn",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", spec.input_size])],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "B", dirs * hidden]),
            helper.make_tensor_value_info(
                "Y_h", TensorProto.FLOAT, [spec.num_layers * dirs, "B", hidden]
            ),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnnbench"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write(weights: RNNWeights, path: Path) -> list[str]:
    model = build_model(weights)
    with atomic_path(path, ".onnx") as tmp:
        tmp.write_bytes(model.SerializeToString())
    notes = ["input X is time-major (T, B, I); outputs Y (T, B, dirs*H) and Y_h"]
    if weights.dtype != np.float32:
        notes.append("weights written as float32 (onnxruntime's RNN runs float32 only)")
    return notes


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list):
                return [v.decode() if isinstance(v, bytes) else v for v in value]
            return value
    return default


def read(path: Path, *, nonlinearity: str | None = None, prefix: str | None = None) -> RNNWeights:
    onnx = import_library("onnx", "onnx")
    from onnx import numpy_helper

    require_file(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WeightFileError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})",
            "pass a .onnx file holding RNN nodes",
        ) from exc
    graph = model.graph
    ops = [n.op_type for n in graph.node]
    gated = sorted({op for op in ops if op in ("LSTM", "GRU")})
    if gated:
        raise LayoutError(
            f"{path} holds {' and '.join(gated)} node(s), not vanilla RNN nodes",
            "rnnbench converts ONNX RNN nodes; LSTM and GRU are planned",
        )
    nodes = [n for n in graph.node if n.op_type == "RNN"]
    if prefix is not None:
        nodes = [n for n in nodes if n.name.startswith(prefix)]
    if not nodes:
        raise LayoutError(
            f"{path} holds no RNN node (its ops: {', '.join(sorted(set(ops))) or 'none'})",
            "pass an ONNX model with RNN nodes",
        )
    inits = {t.name: t for t in graph.initializer}
    triples, acts, directions = [], set(), set()
    for k, node in enumerate(nodes):
        where = f"{path}: RNN node {node.name or k!r}"
        for unsupported in ("clip", "activation_alpha", "activation_beta"):
            if _attr(node, unsupported, None) is not None:
                raise LayoutError(
                    f"{where} sets {unsupported}", "rnnbench's RNN has no clip and plain tanh/relu"
                )
        direction = _attr(node, "direction", "forward")
        if direction not in ("forward", "bidirectional"):
            raise LayoutError(
                f"{where} has direction {direction!r}",
                "a lone reverse RNN has no rnnbench equivalent; use forward or bidirectional",
            )
        dirs = 2 if direction == "bidirectional" else 1
        names = _attr(node, "activations", ["Tanh"] * dirs)
        if any(a not in _ACTIVATIONS for a in names) or len(set(names)) != 1:
            raise LayoutError(
                f"{where} has activations {names}", "rnnbench reads Tanh or Relu, the same for all"
            )
        acts.add(_ACTIVATIONS[names[0]])
        directions.add(direction)
        arrays: list[Any] = []
        for slot, label in ((1, "W"), (2, "R"), (3, "B")):
            name = node.input[slot] if len(node.input) > slot else ""
            if not name:
                arrays.append(None)
                continue
            if name not in inits:
                raise LayoutError(
                    f"{where}: {label} ({name!r}) is not an initializer",
                    "rnnbench reads weights stored in the model, not computed or fed at run time",
                )
            arrays.append(numpy_helper.to_array(inits[name]))
        if arrays[0] is None or arrays[1] is None:
            raise LayoutError(f"{where} lacks W or R")
        hidden = _attr(node, "hidden_size", arrays[0].shape[1])
        if arrays[0].shape[1] != hidden:
            raise LayoutError(f"{where}: W {arrays[0].shape} does not match hidden_size {hidden}")
        triples.append(tuple(arrays))
    if len(acts) > 1 or len(directions) > 1:
        raise LayoutError(
            f"{path}: the RNN nodes differ in activation or direction",
            "rnnbench's spec has one setting for all stacked layers",
        )
    has_bias = all(t[2] is not None for t in triples)
    weights = RNNWeights.from_onnx(
        [t if t[2] is not None else (t[0], t[1]) for t in triples],
        nonlinearity=acts.pop(),
        bias=has_bias,
    )
    return with_nonlinearity(weights, nonlinearity, True, path)
