"""``rnnbench compare``: verdicts on synthetic samples, the exit code, the schema rule, and the
NumPy Mann-Whitney U test against SciPy's (SciPy is only a test-time cross-check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnbench.cli import main
from rnnbench.report.runs import verdict_for
from rnnbench.report.stats import mann_whitney_u


def _result(samples: np.ndarray, backend: str = "torch", **case: Any) -> dict[str, Any]:
    s = np.asarray(samples, dtype=float)
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    out = {
        "backend": backend, "variant": "eager", "path": "aten", "device": "cpu",
        "dtype": "float32", "batch": 32, "seq_len": 100, "input_size": 128, "hidden_size": 256,
        "layers": 1, "bidirectional": False, "threads": None, "median_s": float(med),
        "iqr_s": float(q3 - q1), "q1_s": float(q1), "q3_s": float(q3), "min_s": float(s.min()),
        "rounds": len(s), "samples": s.tolist(), "compile_s": 0.01, "gflops": 1.0,
        "efficiency": 0.1, "status": "ok", "error": None,
    }  # fmt: skip
    out.update(case)
    return out


def _file(path: Path, results: list[dict[str, Any]], schema: str = "rnnbench.bench/1") -> str:
    machine = {"hostname": "ci", "cpu": {"model": "Test CPU"}, "gpus": []}
    path.write_text(
        json.dumps({"schema": schema, "machine": machine, "peak": {}, "results": results})
    )
    return str(path)


def _noisy(rng: np.random.Generator, centre: float, n: int = 40) -> np.ndarray:
    """Timing-like samples: a floor plus a one-sided tail, 2% spread."""
    return centre * (1 + np.abs(rng.normal(0, 0.02, n)))


def test_clear_slowdown_is_slower_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    old = _file(tmp_path / "old.json", [_result(_noisy(rng, 1e-3))])
    new = _file(tmp_path / "new.json", [_result(_noisy(rng, 2e-3))])
    assert main(["compare", old, new]) == 1
    out = capsys.readouterr().out
    assert "slower" in out and "1 regression" in out
    row = verdict_for(_result(_noisy(rng, 1e-3)), _result(_noisy(rng, 2e-3)))
    assert row.verdict == "slower" and 1.9 < row.ratio < 2.1 and row.p_value is not None
    assert row.p_value < 1e-6 and row.test == "mann-whitney"
    # and the other way round is faster, exit 0
    assert main(["compare", new, old]) == 0
    assert "faster" in capsys.readouterr().out


def test_same_distribution_is_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    row = verdict_for(_result(_noisy(rng, 1e-3)), _result(_noisy(rng, 1e-3)))
    assert row.verdict == "same" and abs(row.ratio - 1) < 0.02
    old = _file(tmp_path / "old.json", [_result(_noisy(rng, 1e-3))])
    new = _file(tmp_path / "new.json", [_result(_noisy(rng, 1e-3))])
    assert main(["compare", old, new]) == 0


def test_small_significant_change_is_same_below_threshold() -> None:
    rng = np.random.default_rng(2)
    base = _noisy(rng, 1e-3, 200)
    old, new = _result(base), _result(base * 1.03)
    row = verdict_for(old, new)
    assert row.p_value is not None and row.p_value < 1e-3  # significant...
    assert row.verdict == "same"  # ...but under the 5% threshold
    assert verdict_for(old, new, threshold=0.01).verdict == "slower"


def test_large_but_noisy_change_is_noisy() -> None:
    rng = np.random.default_rng(3)
    old = _result(rng.uniform(0.5e-3, 2e-3, 4))
    new = _result(rng.uniform(0.5e-3, 2e-3, 4) * 1.3)
    row = verdict_for(old, new)
    assert row.verdict in ("noisy", "same")
    assert row.verdict != "slower"  # four overlapping rounds cannot show a slowdown
    few = verdict_for(_result([1.0, 1.01, 1.02]), _result([2.0, 2.01, 2.02]))
    assert few.verdict == "noisy" and "too few rounds" in few.note  # p >= 0.1 with 3 + 3


def test_unmatched_and_failed_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    a = _result(_noisy(rng, 1e-3))
    b_only_old = _result(_noisy(rng, 1e-3), hidden_size=512)
    c_new = _result(_noisy(rng, 1e-3), hidden_size=1024)
    broken = _result(_noisy(rng, 1e-3), backend="jax")
    broken_new = dict(broken, status="timeout", median_s=None, samples=[], error="ran past 300 s")
    old = _file(tmp_path / "old.json", [a, b_only_old, broken])
    new = _file(tmp_path / "new.json", [a, c_new, broken_new])
    assert main(["compare", old, new, "--json", str(tmp_path / "cmp.json")]) == 1
    out = capsys.readouterr().out
    assert "only-in-old" in out and "only-in-new" in out and "broken" in out
    assert "ran past 300 s" in out
    verdicts = {(c["backend"], c["case"].split("H=")[1][:4]): c["verdict"]
                for c in json.loads((tmp_path / "cmp.json").read_text())["cases"]}  # fmt: skip
    assert verdicts[("torch", "256")] == "same"
    assert verdicts[("torch", "512")] == "only-in-old"
    assert verdicts[("torch", "1024")] == "only-in-new"
    assert verdicts[("jax", "256")] == "broken"


def test_samples_missing_falls_back_to_iqr() -> None:
    old = {**_result([1.0, 1.1, 1.2, 1.3]), "samples": []}
    new = {**_result([2.0, 2.1, 2.2, 2.3]), "samples": []}
    row = verdict_for(old, new)
    assert row.test == "iqr" and row.verdict == "slower"


def test_other_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    old = _file(tmp_path / "old.json", [_result(_noisy(rng, 1e-3))], "rnnbench.bench/2")
    new = _file(tmp_path / "new.json", [_result(_noisy(rng, 1e-3))])
    assert main(["compare", old, new]) == 2
    err = capsys.readouterr().err
    assert "another major version" in err and "rnnbench.bench/1" in err and "Hint:" in err
    # an older (or newer) minor of the same major is read
    older = _file(tmp_path / "older.json", [_result(_noisy(rng, 1e-3))], "rnnbench.bench/1.0")
    assert main(["compare", older, new]) == 0
    # a check file is not a bench file
    check = tmp_path / "check.json"
    check.write_text(json.dumps({"schema": "rnnbench.check/1", "rows": []}))
    assert main(["compare", str(check), new]) == 2
    assert "equivalence results" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("n1", "n2", "shift", "ties"),
    [(5, 7, 0.8, False), (8, 30, 0.0, False), (40, 35, 0.4, False), (30, 25, 0.2, True)],
)
def test_mann_whitney_matches_scipy(n1: int, n2: int, shift: float, ties: bool) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n1 * 100 + n2)
    x, y = rng.standard_normal(n1), rng.standard_normal(n2) + shift
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    u, p = mann_whitney_u(x, y)
    ref = stats.mannwhitneyu(x, y, alternative="two-sided")
    assert u == pytest.approx(float(ref.statistic))
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-15)


def test_mann_whitney_edge_cases() -> None:
    assert mann_whitney_u([1.0, 1.0], [1.0, 1.0])[1] == 1.0
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_u([], [1.0])
    # fully separated samples of 3 and 3: the exact two-sided p is 2/20
    assert mann_whitney_u([1, 2, 3], [4, 5, 6])[1] == pytest.approx(0.1)


def test_a_case_both_runs_skipped_is_skipped_not_failed() -> None:
    skipped = _result(np.ones(3), status="skipped", error="no usable 'jit'\nHint: use eager")
    skipped.update(median_s=None, samples=[])
    verdict = verdict_for(skipped, dict(skipped))
    assert verdict.verdict == "skipped"
    assert verdict.note == "skipped: no usable 'jit'"  # the reason, without the hint's lines
    crashed = dict(skipped, status="failed", error="worker died")
    assert verdict_for(skipped, crashed).verdict == "failed"


def test_cases_match_on_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An LSTM result is judged against the old LSTM result of the same sizes, never against the
    RNN or GRU one; the two GRU formulas are different cases."""
    rng = np.random.default_rng(6)
    same = _noisy(rng, 1e-3)
    rnn = _result(same, cell="rnn", reset_after=None, nonlinearity="tanh")
    relu = _result(_noisy(rng, 5e-4), cell="rnn", reset_after=None, nonlinearity="relu")
    lstm_old = _result(_noisy(rng, 4e-3), cell="lstm", reset_after=None)
    lstm_new = _result(_noisy(rng, 8e-3), cell="lstm", reset_after=None)
    gru_after = _result(_noisy(rng, 3e-3), cell="gru", reset_after=True)
    gru_before = _result(_noisy(rng, 3e-3), cell="gru", reset_after=False)
    old = _file(tmp_path / "old.json", [rnn, relu, lstm_old, gru_after], "rnnbench.bench/1.1")
    new = _file(
        tmp_path / "new.json",
        [dict(rnn), dict(relu), lstm_new, gru_before],
        "rnnbench.bench/1.1",
    )
    assert main(["compare", old, new, "--json", str(tmp_path / "cmp.json")]) == 1
    out = capsys.readouterr().out
    assert "cpu float32 lstm B=32" in out and "cpu float32 rnn relu B=32" in out
    cases = json.loads((tmp_path / "cmp.json").read_text())["cases"]
    verdicts = {c["case"].split(" B=")[0].split("float32 ")[1]: c for c in cases}
    assert verdicts["rnn"]["verdict"] == "same" and verdicts["rnn"]["ratio"] == 1.0
    assert verdicts["rnn relu"]["verdict"] == "same"
    lstm = verdicts["lstm"]
    assert lstm["verdict"] == "slower" and 1.8 < lstm["ratio"] < 2.2
    assert lstm["old_median_s"] == lstm_old["median_s"]  # not the RNN's or the GRU's
    assert verdicts["gru-reset-before"]["verdict"] == "only-in-new"
    assert verdicts["gru"]["verdict"] == "only-in-old"


