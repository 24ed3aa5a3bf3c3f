"""The JAX backend: against the float64 reference, one trace per shape, unroll variants, scoped
x64, ahead-of-time compile, and its errors. GPU parts skip on machines without one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from reference_cases import CASES, case, check_against_reference

import rnnbench as rb
from rnnbench.tolerances import SEED_ATOL, tolerance_for

jax = pytest.importorskip("jax", reason="jax not installed: pip install 'rnnbench[jax]'")


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


HAS_GPU = _has_gpu()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no GPU visible to jax here")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    check_against_reference(cells.get("jax", dtype), name)


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


@pytest.mark.parametrize("variant", ["scan-unroll4", "scan-unroll16"])
def test_unroll_variants_agree(cells: Any, variant: str) -> None:
    """Unrolling changes the loop, not the arithmetic: the same values as unroll=1 on a length
    that is no multiple of the unroll factor (so the remainder steps are exercised too)."""
    base = cells.get("jax", "float32", variant="scan")
    cell = cells.get("jax", "float32", variant=variant)
    y0, h0 = check_against_reference(base, "relu-2layer-bidir-h0")
    y1, h1 = check_against_reference(cell, "relu-2layer-bidir-h0")
    weights, x, state = case("relu-2layer-bidir-h0")
    last = tolerance_for(weights, "float32", x, state).atol[-1]
    np.testing.assert_allclose(y1, y0, atol=last, rtol=0)
    np.testing.assert_allclose(h1, h0, atol=last, rtol=0)
    assert cell.info()["path"] == f"xla-jit lax.scan unroll={variant[11:]} (cpu)"


def test_float64_is_scoped_and_really_float64(cells: Any) -> None:
    before = jax.config.jax_enable_x64
    cell = cells.get("jax", "float64")
    weights, x, _ = case("tanh-1layer")
    cell.load(weights)
    result = cell.run(cell.prepare(x))
    cell.synchronize(result)
    assert result[0].dtype == np.float64  # the device array itself, not a cast on fetch
    y, _ = cell.fetch(result)
    ref_y, _ = rb.reference_forward(weights, x)
    # Far below what float32 arithmetic could reach (its unit roundoff is 6e-8).
    assert np.abs(y - ref_y).max() < 1e-12
    assert jax.config.jax_enable_x64 == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)
    assert cell.info()["x64"].startswith("scoped")


def test_compile_ahead_of_time(cells: Any) -> None:
    cell = rb.get_backend("jax")
    weights, x, h0 = case("relu-2layer-bidir-h0")
    cell.load(weights.astype("float32"))
    prepared = cell.prepare(x.astype(np.float32), h0.astype(np.float32))
    seconds = cell.compile(prepared)
    assert seconds > 0 and cell.info()["compile_s"] == seconds
    assert cell.info()["traces"] == 2  # the ahead-of-time trace, then the jitted function's
    y, h_n = cell.fetch(cell.run(prepared))
    assert cell.info()["traces"] == 2  # run is warm: no new trace after compile()
    jitted = cells.get("jax", "float32")
    jitted.load(weights.astype("float32"))
    expected = jitted.forward(x.astype(np.float32), h0.astype(np.float32))
    np.testing.assert_array_equal(y, expected[0])
    np.testing.assert_array_equal(h_n, expected[1])


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
def test_gpu_matches_reference(cells: Any, dtype: str) -> None:
    cell = cells.get("jax", dtype, device="cuda")
    check_against_reference(cell, "relu-2layer-bidir-h0")
    assert cell.info()["path"].endswith("(gpu)")
