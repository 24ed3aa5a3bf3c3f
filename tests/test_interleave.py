"""The interleaved runner (several processes per case, turns in a random order), the statistics
of the spread between processes, relative speeds with intervals, and the stability warnings."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import registry
from rnnbench.bench import BenchConfig, run_bench
from rnnbench.bench import runner as runner_mod
from rnnbench.bench.machine import other_load
from rnnbench.bench.progress import PlainReporter
from rnnbench.bench.relative import format_relative, relative_speeds
from rnnbench.bench.stability import result_warnings, run_warnings
from rnnbench.bench.stats import (
    log_spread,
    pooled_variance,
    ratio_interval,
    split_by_process,
    t_quantile,
)

TINY = {"batches": [2], "seq_lens": [5], "input_sizes": [3], "hidden_sizes": [4]}


# --- statistics ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "dof", "expected"),
    [(0.975, 1, 12.7062), (0.975, 2, 4.30265), (0.975, 10, 2.22814), (0.95, 4, 2.13185),
     (0.995, 30, 2.75000), (0.975, math.inf, 1.95996), (0.025, 5, -2.57058)],
)  # fmt: skip
def test_t_quantile_matches_the_tables(p: float, dof: float, expected: float) -> None:
    assert t_quantile(p, dof) == pytest.approx(expected, abs=2e-5)


def test_ratio_interval_covers_at_its_level() -> None:
    """Simulated A/A pairs of 3 processes each (lognormal, 3% spread): the 95% interval of
    the ratio holds 1 in about 95% of them, and a 10% change moves it clear of 1 in most
    pairs: from their own spread (two degrees of freedom a side), and more often with the
    spread pooled over a sweep's cases standing in for a side's own when that is smaller
    (here 30 cases of 3 processes: 60 dof). The larger of the two is kept, so a case that is
    noisier than its backend's other cases keeps its own width."""
    rng = np.random.default_rng(0)
    pooled = (0.03**2, 60)
    hits, caught, caught_pooled = 0, 0, 0
    trials = 2000
    for _ in range(trials):
        a = log_spread(np.exp(rng.normal(0, 0.03, 3)).tolist())
        b = log_spread(np.exp(rng.normal(0, 0.03, 3)).tolist())
        c = log_spread(np.exp(rng.normal(math.log(1.10), 0.03, 3)).tolist())
        assert a and b and c
        ci = ratio_interval(a, b)
        assert ci is not None
        hits += ci.low <= 1 <= ci.high
        slow = ratio_interval(c, b)
        assert slow is not None
        caught += slow.low > 1
        slow = ratio_interval(c, b, var_a=pooled, var_b=pooled)
        assert slow is not None
        caught_pooled += slow.low > 1
    assert 0.93 < hits / trials < 0.97
    assert caught / trials > 0.65
    assert caught_pooled / trials > caught / trials + 0.03


def test_pooled_variance_and_floors() -> None:
    lucky = log_spread([1.0, 1.0001, 0.9999])  # three processes that agree by luck
    noisy = log_spread([1.0, 1.1, 0.9])
    assert lucky and noisy
    var, dof = pooled_variance([lucky, noisy])
    # the median of the cases' variances, scaled to a mean (chi-square median with 2 dof)
    assert dof == 4 and var == pytest.approx((lucky.var + noisy.var) / 2 / (1 - 1 / 9) ** 3)
    one_bad = pooled_variance([lucky, lucky, lucky, noisy])  # one disturbed case of four
    assert one_bad[0] == pytest.approx(lucky.var / (1 - 1 / 9) ** 3)
    own = ratio_interval(lucky, lucky)
    floored = ratio_interval(lucky, lucky, var_a=(var, dof), var_b=(var, dof))
    assert own and floored and floored.half_width > 10 * own.half_width
    # a side with one process and nothing to stand for its spread has no interval
    one = log_spread([1.0])
    assert one and ratio_interval(one, lucky) is None
    assert ratio_interval(one, lucky, var_a=(var, dof)) is not None
    # noise shared by both sides (the machine between runs) widens the interval
    wider = ratio_interval(noisy, noisy, extra_var=0.01)
    plain = ratio_interval(noisy, noisy)
    assert wider and plain and wider.half_width > plain.half_width