def test_file_before_cells_matches_rnn_results(tmp_path: Path) -> None:
    """A bench/1.0 file (no cell field) holds vanilla RNNs: they match the rnn results of a 1.1
    file and nothing else."""
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import compare_runs

    rng = np.random.default_rng(7)
    samples = _noisy(rng, 1e-3)
    old = _file(tmp_path / "old.json", [_result(samples)], "rnnbench.bench/1")
    rnn = _result(samples, cell="rnn", reset_after=None, nonlinearity="tanh")
    gru = _result(samples, cell="gru")  # a GRU without reset_after is the reset-after one
    new = _file(tmp_path / "new.json", [rnn, gru], "rnnbench.bench/1.1")
    rows = compare_runs(load_bench(old), load_bench(new))
    assert [(r.case.split(" B=")[0], r.verdict) for r in rows] == [
        ("cpu float32 rnn", "same"),
        ("cpu float32 gru", "only-in-new"),
    ]
    assert load_bench(new).results[1]["reset_after"] is True


def test_training_never_matches_inference(tmp_path: Path) -> None:
    """A training step (bench/1.3) is judged against the old training step of the same shape
    only: never against the inference case, nor an inference case of a file written before
    modes (bench/1.2), which holds inference cases only."""
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import compare_runs

    rng = np.random.default_rng(8)
    infer = _noisy(rng, 1e-3)
    older = _file(tmp_path / "older.json", [_result(infer)], "rnnbench.bench/1.2")
    old = _file(
        tmp_path / "old.json",
        [_result(infer, mode="inference"), _result(_noisy(rng, 3e-3), mode="training")],
        "rnnbench.bench/1.3",
    )
    # the new run's training step is as fast as the inference case: matched with it, it would
    # be "same"; matched with the old training step, it is faster
    new = _file(
        tmp_path / "new.json", [_result(_noisy(rng, 1e-3), mode="training")], "rnnbench.bench/1.3"
    )
    rows = compare_runs(load_bench(old), load_bench(new))
    assert [(r.case.split("H=256")[1], r.verdict) for r in rows] == [
        (" training", "faster"),
        ("", "only-in-old"),
    ]
    assert rows[0].old_median_s == load_bench(old).results[1]["median_s"]
    rows = compare_runs(load_bench(older), load_bench(new))
    assert [(r.case.split("H=256")[1], r.verdict) for r in rows] == [
        (" training", "only-in-new"),
        ("", "only-in-old"),
    ]


