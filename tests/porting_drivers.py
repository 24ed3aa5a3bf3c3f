"""Bare library objects for the porting tests: each library's own layer, built and loaded the way
a user would, with no rnnbench adapter in between.

Every driver has the worker's ``call`` signature: ``f(arrays=..., **case) -> (header, arrays)``.
A case names the layer: ``cell`` ("rnn", "lstm" or "gru"; "rnn" when absent), ``reset_after``
(GRUs), ``input_size``, ``hidden_size``, ``num_layers``, ``bidirectional``, ``nonlinearity``
(the vanilla RNN's) and ``seed``.
``*_source`` builds the layer with the library's *own* initializer and returns its native
weights and its output; ``*_target`` builds a fresh layer, loads native weights and returns its
output. Keras and TF1 drivers run in worker processes (``KERAS_BACKEND`` and
``TF_USE_LEGACY_KERAS`` are process-wide, read at import); torch and ONNX ones run in the test
process. Outputs are batch-major (batch, time, directions * hidden), float32.

Native weights cross the process pipe as flat name -> array dicts (``pack_*``/``unpack_*``); the
names are transport only and mean nothing to the libraries.

The module is imported as ``porting_drivers`` in the test process (pytest puts tests/ on the
path) and as ``tests.porting_drivers`` in a worker (the repo root is on its PYTHONPATH; tests/ is a
namespace package there, no ``__init__.py`` needed).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]
Result = tuple[dict[str, Any], Arrays]


# --- packing native structures for the pipe ------------------------------------------------
def pack_keras(native: Any, num_layers: int) -> Arrays:
    lists = [native] if num_layers == 1 else native
    return {f"l{k}.{i}": np.asarray(a) for k, ws in enumerate(lists) for i, a in enumerate(ws)}


def unpack_keras(arrays: Arrays, num_layers: int) -> list[list[np.ndarray]]:
    """One get_weights() list per layer."""
    out = []
    for k in range(num_layers):
        n = sum(1 for key in arrays if key.startswith(f"l{k}."))
        out.append([arrays[f"l{k}.{i}"] for i in range(n)])
    return out


def pack_tf1(native: Any, num_layers: int, bidirectional: bool) -> Arrays:
    """Per direction a (kernel, bias) pair (BasicRNNCell, LSTMCell) or a GRUCell's dict
    ``{"gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"}``."""
    layers = [native] if num_layers == 1 else native
    out = {}
    for k, entry in enumerate(layers):
        directions = entry if bidirectional else (entry,)
        for d, arrays in enumerate(directions):
            named = arrays if isinstance(arrays, dict) else dict(zip(("kernel", "bias"), arrays))
            for name, a in named.items():
                out[f"l{k}.d{d}.{name}"] = np.asarray(a)
    return out


def unpack_tf1(arrays: Arrays, num_layers: int, bidirectional: bool) -> Any:
    """The structure ``RNNWeights.to_tf1()`` returns (and ``from_tf1`` takes)."""
    layers: list[Any] = []
    for k in range(num_layers):
        directions: list[Any] = []
        for d in range(2 if bidirectional else 1):
            prefix = f"l{k}.d{d}."
            if prefix + "kernel" in arrays:
                directions.append((arrays[prefix + "kernel"], arrays[prefix + "bias"]))
            else:  # a GRUCell's four arrays
                directions.append(
                    {n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix)}
                )
        layers.append(tuple(directions) if bidirectional else directions[0])
    return layers[0] if num_layers == 1 else layers


def pack_onnx(native: Any, num_layers: int) -> Arrays:
    triples = [native] if num_layers == 1 else native
    return {f"l{k}.{n}": np.asarray(a) for k, t in enumerate(triples) for n, a in zip("WRB", t)}


def unpack_onnx(arrays: Arrays, num_layers: int) -> list[tuple[np.ndarray, ...]]:
    return [tuple(arrays[f"l{k}.{n}"] for n in "WRB") for k in range(num_layers)]


# --- PyTorch (in process) ------------------------------------------------------------------
def _torch_rnn(case: dict[str, Any]) -> Any:
    """nn.RNN, nn.LSTM or nn.GRU (reset-after: the only GRU torch has)."""
    import torch

    cell = case.get("cell", "rnn")
    assert cell != "gru" or case.get("reset_after", True), "nn.GRU is reset-after only"
    kwargs: dict[str, Any] = {"nonlinearity": case["nonlinearity"]} if cell == "rnn" else {}
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    return cls(
        case["input_size"],
        case["hidden_size"],
        num_layers=case["num_layers"],
        bidirectional=case["bidirectional"],
        batch_first=True,
        **kwargs,
    )


def _torch_run(module: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        y, _ = module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    return np.asarray(y.numpy())


def torch_source(arrays: Arrays, **case: Any) -> Result:
    import torch

    torch.manual_seed(case["seed"])
    module = _torch_rnn(case)  # torch's own init: every array uniform(-1/sqrt(H), 1/sqrt(H))
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    return {}, {"y": _torch_run(module, arrays["x"]), **state}


def torch_target(arrays: Arrays, **case: Any) -> Result:
    import torch

    module = _torch_rnn(case)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k != "x"}
    module.load_state_dict(state)  # strict: every key of the module, and no other
    return {}, {"y": _torch_run(module, arrays["x"])}


# --- Keras 3 (worker with KERAS_BACKEND set) --------------------------------------------------
def _keras_layer(keras: Any, case: dict[str, Any]) -> Any:
    cell, h = case.get("cell", "rnn"), case["hidden_size"]
    if cell == "lstm":
        return keras.layers.LSTM(h, return_sequences=True)
    if cell == "gru":
        return keras.layers.GRU(h, reset_after=case.get("reset_after", True), return_sequences=True)
    return keras.layers.SimpleRNN(h, activation=case["nonlinearity"], return_sequences=True)


def _keras_model(case: dict[str, Any]) -> Any:
    import keras

    layers: list[Any] = [keras.Input((None, case["input_size"]))]
    for _ in range(case["num_layers"]):
        rnn = _keras_layer(keras, case)
        layers.append(keras.layers.Bidirectional(rnn) if case["bidirectional"] else rnn)
    return keras.Sequential(layers)


def _keras_run(model: Any, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model(np.asarray(x, np.float32))))


def keras_source(arrays: Arrays, **case: Any) -> Result:
    import keras

    keras.utils.set_random_seed(case["seed"])
    # Keras' own init: glorot_uniform kernel, orthogonal recurrent kernel, zero bias (an LSTM's
    # f block 1: unit_forget_bias=True).
    model = _keras_model(case)
    native = [layer.get_weights() for layer in model.layers]
    packed = pack_keras(native[0] if case["num_layers"] == 1 else native, case["num_layers"])
    return {"backend": keras.backend.backend()}, {"y": _keras_run(model, arrays["x"]), **packed}


_KERAS_MODELS: dict[str, Any] = {}


def _keras_cached_model(case: dict[str, Any]) -> Any:
    """One model per case and worker: building is the slow part, set_weights is not."""
    import json

    key = json.dumps(case, sort_keys=True)
    if key not in _KERAS_MODELS:
        _KERAS_MODELS[key] = _keras_model(case)
    return _KERAS_MODELS[key]


def keras_target(arrays: Arrays, **case: Any) -> Result:
    model = _keras_cached_model(case)
    for layer, weights in zip(model.layers, unpack_keras(arrays, case["num_layers"])):
        layer.set_weights(weights)  # every array of the layer: nothing left from before
    return {}, {"y": _keras_run(model, arrays["x"])}


def keras_load_weights_file(arrays: Arrays, path: str, **case: Any) -> Result:
    """A Keras model of the case, ``load_weights(path)`` (a .weights.h5), run on x."""
    model = _keras_cached_model(case)
    model.load_weights(path)  # every weight of the model comes from the file
    return {}, {"y": _keras_run(model, arrays["x"])}


# --- TF1 (worker with TF_USE_LEGACY_KERAS=1) ------------------------------------------------
def _tf1() -> Any:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run TF1 drivers in a TF1 worker"
    import tensorflow as tf

    if tf.executing_eagerly():
        tf.compat.v1.disable_v2_behavior()  # the notebook's TF1 mode, for this whole process
    return tf


def _tf1_graph(case: dict[str, Any]) -> tuple[Any, Any, Any, list[list[Any]]]:
    """(graph, x placeholder, y, cells[layer][direction]) with TF1's usual scope names:
    ``rnn/basic_rnn_cell`` (one layer; ``lstm_cell``, ``gru_cell`` for the gated cells),
    ``rnn/multi_rnn_cell/cell_k/...`` (stacked), ``bidirectional_rnn/fw|bw/...`` (one
    bidirectional layer) and, for stacked bidirectional, one ``bidirectional_dynamic_rnn`` per
    layer under ``stack_bidirectional_rnn/cell_k`` with the two directions' outputs concatenated
    in between (as tf.contrib's stack_bidirectional_dynamic_rnn did). The LSTM is an
    ``LSTMCell`` with its defaults (forget_bias 1.0, added at run time); the GRU a ``GRUCell``
    (reset before the matmul: TF1 has no other)."""
    tf = _tf1()
    v1 = tf.compat.v1
    kind = case.get("cell", "rnn")
    assert kind != "gru" or case.get("reset_after") is False, "TF1's GRUCell is reset-before"
    act = {"tanh": tf.tanh, "relu": tf.nn.relu}[case["nonlinearity"]]
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(case.get("seed", 0))

        def new_cell() -> Any:
            if kind == "lstm":
                return v1.nn.rnn_cell.LSTMCell(case["hidden_size"])
            if kind == "gru":
                return v1.nn.rnn_cell.GRUCell(case["hidden_size"])
            return v1.nn.rnn_cell.BasicRNNCell(case["hidden_size"], activation=act)

        x = v1.placeholder(tf.float32, [None, None, case["input_size"]], name="x")
        cells: list[list[Any]] = []
        if not case["bidirectional"]:
            cells = [[new_cell()] for _ in range(case["num_layers"])]
            cell = (
                cells[0][0]
                if len(cells) == 1
                else v1.nn.rnn_cell.MultiRNNCell([c[0] for c in cells])
            )
            y, _ = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
        elif case["num_layers"] == 1:
            cells = [[new_cell(), new_cell()]]
            (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(*cells[0], x, dtype=tf.float32)
            y = tf.concat([fw, bw], axis=-1)
        else:
            y = x
            with v1.variable_scope("stack_bidirectional_rnn"):
                for k in range(case["num_layers"]):
                    with v1.variable_scope(f"cell_{k}"):
                        pair = [new_cell(), new_cell()]
                        (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(*pair, y, dtype=tf.float32)
                        y = tf.concat([fw, bw], axis=-1)
                    cells.append(pair)
    return graph, x, y, cells


def _tf1_short_name(variable: Any) -> str:
    """A cell variable's name inside its cell: ``kernel``, ``bias`` (BasicRNNCell, LSTMCell)
    or ``gates/kernel``, ``gates/bias``, ``candidate/kernel``, ``candidate/bias`` (GRUCell)."""
    return str(variable.name[:-2].rsplit("_cell/", 1)[1])


def tf1_source(arrays: Arrays, **case: Any) -> Result:
    tf = _tf1()
    graph, x, y, cells = _tf1_graph(case)
    with tf.compat.v1.Session(graph=graph) as sess:
        # TF1's own init: glorot_uniform kernels, zero biases but a GRUCell's gates/bias (1.0),
        # under graph seed case["seed"]. An LSTMCell's forget_bias is not stored.
        sess.run(tf.compat.v1.global_variables_initializer())
        out = sess.run(y, {x: arrays["x"]})
        native = {}
        for k, row in enumerate(cells):
            for d, cell in enumerate(row):
                for v, value in zip(cell.variables, sess.run(cell.variables)):
                    native[f"l{k}.d{d}.{_tf1_short_name(v)}"] = value
        names = [v.name for v in tf.compat.v1.global_variables()]
    return {"variables": names}, {"y": out, **native}


_TARGETS: dict[str, tuple[Any, ...]] = {}


def tf1_target(arrays: Arrays, **case: Any) -> Result:
    """The case's graph (built once per case and worker, like a user's model), every cell
    variable loaded from ``arrays``, run on x."""
    import json

    key = json.dumps(case, sort_keys=True)
    if key not in _TARGETS:
        tf = _tf1()
        graph, x, y, cells = _tf1_graph(case)
        slots = [
            (v, f"l{k}.d{d}.{_tf1_short_name(v)}")
            for k, row in enumerate(cells)
            for d, cell in enumerate(row)
            for v in cell.variables
        ]
        with graph.as_default():
            assert len(slots) == len(tf.compat.v1.global_variables())
        _TARGETS[key] = (x, y, tf.compat.v1.Session(graph=graph), slots)
    x, y, sess, slots = _TARGETS[key]
    assert {name for _, name in slots} == set(arrays) - {"x"}, sorted(arrays)
    for v, name in slots:  # every variable is loaded: nothing left from init or a last call
        v.load(arrays[name], sess)
    return {}, {"y": sess.run(y, {x: arrays["x"]})}


_GRAPHS: dict[str, tuple[Any, ...]] = {}


def _cached_graph(case: dict[str, Any]) -> tuple[Any, ...]:
    """(x, y, saver, session, variables) per case, built once per worker (graph building is the
    slow part; restoring or assigning into it again is fast)."""
    import json

    key = json.dumps(case, sort_keys=True)
    if key not in _GRAPHS:
        tf = _tf1()
        graph, x, y, _ = _tf1_graph(case)
        with graph.as_default():
            variables = tf.compat.v1.global_variables()
            saver = tf.compat.v1.train.Saver()
        _GRAPHS[key] = (x, y, saver, tf.compat.v1.Session(graph=graph), variables)
    return _GRAPHS[key]


def tf1_restore_checkpoint(arrays: Arrays, path: str, **case: Any) -> Result:
    """A TF1 graph of the case, ``Saver().restore(sess, path)``, run on x."""
    x, y, saver, sess, _ = _cached_graph(case)
    saver.restore(sess, path)  # restores every variable of the graph, or fails
    return {}, {"y": sess.run(y, {x: arrays["x"]})}


# --- ONNX (in process, onnxruntime) ---------------------------------------------------------
def onnx_model_bytes(
    triples: list[tuple[np.ndarray, ...]],
    nonlinearity: str,
    hidden_size: int,
    input_size: int,
    cell: str = "rnn",
    reset_after: bool | None = None,
) -> bytes:
    """A model of one ``RNN``, ``LSTM`` or ``GRU`` node per layer. ONNX's recurrent nodes are
    time-major: X (T, B, I) and Y (T, dirs, B, H); between layers Y is transposed to
    (T, B, dirs, H) and reshaped to (T, B, dirs * H), the next layer's X. Graph output ``Y`` is
    (T, B, dirs * H). A GRU node gets ``linear_before_reset`` written out (1: reset after the
    matmul, as torch; 0: before, ONNX's default)."""
    from onnx import TensorProto, helper, numpy_helper

    dirs = triples[0][0].shape[0]
    attributes: dict[str, Any] = {
        "hidden_size": hidden_size,
        "direction": "bidirectional" if dirs == 2 else "forward",
    }
    if cell == "rnn":  # the gated nodes keep their default activations (sigmoid, tanh)
        attributes["activations"] = [{"tanh": "Tanh", "relu": "Relu"}[nonlinearity]] * dirs
    if cell == "gru":
        attributes["linear_before_reset"] = int(bool(reset_after))
    op = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape")]
    current = "X"
    for k, (W, R, B) in enumerate(triples):
        for name, arr in zip("WRB", (W, R, B)):
            inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), f"{name}{k}"))
        nodes += [
            helper.make_node(op, [current, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"], **attributes),
            helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"T{k}", "shape"], [f"X{k + 1}"]),
        ]
        current = f"X{k + 1}"
    nodes.append(helper.make_node("Identity", [current], ["Y"]))
    graph = helper.make_graph(
        nodes,
        "porting",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", input_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "B", dirs * hidden_size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def onnx_run(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run with onnxruntime on batch-major x; batch-major y back."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    xt = np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2))
    (y,) = session.run(["Y"], {"X": xt})
    return np.ascontiguousarray(np.asarray(y).transpose(1, 0, 2))


