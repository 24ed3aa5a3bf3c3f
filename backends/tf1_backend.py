"""The TF1 backend: ``BasicRNNCell``, ``LSTMCell`` or ``GRUCell`` under ``dynamic_rnn`` in a graph
run by a ``Session``.

This is the seed notebook's code path. It needs two process-wide switches, which is why the
backend is registered ``isolated`` and runs in a worker process of its own:
- ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported: from TensorFlow 2.16 on, the TF1
  RNN cells live in ``tf_keras`` and ``tf.compat.v1.nn.rnn_cell`` only finds them this way;
- ``tf.compat.v1.disable_v2_behavior()``: graph mode and reference variables, as in TF1. With
  it, graph seed 35 on the default graph gives the seed notebook's kernel bit for bit.

The cells and how rnnbench maps onto them:
- rnn: ``BasicRNNCell``; kernel (I+H, H) and bias.
- lstm: ``LSTMCell(forget_bias=0.0)``. TF1 adds ``forget_bias`` to the forget gate at run time
  without storing it; the canonical bias already holds the whole forget bias, so the cell must
  add nothing. Its state is ``LSTMStateTuple(c, h)``, c first, while rnnbench's is (h, c): the
  placeholders and the final states are matched by the tuple's field names, never by position.
- gru: ``GRUCell``, which applies the reset gate to h *before* the recurrent product
  (``reset_after=False``). A reset-after GRU (torch's and Keras' default) is a different
  function that GRUCell cannot express, so the backend refuses it rather than compute it wrong.

Each (batch, time, state given?, lengths given?) gets its own graph with fixed-shape
placeholders, built once and reused; the spec and dtype are fixed by ``load`` (which drops the
graphs of older weights).

Padded batches: ``lengths`` go to TF1's own ``sequence_length`` (``dynamic_rnn``, and
``bidirectional_dynamic_rnn``, which reverses each row within its own length with
``reverse_sequence``, so a row's reverse direction starts at its last real step). Past a row's
length TF1 writes zero outputs and copies the state through, which is rnnbench's canonical
result. TF1 pads only at the end of a sequence, so a mask with holes is refused.

Gradients (``vjp``) come from ``tf.gradients`` in a graph of their own, built once per (batch,
time, lengths given?) when first asked for: the forward graph plus placeholders for the
cotangents of y and of the stacked final states, and the gradients of ``[y, h_n(, c_n)]`` with
respect to x, every initial-state placeholder and every cell variable. The initial state is
always a placeholder there (zeros are fed when h0 is None), so dh0 exists either way. The
variables' gradients (kernel and bias, or GRUCell's four arrays) go back to the canonical layout
through ``RNNWeights.from_tf1`` with ``forget_bias=0`` (a gradient has no offset to add), and the
one TF1 bias's gradient is both canonical biases' (``one_bias_grads``).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendRuntimeError, BackendUnavailableError
from rnnbench.gradients import Grads, one_bias_grads
from rnnbench.padding import Padding
from rnnbench.spec import RNNSpec
from rnnbench.state import State
from rnnbench.weights import DirectionWeights, RNNWeights

# One per spec and input shape; the least recently used is closed beyond this. Graphs of other
# specs are kept, so that going back to a spec (as a test suite does) builds nothing again.
_MAX_GRAPHS = 16

# The TF1 class that runs each cell (named by path() and info()).
CELL_CLASSES = {"rnn": "BasicRNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}


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


def _missing_cells(exc: Exception, name: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"tf.compat.v1.nn.rnn_cell.{name} is not available: {exc}",
        "pip install 'rnnbench[tf1]' (TensorFlow >= 2.16 needs tf-keras for TF1 cells)",
    )


def _basic_cell(tf: Any, units: int, nonlinearity: str, dtype: Any) -> Any:
    activation = tf.nn.relu if nonlinearity == "relu" else tf.tanh
    try:
        return tf.compat.v1.nn.rnn_cell.BasicRNNCell(units, activation=activation, dtype=dtype)
    except (AttributeError, ImportError) as exc:  # tf-keras missing: the cell is not there
        raise _missing_cells(exc, "BasicRNNCell") from exc


def _cell(tf: Any, spec: RNNSpec, dtype: Any) -> Any:
    """A new TF1 cell for one layer and direction of ``spec``."""
    if spec.cell == "rnn":
        return _basic_cell(tf, spec.hidden_size, spec.nonlinearity, dtype)
    try:
        cells = tf.compat.v1.nn.rnn_cell
        if spec.cell == "lstm":
            # forget_bias=0: the loaded bias already holds it (see the module docstring).
            return cells.LSTMCell(
                spec.hidden_size, forget_bias=0.0, state_is_tuple=True, dtype=dtype
            )
        return cells.GRUCell(spec.hidden_size, dtype=dtype)
    except (AttributeError, ImportError) as exc:
        raise _missing_cells(exc, CELL_CLASSES[spec.cell]) from exc


def _variable_values(entry: Any) -> dict[str, np.ndarray]:
    """One direction of ``to_tf1()`` as {variable path suffix: array}: ``(kernel, bias)`` for
    BasicRNNCell and LSTMCell, the GRUCell dict (``gates/kernel``, ...) as it is."""
    if isinstance(entry, dict):
        return {str(k): np.asarray(v) for k, v in entry.items()}
    kernel, bias = entry
    return {"kernel": np.asarray(kernel), "bias": np.asarray(bias)}


def _tf1_entry(cell: str, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`_variable_values`: one direction as ``to_tf1()`` holds it."""
    if cell == "gru":
        return arrays
    return (arrays["kernel"], arrays["bias"])


