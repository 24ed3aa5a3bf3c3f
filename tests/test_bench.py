"""The benchmark harness: statistics, FLOPs, the results file, resume, and that a worker that
crashes, hangs or runs out of memory costs only its own case. Speed is never asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import registry
from rnnbench.bench import SCHEMA, BenchCase, BenchConfig, run_bench, summarize
from rnnbench.bench.machine import cuda_unavailable_reason
from rnnbench.bench.progress import PlainReporter
from rnnbench.bench.results import RESULT_FIELDS
from rnnbench.bench.runner import select_variants
from rnnbench.cli import main

TINY = {"batches": [2], "seq_lens": [5], "input_sizes": [3], "hidden_sizes": [4]}
FAST = {
    "min_time": 0.05,
    "min_rounds": 3,
    "warmup_time": 0.0,
    "peak_sizes": [64],
    "peak_min_time": 0.01,
}


def quiet_run(config: BenchConfig) -> Any:
    import io

    return run_bench(config, PlainReporter(io.StringIO()))


def test_summarize_known_samples() -> None:
    stats = summarize([4.0, 1.0, 100.0, 3.0, 2.0])
    assert stats["median_s"] == 3.0
    assert (stats["q1_s"], stats["q3_s"], stats["iqr_s"]) == (2.0, 4.0, 2.0)
    assert stats["min_s"] == 1.0 and stats["max_s"] == 100.0 and stats["rounds"] == 5
    assert summarize([1.0, 2.0])["median_s"] == 1.5
    assert summarize([])["median_s"] is None


def test_flops_per_layer_and_direction() -> None:
    case = BenchCase("numpy", "hoisted", "cpu", "float32", 32, 100, 128, 256)
    assert case.flops == 2 * 32 * 100 * (128 + 256) * 256
    deep = BenchCase("numpy", "hoisted", "cpu", "float32", 2, 3, 5, 7, layers=2, bidirectional=True)
    per_step = 2 * (5 + 7) * 7 * 2 + 2 * (2 * 7 + 7) * 7 * 2
    assert deep.flops == 2 * 3 * per_step


def test_select_variants() -> None:
    avail = {"jax": ["scan", "scan-unroll4"], "torch": ["eager"]}
    assert select_variants(avail, None) == {"jax": ["scan"], "torch": ["eager"]}
    assert select_variants(avail, ["all"]) == avail
    assert select_variants(avail, ["scan-unroll4"]) == {"jax": ["scan-unroll4"], "torch": ["eager"]}
    with pytest.raises(rb.SpecError, match="no selected backend has a variant 'jax:nope'"):
        select_variants(avail, ["jax:nope"])


def test_results_file_schema_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    backends = ["numpy"] + (["torch"] if "torch" in rb.available_backends() else [])
    summary = quiet_run(BenchConfig(backends=backends, out=str(out), **TINY, **FAST))
    assert summary.exit_code() == 0
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA
    machine = data["machine"]
    for key in (
        "cpu",
        "gpus",
        "blas",
        "versions",
        "rnnbench",
        "python",
        "platform",
        "hostname",
        "timestamp",
        "threads",
        "tf32",
        "machine_id",
    ):
        assert key in machine, key
    assert machine["versions"]["numpy"] == np.__version__
    assert "numpy" in machine["threads"]
    peak = data["peak"]["cpu/float32"]
    assert peak["library"] == "numpy" and peak["size"] == 64 and peak["gflops"] > 0
    assert len(data["results"]) == len(backends)
    for rec in data["results"]:
        assert set(RESULT_FIELDS) <= set(rec), set(RESULT_FIELDS) - set(rec)
        assert rec["status"] == "ok" and rec["error"] is None, rec["error"]
        assert rec["path"] and rec["variant"] and rec["compile_s"] > 0
        assert rec["rounds"] == len(rec["samples"]) >= 3
        assert rec["median_s"] == pytest.approx(float(np.median(rec["samples"])))
        assert rec["min_s"] == min(rec["samples"])
        assert rec["gflops"] == pytest.approx(rec["flops"] / rec["median_s"] / 1e9)
        assert rec["efficiency"] == pytest.approx(rec["gflops"] / peak["gflops"])
        assert rec["time_per_step_s"] == pytest.approx(rec["median_s"] / 5)
        assert (rec["batch"], rec["seq_len"], rec["input_size"], rec["hidden_size"]) == (2, 5, 3, 4)
    before = {r["backend"]: r["samples"] for r in data["results"]}

    # The same --out again with one more size: only the new case runs, nothing is lost.
    again = quiet_run(
        BenchConfig(backends=["numpy"], out=str(out), **{**TINY, "batches": [2, 3]}, **FAST)
    )
    assert again.already_done == 1
    assert [(r["backend"], r["batch"]) for r in again.records] == [("numpy", 3)]
    data = json.loads(out.read_text())
    assert len(data["results"]) == len(backends) + 1
    assert {r["backend"]: r["samples"] for r in data["results"] if r["batch"] == 2} == before


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    info = rb.BackendInfo("bench-fake", "tests.bench_fakes:FakeCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    return info.name


def test_crash_hang_and_oom_lose_nothing_else(tmp_path: Path, fake_backend: str) -> None:
    out = tmp_path / "bench.json"
    config = BenchConfig(
        backends=[fake_backend, "numpy"],
        out=str(out),
        timeout=4.0,
        peak=False,
        variants=["bench-fake:crash", "bench-fake:hang", "bench-fake:oom", "bench-fake:ok"],
        **TINY,
        **{**FAST, "min_time": 0.2},
    )
    summary = quiet_run(config)
    assert summary.exit_code() == 1
    data = json.loads(out.read_text())
    status = {(r["backend"], r["variant"]): r for r in data["results"]}
    assert list(status) == [(fake_backend, v) for v in ("crash", "hang", "oom", "ok")] + [
        ("numpy", "hoisted")
    ]
    crash = status[fake_backend, "crash"]
    assert crash["status"] == "failed" and "died (exit code -9)" in crash["error"]
    hang = status[fake_backend, "hang"]
    assert hang["status"] == "timeout" and "--timeout 4.0" in hang["error"]
    oom = status[fake_backend, "oom"]
    assert oom["status"] == "failed" and "MemoryError" in oom["error"]
    # The cases after the failures ran in fresh workers and are whole.
    for key in ((fake_backend, "ok"), ("numpy", "hoisted")):
        assert status[key]["status"] == "ok" and status[key]["rounds"] >= 3

    # Resume measures the failed cases again and skips the finished ones.
    again = quiet_run(
        BenchConfig(
            **{
                **config.__dict__,
                "variants": ["bench-fake:ok"],
                "backends": [fake_backend, "numpy"],
            }
        )
    )
    assert again.already_done == 2 and again.records == []


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="this machine has CUDA")
def test_cuda_request_without_cuda_is_a_clean_skip(tmp_path: Path) -> None:
    out = tmp_path / "cuda.json"
    code = main(
        [
            "bench",
            "--backends",
            "numpy,torch",
            "--device",
            "cuda",
            "--batch",
            "2",
            "--seq-len",
            "3",
            "--input-size",
            "2",
            "--hidden-size",
            "2",
            "--plain",
            "--out",
            str(out),
        ]
    )
    assert code == 3
    results = json.loads(out.read_text())["results"]
    assert [r["status"] for r in results] == ["skipped", "skipped"]
    assert "no device 'cuda'" in results[0]["error"]
    torch_reason = results[1]["error"]
    assert "CUDA is unavailable" in torch_reason or "not available" in torch_reason
