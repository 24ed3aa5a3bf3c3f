"""Make the golden files of tests/test_golden.py: LSTM and GRU outputs computed by each library's
OWN layer with its OWN initializer (no rnnbench code runs here), stored with the native weights.

Run by hand, never by the test suite, from the repository root::

    .venv/bin/python tests/data/golden/make_golden.py            # every library
    .venv/bin/python tests/data/golden/make_golden.py torch onnx # some of them

Each library runs in a subprocess with the environment it needs (``KERAS_BACKEND=tensorflow`` for
Keras 3, ``TF_USE_LEGACY_KERAS=1`` for the TF1 cells: both are read once, when TensorFlow or Keras
is imported). Files are JSON: plain nested lists of numbers written with Python's float repr
(float32 values are widened to float64 first, which is exact), so they round-trip bit for bit.
No pickle.

Every file holds one layer kind and two models (one direction, and one bidirectional layer),
each with its native weights (the library's names, shapes and gate order) and two runs (no
initial state, and a given initial state), each with the input, the output and the final
state(s) in the library's own layout and order. Torch, Keras and TF1 compute in float64 (their
layers can, so the recorded outputs pin the formulas to about 1e-15); onnxruntime's LSTM and GRU
only run float32, and ONNX has no initializer of its own, so its weights are hand-made arrays.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
INPUT, HIDDEN, TIME, BATCH = 3, 4, 5, 2
ENV = {
    "torch": {},
    "onnx": {},
    "keras": {"KERAS_BACKEND": "tensorflow"},
    "tf1": {"TF_USE_LEGACY_KERAS": "1"},
}


def lists(a: Any) -> Any:
    """An array as nested lists of Python floats (float64: json writes their exact repr)."""
    return np.asarray(a, np.float64).tolist()


def inputs(seed: int, dtype: Any, directions: int, states: tuple[str, ...]) -> dict[str, Any]:
    """x (B, T, I) and one initial state (directions, B, H) per state name, standard normal
    (states scaled by 0.5), in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, TIME, INPUT)).astype(dtype)
    init = {
        s: (0.5 * rng.standard_normal((directions, BATCH, HIDDEN))).astype(dtype) for s in states
    }
    return {"x": x, **init}


def versions(*names: str) -> dict[str, str]:
    import importlib.metadata

    out = {"python": platform.python_version()}
    for name in ("numpy", *names):
        out[name] = importlib.metadata.version(name)
    return out


def document(
    library: str,
    layer: str,
    cell: str,
    reset_after: bool | None,
    dtype: str,
    models: list[dict[str, Any]],
    notes: str,
    dists: tuple[str, ...],
) -> dict[str, Any]:
    return {
        "library": library,
        "layer": layer,
        "cell": cell,
        "reset_after": reset_after,
        "dtype": dtype,
        "input_size": INPUT,
        "hidden_size": HIDDEN,
        "batch": BATCH,
        "time": TIME,
        "versions": versions(*dists),
        "made_by": "tests/data/golden/make_golden.py",
        "notes": notes,
        "models": models,
    }


# --- PyTorch ---------------------------------------------------------------------------------
def make_torch() -> dict[str, dict[str, Any]]:
    import torch

    out = {}
    for cell, cls in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        states = ("h", "c") if cell == "lstm" else ("h",)
        models = []
        for m, bidirectional in enumerate((False, True)):
            torch.manual_seed(100 + m)
            # The library's own init: every array uniform(-1/sqrt(H), 1/sqrt(H)), here in float64.
            module = cls(
                INPUT,
                HIDDEN,
                batch_first=True,
                bidirectional=bidirectional,
                dtype=torch.float64,
            )
            weights = {k: lists(v.detach()) for k, v in module.state_dict().items()}
            data = inputs(200 + m, np.float64, 2 if bidirectional else 1, states)
            runs = []
            for with_state in (False, True):
                x = torch.from_numpy(data["x"])
                init = tuple(torch.from_numpy(data[s]) for s in states)
                with torch.no_grad():
                    if with_state:
                        y, fin = module(x, init if cell == "lstm" else init[0])
                    else:
                        y, fin = module(x)
                final = fin if cell == "lstm" else (fin,)
                runs.append(
                    {
                        "name": "initial-state" if with_state else "zero-state",
                        "x": lists(data["x"]),
                        "initial_state": (
                            {f"{s}0": lists(data[s]) for s in states} if with_state else None
                        ),
                        "output": {"output": lists(y)},
                        "final_state": {f"{s}_n": lists(f) for s, f in zip(states, final)},
                    }
                )
            models.append(
                {
                    "name": "bidirectional" if bidirectional else "one-direction",
                    "bidirectional": bidirectional,
                    "options": {"batch_first": True, "bidirectional": bidirectional},
                    "weights": weights,
                    "runs": runs,
                }
            )
        notes = (
            f"torch.nn.{cls.__name__}(3, 4, batch_first=True, dtype=torch.float64) "
            "(bidirectional=True for the second model) after torch.manual_seed(100 + model "
            "index); x (B, T, I); states (directions, B, H); "
            "gate order " + ("i,f,g,o" if cell == "lstm" else "r,z,n (reset after the matmul)")
        )
        out[f"torch_{cell}"] = document(
            "torch", f"torch.nn.{cls.__name__}", cell, None if cell == "lstm" else True,
            "float64", models, notes, ("torch",),
        )  # fmt: skip
    return out


