"""An ONNX model of ``RNN``, ``LSTM`` or ``GRU`` nodes (``.onnx``), written with ``onnx.helper``
so that onnxruntime runs it, and read back from the nodes' initializers and attributes.

The model written: input ``X`` (T, B, I), time-major as ONNX's recurrent operators want it
(``layout`` 0; the batch-major ``layout=1`` is not implemented by onnxruntime's CPU kernels); one
node per layer (ONNX's recurrent nodes are one layer each), whose ``Y`` (T, dirs, B, H) is
transposed to (T, B, dirs, H) and reshaped to (T, B, dirs * H) for the next layer; outputs
``Y`` (T, B, dirs * H) and ``Y_h`` (layers * dirs, B, H), plus ``Y_c`` for an LSTM, the same as
``torch.nn.RNN/LSTM/GRU(batch_first=False)``. Weights: ``W`` (dirs, G*H, I), ``R`` (dirs, G*H,
H), ``B`` (dirs, 2*G*H) = [Wb, Rb], gates in ONNX's order (LSTM i, o, f, c; GRU z, r, h): both
biases, exact. The file records the cell (the node type), the vanilla RNN's activation, and a
GRU's formula: ``linear_before_reset`` is written explicitly (1 = reset-after, PyTorch's; 0 =
reset-before), and read as 0 when absent, ONNX's default. onnxruntime runs these operators in
float32 only: weights are written as float32.

Read refuses what the canonical cells cannot hold, with the reason: LSTM peepholes (a non-zero
``P``), ``clip``, ``input_forget=1``, activations other than the defaults (Sigmoid, Tanh, Tanh
for an LSTM; Sigmoid, Tanh for a GRU), ``activation_alpha``/``activation_beta``, and a lone
``reverse`` direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnbench import layouts
from rnnbench.errors import LayoutError, ShapeError, SpecError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = True
OPSET = 17
IR_VERSION = 8  # what onnxruntime >= 1.14 reads
_ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu"}
OP_TYPES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_OP_CELLS = {v: k for k, v in OP_TYPES.items()}
# The activations ONNX applies when the attribute is absent, per direction: the canonical cells'.
_DEFAULT_ACTIVATIONS = {"lstm": ["Sigmoid", "Tanh", "Tanh"], "gru": ["Sigmoid", "Tanh"]}
_PEEPHOLE_SLOT = 7  # LSTM inputs: X, W, R, B, sequence_lens, initial_h, initial_c, P


def two_biases(spec: RNNSpec) -> bool:
    return True


def node_attributes(spec: RNNSpec) -> dict[str, Any]:
    """The attributes of one layer's node (see :func:`rnnbench.layouts.onnx_attributes`): a
    GRU's linear_before_reset is always explicit, since its absence means 0, reset-before."""
    attrs = layouts.onnx_attributes(spec)
    assert spec.cell != "gru" or "linear_before_reset" in attrs
    return attrs


