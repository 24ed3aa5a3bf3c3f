"""The benchmark harness: statistics, FLOPs, the results file, resume, the cell and the lengths
(full or ragged) as sweep axes (part of every key, refusals skipped), that a worker that
crashes, hangs or runs out of memory costs only its own case, and ``rnnbench check --cell``.
Speed is never asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import registry
from rnnbench.bench import SCHEMA, BenchCase, BenchConfig, run_bench, runner, summarize
from rnnbench.bench.cases import KEY_FIELDS, expand_cases, key_of
from rnnbench.bench.machine import cuda_unavailable_reason
from rnnbench.bench.progress import PlainReporter
from rnnbench.bench.results import RESULT_FIELDS, ResultsFile
from rnnbench.bench.runner import select_variants
from rnnbench.cli import main
from rnnbench.padding import random_lengths

DATA = Path(__file__).parent / "data"
# every cell as `--cell` names it, and the (cell, reset_after) it means
CELLS = {
    "rnn": ("rnn", None),
    "lstm": ("lstm", None),
    "gru": ("gru", True),
    "gru-reset-before": ("gru", False),
}

TINY = {"batches": [2], "seq_lens": [5], "input_sizes": [3], "hidden_sizes": [4]}
# Two processes per case (the default is three): the cases still run interleaved, with a
# spread between processes, at two thirds of the worker starts.
FAST = {
    "min_time": 0.05,
    "min_rounds": 3,
    "warmup_time": 0.0,
    "peak_sizes": [64],
    "peak_min_time": 0.01,
    "limit_min_time": 0.005,
    "processes": 2,
    "load_window": 0.01,
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


@pytest.mark.parametrize(("cell", "gates"), [("rnn", 1), ("lstm", 4), ("gru", 3), ("gru-rb", 3)])
def test_flops_count_every_gate(cell: str, gates: int) -> None:
    kind, reset_after = CELLS.get(cell, ("gru", False))
    case = BenchCase("numpy", "hoisted", "cpu", "float32", 32, 100, 128, 256, cell=kind,
                     reset_after=reset_after)  # fmt: skip
    assert case.flops == 2 * 32 * 100 * (128 + 256) * gates * 256
    deep = BenchCase("numpy", "hoisted", "cpu", "float32", 2, 3, 5, 7, layers=2,
                     bidirectional=True, cell=kind, reset_after=reset_after)  # fmt: skip
    per_step = (2 * (5 + 7) * gates * 7 + 2 * (2 * 7 + 7) * gates * 7) * 2
    assert deep.flops == 2 * 3 * per_step


def test_cell_is_part_of_the_key() -> None:
    assert {"cell", "reset_after", "nonlinearity"} <= set(KEY_FIELDS)
    assert {"cell", "reset_after", "nonlinearity"} <= set(RESULT_FIELDS)
    args = ("numpy", "hoisted", "cpu", "float32", 2, 5, 3, 4)
    keys = {
        BenchCase(*args).key(),
        BenchCase(*args, nonlinearity="relu").key(),
        BenchCase(*args, cell="lstm").key(),
        BenchCase(*args, cell="gru").key(),
        BenchCase(*args, cell="gru", reset_after=False).key(),
    }
    assert len(keys) == 5
    # "gru" means reset-after: one key with or without saying so, in a case and in a record
    gru = BenchCase(*args, cell="gru")
    assert (
        gru.reset_after is True
        and gru.key() == BenchCase(*args, cell="gru", reset_after=True).key()
    )
    record = {k: v for k, v in gru.to_dict().items() if k != "reset_after"}
    assert key_of(record) == gru.key()
    # a record written before cells is a vanilla tanh RNN
    old = {k: v for k, v in BenchCase(*args).to_dict().items()
           if k not in ("cell", "reset_after", "nonlinearity")}  # fmt: skip
    assert key_of(old) == BenchCase(*args).key()
    with pytest.raises(rb.SpecError, match="nonlinearity='relu' is for the vanilla RNN"):
        BenchCase(*args, cell="lstm", nonlinearity="relu")


def test_expand_cases_over_cells() -> None:
    cases = expand_cases(
        [("numpy", "hoisted")],
        device="cpu",
        dtypes=["float32"],
        batches=[2],
        seq_lens=[5, 9],
        input_sizes=[3],
        hidden_sizes=[4],
        cells=list(CELLS.values()),
        nonlinearities=["tanh", "relu"],
    )
    # relu is the vanilla RNN's: rnn gets both, each gated cell its own activations once
    assert [(c.cell_name, c.nonlinearity, c.seq_len) for c in cases] == [
        ("rnn", "tanh", 5), ("rnn", "tanh", 9), ("rnn", "relu", 5), ("rnn", "relu", 9),
        ("lstm", "tanh", 5), ("lstm", "tanh", 9), ("gru", "tanh", 5), ("gru", "tanh", 9),
        ("gru-reset-before", "tanh", 5), ("gru-reset-before", "tanh", 9),
    ]  # fmt: skip
    assert len({c.key() for c in cases}) == len(cases)
    assert "lstm" in cases[4].label() and "relu" in cases[2].label()
    # an input size of None is each case's hidden size (DeepBench's I = H); no case twice
    square = expand_cases(
        [("numpy", "hoisted")],
        device="cpu",
        dtypes=["float32"],
        batches=[2],
        seq_lens=[5],
        input_sizes=[None, 8],
        hidden_sizes=[8, 16],
    )
    assert [(c.input_size, c.hidden_size) for c in square] == [(8, 8), (16, 16), (8, 16)]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[BenchConfig]:
    """The configs ``rnnbench bench`` hands to ``run_bench`` (which does not run): what the
    command line parsed."""
    import rnnbench.bench as bench_pkg

    configs: list[BenchConfig] = []

    def fake_run(config: BenchConfig, reporter: Any = None) -> Any:
        configs.append(config)
        return rb.bench.BenchSummary(None, [{"status": "ok"}])

    monkeypatch.setattr(bench_pkg, "run_bench", fake_run)
    return configs


def test_bench_cli_parses_cells_and_square_sizes(seen: list[BenchConfig]) -> None:
    argv = ["bench", "--backends", "numpy", "--cell", "lstm,gru-reset-before,gru",
            "--nonlinearity", "tanh,relu", "--input-size", "hidden,32", "--plain"]  # fmt: skip
    assert main(argv) == 0
    config = seen[0]
    assert list(config.cells) == [("lstm", None), ("gru", False), ("gru", True)]
    assert list(config.nonlinearities) == ["tanh", "relu"]
    assert list(config.input_sizes) == [None, 32]
    assert main(["bench", "--cell", "all", "--plain"]) == 0
    assert len(seen[1].cells) == 4


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
        assert rec["peak_id"] == peak["peak_id"] == f"cpu/float32@{machine['machine_id']}"
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


@pytest.fixture
def refusing_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    info = rb.BackendInfo("bench-refuser", "tests.bench_fakes:RefusingCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    return info.name


def test_sweep_over_cells_and_resume(tmp_path: Path, refusing_backend: str) -> None:
    """Every cell measured with its own FLOPs; a refused cell is skipped with the reason and the
    sweep goes on; resuming never takes one cell's result for another's."""
    out = tmp_path / "cells.json"
    config = BenchConfig(
        backends=["numpy", refusing_backend],
        out=str(out),
        cells=list(CELLS.values()),
        peak=False,
        **TINY,
        **FAST,
    )
    summary = quiet_run(config)
    assert summary.exit_code() == 0
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA == "rnnbench.bench/1.5"
    got = {(r["backend"], r["cell"], r["reset_after"]): r for r in data["results"]}
    assert len(got) == 8
    for (backend, cell, reset_after), rec in got.items():
        assert set(RESULT_FIELDS) <= set(rec), set(RESULT_FIELDS) - set(rec)
        spec = rb.RNNSpec(3, 4, cell=cell, reset_after=reset_after)
        assert rec["flops"] == spec.flops(2, 5) == 2 * 2 * 5 * (3 + 4) * spec.gates * 4
        if backend == refusing_backend and (cell, reset_after) == ("gru", False):
            assert rec["status"] == "skipped" and rec["median_s"] is None
            assert "only the reset-after GRU" in rec["error"]
            continue
        assert rec["status"] == "ok", rec["error"]
        assert rec["gflops"] == pytest.approx(rec["flops"] / rec["median_s"] / 1e9)
        assert rec["output_finite"] is True
    # the refusal did not cost the worker: the case after it (none here) or the next backend
    # ran; and the cells after the refused one in the same worker were measured
    assert [r["cell"] for r in data["results"] if r["backend"] == refusing_backend] == [
        "rnn", "lstm", "gru", "gru"
    ]  # fmt: skip

    # Resume with gru (reset-after) done and a new size: only the new gru case runs; the
    # skipped reset-before case is asked again (and skipped again).
    again = quiet_run(
        BenchConfig(
            **{
                **config.__dict__,
                "backends": [refusing_backend],
                "cells": [("gru", True), ("gru", False)],
                "seq_lens": [5, 6],
            }
        )
    )
    assert again.already_done == 1
    assert [(r["cell"], r["reset_after"], r["seq_len"], r["status"]) for r in again.records] == [
        ("gru", True, 6, "ok"), ("gru", False, 5, "skipped"), ("gru", False, 6, "skipped"),
    ]  # fmt: skip
    assert len(json.loads(out.read_text())["results"]) == 10


def test_old_schema_file_resumes_as_rnn(tmp_path: Path) -> None:
    """A bench/1.0 file (no cell, no lengths) resumes: its results are vanilla RNNs of full
    length, an LSTM or a ragged batch of the same sizes is a case of its own, and the file is
    written back as the current version with nothing lost."""
    old = json.loads((DATA / "bench_cpu_small.json").read_text())
    assert old["schema"] == "rnnbench.bench/1" and "cell" not in old["results"][0]
    out = tmp_path / "old.json"
    out.write_text(json.dumps(old))
    file = ResultsFile(out)
    case = dict(batches=[4], seq_lens=[10], input_sizes=[16], hidden_sizes=[16])
    rnn = BenchCase("numpy", "hoisted", "cpu", "float32", 4, 10, 16, 16)
    assert file.is_done(rnn)
    assert not file.is_done(
        BenchCase("numpy", "hoisted", "cpu", "float32", 4, 10, 16, 16, cell="lstm")
    )
    assert not file.is_done(
        BenchCase("numpy", "hoisted", "cpu", "float32", 4, 10, 16, 16, lengths="ragged")
    )
    upgraded = file.results[0]
    assert upgraded["lengths"] == "full"
    assert upgraded["lengths_mean"] == upgraded["lengths_max"] == upgraded["seq_len"]
    summary = quiet_run(
        BenchConfig(
            backends=["numpy"],
            out=str(out),
            cells=[("rnn", None), ("lstm", None)],
            peak=False,
            **case,
            **FAST,
        )
    )
    assert summary.already_done == 1
    assert [(r["cell"], r["status"]) for r in summary.records] == [("lstm", "ok")]
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA
    assert len(data["results"]) == len(old["results"]) + 1
    assert all(
        r["cell"] == "rnn" and r["nonlinearity"] == "tanh" and r["lengths"] == "full"
        for r in data["results"][:-1]
    )
    # a newer minor is not resumed: its key may hold fields this version does not know
    out.write_text(json.dumps({**old, "schema": "rnnbench.bench/1.9"}))
    with pytest.raises(rb.RNNBenchError, match=r"resumes rnnbench.bench/1.0 to 1.5"):
        ResultsFile(out)


def test_lengths_are_part_of_the_key() -> None:
    assert "lengths" in KEY_FIELDS
    assert {"lengths", "lengths_mean", "lengths_min", "lengths_max"} <= set(RESULT_FIELDS)
    args = ("numpy", "hoisted", "cpu", "float32", 8, 10, 3, 4)
    full, ragged = BenchCase(*args), BenchCase(*args, lengths="ragged")
    assert full.lengths == "full" and full.key() != ragged.key()
    assert "ragged" in ragged.label() and "ragged" not in full.label()
    # a record written before lengths is a full batch
    old = {k: v for k, v in full.to_dict().items() if k != "lengths"}
    assert key_of(old) == full.key() != key_of({**old, "lengths": "ragged"})
    # full passes no padding; ragged draws [T/2, T] by seed, the first row T long
    assert full.row_lengths(seed=0) is None
    lengths = ragged.row_lengths(seed=3)
    assert lengths is not None and lengths[0] == 10 and lengths.min() >= 5
    assert np.array_equal(lengths, ragged.row_lengths(seed=3))
    assert full.lengths_record(0) == {
        "lengths_mean": 10.0, "lengths_min": 10, "lengths_max": 10, "lengths_seed": None
    }  # fmt: skip
    stats = ragged.lengths_record(3)
    assert stats["lengths_mean"] == pytest.approx(lengths.mean()) and stats["lengths_seed"] == 3
    with pytest.raises(rb.SpecError, match="unknown lengths 'padded'"):
        BenchCase(*args, lengths="padded")
    # the sweep puts the full and the ragged case of one shape side by side
    cases = expand_cases(
        [("numpy", "hoisted")], device="cpu", dtypes=["float32"], batches=[2], seq_lens=[5, 9],
        input_sizes=[3], hidden_sizes=[4], lengths=["full", "ragged"],
    )  # fmt: skip
    assert [(c.seq_len, c.lengths) for c in cases] == [
        (5, "full"), (5, "ragged"), (9, "full"), (9, "ragged")
    ]  # fmt: skip


def test_bench_cli_lengths(seen: list[BenchConfig], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--backends", "numpy", "--plain"]) == 0
    assert list(seen[0].lengths) == ["full"]  # today's behaviour by default
    assert main(["bench", "--backends", "numpy", "--lengths", "full,Ragged", "--plain"]) == 0
    assert list(seen[1].lengths) == ["full", "ragged"]
    assert main(["bench", "--backends", "numpy", "--lengths", "full,padded", "--plain"]) == 2
    assert "unknown --lengths 'padded'" in capsys.readouterr().err
    assert len(seen) == 2


@pytest.fixture
def no_lengths_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    info = rb.BackendInfo("bench-no-lengths", "tests.bench_fakes:NoLengthsCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    return info.name


def test_ragged_run_and_refusal(tmp_path: Path, no_lengths_backend: str) -> None:
    """numpy times both lengths of the case, the ragged one through its own padding; a backend
    that takes no lengths is skipped with the reason for its ragged case only, and the run
    succeeds."""
    out = tmp_path / "ragged.json"
    config = BenchConfig(
        backends=["numpy", no_lengths_backend],
        out=str(out),
        lengths=["full", "ragged"],
        peak=False,
        **{**TINY, "batches": [6], "seq_lens": [8]},
        **{**FAST, "min_time": 0.01},
    )
    summary = quiet_run(config)
    assert summary.exit_code() == 0
    data = json.loads(out.read_text())
    got = {(r["backend"], r["lengths"]): r for r in data["results"]}
    # the backends of one case run side by side (interleaved), case after case
    assert list(got) == [(b, lengths) for lengths in ("full", "ragged") for b in config.backends]
    expected = random_lengths(6, 8, 4, 8, seed=0)
    assert expected.mean() < 8
    for (backend, lengths), rec in got.items():
        assert set(RESULT_FIELDS) <= set(rec), set(RESULT_FIELDS) - set(rec)
        assert rec["lengths_max"] == 8  # the first row spans the batch
        if lengths == "full":
            assert rec["status"] == "ok", rec["error"]
            assert rec["lengths_mean"] == rec["lengths_min"] == 8
            continue
        assert rec["lengths_mean"] == pytest.approx(expected.mean())
        assert rec["lengths_min"] == expected.min() >= 4 and rec["lengths_seed"] == 0
        assert rec["flops"] == got[backend, "full"]["flops"]  # padded steps still count
        if backend == "numpy":
            assert rec["status"] == "ok" and rec["output_finite"] is True
            assert rec["rounds"] >= 3 and rec["median_s"] > 0
        else:
            assert rec["status"] == "skipped" and rec["median_s"] is None
            assert "backend 'bench-no-lengths' does not take sequence lengths" in rec["error"]


def test_refusal_from_prepare_is_a_padding_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend that says it takes lengths but whose prepare refuses them raises the error
    the runner records as "skipped" (in-process: the worker passes the same class through)."""
    from rnnbench.bench import jobs

    info = rb.BackendInfo("bench-late-lengths", "tests.bench_fakes:LateLengthsCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    spec = rb.RNNSpec(3, 4).to_dict()
    kwargs = dict(arrays=None, backend=info.name, device="cpu", dtype="float32",
                  variant="hoisted", spec=spec, batch=2, seq_len=4)  # fmt: skip
    try:
        assert jobs.setup(**kwargs)[0]["compile_s"] > 0  # full length: measured as usual
        with pytest.raises(rb.errors.UnsupportedPaddingError, match="cannot pad this layer"):
            jobs.setup(**kwargs, lengths=[4, 2])
    finally:
        jobs.teardown(None)


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


# --- rnnbench check --cell -----------------------------------------------------------------


def test_check_every_cell_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    # the module, not the function of the same name that rnnbench exports
    compare_mod = importlib.import_module("rnnbench.compare")
    seen: list[Any] = []
    real = compare_mod.compare

    def spy(weights: Any, x: Any, h0: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen.append((weights.spec, h0))
        return real(weights, x, h0, *args, **kwargs)

    monkeypatch.setattr(compare_mod, "compare", spy)
    out = tmp_path / "check.json"
    code = main(
        ["check", "--backends", "numpy", "--cell", "rnn,lstm,gru,gru-reset-before", "--h0",
         "--dtype", "float32,float64", "--seq-len", "12", "--layers", "2", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    # one table per cell; the c_n column only in the LSTM's
    tables = text.split("\n\n")
    assert [t.splitlines()[0].split("I=")[0] for t in tables[:4]] == [
        "", "LSTM ", "GRU ", "GRU(RESET-BEFORE) "
    ]  # fmt: skip
    assert ["c_n err" in t for t in tables[:4]] == [False, True, False, False]
    assert all("h_n err" in t for t in tables[:4])
    assert "4 cells checked: no backend differs" in text
    # --h0: one random state per cell, (h0, c0) for the LSTM, (layers, batch, hidden) each
    assert [s.cell_label for s, _ in seen] == ["rnn", "lstm", "gru", "gru(reset-before)"]
    for spec, h0 in seen:
        parts = h0 if spec.cell == "lstm" else (h0,)
        assert len(parts) == len(spec.state_names)
        assert all(p.shape == (2, 4, 16) and np.abs(p).max() > 0.5 for p in parts)
    assert not np.array_equal(seen[1][1][0], seen[1][1][1])  # c0 is not h0

    data = json.loads(out.read_text())
    assert data["schema"] == "rnnbench.checks/1"
    checks = data["checks"]
    assert [(c["spec"]["cell"], c["spec"]["reset_after"]) for c in checks] == list(CELLS.values())
    for c in checks:
        assert c["schema"] == "rnnbench.check/1.3" and c["seq_len"] == 12
        assert [(r["backend"], r["dtype"], r["status"]) for r in c["rows"]] == [
            ("numpy", "float32", "pass"), ("numpy", "float64", "pass")
        ]  # fmt: skip
        f32, f64 = c["rows"]
        assert 0 < f32["max_abs"] < 1e-5 and 0 < f32["h_n_max_abs"] < 1e-5
        assert f64["max_abs"] < 1e-12
        assert len(f32["error_per_step"]) == 12
        lstm = c["spec"]["cell"] == "lstm"
        assert (0 < f32["c_n_max_abs"] < 1e-5) if lstm else np.isnan(f32["c_n_max_abs"])


def test_check_cell_default_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "one.json"
    assert main(["check", "--backends", "numpy", "--seq-len", "5", "--json", str(out)]) == 0
    checks = json.loads(out.read_text())["checks"]
    assert [c["spec"]["cell"] for c in checks] == ["rnn"]
    with pytest.raises(SystemExit) as exc:
        main(["check", "--cell", "lstm,peephole"])
    assert exc.value.code == 2
    assert "unknown cell 'peephole'" in capsys.readouterr().err
    # relu is the vanilla RNN's: the LSTM keeps its own activations, the RNN gets relu
    assert main(["check", "--backends", "numpy", "--cell", "rnn,lstm", "--nonlinearity",
                 "relu", "--seq-len", "5", "--json", str(out)]) == 0  # fmt: skip
    specs = [c["spec"] for c in json.loads(out.read_text())["checks"]]
    assert [(s["cell"], s["nonlinearity"]) for s in specs] == [("rnn", "relu"), ("lstm", "tanh")]


# --- training: --mode -------------------------------------------------------------------------


def test_mode_is_part_of_the_key_and_counts_3x_flops() -> None:
    from rnnbench.bench.table import format_table

    assert "mode" in KEY_FIELDS and "mode" in RESULT_FIELDS
    args = ("numpy", "hoisted", "cpu", "float32", 8, 10, 3, 4)
    infer, train = BenchCase(*args, cell="lstm"), BenchCase(*args, cell="lstm", mode="training")
    assert infer.mode == "inference" and infer.key() != train.key()
    # each product's backward is two products of its size: 3x the forward, elementwise not
    assert infer.flops == infer.forward_flops == 2 * 8 * 10 * (3 + 4) * 4 * 4
    assert train.flops == 3 * train.forward_flops == 3 * infer.flops
    assert train.label().endswith(" training") and "inference" not in infer.label()
    # a record written before modes is an inference case
    old = {k: v for k, v in infer.to_dict().items() if k != "mode"}
    assert key_of(old) == infer.key() != key_of({**old, "mode": "training"})
    with pytest.raises(rb.SpecError, match="unknown mode 'train'"):
        BenchCase(*args, mode="train")
    # the mode varies fastest: inference and training of one shape run one after the other
    cases = expand_cases(
        [("numpy", "hoisted")], device="cpu", dtypes=["float32"], batches=[2], seq_lens=[5],
        input_sizes=[3], hidden_sizes=[4], lengths=["full", "ragged"],
        modes=["inference", "training"],
    )  # fmt: skip
    assert [(c.lengths, c.mode) for c in cases] == [
        ("full", "inference"), ("full", "training"), ("ragged", "inference"),
        ("ragged", "training"),
    ]  # fmt: skip
    # the table gets a mode column once a file holds a training case
    records = [{**c.to_dict(), "status": "ok", "median_s": 1e-3, "gflops": 1.0} for c in cases]
    assert format_table({"results": records}).splitlines()[0].split()[:6] == [
        "backend", "variant", "dev", "cell", "mode", "B"
    ]  # fmt: skip
    assert "mode" not in format_table({"results": records[:1]}).splitlines()[0].split()


def test_a_1_2_file_resumes_as_inference(tmp_path: Path) -> None:
    case = BenchCase("numpy", "hoisted", "cpu", "float32", 2, 5, 3, 4)
    old = {k: v for k, v in case.to_dict().items() if k != "mode"}
    old.update(status="ok", median_s=1e-3, samples=[1e-3], flops=case.flops)
    out = tmp_path / "old.json"
    out.write_text(json.dumps({"schema": "rnnbench.bench/1.2", "results": [old]}))
    file = ResultsFile(out)
    assert file.data["schema"] == SCHEMA == "rnnbench.bench/1.5"
    record = file.results[0]
    assert record["mode"] == "inference" and record["forward_flops"] == case.flops
    training = BenchCase("numpy", "hoisted", "cpu", "float32", 2, 5, 3, 4, mode="training")
    assert file.is_done(case) and not file.is_done(training)
    file.save()
    assert json.loads(out.read_text())["schema"] == "rnnbench.bench/1.5"


@pytest.fixture
def no_grads_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    info = rb.BackendInfo("bench-no-grads", "tests.bench_fakes:NoGradsCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    return info.name


def test_training_run_and_refusal(tmp_path: Path, no_grads_backend: str) -> None:
    """numpy times the forward and the training step of a full and a ragged batch, its
    gradients finite, at 3x the FLOPs; a backend without gradients is skipped with the reason
    for its training cases only, and the run succeeds."""
    out = tmp_path / "training.json"
    config = BenchConfig(
        backends=["numpy", no_grads_backend],
        out=str(out),
        lengths=["full", "ragged"],
        modes=["inference", "training"],
        peak=False,
        **{**TINY, "batches": [4]},
        **{**FAST, "min_time": 0.01},
    )
    summary = quiet_run(config)
    assert summary.exit_code() == 0
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA
    got = {(r["backend"], r["lengths"], r["mode"]): r for r in data["results"]}
    assert list(got) == [
        (b, lengths, mode)
        for lengths in ("full", "ragged")
        for mode in ("inference", "training")
        for b in config.backends
    ]
    for (backend, _, mode), rec in got.items():
        assert set(RESULT_FIELDS) <= set(rec), set(RESULT_FIELDS) - set(rec)
        forward = rb.RNNSpec(3, 4).flops(4, 5)
        assert rec["forward_flops"] == forward
        assert rec["flops"] == (3 * forward if mode == "training" else forward)
        if backend == no_grads_backend and mode == "training":
            assert rec["status"] == "skipped" and rec["median_s"] is None
            assert "backend 'bench-no-grads' does not compute gradients" in rec["error"]
            continue
        assert rec["status"] == "ok", rec["error"]
        assert rec["output_finite"] is True and rec["rounds"] >= 3
        assert rec["gflops"] == pytest.approx(rec["flops"] / rec["median_s"] / 1e9)
        if mode == "training":
            # the first run_vjp call is the compile time; the backward path is recorded
            assert rec["compile_s"] > 0 and rec["compile_detail"]["compile_call_s"] is None
            assert rec["backward_path"]
        else:
            assert "backward_path" not in rec
    # the ragged training case drew the same lengths as the ragged inference case
    ragged = [got["numpy", "ragged", m] for m in ("inference", "training")]
    assert ragged[0]["lengths_mean"] == ragged[1]["lengths_mean"] < 5


def test_training_in_the_worker_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, the worker's functions: a training case's cotangents are seeded and of unit
    norm, a gradient holding NaN is reported as not finite, and a backend whose prepare_vjp
    refuses raises the error the runner records as "skipped"."""
    from rnnbench.bench import jobs

    spec = rb.RNNSpec(3, 4, cell="lstm")
    dy, (dh, dc) = jobs.cotangents(spec, 2, 5, "float32", seed=0)
    assert dy.shape == (2, 5, 4) and dh.shape == dc.shape == (1, 2, 4)
    assert all(abs(float(np.linalg.norm(a)) - 1) < 0.5 for a in (dy, dh, dc))
    assert np.array_equal(dy, jobs.cotangents(spec, 2, 5, "float32", seed=0)[0])
    kwargs = dict(arrays=None, device="cpu", dtype="float32", variant="hoisted",
                  spec=spec.to_dict(), batch=2, seq_len=5, mode="training")  # fmt: skip
    for name, cls in (("bench-nan-grads", "NanGradsCell"), ("bench-late-grads", "LateGradsCell")):
        info = rb.BackendInfo(name, f"tests.bench_fakes:{cls}")
        monkeypatch.setitem(registry._load_registry(), name, info)
    try:
        jobs.setup(**kwargs, backend="numpy")
        jobs.measure(None, budget_s=0.0, min_rounds=1, max_rounds=1)
        assert jobs.teardown(None)[0]["output_finite"] is True
        jobs.setup(**kwargs, backend="bench-nan-grads")
        assert jobs.teardown(None)[0]["output_finite"] is False
        with pytest.raises(rb.BackendUnavailableError, match="does not compute gradients"):
            jobs.setup(**kwargs, backend="bench-late-grads")
    finally:
        jobs.teardown(None)


def test_bench_cli_mode(seen: list[BenchConfig], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--backends", "numpy", "--plain"]) == 0
    assert list(seen[0].modes) == ["inference"]  # the forward pass alone by default
    argv = ["bench", "--backends", "numpy", "--mode", "inference,Training,inference", "--plain"]
    assert main(argv) == 0
    assert list(seen[1].modes) == ["inference", "training"]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--backends", "numpy", "--mode", "inference,backward"])
    assert exc.value.code == 2 and len(seen) == 2
    assert "argument --mode: unknown mode 'backward'" in capsys.readouterr().err


# --- the results file: written with a record, merged per machine, each result's peak kept ----


class InProcessWorker:
    """A worker that runs the job functions in this process (no process start), and a GEMM
    "peak" that counts its measurements and returns the next rate of ``rates``."""

    rates: ClassVar[list[float | None]] = []
    measured: ClassVar[list[str]] = []

    def __init__(self, name: str, env: Any) -> None:
        self.name, self.alive = name, True

    def call(self, target: str, arrays: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        from rnnbench.bench import jobs

        name = target.rpartition(":")[2]
        if name == "measure_limits":  # canned: a GEMM of 1 us at every shape
            gemm = {",".join(map(str, s)): {"median_s": 1e-6} for s in kwargs["shapes"]}
            return {"gemm": gemm, "bandwidth": {"bytes_per_s": 1e10},
                    "dispatch": {"median_s": 1e-7}}, {}  # fmt: skip
        calibration = kwargs.get("min_time") == runner.CALIBRATION_TIME
        if name == "gemm_peak" and calibration:  # a short GEMM of the run, not a peak: not counted
            return {"gflops": 50.0, "size": 8}, {}
        if name == "gemm_peak":
            self.measured.append(f"{kwargs['device']}/{kwargs['dtype']}")
            rate = self.rates.pop(0)
            if rate is None:
                raise rb.BackendRuntimeError("fake: the GEMM died", "try again")
            return {"device": kwargs["device"], "dtype": kwargs["dtype"], "gflops": rate,
                    "library": "fake", "size": 8}, {}  # fmt: skip
        return getattr(jobs, name)(None, **kwargs)

    def kill(self) -> None:
        self.alive = False

    def close(self) -> None:
        self.alive = False


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, fake_backend: str) -> Any:
    """Sweeps without worker processes: jobs in-process, a counted fake peak, a machine record
    whose host a test picks (``in_process.host = "b"``: another machine), and runtime facts
    that name the host."""
    from rnnbench.bench import jobs, runner

    class Setup:
        host = "a"

    InProcessWorker.rates, InProcessWorker.measured = [], []
    monkeypatch.setattr(runner, "Worker", InProcessWorker)
    monkeypatch.setattr(runner, "machine_record", lambda: {"hostname": Setup.host, "cpu": {}})
    monkeypatch.setattr(jobs, "runtime_info", lambda: {"threads": {"host": Setup.host}, "tf32": {}})
    # the jobs' full collections (a worker's own heap is small) walk all of pytest's here
    monkeypatch.setattr(jobs, "gc", type("NoFullGC", (), {"collect": staticmethod(lambda *a: 0),
                        "disable": staticmethod(lambda: None),
                        "enable": staticmethod(lambda: None)}))  # fmt: skip
    return Setup


def _sweep(out: Path, backends: list[str], batches: list[int], **extra: Any) -> Any:
    config = BenchConfig(
        backends=backends,
        variants=["bench-fake:ok"] if "bench-fake" in backends else None,
        out=str(out),
        min_time=0.0,
        min_rounds=1,
        warmup_time=0.0,
        warmup_rounds=1,
        load_window=0.01,
        **{**TINY, "batches": batches},
        **extra,
    )
    return quiet_run(config)


def test_results_file_written_only_with_a_record(
    tmp_path: Path, in_process: Any, no_grads_backend: str
) -> None:
    """A resume with nothing to measure, or a run that stops at planning, leaves the file
    byte for byte (no peak measured again, no machine record replaced) and makes none."""
    out = tmp_path / "bench.json"
    InProcessWorker.rates = [100.0]
    assert _sweep(out, ["numpy"], [2]).exit_code() == 0
    before = out.read_bytes()
    data = json.loads(before)
    assert [r["status"] for r in data["results"]] == ["ok"] and InProcessWorker.measured
    InProcessWorker.measured.clear()
    in_process.host = "b"  # even from another machine: nothing measured, nothing written
    assert _sweep(out, ["numpy"], [2]).already_done == 1
    with pytest.raises(rb.RNNBenchError, match="nosuch"):
        _sweep(out, ["numpy", "nosuch"], [2, 3])  # an unknown backend, found at planning
    assert out.read_bytes() == before and InProcessWorker.measured == []
    fresh = tmp_path / "sub" / "new.json"
    with pytest.raises(rb.RNNBenchError, match="nosuch"):
        _sweep(fresh, ["nosuch"], [2])
    assert not fresh.parent.exists()
    # a case recorded as skipped in this run is a record: the file is written with it
    skipped = _sweep(out, [no_grads_backend], [2], modes=["training"], peak=False)
    assert skipped.count("skipped") == 1 and skipped.exit_code() == 3
    assert json.loads(out.read_text())["machine"]["hostname"] == "b"


def test_machine_record_is_merged_per_backend(tmp_path: Path, in_process: Any) -> None:
    """A run that times one backend keeps what earlier runs recorded for the others, and a
    resume on another machine keeps the first machine's record and runtime facts."""
    out = tmp_path / "bench.json"
    assert _sweep(out, ["numpy"], [2], peak=False).exit_code() == 0
    assert _sweep(out, ["bench-fake"], [2], peak=False).exit_code() == 0
    data = json.loads(out.read_text())
    (first,) = data["machines"]
    assert data["machine"]["machine_id"] == first
    both = {"numpy": {"host": "a"}, "bench-fake": {"host": "a"}}
    assert data["machine"]["threads"] == data["machines"][first]["threads"] == both
    in_process.host = "b"
    assert _sweep(out, ["numpy"], [3], peak=False).exit_code() == 0
    data = json.loads(out.read_text())
    second = data["machine"]["machine_id"]
    assert set(data["machines"]) == {first, second} and second != first
    assert data["machines"][first]["threads"] == both  # not lost to the other machine's run
    assert data["machine"]["threads"] == data["machines"][second]["threads"]
    assert data["machine"]["threads"] == {"numpy": {"host": "b"}}
    # a file before 1.4 kept the runtime facts on its top-level record only: they are its
    # machine's, and a resume on another machine keeps them there
    old = {**data, "schema": "rnnbench.bench/1.3", "machines": {first: {"hostname": "a"}}}
    old["machine"] = {"hostname": "a", "machine_id": first, "threads": both, "tf32": {}}
    out.write_text(json.dumps(old))
    assert _sweep(out, ["numpy"], [4], peak=False).exit_code() == 0
    assert json.loads(out.read_text())["machines"][first]["threads"] == both


def test_each_result_keeps_its_peak(tmp_path: Path, in_process: Any) -> None:
    """A resume on the same machine uses the file's peak (one denominator for all of that
    machine's efficiencies); another machine measures its own next to it; every result names
    the peak it was computed against, which the file still holds; a failed peak is measured
    again; the report reads the efficiencies."""
    import math

    from rnnbench.report.model import gather

    out = tmp_path / "bench.json"
    InProcessWorker.rates = [None, 100.0, 300.0]
    assert _sweep(out, ["numpy"], [2]).exit_code() == 0  # the peak failed: no efficiency
    assert _sweep(out, ["numpy"], [3]).exit_code() == 0  # measured again: 100
    assert _sweep(out, ["numpy"], [4]).exit_code() == 0  # kept: not measured a third time
    assert InProcessWorker.measured == ["cpu/float32"] * 2
    in_process.host = "b"
    assert _sweep(out, ["numpy"], [5]).exit_code() == 0  # another machine: its own, 300
    data = json.loads(out.read_text())
    ids = {r["batch"]: r.get("peak_id") for r in data["results"]}
    a, b = (f"cpu/float32@{m}" for m in data["machines"])
    assert ids == {2: None, 3: a, 4: a, 5: b}
    assert {k: p["gflops"] for k, p in data["peaks"].items()} == {a: 100.0, b: 300.0}
    assert data["peak"]["cpu/float32"]["peak_id"] == b  # the latest run's, as before 1.4
    for r in data["results"][1:]:
        peak = data["peaks"][r["peak_id"]]
        assert r["peak_gflops"] == peak["gflops"] and peak["machine_id"] == r["machine_id"]
        assert r["efficiency"] == pytest.approx(r["gflops"] / peak["gflops"])
    shown = {r["batch"]: r["efficiency"] for g in gather([out]).machines for r in g.results}
    assert shown[5] == pytest.approx(data["results"][3]["efficiency"]) and math.isnan(shown[2])
    # a 1.3 file's peak goes to the machine whose results name it; it is then kept
    old = {k: v for k, v in data.items() if k != "peaks"}
    old["schema"] = "rnnbench.bench/1.3"
    old["peak"] = {"cpu/float32": {"gflops": 100.0, "device": "cpu", "dtype": "float32"}}
    old["results"] = [{k: v for k, v in r.items() if k != "peak_id"} for r in data["results"]]
    out.write_text(json.dumps(old))
    in_process.host = "a"
    assert _sweep(out, ["numpy"], [6]).exit_code() == 0 and len(InProcessWorker.measured) == 3
    data = json.loads(out.read_text())
    assert [r.get("peak_id") for r in data["results"]] == [None, a, a, None, a]
    assert list(data["peaks"]) == [a]


def test_result_and_report_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from rnnbench.report import write_report

    out = tmp_path / "bench.json"
    file = ResultsFile(out)
    file.add({**BenchCase("numpy", "hoisted", "cpu", "float32", 2, 5, 3, 4).to_dict(),
              "status": "ok", "median_s": 1e-3, "samples": [1e-3]})  # fmt: skip
    mask = os.umask(0o027)
    try:
        file.save()
        written = write_report([out], tmp_path / "report", figures=False)
    finally:
        os.umask(mask)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (out, written["markdown"], written["html"])}
    assert modes == {0o640}


def test_bench_out_refuses_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rnnbench.bench as bench_pkg

    ran: list[Any] = []
    monkeypatch.setattr(bench_pkg, "run_bench", lambda *a, **k: ran.append(a))
    report = tmp_path / "report.md"
    report.write_text("# rnnbench report\n")
    assert main(["bench", "--backends", "numpy", "--out", str(report)]) == 2
    assert "will not overwrite it" in capsys.readouterr().err
    assert report.read_text() == "# rnnbench report\n" and ran == []
