"""Assemble the report from gathered results and write ``report.md``, ``report.html`` and the
figures (``figures/*.png``, which the Markdown links and the HTML embeds)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnbench.bench.relative import format_interval, relative_speeds
from rnnbench.bench.stability import result_warnings, run_warnings
from rnnbench.fileio import atomic_write_bytes, atomic_write_text
from rnnbench.report.document import (
    Block,
    Details,
    FigureBlock,
    Heading,
    Notes,
    Para,
    Table,
    to_html,
    to_markdown,
)
from rnnbench.report.fleet import fleet_blocks
from rnnbench.report.model import (
    CELL_TITLES,
    MachineGroup,
    ReportData,
    case_title,
    cell_of,
    cell_order,
    flatten,
    gather,
    gflops_of,
    is_ragged,
    is_training,
    machine_label,
    machine_summary,
    padding_pairs,
    peak_gflops,
    series_label,
    training_pairs,
    work_fraction,
)
from rnnbench.report.plots import FigureSet, Palette, fmt_time
from rnnbench.report.results import CheckFile, case_key, is_ok
from rnnbench.report.runs import describe_case

FIGURE_DIR = "figures"
TITLE = "rnnbench report"


def fmt_num(value: Any, spec: str = ".3g") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(v):
        return "-"
    # GPU rates run to tens of thousands: 51,234 reads better than 5.12e+04
    return f"{v:,.0f}" if spec.endswith("g") and abs(v) >= 1000 else f"{v:{spec}}"


def fmt_pct(value: Any) -> str:
    try:
        v = 100 * float(value)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(v):
        return "-"
    return f"{v:.2g}%" if v < 10 else f"{v:.0f}%"


def _status_css(status: str) -> str:
    return {
        "ok": "",
        "pass": "",
        "skipped": "skip",
        "timeout": "warn",
        "interrupted": "warn",
        "fail": "bad",
    }.get(status, "bad")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def build_blocks(data: ReportData, figures: bool = True) -> tuple[list[Block], FigureSet]:
    """The report as blocks, and every figure drawn (for writing beside the Markdown)."""
    labels = [series_label(r) for g in data.machines for r in g.results]
    labels += [r["backend"] for c in data.checks for r in c.rows]
    palette = Palette(labels)
    drawn = FigureSet()
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        Heading(1, TITLE),
        Para(f"Written {now} from {', '.join(f'`{f}`' for f in data.files)}.", "meta"),
    ]
    if not figures:
        why = (
            "asked for (`--no-figures`)"
            if _have_matplotlib()
            else "matplotlib is not installed: `pip install 'rnnbench[bench]'` draws them"
        )
        blocks.append(Notes("Figures left out", [why]))
    if data.notes:
        blocks.append(Notes("Reading the files", data.notes))
    blocks.append(Para(_summary(data)))
    blocks += fleet_blocks(data)
    for i, group in enumerate(data.machines):
        blocks += _machine_blocks(group, f"m{i}", palette, drawn, figures)
    if data.checks:
        blocks += _check_blocks(data.checks, palette, drawn, figures)
    if not data.machines and not data.checks:
        blocks.append(Para("The files hold no results."))
    return blocks, drawn


def _summary(data: ReportData) -> str:
    n_results = sum(len(g.results) for g in data.machines)
    n_bad = sum(1 for g in data.machines for r in g.results if not is_ok(r))
    n_training = sum(1 for g in data.machines for r in g.results if is_training(r))
    bad = f", {n_bad} of them not measured (failed, timed out or skipped: see why below)"
    trained = f", {n_training} of them training steps" if n_training else ""
    cells = cell_order(cell_of(r) for g in data.machines for r in g.results)
    checked = cell_order(c.cell for c in data.checks)
    return (
        f"{n_results} benchmark result(s) on {len(data.machines)} machine(s)"
        + (f" (cells: {', '.join(cells)})" if cells else "")
        + trained
        + (bad if n_bad else "")
        + f"; {len(data.checks)} equivalence check(s)"
        + (f" (cells: {', '.join(checked)})" if checked else "")
        + "."
    )


def _add_figures(blocks: list[Block], drawn: FigureSet, found: FigureSet) -> None:
    for f in found.figures:
        blocks.append(FigureBlock(f))
        drawn.figures.append(f)
    drawn.notes += found.notes


def _machine_blocks(
    group: MachineGroup, prefix: str, palette: Palette, drawn: FigureSet, figures: bool
) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Machine: {group.label}", _slug(prefix + group.label))]
    blocks.append(Para(f"From {', '.join(f'`{f}`' for f in group.files)}.", "meta"))
    summary = machine_summary(group.machine)
    if summary:
        blocks.append(Table(["", ""], [[k, v] for k, v in summary], caption="", key_value=True))
    pairs = flatten(group.machine)
    blocks.append(Details(f"The full machine record ({len(pairs)} fields)", pairs))
    if group.peaks:
        rows = []
        for p in group.peaks:
            lib = " ".join(str(p[k]) for k in ("library", "version") if p.get(k))
            rows.append(
                [
                    str(p.get("name") or f"{p.get('device', '?')}/{p.get('dtype', '?')}"),
                    fmt_num(peak_gflops(p), ".4g"),
                    lib or "-",
                    str(p.get("size") or "-"),
                    str(p.get("method") or p.get("error") or "-"),
                ]
            )
        blocks.append(
            Table(
                ["peak of", "GFLOP/s", "library", "n", "how it was measured"],
                rows,
                numeric={1, 3},
                caption="Measured matrix-product peak (n×n by n×n, 2n³ FLOPs): the roofline "
                "that efficiency is relative to",
            )
        )
    else:
        blocks.append(Para("No peak was recorded: efficiencies are not available."))
    if group.notes:
        blocks.append(Notes("Notes", list(group.notes)))
    blocks += _run_blocks(group)
    # One section per cell: an LSTM call does four times the work of a vanilla one of the same
    # sizes, so figures and tables never mix cells.
    for cell, part in group.by_cell():
        blocks += _cell_blocks(cell, part, f"{prefix}-{_slug(cell)}", palette, drawn, figures)
    return blocks


def _cell_blocks(
    cell: str,
    group: MachineGroup,
    prefix: str,
    palette: Palette,
    drawn: FigureSet,
    figures: bool,
) -> list[Block]:
    n_bad = sum(1 for r in group.results if not is_ok(r))
    blocks: list[Block] = [
        Heading(3, f"Cell: {CELL_TITLES.get(cell, cell)}", _slug(prefix)),
        Para(
            f"{len(group.results)} result(s), {len(group.cases())} case(s)"
            + (f", {n_bad} not measured" if n_bad else "")
            + "."
        ),
    ]
    notes: list[str] = []
    ragged = any(is_ragged(r) for r in group.results)
    training = any(is_training(r) for r in group.results)
    # A ragged call's FLOPs count its padded steps and its median covers fewer real ones: the
    # per-step and efficiency figures are of full-length batches, the padding table says the rest.
    # A training step is another call (forward and backward): it has a table and an efficiency
    # figure of its own, so that the per-step figure compares forward passes only.
    full = (
        dataclasses.replace(
            group,
            results=[r for r in group.results if not is_ragged(r) and not is_training(r)],
        )
        if ragged or training
        else group
    )
    trained = dataclasses.replace(
        group, results=[r for r in group.results if is_training(r) and not is_ragged(r)]
    )
    if figures:
        blocks.append(Heading(4, f"Figures · {cell}"))
        found = [
            _try(lambda: _sweep(group, "seq_len", palette, prefix, "time-vs-T")),
            _try(lambda: _sweep(group, "hidden_size", palette, prefix, "time-vs-H")),
            _try(lambda: _per_step(full, palette, prefix)),
            _try(lambda: _efficiency(full, palette, prefix)),
        ]
        if any(is_ok(r) and math.isfinite(r["efficiency"]) for r in trained.results):
            found.append(_try(lambda: _efficiency(trained, palette, prefix, training=True)))
        for f in found:
            _add_figures(blocks, drawn, f)
            notes += f.notes
        if ragged:
            notes.append(
                "the time-per-step and efficiency figures show full-length batches only; ragged "
                "ones are in the time figures (marked ragged) and in the padding cost table"
            )
        if training:
            notes.append(
                "the time-per-step figure and the first efficiency figure show inference calls "
                "only; training steps are in the time figures (marked training), in the "
                "training-step efficiency figure and in the training cost table"
            )
    if notes:
        blocks.append(Notes("Notes", notes))
    if training:
        blocks += _training_blocks(cell, group)
    if ragged:
        blocks += _padding_blocks(cell, group)
    blocks += _relative_blocks(cell, group)
    blocks += _limit_blocks(cell, group)
    blocks.append(Heading(4, f"Results per case · {cell}"))
    for key, results in group.cases():
        blocks.append(Heading(5, case_title(key)))
        blocks.append(_case_table(results))
    return blocks


def _try(draw: Any) -> FigureSet:
    """A figure that cannot be drawn is a note, never a lost report."""
    try:
        result: FigureSet = draw()
        return result
    except Exception as exc:  # a plotting bug must not lose the tables
        return FigureSet(notes=[f"a figure could not be drawn: {type(exc).__name__}: {exc}"])


def _sweep(group: MachineGroup, axis: str, palette: Palette, prefix: str, what: str) -> FigureSet:
    from rnnbench.report.plots import sweep_figures

    return sweep_figures(group, axis, palette, prefix, what)


def _per_step(group: MachineGroup, palette: Palette, prefix: str) -> FigureSet:
    from rnnbench.report.plots import per_step_figure

    return per_step_figure(group, palette, prefix)


def _efficiency(
    group: MachineGroup, palette: Palette, prefix: str, training: bool = False
) -> FigureSet:
    from rnnbench.report.plots import efficiency_figure

    return efficiency_figure(group, palette, prefix, training=training)


CASE_HEADERS = [
    "backend",
    "status",
    "median",
    "IQR",
    "min",
    "rounds",
    "compile",
    "per step",
    "GFLOP/s",
    "efficiency",
    "path",
]


def _run_blocks(group: MachineGroup) -> list[Block]:
    """The runs that measured this machine's results, and everything that says a number may
    not repeat: the runs' own warnings (load, drift, governor) and each case's (spread)."""
    blocks: list[Block] = []
    if group.runs:
        rows = []
        for run in group.runs:
            settings = run.get("settings") or {}
            cal = run.get("calibration") or {}
            drift = cal.get("drift")
            rows.append(
                [
                    str(run.get("started") or "-"),
                    str(settings.get("processes", "-")),
                    str(settings.get("min_time", "-")),
                    _load_text(run.get("load_start")),
                    _load_text(run.get("load_end")),
                    fmt_pct(drift) if isinstance(drift, (int, float)) else "-",
                    str(len(run.get("warnings") or [])),
                ]
            )
        blocks.append(
            Table(
                [
                    "run started",
                    "processes",
                    "min-time (s)",
                    "load at start",
                    "load at end",
                    "calibration drift",
                    "warnings",
                ],
                rows,
                numeric={1, 2, 5, 6},
                caption="The runs behind these results: processes per case, the cores other "
                "work kept busy at the start and the end (and the 1-minute load average), and "
                "how far the machine's own speed (a GEMM at the start and the end) moved while "
                "the cases ran",
            )
        )
    warnings = [f"run {run.get('started')}: {w}" for run in group.runs for w in run_warnings(run)]
    for r in group.results:
        warnings += [f"{series_label(r)}, {describe_case(r)}: {w}" for w in result_warnings(r)]
    if warnings:
        blocks.append(Notes("Stability warnings", warnings))
    return blocks


def _load_text(load: Any) -> str:
    """Other work's busy cores (and the 1-minute load average, which counts everything)."""
    if not isinstance(load, dict):
        return "-"
    busy, avg = load.get("busy_cores"), load.get("load_average")
    text = f"{busy:.2f} cores" if isinstance(busy, (int, float)) else "-"
    return text + (f" (avg {avg[0]:.2f})" if isinstance(avg, list) and avg else "")