def build_model(weights: RNNWeights) -> Any:
    """The ``onnx.ModelProto`` described in the module docstring."""
    onnx = import_library("onnx", "onnx")
    from onnx import TensorProto, helper, numpy_helper

    spec = weights.spec
    dirs, hidden = spec.num_directions, spec.hidden_size
    native = weights.astype(np.float32).to_onnx()
    triples = [native] if spec.num_layers == 1 else native
    op = OP_TYPES[spec.cell]
    attrs = node_attributes(spec)
    states = ["Y_h", "Y_c"] if spec.cell == "lstm" else ["Y_h"]
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "concat_directions")]
    nodes = []
    current = "X"
    finals: dict[str, list[str]] = {s: [] for s in states}
    for k, (W, R, B) in enumerate(triples):
        names = [f"W_{k}", f"R_{k}"] + ([f"B_{k}"] if spec.bias else [])
        for name, arr in zip(names, (W, R, B)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        nodes += [
            helper.make_node(
                op,
                [current, *names],
                [f"Y_{k}"] + [f"{s}_{k}" for s in states],
                name=f"{op.lower()}_{k}",
                **attrs,
            ),
            helper.make_node("Transpose", [f"Y_{k}"], [f"Y_t_{k}"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"Y_t_{k}", "concat_directions"], [f"X_{k + 1}"]),
        ]
        current = f"X_{k + 1}"
        for s in states:
            finals[s].append(f"{s}_{k}")
    nodes.append(helper.make_node("Identity", [current], ["Y"]))
    for s in states:
        nodes.append(helper.make_node("Concat", finals[s], [s], axis=0))
    graph = helper.make_graph(
        nodes,
        f"rnnbench_{spec.cell}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", spec.input_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "B", dirs * hidden])]
        + [
            helper.make_tensor_value_info(
                s, TensorProto.FLOAT, [spec.num_layers * dirs, "B", hidden]
            )
            for s in states
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnnbench"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    model = build_model(weights)
    with atomic_path(path, ".onnx") as tmp:
        tmp.write_bytes(model.SerializeToString())
    outputs = (
        "Y (T, B, dirs*H), Y_h and Y_c"
        if weights.spec.cell == "lstm"
        else ("Y (T, B, dirs*H) and Y_h")
    )
    notes = [f"input X is time-major (T, B, I); outputs {outputs}"]
    if weights.spec.cell == "gru":
        notes.append(f"GRU nodes with linear_before_reset={int(bool(weights.spec.reset_after))}")
    if weights.dtype != np.float32:
        notes.append("weights written as float32 (onnxruntime's recurrent operators run float32)")
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


def _check_node(node: Any, cell: str, dirs: int, where: str, inits: dict[str, Any]) -> Any:
    """Refuse what the canonical cell cannot hold; return the RNN's nonlinearity (None for a
    gated cell) ."""
    from onnx import numpy_helper

    if _attr(node, "clip", None) is not None:
        raise LayoutError(
            f"{where} sets clip={_attr(node, 'clip', None)}: its gate inputs are clipped, which "
            "PyTorch's layers and rnnbench's cells never do",
            "export the model without clip",
        )
    for unsupported in ("activation_alpha", "activation_beta"):
        if _attr(node, unsupported, None) is not None:
            raise LayoutError(
                f"{where} sets {unsupported}",
                "rnnbench's cells use plain activations (no alpha/beta parameters)",
            )
    if cell == "rnn":
        names = _attr(node, "activations", ["Tanh"] * dirs)
        if any(a not in _ACTIVATIONS for a in names) or len(set(names)) != 1:
            raise LayoutError(
                f"{where} has activations {names}", "rnnbench reads Tanh or Relu, the same for all"
            )
        return _ACTIVATIONS[names[0]]
    default = _DEFAULT_ACTIVATIONS[cell] * dirs
    names = _attr(node, "activations", default)
    if [str(a).lower() for a in names] != [a.lower() for a in default]:
        raise LayoutError(
            f"{where} has activations {names}, not the {OP_TYPES[cell]} defaults {default}",
            "rnnbench's gated cells use sigmoid gates and tanh; export with the default "
            "activations",
        )
    if cell == "lstm":
        if _attr(node, "input_forget", 0):
            raise LayoutError(
                f"{where} sets input_forget=1 (the input and forget gates are coupled), which "
                "PyTorch's LSTM and rnnbench's do not do",
                "export the model with input_forget=0",
            )
        slot = node.input[_PEEPHOLE_SLOT] if len(node.input) > _PEEPHOLE_SLOT else ""
        if slot:
            if slot not in inits:
                raise LayoutError(
                    f"{where}: its peephole weights P ({slot!r}) are not an initializer",
                    "rnnbench reads weights stored in the model, and has no peepholes",
                )
            if np.any(numpy_helper.to_array(inits[slot])):
                raise LayoutError(
                    f"{where} has non-zero peephole weights P: PyTorch's LSTM and rnnbench's "
                    "have no peephole term, so no exact conversion exists",
                    "export the model without peepholes (P absent or zero)",
                )
    return None


def read(
    path: Path,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
) -> RNNWeights:
    onnx = import_library("onnx", "onnx")
    from onnx import numpy_helper

    require_file(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WeightFileError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})",
            "pass a .onnx file holding RNN, LSTM or GRU nodes",
        ) from exc
    graph = model.graph
    ops = [n.op_type for n in graph.node]
    nodes = [n for n in graph.node if n.op_type in _OP_CELLS]
    if prefix is not None:
        nodes = [n for n in nodes if n.name.startswith(prefix)]
    if not nodes:
        raise LayoutError(
            f"{path} holds no RNN, LSTM or GRU node (its ops: "
            f"{', '.join(sorted(set(ops))) or 'none'})",
            "pass an ONNX model of recurrent nodes",
        )
    kinds = sorted({n.op_type for n in nodes})
    if len(kinds) > 1:
        raise LayoutError(
            f"{path} mixes {' and '.join(kinds)} nodes",
            "rnnbench's spec has one cell for all stacked layers; pick one node with --prefix",
        )
    cell = _OP_CELLS[kinds[0]]
    inits = {t.name: t for t in graph.initializer}
    triples, acts, directions, formulas = [], set(), set(), set()
    for k, node in enumerate(nodes):
        where = f"{path}: {node.op_type} node {node.name or k!r}"
        direction = _attr(node, "direction", "forward")
        if direction not in ("forward", "bidirectional"):
            raise LayoutError(
                f"{where} has direction {direction!r}",
                "a lone reverse layer has no rnnbench equivalent; use forward or bidirectional",
            )
        dirs = 2 if direction == "bidirectional" else 1
        acts.add(_check_node(node, cell, dirs, where, inits))
        directions.add(direction)
        if cell == "gru":
            formulas.add(int(_attr(node, "linear_before_reset", 0)))  # ONNX's default: 0
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
        gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
        hidden = _attr(node, "hidden_size", None)
        if arrays[0].ndim != 3 or (hidden is not None and arrays[0].shape[1] != gates * hidden):
            raise ShapeError(
                f"{where}: W {arrays[0].shape} does not match hidden_size {hidden} "
                f"({gates} gate block(s) of it)",
                f"W is (dirs, {gates} * hidden_size, input_size)",
            )
        triples.append(tuple(arrays))
    if len(acts) > 1 or len(directions) > 1 or len(formulas) > 1:
        raise LayoutError(
            f"{path}: the {kinds[0]} nodes differ in activation, direction or linear_before_reset",
            "rnnbench's spec has one setting for all stacked layers",
        )
    kwargs: dict[str, Any] = {"cell": cell}
    if cell == "rnn":
        kwargs["nonlinearity"] = acts.pop()
    if cell == "gru":
        kwargs["linear_before_reset"] = formulas.pop()
    has_bias = all(t[2] is not None for t in triples)
    try:
        weights = RNNWeights.from_onnx(
            [t if t[2] is not None else (t[0], t[1]) for t in triples], bias=has_bias, **kwargs
        )
    except (LayoutError, ShapeError, SpecError) as exc:
        raise type(exc)(f"{path}: {str(exc).splitlines()[0]}", exc.hint) from exc
    return with_nonlinearity(weights, nonlinearity, True, path)
