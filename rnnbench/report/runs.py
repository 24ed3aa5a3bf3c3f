"""Comparing two benchmark runs case by case, judged against the noise the files recorded.

A case is matched on backend, variant, device, dtype, cell (with a GRU's formula and a vanilla
RNN's nonlinearity), every size, the padding (full or ragged lengths) and the mode (inference
or training): an LSTM result is never judged against a GRU one, a ragged batch against a full
one, nor a training step against a forward pass. A file written before cells (schema
bench/1.0) holds vanilla tanh RNNs; one written before lengths (before bench/1.2) holds
full-length batches; one written before modes (before bench/1.3) holds inference cases.

The evidence is the *processes* (bench/1.5: each case ran in several worker processes,
interleaved with the other backends): each process's median is one observation, and the ratio
new/old is the ratio of their geometric means, with a Welch interval on the log scale. Thousands
of samples from one process are not thousands of observations: they share that process's
memory layout, thread placement and the machine's state, and a test that treats them as
independent calls nearly every difference significant. The noise of each side is the spread
between its processes, or the spread pooled over all of that backend's cases in the file when
that is larger (three processes alone may agree by luck). Noise that no spread within a run
shows, the machine itself running faster or slower from one run to the next, is measured by
the case's other backends: they ran interleaved with it, so the machine's movement landed on
all of them alike, and with two or more of them measured in both runs the change judged is the
one beyond their median (their uncertainty added). With fewer, the GEMM calibration each run
records at its start and end stands in: the largest movement seen (within the old run, within
the new one, and between the two when they ran on the same machine) is added to the ratio's
variance. The verdicts:

- ``slower`` / ``faster``: the ratio (beyond the other backends' movement, when there are
  others) is beyond the threshold (by default 5%) *and* its interval at 1 - alpha (95%)
  excludes 1;
- ``same``: the ratio is within the threshold and its interval within twice the threshold
  (a change twice as large would have shown);
- ``noisy``: anything else: the noise recorded is too large to tell (the note gives its size),
  or a change that would be a verdict, measured by a run that started or ended on a loaded
  machine (the other work may have made it, and nothing in the run shows how much);
- ``broken``: the old run measured the case, the new one failed it; ``fixed``: the reverse;
  ``failed``: neither measured it (``skipped`` when both runs skipped it); ``only-in-old`` /
  ``only-in-new``: no partner.

A file before bench/1.5 has one process per case: such a pair is judged as before, by a
Mann-Whitney U test on the raw samples (p < alpha), with a note that its noise between processes
is unknown; without samples, by non-overlapping IQR bands.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from rnnbench.bench.cases import group_of
from rnnbench.bench.relative import pooled_by_backend, process_spread
from rnnbench.bench.stability import other_busy
from rnnbench.bench.stats import (
    LogSpread,
    difference_variance,
    interval_of,
    t_quantile,
)
from rnnbench.commands.common import cell_name
from rnnbench.report.results import BenchFile, is_ok, run_key
from rnnbench.report.stats import mann_whitney_u

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
# verdicts that make `rnnbench compare` exit 1
REGRESSIONS = ("slower", "broken")
# the relative change in a GEMM peak between two runs above which `compare` warns
PEAK_CHANGE_WARN = 0.05


@dataclass
class CaseComparison:
    backend: str
    variant: str
    case: str
    verdict: str
    old_median_s: float = math.nan
    new_median_s: float = math.nan
    ratio: float = math.nan  # new / old: above 1 is slower
    low: float = math.nan  # the ratio's interval (processes test), else nan
    high: float = math.nan
    p_value: float | None = None
    test: str = ""  # "processes" | "mann-whitney" | "iqr" | ""
    old_n: int = 0  # processes (or samples, for the tests on samples)
    new_n: int = 0
    run_noise: float = 0.0  # the machine's own movement added (relative, 0.02 = 2%)
    # the case's other backends moved by this much between the runs (their median ratio, -1);
    # nan when the case has fewer than three backends measured in both runs
    shift: float = math.nan
    adjusted: float = math.nan  # ratio / (1 + shift): the change beyond the others'
    note: str = ""


@dataclass
class _Noise:
    """What a comparison knows about the noise beyond each case's own processes."""

    old_pooled: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    new_pooled: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    old: BenchFile | None = None
    new: BenchFile | None = None
    # per case (run key): the log ratios of the other backends of its group, with the
    # variance parts of each
    others: dict[tuple[Any, ...], list[tuple[float, list[tuple[float, float]]]]] = field(
        default_factory=dict
    )

    def run_noise(self, old: dict[str, Any], new: dict[str, Any]) -> float:
        """The largest movement of the machine's own speed the two runs recorded, on the log
        scale (0 when neither recorded a calibration)."""
        moves = []
        cals = []
        for f, r in ((self.old, old), (self.new, new)):
            cal = (f.run_of(r) if f else {}).get("calibration") or {}
            cals.append(cal)
            drift = cal.get("drift")
            if isinstance(drift, (int, float)) and drift > -1:
                moves.append(abs(math.log1p(drift)))
        a, b = cals
        same_machine = old.get("machine_id") and old.get("machine_id") == new.get("machine_id")
        if same_machine and a.get("key") == b.get("key") and a.get("size") == b.get("size"):
            x, y = a.get("start_gflops"), b.get("start_gflops")
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x > 0 and y > 0:
                moves.append(abs(math.log(y / x)))
        return max(moves, default=0.0)

    def loaded(self, old: dict[str, Any], new: dict[str, Any]) -> str | None:
        """Which run, if either, started or ended on a loaded machine: other work competed
        for the cores for an unknown part of the run, and no spread shows how much."""
        for side, f, r in (("old", self.old, old), ("new", self.new, new)):
            run = f.run_of(r) if f else {}
            for when in ("start", "end"):
                busy = other_busy(run, when)
                if busy is not None:
                    return (
                        f"the {side} run's machine was busy with other work ({busy:.2f} of "
                        f"{run.get('cpu_count') or 1} cores at its {when})"
                    )
        return None


