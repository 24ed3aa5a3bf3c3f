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

    def fetch(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        y, h = result
        y = y.copy()
        y[1, 5:, 2] += 1e-3
        return y, h


class _NaNCell(NumpyCell):
    name = "nan"

    def fetch(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        y, h = result
        return np.full_like(y, np.nan), np.full_like(h, np.nan)


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
    assert data["schema"] == "rnnbench.check/1"
    assert data["rows"][0]["backend"] == "numpy" and len(data["rows"][0]["error_per_step"]) == 10


# --- the tolerance rule ----------------------------------------------------------------------
def test_tolerance_grows_with_length_and_dtype() -> None:
    f32 = tolerance("float32", 500, fan_in=64)
    f64 = tolerance("float64", 500, fan_in=64)
    assert f64.atol[0] < 1e-13 < f32.atol[0] < 1e-5
    assert f32.atol[-1] > f32.atol[0]  # drift allowed to accumulate
    np.testing.assert_allclose(f32.atol[-1] / f32.atol[0], np.sqrt(500))  # g = 1: random walk


def test_tolerance_by_regime() -> None:
    contractive = tolerance("float32", 500, fan_in=64, growth=0.5)
    expansive = tolerance("float32", 500, fan_in=64, growth=1.5)
    # contractive: the carried error stays bounded by 1/sqrt(1 - g^2)
    assert contractive.atol[-1] == pytest.approx(contractive.atol[0] / np.sqrt(1 - 0.25))
    # expansive: the bound explodes and is capped at the largest possible tanh difference
    assert expansive.atol[-1] == 2.0
    from rnnbench.tolerances import comparable_steps

    assert comparable_steps(contractive) == 500
    assert 10 < comparable_steps(expansive) < 60
