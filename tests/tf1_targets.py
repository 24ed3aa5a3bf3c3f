"""Functions the TF1 tests run inside the tf1 worker process
(``Worker.call("tests.tf1_targets:...")``): bare TF1 cells, built the way a user would, with no
rnnbench adapter in between. The worker has ``TF_USE_LEGACY_KERAS=1`` and the repository root on
its path, so ``tests`` is importable there (a namespace package)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

Result = tuple[dict[str, Any], dict[str, np.ndarray]]


def _tf1() -> Any:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run TF1 targets in the tf1 worker"
    import tensorflow as tf

    if tf.executing_eagerly():
        tf.compat.v1.disable_v2_behavior()  # TF1 graph mode, for this whole (worker) process
    return tf


def lstm_default_forget_bias(arrays: dict[str, np.ndarray], seed: int = 7) -> Result:
    """A float64 ``LSTMCell(H)`` with TF1's DEFAULT ``forget_bias`` (1.0) under ``dynamic_rnn``.

    Takes ``x`` (B, T, I), ``h0``, ``c0`` (B, H) and ``bias`` (4H,). The kernel is the cell's own
    random initial value (graph seed ``seed``); the bias is set to ``arrays["bias"]`` so that its
    gate order matters too (TF1 initialises it to zeros). The initial state is fed as TF1 takes
    it, ``LSTMStateTuple(c, h)``. Returns the cell's kernel and bias as stored, its output and its
    final h and c, and the ``forget_bias`` the cell used.
    """
    tf = _tf1()
    v1 = tf.compat.v1
    x, h0, c0, bias = arrays["x"], arrays["h0"], arrays["c0"], arrays["bias"]
    hidden = h0.shape[-1]
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        cell = v1.nn.rnn_cell.LSTMCell(hidden, dtype=tf.float64)  # forget_bias left at default
        state = v1.nn.rnn_cell.LSTMStateTuple(c=tf.constant(c0), h=tf.constant(h0))
        y, final = v1.nn.dynamic_rnn(cell, tf.constant(x), initial_state=state, dtype=tf.float64)
        kernel_var, bias_var = cell.weights
        set_bias = bias_var.assign(bias)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as session:
        session.run(init)
        session.run(set_bias)
        kernel, stored_bias, out, h_n, c_n = session.run(
            [kernel_var, bias_var, y, final.h, final.c]
        )
    header = {
        "forget_bias": float(cell._forget_bias),
        "variables": [v.name for v in cell.weights],
    }
    return header, {"kernel": kernel, "bias": stored_bias, "y": out, "h_n": h_n, "c_n": c_n}
