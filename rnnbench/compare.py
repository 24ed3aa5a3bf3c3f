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
from rnnbench.padding import as_written, check_padding
from rnnbench.reference import reference_forward
from rnnbench.registry import backend_info, get_backend, list_backends
from rnnbench.tolerances import Tolerance, comparable_steps, step_ages, tolerance_for
from rnnbench.weights import RNNWeights

# The rows gained c_n_max_abs and the case its spec in 1.1; the case its padding and the rows
# masked_output in 1.2. Older files read as before (no padding).
SCHEMA = "rnnbench.check/1.2"


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

    @property
    def passed(self) -> bool:
        return self.status == "pass"


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
        """No backend failed or broke (skipped ones are listed, not counted as failures)."""
        return all(r.status in ("pass", "skipped") for r in self.rows)

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
        widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        widths[-1] = len(head[-1])
        lines = [f"{self.case} (batch={self.batch}, T={self.seq_len})"]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
        return "\n".join(lines)

    __str__ = table

    def assert_close(self) -> None:
        failed = [r for r in self.rows if r.status in ("fail", "error")]
        if failed:
            details = "\n".join(
                f"- {r.backend} ({r.dtype}): {r.status}; {r.reason or ''} tolerance {r.tolerance}"
                for r in failed
            )
            raise ToleranceError(
                f"{len(failed)} backend(s) differ from the float64 reference:\n{self.table()}\n"
                f"{details}",
                "see the first bad step; a layout bug shows at t=0, drift grows with t",
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
) -> CompareResult:
    """Run each backend (all registered ones by default) in each dtype against the reference.

    Unknown backend names raise at once; a backend whose library is missing, or that cannot run
    the dtype, device or padding, is a ``skipped`` row with its reason; one that raises is an
    ``error`` row. ``cells`` may supply ready cells keyed by (backend, dtype), e.g. to reuse
    workers. ``lengths`` or ``mask`` pad the batch (:mod:`rnnbench.padding`): real steps are
    compared always, masked ones against what the backend says it writes there.
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
    pad_args: dict[str, Any] = {}
    if padding is not None:
        pad_args = {padding.kind: padding.lengths if padding.lengths is not None else padding.mask}
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
                row.status, row.reason = "skipped", str(exc).split("\nHint:")[0]
                rows.append(row)
                continue
            except Exception as exc:
                row.status, row.reason = "error", f"{type(exc).__name__}: {exc}".split("\n")[0]
                rows.append(row)
                continue
            passed = found.pop("passed")
            for key, value in found.items():
                setattr(row, key, value)
            if not passed:
                row.status = "fail"
                row.reason = "beyond tolerance"
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