# --- bench/1.5: judged on the processes, against the noise the files recorded ---------------
def _procs(medians: list[float], backend: str = "torch", batch: int = 32, **extra: Any) -> dict:
    """A 1.5 result: each process's median, 20 samples each around it."""
    samples = [m * (1 + 0.001 * k) for m in medians for k in range(20)]
    rec = _result(np.asarray(samples), backend=backend, batch=batch)
    rec.update(
        processes=len(medians), process_medians=medians, process_rounds=[20] * len(medians),
        run_id="r", machine_id="m1", **extra,
    )  # fmt: skip
    return rec


def _file15(path: Path, results: list[dict], drift: float = 0.0, start: float = 100.0,
            settings: dict | None = None, threads: dict | None = None) -> str:  # fmt: skip
    machine = {"hostname": "ci", "cpu": {"model": "Test CPU"}, "gpus": [], "machine_id": "m1",
               "versions": {"numpy": "2.0"}, "threads": threads or {}}  # fmt: skip
    run = {
        "run_id": "r", "machine_id": "m1",
        "settings": {"processes": 3, "min_time": 1.0, "min_rounds": 5, "warmup_time": 0.2,
                     **(settings or {})},
        "calibration": {"key": "cpu/float32", "size": 1024, "start_gflops": start,
                        "end_gflops": start * (1 + drift), "drift": drift},
    }  # fmt: skip
    path.write_text(
        json.dumps({"schema": "rnnbench.bench/1.5", "machine": machine, "peak": {},
                    "runs": [run], "results": results})
    )  # fmt: skip
    return str(path)


