"""The tolerance rule against the errors libraries really make: inside it with a margin, and
not so loose that a real bug would pass (a tolerance that cannot fail checks nothing)."""

from __future__ import annotations

import numpy as np
import pytest

import rnnbench as rb
from rnnbench.tolerances import step_ages, tolerance_for

CASES = {
    "stacked-bidir-T500": (rb.RNNSpec(8, 32, num_layers=2, bidirectional=True), 2, 500, None, 1.0),
    "near-orthogonal": (rb.RNNSpec(4, 32), 2, 300, 1.0, 1.0),
    "chaotic": (rb.RNNSpec(4, 32), 2, 300, 5.0, 0.1),
    "wide": (rb.RNNSpec(64, 128), 2, 100, None, 1.0),
}
# The gated cells hold the same rule: more rounding per step (gates, products, the cell state
# carried additively), the same fan-in per gate pre-activation.
for _label, _fields in {
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}.items():
    CASES[f"{_label}-stacked-bidir-T500"] = (
        rb.RNNSpec(8, 32, num_layers=2, bidirectional=True, **_fields),  # type: ignore[arg-type]
        2,
        500,
        None,
        1.0,
    )
    CASES[f"{_label}-near-orthogonal"] = (rb.RNNSpec(4, 32, **_fields), 2, 300, 1.0, 1.0)  # type: ignore[arg-type]
    CASES[f"{_label}-wide"] = (rb.RNNSpec(64, 128, **_fields), 2, 100, None, 1.0)  # type: ignore[arg-type]


def _ratios(cell: rb.RNNCell, name: str, dtype: str) -> tuple[float, float, float]:
    """(worst error / allowance, allowance / error at a typical step, largest absolute
    allowance) over the steps really compared; the second is the median over steps of the
    tightest allowance at that step over the largest error at that step."""
    spec, batch, time, norm, scale = CASES[name]
    w = rb.RNNWeights.random(spec, seed=4, dtype="float64", recurrent_norm=norm)
    x = np.random.default_rng(1).standard_normal((batch, time, spec.input_size)) * scale
    ref, _ = rb.reference_forward(w, x)
    try:
        cell.load(w.astype(dtype))
    except rb.BackendUnavailableError as exc:  # e.g. torch has no reset-before GRU
        pytest.skip(str(exc).split("\nHint:")[0])
    y, _ = cell.forward(x.astype(dtype))
    tol = tolerance_for(w, dtype, x)
    ages = step_ages(time, spec.num_directions, spec.num_layers, spec.hidden_size)
    live = tol.scale(ages) < 0.1  # (time, features) where the comparison means something
    err = np.abs(y - ref)
    bound = tol.bounds(ref, ages)
    worst = float((err[:, live] / bound[:, live]).max())
    steps = live.all(axis=1)
    per_step = bound[:, steps].min(axis=(0, 2)) / np.maximum(err[:, steps].max(axis=(0, 2)), 1e-300)
    return worst, float(np.median(per_step)), float(tol.scale(ages)[live].max())


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("case", list(CASES))
def test_float32_errors_sit_well_inside_a_meaningful_tolerance(
    cells,  # type: ignore[no-untyped-def]
    library: str,
    case: str,
) -> None:
    worst, slack, widest = _ratios(cells.get(library, "float32"), case, "float32")
    assert worst < 0.2, f"{library} {case}: error reaches {worst:.2f} of the allowance"
    if case.endswith("stacked-bidir-T500") and case != "stacked-bidir-T500":
        # Above a bidirectional layer every output is judged as T-1 steps old, and the rounding
        # floor grows like a random walk over that age; gated cells forget most of their
        # rounding (their gates contract), so there the floor is 1500-3600x their typical
        # error. It still sits far below what a lower-precision kernel makes (TF32's unit
        # roundoff is 4.9e-4), which is what a tolerance must catch besides layout bugs.
        assert slack < 5000, f"{library} {case}: the allowance is {slack:.0f}x the typical error"
        assert widest < 2e-4, f"{library} {case}: the allowance reaches {widest:.1e}"
    else:
        assert slack < 1000, f"{library} {case}: the allowance is {slack:.0f}x the typical error"
