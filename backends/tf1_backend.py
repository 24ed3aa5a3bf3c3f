"""The TF1 backend: ``BasicRNNCell`` under ``dynamic_rnn`` in a graph run by a ``Session``.

This is the seed notebook's code path. It needs two process-wide switches, which is why the
backend is registered ``isolated`` and runs in a worker process of its own:
- ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported: from TensorFlow 2.16 on, the TF1
  RNN cells live in ``tf_keras`` and ``tf.compat.v1.nn.rnn_cell`` only finds them this way;
- ``tf.compat.v1.disable_v2_behavior()``: graph mode and reference variables, as in TF1. With
  it, graph seed 35 on the default graph gives the seed notebook's kernel bit for bit.

Each (batch, time, h0 given?) gets its own graph with fixed-shape placeholders, built once and
reused; the spec and dtype are fixed by ``load`` (which drops the graphs of older weights).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendRuntimeError, BackendUnavailableError
from rnnbench.weights import RNNWeights

_MAX_GRAPHS = 8  # one per input shape; old ones are closed beyond this


def _import_tf1() -> Any:
    """TensorFlow in TF1 graph mode; only in a process that set ``TF_USE_LEGACY_KERAS=1``."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise BackendUnavailableError(
            "backend 'tf1' needs TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported, and "
            "switches the whole process to TF1 graph mode (disable_v2_behavior)",
            "use rnnbench.get_backend('tf1') without isolate=False: it runs in a worker process "
            "of its own",
        )
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tf1' cannot import tensorflow: {exc}", "pip install 'rnnbench[tf1]'"
        ) from exc
    tf.compat.v1.disable_v2_behavior()  # process-wide; this process is the tf1 worker
    return tf


def _basic_cell(tf: Any, units: int, nonlinearity: str, dtype: Any) -> Any:
    activation = tf.nn.relu if nonlinearity == "relu" else tf.tanh
    try:
        return tf.compat.v1.nn.rnn_cell.BasicRNNCell(units, activation=activation, dtype=dtype)
    except (AttributeError, ImportError) as exc:  # tf-keras missing: the cell is not there
        raise BackendUnavailableError(
            f"tf.compat.v1.nn.rnn_cell.BasicRNNCell is not available: {exc}",
            "pip install 'rnnbench[tf1]' (TensorFlow >= 2.16 needs tf-keras for TF1 cells)",
        ) from exc