def onnx_source(arrays: Arrays, **case: Any) -> Result:
    from onnx import load_model_from_string, numpy_helper

    # ONNX has no initializer of its own: random initializers, uniform(+-1/sqrt(H)), into a model.
    rng = np.random.default_rng(case["seed"])
    h, dirs = case["hidden_size"], 2 if case["bidirectional"] else 1
    gh = {"rnn": 1, "lstm": 4, "gru": 3}[case.get("cell", "rnn")] * h  # gates * hidden
    bound = 1 / np.sqrt(h)
    triples = []
    for k in range(case["num_layers"]):
        i = case["input_size"] if k == 0 else dirs * h
        triples.append(
            tuple(
                rng.uniform(-bound, bound, shape).astype(np.float32)
                for shape in ((dirs, gh, i), (dirs, gh, h), (dirs, 2 * gh))
            )
        )
    model = _onnx_model(triples, case)
    # The native weights are read back from the model's initializers, as a user would.
    inits = {
        t.name: numpy_helper.to_array(t) for t in load_model_from_string(model).graph.initializer
    }
    native = {f"l{k}.{n}": inits[f"{n}{k}"] for k in range(case["num_layers"]) for n in "WRB"}
    return {}, {"y": onnx_run(model, arrays["x"]), **native}


def _onnx_model(triples: list[tuple[np.ndarray, ...]], case: dict[str, Any]) -> bytes:
    return onnx_model_bytes(
        triples,
        case["nonlinearity"],
        case["hidden_size"],
        case["input_size"],
        cell=case.get("cell", "rnn"),
        reset_after=case.get("reset_after"),
    )


