"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, so no
global state and no display needed) and kept as PNG bytes. matplotlib is imported here only;
the report module imports this one lazily, so that a report without matplotlib still has its
tables."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnbench.report.model import (
    MachineGroup,
    case_title,
    cell_of,
    cell_order,
    flops,
    peak_for,
    peak_gflops,
    series_label,
)
from rnnbench.report.results import CASE_KEYS, CheckFile, case_key, is_ok

MAX_FIGURES_PER_AXIS = 6  # a big sweep has many slices; the rest are named in a note
SMALL_CASES = 3  # cases shown in the time-per-step figure
_TAB10 = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


@dataclass
class Figure:
    name: str  # file stem, unique in a report
    title: str
    png: bytes
    caption: str = ""


@dataclass
class FigureSet:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Palette:
    """One colour per backend and one marker per variant of it ("jax [scan-unroll4]"), the same
    in every figure of a report, so that a backend keeps its colour from the benchmark figures
    to the equivalence ones."""

    def __init__(self, labels: Sequence[str] = ()) -> None:
        self._colors: dict[str, str] = {}
        self._variants: dict[str, list[str]] = {}
        for label in sorted(set(labels)):
            self.marker(label)

    @staticmethod
    def _backend(label: str) -> str:
        return label.split(" [")[0]

    def color(self, label: str) -> str:
        backend = self._backend(label)
        if backend not in self._colors:
            self._colors[backend] = _TAB10[len(self._colors) % len(_TAB10)]
        return self._colors[backend]

    def marker(self, label: str) -> str:
        self.color(label)
        variants = self._variants.setdefault(self._backend(label), [])
        if label not in variants:
            variants.append(label)
        return "osD^v<>ph*"[variants.index(label) % 10]


def _new_figure(width: float = 7.0, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # no timestamp or software tag in the file: the same results give the same bytes
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _fmt_seconds_axis(ax: Any, axis: str = "y") -> None:
    """A log time axis labelled in s / ms / µs (not 1e-4): ticks at 1, 2, 5 × 10^k over a
    narrow range (so that there are labels at all), at powers of ten over a wide one."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    which = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    which.set_major_locator(LogLocator(base=10, subs=subs))
    which.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_time(v)))
    which.set_minor_formatter(NullFormatter())


def _size_ticks(ax: Any, values: Sequence[int]) -> None:
    """A log size axis labelled at the sizes measured, as plain numbers."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ticks = sorted(set(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [str(v) for v in ticks])


def _cell_prefix(rows: Sequence[dict[str, Any]]) -> str:
    """ "lstm · " for results of one cell, so that a figure seen alone still names its cell."""
    cells = cell_order(cell_of(r) for r in rows)
    return f"{', '.join(cells)} · " if cells else ""


def fmt_time(seconds: float, digits: int = 3) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.{digits}g} {unit}"
    return f"{seconds / 1e-9:.{digits}g} ns"


# --- time against one size ------------------------------------------------------------------