# --- Keras 3 on TensorFlow -------------------------------------------------------------------
def make_keras() -> dict[str, dict[str, Any]]:
    import keras

    assert keras.backend.backend() == "tensorflow", "run with KERAS_BACKEND=tensorflow"
    kinds = (
        ("keras_lstm", "lstm", None, "LSTM"),
        ("keras_gru", "gru", True, "GRU"),
        ("keras_gru_reset_before", "gru", False, "GRU"),
    )
    out = {}
    for name, cell, reset_after, cls_name in kinds:
        states = ("h", "c") if cell == "lstm" else ("h",)
        models = []
        for m, bidirectional in enumerate((False, True)):
            keras.utils.set_random_seed(300 + m)
            cls = getattr(keras.layers, cls_name)
            options: dict[str, Any] = {"return_sequences": True, "return_state": True}
            if reset_after is not None:
                options["reset_after"] = reset_after
            # The library's own init: glorot_uniform kernel, orthogonal recurrent kernel, zero
            # bias (with unit_forget_bias=True, the LSTM's default, its f block is 1).
            rnn = cls(HIDDEN, dtype="float64", name=cls_name.lower(), **options)
            layer = (
                keras.layers.Bidirectional(rnn, dtype="float64", name="bidirectional")
                if bidirectional
                else rnn
            )
            data = inputs(400 + m, np.float64, 2 if bidirectional else 1, states)
            # Keras' state lists: [h, c] (LSTM) or [h]; Bidirectional: forward's, then backward's.
            dirs = ("forward_", "backward_") if bidirectional else ("",)
            names = [f"{d}{s}" for d in dirs for s in states]
            arrays = [data[s][i] for i in range(len(dirs)) for s in states]
            runs = []
            layer.build((None, None, INPUT))
            for with_state in (False, True):
                if with_state:
                    result = layer(data["x"], initial_state=list(arrays))
                else:
                    result = layer(data["x"])
                result = [keras.ops.convert_to_numpy(r) for r in result]
                runs.append(
                    {
                        "name": "initial-state" if with_state else "zero-state",
                        "x": lists(data["x"]),
                        "initial_state": (
                            {n: lists(a) for n, a in zip(names, arrays)} if with_state else None
                        ),
                        "output": {"output": lists(result[0])},
                        "final_state": {n: lists(a) for n, a in zip(names, result[1:])},
                    }
                )
            assert len(layer.weights) == len(layer.get_weights())
            weights = {v.path: lists(a) for v, a in zip(layer.weights, layer.get_weights())}
            models.append(
                {
                    "name": "bidirectional" if bidirectional else "one-direction",
                    "bidirectional": bidirectional,
                    "options": options,
                    "weights": weights,
                    "runs": runs,
                }
            )
        order = "i,f,c,o" if cell == "lstm" else "z,r,h"
        formula = "" if cell == "lstm" else f", reset_after={reset_after}"
        notes = (
            f"keras.layers.{cls_name}(4{formula}, return_sequences=True, return_state=True, "
            "dtype='float64') (in Bidirectional for the second model) after "
            "keras.utils.set_random_seed(300 + model index), KERAS_BACKEND=tensorflow; "
            "weights in get_weights() order, keyed by variable path; x (B, T, I); states "
            f"(B, H) each, in Keras' list order; gate order {order}"
        )
        out[name] = document(
            "keras", f"keras.layers.{cls_name}", cell, reset_after, "float64", models, notes,
            ("keras", "tensorflow"),
        )  # fmt: skip
    return out