def describe_case(result: dict[str, Any]) -> str:
    dirs = " bidir" if result.get("bidirectional") else ""
    layers = result.get("layers", 1)
    cell = cell_name(str(result.get("cell") or "rnn"), result.get("reset_after"))
    if result.get("nonlinearity", "tanh") != "tanh":
        cell += f" {result['nonlinearity']}"
    return (
        f"{result['device']} {result['dtype']} {cell} B={result['batch']} T={result['seq_len']} "
        f"I={result['input_size']} H={result['hidden_size']}"
        + (f" L={layers}" if layers != 1 else "")
        + dirs
        + (f" threads={result['threads']}" if result.get("threads") is not None else "")
        + (f" {result['lengths']}" if result.get("lengths", "full") != "full" else "")
        + (f" {result['mode']}" if result.get("mode", "inference") != "inference" else "")
    )


def verdict_for(
    old: dict[str, Any],
    new: dict[str, Any],
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    noise: _Noise | None = None,
) -> CaseComparison:
    """The verdict on one case measured in both runs."""
    out = CaseComparison(
        backend=new["backend"],
        variant=new.get("variant", "default"),
        case=describe_case(new),
        verdict="same",
        old_median_s=old["median_s"],
        new_median_s=new["median_s"],
        old_n=len(old.get("samples") or []),
        new_n=len(new.get("samples") or []),
    )
    old_ok, new_ok = is_ok(old), is_ok(new)
    if not (old_ok and new_ok):
        both_skipped = old.get("status") == new.get("status") == "skipped"
        out.verdict = (
            "broken" if old_ok else "fixed" if new_ok else "skipped" if both_skipped else "failed"
        )
        bad = new if not new_ok else old
        reason = (bad.get("error") or "no reason recorded").split("\nHint:")[0]
        out.note = f"{bad['status']}: {reason}"
        return out
    a, b = process_spread(new, single=False), process_spread(old, single=False)
    if a is not None and b is not None and (a.n > 1 or b.n > 1):
        return _judge_processes(out, old, new, a, b, threshold, alpha, noise or _Noise())
    out.ratio = new["median_s"] / old["median_s"]
    significant = _significant(old, new, alpha, out)
    out.note = "; ".join(
        n for n in (out.note, "one process a side: the noise between processes is unknown") if n
    )
    if 1.0 / (1.0 + threshold) <= out.ratio <= 1.0 + threshold:
        out.verdict = "same"
    elif significant:
        out.verdict = "slower" if out.ratio > 1 else "faster"
    else:
        out.verdict = "noisy"
    return out


