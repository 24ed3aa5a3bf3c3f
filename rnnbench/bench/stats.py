"""Summary statistics of raw timing samples (seconds). Medians and quartiles, not means: timing
noise is one-sided (a call is slowed, never sped up), so the median is the robust centre and the
interquartile range the robust spread; the minimum is kept as the best case."""

from __future__ import annotations

from collections.abc import Sequence

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
