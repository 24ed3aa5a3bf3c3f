"""Bare library objects that load the files ``rnnbench convert`` writes for every cell, the way a
user of each library would, with no rnnbench code in between (for tests/test_convert.py).

Every driver has the worker's ``call`` signature: ``f(arrays, **kwargs) -> (header, arrays)``
with ``arrays["x"]`` the batch-major input (B, T, I) and the output ``y`` (B, T, dirs * H),
float32. Keras and TF1 drivers run in rnnbench's pooled worker of the backend of that name
(``KERAS_BACKEND`` and ``TF_USE_LEGACY_KERAS`` are process-wide); torch and onnxruntime ones run
in the test process. Imported as ``format_drivers`` in the test process and as
``tests.format_drivers`` in a worker (the repo root is on its PYTHONPATH).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]
Result = tuple[dict[str, Any], Arrays]
CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


# --- PyTorch (in process) ------------------------------------------------------------------
def torch_load_state_dict(path: Path, spec: dict[str, Any], x: np.ndarray) -> Result:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` of the spec, ``load_state_dict(torch.load(path))``."""
    import torch

    kwargs: dict[str, Any] = {
        "num_layers": spec["num_layers"],
        "bidirectional": spec["bidirectional"],
        "bias": spec["bias"],
        "batch_first": True,
    }
    if spec["cell"] == "rnn":
        kwargs["nonlinearity"] = spec["nonlinearity"]
    module = getattr(torch.nn, CLASSES[spec["cell"]])(
        spec["input_size"], spec["hidden_size"], **kwargs
    )
    module.load_state_dict(torch.load(path, weights_only=True))  # strict: every key, no other
    with torch.no_grad():
        y, state = module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    states = state if isinstance(state, tuple) else (state,)
    return {}, {"y": y.numpy(), **{f"s{i}": s.numpy() for i, s in enumerate(states)}}


# --- ONNX (in process) --------------------------------------------------------------------------
def onnx_run(path: Path, x: np.ndarray) -> Result:
    """onnxruntime on the file; batch-major y back, and every graph output as it is."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xt = np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2))
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(names, {"X": xt})))
    y = np.ascontiguousarray(out.pop("Y").transpose(1, 0, 2))
    return {"outputs": names}, {"y": y, **out}


RECURRENT_OPS = ("RNN", "LSTM", "GRU")
_SLOTS = {"sequence_lens": 4, "initial_h": 5, "initial_c": 6}  # the recurrent nodes' inputs


def with_graph_inputs(model: Any, names: list[str]) -> Any:
    """The ONNX ``model`` with ``names`` (of ``sequence_lens``, ``initial_h``, ``initial_c``) fed
    to its recurrent nodes as graph inputs of those names, in the node's input slot of that
    name (empty slots before it filled with ""). ``sequence_lens`` (B,) int32 goes to every
    node; an initial state (dirs, B, H) only fits a model of one node."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [n for n in model.graph.node if n.op_type in RECURRENT_OPS]
    states = [n for n in names if n != "sequence_lens"]
    assert nodes and (not states or len(nodes) == 1), "an initial state input needs one node"
    hidden = {a.name: a.i for a in nodes[0].attribute}["hidden_size"]
    for node in nodes:
        inputs = list(node.input)
        for name in names:
            inputs += [""] * (_SLOTS[name] + 1 - len(inputs))
            inputs[_SLOTS[name]] = name
        del node.input[:]
        node.input.extend(inputs)
    for name in names:
        if name == "sequence_lens":
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.INT32, ["B"]))
        else:
            shape = ["D", "B", hidden]
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    onnx.checker.check_model(model)
    return model


def onnx_run_lengths(path: Path, x: np.ndarray, lengths: np.ndarray, h0: Any = None) -> Result:
    """onnxruntime on the file with ``lengths`` fed as every recurrent node's ``sequence_lens``
    (and ``h0``, an array or an LSTM's (h0, c0), as ``initial_h``/``initial_c`` of a one-node
    model); batch-major y back, and the final states as they are."""
    import onnx
    import onnxruntime as ort

    states = () if h0 is None else (tuple(h0) if isinstance(h0, tuple) else (h0,))
    names = ["sequence_lens", "initial_h", "initial_c"][: 1 + len(states)]
    model = with_graph_inputs(onnx.load(str(path)), names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"X": np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2))}
    feed["sequence_lens"] = np.asarray(lengths, np.int32)
    feed.update({n: np.asarray(s, np.float32) for n, s in zip(names[1:], states)})
    outputs = [o.name for o in session.get_outputs()]
    out = dict(zip(outputs, session.run(outputs, feed)))
    y = np.ascontiguousarray(out.pop("Y").transpose(1, 0, 2))
    return {"outputs": outputs, "inputs": [i.name for i in session.get_inputs()]}, {"y": y, **out}


# --- Keras 3 (keras worker) ----------------------------------------------------------------------
_KERAS_MODELS: dict[str, Any] = {}


