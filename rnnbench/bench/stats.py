"""Summary statistics of raw timing samples (seconds). Medians and quartiles, not means: timing
noise is one-sided (a call is slowed, never sped up), so the median is the robust centre and the
interquartile range the robust spread; the minimum is kept as the best case."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def summarize(samples: Sequence[float]) -> dict[str, float | int | None]:
    """median_s, iqr_s (q3 - q1, linear interpolation as numpy.percentile), q1_s, q3_s, min_s,
    max_s, mean_s and rounds; every value None when there are no samples."""
    if len(samples) == 0:
        return {
            "median_s": None,
            "iqr_s": None,
            "q1_s": None,
            "q3_s": None,
            "min_s": None,
            "max_s": None,
            "mean_s": None,
            "rounds": 0,
        }
    arr = np.asarray(samples, dtype=np.float64)
    q1, median, q3 = np.percentile(arr, [25, 50, 75])
    return {
        "median_s": float(median),
        "iqr_s": float(q3 - q1),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "min_s": float(arr.min()),
        "max_s": float(arr.max()),
        "mean_s": float(arr.mean()),
        "rounds": int(arr.size),
    }


def relative_difference(a: float, b: float) -> float:
    """|a - b| / min(a, b): the repeat-run variation of two medians, as a fraction."""
    return abs(a - b) / min(a, b)


# --- the noise between processes -----------------------------------------------------------
# A benchmark's samples from one process are not independent draws of its speed: they share
# that process's memory layout, its allocator's state, its thread pool's placement and the
# machine's state while it ran. The unit of evidence is the process: each worker's median is
# one observation, and the spread between those medians is the noise a second run would see.
# Timings are compared as ratios, so the statistics work on log times (a mean of logs is the
# log of a geometric mean, a difference of logs the log of a ratio).


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with ``dof`` degrees of freedom (any real dof > 0)."""
    if math.isinf(dof):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's t (bisection on ``t_cdf``; rnnbench has no SciPy):
    ``t_quantile(0.975, 2)`` = 4.303, the factor of a 95% interval from three processes."""
    if not 0.0 < p < 1.0 or not dof > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and dof > 0, got p={p}, dof={dof}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def split_by_process(samples: Sequence[float], rounds: Sequence[int]) -> list[list[float]]:
    """The samples of each process: ``samples`` holds them process after process, ``rounds``
    how many each one took (a results file's ``process_rounds``)."""
    if sum(rounds) != len(samples):
        raise ValueError(f"process_rounds add up to {sum(rounds)}, but there are {len(samples)}")
    out, start = [], 0
    for n in rounds:
        out.append([float(s) for s in samples[start : start + n]])
        start += n
    return out


@dataclass(frozen=True)
class LogSpread:
    """The centre and spread of a case's process medians on the log scale: ``mean`` is the log
    of their geometric mean, ``var`` the sample variance of their logs (``sd`` is about the
    relative spread: 0.03 = processes differ by about 3%), ``n`` the number of processes."""

    mean: float
    var: float
    n: int

    @property
    def dof(self) -> int:
        return self.n - 1

    @property
    def sd(self) -> float:
        return math.sqrt(self.var) if self.n > 1 else math.nan

    @property
    def center_s(self) -> float:
        return math.exp(self.mean)


def log_spread(medians: Sequence[float]) -> LogSpread | None:
    """``LogSpread`` of positive process medians; None without any."""
    logs = [math.log(m) for m in medians if m and m > 0 and math.isfinite(m)]
    if not logs:
        return None
    mean = sum(logs) / len(logs)
    var = sum((v - mean) ** 2 for v in logs) / (len(logs) - 1) if len(logs) > 1 else math.nan
    return LogSpread(mean, var, len(logs))


def pooled_variance(spreads: Sequence[LogSpread]) -> tuple[float, int]:
    """The variance of log process medians pooled over cases, and its degrees of freedom:
    one backend's relative noise is about the same from one case to the next, and three
    processes alone give a variance with two degrees of freedom (a 95% interval 4.3 standard
    errors wide); pooled over a sweep's cases it is known far better. (nan, 0) without any.

    Robustly: the median of the cases' variances, scaled to the mean a variance with that
    many degrees of freedom has (the median of chi-square with k dof is about
    k(1 - 2/(9k))^3): one case that a disturbance hit does not set the noise of every other
    case of its backend (that case keeps its own, larger variance: callers take the larger)."""
    usable = [s for s in spreads if s.n > 1]
    dof = sum(s.dof for s in usable)
    if dof == 0:
        return math.nan, 0
    k = statistics.median(s.dof for s in usable)
    median = statistics.median(s.var for s in usable)
    return median / (1 - 2 / (9 * k)) ** 3, dof


@dataclass(frozen=True)
class RatioInterval:
    """A ratio of two times (``ratio`` = a / b) and its confidence interval [``low``,
    ``high``] at ``level``; ``dof`` are the Welch-Satterthwaite degrees of freedom."""

    ratio: float
    low: float
    high: float
    level: float
    dof: float

    @property
    def half_width(self) -> float:
        """Half the interval's width on the log scale, as a relative change (0.05 = ±5%)."""
        return math.expm1(0.5 * (math.log(self.high) - math.log(self.low)))


def ratio_interval(
    a: LogSpread,
    b: LogSpread,
    level: float = 0.95,
    var_a: tuple[float, int] | None = None,
    var_b: tuple[float, int] | None = None,
    extra_var: float = 0.0,
) -> RatioInterval | None:
    """The ratio of geometric means a / b with a Welch interval on the log scale.

    Each side's variance is its own, or the (variance, dof) given in ``var_a`` / ``var_b``
    when that is larger (a pooled one: ``pooled_variance``): the larger is the honest one, a
    case's own from three processes is often small by luck. ``extra_var`` is noise that both
    sides' processes share and no spread within a run shows (the machine running faster or
    slower from one run to the next), added to the ratio's variance with infinite dof. None
    when a side has a single process and nothing given to stand for its variance."""
    parts = difference_variance(a, b, var_a, var_b)
    if parts is None:
        return None
    return interval_of(a.mean - b.mean, [*parts, (max(extra_var, 0.0), math.inf)], level)


def difference_variance(
    a: LogSpread,
    b: LogSpread,
    var_a: tuple[float, int] | None = None,
    var_b: tuple[float, int] | None = None,
) -> list[tuple[float, float]] | None:
    """The variance of ``a.mean - b.mean`` as (variance, dof) parts, one per side: each side's
    own spread, or the one given (a pooled one) when that is larger; None when a side has a
    single process and nothing given to stand for its spread."""
    parts: list[tuple[float, float]] = []  # (variance of the side's mean, its dof)
    for side, given in ((a, var_a), (b, var_b)):
        own = (side.var, side.dof) if side.n > 1 else (math.nan, 0)
        var, dof = own
        if given is not None and given[1] > 0 and not given[0] <= var:
            var, dof = given
        if not math.isfinite(var) or dof <= 0:
            return None
        parts.append((var / side.n, float(dof)))
    return parts


def interval_of(d: float, parts: Sequence[tuple[float, float]], level: float) -> RatioInterval:
    """The interval of ``exp(d)`` for a log difference ``d`` whose variance is the sum of
    ``parts`` ((variance, dof) each; Welch-Satterthwaite degrees of freedom)."""
    total = sum(v for v, _ in parts)
    denominator = sum(v * v / dof for v, dof in parts if v > 0 and math.isfinite(dof))
    dof_total = total * total / denominator if denominator > 0 else math.inf
    if total <= 0:
        return RatioInterval(math.exp(d), math.exp(d), math.exp(d), level, dof_total)
    half = t_quantile(0.5 + level / 2.0, dof_total) * math.sqrt(total)
    return RatioInterval(math.exp(d), math.exp(d - half), math.exp(d + half), level, dof_total)