def _sweep_files(rng: np.random.Generator, spread: float, factor: dict[str, float]) -> list:
    """Two backends x 4 batches, 3 processes each, lognormal spread; ``factor`` slows one."""
    out = []
    for backend in ("numpy", "torch"):
        for batch in (1, 8, 32, 64):
            centre = 1e-3 * batch * factor.get(backend, 1.0)
            medians = (centre * np.exp(rng.normal(0, spread, 3))).tolist()
            out.append(_procs(medians, backend=backend, batch=batch))
    return out


def test_processes_a_a_is_never_slower_and_a_10pct_slowdown_is_caught(tmp_path: Path) -> None:
    """Twenty A/A pairs of sweeps at 2% spread between processes give no slower or faster
    verdict; a backend 10% slower is caught in most of its cases, and its interval holds
    1.10; the other backend stays same."""
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import compare_runs

    rng = np.random.default_rng(0)
    verdicts: dict[str, int] = {}
    for i in range(20):
        a = load_bench(_file15(tmp_path / f"a{i}.json", _sweep_files(rng, 0.02, {})))
        b = load_bench(_file15(tmp_path / f"b{i}.json", _sweep_files(rng, 0.02, {})))
        for row in compare_runs(a, b):
            verdicts[row.verdict] = verdicts.get(row.verdict, 0) + 1
            assert row.test == "processes" and row.low < row.ratio < row.high
    assert "slower" not in verdicts and "faster" not in verdicts, verdicts
    assert verdicts.get("same", 0) > 0.8 * 160
    caught, covered = 0, 0
    for i in range(10):
        a = load_bench(_file15(tmp_path / f"c{i}.json", _sweep_files(rng, 0.02, {})))
        b = load_bench(_file15(tmp_path / f"d{i}.json", _sweep_files(rng, 0.02, {"torch": 1.10})))
        for row in compare_runs(a, b):
            if row.backend == "torch":
                caught += row.verdict == "slower"
                covered += row.low <= 1.10 <= row.high
            else:
                assert row.verdict in ("same", "noisy")
    assert caught >= 0.7 * 40 and covered >= 0.85 * 40


