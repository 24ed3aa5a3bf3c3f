"""Each backend's speed relative to a baseline backend, case by case, with a confidence
interval from the processes that measured both.

The baseline, by default, is NumPy on the CPU and torch on CUDA. NumPy is always installed (it
is rnnbench's one dependency), it is the reference every other backend is checked against, and
its loop is plain BLAS calls, so "2.1x numpy" means the same thing on every machine, in every
case and in every run. "The fastest backend" would make a different backend the unit in each
case (ratios in one table no longer share a denominator), and its own noise would move every
other ratio. On CUDA NumPy cannot run; torch's cuDNN path is the one most users have. Any
backend can be named instead (``--baseline jax``), or ``fastest``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rnnbench.bench.cases import group_of
from rnnbench.bench.stats import LogSpread, log_spread, pooled_variance, ratio_interval
from rnnbench.texttable import text_table

DEFAULT_BASELINE = {"cpu": "numpy", "cuda": "torch"}
LEVEL = 0.95


@dataclass(frozen=True)
class Relative:
    """``backend`` against ``baseline`` in one case: ``speedup`` = the baseline's time / this
    backend's time (2.0 = twice as fast), with the interval [``low``, ``high``] at ``level``
    (None when either side has a single process and no pooled spread stands in for it)."""

    case: str
    backend: str
    variant: str
    baseline: str
    speedup: float
    low: float | None
    high: float | None
    level: float
    processes: int
    baseline_processes: int


def process_spread(record: dict[str, Any], single: bool = True) -> LogSpread | None:
    """``LogSpread`` of a record's process medians. A record before processes (bench/1.4 and
    older) is one process, its median (``single``), or None (``single=False``: a caller that
    judges such a record another way)."""
    medians = record.get("process_medians")
    if not isinstance(medians, list) or not medians:
        if not single:
            return None
        medians = [record.get("median_s")]
    return log_spread([m for m in medians if isinstance(m, (int, float))])


def pooled_by_backend(
    records: Iterable[dict[str, Any]],
) -> dict[tuple[str, str], tuple[float, int]]:
    """The variance of log process medians of each (backend, variant), pooled over its
    measured cases (``stats.pooled_variance``), and its degrees of freedom."""
    spreads: dict[tuple[str, str], list[LogSpread]] = {}
    for r in records:
        s = process_spread(r) if r.get("status") == "ok" else None
        if s is not None:
            spreads.setdefault((r["backend"], r.get("variant", "default")), []).append(s)
    return {k: pooled_variance(v) for k, v in spreads.items()}


def resolve_baseline(records: Sequence[dict[str, Any]], baseline: str | None) -> str:
    """The baseline a set of records is shown against: the one named, else the default for
    their device (``fastest`` stays as it is: chosen per case)."""
    if baseline:
        return baseline
    devices = {r.get("device", "cpu") for r in records}
    return DEFAULT_BASELINE.get(devices.pop() if len(devices) == 1 else "cpu", "numpy")


def relative_speeds(
    records: Sequence[dict[str, Any]],
    baseline: str | None = None,
    level: float = LEVEL,
    describe: Any = None,
) -> list[Relative]:
    """One row per measured (case, backend) that has a measured baseline in the same case
    (the baseline's own row included, at 1.0). ``describe(record)`` names a case (default:
    its key fields)."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("median_s")]
    base_name = resolve_baseline(ok, baseline)
    pooled = pooled_by_backend(ok)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault(group_of(r), []).append(r)
    rows = []
    for members in groups.values():
        if base_name == "fastest":
            base = min(members, key=lambda r: process_spread(r).center_s)  # type: ignore[union-attr]
        else:
            named = [r for r in members if r["backend"] == base_name]
            if not named:
                continue
            base = named[0]
        b = process_spread(base)
        if b is None:
            continue
        for r in members:
            a = process_spread(r)
            if a is None:
                continue
            ci = ratio_interval(
                b,
                a,
                level,
                var_a=pooled.get((base["backend"], base.get("variant", "default"))),
                var_b=pooled.get((r["backend"], r.get("variant", "default"))),
            )
            rows.append(
                Relative(
                    case=describe(r) if describe else " ".join(map(str, group_of(r))),
                    backend=r["backend"],
                    variant=r.get("variant", "default"),
                    baseline=base["backend"],
                    speedup=math.exp(b.mean - a.mean),
                    low=ci.low if ci and r is not base else None,
                    high=ci.high if ci and r is not base else None,
                    level=level,
                    processes=a.n,
                    baseline_processes=b.n,
                )
            )
    return rows


def format_interval(row: Relative) -> str:
    if row.low is None or row.high is None:
        return f"{row.speedup:.2f}x"
    return f"{row.speedup:.2f}x [{row.low:.2f}, {row.high:.2f}]"


def format_relative(rows: Sequence[Relative]) -> str:
    """A text table: case, backend, speed relative to the baseline with its interval."""
    if not rows:
        return ""
    level = f"{100 * rows[0].level:.0f}%"
    body = [
        (
            r.case,
            r.backend if r.variant == "default" else f"{r.backend} [{r.variant}]",
            "baseline" if r.backend == r.baseline and r.low is None else format_interval(r),
            f"{r.processes}/{r.baseline_processes}",
        )
        for r in rows
    ]
    head = ("case", "backend", f"speed vs {rows[0].baseline} ({level} interval)", "processes")
    return text_table(head, body)