def test_split_by_process() -> None:
    assert split_by_process([1, 2, 3, 4, 5], [2, 3]) == [[1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="add up to 4"):
        split_by_process([1, 2, 3], [2, 2])


# --- the interleaved runner ----------------------------------------------------------------
def test_processes_take_interleaved_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case runs in its own processes (distinct pids), every process of every backend
    takes turns before any of them is done, and the record keeps each process's samples,
    median and spread, and names its run, whose record the file holds."""
    turns: list[tuple[str, int, int]] = []
    chunk = runner_mod._Run._chunk

    def logged(self: Any, run: Any, slot: Any, quota: Any) -> None:
        turns.append((run.case.backend, slot.index, slot.worker.proc.pid))
        chunk(self, run, slot, quota)

    monkeypatch.setattr(runner_mod._Run, "_chunk", logged)
    fake = rb.BackendInfo("bench-fake", "tests.bench_fakes:FakeCell")
    monkeypatch.setitem(registry._load_registry(), fake.name, fake)
    out = tmp_path / "bench.json"
    config = BenchConfig(
        backends=["numpy", fake.name],
        variants=["bench-fake:ok"],
        out=str(out),
        processes=3,
        min_time=0.06,
        min_rounds=6,
        warmup_time=0.0,
        peak=False,
        load_window=0.05,
        **TINY,
    )
    summary = run_bench(config, PlainReporter(io.StringIO()))
    assert summary.exit_code() == 0
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["numpy", fake.name]
    # six processes, one per (backend, index)
    assert len({p for _, _, p in turns}) == len({(b, i) for b, i, _ in turns}) == 6
    # interleaved: the first turn of every process comes before the last turn of any
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for n, (_, _, p) in enumerate(turns):
        first.setdefault(p, n)
        last[p] = n
    assert max(first.values()) < min(last.values())
    run_ids = {r["run_id"] for r in data["results"]}
    assert len(run_ids) == 1 and [r["run_id"] for r in data["runs"]] == list(run_ids)
    run = data["runs"][0]
    assert run["settings"]["processes"] == 3 and run["settings"]["interleaved"] is True
    assert run["finished"] and run["load_start"]["window_s"] == config.load_window
    assert isinstance(run["load_end"]["busy_cores"], float)  # /proc is readable here
    for rec in data["results"]:
        assert rec["processes"] == 3 and len(rec["process_medians"]) == 3
        assert sum(rec["process_rounds"]) == rec["rounds"] == len(rec["samples"])
        parts = split_by_process(rec["samples"], rec["process_rounds"])
        assert [float(np.median(p)) for p in parts] == rec["process_medians"]
        assert all(len(p) >= 2 for p in parts)  # min_rounds 6 over 3 processes
        assert rec["process_sd"] is not None and rec["process_sd"] >= 0
        assert len(rec["process_compile_s"]) == 3
        assert rec["compile_s"] == pytest.approx(float(np.median(rec["process_compile_s"])))


# --- relative speeds -----------------------------------------------------------------------
def _rec(backend: str, medians: list[float], batch: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "backend": backend, "variant": "default", "device": "cpu", "dtype": "float32",
        "cell": "rnn", "reset_after": None, "nonlinearity": "tanh", "batch": batch,
        "seq_len": 100, "input_size": 32, "hidden_size": 256, "layers": 1,
        "bidirectional": False, "lengths": "full", "mode": "inference", "threads": None,
        "status": "ok", "median_s": float(np.median(medians)), "process_medians": medians,
        **extra,
    }  # fmt: skip


def test_relative_speeds_against_the_baseline() -> None:
    records = [
        _rec("numpy", [2.0, 2.02, 1.98]),
        _rec("torch", [1.0, 1.01, 0.99]),
        _rec("numpy", [4.0, 4.04, 3.96], batch=32),
        _rec("torch", [1.0, 1.02, 0.98], batch=32),
        _rec("jax", [8.0, 8.1, 7.9], batch=32),
    ]

    def case(r: dict[str, Any]) -> str:
        return f"B={r['batch']}"

    rows = relative_speeds(records, describe=case)  # default: numpy on the CPU
    got = {(r.case, r.backend): r for r in rows}
    assert set(got) == {("B=1", "numpy"), ("B=1", "torch"), ("B=32", "numpy"),
                        ("B=32", "torch"), ("B=32", "jax")}  # fmt: skip
    assert {r.baseline for r in rows} == {"numpy"}
    torch1 = got["B=1", "torch"]
    assert torch1.speedup == pytest.approx(2.0, rel=1e-3)
    assert torch1.low is not None and torch1.high is not None
    assert torch1.low < 2.0 < torch1.high and torch1.processes == 3
    assert got["B=32", "jax"].speedup == pytest.approx(0.5, rel=1e-2)
    assert got["B=1", "numpy"].speedup == 1.0 and got["B=1", "numpy"].low is None
    fastest = relative_speeds(records, "fastest", describe=case)
    assert {r.baseline for r in fastest} == {"torch"}
    text = format_relative(rows)
    assert "speed vs numpy (95% interval)" in text and "2.00x [" in text
    # a baseline missing from a case leaves that case out, not the others
    assert {r.case for r in relative_speeds(records, "jax", describe=case)} == {"B=32"}


# --- stability warnings --------------------------------------------------------------------
def test_result_warnings_name_the_spread() -> None:
    calm = _rec("torch", [1.0, 1.01, 0.99], process_sd=0.01, iqr_s=0.01)
    assert result_warnings(calm) == []
    spread = _rec("torch", [1.0, 1.3, 0.9], process_sd=0.18, iqr_s=0.01)
    (text,) = result_warnings(spread)
    assert "3 processes differ by 18.0%" in text and "--processes" in text
    wide = _rec("torch", [1.0], process_sd=None, iqr_s=0.5)
    assert "IQR 50.0% of the median" in result_warnings(wide)[0]
    assert result_warnings({**spread, "status": "failed"}) == []


def test_run_warnings_load_drift_governor() -> None:
    calm = {"cpu_count": 4, "load_start": {"busy_cores": 0.1, "load_average": [3.0, 2, 1]},
            "load_end": {"busy_cores": 0.2, "load_average": [2.0, 2, 1]},
            "calibration": {"start_gflops": 100.0, "end_gflops": 101.0, "drift": 0.01},
            "governor": {"performance": 4}}  # fmt: skip
    assert run_warnings(calm) == []
    # a high load average is the benchmark's own work: the cores others used are what count
    busy = {**calm, "load_start": {"busy_cores": 1.5, "load_average": [0.5, 0.5, 0.5]}}
    (text,) = run_warnings(busy)
    assert "busy with other work at the start" in text and "1.50 of its 4 cores" in text
    drift = {**calm, "calibration": {"start_gflops": 100.0, "end_gflops": 90.0, "drift": -0.1}}
    (text,) = run_warnings(drift)
    assert "10.0% slower at the end" in text and "100.0 -> 90.0" in text
    (gov,) = run_warnings({**calm, "governor": {"powersave": 4}})
    assert "governor is powersave" in gov and "performance" in gov


def test_other_load_leaves_out_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy ticks of the whole machine minus this process's own, per core: this process
    spinning for the whole window is not 'other work'; another process doing so is."""
    from rnnbench.bench import machine

    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    # 400 ticks of both CPUs together pass (200 each); 200 of them busy
    cpu = iter([(100, 1000), (300, 1400), (100, 1000), (300, 1400)])
    monkeypatch.setattr(machine, "_cpu_jiffies", lambda: next(cpu))
    own = iter([10, 210, 10, 60])  # first all 200 busy ticks are ours, then 50 of them
    monkeypatch.setattr(machine, "_own_jiffies", lambda: next(own))
    assert other_load(0.001)["busy_cores"] == 0.0
    assert other_load(0.001)["busy_cores"] == pytest.approx((200 - 50) / 400 * 2)
