"""``rnnbench bench --cluster`` on a local multi-node Ray cluster: three CPU nodes of one host,
two of machine kind "a" and one of kind "b" (``rnnbench-kind:`` node resources stand in for
machine kinds), timing the NumPy backend and a test backend registered at run time in this
process only (the nodes get it from the driver). Every case runs once per kind (or on every
node), a node runs one case group at a time, a killed node's cases are recorded as failed
and a resume runs only those, and the merged file goes through ``rnnbench report``.

The cluster starts once for the module (its start is most of the time). The last two tests
each kill a node, in file order: kind b's node, then one of kind a's."""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rnnbench import registry
from rnnbench.bench import BenchConfig, ResultsFile
from rnnbench.bench.cases import BenchCase, key_of
from rnnbench.bench.cluster import case_groups, run_cluster
from rnnbench.bench.progress import PlainReporter
from rnnbench.cli import main

ray = pytest.importorskip("ray")

# every test here shares one Ray cluster: under xdist (--dist loadgroup) one process runs them
pytestmark = pytest.mark.xdist_group("ray-cluster")

FAKE = registry.BackendInfo("bench-fake", "tests.bench_fakes:FakeCell")
TINY = {"batches": [2], "input_sizes": [3], "hidden_sizes": [4]}
FAST = {
    "processes": 1,
    "min_time": 0.01,
    "min_rounds": 2,
    "warmup_time": 0.0,
    "warmup_rounds": 1,
    "peak": False,
    "load_window": 0.01,
}
# numpy's default variant and the test backend's well-behaved one
SWEEP = {"backends": ["numpy", "bench-fake"], "variants": ["bench-fake:ok"], **TINY, **FAST}
# the test backend alone: a registered backend the nodes learn of from the driver
ONE = {**SWEEP, "backends": ["bench-fake"]}
KIND = "rnnbench-kind:"


class Fleet:
    def __init__(self, cluster: Any, nodes: dict[str, Any]) -> None:
        self.cluster = cluster
        self.nodes = nodes  # "a1" (the head), "a2", "b1" -> ray's node handle
        self.address = cluster.address

    def node_id(self, name: str) -> str:
        return str(self.nodes[name].node_id)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setitem(registry._load_registry(), FAKE.name, FAKE)
    quiet = {"include_dashboard": False, "include_log_monitor": False}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {f"{KIND}a": 1}, **quiet},
    )
    nodes = {"a1": cluster.head_node}
    nodes["a2"] = cluster.add_node(num_cpus=1, resources={f"{KIND}a": 1}, wait=False)
    nodes["b1"] = cluster.add_node(num_cpus=1, resources={f"{KIND}b": 1}, wait=False)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        yield Fleet(cluster, nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()
        mp.undo()


class Hook(PlainReporter):
    """Plain progress lines kept in memory; ``on_message`` sees each as it is printed."""

    def __init__(self, on_message: Callable[[str], None] | None = None) -> None:
        super().__init__(io.StringIO())
        self.on_message = on_message
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)
        if self.on_message is not None:
            self.on_message(text)
        super().message(text)