class _Graph:
    """One built graph: its session, placeholders, outputs, and the cells' variables."""

    def __init__(self, session: Any, x: Any, h0: list[Any], y: Any, h_n: Any, cells: list[Any]):
        self.session = session
        self.x = x
        self.h0 = h0  # one placeholder per layer and direction, empty when h0 is not fed
        self.y = y
        self.h_n = h_n
        self.cells = cells  # layer-major, direction-minor, like the canonical weights

    def assign(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Put (kernel, bias) of each cell into its variables."""
        for cell, (kernel, bias) in zip(self.cells, pairs):
            variables = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in cell.weights}
            variables["kernel"].load(kernel, self.session)
            variables["bias"].load(bias, self.session)


class TF1Cell(BaseCell):
    """``tf.compat.v1.nn.rnn_cell.BasicRNNCell`` + ``dynamic_rnn`` (stacked: ``MultiRNNCell``;
    bidirectional: ``bidirectional_dynamic_rnn`` per layer), run in a ``tf.compat.v1.Session``."""

    name = "tf1"
    distribution = "tensorflow"
    devices = ("cpu",)
    variants = ("graph",)

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device, dtype, variant)
        self._tf = _import_tf1()
        self._graphs: OrderedDict[tuple[int, int, bool], _Graph] = OrderedDict()
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._graphs_built = 0  # reported by info(): repeated runs of one shape build none

    # --- weights -----------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        tf1 = weights.to_tf1()
        per_layer = tf1 if weights.spec.num_layers > 1 else [tf1]
        pairs = []
        for entry in per_layer:
            directions = entry if weights.spec.bidirectional else (entry,)
            pairs += [(np.asarray(k), np.asarray(b)) for k, b in directions]
        self._close_graphs()  # graphs hold the old spec's shapes
        self._pairs = pairs
        self._weights_spec = weights.spec

    # --- graphs ------------------------------------------------------------------------
    def _build(self, batch: int, time: int, with_h0: bool) -> _Graph:
        tf = self._tf
        spec = self._weights_spec
        dtype = tf.float32 if self.dtype == np.float32 else tf.float64
        v1 = tf.compat.v1
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(dtype, (batch, time, spec.input_size), name="x")
            n_states = spec.num_layers * spec.num_directions
            h0 = [
                v1.placeholder(dtype, (batch, spec.hidden_size), name=f"h0_{i}")
                for i in range(n_states)
                if with_h0
            ]
            cells: list[Any] = []
            finals: list[Any] = []
            if not spec.bidirectional:
                cells = [
                    _basic_cell(tf, spec.hidden_size, spec.nonlinearity, dtype)
                    for _ in range(spec.num_layers)
                ]
                if spec.num_layers == 1:  # the seed notebook's own structure
                    cell, state = cells[0], (h0[0] if h0 else None)
                else:
                    cell = v1.nn.rnn_cell.MultiRNNCell(cells)
                    state = tuple(h0) if h0 else None
                y, final = v1.nn.dynamic_rnn(cell, x, initial_state=state, dtype=dtype)
                finals = list(final) if spec.num_layers > 1 else [final]
            else:
                # One bidirectional_dynamic_rnn per layer, outputs concatenated between layers:
                # like torch.nn.RNN, layer k > 0 reads both directions of layer k-1. A single
                # bidirectional_dynamic_rnn over two MultiRNNCells would instead run each
                # direction's stack on its own (the forward stack never sees the reverse
                # outputs), which is a different network.
                y = x
                for k in range(spec.num_layers):
                    fw = _basic_cell(tf, spec.hidden_size, spec.nonlinearity, dtype)
                    bw = _basic_cell(tf, spec.hidden_size, spec.nonlinearity, dtype)
                    (out_fw, out_bw), (h_fw, h_bw) = v1.nn.bidirectional_dynamic_rnn(
                        fw,
                        bw,
                        y,
                        initial_state_fw=h0[2 * k] if h0 else None,
                        initial_state_bw=h0[2 * k + 1] if h0 else None,
                        dtype=dtype,
                        scope=f"layer_{k}",
                    )
                    y = tf.concat([out_fw, out_bw], axis=-1)
                    cells += [fw, bw]
                    finals += [h_fw, h_bw]
            h_n = tf.stack(finals)
            init = v1.global_variables_initializer()
        session = v1.Session(graph=graph)
        session.run(init)
        built = _Graph(session, x, h0, y, h_n, cells)
        built.assign(self._pairs)
        graph.finalize()  # repeated runs must not grow the graph
        return built

    def _graph(self, batch: int, time: int, with_h0: bool) -> _Graph:
        key = (batch, time, with_h0)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        built = self._build(batch, time, with_h0)
        self._graphs_built += 1
        self._graphs[key] = built
        while len(self._graphs) > _MAX_GRAPHS:
            _, old = self._graphs.popitem(last=False)
            old.session.close()
        return built

    def _close_graphs(self) -> None:
        for built in self._graphs.values():
            built.session.close()
        self._graphs.clear()

    # --- running -----------------------------------------------------------------------
    def prepare(self, x: np.ndarray, h0: np.ndarray | None = None) -> Any:
        xs, h = self.check_inputs(x, h0)
        built = self._graph(xs.shape[0], xs.shape[1], h is not None)
        feed = {built.x: xs}
        if h is not None:
            feed.update({ph: h[i] for i, ph in enumerate(built.h0)})
        return built, feed

    def run(self, prepared: Any) -> tuple[np.ndarray, np.ndarray]:
        built, feed = prepared
        try:
            y, h_n = built.session.run([built.y, built.h_n], feed_dict=feed)
        except self._tf.errors.OpError as exc:
            raise BackendRuntimeError(f"backend 'tf1': session.run failed: {exc.message}") from exc
        return y, h_n

    def fetch(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        return result  # session.run already returned host arrays (its copy is the sync)

    def path(self) -> str:
        return "tf1 graph + Session (dynamic_rnn while_loop)"

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["synchronize"] = "session.run returns host arrays (the copy is the sync)"
        out["graphs_built"] = self._graphs_built
        return out

    def __del__(self) -> None:
        # At interpreter shutdown TensorFlow may be gone already.
        with contextlib.suppress(Exception):
            self._close_graphs()


def replay_seed(
    arrays: dict[str, np.ndarray],
    num_units: int = 4,
    graph_seed: int = 35,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Replay the seed notebook in this (tf1 worker) process, as the notebook wrote it.

    ``arrays["input"]`` is the notebook's input (batch, time, features). Runs on a fresh default
    graph (a fresh notebook kernel's), so that a second replay in the same worker gives the same
    kernel: TF derives each op's seed from the graph seed and the op's position in the graph.
    Returns the facts the notebook printed: state size, variables, kernel, bias, output and
    final state.
    """
    tf = _import_tf1()
    v1 = tf.compat.v1
    v1.reset_default_graph()
    v1.set_random_seed(graph_seed)
    x = np.asarray(arrays["input"], np.float32)
    cell = _basic_cell(tf, num_units, "tanh", tf.float32)
    output, state = v1.nn.dynamic_rnn(cell, tf.constant(x), dtype=tf.float32)
    init = v1.global_variables_initializer()
    with v1.Session() as session:
        session.run(init)
        variables = v1.global_variables()
        values = session.run(variables)
        out, final = session.run([output, state])
    header = {
        "state_size": int(cell.state_size),
        "variables": [[v.name, [int(d) for d in v.shape]] for v in variables],
        "tensorflow": tf.__version__,
    }
    by_name = {v.name.rsplit("/", 1)[-1].split(":")[0]: val for v, val in zip(variables, values)}
    return header, {
        "kernel": np.asarray(by_name["kernel"]),
        "bias": np.asarray(by_name["bias"]),
        "output": np.asarray(out),
        "final_state": np.asarray(final),
    }
