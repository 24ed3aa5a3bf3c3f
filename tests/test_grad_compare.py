"""``compare(..., grad=True)`` and the gradient tolerance: real float32 gradients sit inside it
with a margin, a wrong gradient (a layout slip, a small scale error) does not."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from rnnbench.backends.numpy_backend import NumpyCell

import rnnbench as rb
from rnnbench.gradients import Grads, reference_vjp
from rnnbench.tolerances import gradient_tolerance

CELLS = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}


def case(cell: str, time: int = 12) -> tuple[rb.RNNWeights, np.ndarray]:
    spec = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, **CELLS[cell])  # type: ignore[arg-type]
    w = rb.RNNWeights.random(spec, seed=21, dtype="float64")
    return w, np.random.default_rng(21).standard_normal((3, time, 3))


@pytest.mark.parametrize("cell", list(CELLS))
def test_numpy_gradients_pass_in_both_dtypes(cell: str) -> None:
    w, x = case(cell)
    result = rb.compare(
        w, x, None, ["numpy"], dtypes=["float32", "float64"], grad=True, lengths=[12, 4, 9]
    )
    result.assert_close()
    for row in result.rows:
        assert row.grad_status == "pass"
        assert set(row.grad_errors) == set(reference_vjp(w, x).arrays())
        assert all(row.grad_errors[k] <= row.grad_bounds[k] for k in row.grad_errors)
    assert result.row("numpy", "float64").grad_errors["dx"] < 1e-12
    text = str(result)
    assert "gradients:" in text and "dx first bad step" in text
    json.dumps(result.to_dict())  # every field serialises


class _Skewed(NumpyCell):
    """The numpy cell with one deliberate gradient bug, to prove a check can fail."""

    name = "numpy"
    bug = "none"

    def _vjp(self, x, h0, dy, dstates, padding):  # type: ignore[no-untyped-def]
        grads = super()._vjp(x, h0, dy, dstates, padding)
        arrays = grads.arrays()
        if self.bug == "swapped-directions":
            for kind in ("w_hh", "b_ih"):
                f, r = f"l1.forward.{kind}", f"l1.reverse.{kind}"
                arrays[f], arrays[r] = arrays[r], arrays[f]
        elif self.bug == "dx-scaled":
            arrays["dx"] = arrays["dx"] * (1 + 1e-3)
        elif self.bug == "one-weight-off":
            arrays["l0.forward.w_hh"] = arrays["l0.forward.w_hh"].copy()
            arrays["l0.forward.w_hh"].flat[0] *= 1 + 1e-3
        return Grads.from_arrays(self.spec, arrays)


@pytest.mark.parametrize("bug", ["swapped-directions", "dx-scaled", "one-weight-off"])
def test_a_wrong_gradient_fails(bug: str) -> None:
    w, x = case("lstm")
    cell = _Skewed(dtype="float32")
    cell.bug = bug
    result = rb.compare(
        w, x, None, ["numpy"], dtypes=["float32"], grad=True, cells={("numpy", "float32"): cell}
    )
    row = result.rows[0]
    assert row.status == "pass" and row.grad_status == "fail", result.grad_table()
    assert not result.passed
    with pytest.raises(rb.ToleranceError, match="gradients"):
        result.assert_close()
    if bug == "dx-scaled":
        assert row.grad_first_bad_step is not None


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_tolerance_is_honest_at_both_ends(cell: str) -> None:
    """float32 gradients over T=100 through two bidirectional layers: the worst error stays well
    inside the bound, and the bound is not so loose that it checks nothing (within 1000x of the
    error actually made, array by array)."""
    w, x = case(cell, time=100)
    rng = np.random.default_rng(3)
    dy = rng.standard_normal((3, 100, 10))
    f32 = NumpyCell(dtype="float32")
    f32.load(w.astype("float32"))
    got = f32.vjp(x.astype(np.float32), None, dy.astype(np.float32)).arrays()
    ref = reference_vjp(w, x, None, dy)
    tol = gradient_tolerance(w, "float32", x, None, dy, None, reference=ref)
    ratios = {k: float(np.abs(got[k] - v).max()) / tol.bounds[k] for k, v in ref.arrays().items()}
    assert max(ratios.values()) < 0.2, ratios
    assert min(r for r in ratios.values() if r > 0) > 1e-3, ratios


def test_a_backend_without_gradients_is_skipped_with_its_reason() -> None:
    class NoGrads(NumpyCell):
        computes_gradients = False

    w, x = case("rnn")
    result = rb.compare(
        w, x, None, ["numpy"], grad=True, cells={("numpy", "float32"): NoGrads(dtype="float32")}
    )
    row = result.rows[0]
    assert row.grad_status == "skipped" and "does not compute gradients" in (row.grad_reason or "")
    assert result.passed


def test_check_grad_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "check.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnbench",
            "check",
            "--backends",
            "numpy",
            "--cell",
            "gru",
            "--grad",
            "--seq-len",
            "10",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "gradients: GRU" in done.stdout
    row = json.loads(out.read_text())["checks"][0]["rows"][0]
    assert row["grad_status"] == "pass" and "l0.forward.w_hh" in row["grad_errors"]
