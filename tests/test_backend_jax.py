"""The JAX backend: every cell against the float64 reference, the hoisted input projection, one
trace per shape, unroll variants, scoped x64, ahead-of-time compile, and its errors. GPU parts
skip on machines without one."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from reference_cases import (
    CASES,
    CELL_CASES,
    case,
    cast_state,
    check_against_reference,
    check_case,
    check_lstm_state_pair,
    make_case,
    state_parts,
)

import rnnbench as rb
from rnnbench.compare import measure
from rnnbench.tolerances import SEED_ATOL, step_ages, tolerance_for

jax = pytest.importorskip("jax", reason="jax not installed: pip install 'rnnbench[jax]'")


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


HAS_GPU = _has_gpu()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no GPU visible to jax here")


ALL_CASES = [name for names in CELL_CASES.values() for name in names]
# The stacked bidirectional case of each cell, with an initial state (h0, or (h0, c0)).
DEEP = {
    "rnn": "relu-2layer-bidir-h0",
    "lstm": "lstm-2layer-bidir-h0c0",
    "gru": "gru-2layer-bidir-h0",
    "gru(reset-before)": "gru-before-2layer-bidir-h0",
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL_CASES)
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    check_against_reference(cells.get("jax", dtype), name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_takes_h0_and_c0(cells: Any, dtype: str) -> None:
    check_lstm_state_pair(cells.get("jax", dtype), dtype)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_formula_follows_the_spec(cells: Any, reset_after: bool) -> None:
    """The same arrays under the other GRU formula are out of tolerance: the cell computes the
    formula its spec names, and the reference check can tell the two apart."""
    cell = cells.get("jax", "float32")
    weights, x, h0 = case("gru-before-2layer-bidir-h0")
    spec = rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru", reset_after=reset_after)
    weights = rb.RNNWeights(spec, weights.layers)
    other = rb.RNNWeights(
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru", reset_after=not reset_after),
        weights.layers,
    )
    cell.load(weights.astype("float32"))
    y, h_n = cell.forward(x.astype(np.float32), h0.astype(np.float32))
    tol = tolerance_for(weights, "float32", x, h0)
    ages = step_ages(x.shape[1], 2, 2, 6)
    assert measure(y, h_n, *rb.reference_forward(weights, x, h0), tol, ages)["passed"]
    wrong = measure(y, h_n, *rb.reference_forward(other, x, h0), tol, ages)
    assert not wrong["passed"] and wrong["max_abs"] > 1e-2


def _dots(jaxpr: Any) -> tuple[int, list[int]]:
    """(matrix products outside any scan, matrix products inside each scan body)."""
    outside, bodies = 0, []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            outside += 1
        elif eqn.primitive.name == "scan":
            body = eqn.params["jaxpr"].jaxpr
            bodies.append(sum(e.primitive.name == "dot_general" for e in body.eqns))
    return outside, bodies


@pytest.mark.parametrize("cell_label", list(DEEP))
def test_input_projection_is_hoisted(cell_label: str) -> None:
    """One input GEMM per layer and direction outside the scans; inside each scan body only the
    recurrent products: one (h @ w_hh), or two for the reset-before GRU (h @ w_hh_rz, then
    (r * h) @ w_hh_n, which waits on the reset gate)."""
    from rnnbench.backends.jax_backend import _rnn_forward, direction_params

    weights, x, h0 = case(DEEP[cell_label])
    spec = weights.spec
    params = tuple(tuple(direction_params(spec, dw) for dw in row) for row in weights.layers)
    states = tuple(np.asarray(s, np.float32) for s in state_parts(h0))
    forward = functools.partial(_rnn_forward, spec=spec, unroll=1)
    jaxpr = jax.make_jaxpr(forward)(params, x.astype(np.float32), states)
    outside, bodies = _dots(jaxpr.jaxpr)
    runs = spec.num_layers * spec.num_directions
    assert outside == runs
    assert bodies == [2 if cell_label == "gru(reset-before)" else 1] * runs


def test_seed_notebook(cells: Any, seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:
    cell = cells.get("jax", "float32")
    cell.load(seed_weights)
    y, h_n = cell.forward(np.array(seed_notebook["input"], np.float32))
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)


def test_traces_once_per_shape() -> None:
    cell = rb.get_backend("jax")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=0))
    x = np.random.default_rng(0).standard_normal((2, 7, 2)).astype(np.float32)
    first = cell.forward(x)
    for _ in range(3):
        again = cell.forward(x)
    assert cell.info()["traces"] == 1
    np.testing.assert_array_equal(first[0], again[0])
    cell.forward(x[:, :5])  # a new length is a new shape: one more trace
    assert cell.info()["traces"] == 2
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=1))
    cell.forward(x)  # new weights of the same spec are arguments, not constants: no retrace
    assert cell.info()["traces"] == 2


def test_lstm_traces_once_per_shape() -> None:
    """The (h, c) carry is one pytree: passing c0 or not is the same shape, so no retrace."""
    cell = rb.get_backend("jax")
    spec = rb.RNNSpec(2, 3, bidirectional=True, cell="lstm")
    cell.load(rb.RNNWeights.random(spec, seed=0))
    x = np.random.default_rng(0).standard_normal((2, 7, 2)).astype(np.float32)
    cell.forward(x)
    state = (np.full((2, 2, 3), 0.1, np.float32), np.full((2, 2, 3), 0.2, np.float32))
    cell.forward(x, state)
    assert cell.info()["traces"] == 1
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True, cell="gru"), seed=0))
    cell.forward(x)  # a new spec is a new function
    assert cell.info()["traces"] == 2


# Unroll 4 on the stacked bidirectional case of every cell (T=30: a remainder of 2). Unroll 16
# compiles 16 copies of the body per scan, so the gated cells run it on one layer (T=40: a
# remainder of 8) to keep the test fast; the RNN keeps its stacked case.
UNROLL_CASES = [("scan-unroll4", *CASES[name]) for name in DEEP.values()] + [
    ("scan-unroll16", *CASES["relu-2layer-bidir-h0"]),
    ("scan-unroll16", *CASES["lstm-1layer"]),
    ("scan-unroll16", *CASES["gru-1layer"]),
    ("scan-unroll16", rb.RNNSpec(3, 5, cell="gru", reset_after=False), 3, 40, False),
]


@pytest.mark.parametrize(
    ("variant", "spec", "batch", "steps", "with_h0"),
    UNROLL_CASES,
    ids=[f"{c[0]}-{c[1].cell_label}-L{c[1].num_layers}" for c in UNROLL_CASES],
)
def test_unroll_variants_agree(
    cells: Any, variant: str, spec: rb.RNNSpec, batch: int, steps: int, with_h0: bool
) -> None:
    """Unrolling changes the loop, not the arithmetic: the same values as unroll=1 on a length
    that is no multiple of the unroll factor (so the remainder steps are exercised too)."""
    base = cells.get("jax", "float32", variant="scan")
    cell = cells.get("jax", "float32", variant=variant)
    y0, h0, _ = check_case(base, spec, batch, steps, with_h0)
    y1, h1, _ = check_case(cell, spec, batch, steps, with_h0)
    assert steps % cell.unroll != 0
    weights, x, state = make_case(spec, batch, steps, with_h0)
    last = tolerance_for(weights, "float32", x, state).atol[-1]
    np.testing.assert_allclose(y1, y0, atol=last, rtol=0)
    for got, want in zip(state_parts(h1), state_parts(h0), strict=True):
        np.testing.assert_allclose(got, want, atol=last, rtol=0)
    assert cell.info()["path"] == f"xla-jit lax.scan unroll={variant[11:]} (cpu)"


@pytest.mark.parametrize("cell_label", list(DEEP))
def test_float64_is_scoped_and_really_float64(cells: Any, cell_label: str) -> None:
    before = jax.config.jax_enable_x64
    cell = cells.get("jax", "float64")
    weights, x, h0 = case(DEEP[cell_label])
    cell.load(weights)
    result = cell.run(cell.prepare(x, h0))
    cell.synchronize(result)
    # The device arrays themselves, not a cast on fetch.
    assert result[0].dtype == np.float64 and all(s.dtype == np.float64 for s in result[1])
    y, h_n = cell.fetch(result)
    ref_y, ref_h = rb.reference_forward(weights, x, h0)
    # Far below what float32 arithmetic could reach (its unit roundoff is 6e-8).
    assert np.abs(y - ref_y).max() < 1e-12
    for got, ref in zip(state_parts(h_n), state_parts(ref_h)):
        assert np.abs(got - ref).max() < 1e-12
    assert jax.config.jax_enable_x64 == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)
    assert cell.info()["x64"].startswith("scoped")


@pytest.mark.parametrize("name", ["relu-2layer-bidir-h0", "lstm-2layer-bidir-h0c0"])
def test_compile_ahead_of_time(cells: Any, name: str) -> None:
    cell = rb.get_backend("jax")
    weights, x, h0 = case(name)
    cell.load(weights.astype("float32"))
    h0 = cast_state(h0, np.float32)
    prepared = cell.prepare(x.astype(np.float32), h0)
    seconds = cell.compile(prepared)
    assert seconds > 0 and cell.info()["compile_s"] == seconds
    assert cell.info()["traces"] == 2  # the ahead-of-time trace, then the jitted function's
    y, h_n = cell.fetch(cell.run(prepared))
    assert cell.info()["traces"] == 2  # run is warm: no new trace after compile()
    jitted = cells.get("jax", "float32")
    jitted.load(weights.astype("float32"))
    expected = jitted.forward(x.astype(np.float32), h0)
    np.testing.assert_array_equal(y, expected[0])
    for got, want in zip(state_parts(h_n), state_parts(expected[1]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_info() -> None:
    cell = rb.get_backend("jax", variant="scan-unroll4")
    info = cell.info()
    assert info["precision"] == "HIGHEST" and info["variant"] == "scan-unroll4"
    assert info["path"] == "xla-jit lax.scan unroll=4 (cpu)"
    assert info["version"] == jax.__version__


def test_bad_input(cells: Any) -> None:
    cell = cells.get("jax", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    with pytest.raises(rb.ShapeError, match="h0"):
        cell.forward(np.zeros((1, 4, 2), np.float32), np.zeros((2, 1, 3), np.float32))
    with pytest.raises(rb.SpecError, match="variant"):
        rb.get_backend("jax", variant="scan-unroll3")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present, so device='cuda' is available")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(rb.BackendUnavailableError, match="no gpu platform") as info:
        rb.get_backend("jax", device="cuda")
    assert "Hint:" in str(info.value)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL_CASES)
def test_gpu_matches_reference(cells: Any, name: str, dtype: str) -> None:
    cell = cells.get("jax", dtype, device="cuda")
    check_against_reference(cell, name)
    assert cell.info()["path"].endswith("(gpu)")
