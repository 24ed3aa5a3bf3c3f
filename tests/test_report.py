"""``rnnbench report``: the files it writes, that the HTML needs no network, that every backend,
machine and failure shows, that several machines merge grouped, and that schema versions are
read or refused by the stated rule, that results are grouped by cell, the padding cost
table of ragged results, the training cost table of training results, and a gradient check's
equivalence table and inputs. The fixtures are a
small real CPU run of schema bench/1.0 (before cells; trimmed, with a timed-out, a failed and a
skipped result added), a real ``rnnbench check --json`` of schema check/1.0, and, for the
cells, a real ``rnnbench bench --cell all`` run of numpy and torch (torch refuses the
reset-before GRU) and a real ``rnnbench check --cell all --h0`` of both (schema checks/1)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rnnbench.cli import main
from rnnbench.report.build import write_report
from rnnbench.report.model import gather, machine_label
from rnnbench.report.results import BenchFile, CheckFile, CheckSet, ResultsFileError, load

DATA = Path(__file__).parent / "data"
BENCH = DATA / "bench_cpu_small.json"
CHECK = DATA / "check_small.json"
BENCH_CELLS = DATA / "bench_cells_small.json"
CHECKS_CELLS = DATA / "checks_cells_small.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="the report's figures need matplotlib (rnnbench[bench])")


def _bench() -> dict[str, Any]:
    return json.loads(BENCH.read_text())


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One report from the bench and check fixtures, through the command line."""
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(BENCH), str(CHECK), "-o", str(out)]) == 0
    return {
        "dir": out,
        "html": (out / "report.html").read_text(encoding="utf-8"),
        "md": (out / "report.md").read_text(encoding="utf-8"),
    }


def test_report_files_exist(report: dict[str, Any]) -> None:
    out = report["dir"]
    assert (out / "report.md").stat().st_size > 0
    assert (out / "report.html").stat().st_size > 0
    figures = sorted((out / "figures").glob("*.png"))
    names = {f.stem for f in figures}
    # the fixture sweeps T and H: both axes, per-step, efficiency, and the error plot
    assert any("seq_len" in n for n in names) and any("hidden_size" in n for n in names)
    assert {"m0-rnn-per-step", "m0-rnn-efficiency-cpu-float32"} <= names
    assert "equivalence-rnn-error-per-step" in names
    for f in figures:  # the Markdown links every figure it has
        assert f"figures/{f.name}" in report["md"]


def test_html_is_self_contained(report: dict[str, Any]) -> None:
    page = report["html"]
    # nothing fetched from elsewhere: no remote src/href, no external stylesheet or script
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    images = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(list((report["dir"] / "figures").glob("*.png")))
    for data in images:
        assert base64.b64decode(data, validate=True).startswith(PNG_MAGIC)


def test_report_shows_every_backend_machine_and_failure(report: dict[str, Any]) -> None:
    bench = _bench()
    label = machine_label(bench["machine"])
    for text in (report["html"], report["md"]):
        assert label in text or label.replace("·", "&middot;") in text
        for r in bench["results"]:
            assert r["backend"] in text
        # failed results are shown with their reason, not dropped
        assert "timeout: the case ran past --timeout 300 s" in text
        assert "out of memory" in text
        assert "skipped: needs tensorflow" in text
        # the equivalence error and failure of the check fixture
        assert "keras-torch" in text and "beyond tolerance" in text
    assert "29.72" in report["md"]  # the measured peak


def test_case_table_values(report: dict[str, Any]) -> None:
    """The numpy row of the smallest case: median and GFLOP/s as the file says."""
    r = next(
        r
        for r in _bench()["results"]
        if r["backend"] == "numpy" and r["seq_len"] == 10 and r["hidden_size"] == 16
    )
    from rnnbench.report.plots import fmt_time

    line = next(
        ln
        for ln in report["md"].splitlines()
        if ln.startswith("| numpy [hoisted]") and fmt_time(r["median_s"]) in ln
    )
    assert f"{r['gflops']:.3g}" in line
    assert fmt_time(r["median_s"] / r["seq_len"]) in line


