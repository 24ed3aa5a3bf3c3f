"""compare(): the table, the verdicts, skipped and broken backends, NaN never passes."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from rnnbench.backends.numpy_backend import NumpyCell

import rnnbench as rb
from rnnbench import registry
from rnnbench.tolerances import tolerance


class _ShiftedCell(NumpyCell):
    """Right until step 5, then off by 1e-3: a drift the table must locate."""

    name = "shifted"

    def fetch(self, result: Any) -> tuple[np.ndarray, Any]:
        y, h = super().fetch(result)
        y = y.copy()
        y[1, 5:, 2] += 1e-3
        return y, h


class _NaNCell(NumpyCell):
    name = "nan"

    def fetch(self, result: Any) -> tuple[np.ndarray, Any]:
        y, states = result
        nan_states = tuple(np.full_like(s, np.nan) for s in states)
        return np.full_like(y, np.nan), self.public_state(nan_states)


class _RaisingCell(NumpyCell):
    name = "raising"

    def run(self, prepared: Any) -> Any:
        raise RuntimeError("library exploded")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("rnnbench_test_fakes")
    for cls in (_ShiftedCell, _NaNCell, _RaisingCell):
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "rnnbench_test_fakes", module)
    reg = dict(registry._load_registry())
    for cls in (_ShiftedCell, _NaNCell, _RaisingCell):
        reg[cls.name] = rb.BackendInfo(cls.name, f"rnnbench_test_fakes:{cls.__name__}")
    reg["missing"] = rb.BackendInfo("missing", "x:Y", requires=("no_such_lib_xyz",), extra="zz")
    monkeypatch.setattr(registry, "_registry", reg)
    yield


@pytest.fixture
def case() -> tuple[rb.RNNWeights, np.ndarray]:
    w = rb.RNNWeights.random(rb.RNNSpec(3, 4), seed=0)
    x = np.random.default_rng(1).standard_normal((2, 10, 3))
    return w, x


def test_numpy_passes_in_both_dtypes(case: tuple) -> None:
    result = rb.compare(*case, backends=["numpy"], dtypes=["float32", "float64"])
    result.assert_close()
    assert result.passed
    assert result.row("numpy", "float64").max_abs == 0.0
    assert 0 < result.row("numpy", "float32").max_abs < 1e-5
    table = str(result)
    for word in ("backend", "max abs err", "max rel err", "first bad step", "PASS", "float64"):
        assert word in table


def test_a_drift_is_located_at_its_first_step(fakes: None, case: tuple) -> None:
    result = rb.compare(*case, backends=["numpy", "shifted"], dtypes=["float64"])
    row = result.row("shifted", "float64")
    assert row.status == "fail" and not result.passed
    assert row.first_bad_step == 5 and row.first_bad_index == (1, 2)
    assert row.max_abs == pytest.approx(1e-3, rel=1e-6)
    assert row.error_per_step[4] == 0.0 and row.error_per_step[5] > 0
    with pytest.raises(rb.ToleranceError) as info:
        result.assert_close()
    assert "shifted" in str(info.value) and "t=5 (1, 2)" in str(info.value)


def test_nan_never_passes(fakes: None, case: tuple) -> None:
    result = rb.compare(*case, backends=["nan"], dtypes=["float32"])
    row = result.row("nan")
    assert row.status == "fail" and row.first_bad_step == 0
    with pytest.raises(rb.ToleranceError):
        result.assert_close()


def test_a_broken_backend_is_an_error_row_and_others_still_run(fakes: None, case: tuple) -> None:
    result = rb.compare(*case, backends=["raising", "numpy"])
    assert result.row("raising").status == "error"
    assert "library exploded" in (result.row("raising").reason or "")
    assert result.row("numpy").status == "pass"
    with pytest.raises(rb.ToleranceError, match="raising"):
        result.assert_close()


def test_a_missing_library_is_skipped_with_its_reason(fakes: None, case: tuple) -> None:
    result = rb.compare(*case, backends=["missing", "numpy"])
    row = result.row("missing")
    assert row.status == "skipped" and "no_such_lib_xyz" in (row.reason or "")
    assert "rnnbench[zz]" in (row.reason or "")
    result.assert_close()  # skipped is reported, not a failure
    assert "skipped" in str(result)


def test_unknown_backend_fails_before_anything_runs(case: tuple) -> None:
    with pytest.raises(rb.UnknownBackendError, match="'nump'"):
        rb.compare(*case, backends=["nump"])


def test_bad_input_is_refused_before_any_backend_runs(case: tuple) -> None:
    w, x = case
    x = x.copy()
    x[0, 0, 0] = np.nan
    with pytest.raises(rb.NonFiniteError):
        rb.compare(w, x, backends=["numpy"])
    with pytest.raises(rb.ShapeError, match="h0 has shape"):
        rb.compare(w, case[1], np.zeros((1, 1, 4)), backends=["numpy"])


def test_result_serialises(case: tuple) -> None:
    data = rb.compare(*case, backends=["numpy"]).to_dict()
    assert data["schema"] == "rnnbench.check/1.3" and data["padding"] is None
    assert data["rows"][0]["backend"] == "numpy" and len(data["rows"][0]["error_per_step"]) == 10


# --- the tolerance rule ----------------------------------------------------------------------
def test_tolerance_floor_grows_with_length_and_dtype() -> None:
    f32 = tolerance("float32", 500, fan_in=64)
    f64 = tolerance("float64", 500, fan_in=64)
    assert f64.atol[0] < 1e-13 < f32.atol[0] < 1e-5
    np.testing.assert_allclose(f32.atol[-1] / f32.atol[0], np.sqrt(500))  # a random walk
    np.testing.assert_allclose(f32.atol / f64.atol, np.finfo(np.float32).eps / np.finfo(float).eps)


def _regime(norm: float, input_scale: float) -> tuple[rb.RNNWeights, np.ndarray]:
    w = rb.RNNWeights.random(rb.RNNSpec(4, 32), seed=5, dtype="float64", recurrent_norm=norm)
    x = np.random.default_rng(1).standard_normal((2, 300, 4)) * input_scale
    return w, x


def test_tolerance_follows_the_measured_sensitivity() -> None:
    from rnnbench.tolerances import comparable_steps, tolerance_for

    w, x = _regime(0.5, 1.0)
    contractive = tolerance_for(w, "float32", x)
    w, x = _regime(5.0, 0.1)
    chaotic = tolerance_for(w, "float32", x)
    # damped: the allowance stays at rounding level, and every step is compared
    assert contractive.atol.max() < 1e-4
    assert comparable_steps(contractive) == 300
    # chaotic: float32 rounding is amplified until the trajectories part ways; the tolerance
    # says where comparison stops meaning anything, early steps are still held tight
    assert chaotic.atol[0] < 1e-4
    assert 10 < comparable_steps(chaotic) < 150
    assert chaotic.atol[-1] == 2.0


def test_tolerance_catches_a_float32_bias_rounded_wrong() -> None:
    """A plausible porting bug (one of two biases dropped at 1e-3 scale) fails at step 0."""
    w, x = _regime(1.0, 1.0)
    d = w[0, 0]
    broken = rb.RNNWeights(w.spec, [[rb.DirectionWeights(d.w_ih, d.w_hh, d.b_ih + 1e-3, d.b_hh)]])
    cell = rb.get_backend("numpy")
    cell.load(broken)
    y, h = cell.forward(x)
    ref_y, ref_h = rb.reference_forward(w, x)
    from rnnbench.compare import measure
    from rnnbench.tolerances import step_ages, tolerance_for

    found = measure(y, h, ref_y, ref_h, tolerance_for(w, "float32", x), step_ages(300, 1, 1, 32))
    assert not found["passed"] and found["first_bad_step"] == 0
