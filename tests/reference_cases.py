"""Small cases shared by the per-library backend tests, and one check of a cell against the
float64 reference with the project's tolerance (importable: tests/ is on pytest's path)."""

from __future__ import annotations

from typing import Any

import numpy as np

import rnnbench as rb
from rnnbench.compare import measure
from rnnbench.tolerances import step_ages, tolerance_for

CASES = {
    "tanh-1layer": (rb.RNNSpec(3, 5), 3, 40, False),
    "relu-2layer-bidir-h0": (
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, nonlinearity="relu"),
        2,
        30,
        True,
    ),
}


def make_case(
    spec: rb.RNNSpec, batch: int, steps: int, with_h0: bool
) -> tuple[rb.RNNWeights, np.ndarray, np.ndarray | None]:
    """float64 weights (seed 0), a standard-normal input and, if asked, an h0 (seed 1)."""
    weights = rb.RNNWeights.random(spec, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, spec.input_size))
    h0 = None
    if with_h0:
        shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        h0 = 0.5 * rng.standard_normal(shape)
    return weights, x, h0


def case(name: str) -> tuple[rb.RNNWeights, np.ndarray, np.ndarray | None]:
    return make_case(*CASES[name])


def check_case(
    cell: Any, spec: rb.RNNSpec, batch: int, steps: int, with_h0: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Run a case on ``cell`` in its dtype; assert it is within tolerance of float64 and
    return (y, h_n, what ``measure`` found)."""
    weights, x, h0 = make_case(spec, batch, steps, with_h0)
    dtype = cell.dtype
    cell.load(weights.astype(dtype))
    y, h_n = cell.forward(x.astype(dtype), None if h0 is None else h0.astype(dtype))
    assert y.dtype == dtype and h_n.dtype == dtype
    ref_y, ref_h = rb.reference_forward(weights, x, h0)
    assert y.shape == ref_y.shape and h_n.shape == ref_h.shape
    tol = tolerance_for(weights, dtype, x, h0)
    ages = step_ages(steps, spec.num_directions, spec.num_layers, spec.hidden_size)
    found = measure(y, h_n, ref_y, ref_h, tol, ages)
    assert found["passed"], (cell.name, str(dtype), found["max_abs"], found["first_bad_step"])
    return y, h_n, found


def check_against_reference(cell: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Case ``name`` of CASES through :func:`check_case`; returns (y, h_n)."""
    y, h_n, _ = check_case(cell, *CASES[name])
    return y, h_n