def _relative_blocks(cell: str, group: MachineGroup) -> list[Block]:
    """Each backend's speed against the baseline (numpy on the CPU, torch on CUDA), case by
    case, with its 95% interval from the processes of both."""
    ok = [r for r in group.results if is_ok(r)]
    rows = relative_speeds(ok, describe=describe_case)
    if not any(r.backend != r.baseline for r in rows):
        return []
    baseline = rows[0].baseline
    body = [
        [
            r.case,
            series_label(next(x for x in ok if x["backend"] == r.backend and
                              x.get("variant", "default") == r.variant)),
            format_interval(r) if r.backend != r.baseline else "1 (baseline)",
            f"{r.processes} / {r.baseline_processes}",
        ]
        for r in rows
    ]  # fmt: skip
    return [
        Heading(4, f"Speed relative to {baseline} · {cell}"),
        Table(
            ["case", "backend", f"speed vs {baseline} [95% interval]", "processes (own / base)"],
            body,
            numeric={2},
            caption=f"{baseline}'s time ÷ the backend's time (2x = twice as fast), from the "
            "geometric means of each side's process medians; the interval comes from the spread "
            "between processes (pooled over the backend's cases when that is wider)",
        ),
    ]


def _case_table(results: list[dict[str, Any]]) -> Table:
    rows, css = [], []
    ok = sorted((r for r in results if is_ok(r)), key=lambda r: r["median_s"])
    for r in ok + [r for r in results if not is_ok(r)]:
        measured = is_ok(r)
        status = r["status"] if measured or not r.get("error") else f"{r['status']}: {r['error']}"
        rows.append(
            [
                series_label(r),
                status,
                fmt_time(r["median_s"]) if measured else "-",
                fmt_time(r["iqr_s"]) if measured else "-",
                fmt_time(r["min_s"]) if measured else "-",
                str(r.get("rounds") or "-"),
                fmt_time(r["compile_s"]),
                fmt_time(r["median_s"] / r["seq_len"]) if measured else "-",
                fmt_num(gflops_of(r)) if measured else "-",
                fmt_pct(r["efficiency"]) if measured else "-",
                str(r.get("path") or "-"),
            ]
        )
        css.append(_status_css(str(r["status"])))
    return Table(CASE_HEADERS, rows, css, numeric={2, 3, 4, 5, 6, 7, 8, 9})


