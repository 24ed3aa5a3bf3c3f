"""When a run's numbers should not be trusted as they are: the thresholds, and the warnings the
bench output, the report and ``rnnbench compare`` print. Each warning names what it saw and what
to do; none of them stops a run (a noisy number is still a number, flagged)."""

from __future__ import annotations

import math
from typing import Any

# The processes of one case differ by more than this (the standard deviation of their log
# medians: about the relative spread): a second run may well land elsewhere.
SPREAD_WARN = 0.05
# The GEMM calibration at the end of the run differs from the start by more than this: the
# machine's own speed moved while the cases ran (frequency, another tenant, thermal limits).
DRIFT_WARN = 0.05
# The share of the cores other processes kept busy just before the first case or after the
# last (``machine.other_load``), above which they competed with the benchmark.
LOAD_WARN = 0.25
# Within one process, an interquartile range above this fraction of the median: calls of the
# same work took very different times (interruptions, frequency changes, another process).
IQR_WARN = 0.25
# CPU frequency governors that hold the clock; any other moves it with the load.
STEADY_GOVERNORS = ("performance",)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def other_busy(run: dict[str, Any], when: str) -> float | None:
    """The cores other work kept busy at the run's ``when`` ("start" or "end"), when that is
    above ``LOAD_WARN`` of the machine's cores; None when it was not (or not measured)."""
    load = run.get(f"load_{when}")
    busy = load.get("busy_cores") if isinstance(load, dict) else None
    cores = run.get("cpu_count") or 1
    if isinstance(busy, (int, float)) and busy / cores > LOAD_WARN:
        return float(busy)
    return None


def result_warnings(record: dict[str, Any]) -> list[str]:
    """Why one result's time may not repeat (empty when nothing was seen)."""
    if record.get("status") != "ok":
        return []
    out = []
    sd = record.get("process_sd")
    if isinstance(sd, (int, float)) and math.isfinite(sd) and sd > SPREAD_WARN:
        medians = record.get("process_medians") or []
        spread = max(medians) / min(medians) - 1 if medians and min(medians) > 0 else math.nan
        out.append(
            f"its {len(medians)} processes differ by {_pct(sd)} (sd of log medians; "
            f"slowest/fastest {_pct(spread)} apart): run again on an idle machine, or with "
            "more --processes"
        )
    median, iqr = record.get("median_s"), record.get("iqr_s")
    if median and iqr is not None and iqr / median > IQR_WARN:
        out.append(
            f"calls within a process vary widely (IQR {_pct(iqr / median)} of the median): "
            "something else is running, or the call is too short to time alone"
        )
    return out


def run_warnings(run: dict[str, Any]) -> list[str]:
    """Why a whole run may not repeat: load on the machine, the machine's speed drifting,
    a CPU clock that follows the load."""
    out = []
    for when in ("start", "end"):
        busy = other_busy(run, when)
        if busy is not None:
            cores = run.get("cpu_count") or 1
            out.append(
                f"the machine was busy with other work at the {when} of the run (other "
                f"processes kept {busy:.2f} of its {cores} cores busy): they compete with the "
                "benchmark; run on an idle machine"
            )
    cal = run.get("calibration") or {}
    drift = cal.get("drift")
    if isinstance(drift, (int, float)) and math.isfinite(drift) and abs(drift) > DRIFT_WARN:
        out.append(
            f"the machine's own speed moved during the run: the GEMM calibration ran "
            f"{_pct(abs(drift))} {'slower' if drift < 0 else 'faster'} at the end than at the "
            f"start ({cal.get('start_gflops', 0):.1f} -> {cal.get('end_gflops', 0):.1f} GFLOP/s)"
        )
    governor = run.get("governor")
    if isinstance(governor, dict):
        moving = sorted(g for g in governor if g not in STEADY_GOVERNORS)
        if moving:
            out.append(
                f"the CPU frequency governor is {', '.join(moving)}: the clock follows the "
                "load, so short calls and idle gaps run at other speeds (set 'performance', "
                "e.g. `sudo cpupower frequency-set -g performance`, for steadier numbers)"
            )
    return out
