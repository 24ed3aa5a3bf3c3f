"""The limit model (rnnbench.bench.limits): the products and bytes of each case, the limit from
given measurements, one real measurement, and the report's limit table."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from rnnbench.bench.cases import BenchCase
from rnnbench.bench.limits import (
    MODEL,
    LimitMeasurementError,
    copy_array_bytes,
    fraction,
    gemm_shapes,
    gemm_terms,
    limit_for,
    measure_limits,
    min_bytes,
    shape_key,
)
from rnnbench.errors import SpecError
from rnnbench.report.build import _limit_blocks, _limit_table
from rnnbench.report.document import to_markdown
from rnnbench.report.model import MachineGroup


def _case(**kw: Any) -> dict[str, Any]:
    case = {
        "backend": "numpy",
        "variant": "default",
        "cell": "rnn",
        "batch": 2,
        "seq_len": 5,
        "input_size": 3,
        "hidden_size": 4,
        "layers": 1,
        "bidirectional": False,
        "mode": "inference",
        "dtype": "float32",
        "device": "cpu",
    }
    case.update(kw)
    return case


# --- the products ---------------------------------------------------------------------------

# Written out by hand for B=2, T=5, I=3, H=4 (T·B = 10).
HAND: list[tuple[dict[str, Any], list[tuple[int, tuple[int, int, int]]]]] = [
    (_case(), [(1, (10, 3, 4)), (5, (2, 4, 4))]),
    (
        _case(mode="training"),
        [
            (1, (10, 3, 4)),
            (5, (2, 4, 4)),
            (5, (2, 4, 4)),  # dh_{t-1} = dgates_t · W_hhᵀ: (B × H)·(H × H) for G = 1
            (1, (3, 10, 4)),
            (1, (4, 10, 4)),
            (1, (10, 4, 3)),
        ],
    ),
    (_case(cell="gru"), [(1, (10, 3, 12)), (5, (2, 4, 12))]),
    # reset-before: the candidate's product waits for r, two dependent products per step
    (_case(cell="gru", reset_after=False), [(1, (10, 3, 12)), (5, (2, 4, 8)), (5, (2, 4, 4))]),
    (_case(cell="gru-reset-before"), [(1, (10, 3, 12)), (5, (2, 4, 8)), (5, (2, 4, 4))]),
    (
        _case(cell="lstm", layers=2, bidirectional=True),
        # layer 1 reads both directions of layer 0: I_1 = 2·H = 8; every term twice
        [(2, (10, 3, 16)), (10, (2, 4, 16)), (2, (10, 8, 16)), (10, (2, 4, 16))],
    ),
    (
        _case(cell="lstm", layers=2, bidirectional=True, mode="training"),
        [
            (2, (10, 3, 16)),
            (10, (2, 4, 16)),
            (10, (2, 16, 4)),
            (2, (3, 10, 16)),
            (2, (4, 10, 16)),
            (2, (10, 16, 3)),
            (2, (10, 8, 16)),
            (10, (2, 4, 16)),
            (10, (2, 16, 4)),
            (2, (8, 10, 16)),
            (2, (4, 10, 16)),
            (2, (10, 16, 8)),
        ],
    ),
]


@pytest.mark.parametrize("case, expected", HAND)
def test_terms_by_hand(case: dict[str, Any], expected: list[Any]) -> None:
    assert gemm_terms(case) == expected
    assert gemm_shapes(case) == list(dict.fromkeys(s for _, s in expected))


CELLS = [("rnn", None), ("gru", True), ("gru", False), ("lstm", None)]


@pytest.mark.parametrize(
    "cell, mode, layers, bidirectional",
    [
        (c, m, n, b)
        for c, m, n, b in itertools.product(CELLS, ("inference", "training"), (1, 3), (0, 1))
    ],
)
def test_terms_do_the_flops_the_benchmark_counts(
    cell: tuple[str, bool | None], mode: str, layers: int, bidirectional: int
) -> None:
    """Every cell, mode, depth and direction: the products add up to BenchCase.flops (the
    roofline's count, 3× the forward's for training), and shapes are distinct."""
    bench = BenchCase(
        "numpy", "default", "cpu", "float32", 3, 7, 5, 6, layers, bool(bidirectional),
        cell=cell[0], reset_after=cell[1], mode=mode,
    )  # fmt: skip
    record = bench.to_dict()
    terms = gemm_terms(record)
    assert sum(count * 2 * m * k * n for count, (m, k, n) in terms) == bench.flops
    shapes = gemm_shapes(record)
    assert len(shapes) == len(set(shapes)) and set(shapes) == {s for _, s in terms}
    # the sequential products are T per layer and direction (twice that for training)
    steps = sum(count for count, (m, _, _) in terms if m == 3)
    per_step = 2 if cell == ("gru", False) else 1
    per_mode = 2 if mode == "training" else 1
    assert steps == 7 * layers * (1 + bidirectional) * per_step * per_mode


def test_bad_cases_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown cell"):
        gemm_shapes(_case(cell="transformer"))
    with pytest.raises(SpecError, match="below 1"):
        gemm_shapes(_case(batch=0))
    with pytest.raises(SpecError, match="hidden_size"):
        gemm_shapes({k: v for k, v in _case().items() if k != "hidden_size"})


# --- the bytes ------------------------------------------------------------------------------


def test_bytes_by_hand() -> None:
    # rnn inference: x 2·5·3 = 30, y 2·5·4 = 40, h_n 2·4 = 8, W 4·(3+4) + 4 = 32: 110 × 4 bytes
    assert min_bytes(_case()) == 110 * 4
    # lstm, bidirectional, training, float64: S = 2, D = 2, W = 2·(16·(3+4) + 16) = 256;
    # x 30, dy 2·5·8 = 80, dh_n and dh0 2·2·2·4 = 32 each, dx 30, dW 256, stored h and c
    # 2·2·2·5·4 = 160 written and read
    train = _case(cell="lstm", bidirectional=True, mode="training", dtype="float64")
    assert min_bytes(train) == (30 + 256 + 80 + 32 + 30 + 32 + 256 + 2 * 160) * 8


# --- the limit from measurements ----------------------------------------------------------


def _measured(
    case: dict[str, Any], per_gemm: Any, bandwidth: float = 1e10, dispatch: float = 1e-6
) -> dict[str, Any]:
    return {
        "gemm": {shape_key(s): {"median_s": per_gemm(s), "rounds": 3} for s in gemm_shapes(case)},
        "bandwidth": {"bytes_per_s": bandwidth},
        "dispatch": {"median_s": dispatch},
    }


def _linear(shape: tuple[int, int, int]) -> float:
    m, k, n = shape
    return 1e-6 + 2 * m * k * n / 1e10


def test_compute_binds_and_sums_every_product() -> None:
    case = _case()
    got = limit_for(case, _measured(case, _linear))
    expected = _linear((10, 3, 4)) + 5 * _linear((2, 4, 4))
    assert got["bound"] == "compute" and got["model"] == MODEL
    assert got["compute_s"] == pytest.approx(expected) and got["limit_s"] == got["compute_s"]
    assert got["memory_s"] == pytest.approx(440 / 1e10) and got["bytes"] == 440


def test_memory_and_dispatch_bind() -> None:
    case = _case()
    slow_memory = limit_for(case, _measured(case, _linear, bandwidth=1e3))
    assert slow_memory["bound"] == "memory" and slow_memory["limit_s"] == pytest.approx(0.44)
    slow_call = limit_for(case, _measured(case, _linear, dispatch=1.0))
    assert slow_call["bound"] == "dispatch" and slow_call["limit_s"] == 1.0


def test_training_adds_the_backward_terms() -> None:
    infer, train = _case(cell="lstm"), _case(cell="lstm", mode="training")
    both = {**_measured(train, _linear)}
    a, b = limit_for(infer, both), limit_for(train, both)
    backward = 5 * _linear((2, 16, 4)) + sum(
        _linear(s) for s in [(3, 10, 16), (4, 10, 16), (10, 16, 3)]
    )
    assert b["compute_s"] - a["compute_s"] == pytest.approx(backward)
    assert b["bytes"] > a["bytes"]


def test_limit_grows_with_seq_len() -> None:
    limits = []
    for t in range(1, 60, 7):
        case = _case(cell="gru", seq_len=t, mode="training")
        limits.append(limit_for(case, _measured(case, _linear, bandwidth=1e8))["limit_s"])
    assert all(b > a for a, b in itertools.pairwise(limits))


def test_missing_measurement_is_named() -> None:
    case = _case()
    measured = _measured(case, _linear)
    del measured["gemm"]["2,4,4"]
    with pytest.raises(LimitMeasurementError, match=r"gemm\.2,4,4\.median_s"):
        limit_for(case, measured)
    with pytest.raises(LimitMeasurementError, match="bandwidth"):
        limit_for(case, {**_measured(case, _linear), "bandwidth": {"bytes_per_s": 0}})


def test_fraction() -> None:
    assert fraction(1.0, 4.0) == 0.25
    assert fraction(3.0, 2.0) == 1.5  # beating the model is shown, not clipped
    assert math.isnan(fraction(1.0, 0.0)) and math.isnan(fraction(None, 1.0))
    assert math.isnan(fraction(float("nan"), 1.0))


def test_copy_arrays_are_past_the_cache_and_bounded() -> None:
    mib = 1 << 20
    assert copy_array_bytes(32 * mib, None) == 64 * mib  # 4 × LLC streamed, in two arrays
    assert copy_array_bytes(1 * mib, None) == 32 * mib  # at least 64 MiB streamed
    assert copy_array_bytes(1024 * mib, None) == 128 * mib  # at most 256 MiB
    assert copy_array_bytes(None, None) == 64 * mib
    assert copy_array_bytes(32 * mib, 256 * mib) == 16 * mib  # 1/8 of the free memory


# --- one real measurement -----------------------------------------------------------------


def test_measure_limits_in_process() -> None:
    case = _case(batch=1, seq_len=3, input_size=4, hidden_size=4)
    assert gemm_shapes(case) == [(3, 4, 4), (1, 4, 4)]
    shapes = [[2, 3, 4], *(list(s) for s in gemm_shapes(case)), [2, 3, 4]]
    header, arrays = measure_limits(None, "cpu", "float32", shapes, 0.005)
    assert arrays == {} and header["library"] == "numpy" and header["device"] == "cpu"
    assert list(header["gemm"]) == ["2,3,4", "3,4,4", "1,4,4"]  # each shape once
    for row in [*header["gemm"].values(), header["dispatch"]]:
        assert 0 < row["median_s"] < 0.01 and row["rounds"] >= 3
    bandwidth = header["bandwidth"]
    assert 0.1e9 <= bandwidth["bytes_per_s"] <= 10000e9 and bandwidth["rounds"] >= 3
    assert bandwidth["bytes_per_s"] == max(bandwidth["bytes_per_s_by_threads"].values())
    assert bandwidth["array_bytes"] >= 8 << 20
    limit = limit_for(case, header)
    # three sequential products, each at least one dispatch of the cheapest call
    assert limit["compute_s"] > 3 * header["dispatch"]["median_s"] > 0
    assert limit["bound"] == "compute" and limit["limit_s"] == limit["compute_s"]
    with pytest.raises(SpecError, match="three positive sizes"):
        measure_limits(None, "cpu", "float32", [[2, 0, 4]])


# --- the report's table -------------------------------------------------------------------


def _result(backend: str, median: float, limit: float, bound: str, **kw: Any) -> dict[str, Any]:
    return {
        **_case(backend=backend, batch=1, seq_len=100, input_size=32, hidden_size=256),
        "status": "ok",
        "median_s": median,
        "limit_s": limit,
        "limit_fraction": fraction(limit, median),
        "limit_bound": bound,
        "limit": {"compute_s": limit, "memory_s": limit / 20, "dispatch_s": 1e-6},
        **kw,
    }


def test_limit_table_renders() -> None:
    results = [
        _result("torch", 2e-3, 1e-3, "compute"),
        _result("numpy", 4e-4, 1e-3, "compute", variant="fused"),
        {**_case(backend="jax"), "status": "timeout", "median_s": None},  # no limit: no row
    ]
    measured = {"bandwidth": {"bytes_per_s": 12.3e9}, "dispatch": {"median_s": 1.1e-6}}
    text = to_markdown([_limit_table(results, measured)], "figures")
    rows = [line for line in text.splitlines() if "numpy" in line or "torch" in line]
    # one row per result with a limit, ordered by median within the case
    assert len(rows) == 2 and "numpy" in rows[0] and "torch" in rows[1]
    assert "| 1 ms |" in rows[1] and "| 2 ms |" in rows[1] and "| 50% |" in rows[1]
    assert "| 250% |" in rows[0] and "compute" in rows[0] and "| 50 µs |" in rows[0]
    assert "12.3 GB/s" in text and "1.1 µs" in text
    group = MachineGroup("m", {}, results=results)
    assert _limit_blocks("rnn", group)[-1].rows == _limit_table(results).rows
    assert _limit_blocks("rnn", MachineGroup("m", {}, results=results[2:])) == []