TRAINING_HEADERS = [
    "case",
    "backend",
    "inference",
    "training",
    "training / inference",
    "training GFLOP/s",
    "training efficiency",
    "training compile",
    "backward path",
]


def _training_blocks(cell: str, group: MachineGroup) -> list[Block]:
    """The training cost of each backend and case: the training step's median against the
    inference call's of the same sizes, their ratio, and the training step's rate."""
    rows, css = [], []
    for train, infer in training_pairs(group.results):
        both = is_ok(train) and infer is not None and is_ok(infer)
        ratio = train["median_s"] / infer["median_s"] if both and infer is not None else math.nan
        measured = is_ok(train)
        rows.append(
            [
                case_title(case_key({**train, "mode": "inference"})),
                series_label(train),
                fmt_time(infer["median_s"]) if infer is not None and is_ok(infer) else "-",
                fmt_time(train["median_s"]) if measured else "-",
                fmt_num(ratio, ".2f"),
                fmt_num(gflops_of(train)) if measured else "-",
                fmt_pct(train["efficiency"]) if measured else "-",
                fmt_time(train["compile_s"]),
                _training_note(train, infer),
            ]
        )
        css.append(_status_css(str(train["status"])) if not measured else "" if both else "skip")
    return [
        Heading(4, f"Training cost · {cell}"),
        Para(
            "Each training case against the inference case of the same backend and sizes. A "
            "training case times one call of the library's own autodiff: the forward and the "
            "backward pass of `L = sum(y·dy) + sum(h_n·dh_n)` (+ `sum(c_n·dc_n)` for an LSTM) "
            "for seeded cotangents, synchronized, giving the gradients of the input, the "
            "initial state and every weight; its first call (trace, compile) is timed apart. "
            "No optimizer update is timed: it is the same elementwise update in every library, "
            "not the recurrence. `training / inference` is the ratio of median times. A "
            "training step counts 3× the forward's matrix-product FLOPs (the backward pass of "
            "each product is two products of its size: the input and the weight gradient), "
            "so a ratio of about 3 is a backward pass at the forward's rate; above 3 it runs "
            "slower (storing and re-reading every step's activations, a loop of small "
            "kernels), below 3 the forward call is bound by per-call overhead that the longer "
            "training call spreads. GFLOP/s and efficiency count the 3× FLOPs."
        ),
        Table(TRAINING_HEADERS, rows, css, numeric={2, 3, 4, 5, 6, 7}),
    ]