def test_two_machines_are_grouped(tmp_path: Path) -> None:
    a = _bench()
    b = copy.deepcopy(a)
    b["machine"]["hostname"] = "gpu-box"
    b["machine"]["machine_id"] = "other"
    b["machines"] = {"other": b["machine"]}
    for r in b["results"]:
        r["machine_id"] = "other"
        if r["median_s"]:
            r["median_s"] *= 0.5
    b["results"] = b["results"][:3]
    fa, fb = _write(tmp_path / "a.json", a), _write(tmp_path / "b.json", b)
    data = gather([fa, fb])
    assert [len(g.results) for g in data.machines] == [len(a["results"]), 3]
    assert data.machines[1].label.startswith("gpu-box")
    out = write_report([fa, fb], tmp_path / "out", figures=False)  # tables are what is grouped
    page = out["html"].read_text(encoding="utf-8")
    headings = re.findall(r"<h2[^>]*>Machine: ([^<]*)</h2>", page)
    assert len(headings) == 2 and headings[1].startswith("gpu-box")
    # each machine's cases sit under its own heading
    second = page.split("Machine: gpu-box")[1]
    assert second.count("numpy [hoisted]") >= 1 and "torch [eager]" not in second.split("<h2")[0]


def test_same_machine_merges_and_rerun_replaces(tmp_path: Path) -> None:
    a = _bench()
    b = copy.deepcopy(a)
    b["results"] = b["results"][:1]
    b["results"][0]["median_s"] = 123.0
    data = gather([_write(tmp_path / "a.json", a), _write(tmp_path / "b.json", b)])
    assert len(data.machines) == 1
    group = data.machines[0]
    assert len(group.results) == len(a["results"])
    assert any(r["median_s"] == 123.0 for r in group.results)
    assert any("measured again" in n for n in group.notes)


def test_single_point_and_missing_axes(tmp_path: Path) -> None:
    """One case only: the figures that can be drawn are drawn, the sweep plots are a note."""
    a = _bench()
    a["results"] = [r for r in a["results"] if r["seq_len"] == 10 and r["hidden_size"] == 16]
    out = write_report([_write(tmp_path / "one.json", a)], tmp_path / "out")
    md = out["markdown"].read_text(encoding="utf-8")
    assert "no time-vs-T plot" in md and "no time-vs-H plot" in md
    names = {f.stem for f in (tmp_path / "out" / "figures").glob("*.png")}
    assert names == {"m0-rnn-per-step", "m0-rnn-efficiency-cpu-float32"}


def test_schema_rule(tmp_path: Path) -> None:
    a = _bench()
    a["schema"] = "rnnbench.bench/1.9"  # a newer minor: read, with a note
    found = load(_write(tmp_path / "minor.json", a))
    assert found.note and "newer" in found.note
    a["schema"] = "rnnbench.bench/2"
    with pytest.raises(ResultsFileError, match=r"another major version.*reads rnnbench.bench/1"):
        load(_write(tmp_path / "major.json", a))
    a["schema"] = "somebody.else/1"
    with pytest.raises(ResultsFileError, match="no rnnbench schema"):
        load(_write(tmp_path / "other.json", a))
    a["schema"] = "rnnbench.bench/1"
    del a["results"][0]["median_s"]
    with pytest.raises(ResultsFileError, match=r"results\[0\] lacks median_s"):
        load(_write(tmp_path / "missing.json", a))
    (tmp_path / "cut.json").write_text('{"schema": "rnnbench.bench/1", "resu')
    with pytest.raises(ResultsFileError, match="not a JSON results file"):
        load(tmp_path / "cut.json")


def test_cli_error_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.html").exists()


def test_palette_gives_each_backend_its_own_colour_and_each_variant_a_marker() -> None:
    from rnnbench.report.plots import Palette

    backends = ["numpy", "torch", "jax", "keras", "keras-jax", "keras-torch", "tf1"]
    labels = backends + [f"{b} [{v}]" for b in backends for v in ("a", "b")]
    palette = Palette(labels)
    assert len({palette.color(b) for b in backends}) == len(backends)
    assert palette.color("jax [a]") == palette.color("jax")  # the same colour everywhere
    assert palette.marker("jax [a]") != palette.marker("jax [b]")


# --- cells ------------------------------------------------------------------------------------


