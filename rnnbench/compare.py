"""``compare``: every available backend against the float64 NumPy reference."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench.arrays import resolve_dtype
from rnnbench.cell import RNNCell, check_inputs
from rnnbench.errors import BackendUnavailableError, RNNBenchError, ToleranceError
from rnnbench.gradients import reference_vjp
from rnnbench.padding import as_written, check_padding
from rnnbench.process import strip_ansi
from rnnbench.reference import reference_forward
from rnnbench.registry import backend_info, get_backend, list_backends
from rnnbench.texttable import text_table
from rnnbench.tolerances import (
    GradTolerance,
    Tolerance,
    comparable_steps,
    gradient_tolerance,
    step_ages,
    tolerance_for,
)
from rnnbench.weights import RNNWeights

# The rows gained c_n_max_abs and the case its spec in 1.1; the case its padding and the rows
# masked_output in 1.2; the rows the grad_* fields in 1.3. Older files read as before (no
# padding, no gradients).
SCHEMA = "rnnbench.check/1.3"


class NothingComparedError(ToleranceError):
    """``assert_close()`` of a comparison in which every backend was skipped: nothing was
    verified, which must never pass for agreement."""


@dataclass
class BackendComparison:
    """One backend in one dtype against the reference."""

    backend: str
    dtype: str
    status: str  # "pass" | "fail" | "error" | "skipped"
    device: str = "cpu"
    max_abs: float = math.nan
    max_rel: float = math.nan
    first_bad_step: int | None = None
    first_bad_index: tuple[int, int] | None = None  # (batch, feature) at first_bad_step
    h_n_max_abs: float = math.nan
    c_n_max_abs: float = math.nan  # LSTMs only: the final cell state
    tolerance: str = ""
    checked_steps: int = 0
    reason: str | None = None
    path: str | None = None
    version: str | None = None
    # What the padded steps were checked against ("zero" or "repeat"); None on a full batch.
    masked_output: str | None = None
    error_per_step: list[float] = field(default_factory=list)
    # Gradients (compare(..., grad=True)): status None when not checked; per array of
    # Grads.arrays() the max error and its bound; the first step where dx leaves its bound.
    grad_status: str | None = None
    grad_reason: str | None = None
    grad_errors: dict[str, float] = field(default_factory=dict)
    grad_bounds: dict[str, float] = field(default_factory=dict)
    grad_first_bad_step: int | None = None
    grad_tolerance: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass" and self.grad_status in (None, "pass", "skipped")


@dataclass
class CompareResult:
    """All comparisons of one case; prints as a table, ``assert_close()`` raises on a failure."""

    case: str
    batch: int
    seq_len: int
    rows: list[BackendComparison]
    spec: dict[str, Any] = field(default_factory=dict)
    padding: dict[str, Any] | None = None  # Padding.to_dict() of a padded batch

    @property
    def passed(self) -> bool:
        """No backend failed or broke (skipped ones are listed, not counted as failures), in
        the forward pass or, when checked, the gradients."""
        return all(
            r.status in ("pass", "skipped") and r.grad_status in (None, "pass", "skipped")
            for r in self.rows
        )

    @property
    def compared(self) -> bool:
        """At least one backend ran and was measured against the reference (pass or fail);
        False when every row was skipped (e.g. device="cuda" without a GPU) or there were no
        backends at all: then nothing was verified."""
        return any(r.status in ("pass", "fail") for r in self.rows)

    def skip_reasons(self) -> list[str]:
        """``backend (dtype): reason`` of every skipped row."""
        return [f"{r.backend} ({r.dtype}): {r.reason}" for r in self.rows if r.status == "skipped"]

    @property
    def has_gradients(self) -> bool:
        return any(r.grad_status is not None for r in self.rows)

    def grad_table(self) -> str:
        """The gradients' errors: dx, dh0 (dc0), the worst weight array relative to its bound,
        and the first step where dx leaves its tolerance."""
        lstm = any("dc0" in r.grad_errors for r in self.rows)
        head = (
            "backend",
            "dtype",
            "dx err",
            "dh0 err",
            *(("dc0 err",) if lstm else ()),
            "worst weight (err/bound)",
            "dx first bad step",
            "verdict",
        )
        body = []
        for r in self.rows:
            if r.grad_status is None:
                continue
            weights = {k: v for k, v in r.grad_errors.items() if k not in ("dx", "dh0", "dc0")}
            worst = "-"
            if weights:
                name = max(weights, key=lambda k: _ratio(weights[k], r.grad_bounds.get(k)))
                ratio = _ratio(weights[name], r.grad_bounds.get(name))
                worst = f"{name} {_fmt(weights[name])} ({ratio:.2g})"
            errors = [
                _fmt(r.grad_errors.get("dx", math.nan)),
                _fmt(r.grad_errors.get("dh0", math.nan)),
            ]
            if lstm:
                errors.append(_fmt(r.grad_errors.get("dc0", math.nan)))
            bad = "-" if r.grad_first_bad_step is None else f"t={r.grad_first_bad_step}"
            verdict = r.grad_status.upper() if r.grad_status != "skipped" else "skipped"
            if r.grad_reason and r.grad_status != "pass":
                verdict += f": {r.grad_reason}"
            body.append((r.backend, r.dtype, *errors, worst, bad, verdict))
        title = f"gradients: {self.case} (batch={self.batch}, T={self.seq_len})"
        return title + "\n" + text_table(head, body, wrap_last=True)

    def row(self, backend: str, dtype: str = "float32") -> BackendComparison:
        for r in self.rows:
            if r.backend == backend and r.dtype == dtype:
                return r
        raise KeyError(f"no comparison for backend {backend!r} in {dtype}")

    def table(self) -> str:
        # The final state is checked as well as the output: its error is shown, and an LSTM's
        # cell state c_n in a column of its own.
        lstm = self.spec.get("cell") == "lstm" or any(
            not math.isnan(r.c_n_max_abs) for r in self.rows
        )
        # A padded batch: what each backend's masked steps were checked against.
        padded = self.padding is not None
        head = (
            "backend",
            "dtype",
            "device",
            "max abs err",
            "max rel err",
            "h_n err",
            *(("c_n err",) if lstm else ()),
            *(("padded steps",) if padded else ()),
            "first bad step",
            "verdict",
        )
        body = []
        for r in self.rows:
            bad = "-" if r.first_bad_step is None else f"t={r.first_bad_step} {r.first_bad_index}"
            verdict = r.status.upper() if r.status != "skipped" else "skipped"
            if r.reason and r.status != "pass":
                verdict += f": {r.reason}"
            errors = [_fmt(r.max_abs), _fmt(r.max_rel), _fmt(r.h_n_max_abs)]
            if lstm:
                errors.append(_fmt(r.c_n_max_abs))
            if padded:
                errors.append({"zero": "zeros", "repeat": "repeat"}.get(r.masked_output or "", "-"))
            body.append((r.backend, r.dtype, r.device, *errors, bad, verdict))
        title = f"{self.case} (batch={self.batch}, T={self.seq_len})"
        return title + "\n" + text_table(head, body, wrap_last=True)

    def __str__(self) -> str:
        return self.table() + ("\n" + self.grad_table() if self.has_gradients else "")

    def assert_close(self) -> None:
        failed = [r for r in self.rows if r.status in ("fail", "error")]
        grad_failed = [r for r in self.rows if r.grad_status in ("fail", "error")]
        if failed or grad_failed:
            details = "\n".join(
                [
                    f"- {r.backend} ({r.dtype}): {r.status}; {r.reason or ''} tolerance "
                    f"{r.tolerance}"
                    for r in failed
                ]
                + [
                    f"- {r.backend} ({r.dtype}) gradients: {r.grad_status}; "
                    f"{r.grad_reason or ''} tolerance {r.grad_tolerance}"
                    for r in grad_failed
                ]
            )
            raise ToleranceError(
                f"{len(set(map(id, failed + grad_failed)))} backend(s) differ from the float64 "
                f"reference:\n{self}\n{details}",
                "see the first bad step; a layout bug shows at t=0, drift grows with t",
            )
        if not self.compared:
            reasons = self.skip_reasons()
            raise NothingComparedError(
                f"nothing was compared for {self.case}: "
                + (
                    "every backend was skipped:\n" + "\n".join(f"- {r}" for r in reasons)
                    if reasons
                    else "no backend (or no dtype) was given"
                ),
                "run on backends and a device that can run here (`rnnbench list` shows them); "
                "a comparison that verified nothing does not pass",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "case": self.case,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "spec": self.spec,
            "padding": self.padding,
            "rows": [asdict(r) for r in self.rows],
        }


def _ratio(err: float, bound: float | None) -> float:
    if bound is None or not bound > 0:
        return math.inf
    return err / bound if err == err else math.inf  # NaN counts as the worst


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2e}"


def _states(value: Any) -> tuple[np.ndarray, ...]:
    """A final state, public (array or LSTM pair) or tuple, as a tuple of float64 arrays."""
    parts = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(np.asarray(p, np.float64) for p in parts)


def measure(
    y: np.ndarray,
    h_n: Any,
    ref_y: np.ndarray,
    ref_h: Any,
    tol: Tolerance,
    ages: np.ndarray,
) -> dict[str, Any]:
    """Errors of one output and its final state (h_n, or an LSTM's (h_n, c_n)) against the
    reference, and where the output first leaves the tolerance. Every final state is checked.

    NaN never passes: comparisons are written so that NaN fails them (``not err <= bound``).
    """
    y64 = np.asarray(y, np.float64)
    states, ref_states = _states(h_n), _states(ref_h)
    if y64.shape != ref_y.shape or [s.shape for s in states] != [s.shape for s in ref_states]:
        raise RNNBenchError(
            f"output shapes y {y64.shape}, final state {[s.shape for s in states]} differ from "
            f"the reference's {ref_y.shape}, {[s.shape for s in ref_states]}"
        )
    err = np.abs(y64 - ref_y)
    err[np.isnan(y64)] = np.inf
    bad = ~(err <= tol.bounds(ref_y, ages))
    scale = float(tol.scale(ages).max())  # a final state may be of any age
    state_errors, state_bad = [], False
    for got, ref in zip(states, ref_states):
        s_err = np.abs(got - ref)
        s_err[np.isnan(got)] = np.inf
        state_errors.append(float(s_err.max()))
        state_bad |= bool((~(s_err <= scale + min(scale, 1.0) * np.abs(ref))).any())
    last = ref_y.shape[1] - 1
    rel = err / np.maximum(np.abs(ref_y), np.finfo(np.float64).tiny)
    out: dict[str, Any] = {
        "max_abs": float(err.max()),
        "max_rel": float(np.where(np.abs(ref_y) > 1e-6, rel, 0.0).max()),
        "h_n_max_abs": state_errors[0],
        "c_n_max_abs": state_errors[1] if len(state_errors) > 1 else math.nan,
        "error_per_step": [float(v) for v in err.max(axis=(0, 2))],
        "first_bad_step": None,
        "first_bad_index": None,
        "passed": not bad.any() and not state_bad,
    }
    if bad.any():
        b, t, f = np.argwhere(bad.transpose(1, 0, 2))[0][[1, 0, 2]]
        out["first_bad_step"] = int(t)
        out["first_bad_index"] = (int(b), int(f))
    elif state_bad:
        out["first_bad_step"] = last
    return out


def compare(
    weights: RNNWeights,
    x: Any,
    h0: Any = None,
    backends: Iterable[str] | None = None,
    *,
    dtypes: Iterable[str] = ("float32",),
    device: str = "cpu",
    cells: Mapping[tuple[str, str], RNNCell] | None = None,
    lengths: Any = None,
    mask: Any = None,
    grad: bool = False,
) -> CompareResult:
    """Run each backend (all registered ones by default) in each dtype against the reference.

    Unknown backend names raise at once; a backend whose library is missing, or that cannot run
    the dtype, device or padding, is a ``skipped`` row with its reason; one that raises is an
    ``error`` row. ``cells`` may supply ready cells keyed by (backend, dtype), e.g. to reuse
    workers. ``lengths`` or ``mask`` pad the batch (:mod:`rnnbench.padding`): real steps are
    compared always, masked ones against what the backend says it writes there.

    ``grad=True`` also compares each backend's gradients (``cell.vjp``) of
    ``sum(y * dy) + sum(h_n * dh_n)`` for random cotangents (seeded) with the float64 reference
    backward pass: every array of ``Grads.arrays()`` within ``gradient_tolerance``, and the first
    step where dx leaves it. A backend without gradients is listed as skipped there.
    """
    names = list(backends) if backends is not None else list_backends()
    for name in names:
        backend_info(name)  # unknown names fail before anything runs
    spec = weights.spec
    xs, h_tuple = check_inputs(spec, x, h0, np.float64)
    padding = check_padding(lengths, mask, xs.shape[0], xs.shape[1])
    h = None if h_tuple is None else state_mod.from_tuple(spec, h_tuple)
    ref_y, ref_h = reference_forward(weights, xs, h, lengths=lengths, mask=mask)
    batch, seq_len = xs.shape[:2]
    ages = step_ages(seq_len, spec.num_directions, spec.num_layers, spec.hidden_size)
    pad_args = {} if padding is None else padding.arguments()
    grad_case = _GradCase(weights, xs, h, padding) if grad else None
    rows = []
    for dtype_name in dtypes:
        dtype = resolve_dtype(dtype_name)
        tol = tolerance_for(weights, dtype, xs, h, reference=ref_y, padding=padding)
        for name in names:
            row = BackendComparison(backend=name, dtype=str(dtype), status="pass", device=device)
            row.tolerance = tol.describe()
            row.checked_steps = comparable_steps(tol)
            try:
                cell = (cells or {}).get((name, str(dtype))) or get_backend(name, device, dtype)
                cell.load(weights.astype(dtype))
                h_cast = None if h_tuple is None else tuple(s.astype(dtype) for s in h_tuple)
                y, h_n = cell.forward(
                    xs.astype(dtype),
                    None if h_cast is None else state_mod.from_tuple(spec, h_cast),
                    **pad_args,
                )
                info = cell.info()
                row.path, row.version = info.get("path"), info.get("version")
                written = info.get("mask_output") or "repeat"
                row.masked_output = None if padding is None else padding.masked_output
                if padding is not None and padding.kind == "mask":
                    row.masked_output = written
                expected = as_written(ref_y, padding, row.masked_output or "zero")
                found = measure(y, h_n, expected, ref_h, tol, ages)
            except BackendUnavailableError as exc:
                row.status, row.reason = "skipped", strip_ansi(str(exc).split("\nHint:")[0])
                rows.append(row)
                continue
            except Exception as exc:
                reason = strip_ansi(f"{type(exc).__name__}: {exc}")
                row.status, row.reason = "error", reason.split("\n")[0]
                rows.append(row)
                continue
            passed = found.pop("passed")
            for key, value in found.items():
                setattr(row, key, value)
            if not passed:
                row.status = "fail"
                row.reason = "beyond tolerance"
            if grad_case is not None:
                grad_case.check(row, cell, dtype, xs, h_tuple, pad_args)
            rows.append(row)
    case = f"{spec.describe()}, batch {batch}"
    if padding is not None:
        case += f", {padding.describe()}"
    return CompareResult(
        case=case,
        batch=batch,
        seq_len=seq_len,
        rows=rows,
        spec=spec.to_dict(),
        padding=None if padding is None else padding.to_dict(),
    )


class _GradCase:
    """The gradient half of one ``compare`` case: seeded cotangents, the float64 reference
    gradients (one per output convention at masked steps) and their tolerances per dtype."""

    SEED = 20261129

    def __init__(self, weights: RNNWeights, x: np.ndarray, h0: Any, padding: Any) -> None:
        spec = weights.spec
        self.weights, self.x, self.h0, self.padding = weights, x, h0, padding
        batch, time = x.shape[:2]
        rng = np.random.default_rng(self.SEED)
        self.dy = rng.standard_normal((batch, time, spec.output_size))
        parts = tuple(
            rng.standard_normal(state_mod.state_shape(spec, batch)) for _ in spec.state_names
        )
        self.dh_n = state_mod.from_tuple(spec, parts)
        self._refs: dict[str, Any] = {}
        self._tols: dict[tuple[str, str], GradTolerance] = {}

    def _dy_for(self, written: str) -> np.ndarray:
        # A layer that writes zeros where the canonical output repeats: its outputs are the
        # canonical ones times the mask, so its gradients are the canonical ones of dy * mask.
        if self.padding is not None and written != self.padding.masked_output:
            return np.where(self.padding.mask[:, :, None], self.dy, 0.0)
        return self.dy

    def reference(self, written: str) -> Any:
        if written not in self._refs:
            kwargs = {} if self.padding is None else self.padding.arguments()
            self._refs[written] = reference_vjp(
                self.weights, self.x, self.h0, self._dy_for(written), self.dh_n, **kwargs
            )
        return self._refs[written]

    def tolerance(self, written: str, dtype: np.dtype) -> GradTolerance:
        key = (written, str(dtype))
        if key not in self._tols:
            self._tols[key] = gradient_tolerance(
                self.weights,
                dtype,
                self.x,
                self.h0,
                self._dy_for(written),
                self.dh_n,
                self.padding,
                reference=self.reference(written),
            )
        return self._tols[key]

    def check(
        self,
        row: BackendComparison,
        cell: RNNCell,
        dtype: np.dtype,
        xs: np.ndarray,
        h_tuple: tuple[np.ndarray, ...] | None,
        pad_args: dict[str, Any],
    ) -> None:
        spec = self.weights.spec
        written = row.masked_output or "zero"
        if row.status in ("error", "skipped"):
            row.grad_status, row.grad_reason = "skipped", "the forward pass did not run"
            return
        try:
            h_cast = None if h_tuple is None else tuple(s.astype(dtype) for s in h_tuple)
            dh = tuple(s.astype(dtype) for s in state_mod.as_tuple(spec, self.dh_n))
            got = cell.vjp(
                xs.astype(dtype),
                None if h_cast is None else state_mod.from_tuple(spec, h_cast),
                self._dy_for(written).astype(dtype),
                state_mod.from_tuple(spec, dh),
                **pad_args,
            )
        except BackendUnavailableError as exc:
            row.grad_status, row.grad_reason = "skipped", strip_ansi(str(exc).split("\nHint:")[0])
            return
        except Exception as exc:
            row.grad_status = "error"
            row.grad_reason = strip_ansi(f"{type(exc).__name__}: {exc}").split("\n")[0]
            return
        tol = self.tolerance(written, dtype)
        row.grad_tolerance = tol.describe()
        ref = self.reference(written).arrays()
        arrays = got.arrays()
        if set(arrays) != set(ref):
            row.grad_status = "error"
            row.grad_reason = f"gradient arrays {sorted(set(arrays) ^ set(ref))} differ in name"
            return
        bad = False
        for name, value in ref.items():
            err = np.abs(np.asarray(arrays[name], np.float64) - value)
            if err.shape != value.shape:
                row.grad_status = "error"
                row.grad_reason = f"{name} has shape {err.shape}, the reference {value.shape}"
                return
            err[np.isnan(err)] = np.inf
            row.grad_errors[name] = float(err.max()) if err.size else 0.0
            row.grad_bounds[name] = tol.bounds[name]
            if name == "dx":
                per_step = err.max(axis=(0, 2))
                over = np.nonzero(~(per_step <= tol.dx_steps))[0]
                if over.size:
                    row.grad_first_bad_step = int(over[0])
                    bad = True
            elif not row.grad_errors[name] <= tol.bounds[name]:
                bad = True
        row.grad_status = "fail" if bad else "pass"
        if bad:
            row.grad_reason = "beyond tolerance"