def _training_note(train: dict[str, Any], infer: dict[str, Any] | None) -> str:
    """The backward path that ran, or why a side of the pair has no time."""
    for side, result in (("training", train), ("inference", infer)):
        if result is None:
            return "no inference result of this case to compare with"
        if not is_ok(result):
            reason = str(result.get("error") or "no reason recorded").split("\nHint:")[0]
            return f"{side} {result['status']}: {reason}"
    return str(train.get("backward_path") or train.get("path") or "-")


# Within this fraction a ratio of medians is taken as equal (as `rnnbench compare` judges runs).
PADDING_NOISE = 0.05

PADDING_HEADERS = [
    "case",
    "backend",
    "full",
    "ragged",
    "ragged / full",
    "real work (mean L / T)",
    "lengths",
    "reading",
]


def _padding_blocks(cell: str, group: MachineGroup) -> list[Block]:
    """The padding cost of each backend and case: time(ragged) / time(full) beside the real
    work fraction (mean length / T)."""
    rows, css = [], []
    for ragged, full in padding_pairs(group.results):
        fraction = work_fraction(ragged)
        both = is_ok(ragged) and full is not None and is_ok(full)
        ratio = ragged["median_s"] / full["median_s"] if both and full is not None else math.nan
        rows.append(
            [
                case_title(case_key({**ragged, "lengths": "full"})),
                series_label(ragged),
                fmt_time(full["median_s"]) if full is not None and is_ok(full) else "-",
                fmt_time(ragged["median_s"]) if is_ok(ragged) else "-",
                fmt_num(ratio, ".2f"),
                fmt_num(fraction, ".2f"),
                _lengths_text(ragged),
                _padding_reading(ragged, full, ratio, fraction),
            ]
        )
        # an unmeasured ragged case shows as its status does; a missing partner as a skip
        css.append(
            _status_css(str(ragged["status"])) if not is_ok(ragged) else "" if both else "skip"
        )
    return [
        Heading(4, f"Padding cost · {cell}"),
        Para(
            "Each ragged case against the full-length case of the same backend and sizes: the "
            "same input, its rows right-padded to lengths drawn in [T/2, T] and passed to the "
            "library's own mechanism (packing, masks), which runs inside the timer. "
            "`ragged / full` is the ratio of median times; `real work` is the fraction of "
            "the steps that are real (mean length / T). A backend that skips padded steps "
            "takes about the real work's fraction of the time; one that computes them anyway "
            "takes the full time (ratio ≈ 1), and more when its padding mechanism has a cost "
            f"of its own (ratio > 1). Ratios within {PADDING_NOISE:.0%} are read as equal."
        ),
        Table(PADDING_HEADERS, rows, css, numeric={2, 3, 4, 5}),
    ]