def test_drift_between_runs_widens_to_noisy(tmp_path: Path) -> None:
    """A machine that ran 10% faster in the new run (its calibration says so) cannot make a
    case 'faster': the movement is noise the processes of one run do not show."""
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import compare_runs

    old = [_procs([1.0e-3, 1.001e-3, 0.999e-3], batch=b) for b in (1, 2)]
    new = [_procs([0.9e-3, 0.901e-3, 0.899e-3], batch=b) for b in (1, 2)]
    steady = compare_runs(
        load_bench(_file15(tmp_path / "o.json", old)), load_bench(_file15(tmp_path / "n.json", new))
    )
    assert {r.verdict for r in steady} == {"faster"}
    moved = compare_runs(
        load_bench(_file15(tmp_path / "o2.json", old)),
        load_bench(_file15(tmp_path / "n2.json", new, start=111.0)),
    )
    assert {r.verdict for r in moved} == {"noisy"}
    assert all("machine's own speed moved 11.0%" in r.note for r in moved)


def test_settings_mismatch_is_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = [_procs([1e-3, 1.01e-3, 0.99e-3])]
    old = _file15(tmp_path / "o.json", recs, threads={"torch": {"torch_intra_op": 2}})
    new = _file15(
        tmp_path / "n.json",
        recs,
        settings={"min_time": 0.5, "processes": 5},
        threads={"torch": {"torch_intra_op": 1}},
    )
    main(["compare", old, new])
    out = capsys.readouterr().out
    assert "warning: the runs used different settings: --processes 3 vs 5" in out
    assert "--min-time 1.0 vs 0.5" in out
    assert "warning: the runs used different threads: torch torch_intra_op 2 vs 1" in out
    assert "95% interval" in out


def test_a_loaded_run_judges_nothing(tmp_path: Path) -> None:
    """A clear change measured by a run that started on a loaded machine is 'noisy', naming
    the load: the other work may have made it."""
    import json as _json

    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import compare_runs

    old = _file15(tmp_path / "o.json", [_procs([1e-3, 1.001e-3, 0.999e-3])])
    new_path = tmp_path / "n.json"
    _file15(new_path, [_procs([2e-3, 2.001e-3, 1.999e-3])])
    assert compare_runs(load_bench(old), load_bench(str(new_path)))[0].verdict == "slower"
    data = _json.loads(new_path.read_text())
    data["runs"][0].update(cpu_count=2, load_start={"busy_cores": 1.2, "load_average": [3.1]})
    new_path.write_text(_json.dumps(data))
    (row,) = compare_runs(load_bench(old), load_bench(str(new_path)))
    assert row.verdict == "noisy" and "new run's machine was busy with other work" in row.note


def test_backend_summary_catches_what_each_case_cannot(tmp_path: Path) -> None:
    """Four cases of a backend each 10% slower, each too noisy alone: over its cases the
    backend is 'slower' (its cases move together, noise does not); a backend whose cases
    scatter around 1 is not."""
    from rnnbench.report.runs import CaseComparison, backend_summaries

    def row(backend: str, adjusted: float) -> CaseComparison:
        return CaseComparison(backend, "default", "c", "noisy", ratio=adjusted,
                              adjusted=adjusted, test="processes")  # fmt: skip

    rows = [row("torch", r) for r in (1.10, 1.12, 1.09, 1.11)]
    rows += [row("numpy", r) for r in (1.08, 0.93, 1.02, 0.97)]
    rows += [row("jax", r) for r in (1.2, 0.9)]  # two cases: no summary
    got = {s.backend: s for s in backend_summaries(rows)}
    assert set(got) == {"torch", "numpy"}
    assert got["torch"].verdict == "slower" and got["torch"].low > 1.05
    assert got["numpy"].verdict == "noisy" and got["numpy"].low < 1 < got["numpy"].high
