"""Machines side by side: each case's median on every machine of the files, and how much
slower each machine is than the fastest one for that case.

A column is a machine as the run that measured it grouped it: the machine kind of a cluster
run with ``--per machine`` (every node of the kind in one column, so a sweep split between
identical nodes reads as one machine), one node of a ``--per node`` run, or else the machine of
a local run as the rest of the report labels it (host, CPU, GPUs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rnnbench.report.document import Block, Heading, Para, Table
from rnnbench.report.model import (
    CELL_TITLES,
    ReportData,
    case_title,
    cell_of,
    cell_order,
    machine_label,
    series_label,
)
from rnnbench.report.plots import fmt_time
from rnnbench.report.results import BenchFile, ResultsFileError, case_key, is_ok, load, run_key


def column_of(machine: dict[str, Any], mid: str | None) -> tuple[str, str]:
    """(key, label) of the column a result measured on ``machine`` goes in."""
    cluster = machine.get("cluster")
    if isinstance(cluster, dict) and cluster.get("kind"):
        kind = str(cluster.get("kind_label") or cluster["kind"])
        if cluster.get("per") == "node":
            return f"node:{mid}", f"{cluster.get('node')} ({kind})"
        return f"kind:{cluster['kind']}", kind
    label = machine_label(machine)
    return f"machine:{label}", label


class _Column:
    def __init__(self, label: str) -> None:
        self.label = label
        self.machines: dict[str, dict[str, Any]] = {}  # machine id -> record
        self.nodes: list[str] = []
        self.results: dict[tuple[Any, ...], dict[str, Any]] = {}  # run key -> latest result


def _columns(paths: list[str]) -> list[_Column]:
    """Every bench result of the files in its column; a later file's result of the same case
    on the same column replaces an earlier one (a rerun), as in the rest of the report."""
    columns: dict[str, _Column] = {}
    for path in paths:
        try:
            found = load(Path(path))
        except ResultsFileError:
            continue  # the report already says why it could not read it
        if not isinstance(found, BenchFile):
            continue
        for r in found.results:
            mid = r.get("machine_id")
            machine = found.machines.get(mid) if isinstance(mid, str) else None
            if not isinstance(machine, dict):
                machine = found.machine
            key, label = column_of(machine, mid if isinstance(mid, str) else None)
            column = columns.setdefault(key, _Column(label))
            if isinstance(mid, str):
                column.machines.setdefault(mid, machine)
            node = (
                (r.get("cluster") or {}).get("node") if isinstance(r.get("cluster"), dict) else None
            )
            if node and node not in column.nodes:
                column.nodes.append(str(node))
            column.results[run_key(r)] = r
    # two kinds of one label (same hardware, other library versions) must still read apart
    seen: dict[str, int] = {}
    for column in columns.values():
        seen[column.label] = seen.get(column.label, 0) + 1
    for key, column in columns.items():
        if seen[column.label] > 1:
            column.label = f"{column.label} [{key.split(':', 1)[1][:9]}]"
    return sorted(columns.values(), key=lambda c: c.label)


def _legend(columns: list[_Column]) -> Table:
    rows = []
    for c in columns:
        hosts, cpus, gpus = set(), set(), set()
        for m in c.machines.values():
            hosts.add(str(m.get("hostname") or "?"))
            cpu = m.get("cpu")
            cpus.add(str((cpu.get("model") if isinstance(cpu, dict) else cpu) or "?"))
            names = [str(g.get("name")) for g in m.get("gpus") or [] if isinstance(g, dict)]
            gpus.add(", ".join(names) or "none")
        measured = sum(1 for r in c.results.values() if is_ok(r))
        rows.append(
            [
                c.label,
                "; ".join(sorted(cpus)),
                "; ".join(sorted(gpus)),
                ", ".join(c.nodes) if c.nodes else ", ".join(sorted(hosts)),
                f"{measured} of {len(c.results)}",
            ]
        )
    return Table(
        ["machine", "CPU", "GPU", "nodes (or hosts)", "measured"],
        rows,
        caption="The machines compared: a cluster run's machine kind (every node of it), "
        "one node of a --per node run, or a machine of a local run",
    )


def _cell(result: dict[str, Any] | None, fastest: float) -> str:
    if result is None:
        return "-"
    if not is_ok(result):
        return str(result.get("status") or "-")
    median = float(result["median_s"])
    return f"{fmt_time(median)} ({median / fastest:.2f}×)" if fastest > 0 else fmt_time(median)


def fleet_blocks(data: ReportData) -> list[Block]:
    """The side-by-side section, when the files hold results of two machines or more."""
    columns = _columns(data.files)
    if len(columns) < 2:
        return []
    rows_by_cell: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for column in columns:
        for key, r in column.results.items():
            rows_by_cell.setdefault(cell_of(r), {}).setdefault(key, r)
    blocks: list[Block] = [
        Heading(2, "Machines side by side", "fleet"),
        Para(
            "The median time of each case on each machine, and in brackets its ratio to the "
            "fastest machine for that case (1.00× is the fastest; 2.00× takes twice as long). "
            "A status instead of a time: the case was not measured there; '-': not run there."
        ),
        _legend(columns),
    ]
    ratios: list[list[float]] = [[] for _ in columns]
    for cell in cell_order(rows_by_cell):
        rows = []
        for key, first in rows_by_cell[cell].items():
            found = [c.results.get(key) for c in columns]
            times = [float(r["median_s"]) for r in found if r is not None and is_ok(r)]
            fastest = min(times) if times else math.nan
            rows.append(
                [case_title(case_key(first)), series_label(first)]
                + [_cell(r, fastest) for r in found]
            )
            if len(times) == len(columns):
                for i, got in enumerate(found):
                    assert got is not None
                    ratios[i].append(float(got["median_s"]) / fastest)
        blocks.append(Heading(3, f"Cell: {CELL_TITLES.get(cell, cell)}", f"fleet-{cell}"))
        blocks.append(
            Table(
                ["case", "backend", *(c.label for c in columns)],
                rows,
                numeric=set(range(2, 2 + len(columns))),
            )
        )
    if ratios[0]:
        means = [math.exp(sum(map(math.log, r)) / len(r)) for r in ratios]
        blocks.append(
            Para(
                f"Over the {len(ratios[0])} case(s) every machine measured, the geometric mean "
                "ratio to the fastest machine: "
                + ", ".join(f"{c.label} {m:.2f}×" for c, m in zip(columns, means))
                + "."
            )
        )
    return blocks