def _cell_variables(index: int, cell: Any, suffixes: list[str]) -> dict[str, Any]:
    """The variables of one cell by the end of their path (``kernel`` / ``bias``, or GRUCell's
    nested ``gates/kernel``, ``candidate/bias``...), one per suffix, in the order given. Every
    variable must be named by exactly one suffix, so that none is left out (unloaded, or without
    a gradient)."""
    names = {v.name.split(":")[0]: v for v in cell.weights}
    found: dict[str, Any] = {}
    for suffix in suffixes:
        hits = [n for n in names if n == suffix or n.endswith("/" + suffix)]
        if len(hits) != 1:
            raise BackendRuntimeError(
                f"backend 'tf1': cell {index} ({type(cell).__name__}) has "
                f"{len(hits)} variables ending in {suffix!r}; its variables are "
                f"{sorted(names)}"
            )
        found[suffix] = names[hits[0]]
    matched = {v.name.split(":")[0] for v in found.values()}
    if matched != set(names):
        raise BackendRuntimeError(
            f"backend 'tf1': cell {index} ({type(cell).__name__}) variables "
            f"{sorted(set(names) - matched)} got no weights"
        )
    return found


class _GradientOps:
    """The gradient part of a graph: the cotangent placeholders and the gradient tensors."""

    def __init__(
        self,
        dy: Any,
        dfinals: tuple[Any, ...],
        dx: Any,
        dstates: list[tuple[Any, ...]],
        dvariables: list[dict[str, Any]],
    ):
        self.dy = dy  # (B, T, dirs*H)
        self.dfinals = dfinals  # one per state, (layers*dirs, B, H), rnnbench's order
        self.dx = dx
        self.dstates = dstates  # per cell, like _Graph.states
        self.dvariables = dvariables  # per cell, {variable path suffix: gradient}


class _Graph:
    """One built graph: its session, placeholders, outputs, and the cells' variables."""

    def __init__(
        self,
        session: Any,
        x: Any,
        states: list[tuple[Any, ...]],
        y: Any,
        finals: tuple[Any, ...],
        cells: list[Any],
        lengths: Any = None,
    ):
        self.session = session
        self.x = x
        self.lengths = lengths  # the sequence_length placeholder, (B,) int32; None if not fed
        # Per layer and direction, the initial-state placeholders in rnnbench's order ((h,) or
        # (h, c)); empty when no initial state is fed.
        self.states = states
        self.y = y
        self.finals = finals  # stacked final states (layers*dirs, B, H), rnnbench's order
        self.cells = cells  # layer-major, direction-minor, like the canonical weights
        self.gradients: _GradientOps | None = None  # set for a graph built for vjp
        self.loaded = -1  # the cell's load count when its weights were last assigned here

    def assign(self, values: list[dict[str, np.ndarray]]) -> None:
        """Put each cell's arrays into its variables, matched by the end of the variable's path
        (see :func:`_cell_variables`): every variable gets exactly one array, so none is left at
        its initial value."""
        for index, (cell, arrays) in enumerate(zip(self.cells, values, strict=True)):
            variables = _cell_variables(index, cell, list(arrays))
            for suffix, value in arrays.items():
                variables[suffix].load(value, self.session)


