"""``rnnbench report``: the files it writes, that the HTML needs no network, that every backend,
machine and failure shows, that several machines merge grouped, and that schema versions are
read or refused by the stated rule. The fixtures are a small real CPU run (trimmed, with a
timed-out, a failed and a skipped result added) and a real ``rnnbench check --json``."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rnnbench.cli import main
from rnnbench.report.build import write_report
from rnnbench.report.model import gather, machine_label
from rnnbench.report.results import ResultsFileError, load

DATA = Path(__file__).parent / "data"
BENCH = DATA / "bench_cpu_small.json"
CHECK = DATA / "check_small.json"
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
    assert {"m0-per-step", "m0-efficiency-cpu-float32", "equivalence-error-per-step"} <= names
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
    assert names == {"m0-per-step", "m0-efficiency-cpu-float32"}


def test_schema_rule(tmp_path: Path) -> None:
    a = _bench()
    a["schema"] = "rnnbench.bench/1.3"  # a newer minor: read, with a note
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
