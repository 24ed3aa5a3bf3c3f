"""The equivalence suite: every registered backend against the float64 NumPy reference.

Each test is parametrized over the backends (``--backends`` / ``RNNBENCH_BACKENDS`` select a
subset; ``RNNBENCH_DEVICE=cuda`` runs the same suite on a GPU). Tolerances come from
``rnnbench.tolerances`` alone.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnbench as rb
from rnnbench.tolerances import SEED_ATOL

DEVICE = os.environ.get("RNNBENCH_DEVICE", "cpu")


def check(
    cells,  # type: ignore[no-untyped-def]
    backend: str,
    weights: rb.RNNWeights,
    x: np.ndarray,
    h0: np.ndarray | None = None,
    dtype: str = "float32",
) -> rb.BackendComparison:
    """Compare one backend, fail with the full table when it is out of tolerance."""
    if DEVICE not in rb.backend_info(backend).devices:
        pytest.skip(f"backend {backend!r} has no device {DEVICE!r}")
    cell = cells.get(backend, dtype, DEVICE)
    result = rb.compare(
        weights, x, h0, [backend], dtypes=[dtype], device=DEVICE, cells={(backend, dtype): cell}
    )
    row = result.rows[0]
    if row.status == "skipped":
        pytest.skip(row.reason or "skipped")
    result.assert_close()
    return row


def inputs(spec: rb.RNNSpec, batch: int, time: int, seed: int = 1, h0: bool = False) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, spec.input_size))
    state = None
    if h0:
        state = rng.uniform(-1, 1, (spec.num_layers * spec.num_directions, batch, spec.hidden_size))
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


@pytest.mark.parametrize(
    ("spec", "batch", "time"),
    [
        (rb.RNNSpec(1, 1), 1, 1),
        (rb.RNNSpec(3, 1, bidirectional=True), 1, 5),
        (rb.RNNSpec(2, 5), 3, 1),
        (rb.RNNSpec(4, 6, bias=False), 2, 9),
    ],
    ids=["all-ones", "hidden1-bidir", "time1", "no-bias"],
)
def test_odd_shapes(cells, backend: str, spec: rb.RNNSpec, batch: int, time: int) -> None:  # type: ignore[no-untyped-def]
    w = rb.RNNWeights.random(spec, seed=2)
    check(cells, backend, w, inputs(spec, batch, time)[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stacked_bidirectional_relu_with_h0(cells, backend: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    spec = rb.RNNSpec(5, 8, num_layers=3, bidirectional=True, nonlinearity="relu")
    w = rb.RNNWeights.random(spec, seed=3, dtype="float64")
    x, h0 = inputs(spec, 3, 12, h0=True)
    row = check(cells, backend, w, x, h0, dtype)
    if dtype == "float64":
        assert row.max_abs < 1e-10  # a float64 path really computes in float64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_sequence(cells, backend: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    spec = rb.RNNSpec(8, 32, num_layers=2, bidirectional=True)
    w = rb.RNNWeights.random(spec, seed=4)
    x, _ = inputs(spec, 2, 500)
    check(cells, backend, w, x, dtype=dtype)


@pytest.mark.parametrize(
    ("regime", "norm", "input_scale"),
    [("contractive", 0.5, 1.0), ("near-orthogonal", 1.0, 1.0), ("chaotic", 5.0, 0.1)],
)
def test_weight_regimes(cells, backend: str, regime: str, norm: float, input_scale: float) -> None:  # type: ignore[no-untyped-def]
    """Drift over time, by the spectral norm of W_hh. Contractive weights forget rounding
    errors, near-orthogonal ones accumulate them like a random walk, and a strongly expansive
    network driven weakly is chaotic: rounding errors grow until float32 and float64 part ways.
    The tolerance follows each regime step by step (rnnbench/tolerances.py), and the test checks
    the error stays inside it wherever it is meaningful."""
    spec = rb.RNNSpec(4, 32)
    w = rb.RNNWeights.random(spec, seed=5, dtype="float64", recurrent_norm=norm)
    x = inputs(spec, 2, 300)[0] * input_scale
    row = check(cells, backend, w, x)
    early = max(row.error_per_step[:5])
    assert early < 1e-5, f"{regime}: already {early:.1e} in the first 5 steps"
    if regime == "chaotic":
        assert row.checked_steps < 300  # drift is reported, not hidden
    else:
        assert row.checked_steps == 300  # the whole sequence is really compared
        assert row.max_abs < 1e-4


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 9),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    nonlinearity=st.sampled_from(["tanh", "relu"]),
    bias=st.booleans(),
    batch=st.integers(1, 3),
    time=st.integers(1, 12),
    with_h0=st.booleans(),
)
def test_property_any_shape_agrees(  # type: ignore[no-untyped-def]
    cells,
    backend,
    input_size,
    hidden_size,
    num_layers,
    bidirectional,
    nonlinearity,
    bias,
    batch,
    time,
    with_h0,
) -> None:
    spec = rb.RNNSpec(input_size, hidden_size, num_layers, bidirectional, nonlinearity, bias)
    w = rb.RNNWeights.random(spec, seed=input_size * 100 + hidden_size)
    x, h0 = inputs(spec, batch, time, h0=with_h0)
    check(cells, backend, w, x, h0)