def test_files_written_before_cells_read_as_rnn() -> None:
    bench = load(BENCH)
    assert isinstance(bench, BenchFile) and bench.schema == "rnnbench.bench/1"
    assert bench.note is None  # an older minor is read without a note
    assert {(r["cell"], r["reset_after"], r["nonlinearity"]) for r in bench.results} == {
        ("rnn", None, "tanh")
    }
    # and before lengths: full-length batches, every row T steps
    assert {r["lengths"] for r in bench.results} == {"full"}
    assert all(r["lengths_mean"] == r["lengths_max"] == r["seq_len"] for r in bench.results)
    check = load(CHECK)
    assert isinstance(check, CheckFile) and check.spec == {} and check.cell == "rnn"
    found = load(CHECKS_CELLS)
    assert isinstance(found, CheckSet)
    assert [c.cell for c in found.checks] == ["rnn", "lstm", "gru", "gru-reset-before"]
    lstm = found.checks[1].rows[0]
    assert 0 < lstm["c_n_max_abs"] < 1e-5  # an LSTM's final cell state is carried


def test_checks_file_entries_are_checked(tmp_path: Path) -> None:
    data = json.loads(CHECKS_CELLS.read_text())
    data["checks"][1]["schema"] = "rnnbench.check/2"
    with pytest.raises(ResultsFileError, match=r"checks\[1\].*another major version"):
        load(_write(tmp_path / "major.json", data))
    data["checks"][1] = {"schema": "rnnbench.bench/1.1", "rows": []}
    with pytest.raises(ResultsFileError, match=r"checks\[1\]: schema rnnbench.bench/1.1"):
        load(_write(tmp_path / "kind.json", data))
    with pytest.raises(ResultsFileError, match="no 'checks' list"):
        load(_write(tmp_path / "empty.json", {"schema": "rnnbench.checks/1"}))