class TF1Cell(BaseCell):
    """``tf.compat.v1.nn.rnn_cell.BasicRNNCell`` / ``LSTMCell`` / ``GRUCell`` + ``dynamic_rnn``
    (stacked: ``MultiRNNCell``; bidirectional: ``bidirectional_dynamic_rnn`` per layer), run in a
    ``tf.compat.v1.Session``. A reset-after GRU is refused (GRUCell resets before). ``lengths``
    are fed to ``sequence_length``; ``vjp`` runs ``tf.gradients`` in a graph of its own."""

    name = "tf1"
    distribution = "tensorflow"
    devices = ("cpu",)
    variants = ("graph",)
    takes_lengths = True  # sequence_length; a mask with holes has no TF1 counterpart
    computes_gradients = True  # tf.gradients in the graph

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device, dtype, variant)
        self._tf = _import_tf1()
        # Keyed by (spec, batch, time, state given?, lengths given?, with gradients?).
        self._graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self._values: list[dict[str, np.ndarray]] = []
        self._loads = 0  # counts loads: a kept graph whose weights are older gets them assigned
        self._graphs_built = 0  # reported by info(): repeated runs of one shape build none
        self._ran_lengths = False  # whether the last prepared batch fed sequence_length

    # --- weights -----------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        spec = weights.spec
        if spec.cell == "gru" and spec.reset_after:
            self.refuse_spec(
                spec,
                "TF1's GRUCell applies the reset gate to h before the recurrent product "
                "(reset-before); a reset-after GRU applies it to the product, a different "
                "function that GRUCell cannot compute",
                "run this GRU on torch, keras, jax or numpy (they compute reset-after), or use "
                "RNNSpec(..., cell='gru', reset_after=False) for GRUCell's formula",
            )
        # An LSTM's canonical bias already includes the forget bias; the cells add none.
        tf1 = weights.to_tf1(forget_bias=0.0) if spec.cell == "lstm" else weights.to_tf1()
        per_layer = tf1 if spec.num_layers > 1 else [tf1]
        values = []
        for entry in per_layer:
            directions = entry if spec.bidirectional else (entry,)
            values += [_variable_values(d) for d in directions]
        self._values = values
        self._weights_spec = spec
        self._loads += 1  # kept graphs get the new values when next used (``_graph``)

    # --- graphs ------------------------------------------------------------------------
    def _initial(self, states: tuple[Any, ...]) -> Any:
        """rnnbench's (h,) or (h, c) for one cell, as the cell takes it."""
        if self._weights_spec.cell == "lstm":
            h, c = states
            return self._tf.compat.v1.nn.rnn_cell.LSTMStateTuple(c=c, h=h)  # TF1: c first
        return states[0]

    def _final(self, state: Any) -> tuple[Any, ...]:
        """One cell's final state as rnnbench's (h,) or (h, c)."""
        if self._weights_spec.cell == "lstm":
            return (state.h, state.c)  # by field name: LSTMStateTuple is (c, h)
        return (state,)

    def _build(
        self, batch: int, time: int, with_h0: bool, with_lengths: bool, with_grads: bool = False
    ) -> _Graph:
        """The graph of one input shape; ``with_grads`` adds the gradient ops (and needs
        ``with_h0``: the initial state must be a placeholder to have a gradient)."""
        tf = self._tf
        spec = self._weights_spec
        dtype = tf.float32 if self.dtype == np.float32 else tf.float64
        v1 = tf.compat.v1
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(dtype, (batch, time, spec.input_size), name="x")
            lengths = (
                v1.placeholder(tf.int32, (batch,), name="sequence_length") if with_lengths else None
            )
            n_cells = spec.num_layers * spec.num_directions
            states = [
                tuple(
                    v1.placeholder(dtype, (batch, spec.hidden_size), name=f"{name}0_{i}")
                    for name in spec.state_names
                )
                for i in range(n_cells)
                if with_h0
            ]
            initial = [self._initial(s) for s in states]
            cells: list[Any] = []
            finals: list[tuple[Any, ...]] = []
            if not spec.bidirectional:
                cells = [_cell(tf, spec, dtype) for _ in range(spec.num_layers)]
                if spec.num_layers == 1:  # the seed notebook's own structure
                    cell, state = cells[0], (initial[0] if initial else None)
                else:
                    cell = v1.nn.rnn_cell.MultiRNNCell(cells)
                    state = tuple(initial) if initial else None
                y, final = v1.nn.dynamic_rnn(
                    cell, x, sequence_length=lengths, initial_state=state, dtype=dtype
                )
                finals = [self._final(f) for f in (final if spec.num_layers > 1 else [final])]
            else:
                # One bidirectional_dynamic_rnn per layer, outputs concatenated between layers:
                # like torch.nn.RNN, layer k > 0 reads both directions of layer k-1. A single
                # bidirectional_dynamic_rnn over two MultiRNNCells would instead run each
                # direction's stack on its own (the forward stack never sees the reverse
                # outputs), which is a different network.
                y = x
                for k in range(spec.num_layers):
                    fw, bw = _cell(tf, spec, dtype), _cell(tf, spec, dtype)
                    (out_fw, out_bw), (s_fw, s_bw) = v1.nn.bidirectional_dynamic_rnn(
                        fw,
                        bw,
                        y,
                        sequence_length=lengths,
                        initial_state_fw=initial[2 * k] if initial else None,
                        initial_state_bw=initial[2 * k + 1] if initial else None,
                        dtype=dtype,
                        scope=f"layer_{k}",
                    )
                    y = tf.concat([out_fw, out_bw], axis=-1)
                    cells += [fw, bw]
                    finals += [self._final(s_fw), self._final(s_bw)]
            stacked = tuple(tf.stack([f[s] for f in finals]) for s in range(len(spec.state_names)))
            grads = self._gradient_ops(x, states, y, stacked, cells) if with_grads else None
            init = v1.global_variables_initializer()
        session = v1.Session(graph=graph)
        session.run(init)
        built = _Graph(session, x, states, y, stacked, cells, lengths)
        built.gradients = grads
        built.assign(self._values)
        graph.finalize()  # repeated runs must not grow the graph
        return built

    def _gradient_ops(
        self,
        x: Any,
        states: list[tuple[Any, ...]],
        y: Any,
        finals: tuple[Any, ...],
        cells: list[Any],
    ) -> _GradientOps:
        """``tf.gradients`` of ``sum(y * dy) + sum(state_n * dstate_n)`` (the cotangents are
        placeholders) with respect to x, the initial-state placeholders and every variable of
        every cell, in the graph being built."""
        tf = self._tf
        v1 = tf.compat.v1
        spec = self._weights_spec
        dtype = x.dtype
        batch, time = int(x.shape[0]), int(x.shape[1])
        dy = v1.placeholder(dtype, (batch, time, spec.output_size), name="dy")
        # ``finals`` are already in rnnbench's order (h, then c: see ``_final``).
        dfinals = tuple(
            v1.placeholder(
                dtype,
                (spec.num_layers * spec.num_directions, batch, spec.hidden_size),
                name=f"d{name}_n",
            )
            for name in spec.state_names
        )
        variables = [
            _cell_variables(i, cell, list(values))
            for i, (cell, values) in enumerate(zip(cells, self._values, strict=True))
        ]
        initial = [ph for per_cell in states for ph in per_cell]
        flat_vars = [v for per_cell in variables for v in per_cell.values()]
        xs = [x, *initial, *flat_vars]
        found = tf.gradients(ys=[y, *finals], xs=xs, grad_ys=[dy, *dfinals])
        # tf.gradients gives None for an input the outputs do not depend on: its gradient is 0.
        found = [tf.zeros(v.shape, dtype=dtype) if g is None else g for g, v in zip(found, xs)]
        dx, rest = found[0], found[1:]
        n_states = len(spec.state_names)
        dstates = [tuple(rest[i * n_states : (i + 1) * n_states]) for i in range(len(states))]
        rest = rest[len(initial) :]
        dvariables = []
        for per_cell in variables:
            dvariables.append({suffix: g for suffix, g in zip(per_cell, rest)})
            rest = rest[len(per_cell) :]
        return _GradientOps(dy, dfinals, dx, dstates, dvariables)

    def _graph(
        self, batch: int, time: int, with_h0: bool, with_lengths: bool, with_grads: bool = False
    ) -> _Graph:
        key = (self._weights_spec, batch, time, with_h0, with_lengths, with_grads)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            built = self._graphs[key]
            if built.loaded != self._loads:
                built.assign(self._values)
                built.loaded = self._loads
            return built
        built = self._build(batch, time, with_h0, with_lengths, with_grads)
        built.loaded = self._loads
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
    def prepare(
        self, x: np.ndarray, h0: State | None = None, lengths: Any = None, mask: Any = None
    ) -> Any:
        xs, h = self.check_inputs(x, h0)
        padding = self.check_padding(xs, lengths, mask)  # a mask is refused: TF1 has no holes
        checked = None if padding is None else padding.lengths
        built = self._graph(xs.shape[0], xs.shape[1], h is not None, checked is not None)
        return built, self._feed(built, xs, h, checked)

    def _feed(
        self,
        built: _Graph,
        xs: np.ndarray,
        h: tuple[np.ndarray, ...] | None,
        lengths: np.ndarray | None,
    ) -> dict[Any, np.ndarray]:
        """The feed of the forward placeholders: x, sequence_length and the initial states."""
        feed = {built.x: xs}
        if lengths is not None:
            feed[built.lengths] = lengths.astype(np.int32)  # 1 <= length <= T: it fits
        self._ran_lengths = lengths is not None
        if h is not None:  # h[s] is state s (h, then c) of every layer and direction
            for i, placeholders in enumerate(built.states):
                feed.update({ph: h[s][i] for s, ph in enumerate(placeholders)})
        return feed

    def run(self, prepared: Any) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        built, feed = prepared
        try:
            y, finals = built.session.run([built.y, list(built.finals)], feed_dict=feed)
        except self._tf.errors.OpError as exc:
            raise BackendRuntimeError(f"backend 'tf1': session.run failed: {exc.message}") from exc
        return y, tuple(finals)

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        y, finals = result  # session.run already returned host arrays (its copy is the sync)
        return y, self.public_state(finals)

    # --- gradients ---------------------------------------------------------------------
    def _vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Grads:
        spec = self.spec
        batch, time = x.shape[0], x.shape[1]
        lengths = None if padding is None else padding.lengths  # a mask was refused already
        # Initial states are always fed (BaseCell.vjp passes zeros for a missing h0): dh0 is a
        # gradient of the placeholder.
        built = self._graph(batch, time, True, lengths is not None, with_grads=True)
        ops = built.gradients
        assert ops is not None  # built with_grads
        feed = self._feed(built, x, h0, lengths)
        feed[ops.dy] = dy
        feed.update(dict(zip(ops.dfinals, dstates, strict=True)))
        fetches = {"dx": ops.dx, "dstates": ops.dstates, "dvariables": ops.dvariables}
        try:
            got = built.session.run(fetches, feed_dict=feed)
        except self._tf.errors.OpError as exc:
            raise BackendRuntimeError(
                f"backend 'tf1': session.run of the gradients failed: {exc.message}"
            ) from exc
        dh0 = tuple(
            np.stack([per_cell[s] for per_cell in got["dstates"]])
            for s in range(len(spec.state_names))
        )
        return Grads(
            dx=got["dx"],
            dh0=self.public_state(dh0),
            weights=self._canonical_grads([dict(d) for d in got["dvariables"]]),
        )

    def _canonical_grads(self, per_cell: list[dict[str, np.ndarray]]) -> RNNWeights:
        """The cells' variable gradients in the canonical layout: put back into the structure
        ``to_tf1()`` returns (as ``_load`` took it apart) and read by ``from_tf1`` with
        ``forget_bias=0`` (a gradient carries no offset). TF1's one bias is both canonical
        biases, so both get its gradient; a spec without biases gets zeros (TF1 cells always
        have a bias variable, held at zero)."""
        spec = self.spec
        entries = [_tf1_entry(spec.cell, arrays) for arrays in per_cell]
        dirs = spec.num_directions
        layers = [
            tuple(entries[k * dirs : (k + 1) * dirs]) if dirs == 2 else entries[k]
            for k in range(spec.num_layers)
        ]
        structure = layers if spec.num_layers > 1 else layers[0]
        converted = one_bias_grads(
            RNNWeights.from_tf1(
                structure,
                nonlinearity=spec.nonlinearity,
                input_size=spec.input_size,
                bidirectional=spec.bidirectional,
                cell=spec.cell,
                forget_bias=0.0,
            )
        )
        rows = []
        for row in converted.layers:
            rows.append(
                [
                    DirectionWeights(
                        dw.w_ih,
                        dw.w_hh,
                        dw.b_ih if spec.bias else np.zeros_like(dw.b_ih),
                        dw.b_hh if spec.bias else np.zeros_like(dw.b_hh),
                    )
                    for dw in row
                ]
            )
        return RNNWeights(spec, rows, dtype=self.dtype)

    def cell_class(self) -> str | None:
        """The TF1 cell class of the loaded spec (None before ``load``)."""
        return CELL_CLASSES[self._spec.cell] if self._spec is not None else None

    def path(self) -> str:
        cls = self.cell_class()
        lengths = " with sequence_length" if self._ran_lengths else ""
        return f"tf1 graph + Session ({cls + ', ' if cls else ''}dynamic_rnn while_loop{lengths})"

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["cell_class"] = self.cell_class()
        out["synchronize"] = "session.run returns host arrays (the copy is the sync)"
        out["graphs_built"] = self._graphs_built
        bidirectional = self._spec is not None and self._spec.bidirectional
        loop = "bidirectional_dynamic_rnn" if bidirectional else "dynamic_rnn"
        out["backward_path"] = (
            f"tf.gradients of the {loop} graph, one session.run with the forward (host arrays)"
        )
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