def _lengths_text(result: dict[str, Any]) -> str:
    low, high, mean = (result.get(k) for k in ("lengths_min", "lengths_max", "lengths_mean"))
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high, mean)):
        return "-"
    return f"{low:.0f}..{high:.0f}, mean {mean:.3g} of T={result['seq_len']}"


def _padding_reading(
    ragged: dict[str, Any], full: dict[str, Any] | None, ratio: float, fraction: float
) -> str:
    """What the ratio says, in words: whether the backend saves work on padded steps."""
    for side, result in (("ragged", ragged), ("full-length", full)):
        if result is None:
            return "no full-length result of this case to compare with"
        if not is_ok(result):
            reason = str(result.get("error") or "no reason recorded").split("\nHint:")[0]
            return f"{side} {result['status']}: {reason}"
    if not math.isfinite(fraction):
        return "the file does not record the lengths"
    if 1.0 - fraction < PADDING_NOISE:
        return f"too little padding to tell (under {PADDING_NOISE:.0%} of the steps)"
    if ratio > 1.0 + PADDING_NOISE:
        return f"full price for padded steps, plus {ratio - 1.0:.0%} padding overhead"
    if ratio >= 1.0 - PADDING_NOISE:
        return "full price: padded steps cost as much as real ones"
    if ratio <= fraction * (1.0 + PADDING_NOISE):
        return "saves the padded steps: time follows the real work"
    saved = (1.0 - ratio) / (1.0 - fraction)
    return f"saves part of the padded steps ({saved:.0%} of their time)"


LIMIT_HEADERS = [
    "case",
    "backend",
    "median",
    "limit",
    "of the limit",
    "bound",
    "compute",
    "memory",
    "dispatch",
]


