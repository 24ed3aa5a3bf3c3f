"""The equivalence suite: every registered backend through ``rnnbench.testing``'s checks, the
same checks any outside implementation runs (docs/testing.md), against the float64 NumPy
reference with the tolerances of ``rnnbench.tolerances`` alone.

The cases are parametrized over the backends (``--backends`` / ``RNNBENCH_BACKENDS`` select a
subset; ``RNNBENCH_DEVICE=cuda`` runs the same suite on a GPU) and over the checks, each for the
cells it runs for: the vanilla RNN, the LSTM, and the GRU in both of its formulas (reset-after,
reset-before). A backend whose library lacks a formula (torch and the reset-before GRU, tf1 and
the reset-after GRU) or a padding (torch and tf1 pad only at the end) is skipped with that
reason. Cells come from the session's cell cache, so that each backend's worker process starts
once for the whole run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import rnnbench as rb
from rnnbench.registry import BUILTIN_BACKENDS
from rnnbench.testing import CheckCase, Implementation, check_cases
from rnnbench.tolerances import SEED_ATOL

DEVICE = os.environ.get("RNNBENCH_DEVICE", "cpu")
BUILTIN_NAMES = {info.name for info in BUILTIN_BACKENDS}
# Keras on TensorFlow runs here op by op: its default variant compiles every model with XLA
# (seconds per model, twice that for a gradient), which this suite's many specs would multiply
# into minutes. tests/test_backend_keras.py checks the XLA variant against the same reference:
# the forward pass of every cell, the backward pass compiled once and run on reloaded weights.
SUITE_VARIANTS = {"keras": "eager"}


def implementation(cells, backend: str) -> Implementation:  # type: ignore[no-untyped-def]
    """``backend``'s cells (from the session cache) as the checks take them. Every backend has
    a lengths mechanism, and every built-in one computes gradients in every dtype and on every
    device it runs: a refusal of either fails the check instead of skipping it."""
    if DEVICE not in rb.backend_info(backend).devices:
        pytest.skip(f"backend {backend!r} has no device {DEVICE!r}")
    required = ("lengths", "gradients") if backend in BUILTIN_NAMES else ("lengths",)
    return Implementation(
        lambda dtype, device: cells.get(backend, dtype, device, SUITE_VARIANTS.get(backend)),
        name=backend,
        device=DEVICE,
        required=required,
    )


@pytest.mark.parametrize("check", check_cases(), ids=str)
def test_checks(cells, backend: str, check: CheckCase) -> None:  # type: ignore[no-untyped-def]
    check(implementation(cells, backend))


def test_seed(cells, backend: str, seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:  # type: ignore[no-untyped-def]
    """Every backend gives the seed notebook's printed output from the seed's kernel."""
    impl = implementation(cells, backend)
    cell = impl.cell("float32")
    x = np.array(seed_notebook["input"], np.float32)
    result = rb.compare(
        seed_weights, x, None, [backend], device=DEVICE, cells={(backend, "float32"): cell}
    )
    result.assert_close()
    y, h_n = cell.forward(x)
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)
    assert result.rows[0].path