# --- TF1 cells (tf_keras' legacy rnn_cell, graph mode) ---------------------------------------
def make_tf1() -> dict[str, dict[str, Any]]:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run with TF_USE_LEGACY_KERAS=1"
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()
    v1 = tf.compat.v1
    out = {}
    for cell_name, cls_name in (("lstm", "LSTMCell"), ("gru", "GRUCell")):
        states = ("c", "h") if cell_name == "lstm" else ("h",)  # TF1's order: LSTMStateTuple(c, h)
        models = []
        for m, bidirectional in enumerate((False, True)):
            dirs = ("fw", "bw") if bidirectional else ("",)
            graph = tf.Graph()
            with graph.as_default():
                v1.set_random_seed(500 + m)
                x = v1.placeholder(tf.float64, [None, None, INPUT], name="x")
                cells = [getattr(v1.nn.rnn_cell, cls_name)(HIDDEN) for _ in dirs]
                init_ph = {
                    (d, s): v1.placeholder(tf.float64, [None, HIDDEN], name=f"init_{d}{s}")
                    for d in dirs
                    for s in states
                }

                initial = {
                    d: (
                        v1.nn.rnn_cell.LSTMStateTuple(init_ph[d, "c"], init_ph[d, "h"])
                        if cell_name == "lstm"
                        else init_ph[d, "h"]
                    )
                    for d in dirs
                }

                # Two calls of the same cell objects: the second reuses their variables.
                fetch = {}
                for with_state in (False, True):
                    kwargs: dict[str, Any] = {"dtype": tf.float64}
                    if bidirectional:
                        if with_state:
                            kwargs.update(initial_state_fw=initial["fw"])
                            kwargs.update(initial_state_bw=initial["bw"])
                        ys, fins = v1.nn.bidirectional_dynamic_rnn(*cells, x, **kwargs)
                    else:
                        if with_state:
                            kwargs["initial_state"] = initial[""]
                        y, fin = v1.nn.dynamic_rnn(cells[0], x, **kwargs)
                        ys, fins = (y,), (fin,)
                    outputs = {f"output{'_' + d if d else ''}": y for d, y in zip(dirs, ys)}
                    finals = {}
                    for d, fin in zip(dirs, fins):
                        parts = tuple(fin) if cell_name == "lstm" else (fin,)
                        for s, part in zip(states, parts):
                            finals[f"{d}/{s}" if d else s] = part
                    fetch[with_state] = (outputs, finals)
                variables = [v for c in cells for v in c.variables]
                assert len(variables) == len(v1.global_variables())  # the 2nd call made none
            data = inputs(600 + m, np.float64, len(dirs), states)
            runs = []
            with v1.Session(graph=graph) as sess:
                # The library's own init: glorot_uniform kernels; zero LSTM bias (forget_bias
                # 1.0 is added at run time, not stored); GRUCell gates/bias 1.0, candidate 0.
                sess.run(v1.global_variables_initializer())
                weights = {v.name[:-2]: lists(a) for v, a in zip(variables, sess.run(variables))}
                for with_state in (False, True):
                    feed = {x: data["x"]}
                    if with_state:
                        for i, d in enumerate(dirs):
                            for s in states:
                                feed[init_ph[d, s]] = data[s][i]
                    outputs, finals = sess.run(fetch[with_state], feed)
                    runs.append(
                        {
                            "name": "initial-state" if with_state else "zero-state",
                            "x": lists(data["x"]),
                            "initial_state": (
                                {
                                    f"{d}/{s}" if d else s: lists(data[s][i])
                                    for i, d in enumerate(dirs)
                                    for s in states
                                }
                                if with_state
                                else None
                            ),
                            "output": {k: lists(v) for k, v in outputs.items()},
                            "final_state": {k: lists(v) for k, v in finals.items()},
                        }
                    )
            options: dict[str, Any] = {"dtype": "float64", "time_major": False}
            if cell_name == "lstm":
                options["forget_bias"] = cells[0]._forget_bias  # the default, 1.0
            models.append(
                {
                    "name": "bidirectional" if bidirectional else "one-direction",
                    "bidirectional": bidirectional,
                    "options": options,
                    "weights": weights,
                    "runs": runs,
                }
            )
        notes = (
            f"tf.compat.v1.nn.rnn_cell.{cls_name}(4) (defaults) in dynamic_rnn (one direction) "
            "or bidirectional_dynamic_rnn (two cells), float64, graph seed 500 + model index, "
            "TF_USE_LEGACY_KERAS=1; x (B, T, I); states (B, H) each, "
            + (
                "in LSTMStateTuple order (c, h); kernel (I+H, 4H) gate order i,j,f,o; "
                "forget_bias 1.0 added to f at run time"
                if cell_name == "lstm"
                else "gates/kernel columns [r | u], reset before the matmul"
            )
        )
        out[f"tf1_{cell_name}"] = document(
            "tf1", f"tf.compat.v1.nn.rnn_cell.{cls_name}", cell_name,
            None if cell_name == "lstm" else False, "float64", models, notes,
            ("tensorflow", "tf-keras"),
        )  # fmt: skip
    return out