@pytest.fixture(scope="module")
def cell_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A report of the cell fixtures, with the old single check file beside them."""
    out = tmp_path_factory.mktemp("cells")
    assert main(["report", str(BENCH_CELLS), str(CHECKS_CELLS), str(CHECK), "-o", str(out)]) == 0
    return {
        "dir": out,
        "html": (out / "report.html").read_text(encoding="utf-8"),
        "md": (out / "report.md").read_text(encoding="utf-8"),
    }


def _sections(page: str, level: int) -> dict[str, str]:
    """Heading text -> the HTML up to the next heading of the same level or higher."""
    parts = re.split(rf"<h([1-{level}])[^>]*>([^<]*)</h\1>", page)
    return {parts[i + 1]: parts[i + 2] for i in range(1, len(parts) - 2, 3)}


def test_report_groups_by_cell(cell_report: dict[str, Any]) -> None:
    page = cell_report["html"]
    machine, equivalence = page.split('<h2 id="equivalence"')
    cells = ["rnn", "lstm", "gru", "gru-reset-before"]
    titles = re.findall(r"<h3[^>]*>Cell: ([a-z-]+)", machine)
    assert titles == cells  # one section per cell, in the usual order
    assert re.findall(r"<h3[^>]*>Cell: ([a-z-]+)", equivalence) == cells
    bench = json.loads(BENCH_CELLS.read_text())["results"]
    sections = _sections(machine, 3)
    for cell in cells:
        body = next(v for k, v in sections.items() if k.startswith(f"Cell: {cell}"))
        mine = [r for r in bench if r["cell"] == cell.split("-")[0] and
                (r["reset_after"] is not False) == (cell != "gru-reset-before")]  # fmt: skip
        # every case of this cell is here (4 sizes), none of another cell's
        assert body.count("<h5>") == len({(r["seq_len"], r["hidden_size"]) for r in mine}) == 4
        medians = {r["median_s"] for r in mine if r["status"] == "ok"}
        others = {r["median_s"] for r in bench if r not in mine and r["status"] == "ok"}
        from rnnbench.report.plots import fmt_time

        shown = set(re.findall(r'<td class="num">([^<]*)</td>', body))
        assert {fmt_time(m) for m in medians} <= shown
        assert len(medians) == (8 if cell != "gru-reset-before" else 4)
        assert others  # (sanity: there are other cells' results to leak)
        if cell == "gru-reset-before":
            assert "skipped: backend &#x27;torch&#x27;" in body and "reset gate after" in body
    names = {f.stem for f in (cell_report["dir"] / "figures").glob("*.png")}
    for cell in cells:
        assert f"m0-{cell}-per-step" in names and f"m0-{cell}-efficiency-cpu-float32" in names
        assert f"equivalence-{cell}-error-per-step" in names
    # GFLOP/s counts the gates: an LSTM of the same sizes does 4x the work of an RNN
    lstm = next(r for r in bench if r["cell"] == "lstm" and r["backend"] == "numpy")
    rnn = next(
        r for r in bench if r["cell"] == "rnn" and r["backend"] == "numpy"
        and r["seq_len"] == lstm["seq_len"] and r["hidden_size"] == lstm["hidden_size"]
    )  # fmt: skip
    assert lstm["flops"] == 4 * rnn["flops"]


def test_check_tables_per_cell(cell_report: dict[str, Any]) -> None:
    equivalence = cell_report["html"].split('<h2 id="equivalence"')[1]
    sections = _sections(equivalence, 3)
    by_cell = {k.split(" ")[1]: v for k, v in sections.items() if k.startswith("Cell: ")}
    # the old single check file (a vanilla RNN) sits with the new file's rnn check
    assert by_cell["rnn"].count("<h4>") == 2
    assert all(by_cell[c].count("<h4>") == 1 for c in ("lstm", "gru", "gru-reset-before"))
    # the c_n column in the LSTM's table only
    assert "c_n max abs" in by_cell["lstm"]
    assert not any("c_n max abs" in by_cell[c] for c in ("rnn", "gru", "gru-reset-before"))
    checks = json.loads(CHECKS_CELLS.read_text())["checks"]
    c_n = checks[1]["rows"][0]["c_n_max_abs"]
    assert f"{c_n:.2e}" in by_cell["lstm"]
    assert "reset gate after the recurrent product" in by_cell["gru-reset-before"]
    assert "5 equivalence check(s) (cells: rnn, lstm, gru, gru-reset-before)" in cell_report["md"]


# --- padding cost -----------------------------------------------------------------------------


def _with_ragged() -> dict[str, Any]:
    """The bench fixture plus ragged results of its T=40, H=16 case (and numpy's T=10 one): mean
    length 30 of 40 (0.75 of the work), at known multiples of each full median."""
    data = _bench()
    data["schema"] = "rnnbench.bench/1.2"
    scale = {"numpy": 0.75, "torch": 1.0, "jax": 1.5}
    ragged = []
    for r in data["results"]:
        if r["status"] != "ok" or r["hidden_size"] != 16:
            continue
        if r["seq_len"] == 10 and r["backend"] != "numpy":
            continue
        t = r["seq_len"]
        rec = {**r, "lengths": "ragged", "lengths_mean": 0.75 * t, "lengths_min": t // 2,
               "lengths_max": t, "lengths_seed": 0, "samples": []}  # fmt: skip
        if r["backend"] == "tf1":
            why = "backend 'tf1' does not take sequence lengths\nHint: time it full length"
            rec.update(status="skipped", median_s=None, error=why)
        else:
            rec["median_s"] = r["median_s"] * (0.9 if t == 10 else scale[r["backend"]])
        ragged.append(rec)
    data["results"] += ragged
    return data


def _row(md: str, case: str, backend: str) -> str:
    return next(ln for ln in md.splitlines() if ln.startswith(f"| {case} | {backend} |"))


def test_padding_cost_table(tmp_path: Path, report: dict[str, Any]) -> None:
    # no ragged result, no table (and nothing else changes: see the tests above)
    assert "Padding cost" not in report["md"] and "ragged" not in report["md"]
    path = _write(tmp_path / "ragged.json", _with_ragged())
    md = write_report([path], tmp_path / "out", figures=False)["markdown"].read_text("utf-8")
    assert md.count("#### Padding cost · rnn") == 1
    table = md.split("#### Padding cost · rnn")[1].split("####")[0]
    assert "| case | backend | full | ragged | ragged / full | real work (mean L / T) |" in table
    case = "cpu float32 · B=4 T=40 I=16 H=16"
    # ratio ≈ the work fraction: saves padded steps; ≈ 1: full price; > 1: overhead on top
    numpy = _row(table, case, "numpy [hoisted]")
    assert "| 0.75 | 0.75 | 20..40, mean 30 of T=40 |" in numpy
    assert "saves the padded steps" in numpy
    torch = _row(table, case, "torch [eager]")
    assert "| 1.00 | 0.75 |" in torch and "full price: padded steps cost" in torch
    jax = _row(table, case, "jax [scan]")
    assert "| 1.50 | 0.75 |" in jax and "plus 50% padding overhead" in jax
    short = _row(table, "cpu float32 · B=4 T=10 I=16 H=16", "numpy [hoisted]")
    assert "| 0.90 | 0.75 |" in short and "saves part of the padded steps (40% of" in short
    # a backend that refused the lengths: its reason, without the hint
    tf1 = _row(table, case, "tf1 [graph]")
    assert "ragged skipped: backend 'tf1' does not take sequence lengths" in tf1
    assert "Hint" not in tf1
    # the ragged case is a case of its own in the per-case tables
    assert f"##### {case} · ragged lengths" in md and f"##### {case}\n" in md


def test_compare_never_matches_ragged_with_full(tmp_path: Path) -> None:
    from rnnbench.report.runs import compare_runs

    old = load(BENCH)
    new = load(_write(tmp_path / "ragged.json", _with_ragged()))
    assert isinstance(old, BenchFile) and isinstance(new, BenchFile)
    rows = compare_runs(old, new)
    ragged = [r for r in rows if r.case.endswith(" ragged")]
    assert len(ragged) == 5 and {r.verdict for r in ragged} == {"only-in-new"}
    assert {r.verdict for r in rows if r not in ragged} == {"same", "failed", "skipped"}


# --- training cost and gradient equivalence ---------------------------------------------------


def _with_training() -> dict[str, Any]:
    """The bench fixture plus training results of its T=40, H=16 case, at known multiples of
    each inference median; torch's without flops and gflops (a rate computed from the case:
    3x the forward's FLOPs), tf1's skipped for want of gradients."""
    data = _bench()
    data["schema"] = "rnnbench.bench/1.3"
    scale = {"numpy": 3.0, "torch": 2.0, "jax": 4.5}
    training = []
    for r in data["results"]:
        if r["status"] != "ok" or (r["seq_len"], r["hidden_size"]) != (40, 16):
            continue
        rec = {**r, "mode": "training", "samples": [], "compile_s": 0.5,
               "backward_path": f"{r['backend']} backward"}  # fmt: skip
        if r["backend"] == "tf1":
            why = "backend 'tf1' does not compute gradients\nHint: time its inference"
            rec.update(status="skipped", median_s=None, error=why)
        else:
            rec["median_s"] = r["median_s"] * scale[r["backend"]]
            rec["flops"] = 3 * r["flops"]
            rec["gflops"] = rec["flops"] / rec["median_s"] / 1e9
            rec["efficiency"] = rec["gflops"] / 29.72
        if r["backend"] == "torch":
            del rec["flops"], rec["gflops"]
        training.append(rec)
    data["results"] += training
    return data


def test_training_cost_table(tmp_path: Path, report: dict[str, Any]) -> None:
    # no training result, no table; a check without gradients or inputs shows as before
    for absent in ("Training cost", "training", "Gradient equivalence", "Inputs:"):
        assert absent not in report["md"]
    path = _write(tmp_path / "training.json", _with_training())
    md = write_report([path], tmp_path / "out", figures=False)["markdown"].read_text("utf-8")
    assert md.count("#### Training cost · rnn") == 1
    table = md.split("#### Training cost · rnn")[1].split("####")[0]
    assert "| case | backend | inference | training | training / inference |" in table
    case = "cpu float32 · B=4 T=40 I=16 H=16"
    forward = 2 * 4 * 40 * (16 + 16) * 16
    for backend, label, ratio in (("numpy", "numpy [hoisted]", "3.00"),
                                  ("torch", "torch [eager]", "2.00"),
                                  ("jax", "jax [scan]", "4.50")):  # fmt: skip
        row = _row(table, case, label)
        infer = next(
            r for r in _bench()["results"]
            if r["backend"] == backend and (r["seq_len"], r["hidden_size"]) == (40, 16)
        )  # fmt: skip
        from rnnbench.report.build import fmt_num

        # the training rate counts 3x the forward's FLOPs, recorded or computed from the case
        gflops = 3 * forward / (infer["median_s"] * float(ratio)) / 1e9
        assert f"| {ratio} | {fmt_num(gflops)} |" in row, row
        assert row.endswith(f"| {backend} backward |")
    tf1 = _row(table, case, "tf1 [graph]")
    assert "training skipped: backend 'tf1' does not compute gradients" in tf1
    assert "Hint" not in tf1
    # a training case is a case of its own, with an efficiency figure of its own (drawn alone
    # here: a whole report's figures take seconds)
    assert f"##### {case} · training" in md and f"##### {case}\n" in md
    assert "4 of them training steps" in md
    from rnnbench.report.model import is_training
    from rnnbench.report.plots import Palette, efficiency_figure

    group = gather([path]).machines[0]
    trained = dataclasses.replace(group, results=[r for r in group.results if is_training(r)])
    found = efficiency_figure(trained, Palette(), "m0-rnn", training=True)
    assert [f.name for f in found.figures] == ["m0-rnn-training-efficiency-cpu-float32"]
    assert found.figures[0].title.startswith("rnn · Training-step efficiency")


@pytest.fixture
def grad_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A real gradient check (``compare(..., grad=True)``) of a small LSTM on numpy in two dtypes
    and on a backend without gradients, as ``rnnbench check --grad --json`` writes it, with the
    inputs and machine record a current file carries."""
    import numpy as np

    import rnnbench as rb
    from rnnbench import registry

    info = rb.BackendInfo("bench-no-grads", "tests.bench_fakes:NoGradsCell")
    monkeypatch.setitem(registry._load_registry(), info.name, info)
    weights = rb.RNNWeights.random(rb.RNNSpec(3, 4, cell="lstm"), seed=0)
    x = np.random.default_rng(1).standard_normal((2, 6, 3))
    result = rb.compare(weights, x, backends=["numpy", info.name],
                        dtypes=["float32", "float64"], grad=True)  # fmt: skip
    check = result.to_dict()
    inputs = {"seed": 0, "grad": True, "dtypes": ["float32", "float64"], "batch": 2,
              "command": "rnnbench check --cell lstm --grad"}  # fmt: skip
    data = {
        "schema": "rnnbench.checks/1",
        "inputs": inputs,
        "machine": {"hostname": "grad-box", "cpu": {"model": "Test CPU"}},
        "checks": [check],
    }
    return {"data": data, "rows": check["rows"]}


def test_gradient_equivalence_table(tmp_path: Path, grad_check: dict[str, Any]) -> None:
    data = grad_check["data"]
    rows = data["checks"][0]["rows"]
    failing = next(r for r in rows if (r["backend"], r["dtype"]) == ("numpy", "float64"))
    assert failing["grad_status"] == "pass"  # made to fail at t=2 here
    failing.update(grad_status="fail", grad_reason="beyond tolerance", grad_first_bad_step=2)
    path = _write(tmp_path / "check.json", data)
    md = write_report([path], tmp_path / "out", figures=False)["markdown"].read_text("utf-8")
    section = md.split("Gradient equivalence:")[1]
    head = "| backend | dtype | gradients | dx err | dx bound | dh0 err | dh0 bound | dc0 err |"
    assert head in section and "| worst weight | weight err | weight bound |" in section
    rows = [ln for ln in section.splitlines() if ln.startswith(("| numpy", "| bench"))]
    passed = grad_check["rows"][0]
    errors, bounds = passed["grad_errors"], passed["grad_bounds"]
    weights = {k: errors[k] / bounds[k] for k in errors if k not in ("dx", "dh0", "dc0")}
    worst = max(weights, key=lambda k: weights[k])
    cells = [f"{errors[n]:.2e} | {bounds[n]:.2e}" for n in ("dx", "dh0", "dc0")]
    assert rows[0].startswith("| numpy | float32 | pass | " + " | ".join(cells))
    assert f"| {worst} | {errors[worst]:.2e} | {bounds[worst]:.2e} | - |" in rows[0]
    assert rows[2].startswith("| numpy | float64 | fail: beyond tolerance |")
    assert "| t=2 |" in rows[2]
    skipped = [r for r in rows if r.startswith("| bench-no-grads")]
    assert len(skipped) == 2 and all(
        "| skipped: backend 'bench-no-grads' does not compute gradients |" in r for r in skipped
    )
    # the check is headed by its inputs and machine; its forward table comes first
    check = md.split("#### ")[-1]
    inputs = check.index("Inputs: seed=0; grad=True; dtypes=float32, float64; batch=2.")
    forward = check.index("Max absolute error per backend")
    assert inputs < forward < check.index("Gradient equivalence:")
    assert "Command: `rnnbench check --cell lstm --grad`" in check
    assert "Checked on grad-box · Test CPU." in check
