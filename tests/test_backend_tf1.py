"""The TF1 backend (BasicRNNCell / LSTMCell / GRUCell + dynamic_rnn in a Session, in its own
worker process): every cell against the float64 reference, the LSTM's (c, h) state order and
forget bias against TF1 itself, the reset-after GRU refusal, graph reuse, the seed notebook's
replay, a worker that dies, padded batches (lengths through sequence_length; a mask refused),
and gradients (tf.gradients in the graph) against the float64 hand-written BPTT."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest
from reference_cases import CASES as SHARED_CASES
from reference_cases import (
    CELL_CASES,
    cast_state,
    check_case,
    check_grad_arrays,
    grad_cotangents,
    make_case,
)

import rnnbench as rb
import rnnbench.process
from rnnbench.commands.seed import check_kernel
from rnnbench.gradients import reference_vjp
from rnnbench.padding import lengths_mask
from rnnbench.process import pooled_worker
from rnnbench.tolerances import SEED_REPLAY_ATOL

CELL_CLASSES = {"rnn": "BasicRNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}
# Beyond the shared cases: stacks without a bidirectional layer (MultiRNNCell, whose state is a
# tuple of the cells' states) for every cell, and a BasicRNNCell fed a zero bias.
EXTRA_CASES = {
    "multirnncell-tanh-h0": (rb.RNNSpec(4, 6, num_layers=3), 3, 9, True),
    "one-layer-relu-nobias": (rb.RNNSpec(2, 4, nonlinearity="relu", bias=False), 1, 5, False),
    "multirnncell-lstm-h0c0": (rb.RNNSpec(3, 4, num_layers=2, cell="lstm"), 2, 7, True),
    "multirnncell-gru-before-h0": (
        rb.RNNSpec(3, 4, num_layers=2, cell="gru", reset_after=False),
        2,
        7,
        True,
    ),
}
# Every shared cell case TF1 can run: all but the reset-after GRU (refused, tested below).
NAMES = [n for label, names in CELL_CASES.items() if label != "gru" for n in names]
ALL_CASES = {**{n: SHARED_CASES[n] for n in NAMES}, **EXTRA_CASES}


# float64 only for the shared cases: the equivalence suite checks them in float32; the
# TF1-specific cases (EXTRA_CASES) in both.
@pytest.mark.parametrize(
    ("name", "dtype"),
    [(n, "float64") for n in NAMES] + [(n, d) for n in EXTRA_CASES for d in ("float32", "float64")],
)
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    cell = cells.get("tf1", dtype)
    spec = ALL_CASES[name][0]
    found = check_case(cell, *ALL_CASES[name])[2]
    # A layer that read only its own direction below (bidirectional over MultiRNNCell), a
    # swapped gate block, a forget bias added twice or h and c swapped would be off by O(0.1),
    # far above rounding.
    assert found["max_abs"] < (1e-12 if dtype == "float64" else 1e-5), found["max_abs"]
    assert CELL_CLASSES[spec.cell] in cell.info()["path"]  # the cell class that ran
    assert cell.info()["cell_class"] == CELL_CLASSES[spec.cell]


def test_lstm_state_is_h_then_c(cells: Any) -> None:
    """rnnbench's state is (h, c), TF1's LSTMStateTuple is (c, h): both the initial and the
    final states must be mapped by meaning, not by position."""
    cell = cells.get("tf1", "float64")
    spec = rb.RNNSpec(3, 5, cell="lstm")
    weights = rb.RNNWeights.random(spec, seed=3, dtype="float64")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 3))
    h0, c0 = (0.8 * rng.standard_normal((1, 2, 5)) for _ in range(2))
    cell.load(weights)
    y, (h_n, c_n) = cell.forward(x, (h0, c0))
    ref_y, (ref_h, ref_c) = rb.reference_forward(weights, x, (h0, c0))
    assert np.abs(y - ref_y).max() < 1e-12
    assert np.abs(h_n - ref_h).max() < 1e-12 and np.abs(c_n - ref_c).max() < 1e-12
    np.testing.assert_array_equal(h_n[0], y[:, -1])  # h is the output; c is not
    assert np.abs(c_n - h_n).max() > 0.1
    # Control: h0 and c0 exchanged is a different run, so the check above can tell them apart.
    swapped_y, _ = rb.reference_forward(weights, x, (c0, h0))
    assert np.abs(swapped_y - ref_y).max() > 1e-2


def test_reset_after_gru_is_refused(cells: Any) -> None:
    cell = cells.get("tf1", "float32")
    weights = rb.RNNWeights.random(rb.RNNSpec(2, 3, cell="gru"), seed=0)  # reset_after=True
    with pytest.raises(rb.BackendUnavailableError, match="reset gate to h before") as refused:
        cell.load(weights)
    assert "torch, keras, jax or numpy" in str(refused.value)
    assert "reset_after=False" in str(refused.value)


def test_lstm_forget_bias_folded_as_tf1_adds_it(cells: Any) -> None:
    """A bare TF1 LSTMCell with its default forget_bias=1.0: ``from_tf1(kernel, bias)`` (which
    adds that 1.0 to the forget block) reproduces the cell's own output and state through the
    NumPy reference."""
    cells.get("tf1", "float64")  # skips without tensorflow/tf-keras; starts the worker once
    rng = np.random.default_rng(5)
    batch, steps, inputs, hidden = 2, 6, 3, 4
    arrays = {
        "x": rng.standard_normal((batch, steps, inputs)),
        "h0": 0.5 * rng.standard_normal((batch, hidden)),
        "c0": 0.5 * rng.standard_normal((batch, hidden)),
        "bias": 0.3 * rng.standard_normal(4 * hidden),
    }
    worker = pooled_worker(rb.backend_info("tf1"))
    header, got = worker.call("tests.tf1_targets:lstm_default_forget_bias", arrays, seed=7)
    assert header["forget_bias"] == 1.0
    assert header["variables"] == ["rnn/lstm_cell/kernel:0", "rnn/lstm_cell/bias:0"]
    np.testing.assert_array_equal(got["bias"], arrays["bias"])
    state = (arrays["h0"][None], arrays["c0"][None])

    def error(forget_bias: float) -> float:
        w = rb.RNNWeights.from_tf1(got["kernel"], got["bias"], cell="lstm", forget_bias=forget_bias)
        y, (h_n, c_n) = rb.reference_forward(w, arrays["x"], state)
        return max(
            float(np.abs(y - got["y"]).max()),
            float(np.abs(h_n[0] - got["h_n"]).max()),
            float(np.abs(c_n[0] - got["c_n"]).max()),
        )

    assert rb.RNNWeights.from_tf1(got["kernel"], got["bias"], cell="lstm").spec.cell == "lstm"
    assert error(1.0) < 1e-12  # from_tf1's default forget_bias is TF1's
    assert error(0.0) > 1e-2  # control: without the folding the output is visibly off


def test_graph_built_once_per_shape(cells: Any) -> None:
    cell = cells.get("tf1", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    x = np.ones((2, 4, 2), np.float32)
    cell.forward(x)
    built = cell.info()["graphs_built"]
    y1, _ = cell.forward(x)
    y2, _ = cell.forward(x)
    assert cell.info()["graphs_built"] == built  # reused, not rebuilt
    np.testing.assert_array_equal(y1, y2)
    cell.forward(np.ones((2, 5, 2), np.float32))  # another length: one more graph
    assert cell.info()["graphs_built"] == built + 1
    assert cell.info()["path"] == "tf1 graph + Session (BasicRNNCell, dynamic_rnn while_loop)"
    assert cell.info()["process"] == "worker"


def test_seed_replay_reproduces_the_notebook(cells: Any, seed_notebook: dict) -> None:
    cells.get("tf1", "float32")  # skips without tensorflow/tf-keras; starts the worker once
    x = np.array(seed_notebook["input"], np.float32)
    worker = pooled_worker(rb.backend_info("tf1"))
    target = "rnnbench.backends.tf1_backend:replay_seed"
    header, got = worker.call(target, {"input": x}, num_units=4, graph_seed=35)
    _, again = worker.call(target, {"input": x}, num_units=4, graph_seed=35)
    assert header["state_size"] == 4
    assert header["variables"] == [
        [seed_notebook["kernel_name"], [6, 4]],
        [seed_notebook["bias_name"], [4]],
    ]
    ok, lines = check_kernel(got["kernel"], seed_notebook["kernel"])
    assert ok, lines
    # The kernel is the seed's to the last printed digit; as float32 it is equal wherever the
    # 8 printed decimals pin the value down (3 small elements are 1-2 ulp off the record).
    assert (got["kernel"] == np.float32(seed_notebook["kernel"])).sum() >= 21
    np.testing.assert_array_equal(again["kernel"], got["kernel"])  # a second replay: same seed
    np.testing.assert_allclose(
        got["output"], seed_notebook["output"], atol=SEED_REPLAY_ATOL, rtol=0
    )
    np.testing.assert_allclose(
        got["final_state"], seed_notebook["final_state"], atol=SEED_REPLAY_ATOL, rtol=0
    )


def test_in_process_use_is_refused() -> None:
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        pytest.skip("this process has the tf1 environment; the guard does not apply")
    if rb.backend_info("tf1").unavailable_reason() is not None:
        pytest.skip("tf1 unavailable")
    # Refused before TensorFlow is imported: disable_v2_behavior would switch this process.
    with pytest.raises(rb.BackendUnavailableError, match="worker process of its own"):
        rb.get_backend("tf1", isolate=False)


def test_worker_crash_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private worker pool, so that the session's shared workers are not the ones killed; the
    # NumPy backend in a worker starts in well under a second.
    monkeypatch.setattr(rnnbench.process, "_pool", {})
    cell = rb.get_backend("numpy", isolate=True)
    worker = cell._worker  # type: ignore[attr-defined]
    try:
        cell.load(rb.RNNWeights.random(rb.RNNSpec(1, 4), seed=0))
        x = np.zeros((1, 400_000, 1), np.float32)  # seconds of NumPy loop: killed mid-call
        killer = threading.Timer(0.5, worker.proc.kill)
        killer.start()
        with pytest.raises(rb.BackendRuntimeError, match=r"backend 'numpy'.*died") as died:
            cell.forward(x)
        killer.join()
        assert "exit code -9" in str(died.value)
        with pytest.raises(rb.BackendRuntimeError, match=r"backend 'numpy'.*gone"):
            cell.forward(x[:, :2])
    finally:
        worker.kill()


# Padded batches: ragged and unsorted, with a length-1 row and a full row.
LENGTHS = np.array([7, 1, 4, 6, 3])
PADDED_SPECS = {
    "1layer-h0": (1, False, True),
    "2layer-bidir": (2, True, False),
}


@pytest.mark.parametrize("layout", list(PADDED_SPECS))
@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_lengths_go_to_sequence_length(cells: Any, cell_name: str, layout: str) -> None:
    """TF1's own sequence_length gives the canonical result: zeros past each row's length, the
    state after its last real step, and (bidirectional_dynamic_rnn's reverse_sequence) a reverse
    direction that starts at each row's own last step."""
    layers, bidirectional, with_h0 = PADDED_SPECS[layout]
    extra = {"reset_after": False} if cell_name == "gru" else {}
    spec = rb.RNNSpec(3, 4, num_layers=layers, bidirectional=bidirectional, cell=cell_name, **extra)
    weights, x, h0 = make_case(spec, len(LENGTHS), int(LENGTHS.max()), with_h0)
    dtypes = ["float64"]  # float32 is the equivalence suite's
    ready = {("tf1", d): cells.get("tf1", d) for d in dtypes}
    result = rb.compare(weights, x, h0, ["tf1"], dtypes=dtypes, cells=ready, lengths=LENGTHS)
    result.assert_close()
    assert all("with sequence_length" in (row.path or "") for row in result.rows)
    # Exactly zero past the length, not merely small: the same graph again (no new one built).
    cell = ready[("tf1", "float64")]
    built = cell.info()["graphs_built"]
    y, _ = cell.forward(x, cast_state(h0, np.float64), lengths=LENGTHS)
    assert cell.info()["graphs_built"] == built
    padded = ~lengths_mask(LENGTHS, x.shape[1])
    assert np.all(y[padded] == 0.0) and np.all(y[~padded] != 0.0)


def test_a_mask_is_refused_with_lengths_as_the_way(cells: Any) -> None:
    cell = cells.get("tf1", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    mask = np.array([[True, False, True], [True, True, False]])
    with pytest.raises(rb.UnsupportedPaddingError, match="cannot take a mask") as refused:
        cell.forward(np.ones((2, 3, 2), np.float32), mask=mask)
    assert "pass lengths=..." in str(refused.value)
    assert cell.info()["padding"] == ["lengths"]  # what the worker's cell says it takes


# Gradients: every cell TF1 has (a relu RNN without biases: TF1's bias variable still exists and
# must come back as zeros), one layer with h0, and two bidirectional layers without h0 (dh0 of
# the zeros fed in its place) on a ragged batch. Each case is a new graph (seconds with its
# gradient ops), so float64 runs the cheaper one-layer graph only.
GRAD_CELLS = {
    "rnn-tanh": {"cell": "rnn"},
    "rnn-relu-nobias": {"cell": "rnn", "nonlinearity": "relu", "bias": False},
    "lstm": {"cell": "lstm"},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}
# The equivalence suite runs every cell in float32 (one layer from h0; two bidirectional
# layers on ragged rows, the RNN in relu); here: float64 for every cell, the tanh RNN's
# two-layer ragged graph, and the no-bias path.
GRAD_CASES = [(cell, "1layer-h0", "float64") for cell in GRAD_CELLS] + [
    ("rnn-tanh", "2layer-bidir-lengths", "float32")
]


@pytest.mark.parametrize(("cell_name", "layout", "dtype"), GRAD_CASES)
def test_gradients_match_the_float64_bptt(
    cells: Any, cell_name: str, layout: str, dtype: str
) -> None:
    """dx, dh0 (dc0) and every weight array, mapped back by from_tf1 with forget_bias 0, against
    reference_vjp, for random cotangents of y, h_n and (LSTM) a different c_n: a final-state
    cotangent matched to LSTMStateTuple(c, h) by position would swap them."""
    layers, bidirectional, with_h0 = (1, False, True) if layout == "1layer-h0" else (2, True, False)
    lengths = LENGTHS if layout.endswith("lengths") else None
    spec = rb.RNNSpec(3, 4, num_layers=layers, bidirectional=bidirectional, **GRAD_CELLS[cell_name])
    batch, steps = len(LENGTHS), int(LENGTHS.max())
    weights, x, h0 = make_case(spec, batch, steps, with_h0)
    dy, dh_n = grad_cotangents(spec, batch, steps)
    want = reference_vjp(weights, x, h0, dy, dh_n, lengths=lengths).arrays()

    cell = cells.get("tf1", dtype)
    cell.load(weights)
    args = (x.astype(dtype), cast_state(h0, dtype), dy.astype(dtype), cast_state(dh_n, dtype))
    got = cell.vjp(*args, lengths=lengths).arrays()
    # zero_ok: the biases of a spec without them come back as exact zeros
    errors = check_grad_arrays(got, want, dtype, zero_ok=True)
    assert ("l0.forward.b_ih" in errors) == spec.bias

    # The gradient graph is built once per shape: a second vjp reuses it.
    built = cell.info()["graphs_built"]
    again = cell.vjp(*args, lengths=lengths).arrays()
    assert cell.info()["graphs_built"] == built
    np.testing.assert_array_equal(again["dx"], got["dx"])