# --- ONNX (onnxruntime) ----------------------------------------------------------------------
def make_onnx() -> dict[str, dict[str, Any]]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    kinds = (
        ("onnx_lstm", "lstm", None, "LSTM"),
        ("onnx_gru_lbr1", "gru", True, "GRU"),
        ("onnx_gru_lbr0", "gru", False, "GRU"),
    )
    out = {}
    for name, cell, reset_after, op in kinds:
        states = ("h", "c") if cell == "lstm" else ("h",)
        gates = 4 if cell == "lstm" else 3
        models = []
        for m, bidirectional in enumerate((False, True)):
            d = 2 if bidirectional else 1
            # ONNX has no initializer: hand-made arrays, uniform(-1/sqrt(H), 1/sqrt(H)).
            rng = np.random.default_rng(700 + m)
            bound = 1 / np.sqrt(HIDDEN)
            shapes = {
                "W": (d, gates * HIDDEN, INPUT),
                "R": (d, gates * HIDDEN, HIDDEN),
                "B": (d, 2 * gates * HIDDEN),
            }
            arrays = {
                k: rng.uniform(-bound, bound, s).astype(np.float32) for k, s in shapes.items()
            }
            attributes: dict[str, Any] = {
                "hidden_size": HIDDEN,
                "direction": "bidirectional" if bidirectional else "forward",
            }
            if reset_after:
                attributes["linear_before_reset"] = 1
            # reset_after False: the attribute is left out, so the node runs ONNX's default (0).
            data = inputs(800 + m, np.float32, d, states)
            init_names = ["initial_h", "initial_c"][: len(states)]
            runs = []
            for with_state in (False, True):
                node_inputs = ["X", "W", "R", "B"]
                if with_state:
                    node_inputs += ["", *init_names]  # no sequence_lens
                outs = ["Y", "Y_h", "Y_c"][: 1 + len(states)]
                node = helper.make_node(op, node_inputs, outs, **attributes)
                graph_inputs = [
                    helper.make_tensor_value_info("X", TensorProto.FLOAT, [TIME, BATCH, INPUT])
                ]
                if with_state:
                    graph_inputs += [
                        helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, BATCH, HIDDEN])
                        for n in init_names
                    ]
                graph = helper.make_graph(
                    [node],
                    name,
                    graph_inputs,
                    [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                    [numpy_helper.from_array(a, k) for k, a in arrays.items()],
                )
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
                model.ir_version = 8
                session = ort.InferenceSession(
                    model.SerializeToString(), providers=["CPUExecutionProvider"]
                )
                x_tm = np.ascontiguousarray(data["x"].transpose(1, 0, 2))  # ONNX: (T, B, I)
                feed = {"X": x_tm}
                if with_state:
                    feed.update({n: data[s] for n, s in zip(init_names, states)})
                results = session.run(outs, feed)
                runs.append(
                    {
                        "name": "initial-state" if with_state else "zero-state",
                        "x": lists(x_tm),
                        "initial_state": (
                            {n: lists(data[s]) for n, s in zip(init_names, states)}
                            if with_state
                            else None
                        ),
                        "output": {"Y": lists(results[0])},
                        "final_state": {o: lists(r) for o, r in zip(outs[1:], results[1:])},
                    }
                )
            models.append(
                {
                    "name": "bidirectional" if bidirectional else "one-direction",
                    "bidirectional": bidirectional,
                    "options": {"attributes": attributes, "opset": 14},
                    "weights": {k: lists(a) for k, a in arrays.items()},
                    "runs": runs,
                }
            )
        order = "i,o,f,c" if cell == "lstm" else "z,r,h"
        notes = (
            f"one ONNX {op} node (opset 14, layout 0) run by onnxruntime's CPU provider in "
            "float32 (its LSTM and GRU do not run float64); hand-made weights (numpy seed "
            "700 + model index); X (T, B, I), Y (T, D, B, H), Y_h/Y_c (D, B, H); gate order "
            f"{order}"
            + (
                ""
                if cell == "lstm"
                else "; linear_before_reset=1 written"
                if reset_after
                else "; linear_before_reset left out (ONNX's default, 0: reset before the matmul)"
            )
        )
        out[name] = document(
            "onnx", f"onnx {op}", cell, reset_after, "float32", models, notes,
            ("onnx", "onnxruntime"),
        )  # fmt: skip
    return out


MAKERS = {"torch": make_torch, "keras": make_keras, "tf1": make_tf1, "onnx": make_onnx}


def dumps(obj: Any, indent: str = "") -> str:
    """JSON with one key per line and every array on one line (readable diffs)."""
    if isinstance(obj, dict) and obj:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj)


def write(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        path = HERE / f"{name}.json"
        text = dumps(doc) + "\n"
        assert json.loads(text) == doc  # the floats round-trip exactly
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent.parent.parent)}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--in-process":
        write(MAKERS[argv[1]]())
        return 0
    for library in argv or list(MAKERS):
        # One process per library: KERAS_BACKEND and TF_USE_LEGACY_KERAS are read at import.
        env = {**os.environ, **ENV[library]}
        subprocess.run([sys.executable, __file__, "--in-process", library], env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
