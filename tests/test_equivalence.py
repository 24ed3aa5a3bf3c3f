"""The equivalence suite: every registered backend against the float64 NumPy reference.

Each test is parametrized over the backends (``--backends`` / ``RNNBENCH_BACKENDS`` select a
subset; ``RNNBENCH_DEVICE=cuda`` runs the same suite on a GPU) and over the cells: the vanilla
RNN, the LSTM, and the GRU in both of its formulas (reset-after, reset-before). A backend whose
library lacks a formula (torch and the reset-before GRU, tf1 and the reset-after GRU) is skipped
with that reason. Tolerances come from ``rnnbench.tolerances`` alone.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnbench as rb
from rnnbench.padding import random_lengths, random_mask
from rnnbench.tolerances import SEED_ATOL

DEVICE = os.environ.get("RNNBENCH_DEVICE", "cpu")
# Cell label -> the spec fields that make it.
CELLS = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}
all_cells = pytest.mark.parametrize("cell", list(CELLS))


def make_spec(cell: str, *args: int, **kwargs: object) -> rb.RNNSpec:
    """An RNNSpec of cell label ``cell``; a relu nonlinearity is kept for the vanilla RNN only
    (gated cells have fixed activations)."""
    if cell != "rnn":
        kwargs.pop("nonlinearity", None)
    return rb.RNNSpec(*args, **kwargs, **CELLS[cell])  # type: ignore[arg-type]


def check(
    cells,  # type: ignore[no-untyped-def]
    backend: str,
    weights: rb.RNNWeights,
    x: np.ndarray,
    h0: object = None,
    dtype: str = "float32",
    grad: bool = False,
    **padding: object,
) -> rb.BackendComparison:
    """Compare one backend, fail with the full table when it is out of tolerance. ``padding``:
    ``lengths=`` or ``mask=`` for a padded batch; ``grad``: the gradients too."""
    if DEVICE not in rb.backend_info(backend).devices:
        pytest.skip(f"backend {backend!r} has no device {DEVICE!r}")
    cell = cells.get(backend, dtype, DEVICE)
    result = rb.compare(
        weights,
        x,
        h0,
        [backend],
        dtypes=[dtype],
        device=DEVICE,
        cells={(backend, dtype): cell},
        grad=grad,
        **padding,  # type: ignore[arg-type]
    )
    row = result.rows[0]
    if row.status == "skipped":
        if "lengths" in padding and "does not take sequence lengths" in (row.reason or ""):
            # Every built-in backend has a lengths mechanism: not wiring it up is a bug.
            pytest.fail(row.reason)
        pytest.skip(row.reason or "skipped")
    if grad and row.grad_status == "skipped":
        pytest.skip(row.grad_reason or "skipped")
    result.assert_close()
    return row


def inputs(spec: rb.RNNSpec, batch: int, time: int, seed: int = 1, h0: bool = False) -> tuple:
    """x, and an initial state when asked: h0, or (h0, c0) for an LSTM."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, spec.input_size))
    state = None
    if h0:
        shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        parts = tuple(rng.uniform(-1, 1, shape) for _ in spec.state_names)
        state = parts if spec.cell == "lstm" else parts[0]
    return x, state


def test_seed(cells, backend: str, seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:  # type: ignore[no-untyped-def]
    """Every backend gives the seed notebook's printed output from the seed's kernel."""
    x = np.array(seed_notebook["input"], np.float32)
    row = check(cells, backend, seed_weights, x)
    cell = cells.get(backend, "float32", DEVICE)
    y, h_n = cell.forward(x)
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)
    assert row.path


@all_cells
@pytest.mark.parametrize(
    ("shape", "batch", "time"),
    [
        ({"input_size": 1, "hidden_size": 1}, 1, 1),
        ({"input_size": 3, "hidden_size": 1, "bidirectional": True}, 1, 5),
        ({"input_size": 2, "hidden_size": 5}, 3, 1),
        ({"input_size": 4, "hidden_size": 6, "bias": False}, 2, 9),
    ],
    ids=["all-ones", "hidden1-bidir", "time1", "no-bias"],
)
def test_odd_shapes(cells, backend: str, cell: str, shape: dict, batch: int, time: int) -> None:  # type: ignore[no-untyped-def]
    spec = make_spec(cell, **shape)
    w = rb.RNNWeights.random(spec, seed=2)
    check(cells, backend, w, inputs(spec, batch, time)[0])