def _limit_fraction(result: dict[str, Any]) -> float:
    """limit / median as the file records it, else from the two times (NaN when unmeasured)."""
    value = result.get("limit_fraction")
    try:
        number = float(value) if value is not None else result["limit_s"] / result["median_s"]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return math.nan
    return number if math.isfinite(number) and number > 0 else math.nan


def _seconds(value: Any) -> str:
    """A time read from a file, "-" when it is not a number."""
    try:
        return fmt_time(float(value))
    except (TypeError, ValueError):
        return "-"


def _limit_table(results: list[dict[str, Any]], measured: dict[str, Any] | None = None) -> Table:
    """Per result: the median beside the limit the machine could not beat (``limit_s``, the
    largest of the compute, memory and dispatch floors of ``rnnbench.bench.limits``), the
    fraction of it reached (limit / median: 100% at the limit, above 100% the library beat the
    model) and the floor that binds. ``measured`` (a file's limit measurements of one device
    and dtype), when given, names the bandwidth and dispatch time in the caption."""
    rows, css = [], []
    ordered = sorted(
        (r for r in results if r.get("limit_s") is not None),
        key=lambda r: (case_title(case_key(r)), not is_ok(r), r.get("median_s") or math.inf),
    )
    for r in ordered:
        measured_ok = is_ok(r)
        floors: dict[str, Any] = r["limit"] if isinstance(r.get("limit"), dict) else {}
        rows.append(
            [
                case_title(case_key(r)),
                series_label(r),
                fmt_time(r["median_s"]) if measured_ok else str(r.get("status", "-")),
                _seconds(r["limit_s"]),
                fmt_pct(_limit_fraction(r)) if measured_ok else "-",
                str(r.get("limit_bound") or floors.get("bound") or "-"),
                *(_seconds(floors.get(f"{name}_s")) for name in ("compute", "memory", "dispatch")),
            ]
        )
        css.append(_status_css(str(r.get("status"))))
    caption = (
        "Time per call against the limit: the largest of the compute floor (every matrix "
        "product of the call at its own shape, measured, the recurrent ones T times in "
        "sequence), the memory floor (the bytes a call must move ÷ the measured streaming "
        "bandwidth) and one dispatch"
    )
    if measured:
        bandwidth = (measured.get("bandwidth") or {}).get("bytes_per_s")
        dispatch = (measured.get("dispatch") or {}).get("median_s")
        lib = " ".join(str(measured[k]) for k in ("library", "version") if measured.get(k))
        caption += (
            f"; measured with {lib or 'the device library'}: bandwidth "
            f"{fmt_num(float(bandwidth) / 1e9 if bandwidth else None)} GB/s, dispatch "
            f"{_seconds(dispatch)}"
        )
    return Table(LIMIT_HEADERS, rows, css, numeric={2, 3, 4, 6, 7, 8}, caption=caption)


def _limit_blocks(cell: str, group: MachineGroup) -> list[Block]:
    """The limit table of a cell's results, when the file recorded limits (nothing otherwise)."""
    if not any(r.get("limit_s") is not None for r in group.results):
        return []
    return [
        Heading(4, f"Limits · {cell}"),
        Para(
            "`of the limit` is limit ÷ median: 100% is a call at the time this machine could "
            "not beat under the model, 10% ten times slower than it. At B=1 the compute floor "
            "is T products of (1×H)·(H×G·H), each far from the GEMM peak: a library near 100% "
            "there is bound by the per-step product, not by overhead. At B=32 the same floor "
            "is much closer to the peak, so per-step overhead shows as a lower fraction. Above "
            "100% the library beat the model: it fuses the steps into one kernel, overlaps "
            "layers or directions, or its own matrix products are faster than the measured "
            "library's at that shape. Elementwise gate work is not counted."
        ),
        _limit_table(group.results),
    ]


