"""Comparing two benchmark runs case by case, with the noise taken into account.

A case is matched on backend, variant, device, dtype, cell (with a GRU's formula and a vanilla
RNN's nonlinearity), every size, the padding (full or ragged lengths) and the mode (inference
or training): an LSTM result is never judged against a GRU one, a ragged batch against a full
one, nor a training step against a forward pass. A file written before cells (schema
bench/1.0) holds vanilla tanh RNNs; one written before lengths (before bench/1.2) holds
full-length batches; one written before modes (before bench/1.3) holds inference cases. For
each pair the ratio of medians new/old is computed, and a verdict is given:

- ``same``: the ratio lies within the threshold (by default 5%: 1/1.05 <= ratio <= 1.05), whether
  or not the change is statistically significant: a real 3% change is not worth a verdict;
- ``slower`` / ``faster``: beyond the threshold *and* significant: a two-sided Mann-Whitney U test
  on the raw samples gives p < alpha (0.05);
- ``noisy``: beyond the threshold but not significant (too few rounds, or samples that overlap);
- ``broken``: the old run measured the case, the new one failed it; ``fixed``: the reverse;
  ``failed``: neither measured it (``skipped`` when both runs skipped it); ``only-in-old`` /
  ``only-in-new``: no partner.

When a file holds no samples for a case, significance falls back to non-overlapping IQR bands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rnnbench.commands.common import cell_name
from rnnbench.report.results import BenchFile, is_ok, run_key
from rnnbench.report.stats import mann_whitney_u

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
# verdicts that make `rnnbench compare` exit 1
REGRESSIONS = ("slower", "broken")


@dataclass
class CaseComparison:
    backend: str
    variant: str
    case: str
    verdict: str
    old_median_s: float = math.nan
    new_median_s: float = math.nan
    ratio: float = math.nan  # new / old: above 1 is slower
    p_value: float | None = None
    test: str = ""  # "mann-whitney" | "iqr" | ""
    old_n: int = 0
    new_n: int = 0
    note: str = ""


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
    out.ratio = new["median_s"] / old["median_s"]
    significant = _significant(old, new, alpha, out)
    if 1.0 / (1.0 + threshold) <= out.ratio <= 1.0 + threshold:
        out.verdict = "same"
    elif significant:
        out.verdict = "slower" if out.ratio > 1 else "faster"
    else:
        out.verdict = "noisy"
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
    rows = []
    for key, result in new_by_key.items():
        if key in old_by_key:
            rows.append(verdict_for(old_by_key[key], result, threshold, alpha))
        else:
            rows.append(_lonely(result, "only-in-new"))
    rows += [_lonely(r, "only-in-old") for k, r in old_by_key.items() if k not in new_by_key]
    return rows


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