def _judge_processes(
    out: CaseComparison,
    old: dict[str, Any],
    new: dict[str, Any],
    a: LogSpread,
    b: LogSpread,
    threshold: float,
    alpha: float,
    noise: _Noise,
) -> CaseComparison:
    key = (new["backend"], new.get("variant", "default"))
    out.test, out.old_n, out.new_n = "processes", b.n, a.n
    out.ratio = math.exp(a.mean - b.mean)
    parts = difference_variance(
        a, b, var_a=noise.new_pooled.get(key), var_b=noise.old_pooled.get(key)
    )
    if parts is None:
        out.verdict, out.note = "noisy", "a single process and no other case to pool its noise"
        return out
    others = noise.others.get(run_key(new), [])
    if len(others) >= 2:
        # Interleaving makes whatever the machine did during a case land on all of its
        # backends alike; between two runs, that common movement is the machine's, and the
        # other backends of the case measure it: the change judged is beyond theirs.
        shift = statistics.median(d for d, _ in others)
        # the variance of a median of m estimates: about pi/2 times that of their mean
        spread = math.pi / 2 * statistics.mean(sum(v for v, _ in p) for _, p in others)
        dof = min(min(f for _, f in p) for _, p in others)
        parts = [*parts, (spread / len(others), dof)]
        out.shift = math.expm1(shift)
    else:
        # too few others to tell the machine's movement: the calibration's, as noise
        run = noise.run_noise(old, new)
        out.run_noise = math.expm1(run)
        parts = [*parts, (run * run, math.inf)]
        shift = 0.0
    ci = interval_of(a.mean - b.mean - shift, parts, 1.0 - alpha)
    out.adjusted = ci.ratio
    out.low, out.high = ci.low, ci.high
    within = 1.0 / (1.0 + threshold) <= out.adjusted <= 1.0 + threshold
    loaded = noise.loaded(old, new)
    if not within and (ci.low > 1 or ci.high < 1) and loaded:
        # the change may be the other work's: a loaded run's numbers judge nothing
        out.verdict = "noisy"
        out.note = f"{'slower' if out.adjusted > 1 else 'faster'}, but {loaded}"
    elif not within and (ci.low > 1 or ci.high < 1):
        out.verdict = "slower" if out.adjusted > 1 else "faster"
    elif within and 1.0 / (1.0 + 2 * threshold) <= ci.low and ci.high <= 1.0 + 2 * threshold:
        out.verdict = "same"
    else:
        out.verdict = "noisy"
        out.note = f"noise ±{100 * ci.half_width:.1f}%" + (
            f" (the machine's own speed moved {100 * out.run_noise:.1f}%)"
            if out.run_noise > threshold / 2
            else ""
        )
    if out.shift == out.shift and abs(out.shift) > threshold / 2:
        moved = f"the case's other backends moved {100 * out.shift:+.1f}%"
        out.note = f"{out.note}; {moved}" if out.note else moved
    return out