@all_cells
@pytest.mark.parametrize("dtype", ["float64"])
def test_stacked_bidirectional_with_h0(cells, backend: str, cell: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    """Three bidirectional layers from a given initial state (h0, and c0 for the LSTM); the
    vanilla RNN in relu, whose outputs are unbounded. In float64, which also proves each
    float64 path computes in float64; float32 goes through two bidirectional layers from h0 in
    the ragged-lengths, gradient and long-sequence cases."""
    spec = make_spec(cell, 5, 8, num_layers=3, bidirectional=True, nonlinearity="relu")
    w = rb.RNNWeights.random(spec, seed=3, dtype="float64")
    x, h0 = inputs(spec, 3, 12, h0=True)
    row = check(cells, backend, w, x, h0, dtype)
    if dtype == "float64":
        assert row.max_abs < 1e-10  # a float64 path really computes in float64
    if spec.cell == "lstm":
        assert row.c_n_max_abs == row.c_n_max_abs  # the cell state was compared (not NaN)


@pytest.mark.parametrize(
    ("cell", "dtype"),
    [(cell, "float32") for cell in CELLS] + [("rnn", "float64")],
)
def test_long_sequence(cells, backend: str, cell: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    """T=500 through two bidirectional layers: drift over a long sequence, every cell in
    float32. Float64 drift is far below any allowance; one cell at T=500 checks that a float64
    path stays float64 that long (every cell's float64 is checked by the stacked case)."""
    spec = make_spec(cell, 8, 32, num_layers=2, bidirectional=True)
    w = rb.RNNWeights.random(spec, seed=4)
    x, _ = inputs(spec, 2, 500)
    check(cells, backend, w, x, dtype=dtype)


# Padded batches: one layer one way from h0, and two bidirectional layers (the reverse direction
# of each row must start at the row's own last real step, in both layers).
PADDED = {
    "1layer-h0": {"num_layers": 1, "bidirectional": False, "h0": True},
    "2layer-bidir": {"num_layers": 2, "bidirectional": True, "h0": False},
    "2layer-bidir-h0": {"num_layers": 2, "bidirectional": True, "h0": True},
}
# Unsorted, with a one-step row and a full row: what packing and per-row reversal must get right.
RAGGED_LENGTHS = np.array([6, 1, 7, 3])


def padded_case(cell: str, config: str, seed: int, nonlinearity: str = "tanh") -> tuple:
    shape = PADDED[config]
    spec = make_spec(
        cell,
        3,
        5,
        num_layers=shape["num_layers"],
        bidirectional=shape["bidirectional"],
        nonlinearity=nonlinearity,
    )
    w = rb.RNNWeights.random(spec, seed=seed, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=seed, h0=bool(shape["h0"]))
    return w, x, h0


@all_cells
@pytest.mark.parametrize(
    ("config", "dtype"),
    # One layer one way from h0, two bidirectional layers from zeros; float64 is each backend's
    # own test file's (a float64 path through the padding mechanism).
    [("1layer-h0", "float32"), ("2layer-bidir", "float32")],
)
def test_ragged_lengths(cells, backend: str, cell: str, config: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    """Right-padded rows through each library's own mechanism (packed sequences,
    sequence_length, Keras masks, a masked scan): outputs past a length are zero, the final
    state is the one after each row's last real step."""
    w, x, h0 = padded_case(cell, config, seed=12)
    row = check(cells, backend, w, x, h0, dtype, lengths=RAGGED_LENGTHS)
    assert row.masked_output == "zero"


@all_cells
@pytest.mark.parametrize("config", ["2layer-bidir-h0"])  # one layer one way: each backend's tests
def test_mask_with_holes(cells, backend: str, cell: str, config: str) -> None:  # type: ignore[no-untyped-def]
    """Keras' mask semantics with holes anywhere, a masked first and last step included; a
    backend whose library pads only at the end (torch, tf1) is skipped with its reason, and
    masked steps are checked against what each library writes there."""
    w, x, h0 = padded_case(cell, config, seed=13)
    check(cells, backend, w, x, h0, mask=random_mask(4, 7, seed=13))


@all_cells
@pytest.mark.parametrize(
    ("config", "dtype", "padded"),
    # Both directions, two layers, h0 and ragged rows in one case, one layer one way in the
    # other; each backend's own test file checks float64 and more shapes.
    [("1layer-h0", "float32", False), ("2layer-bidir-h0", "float32", True)],
    ids=["1layer-h0", "2layer-bidir-h0-ragged"],
)
def test_gradients(cells, backend: str, cell: str, config: str, dtype: str, padded: bool) -> None:  # type: ignore[no-untyped-def]
    """Backpropagation through time by each library's own autodiff against the float64
    hand-written BPTT: dx, dh0 (dc0) and every weight array of every layer and direction, in
    the canonical layout (mapped back by the converters), for random cotangents of y and the
    final state; the vanilla RNN in relu, whose derivative is a step."""
    w, x, h0 = padded_case(cell, config, seed=14, nonlinearity="relu")
    padding = {"lengths": RAGGED_LENGTHS} if padded else {}
    row = check(cells, backend, w, x, h0, dtype, grad=True, **padding)
    assert row.grad_status == "pass"


REGIMES = {"contractive": (0.5, 1.0), "near-orthogonal": (1.0, 1.0), "chaotic": (5.0, 0.1)}


@pytest.mark.parametrize(
    ("cell", "regime"),
    [("rnn", regime) for regime in REGIMES]
    # Contractive weights forget rounding for any cell; the gated cells' own question is
    # what the near-orthogonal and expansive regimes do through their gates.
    + [
        (cell, regime)
        for cell in CELLS
        if cell != "rnn"
        for regime in REGIMES
        if regime != "contractive"
    ],
)
def test_weight_regimes(cells, backend: str, cell: str, regime: str) -> None:  # type: ignore[no-untyped-def]
    """Drift over time, by the spectral norm of W_hh. Contractive weights forget rounding
    errors, near-orthogonal ones accumulate them like a random walk, and a strongly expansive
    vanilla RNN driven weakly is chaotic: rounding errors grow until float32 and float64 part
    ways. The tolerance follows each regime step by step (rnnbench/tolerances.py), and the test
    checks the error stays inside it wherever it is meaningful. Gated cells squash the
    recurrent product through their gates, so a large ||W_hh|| saturates them rather than
    making them chaotic: their drift is whatever it is, and the tolerance must still hold."""
    norm, input_scale = REGIMES[regime]
    spec = make_spec(cell, 4, 32)
    w = rb.RNNWeights.random(spec, seed=5, dtype="float64", recurrent_norm=norm)
    x = inputs(spec, 2, 300)[0] * input_scale
    row = check(cells, backend, w, x)
    early = max(row.error_per_step[:5])
    assert early < 1e-5, f"{regime}: already {early:.1e} in the first 5 steps"
    if regime == "chaotic":
        if cell == "rnn":
            assert row.checked_steps < 300  # drift is reported, not hidden
    else:
        assert row.checked_steps == 300  # the whole sequence is really compared
        assert row.max_abs < 1e-4


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cell=st.sampled_from(list(CELLS)),
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 9),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    nonlinearity=st.sampled_from(["tanh", "relu"]),
    bias=st.booleans(),
    batch=st.integers(1, 3),
    time=st.integers(1, 12),
    with_h0=st.booleans(),
    padded=st.sampled_from(["none", "lengths", "mask"]),
)
def test_property_any_shape_agrees(  # type: ignore[no-untyped-def]
    cells,
    backend,
    cell,
    input_size,
    hidden_size,
    num_layers,
    bidirectional,
    nonlinearity,
    bias,
    batch,
    time,
    with_h0,
    padded,
) -> None:
    spec = make_spec(
        cell,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        nonlinearity=nonlinearity,
        bias=bias,
    )
    w = rb.RNNWeights.random(spec, seed=input_size * 100 + hidden_size)
    x, h0 = inputs(spec, batch, time, h0=with_h0)
    padding: dict[str, object] = {}
    if padded == "mask" and "mask" not in cells.get(backend, "float32", DEVICE).info()["padding"]:
        padded = "lengths"  # this library pads only at the end: ragged rows instead
    if padded == "lengths":
        padding["lengths"] = random_lengths(batch, time, 1, time, seed=batch * 13 + time)
    elif padded == "mask":
        padding["mask"] = random_mask(batch, time, seed=batch * 13 + time)
    check(cells, backend, w, x, h0, **padding)