def results(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["results"], data["machines"]


def kind(record: dict[str, Any], machines: dict[str, Any]) -> str:
    return str(machines[record["machine_id"]]["cluster"]["kind"])


def case_keys(config: BenchConfig) -> set[tuple[Any, ...]]:
    pairs = [("numpy", "hoisted"), ("bench-fake", "ok")]
    return {g.case(b, v).key() for g in case_groups(config) for b, v in pairs}


def assert_one_at_a_time(records: list[dict[str, Any]]) -> None:
    """No two case groups overlapped on one node (the spans the node's actor recorded)."""
    spans: dict[str, set[tuple[float, float]]] = {}
    for r in records:
        stamp = r["cluster"]
        if "group_started" in stamp:
            spans.setdefault(stamp["ray_node_id"], set()).add(
                (stamp["group_started"], stamp["group_finished"])
            )
    for node, found in spans.items():
        ordered = sorted(found)
        for (_, end), (start, _) in itertools.pairwise(ordered):
            assert start >= end, f"two case groups overlapped on node {node}: {ordered}"


def test_every_case_once_per_kind_and_the_fleet_report(fleet: Fleet, tmp_path: Path) -> None:
    """--per machine through the command line: each case once on one node of each kind, the
    node reserved whole meanwhile (a one-CPU task pinned to it waits), then the report."""
    out = tmp_path / "fleet.json"
    tasks: dict[str, Any] = {}
    held: list[bool] = []

    def try_to_share(text: str) -> None:
        # While rnnbench's actor holds a node, Ray places nothing else there: a one-CPU task
        # pinned to each node of kind a, sent once the kind's first result is in, runs on the
        # idle node (the control) and still waits on the busy one as its second group starts.
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On

        if "(kind a): case 1/4 " in text:
            task = ray.remote(num_cpus=1)(lambda: 1)
            for name in ("a1", "a2"):
                tasks[name] = task.options(
                    scheduling_strategy=On(fleet.node_id(name), soft=False)
                ).remote()
        if "(kind a): case group 2/2" in text:
            busy = next(n for n in ("a1", "a2") if f"#{fleet.node_id(n)[:6]} " in text)
            idle = "a2" if busy == "a1" else "a1"
            ray.get(tasks[idle], timeout=60)
            held.append(not ray.wait([tasks[busy]], timeout=0)[0])

    hook = Hook(try_to_share)
    import rnnbench.bench.progress as progress

    argv = ["bench", "--cluster", fleet.address, "--backends", "numpy,bench-fake",
            "--variants", "bench-fake:ok", "--batch", "2", "--seq-len", "3,4",
            "--input-size", "3", "--hidden-size", "4", "--processes", "1",
            "--min-time", "0.01", "--min-rounds", "2", "--warmup", "0", "--no-peak",
            "--out", str(out)]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(progress, "make_reporter", lambda plain=None: hook)
        assert main(argv) == 0, "\n".join(hook.lines)
    assert held == [True], "a task ran on a node rnnbench's actor held"
    assert ray.get(list(tasks.values()), timeout=60) == [1, 1]  # once the run let it go

    records, machines = results(out)
    config = BenchConfig(seq_lens=[3, 4], **SWEEP)
    assert {r["status"] for r in records} == {"ok"}
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for r in records:
        by_kind.setdefault(kind(r, machines), []).append(key_of(r))
    assert sorted(by_kind) == ["a", "b"]
    for keys in by_kind.values():
        assert sorted(keys) == sorted(case_keys(config))  # each case once per kind
    nodes_a = {r["cluster"]["ray_node_id"] for r in records if kind(r, machines) == "a"}
    assert len(nodes_a) == 1  # without --split, one node of the kind runs all of its cases
    assert_one_at_a_time(records)
    assert any(line.startswith("node ") and "(kind a): case 1/4 " in line for line in hook.lines)

    report = tmp_path / "report"
    assert main(["report", str(out), "-o", str(report), "--no-figures"]) == 0
    text = (report / "report.md").read_text()
    fleet_part = text.split("## Machines side by side")[1].split("\n## ")[0]
    assert "| case | backend | a | b |" in fleet_part
    for backend in ("numpy [hoisted]", "bench-fake [ok]"):
        rows = [line for line in fleet_part.splitlines() if f"| {backend} |" in line]
        assert len(rows) == 2
        for row in rows:
            assert "(1.00×)" in row  # one of the two machines is the fastest
    assert "geometric mean ratio to the fastest machine: a " in fleet_part


def test_per_node_runs_every_case_on_every_node_and_a_dead_node_fails_its_own(
    fleet: Fleet, tmp_path: Path
) -> None:
    """--per node: every case on every node. Node b1 dies as its second case group starts:
    that group and the third are recorded as failed, naming it, the other nodes finish
    theirs, and the exit status is 1."""
    out = tmp_path / "nodes.json"
    config = BenchConfig(seq_lens=[3, 4, 5], out=str(out), **ONE)
    victim = fleet.nodes["b1"]

    def kill(text: str) -> None:
        if "(kind b): case group 2/3" in text:
            fleet.cluster.remove_node(victim)

    summary = run_cluster(config, fleet.address, per="node", reporter=Hook(kill))
    assert summary.exit_code() == 1
    records, machines = results(out)
    per_node: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        per_node.setdefault(r["cluster"]["ray_node_id"], {})[r["seq_len"]] = r
        # the two nodes of kind a share a host: each still has a machine id of its own
        assert machines[r["machine_id"]]["cluster"]["ray_node_id"] == r["cluster"]["ray_node_id"]
    assert len(machines) == 3 and len(records) == 9
    for name in ("a1", "a2"):
        assert sorted(per_node[fleet.node_id(name)]) == [3, 4, 5]
        assert {r["status"] for r in per_node[fleet.node_id(name)].values()} == {"ok"}
    b = per_node[fleet.node_id("b1")]
    assert b[3]["status"] == "ok"
    for t, why in ((4, "died while running this case group"), (5, "not run: node")):
        assert b[t]["status"] == "failed"
        assert f"node {b[3]['cluster']['node']} (kind b)" in b[t]["error"]
        assert why in b[t]["error"]
    for machine in machines.values():
        # the node's environment (this process's, which started it), not Ray's thread default
        assert machine["env"].get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")
    assert_one_at_a_time(records)


def test_split_a_dead_nodes_groups_move_and_a_resume_runs_its_lost_one(
    fleet: Fleet, tmp_path: Path
) -> None:
    """--split: kind a's three case groups are shared by its two nodes, each group on one.
    Node a2 dies as its first group starts: that group is recorded as failed, naming it, and
    the rest of the kind's groups run on a1. A resume runs the lost group and nothing else.
    (Kind b's node is gone after the test before; its groups are left out here.)"""
    out = tmp_path / "split.json"
    config = BenchConfig(seq_lens=[3, 4, 5], out=str(out), **ONE)
    a2 = f"#{fleet.node_id('a2')[:6]} (kind a): case group "

    def kill(text: str) -> None:
        if a2 in text and "a2" in fleet.nodes:
            fleet.cluster.remove_node(fleet.nodes.pop("a2"))

    summary = run_cluster(config, fleet.address, split=True, reporter=Hook(kill))
    assert summary.exit_code() == 1
    records, machines = results(out)
    kind_a = {r["seq_len"]: r for r in records if kind(r, machines) == "a"}
    assert sorted(kind_a) == [3, 4, 5]  # each case once
    lost = [t for t, r in kind_a.items() if r["status"] != "ok"]
    assert len(lost) == 1 and kind_a[lost[0]]["status"] == "failed"
    why = kind_a[lost[0]]["error"]
    assert "died while running this case group" in why and a2.split(" ")[0] in why
    # the other two groups ran on the other node of the kind, which took over
    assert {r["cluster"]["node"] for t, r in kind_a.items() if t not in lost} == {
        n for n in {r["cluster"]["node"] for r in kind_a.values()} if a2.split(" ")[0] not in n
    }
    assert_one_at_a_time(records)

    again = run_cluster(config, fleet.address, split=True, reporter=Hook())
    assert [(r["cluster"]["kind"], r["seq_len"]) for r in again.records] == [("a", lost[0])]
    records, machines = results(out)
    assert {r["status"] for r in records if kind(r, machines) == "a"} == {"ok"}
    assert_one_at_a_time(records)


def test_merge_run_keeps_a_case_once_per_machine(tmp_path: Path) -> None:
    """The driver's file: a case measured on two machines is kept twice, measured again on
    one machine replaced; runtime facts merge per backend; a held peak stays."""
    path = tmp_path / "merged.json"
    case = BenchCase("numpy", "hoisted", "cpu", "float32", 2, 3, 3, 4)
    base = {**case.to_dict(), "status": "ok", "median_s": 1.0, "samples": [1.0]}
    file = ResultsFile(path)
    peak = {"gflops": 5.0, "key": "cpu/float32", "machine_id": "m1", "peak_id": "cpu/float32@m1"}
    file.merge_run(
        {
            "machine": {"hostname": "one", "machine_id": "m1"},
            "machines": {"m1": {"hostname": "one", "threads": {"numpy": 1}, "tf32": {}}},
            "peaks": {"cpu/float32@m1": peak},
            "runs": [{"run_id": "m1/t0", "n": 1}],
            "results": [{**base, "machine_id": "m1"}],
        }
    )
    file.merge_run(
        {
            "machines": {"m2": {"hostname": "two"}},
            "results": [{**base, "machine_id": "m2", "median_s": 2.0}],
        }
    )
    file.merge_run(
        {
            "machines": {"m1": {"hostname": "one", "threads": {"torch": 2}, "tf32": {}}},
            "peaks": {"cpu/float32@m1": {**peak, "gflops": 9.0}},
            "runs": [{"run_id": "m1/t0", "n": 2}],
            "results": [{**base, "machine_id": "m1", "median_s": 3.0}],
        }
    )
    data = json.loads(path.read_text())
    assert sorted((r["machine_id"], r["median_s"]) for r in data["results"]) == [
        ("m1", 3.0), ("m2", 2.0)
    ]  # fmt: skip
    assert data["machines"]["m1"]["threads"] == {"numpy": 1, "torch": 2}
    assert data["peaks"]["cpu/float32@m1"]["gflops"] == 5.0
    assert data["machine"]["machine_id"] == "m1" and data["peak"]["cpu/float32"]["gflops"] == 5.0
    assert data["runs"] == [{"run_id": "m1/t0", "n": 2}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split"], "--split is an option of --cluster"),
        (["--per", "node"], "--per is an option of --cluster"),
        (["--cluster", "ray", "--per", "node", "--split"], "--per node runs every case"),
        (["--cluster", "somewhere"], "is not a Ray address"),
    ],
)
def test_cluster_options_are_checked_before_anything_runs(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--backends", "numpy", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Hint:" in err


def test_a_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rnnbench.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without Ray
    with pytest.raises(BackendUnavailableError, match=r"pip install 'rnnbench\[ray\]'"):
        run_cluster(BenchConfig(backends=["numpy"]), "ray")