def _check_blocks(
    checks: list[CheckFile], palette: Palette, drawn: FigureSet, figures: bool
) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Equivalence with the float64 reference", "equivalence")]
    blocks.append(
        Para(
            "Each backend's output against NumPy in float64 on the same weights and input, one "
            "section per cell: the largest absolute and relative error over every step, batch "
            "element and feature, the error of the final state (h_n, and c_n for an LSTM), and "
            "the verdict against the tolerance for the dtype and sequence length."
        )
    )
    if any(c.has_gradients for c in checks):
        blocks.append(
            Para(
                "A check run with `--grad` also compares each backend's gradients, by its own "
                "autodiff, of `L = sum(y·dy) + sum(h_n·dh_n)` (+ `sum(c_n·dc_n)` for an LSTM) "
                "for seeded cotangents with the float64 backpropagation through time: the "
                "gradient equivalence table after each forward table gives the largest error "
                "of dx, dh0 (and dc0) and of the weight array furthest from its bound, each "
                "with its bound, the verdict, and the first time step where dx leaves its "
                "tolerance (errors accumulate backwards in time, from the last step)."
            )
        )
    for cell in cell_order(c.cell for c in checks):
        blocks += _check_cell_blocks(
            cell, [c for c in checks if c.cell == cell], palette, drawn, figures
        )
    return blocks


def _check_cell_blocks(
    cell: str, checks: list[CheckFile], palette: Palette, drawn: FigureSet, figures: bool
) -> list[Block]:
    blocks: list[Block] = [
        Heading(3, f"Cell: {CELL_TITLES.get(cell, cell)}", f"equivalence-{_slug(cell)}")
    ]
    if figures:
        from rnnbench.report.plots import error_figure

        found = _try(lambda: error_figure(checks, palette, f"equivalence-{_slug(cell)}"))
        _add_figures(blocks, drawn, found)
        if found.notes:
            blocks.append(Notes("Notes", found.notes))
    for check in checks:
        # an LSTM's final state is a pair: its cell state c_n gets a column of its own
        lstm = check.spec.get("cell") == "lstm" or any(
            math.isfinite(r.get("c_n_max_abs", math.nan)) for r in check.rows
        )
        headers = [
            "backend",
            "dtype",
            "device",
            "status",
            "max abs",
            "max rel",
            "h_n max abs",
            *(["c_n max abs"] if lstm else []),
            "first bad step",
            "tolerance",
            "path",
        ]
        blocks.append(Heading(4, f"{check.case} · T={check.seq_len}"))
        blocks.append(Para(f"From `{check.path}`.", "meta"))
        blocks += _check_inputs(check)
        blocks.append(_pivot(check))
        rows, css = [], []
        for r in check.rows:
            status = str(r["status"])
            if r.get("reason") and status != "pass":
                status += f": {r['reason']}"
            bad = r.get("first_bad_step")
            if bad is not None and r.get("first_bad_index") is not None:
                bad = f"t={bad} {tuple(r['first_bad_index'])}"
            rows.append(
                [
                    str(r["backend"]),
                    str(r["dtype"]),
                    str(r.get("device", "-")),
                    status,
                    fmt_num(r["max_abs"], ".2e"),
                    fmt_num(r["max_rel"], ".2e"),
                    fmt_num(r["h_n_max_abs"], ".2e"),
                    *([fmt_num(r.get("c_n_max_abs"), ".2e")] if lstm else []),
                    "-" if bad is None else str(bad),
                    str(r.get("tolerance") or "-"),
                    str(r.get("path") or "-"),
                ]
            )
            css.append(_status_css(str(r["status"])))
        blocks.append(Table(headers, rows, css, numeric={4, 5, 6, 7} if lstm else {4, 5, 6}))
        if check.has_gradients:
            blocks.append(_grad_table(check))
    return blocks


def _check_inputs(check: CheckFile) -> list[Block]:
    """What the check was run with and where, when its file says (older files do not)."""
    blocks: list[Block] = []
    inputs = dict(check.inputs)
    command = inputs.pop("command", None)
    if inputs:
        text = "; ".join(f"{k}={v}" for k, v in flatten(inputs))
        blocks.append(Para(f"Inputs: {text}.", "meta"))
    if command:
        blocks.append(Para(f"Command: `{command}`", "meta"))
    if check.machine:
        blocks.append(Para(f"Checked on {machine_label(check.machine)}.", "meta"))
        pairs = flatten(check.machine)
        blocks.append(Details(f"The check's machine record ({len(pairs)} fields)", pairs))
    return blocks


GRAD_STATE_ARRAYS = ("dx", "dh0", "dc0")