def _keras_model(spec: dict[str, Any]) -> Any:
    import keras

    layers: list[Any] = [keras.Input((None, spec["input_size"]))]
    for _ in range(spec["num_layers"]):
        kwargs: dict[str, Any] = {"use_bias": spec["bias"], "return_sequences": True}
        if spec["cell"] == "rnn":
            layer = keras.layers.SimpleRNN(
                spec["hidden_size"], activation=spec["nonlinearity"], **kwargs
            )
        elif spec["cell"] == "lstm":
            layer = keras.layers.LSTM(spec["hidden_size"], **kwargs)
        else:
            layer = keras.layers.GRU(spec["hidden_size"], reset_after=spec["reset_after"], **kwargs)
        layers.append(keras.layers.Bidirectional(layer) if spec["bidirectional"] else layer)
    return keras.Sequential(layers)


def keras_load_weights(arrays: Arrays, path: str, spec: dict[str, Any]) -> Result:
    """A Keras model of the spec's layers, ``model.load_weights(path)``, run on x."""
    import keras

    key = json.dumps(spec, sort_keys=True)
    model = _KERAS_MODELS.get(key) or _KERAS_MODELS.setdefault(key, _keras_model(spec))
    model.load_weights(path)  # every weight of the model comes from the file
    y = keras.ops.convert_to_numpy(model(np.asarray(arrays["x"], np.float32)))
    return {"weights": [w.path for w in model.weights]}, {"y": np.asarray(y)}


# --- TF1 (tf1 worker) ----------------------------------------------------------------------------
_TF1_GRAPHS: dict[str, tuple[Any, ...]] = {}


def _tf1() -> Any:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run TF1 drivers in a TF1 worker"
    import tensorflow as tf

    if tf.executing_eagerly():
        tf.compat.v1.disable_v2_behavior()
    return tf


def _tf1_graph(spec: dict[str, Any], forget_bias: float) -> tuple[Any, ...]:
    """(x, y, saver, session, variables): the spec's layers as TF1 users built them, with
    TF1's default scopes (dynamic_rnn, MultiRNNCell, bidirectional_dynamic_rnn, one per layer
    under stack_bidirectional_rnn/cell_k when stacked), cached per spec."""
    key = json.dumps([spec, forget_bias], sort_keys=True)
    if key in _TF1_GRAPHS:
        return _TF1_GRAPHS[key]
    tf = _tf1()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():

        def new_cell() -> Any:
            if spec["cell"] == "lstm":
                return v1.nn.rnn_cell.LSTMCell(spec["hidden_size"], forget_bias=forget_bias)
            if spec["cell"] == "gru":
                return v1.nn.rnn_cell.GRUCell(spec["hidden_size"])
            act = {"tanh": tf.tanh, "relu": tf.nn.relu}[spec["nonlinearity"]]
            return v1.nn.rnn_cell.BasicRNNCell(spec["hidden_size"], activation=act)

        x = v1.placeholder(tf.float32, [None, None, spec["input_size"]], name="x")
        layers = spec["num_layers"]
        if not spec["bidirectional"]:
            cells = [new_cell() for _ in range(layers)]
            stack = cells[0] if layers == 1 else v1.nn.rnn_cell.MultiRNNCell(cells)
            y, _ = v1.nn.dynamic_rnn(stack, x, dtype=tf.float32)
        elif layers == 1:
            (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(
                new_cell(), new_cell(), x, dtype=tf.float32
            )
            y = tf.concat([fw, bw], axis=-1)
        else:
            y = x
            with v1.variable_scope("stack_bidirectional_rnn"):
                for k in range(layers):
                    with v1.variable_scope(f"cell_{k}"):
                        (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(
                            new_cell(), new_cell(), y, dtype=tf.float32
                        )
                        y = tf.concat([fw, bw], axis=-1)
        variables = v1.global_variables()
        saver = v1.train.Saver()
    _TF1_GRAPHS[key] = (x, y, saver, v1.Session(graph=graph), variables)
    return _TF1_GRAPHS[key]


def tf1_restore_checkpoint(
    arrays: Arrays, path: str, spec: dict[str, Any], forget_bias: float
) -> Result:
    """``Saver().restore(sess, path)`` into the spec's TF1 graph (every variable, or it fails)."""
    x, y, saver, sess, variables = _tf1_graph(spec, forget_bias)
    saver.restore(sess, path)
    names = sorted(v.name for v in variables)
    return {"variables": names}, {"y": sess.run(y, {x: arrays["x"]})}


def tf1_assign_by_name(
    arrays: Arrays, path: str, spec: dict[str, Any], forget_bias: float
) -> Result:
    """Every variable of the spec's TF1 graph loaded from the .tf1.npz entry of its name."""
    x, y, _, sess, variables = _tf1_graph(spec, forget_bias)
    with np.load(path, allow_pickle=False) as data:
        named = {name: data[name] for name in data.files}
    missing = sorted({v.name[:-2] for v in variables} ^ set(named))
    assert not missing, f"names TF1 made and the file holds differ: {missing}"
    for v in variables:
        v.load(named[v.name[:-2]], sess)
    return {}, {"y": sess.run(y, {x: arrays["x"]})}


# --- where each runs ----------------------------------------------------------------------------
def worker_call(library: str, function: str, arrays: Arrays, **kwargs: Any) -> Result:
    """Run ``function`` of this module in rnnbench's pooled worker of ``library`` (keras, tf1)."""
    from rnnbench.process import pooled_worker
    from rnnbench.registry import backend_info

    worker = pooled_worker(backend_info(library))
    return worker.call(f"tests.format_drivers:{function}", arrays=arrays, timeout=300, **kwargs)