def onnx_target(arrays: Arrays, **case: Any) -> Result:
    return {}, {
        "y": onnx_run(_onnx_model(unpack_onnx(arrays, case["num_layers"]), case), arrays["x"])
    }


# --- where each library's half runs ---------------------------------------------------------
LIBRARIES = ("torch", "keras", "tf1", "onnx")


def holds(library: str, cell: str, reset_after: bool | None = None) -> bool:
    """Whether ``library`` has a layer computing the cell: every one has the RNN and the LSTM;
    torch's nn.GRU only resets after the recurrent matmul, TF1's GRUCell only before it."""
    if cell != "gru":
        return True
    return {"torch": bool(reset_after), "tf1": not reset_after}.get(library, True)


# Keras and TF1 need process-wide settings: they run in rnnbench's pooled worker of the backend
# of that name (the same process the equivalence suite's cells use, so TensorFlow is imported
# once per process kind in a test session). torch and onnxruntime run here.
_WORKER_BACKEND = {"keras": "keras", "tf1": "tf1"}
_MODULES = {
    "torch": ("torch",),
    "keras": ("keras", "tensorflow"),
    "tf1": ("tensorflow", "tf_keras"),
    "onnx": ("onnx", "onnxruntime"),
}


def import_library(arrays: Arrays, library: str) -> Result:
    """Import a library (in a worker: done ahead, concurrently, to overlap the start-up)."""
    if library == "tf1":
        _tf1()
    else:
        for name in _MODULES[library]:
            __import__(name)
    return {}, {}