def _grad_table(check: CheckFile) -> Table:
    """Per backend and dtype: the largest error of dx, dh0 (dc0) and of the weight array
    furthest from its bound (error / bound), each bound, the verdict and dx's first bad step."""
    rows_with = [r for r in check.rows if r.get("grad_status") is not None]
    lstm = any("dc0" in (r.get("grad_errors") or {}) for r in rows_with)
    states = ["dx", "dh0", *(["dc0"] if lstm else [])]
    headers = [
        "backend",
        "dtype",
        "gradients",
        *(f"{name} {what}" for name in states for what in ("err", "bound")),
        "worst weight",
        "weight err",
        "weight bound",
        "dx first bad step",
        "tolerance",
    ]
    rows, css = [], []
    for r in rows_with:
        errors, bounds = r.get("grad_errors") or {}, r.get("grad_bounds") or {}
        status = str(r["grad_status"])
        if r.get("grad_reason") and status != "pass":
            status += f": {r['grad_reason']}"
        weights = {k: v for k, v in errors.items() if k not in GRAD_STATE_ARRAYS}
        worst = max(weights, key=lambda k: _bound_ratio(weights[k], bounds.get(k)), default=None)
        bad = r.get("grad_first_bad_step")
        row = [str(r["backend"]), str(r["dtype"]), status]
        for name in states:
            row += [fmt_num(errors.get(name), ".2e"), fmt_num(bounds.get(name), ".2e")]
        row += [
            worst or "-",
            fmt_num(errors.get(worst or ""), ".2e"),
            fmt_num(bounds.get(worst or ""), ".2e"),
            "-" if bad is None else f"t={bad}",
            str(r.get("grad_tolerance") or "-"),
        ]
        rows.append(row)
        css.append(_status_css(str(r["grad_status"])))
    n = len(states)
    return Table(
        headers,
        rows,
        css,
        numeric=set(range(3, 3 + 2 * n)) | {4 + 2 * n, 5 + 2 * n},
        caption="Gradient equivalence: max absolute error of each gradient against the "
        "float64 reference, and its bound",
    )


def _bound_ratio(err: float, bound: float | None) -> float:
    """How far an error is from its bound (NaN or a missing bound counts as the worst)."""
    if bound is None or not bound > 0 or err != err:
        return math.inf
    return err / bound


def _pivot(check: CheckFile) -> Table:
    """Max absolute error per backend (rows) and dtype (columns), with the verdict."""
    dtypes = list(dict.fromkeys(str(r["dtype"]) for r in check.rows))
    backends = list(dict.fromkeys(str(r["backend"]) for r in check.rows))
    cell = {(str(r["backend"]), str(r["dtype"])): r for r in check.rows}
    rows, css = [], []
    for b in backends:
        row, worst = [b], ""
        for d in dtypes:
            r = cell.get((b, d))
            if r is None:
                row.append("-")
                continue
            status = str(r["status"])
            err = fmt_num(r["max_abs"], ".2e")
            row.append(f"{err} {status}" if status in ("pass", "fail") else status)
            if status not in ("pass", "skipped") or (status == "skipped" and not worst):
                worst = _status_css(status)
        rows.append(row)
        css.append(worst)
    return Table(
        ["backend", *(f"{d} max abs error" for d in dtypes)],
        rows,
        css,
        numeric=set(range(1, len(dtypes) + 1)),
        caption="Max absolute error per backend and dtype",
    )


def _have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_report(
    paths: Sequence[str | Path], out_dir: str | Path, figures: bool = True
) -> dict[str, Path]:
    """Read ``paths``, write the report into ``out_dir``; return the paths written.
    ``figures=False`` (or no matplotlib) writes the tables and notes only.

    Every file is written to a temporary name and renamed (``rnnbench.fileio``, with the
    umask's mode), so that an interrupted run never leaves a half-written report behind."""
    data = gather(paths)
    blocks, drawn = build_blocks(data, figures=figures and _have_matplotlib())
    out = Path(out_dir)
    fig_dir = out / FIGURE_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in drawn.figures:
        atomic_write_bytes(fig_dir / f"{f.name}.png", f.png)
    # figures of an earlier report in the same folder that this one did not draw
    current = {f"{f.name}.png" for f in drawn.figures}
    for old in fig_dir.glob("*.png"):
        if old.name not in current and re.match(r"^(m\d+-|equivalence-)", old.name):
            old.unlink()
    md = out / "report.md"
    page = out / "report.html"
    atomic_write_text(md, to_markdown(blocks, FIGURE_DIR))
    atomic_write_text(page, to_html(blocks, TITLE))
    return {"markdown": md, "html": page, "figures": fig_dir}