def _significant(
    old: dict[str, Any], new: dict[str, Any], alpha: float, out: CaseComparison
) -> bool:
    a, b = old.get("samples") or [], new.get("samples") or []
    if len(a) >= 2 and len(b) >= 2:
        out.test = "mann-whitney"
        out.p_value = mann_whitney_u(a, b)[1]
        if out.p_value >= alpha and min(len(a), len(b)) < 4:
            out.note = "too few rounds for a significant verdict"
        return out.p_value < alpha
    # no raw samples: the IQR bands around the medians must not overlap
    out.test = "iqr"
    lo_old, hi_old = _band(old)
    lo_new, hi_new = _band(new)
    if any(math.isnan(v) for v in (lo_old, hi_old, lo_new, hi_new)):
        out.test, out.note = "", "no samples and no IQR: significance unknown"
        return False
    return hi_new < lo_old or hi_old < lo_new


def _band(result: dict[str, Any]) -> tuple[float, float]:
    q1, q3 = result.get("q1_s", math.nan), result.get("q3_s", math.nan)
    if math.isfinite(q1) and math.isfinite(q3):
        return q1, q3
    half = result.get("iqr_s", math.nan) / 2
    return result["median_s"] - half, result["median_s"] + half


def compare_runs(
    old: BenchFile,
    new: BenchFile,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> list[CaseComparison]:
    """Every case of either run, in the new run's order, then the cases only the old run has."""
    old_by_key = {run_key(r): r for r in old.results}
    new_by_key = {run_key(r): r for r in new.results}
    noise = _Noise(pooled_by_backend(old.results), pooled_by_backend(new.results), old, new)
    noise.others = _others(old_by_key, new_by_key, noise)
    rows = []
    for key, result in new_by_key.items():
        if key in old_by_key:
            rows.append(verdict_for(old_by_key[key], result, threshold, alpha, noise))
        else:
            rows.append(_lonely(result, "only-in-new"))
    rows += [_lonely(r, "only-in-old") for k, r in old_by_key.items() if k not in new_by_key]
    return rows


def _others(
    old_by_key: dict[tuple[Any, ...], dict[str, Any]],
    new_by_key: dict[tuple[Any, ...], dict[str, Any]],
    noise: _Noise,
) -> dict[tuple[Any, ...], list[tuple[float, list[tuple[float, float]]]]]:
    """For each case measured in both runs by processes: the log ratios new/old of the other
    backends of its group (same configuration), each with its variance parts."""
    groups: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], float, Any]]] = {}
    for key, new_r in new_by_key.items():
        old_r = old_by_key.get(key)
        if old_r is None or not (is_ok(old_r) and is_ok(new_r)):
            continue
        a, b = process_spread(new_r, single=False), process_spread(old_r, single=False)
        if a is None or b is None:
            continue
        backend = (new_r["backend"], new_r.get("variant", "default"))
        parts = difference_variance(
            a, b, var_a=noise.new_pooled.get(backend), var_b=noise.old_pooled.get(backend)
        )
        if parts is not None:
            groups.setdefault(group_of(new_r), []).append((key, a.mean - b.mean, parts))
    out = {}
    for members in groups.values():
        for key, _, _ in members:
            out[key] = [(d, parts) for k, d, parts in members if k != key]
    return out