def sweep_figures(
    group: MachineGroup, axis: str, palette: Palette, prefix: str, what: str
) -> FigureSet:
    """Median time against ``axis`` (seq_len or hidden_size), log-log, one line per backend,
    one figure per slice of the sweep in which only that axis varies."""
    out = FigureSet()
    ok = [r for r in group.results if is_ok(r)]
    slices = _slices(ok, axis)
    if axis == "hidden_size" and not slices:
        # sweeps often grow input and hidden together (I = H): slice on both
        slices = _slices([r for r in ok if r["input_size"] == r["hidden_size"]], axis, "input_size")
    if not slices:
        values = sorted({r[axis] for r in ok})
        out.notes.append(
            f"no {what} plot: the sweep has no series with two or more values of {axis} "
            f"(values measured: {', '.join(map(str, values)) or 'none'})"
        )
        return out
    if len(slices) > MAX_FIGURES_PER_AXIS:
        out.notes.append(
            f"{what}: {len(slices)} slices of the sweep, the first {MAX_FIGURES_PER_AXIS} "
            "are drawn (the tables hold every case)"
        )
    for i, (fixed, rows) in enumerate(slices[:MAX_FIGURES_PER_AXIS]):
        fig, ax = _new_figure()
        by_series: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_series.setdefault(series_label(r), []).append(r)
        for label, series in sorted(by_series.items()):
            series.sort(key=lambda r: r[axis])
            xs = [r[axis] for r in series]
            ys = [r["median_s"] for r in series]
            lo = [max(r["median_s"] - _q1(r), 0.0) for r in series]
            hi = [max(_q3(r) - r["median_s"], 0.0) for r in series]
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                label=label,
                color=palette.color(label),
                marker=palette.marker(label),
                markersize=5,
                linewidth=1.5,
                capsize=2,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _size_ticks(ax, [r[axis] for r in rows])
        ax.set_xlabel(_AXIS_NAMES[axis])
        ax.set_ylabel("median time per call")
        _fmt_seconds_axis(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        title = f"{_cell_prefix(rows)}Time against {_AXIS_NAMES[axis]} · {fixed}"
        ax.set_title(title, fontsize=10)
        n_values = len({r[axis] for r in rows})
        caption = "error bars: interquartile range" + (
            "; a single point per backend: nothing to connect" if n_values < 2 else ""
        )
        out.figures.append(Figure(f"{prefix}-{axis}-{i}", title, _png(fig), caption))
    return out


_AXIS_NAMES = {"seq_len": "sequence length T", "hidden_size": "hidden size H"}


def _q1(r: dict[str, Any]) -> float:
    q1 = r.get("q1_s", math.nan)
    return q1 if math.isfinite(q1) else r["median_s"] - _half_iqr(r)


def _q3(r: dict[str, Any]) -> float:
    q3 = r.get("q3_s", math.nan)
    return q3 if math.isfinite(q3) else r["median_s"] + _half_iqr(r)


def _half_iqr(r: dict[str, Any]) -> float:
    iqr = r.get("iqr_s", math.nan)
    return iqr / 2 if math.isfinite(iqr) else 0.0


def _slices(
    rows: list[dict[str, Any]], axis: str, *also: str
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Groups of results that differ only in ``axis`` (and ``also``), with two or more values."""
    free = {axis, *also}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in CASE_KEYS if k not in free), []).append(r)
    out = []
    for key, members in groups.items():
        if len({m[axis] for m in members}) >= 2:
            fixed = dict(zip([k for k in CASE_KEYS if k not in free], key))
            out.append((_fixed_label(fixed, also), members))
    return out


def _fixed_label(fixed: dict[str, Any], also: Sequence[str]) -> str:
    short = {"batch": "B", "seq_len": "T", "input_size": "I", "hidden_size": "H", "layers": "L"}
    parts = [str(fixed.get("device")), str(fixed.get("dtype"))]
    for key, name in short.items():
        if key in fixed and (key != "layers" or fixed[key] != 1):
            parts.append(f"{name}={fixed[key]}")
    if "input_size" in also:
        parts.append("I=H")
    if fixed.get("bidirectional"):
        parts.append("bidir")
    if fixed.get("nonlinearity", "tanh") != "tanh":
        parts.append(str(fixed["nonlinearity"]))
    if fixed.get("threads") is not None:
        parts.append(f"threads={fixed['threads']}")
    if fixed.get("lengths", "full") != "full":
        parts.append(str(fixed["lengths"]))
    if fixed.get("mode", "inference") != "inference":
        parts.append(str(fixed["mode"]))
    return " ".join(parts)


# --- time per step at the smallest sizes ------------------------------------------------------


def per_step_figure(group: MachineGroup, palette: Palette, prefix: str) -> FigureSet:
    """Median time per time step, for the cases with the least work per step: at small sizes
    a step costs a library's per-call overhead, not arithmetic, and this is the figure that
    tells the libraries apart there."""
    out = FigureSet()
    ok = [r for r in group.results if is_ok(r)]
    if not ok:
        out.notes.append("no time-per-step plot: no result was measured")
        return out

    def work_per_step(key: tuple[Any, ...]) -> float:
        case = dict(zip(CASE_KEYS, key))
        return flops(case) / case["seq_len"]

    keys = sorted({case_key(r) for r in ok}, key=work_per_step)
    keys = keys[:SMALL_CASES]
    labels = sorted({series_label(r) for r in ok if case_key(r) in keys})
    fig, ax = _new_figure(7.0, 1.6 + 0.3 * len(labels) * len(keys))
    height = 0.8 / len(keys)
    for j, key in enumerate(keys):
        vals = {series_label(r): r["median_s"] / r["seq_len"] for r in ok if case_key(r) == key}
        ys = [i + (j - (len(keys) - 1) / 2) * height for i in range(len(labels))]
        widths = [vals.get(label, math.nan) for label in labels]
        bars = ax.barh(
            ys,
            widths,
            height=height * 0.9,
            label=case_title(key),
            color=_TAB10[j % len(_TAB10)],
            alpha=0.85,
        )
        ax.bar_label(bars, labels=[fmt_time(w) for w in widths], fontsize=7, padding=2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per step (median / T)")
    ax.margins(x=0.25)
    _fmt_seconds_axis(ax, "x")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center", ncols=min(len(keys), 2))
    title = f"{_cell_prefix(ok)}Time per step at the smallest sizes"
    ax.set_title(title, fontsize=10)
    out.figures.append(Figure(f"{prefix}-per-step", title, _png(fig), "shorter is better"))
    return out


# --- efficiency against the measured peak -------------------------------------------------


def efficiency_figure(
    group: MachineGroup, palette: Palette, prefix: str, training: bool = False
) -> FigureSet:
    """Roofline efficiency (GFLOP/s over the measured GEMM peak) against the work per call;
    ``training``: of training steps (forward + backward, 3x the forward's FLOPs), a figure
    named ``{prefix}-training-efficiency-...`` of its own."""
    out = FigureSet()
    rows = [r for r in group.results if is_ok(r) and math.isfinite(r.get("efficiency", math.nan))]
    if not rows:
        out.notes.append("no efficiency plot: no result carries an efficiency (no peak measured)")
        return out
    for dev_dtype in sorted({(r["device"], r["dtype"]) for r in rows}):
        fig, ax = _new_figure()
        chosen = [r for r in rows if (r["device"], r["dtype"]) == dev_dtype]
        by_series: dict[str, list[dict[str, Any]]] = {}
        for r in chosen:
            by_series.setdefault(series_label(r), []).append(r)
        for label, series in sorted(by_series.items()):
            series.sort(key=flops)
            ax.plot(
                [flops(r) for r in series],
                [100 * r["efficiency"] for r in series],
                label=label,
                color=palette.color(label),
                marker=palette.marker(label),
                markersize=5,
                linewidth=1.2,
            )
        ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(
            "FLOPs per call (2·B·T·(I+H)·G·H per layer and direction, G gates"
            + (", ×3 for a training step)" if training else ")")
        )
        ax.set_ylabel("% of measured GEMM peak")
        from matplotlib.ticker import FuncFormatter

        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}%"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        peak = peak_for(group, *dev_dtype)
        peak_text = (
            f"peak {peak_gflops(peak):.4g} GFLOP/s" if peak is not None else "peak not recorded"
        )
        # the y axis says "of measured GEMM peak": a training title is shorter by that
        what = "Training-step efficiency" if training else "Efficiency against the measured peak"
        title = f"{_cell_prefix(chosen)}{what} · {dev_dtype[0]} {dev_dtype[1]} ({peak_text})"
        ax.set_title(title, fontsize=10)
        out.figures.append(
            Figure(
                f"{prefix}-{'training-' if training else ''}efficiency-{dev_dtype[0]}-"
                f"{dev_dtype[1]}",
                title,
                _png(fig),
                "dashed line: the peak (100%); higher is better",
            )
        )
    return out


# --- equivalence: error against time step ---------------------------------------------------


def error_figure(
    checks: Sequence[CheckFile], palette: Palette, name: str = "equivalence"
) -> FigureSet:
    """Max absolute error against the float64 reference at each time step, for the longest
    sequence checked (of one cell: the report draws one per cell, named ``{name}-error-per-
    step``): drift that grows with t shows here, a layout bug shows at t=0."""
    out = FigureSet()
    with_steps = [c for c in checks if any(r.get("error_per_step") for r in c.rows)]
    if not with_steps:
        if checks:
            out.notes.append("no error-per-step plot: the check files hold no per-step errors")
        return out
    check = max(with_steps, key=lambda c: max(len(r["error_per_step"]) for r in c.rows))
    fig, ax = _new_figure(7.0, 5.0)
    floor = 1e-18  # an exact match (error 0) cannot sit on a log axis: drawn here, and said so
    exact = []
    for r in check.rows:
        errs = r.get("error_per_step") or []
        if not errs:
            continue
        label = f"{r['backend']} {r['dtype']}"
        if all(e == 0 for e in errs):
            exact.append(label)
        ys = [max(e, floor) if math.isfinite(e) else math.nan for e in errs]
        ax.plot(
            range(len(ys)),
            ys,
            label=label,
            color=palette.color(r["backend"]),
            linestyle="-" if r["dtype"] == "float32" else "--",
            linewidth=1.2,
        )
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("max |y - y_ref| at step t")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=7, ncols=4, loc="outside lower center")
    title = f"{check.cell} · Error against time step · {check.case}, T={check.seq_len}"
    ax.set_title(title, fontsize=10)
    caption = "solid: float32, dashed: float64"
    if exact:
        caption += f"; exact at every step (drawn at {floor:g}): {', '.join(exact)}"
    out.figures.append(Figure(f"{name}-error-per-step", title, _png(fig), caption))
    return out