def missing(library: str) -> list[str]:
    import importlib.util

    return [m for m in _MODULES[library] if importlib.util.find_spec(m) is None]


class Runner:
    """Calls this module's drivers for one library, here or in its worker process."""

    def __init__(self, library: str) -> None:
        self.library = library
        self.worker: Any = None
        if library in _WORKER_BACKEND:
            from rnnbench.process import pooled_worker
            from rnnbench.registry import backend_info

            self.worker = pooled_worker(backend_info(_WORKER_BACKEND[library]))

    def call(self, function: str, arrays: Arrays, **kwargs: Any) -> Result:
        if self.worker is None:
            return globals()[function](arrays=arrays, **kwargs)  # type: ignore[no-any-return]
        return self.worker.call(  # type: ignore[no-any-return]
            f"tests.porting_drivers:{function}", arrays=arrays, timeout=300, **kwargs
        )


_RUNNERS: dict[str, Runner] = {}


def runners(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, Runner]:
    """One Runner per library for the whole session; TensorFlow imports overlap in threads."""
    from concurrent.futures import ThreadPoolExecutor

    new = [lib for lib in libraries if lib not in _RUNNERS and not missing(lib)]
    for lib in new:
        _RUNNERS[lib] = Runner(lib)
    with ThreadPoolExecutor(max(len(new), 1)) as pool:
        list(pool.map(lambda lib: _RUNNERS[lib].call("import_library", {}, library=lib), new))
    return {lib: _RUNNERS[lib] for lib in libraries if lib in _RUNNERS}


def tf1_assign_by_name(arrays: Arrays, path: str, **case: Any) -> Result:
    """A TF1 graph of the case whose variables are assigned from a .tf1.npz by name, run on x."""
    x, y, _, sess, variables = _cached_graph(case)
    with np.load(path, allow_pickle=False) as data:
        named = {name: data[name] for name in data.files}
    assert {v.name[:-2] for v in variables} == set(named), sorted(named)
    for v in variables:
        v.load(named[v.name[:-2]], sess)
    return {}, {"y": sess.run(y, {x: arrays["x"]})}
