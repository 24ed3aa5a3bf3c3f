"""The Mann-Whitney U test in NumPy (rnnbench does not depend on SciPy).

Two-sided, the way ``scipy.stats.mannwhitneyu(x, y, method="auto")`` computes it: the exact null
distribution of U when one sample has at most 8 values and there are no ties, otherwise the
normal approximation with tie correction and continuity correction. Benchmark samples are
rarely normal (a floor plus a long right tail of interruptions), which is why a rank test is
used rather than a t-test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_MAX_N = 8  # scipy's rule: exact only when some sample is this small and nothing ties


def rankdata(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of ``values``, and the size of every group of tied values."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # start of each run of equal values in the sorted array
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    # the average of ranks start+1 .. start+count
    avg = starts + (counts + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, counts)
    return ranks, counts


def _u_counts(n1: int, n2: int) -> np.ndarray:
    """Number of orderings giving each U = 0 .. n1*n2 (the exact null distribution, unnormed).

    Recurrence on the largest value: it belongs to the first sample (adding n2 to U) or to the
    second (adding nothing): f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u).
    """
    # table[m][n] is the count array for sample sizes (m, n); built up over n for each m
    prev = [np.ones(1) for _ in range(n2 + 1)]  # m = 0: only U = 0
    for m in range(1, n1 + 1):
        cur = [np.ones(1)]  # n = 0: only U = 0
        for n in range(1, n2 + 1):
            out = np.zeros(m * n + 1)
            a = prev[n]  # (m-1, n): shift by n
            out[n : n + len(a)] += a
            b = cur[n - 1]  # (m, n-1)
            out[: len(b)] += b
            cur.append(out)
        prev = cur
    return prev[n2]


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of ``x``, p-value).

    ``p`` is the probability, if both samples came from one distribution, of a difference in
    ranks at least this large. Raises ``ValueError`` on an empty sample.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one value in each sample")
    ranks, ties = rankdata(np.concatenate([a, b]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u2 = n1 * n2 - u1
    u = max(u1, u2)
    has_ties = bool((ties > 1).any())
    if min(n1, n2) <= EXACT_MAX_N and not has_ties:
        counts = _u_counts(n1, n2)
        # P(U >= u) under the null, U integral here since nothing ties
        p = float(counts[round(u) :].sum() / counts.sum())
    else:
        n = n1 + n2
        tie_term = float((ties.astype(np.float64) ** 3 - ties).sum())
        var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
        if var <= 0:  # every value equal: no evidence of any difference
            return u1, 1.0
        z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
        p = 0.5 * math.erfc(z / math.sqrt(2.0))  # the normal survival function at z
    return u1, min(1.0, 2.0 * p)