def settings_warnings(old: BenchFile, new: BenchFile) -> list[str]:
    """What differs between the two runs besides the code under test, each of which moves
    timings by itself: the machine, the measurement settings, thread counts, library versions,
    TF32 and the GEMM peak."""
    out = []
    om, nm = old.machine or {}, new.machine or {}
    if om.get("machine_id") and nm.get("machine_id") and om["machine_id"] != nm["machine_id"]:
        from rnnbench.report.model import machine_label

        out.append(
            f"the runs come from different machines (or library versions): "
            f"old {machine_label(om)}; new {machine_label(nm)}"
        )
    settings = []
    for name in ("processes", "min_time", "min_rounds", "warmup_time"):
        olds = {str(old.run_of(r).get("settings", {}).get(name)) for r in old.results}
        news = {str(new.run_of(r).get("settings", {}).get(name)) for r in new.results}
        olds.discard("None")
        news.discard("None")
        if name == "min_time":
            olds |= {str(r["min_time"]) for r in old.results if r.get("min_time") is not None}
            news |= {str(r["min_time"]) for r in new.results if r.get("min_time") is not None}
        if olds and news and olds != news:
            flag = "--" + name.replace("_", "-").replace("warmup-time", "warmup")
            settings.append(f"{flag} {'/'.join(sorted(olds))} vs {'/'.join(sorted(news))}")
    if settings:
        out.append("the runs used different settings: " + "; ".join(settings))
    for field_name, what in (("threads", "threads"), ("tf32", "TF32 settings")):
        differs = []
        old_facts, new_facts = om.get(field_name) or {}, nm.get(field_name) or {}
        for backend in sorted(set(old_facts) & set(new_facts)):
            a, b = old_facts[backend], new_facts[backend]
            if isinstance(a, dict) and isinstance(b, dict):
                keys = sorted(k for k in set(a) | set(b) if k != "blas" and a.get(k) != b.get(k))
                if keys:
                    differs.append(
                        f"{backend} " + ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in keys)
                    )
        if differs:
            out.append(f"the runs used different {what}: " + "; ".join(differs))
    ov, nv = om.get("versions") or {}, nm.get("versions") or {}
    changed = [
        f"{k} {ov.get(k)} -> {nv.get(k)}"
        for k in sorted(set(ov) | set(nv))
        if ov.get(k) != nv.get(k)
    ]
    if changed:
        out.append("library versions differ: " + ", ".join(changed))
    for key in sorted(set(old.peak) & set(new.peak)):
        a, b = old.peak[key].get("gflops"), new.peak[key].get("gflops")
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 < b
        if numbers and abs(b / a - 1) > PEAK_CHANGE_WARN:
            out.append(
                f"the GEMM peak {key} differs by {100 * (b / a - 1):+.1f}% "
                f"({a:.1f} vs {b:.1f} GFLOP/s): the machine itself ran at another speed"
            )
    return out


def _lonely(result: dict[str, Any], verdict: str) -> CaseComparison:
    side = "new" if verdict == "only-in-new" else "old"
    row = CaseComparison(
        backend=result["backend"],
        variant=result.get("variant", "default"),
        case=describe_case(result),
        verdict=verdict,
    )
    setattr(row, f"{side}_median_s", result["median_s"])
    setattr(row, f"{side}_n", len(result.get("samples") or []))
    return row


def as_dicts(rows: list[CaseComparison]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


@dataclass
class BackendSummary:
    """One backend (and variant) over every case both runs measured with processes: the
    geometric mean of its per-case ratios (beyond the other backends' movement, when the case
    had others) with an interval from their spread across cases, and a verdict by the same
    rules as a case's. A 10% regression that each case alone cannot tell from its noise shows
    here: a backend's cases move together, noise does not."""

    backend: str
    variant: str
    cases: int
    ratio: float
    low: float
    high: float
    verdict: str


def backend_summaries(
    rows: list[CaseComparison],
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> list[BackendSummary]:
    """A summary per backend with at least three cases judged on processes. Its interval is a
    one-sample t interval of the cases' log ratios: the spread *between cases* is what it
    trusts, since one backend's cases share its worker processes and are not independent."""
    by_backend: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        value = r.adjusted if r.adjusted == r.adjusted else r.ratio
        if r.test == "processes" and value == value and value > 0:
            by_backend.setdefault((r.backend, r.variant), []).append(math.log(value))
    out = []
    for (backend, variant), logs in by_backend.items():
        n = len(logs)
        if n < 3:
            continue
        mean = statistics.mean(logs)
        half = t_quantile(1 - alpha / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
        ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
        within = 1.0 / (1.0 + threshold) <= ratio <= 1.0 + threshold
        if not within and (low > 1 or high < 1):
            verdict = "slower" if ratio > 1 else "faster"
        elif within and 1.0 / (1.0 + 2 * threshold) <= low and high <= 1.0 + 2 * threshold:
            verdict = "same"
        else:
            verdict = "noisy"
        out.append(BackendSummary(backend, variant, n, ratio, low, high, verdict))
    return out
