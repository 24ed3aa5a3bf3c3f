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
    "lstm-1layer": (rb.RNNSpec(3, 5, cell="lstm"), 3, 40, False),
    "lstm-2layer-bidir-h0c0": (
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="lstm"),
        2,
        30,
        True,
    ),
    "gru-1layer": (rb.RNNSpec(3, 5, cell="gru"), 3, 40, False),
    "gru-2layer-bidir-h0": (
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru"),
        2,
        30,
        True,
    ),
    "gru-before-2layer-bidir-h0": (
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru", reset_after=False),
        2,
        30,
        True,
    ),
}
# The cases of each cell, for backend tests that run every cell.
CELL_CASES = {
    "rnn": ("tanh-1layer", "relu-2layer-bidir-h0"),
    "lstm": ("lstm-1layer", "lstm-2layer-bidir-h0c0"),
    "gru": ("gru-1layer", "gru-2layer-bidir-h0"),
    "gru(reset-before)": ("gru-before-2layer-bidir-h0",),
}


def make_case(
    spec: rb.RNNSpec, batch: int, steps: int, with_h0: bool
) -> tuple[rb.RNNWeights, np.ndarray, Any]:
    """float64 weights (seed 0), a standard-normal input and, if asked, an initial state (seed
    1): h0, or (h0, c0) for an LSTM."""
    weights = rb.RNNWeights.random(spec, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, spec.input_size))
    h0: Any = None
    if with_h0:
        shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        states = tuple(0.5 * rng.standard_normal(shape) for _ in spec.state_names)
        h0 = states if spec.cell == "lstm" else states[0]
    return weights, x, h0


def cast_state(h0: Any, dtype: Any) -> Any:
    """A public state (None, an array, or an LSTM's pair) cast to ``dtype``."""
    if h0 is None:
        return None
    if isinstance(h0, tuple):
        return tuple(np.asarray(s).astype(dtype) for s in h0)
    return np.asarray(h0).astype(dtype)


def state_parts(h_n: Any) -> tuple[np.ndarray, ...]:
    """A public final state as a tuple: (h_n,) or (h_n, c_n)."""
    return tuple(h_n) if isinstance(h_n, tuple) else (h_n,)


def case(name: str) -> tuple[rb.RNNWeights, np.ndarray, Any]:
    return make_case(*CASES[name])


def check_case(
    cell: Any, spec: rb.RNNSpec, batch: int, steps: int, with_h0: bool
) -> tuple[np.ndarray, Any, dict[str, Any]]:
    """Run a case on ``cell`` in its dtype; assert it is within tolerance of float64 and
    return (y, the final state, what ``measure`` found)."""
    weights, x, h0 = make_case(spec, batch, steps, with_h0)
    dtype = cell.dtype
    cell.load(weights.astype(dtype))
    y, h_n = cell.forward(x.astype(dtype), cast_state(h0, dtype))
    ref_y, ref_h = rb.reference_forward(weights, x, h0)
    assert y.dtype == dtype and all(s.dtype == dtype for s in state_parts(h_n))
    assert y.shape == ref_y.shape
    assert [s.shape for s in state_parts(h_n)] == [s.shape for s in state_parts(ref_h)]
    tol = tolerance_for(weights, dtype, x, h0)
    ages = step_ages(steps, spec.num_directions, spec.num_layers, spec.hidden_size)
    found = measure(y, h_n, ref_y, ref_h, tol, ages)
    assert found["passed"], (cell.name, str(dtype), found["max_abs"], found["first_bad_step"])
    return y, h_n, found


def check_against_reference(cell: Any, name: str) -> tuple[np.ndarray, Any]:
    """Case ``name`` of CASES through :func:`check_case`; returns (y, h_n)."""
    y, h_n, _ = check_case(cell, *CASES[name])
    return y, h_n


def check_lstm_state_pair(cell: Any, dtype: str) -> None:
    """The pair (h0, c0) goes in and (h_n, c_n) comes out, as nn.LSTM has them: both match the
    reference, c0 is used (a zero c0 gives other values), h_n is the last output of the last
    layer, and a lone h0 is refused."""
    import pytest

    weights, x, (h0, c0) = case("lstm-2layer-bidir-h0c0")
    cell.load(weights.astype(dtype))
    y, state = cell.forward(x.astype(dtype), cast_state((h0, c0), dtype))
    assert isinstance(state, tuple) and len(state) == 2
    h_n, c_n = state
    ref_y, (ref_h, ref_c) = rb.reference_forward(weights, x, (h0, c0))
    atol = 1e-5 if dtype == "float32" else 1e-12
    for got, ref in ((y, ref_y), (h_n, ref_h), (c_n, ref_c)):
        np.testing.assert_allclose(got, ref, atol=atol, rtol=0)
    hidden = weights.spec.hidden_size
    np.testing.assert_array_equal(h_n[2], y[:, -1, :hidden])  # last layer, forward direction
    np.testing.assert_array_equal(h_n[3], y[:, 0, hidden:])  # last layer, backward direction
    y_zero_c, _ = cell.forward(x.astype(dtype), cast_state((h0, np.zeros_like(c0)), dtype))
    assert np.abs(y_zero_c - y).max() > 1e-3
    with pytest.raises(rb.ShapeError, match=r"\(h0, c0\)"):
        cell.forward(x.astype(dtype), h0.astype(dtype))


# The worst error of each gradient array relative to its largest reference entry: float64 is
# each library's autodiff of the same formulas (rounding only), float32 a sanity bound for these
# small cases (the calibrated bound is compare's, in the equivalence suite). A wrong gate block,
# a swapped (c, h), a missing bias gradient or a gradient of the wrong direction is O(1).
GRAD_RTOL = {"float32": 1e-4, "float64": 1e-10}


def grad_cotangents(spec: rb.RNNSpec, batch: int, steps: int) -> tuple[np.ndarray, Any]:
    """Seeded float64 cotangents: dy, and dh_n (a pair (dh_n, dc_n) for an LSTM)."""
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((batch, steps, spec.output_size))
    shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
    parts = tuple(rng.standard_normal(shape) for _ in spec.state_names)
    return dy, parts if spec.cell == "lstm" else parts[0]


def check_grad_arrays(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], dtype: str, zero_ok: bool = False
) -> dict[str, float]:
    """Every array of ``Grads.arrays()`` against the float64 reference's, by name, dtype, shape
    and error relative to the array's largest entry (below ``GRAD_RTOL``). A reference array of
    zeros fails the case (it would check nothing) unless ``zero_ok`` (the biases of a spec
    without them), when the cell's must be exactly zero. Returns the relative errors."""
    assert list(got) == list(want)
    errors = {}
    for name, ref in want.items():
        assert got[name].dtype == np.dtype(dtype) and got[name].shape == ref.shape, name
        scale = float(np.abs(ref).max())
        if scale == 0.0 and zero_ok:
            assert not got[name].any(), name
            continue
        assert scale > 0, f"{name}: the case gives it no gradient to check"
        errors[name] = float(np.abs(got[name] - ref).max()) / scale
        assert errors[name] < GRAD_RTOL[dtype], (name, dtype, errors[name])
    return errors
