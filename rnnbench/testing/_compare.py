"""One comparison of a cell under test with the float64 reference, and the failure message.

``rnnbench.compare`` does the comparison (tolerances from :mod:`rnnbench.tolerances`, the
table, the first bad step); this module runs it on a cell that need not be registered, tells a
refusal (skip) from a failure, and on a failure says what is wrong: the table, the first bad
element with the value found and the one expected, and the fault when the output matches a
known one (h0 ignored, biases dropped, a transposed kernel, the reverse direction's final
state, float32 arithmetic in a float64 cell, the padding ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rnnbench.compare import BackendComparison, CompareResult, compare, measure
from rnnbench.errors import BackendUnavailableError, UnsupportedPaddingError
from rnnbench.padding import as_written, check_padding
from rnnbench.reference import reference_forward
from rnnbench.testing.implementation import Implementation, reason_of
from rnnbench.tolerances import Tolerance, step_ages, tolerance_for
from rnnbench.weights import DirectionWeights, RNNWeights

# compare() takes ready cells only under a registered backend's name; the cell under test is
# filed under this one and its rows renamed after the implementation.
_SLOT = "numpy"


class Recorder:
    """The cell under test as ``compare`` calls it: loads each weights once, remembers the
    last forward's output (for the diagnosis) and which call refused, and gives an ``info()``
    to a cell that has none."""

    def __init__(self, cell: Any) -> None:
        self.cell = cell
        self.dtype = cell.dtype
        self.loaded: RNNWeights | None = None
        self.refused: tuple[str, BaseException] | None = None
        self.output: tuple[np.ndarray, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cell, name)

    def load(self, weights: RNNWeights) -> None:
        if self.loaded is not None and (weights is self.loaded or weights.equals(self.loaded)):
            return
        try:
            self.cell.load(weights)
        except BackendUnavailableError as exc:
            self.refused = ("load", exc)
            raise
        self.loaded = weights

    def forward(self, x: Any, h0: Any = None, **padding: Any) -> tuple[np.ndarray, Any]:
        self.output = None
        try:
            y, h_n = self.cell.forward(x, h0, **padding)
        except BackendUnavailableError as exc:
            self.refused = ("forward", exc)
            raise
        self.output = (y, h_n)
        return y, h_n

    def info(self) -> dict[str, Any]:
        info = getattr(self.cell, "info", None)
        return dict(info()) if callable(info) else {}


def run_compare(
    impl: Implementation,
    cell: Any,
    weights: RNNWeights,
    x: np.ndarray,
    h0: Any = None,
    *,
    what: str,
    grad: bool = False,
    lengths: Any = None,
    mask: Any = None,
) -> BackendComparison:
    """Compare ``cell`` on one case; skip on a refusal (or fail when the feature is required),
    fail with the table and the diagnosis when it is out of tolerance. ``what`` names the case
    in the message."""
    rec = cell if isinstance(cell, Recorder) else Recorder(cell)
    dtype = str(rec.dtype)
    rec.refused = None
    result = compare(
        weights,
        x,
        h0,
        [_SLOT],
        dtypes=[dtype],
        device=impl.device,
        cells={(_SLOT, dtype): rec},  # type: ignore[dict-item]
        grad=grad,
        lengths=lengths,
        mask=mask,
    )
    for r in result.rows:
        r.backend = impl.name
    row = result.rows[0]
    if row.status == "skipped":
        exc = rec.refused[1] if rec.refused else None
        feature = "spec"
        if isinstance(exc, UnsupportedPaddingError):
            feature = "lengths" if lengths is not None else "mask"
        impl.unsupported(feature, row.reason or (reason_of(exc) if exc else "refused"))
    if not result.passed:
        fail(impl, rec, result, weights, x, h0, what, lengths=lengths, mask=mask)
    if grad and row.grad_status == "skipped":  # the forward pass ran and passed
        impl.unsupported("gradients", row.grad_reason or "no gradients")
    return row


def fail(
    impl: Implementation,
    rec: Recorder,
    result: CompareResult,
    weights: RNNWeights,
    x: np.ndarray,
    h0: Any,
    what: str,
    *,
    lengths: Any = None,
    mask: Any = None,
) -> None:
    row = result.rows[0]
    dtype = str(rec.dtype)
    head = f"{impl.name} ({dtype}), {what}:"
    lines: list[str] = []
    if row.status == "error":
        lines.append(f"{head} forward() raised {row.reason}")
    elif row.status == "fail":
        fault, element = diagnose(rec, weights, x, h0, lengths, mask, row)
        lines.append(f"{head} {fault or 'the output differs from the float64 reference'}")
        if element:
            lines.append(element)
    if row.grad_status in ("fail", "error"):
        lines.append(
            f"{head} the gradients "
            + (
                "differ from the float64 reference (backpropagation through time)"
                if row.grad_status == "fail"
                else f"could not be computed: {row.grad_reason}"
            )
        )
        if row.grad_first_bad_step is not None:
            lines.append(f"dx first leaves its tolerance at t={row.grad_first_bad_step}")
    lines += ["", str(result), f"tolerance: {row.tolerance}"]
    pytest.fail("\n".join(lines), pytrace=False)


def _alternatives(
    weights: RNNWeights, h0: Any, lengths: Any, mask: Any
) -> list[tuple[str, Callable[[], tuple[RNNWeights, Any, dict[str, Any]]]]]:
    """Known faults, each as (what it is, the case whose correct output the faulty cell
    returns)."""
    spec = weights.spec
    pad: dict[str, Any] = {}
    if lengths is not None:
        pad["lengths"] = lengths
    elif mask is not None:
        pad["mask"] = mask
    out: list[tuple[str, Callable[[], tuple[RNNWeights, Any, dict[str, Any]]]]] = []
    if h0 is not None:
        out.append(
            (
                "h0 is ignored: the output is the one from a zero initial state",
                lambda: (weights, None, pad),
            )
        )
        if spec.cell == "lstm":
            h, c = h0
            out.append(
                (
                    "c0 is ignored: the output is the one from c0 = 0",
                    lambda: (weights, (h, np.zeros_like(c)), pad),
                )
            )
            out.append(("h0 and c0 are swapped", lambda: (weights, (c, h), pad)))
    if spec.bias:
        when = " when h0 is given" if h0 is not None else ""
        out.append(
            (
                f"the biases are dropped{when}: the output is the one with zero biases",
                lambda: (_map(weights, bias=True), h0, pad),
            )
        )
    h = spec.hidden_size
    out.append(
        (
            "the recurrent kernel is transposed: h @ w_hh.T instead of h @ w_hh (on square "
            "H x H blocks of w_hh)",
            lambda: (_map(weights, w_hh=True), h0, pad),
        )
    )
    if any(spec.layer_input_size(k) == h for k in range(spec.num_layers)):
        out.append(
            (
                "the input kernel is transposed: x @ w_ih.T instead of x @ w_ih (on square "
                "blocks of w_ih)",
                lambda: (_map(weights, w_ih=True), h0, pad),
            )
        )
    if pad:
        out.append(
            (
                f"the padding ({', '.join(pad)}) is ignored: the output is the one of the "
                "full batch",
                lambda: (weights, h0, {}),
            )
        )
    return out


def _map(
    weights: RNNWeights, *, bias: bool = False, w_hh: bool = False, w_ih: bool = False
) -> RNNWeights:
    spec = weights.spec
    h = spec.hidden_size

    def transposed(a: np.ndarray) -> np.ndarray:
        if a.shape[0] != h:
            return a
        blocks = [a[:, g * h : (g + 1) * h].T for g in range(a.shape[1] // h)]
        return np.concatenate(blocks, axis=1)

    rows = []
    for row in weights.layers:
        new = []
        for dw in row:
            new.append(
                DirectionWeights(
                    transposed(dw.w_ih) if w_ih else dw.w_ih,
                    transposed(dw.w_hh) if w_hh else dw.w_hh,
                    np.zeros_like(dw.b_ih) if bias else dw.b_ih,
                    np.zeros_like(dw.b_hh) if bias else dw.b_hh,
                )
            )
        rows.append(new)
    return RNNWeights(spec, rows, dtype=weights.dtype)


def _parts(state: Any) -> tuple[np.ndarray, ...]:
    parts = state if isinstance(state, (tuple, list)) else (state,)
    return tuple(np.asarray(s, np.float64) for s in parts)


def diagnose(
    rec: Recorder,
    weights: RNNWeights,
    x: np.ndarray,
    h0: Any,
    lengths: Any,
    mask: Any,
    row: BackendComparison,
) -> tuple[str | None, str | None]:
    """What is wrong with the cell's last output (a known fault, or None) and where it first
    leaves the tolerance (the element, its value and the expected one)."""
    if rec.output is None:
        return None, None
    y, h_n = rec.output
    spec = weights.spec
    dtype = str(rec.dtype)
    padding = check_padding(lengths, mask, x.shape[0], x.shape[1])
    written = row.masked_output or "zero"
    ref_y, ref_h = reference_forward(weights, x, h0, lengths=lengths, mask=mask)
    expected = as_written(ref_y, padding, written)
    tol = tolerance_for(weights, dtype, x, h0, reference=ref_y, padding=padding)
    ages = step_ages(x.shape[1], spec.num_directions, spec.num_layers, spec.hidden_size)
    element = _element(y, h_n, expected, ref_h, tol, ages, row)
    y = np.asarray(y)
    if y.dtype != np.dtype(dtype):
        return f"y has dtype {y.dtype}, the cell computes in {dtype}", element
    if np.isnan(y).any():
        return f"y holds {int(np.isnan(y).sum())} NaN value(s)", element
    fault = _reverse_final_state(y, h_n, expected, ref_h, spec, tol)
    if fault:
        return fault, element
    for name, alternative in _alternatives(weights, h0, lengths, mask):
        alt_w, alt_h0, alt_pad = alternative()
        alt_y, alt_h = reference_forward(alt_w, x, alt_h0, **alt_pad)
        if alt_pad:
            alt_y = as_written(alt_y, padding, written)
        if measure(y, h_n, alt_y, alt_h, tol, ages)["passed"]:
            return name, element
    if dtype == "float64":
        loose = tolerance_for(weights, "float32", x, h0, reference=ref_y, padding=padding)
        if measure(y, h_n, expected, ref_h, loose, ages)["passed"]:
            return (
                "the float64 cell computes in float32: its errors are beyond float64's "
                f"allowance ({tol.describe()}) but within float32's, i.e. float32 rounding "
                "(look for a float32 cast of the weights, the input or the state)",
                element,
            )
    return None, element


def _reverse_final_state(
    y: np.ndarray, h_n: Any, ref_y: np.ndarray, ref_h: Any, spec: Any, tol: Tolerance
) -> str | None:
    """A reverse direction's final state taken at the last time step (where the forward
    direction ends) instead of at t=0, where the reverse direction ends."""
    if not spec.bidirectional:
        return None
    h = spec.hidden_size
    top = 2 * (spec.num_layers - 1) + 1
    got = _parts(h_n)[0]
    want = _parts(ref_h)[0]
    if got.shape != want.shape or np.asarray(y).shape != ref_y.shape:
        return None
    bound = float(tol.atol.max())
    wrong = np.asarray(y, np.float64)[:, -1, h:]
    if np.abs(got[top] - want[top]).max() > bound and np.abs(got[top] - wrong).max() <= bound:
        return (
            f"the reverse direction's final state h_n[{top}] is its output at the last time "
            f"step y[:, -1, {h}:], where the forward direction ends; the reverse direction runs "
            f"from t=T-1 down to t=0, so its final state is the one after t=0 "
            f"(for the top layer, y[:, 0, {h}:])"
        )
    return None


def _element(
    y: Any,
    h_n: Any,
    expected: np.ndarray,
    ref_h: Any,
    tol: Tolerance,
    ages: np.ndarray,
    row: BackendComparison,
) -> str | None:
    y64 = np.asarray(y, np.float64)
    if y64.shape != expected.shape:
        return f"y has shape {y64.shape}, expected {expected.shape}"
    if row.first_bad_index is not None and row.first_bad_step is not None:
        b, f = row.first_bad_index
        t = row.first_bad_step
        bound = tol.bounds(expected, ages)[b, t, f]
        return (
            f"first bad element: y[{b}, {t}, {f}] (batch {b}, step t={t}, feature {f}) is "
            f"{y64[b, t, f]:.9g}, expected {expected[b, t, f]:.9g} (allowed error {bound:.2e})"
        )
    for i, (got, want) in enumerate(zip(_parts(h_n), _parts(ref_h))):
        if got.shape != want.shape:
            return f"final state part {i} has shape {got.shape}, expected {want.shape}"
        err = np.abs(got - want)
        err[np.isnan(err)] = np.inf
        index = np.unravel_index(int(np.argmax(err)), err.shape)
        if err[index] > float(tol.atol.max()):
            name = ("h_n", "c_n")[i]
            k, b, f = (int(v) for v in index)
            return (
                f"the output y is within tolerance, the final state is not: {name}[{k}, {b}, "
                f"{f}] (layer*dirs index {k}, batch {b}, feature {f}) is {got[index]:.9g}, "
                f"expected {want[index]:.9g}"
            )
    return None
