"""One sweep over a fleet of machines, on Ray: ``rnnbench bench --cluster``.

The unit of work is a *case group*: the cases of the sweep that differ only in backend and
variant (one device, dtype, cell, size, padding, mode and thread count). A node runs a group
with :func:`rnnbench.bench.run_bench`, exactly as a local run does (same workers, isolation,
timing and machine record), into a results file of its own, and sends that file's records back;
the driver merges them into ``--out`` (:meth:`ResultsFile.merge_run`) as each group finishes.

Measurements are kept apart by reserving nodes whole: rnnbench's actor on a node asks Ray for
every CPU (and GPU) the node has, so Ray schedules nothing else there, rnnbench's own tasks
included, while it measures; and the actor runs one group at a time.

Nodes are grouped by machine *kind*: the CPU model, the GPU models and the library versions
their machine record shows, or a custom node resource ``rnnbench-kind:NAME`` (``ray start
--resources '{"rnnbench-kind:NAME": 1}'``) that says it outright. ``per="machine"`` runs every
case once per kind (on one node of it, or split between its nodes); ``per="node"`` runs every
case on every node.

Ray is imported lazily: nothing else in rnnbench needs it (``pip install 'rnnbench[ray]'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnbench.bench.cases import KEY_FIELDS, BenchCase, expand_cases, key_of
from rnnbench.bench.machine import machine_id, machine_record
from rnnbench.bench.progress import PlainReporter, Reporter, describe
from rnnbench.bench.results import RESULT_FIELDS, ResultsFile
from rnnbench.bench.runner import BenchConfig, BenchSummary, run_bench
from rnnbench.errors import BackendUnavailableError, RNNBenchError, SpecError
from rnnbench.registry import BackendInfo, backend_info, list_backends, register_backend

KIND_RESOURCE = "rnnbench-kind:"
PER_CHOICES = ("machine", "node")
RAY_HINT = "pip install 'rnnbench[ray]'"
# The fields of a case key that a case group shares; backend and variant vary inside it.
GROUP_FIELDS = tuple(f for f in KEY_FIELDS if f not in ("backend", "variant"))
_GROUP_INDEX = tuple(i for i, f in enumerate(KEY_FIELDS) if f in GROUP_FIELDS)
# Seconds the driver waits for the machine records of every node before leaving out those
# that did not answer.
PROBE_TIMEOUT = 300.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _short_hash(value: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:n]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(
            f"--cluster runs on Ray, which is not installed here ({exc})", RAY_HINT
        ) from exc
    return ray


# --- case groups ----------------------------------------------------------------------------


def group_values(record: dict[str, Any]) -> tuple[Any, ...]:
    """The group part of a result's case key (everything but backend and variant)."""
    key = key_of(record)
    return tuple(key[i] for i in _GROUP_INDEX)


@dataclass(frozen=True)
class CaseGroup:
    """Every case of a sweep that differs only in backend and variant: what one node runs at
    a time, with one ``run_bench`` (so that it interleaves the backends as a local run does)."""

    index: int  # 1-based, in the sweep's order
    values: tuple[Any, ...]  # of GROUP_FIELDS

    @property
    def fields(self) -> dict[str, Any]:
        return dict(zip(GROUP_FIELDS, self.values))

    def case(self, backend: str, variant: str) -> BenchCase:
        return BenchCase(backend=backend, variant=variant, **self.fields)

    def holds(self, record: dict[str, Any]) -> bool:
        return group_values(record) == self.values

    def config(self, base: BenchConfig, out: str | None) -> BenchConfig:
        """``base`` narrowed to this group (every other field, including any the runner adds
        later, passes through)."""
        f = self.fields
        return dataclasses.replace(
            base,
            device=f["device"],
            dtypes=[f["dtype"]],
            batches=[f["batch"]],
            seq_lens=[f["seq_len"]],
            input_sizes=[f["input_size"]],
            hidden_sizes=[f["hidden_size"]],
            layers=[f["layers"]],
            bidirectional=[f["bidirectional"]],
            threads=[f["threads"]],
            cells=[(f["cell"], f["reset_after"])],
            nonlinearities=[f["nonlinearity"]],
            lengths=[f["lengths"]],
            modes=[f["mode"]],
            out=out,
        )

    def label(self) -> str:
        case = self.case("-", "-")
        cell = case.cell_name + (f" {case.nonlinearity}" if case.nonlinearity != "tanh" else "")
        return f"{case.device} {case.dtype} {cell} {case.size_label()}"


def case_groups(config: BenchConfig) -> list[CaseGroup]:
    """The sweep's case groups, in the order a local run would take them."""
    cases = expand_cases(
        [("-", "-")],
        device=config.device,
        dtypes=config.dtypes,
        batches=config.batches,
        seq_lens=config.seq_lens,
        input_sizes=config.input_sizes,
        hidden_sizes=config.hidden_sizes,
        layers=config.layers,
        bidirectional=config.bidirectional,
        threads=config.threads,
        cells=config.cells,
        nonlinearities=config.nonlinearities,
        lengths=config.lengths,
        modes=config.modes,
    )
    seen: dict[tuple[Any, ...], None] = {}
    for case in cases:
        seen.setdefault(group_values(case.to_dict()), None)
    return [CaseGroup(i, values) for i, values in enumerate(seen, start=1)]


# --- machine kinds --------------------------------------------------------------------------


def kind_of(machine: dict[str, Any]) -> tuple[str, str]:
    """(key, label) of a machine record's kind: the one a cluster run recorded, or else the
    CPU model, the GPU models and the library versions it shows (so that a laptop's own run
    counts for a node of the same kind when a cluster run resumes its file)."""
    cluster = machine.get("cluster")
    if isinstance(cluster, dict) and cluster.get("kind"):
        return str(cluster["kind"]), str(cluster.get("kind_label") or cluster["kind"])
    cpu = machine.get("cpu")
    model = cpu.get("model") if isinstance(cpu, dict) else cpu
    gpus = sorted(str(g.get("name")) for g in machine.get("gpus") or [] if isinstance(g, dict))
    versions = machine.get("versions") if isinstance(machine.get("versions"), dict) else {}
    key = "hw-" + _short_hash([model, gpus, versions], 10)
    return key, f"{model or 'unknown CPU'} · {', '.join(gpus) or 'no GPU'}"


@dataclass
class NodeInfo:
    """One Ray node: what Ray says of it and what its probe reported."""

    node_id: str
    address: str
    cpus: float
    gpus: float
    machine: dict[str, Any]
    kind: str
    kind_label: str
    override: bool  # the kind came from an ``rnnbench-kind:`` resource
    name: str = ""  # for messages: the address, with the node id when several share it
    fleet_id: str = ""  # the machine_id its results get in the driver's file
    alive: bool = True
    busy: bool = False  # a case group is in flight

    def cluster_record(self, per: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "kind_label": self.kind_label,
            "per": per,
            "node": self.name,
            "ray_node_id": self.node_id,
            "address": self.address,
            "cpus": self.cpus,
            "gpus": self.gpus,
        }


def _probe() -> dict[str, Any]:
    """Runs on a node (a Ray task): its machine record."""
    return machine_record()


# --- on a node ------------------------------------------------------------------------------


class _Collect:
    """A reporter inside a node: keeps the run's messages (GEMM peak, warnings) to send back;
    the driver prints each result itself, naming the node."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, total: int, already_done: int, path: str | None) -> None:
        pass

    def case_started(self, case: BenchCase) -> None:
        pass

    def case_progress(self, case: BenchCase, median_s: float | None, rounds: int) -> None:
        pass

    def case_finished(self, case: BenchCase, record: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def stop(self, summary: BenchSummary) -> None:
        pass


def _rename(value: Any, old: str, new: str) -> Any:
    """``value`` with every ``old`` machine id in its strings (and keys) replaced by ``new``:
    peak, limit and run ids all embed the machine id they belong to."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {_rename(k, old, new): _rename(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    return value


def _drop_ray_thread_default() -> None:
    """Ray sets OMP_NUM_THREADS to an actor's CPU count when the node's environment leaves it
    unset; a local run leaves it unset (each library then picks its own default, torch the
    physical cores), so the actor drops what Ray set and its runs see the node's own
    environment. The node's environment is that of the raylet, this process's parent."""
    if "OMP_NUM_THREADS" not in os.environ:
        return
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as fh:
            parent = fh.read().split(b"\0")
    except OSError:
        return  # no /proc (macOS): kept, and the machine record's env shows it
    if not any(item.startswith(b"OMP_NUM_THREADS=") for item in parent):
        del os.environ["OMP_NUM_THREADS"]


class NodeRunner:
    """rnnbench's actor on one node. It is created holding every CPU and GPU of the node, so
    that Ray places nothing else there while it lives, and Ray runs its calls one at a time:
    at most one benchmark runs on the node at any moment.

    It keeps one results file of its own (a temporary folder on the node) for its lifetime,
    so that the GEMM peak and what the runner keeps per machine are measured once per node,
    and before a group it adds the results the driver already holds for it, which
    ``run_bench`` then skips, as it does when a local run resumes."""

    def __init__(
        self,
        node: dict[str, Any],
        backends: Sequence[BackendInfo],
        peaks: dict[str, dict[str, Any]],
    ) -> None:
        _drop_ray_thread_default()
        known = set(list_backends())
        for info in backends:
            # backends registered at run time in the driver (not installed on the node)
            if info.name not in known:
                register_backend(info)
        self.node = node
        self.fleet_id = str(node["fleet_id"])
        self.runner_id = str(node["runner_id"])
        self.folder = tempfile.mkdtemp(prefix="rnnbench-node-")
        self.path = os.path.join(self.folder, "results.json")
        self.pairs: list[tuple[str, str]] = []
        seed = ResultsFile(self.path)
        for peak in peaks.values():
            if peak.get("machine_id") == self.fleet_id:
                mine = _rename(peak, self.fleet_id, self.runner_id)
                seed.data["peaks"][mine["peak_id"]] = mine
        seed.save()

    def plan(self, config: BenchConfig) -> list[tuple[str, str]]:
        """The (backend, variant) pairs this node runs for ``config``: the runner's own plan
        (a worker per backend asks it for its variants), so that the driver knows every case
        of a group before it runs, to tell a finished group from a partial one and to record
        each case of a group lost with its node."""
        self.pairs = _local_pairs(config)
        return self.pairs

    def run_group(self, config: BenchConfig, done: list[dict[str, Any]]) -> dict[str, Any]:
        """Run one case group (``config``, narrowed to it) and return its records, with this
        node's machine record and peaks, under the driver's machine id for the node."""
        if done:
            file = ResultsFile(self.path)
            held = {key_of(r) for r in file.results if r.get("status") == "ok"}
            file.data["results"] += [r for r in done if key_of(r) not in held]
            file.save()
        reporter = _Collect()
        started = time.time()
        summary = run_bench(dataclasses.replace(config, out=self.path), reporter)
        finished = time.time()
        data = ResultsFile(self.path).data
        mid = data["machine"].get("machine_id") or self.runner_id
        stamp = {
            "node": self.node["name"],
            "ray_node_id": self.node["node_id"],
            "kind": self.node["kind"],
            "group_started": started,
            "group_finished": finished,
        }
        results = [{**r, "cluster": stamp} for r in summary.records]
        payload: dict[str, Any] = {
            "results": results,
            "already_done": summary.already_done,
            "interrupted": summary.interrupted,
            "messages": reporter.messages,
            "pairs": self.pairs,
            "started": started,
            "finished": finished,
        }
        if mid in data["machines"]:
            machine = {**data["machines"][mid], "cluster": self.node["cluster"]}
            payload["machine"] = {**machine, "machine_id": mid}
            payload["machines"] = {mid: machine}
            payload["peaks"] = {
                pid: p
                for pid, p in data["peaks"].items()
                if isinstance(p, dict) and p.get("machine_id") == mid
            }
            for name, value in data.items():
                # what the runner keeps besides (the limit model, its run records), as is
                if name not in payload and name not in ("schema", "peak"):
                    payload[name] = value
            payload["results"] = results
        if mid != self.fleet_id:
            payload = _rename(payload, mid, self.fleet_id)
        return payload

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the driver -----------------------------------------------------------------------------


@dataclass
class _Lane:
    """What one node or one machine kind has to run, and the nodes that may run it."""

    name: str  # "kind a", or "node 10.0.0.2 (kind a)"
    nodes: list[NodeInfo]
    active: int  # how many of ``nodes`` take groups at once (all with --split, else one)
    queue: deque[CaseGroup] = field(default_factory=deque)
    done: set[tuple[Any, ...]] = field(default_factory=set)  # case keys measured already
    pairs: list[tuple[str, str]] | None = None  # known once a node of the lane has planned
    total: int = 0
    counted: int = 0
    started: list[NodeInfo] = field(default_factory=list)
    kind: str | None = None  # with --per machine: the kind whose cases these are

    def learn(self, pairs: Sequence[Sequence[str]], groups: int) -> None:
        """The node's plan: the (backend, variant) pairs of every group of this lane."""
        if self.pairs is None:
            self.pairs = [(str(b), str(v)) for b, v in pairs]
            self.total = len(self.pairs) * groups


def _connect(ray: Any, address: str) -> bool:
    """Connect to (or start) Ray; True when this call started the connection, so that the
    run ends it. A process already connected (a notebook, a test) keeps its connection."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "ray":
            # "local": a new instance on this machine even when RAY_ADDRESS names a cluster
            ray.init(address="local", include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RNNBenchError(
            f"cannot connect to a Ray cluster at {address!r}: {_first_line(exc)}",
            "start one (`ray start --head` on one machine, `ray start --address HEAD:6379` on "
            "the others) and pass --cluster auto on a node of it, or --cluster "
            "ray://HEAD:10001 from elsewhere; --cluster ray starts a local one",
        ) from exc
    return True


class _Fleet:
    def __init__(
        self, ray: Any, config: BenchConfig, per: str, split: bool, reporter: Reporter
    ) -> None:
        self.ray = ray
        self.config = config
        self.per = per
        self.split = split
        self.reporter = reporter
        self.file = ResultsFile(config.out)
        self.summary = BenchSummary(config.out)
        self.groups = case_groups(config)
        self.actors: dict[str, Any] = {}  # node id -> actor handle
        self.pending: dict[Any, tuple[str, NodeInfo, _Lane, CaseGroup | None]] = {}
        self.lanes_: list[_Lane] = []
        self._actor_class: Any = None
        # groups lost before any node said which (backend, variant) pairs run: recorded once
        # one has (or, at the end, from this machine's own plan)
        self.deferred: list[tuple[NodeInfo, _Lane, list[CaseGroup], str]] = []

    def say(self, text: str) -> None:
        self.reporter.message(text)

    # --- nodes ---------------------------------------------------------------------------
    def discover(self) -> list[NodeInfo]:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = [n for n in ray.nodes() if n.get("Alive")]
        usable = []
        for n in alive:
            if float(n.get("Resources", {}).get("CPU", 0)) >= 1:
                usable.append(n)
            else:
                self.say(
                    f"node {n.get('NodeManagerAddress')} offers Ray no CPU (a head started with "
                    "--num-cpus 0?): not used"
                )
        if not usable:
            raise RNNBenchError(
                "the Ray cluster has no node with a CPU to run a benchmark on",
                "add nodes with `ray start --address HEAD:6379` (each offers Ray its CPUs)",
            )
        probe = ray.remote(num_cpus=0)(_probe)
        refs = {
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(): n
            for n in usable
        }
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT)
        nodes: list[NodeInfo] = []
        for ref in late:
            self.say(f"node {refs[ref]['NodeManagerAddress']} did not answer: not used")
            ray.cancel(ref, force=True)
        for ref in ready:
            n = refs[ref]
            try:
                machine = ray.get(ref)
            except Exception as exc:  # a node lost while probing is left out, not fatal
                self.say(f"node {n['NodeManagerAddress']} failed: {_first_line(exc)}: not used")
                continue
            resources = n.get("Resources", {})
            named = sorted(
                r[len(KIND_RESOURCE) :] for r in resources if r.startswith(KIND_RESOURCE)
            )
            if named:
                kind, label, override = named[0], named[0], True
            else:
                (kind, label), override = kind_of(machine), False
            nodes.append(
                NodeInfo(
                    node_id=n["NodeID"],
                    address=str(n.get("NodeManagerAddress")),
                    cpus=float(resources.get("CPU", 0)),
                    gpus=float(resources.get("GPU", 0)),
                    machine=machine,
                    kind=kind,
                    kind_label=label,
                    override=override,
                )
            )
        if not nodes:
            raise RNNBenchError(
                "no node of the Ray cluster answered", "check the cluster with `ray status`"
            )
        nodes.sort(key=lambda n: (n.kind, n.address, n.node_id))
        self._name(nodes)
        return nodes

    def _name(self, nodes: list[NodeInfo]) -> None:
        """Names for messages and machine ids for the file. A node's machine id is its
        machine record's (the hostname is part of it); a kind named by a resource, or several
        nodes of one host run one by one (--per node), make it a hash that tells them apart."""
        by_address: dict[str, int] = {}
        by_mid: dict[str, int] = {}
        for n in nodes:
            by_address[n.address] = by_address.get(n.address, 0) + 1
            mid = machine_id(n.machine)
            by_mid[mid] = by_mid.get(mid, 0) + 1
        labels: dict[str, set[str]] = {}
        for n in nodes:
            labels.setdefault(n.kind_label, set()).add(n.kind)
        for n in nodes:
            n.name = n.address if by_address[n.address] == 1 else f"{n.address}#{n.node_id[:6]}"
            if len(labels[n.kind_label]) > 1:
                # same hardware, other library versions: another kind, which the label must show
                n.kind_label = f"{n.kind_label} · {n.kind[3:9]}"
            mid = machine_id(n.machine)
            extra = []
            if n.override:
                extra.append(f"kind={n.kind}")
            if self.per == "node" and by_mid[mid] > 1:
                extra.append(f"node={n.node_id}")
            n.fleet_id = _short_hash([mid, *extra]) if extra else mid

    def lanes(self, nodes: list[NodeInfo]) -> list[_Lane]:
        lanes: list[_Lane] = []
        if self.per == "node":
            for n in nodes:
                lane = _Lane(f"node {n.name} (kind {n.kind_label})", [n], 1)
                lane.done = self._done(lambda m, mid, n=n: mid == n.fleet_id)
                lanes.append(lane)
        else:
            kinds: dict[str, list[NodeInfo]] = {}
            for n in nodes:
                kinds.setdefault(n.kind, []).append(n)
            for kind, members in kinds.items():
                lane = _Lane(
                    f"kind {members[0].kind_label}",
                    members,
                    len(members) if self.split else 1,
                    kind=kind,
                )
                lane.done = self._done(lambda m, mid, kind=kind: kind_of(m)[0] == kind)
                lanes.append(lane)
        for lane in lanes:
            lane.queue.extend(self.groups)
        return lanes

    def _done(self, mine: Any) -> set[tuple[Any, ...]]:
        """Case keys the file holds measured ("ok") on machines that ``mine`` accepts."""
        machines = self.file.data["machines"]
        out = set()
        for r in self.file.results:
            mid = r.get("machine_id")
            machine = machines.get(mid) if isinstance(mid, str) else None
            if r.get("status") == "ok" and isinstance(machine, dict) and mine(machine, mid):
                out.add(key_of(r))
        return out

    # --- actors --------------------------------------------------------------------------
    def start(self, node: NodeInfo, lane: _Lane) -> None:
        """Reserve ``node`` (an actor holding all its CPUs and GPUs) and ask for its plan."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        spec = {
            "name": node.name,
            "node_id": node.node_id,
            "kind": node.kind,
            "fleet_id": node.fleet_id,
            "runner_id": machine_id(node.machine),
            "cluster": node.cluster_record(self.per),
        }
        infos = [backend_info(name) for name in self._backend_names()]
        if self._actor_class is None:
            self._actor_class = self.ray.remote(NodeRunner)
        actor = self._actor_class.options(
            num_cpus=node.cpus,
            num_gpus=node.gpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            max_restarts=0,
            max_task_retries=0,
        ).remote(spec, infos, self.file.data["peaks"])
        self.actors[node.node_id] = actor
        lane.started.append(node)
        self.say(
            f"node {node.name} (kind {node.kind_label}): reserving its {node.cpus:g} CPU(s)"
            + (f" and {node.gpus:g} GPU(s)" if node.gpus else "")
        )
        self.pending[actor.plan.remote(self.config)] = ("plan", node, lane, None)
        # The first group goes at once, behind the plan: each node started takes one, so that
        # identical nodes split the first groups between them whichever starts first. On a
        # resume whose next group was partly run, the plan comes first: it tells whether
        # anything of the group is left to run.
        started = {tuple(k[i] for i in _GROUP_INDEX) for k in lane.done}
        if lane.queue and lane.queue[0].values not in started and not self.submit(node, lane):
            self.release(node)

    def submit(self, node: NodeInfo, lane: _Lane) -> bool:
        """Give ``node`` the next group of its lane; False when there is none."""
        while lane.queue:
            group = lane.queue.popleft()
            pairs = lane.pairs or []
            keys = [group.case(b, v).key() for b, v in pairs]
            held = [k for k in keys if k in lane.done]
            if pairs and len(held) == len(keys):
                self.summary.already_done += len(keys)
                lane.counted += len(keys)
                continue
            done = [
                r
                for r in self.file.results
                if r.get("status") == "ok" and key_of(r) in lane.done and group.holds(r)
            ]
            config = group.config(self.config, None)
            ref = self.actors[node.node_id].run_group.remote(config, done)
            self.pending[ref] = ("group", node, lane, group)
            node.busy = True
            self.say(
                f"node {node.name} (kind {node.kind_label}): case group "
                f"{group.index}/{len(self.groups)} ({group.label()}) started"
            )
            return True
        return False

    def release(self, node: NodeInfo, close: bool = True) -> None:
        actor = self.actors.pop(node.node_id, None)
        if actor is None:
            return
        if close:
            # cleaning a temporary folder must not fail a finished run
            with contextlib.suppress(Exception):
                self.ray.get(actor.close.remote(), timeout=30)
        with contextlib.suppress(Exception):  # an actor already gone with its node
            self.ray.kill(actor)

    # --- results -------------------------------------------------------------------------
    def take(self, node: NodeInfo, lane: _Lane, group: CaseGroup, payload: dict[str, Any]) -> None:
        lane.learn(payload.get("pairs") or [], len(self.groups))
        for text in payload.get("messages", []):
            self.say(f"node {node.name} (kind {node.kind_label}): {text}")
        results = payload.get("results", [])
        self.drop_superseded(lane, results)
        self.file.merge_run({k: v for k, v in payload.items() if k not in _PAYLOAD_ONLY})
        self.summary.already_done += int(payload.get("already_done") or 0)
        lane.counted += int(payload.get("already_done") or 0)
        for rec in results:
            self.summary.records.append(rec)
            lane.counted += 1
            if rec.get("status") == "ok":
                lane.done.add(key_of(rec))
            case = BenchCase(**{f: rec[f] for f in KEY_FIELDS})
            self.say(
                f"node {node.name} (kind {node.kind_label}): case {lane.counted}/{lane.total} "
                f"{case.label()}: {describe(rec)}"
            )
        if payload.get("interrupted"):
            raise KeyboardInterrupt

    def known_pairs(self, lane: _Lane) -> list[tuple[str, str]] | None:
        """The lane's plan, else another lane's (one sweep: the same backends and variants)."""
        return lane.pairs or next((other.pairs for other in self.lanes_ if other.pairs), None)

    def settle(self, pairs: list[tuple[str, str]] | None = None) -> None:
        """Record the deferred lost groups once a plan is known (``pairs``: the last resort)."""
        waiting, self.deferred = self.deferred, []
        for node, lane, groups, why in waiting:
            self.unmeasured(node, lane, groups, why, pairs)

    def drop_superseded(self, lane: _Lane, records: list[dict[str, Any]]) -> None:
        """With --per machine a case belongs to its kind: a new record of it replaces the
        kind's older record from another node (a group lost with its node, run again on
        another); ``merge_run`` replaces the same machine's record itself."""
        if lane.kind is None or not records:
            return
        machines = self.file.data["machines"]
        new = {key_of(r) for r in records}
        mids = {r.get("machine_id") for r in records}

        def superseded(r: dict[str, Any]) -> bool:
            machine = machines.get(r.get("machine_id"))
            return (
                key_of(r) in new
                and r.get("machine_id") not in mids
                and isinstance(machine, dict)
                and kind_of(machine)[0] == lane.kind
            )

        self.file.data["results"] = [r for r in self.file.results if not superseded(r)]

    def unmeasured(
        self,
        node: NodeInfo,
        lane: _Lane,
        groups: Sequence[CaseGroup],
        why: str,
        fallback: list[tuple[str, str]] | None = None,
    ) -> None:
        """Record every case of ``groups`` not measured yet as failed, with ``why``."""
        pairs = self.known_pairs(lane) or fallback
        if pairs is None:
            self.deferred.append((node, lane, list(groups), why))
            return
        lane.learn(pairs, len(self.groups))
        records = []
        cluster = {"node": node.name, "ray_node_id": node.node_id, "kind": node.kind}
        for group in groups:
            for backend, variant in pairs:
                case = group.case(backend, variant)
                if case.key() in lane.done:
                    continue
                rec: dict[str, Any] = dict.fromkeys(RESULT_FIELDS)
                rec.update(
                    {
                        **case.to_dict(),
                        **case.lengths_record(self.config.seed),
                        "rounds": 0,
                        "samples": [],
                        "flops": case.flops,
                        "forward_flops": case.forward_flops,
                        "status": "failed",
                        "error": why,
                        "timestamp": _now(),
                        "machine_id": node.fleet_id,
                        "cluster": cluster,
                    }
                )
                records.append(rec)
        machine = {**node.machine, "cluster": node.cluster_record(self.per)}
        held = self.file.data["machines"].get(node.fleet_id)
        self.file.merge_run(
            {"machines": {node.fleet_id: held if isinstance(held, dict) else machine}}
        )
        if records:
            self.drop_superseded(lane, records)
            self.file.merge_run({"results": records})
        for rec in records:
            self.summary.records.append(rec)
            lane.counted += 1
            self.say(
                f"node {node.name} (kind {node.kind_label}): case {lane.counted}/{lane.total} "
                f"{BenchCase(**{f: rec[f] for f in KEY_FIELDS}).label()}: FAILED: {why}"
            )

    def _backend_names(self) -> list[str]:
        return list(self.config.backends) if self.config.backends else list_backends()

    def lost(
        self, node: NodeInfo, lane: _Lane, group: CaseGroup | None, exc: BaseException
    ) -> None:
        """``node`` died: its group in flight fails, the rest of its lane goes to another node
        of the lane if one is left, or fails too. Each call the node had in flight reports its
        death: the rest of the lane is settled when the last one has."""
        if node.alive:
            node.alive = False
            self.release(node, close=False)
            self.say(f"node {node.name} (kind {node.kind_label}) died: {_first_line(exc)}")
        if group is not None:
            self.unmeasured(
                node,
                lane,
                [group],
                f"node {node.name} (kind {node.kind_label}) died while running this case "
                f"group: {_first_line(exc)}",
            )
        if any(n is node for _, n, _, _ in self.pending.values()):
            return  # its other call will report too
        if any(n.alive and n.node_id in self.actors for n in lane.started):
            return  # the lane's other active nodes take its queue
        spare = next((n for n in lane.nodes if n.alive and n not in lane.started), None)
        if spare is not None and lane.queue:
            self.say(f"{lane.name}: the remaining case groups move to node {spare.name}")
            self.start(spare, lane)
            return
        if lane.queue:
            left = list(lane.queue)
            lane.queue.clear()
            self.unmeasured(
                node,
                lane,
                left,
                f"not run: node {node.name} (kind {node.kind_label}) died mid-run"
                + (
                    " (--per node: its cases are its own)"
                    if self.per == "node"
                    else " and no other node of its kind was left to run it"
                ),
            )

    # --- the run -------------------------------------------------------------------------
    def run(self) -> BenchSummary:
        ray = self.ray
        self.reporter.start(0, 0, self.config.out)
        try:
            nodes = self.discover()
            lanes = self.lanes_ = self.lanes(nodes)
            kinds = sorted({n.kind_label for n in nodes})
            self.say(
                f"{len(nodes)} node(s) of {len(kinds)} kind(s) ({'; '.join(kinds)}); "
                f"{len(self.groups)} case group(s), "
                + ("every case on every node" if self.per == "node" else "each case once per kind")
                + (", split between identical nodes" if self.split else "")
            )
            for lane in lanes:
                for node in lane.nodes[: lane.active]:
                    self.start(node, lane)
            while self.pending:
                ready, _ = ray.wait(list(self.pending), num_returns=1)
                what, node, lane, group = self.pending.pop(ready[0])
                if what == "group":
                    node.busy = False
                try:
                    value = ray.get(ready[0])
                except _dead_errors(ray) as exc:
                    self.lost(node, lane, group, exc)
                    continue
                except Exception as exc:
                    if what == "plan":
                        raise
                    assert group is not None
                    self.unmeasured(
                        node,
                        lane,
                        [group],
                        f"the case group failed on node {node.name}: {_first_line(exc)}",
                    )
                    value = None
                if what == "plan":
                    lane.learn(value, len(self.groups))
                elif value is not None and group is not None:
                    self.take(node, lane, group, value)
                if self.deferred and self.known_pairs(lane):
                    self.settle()
                if not node.busy and not self.submit(node, lane):
                    self.release(node)
            if self.deferred:
                # every node that could have said died first: this machine plans instead
                self.settle(_local_pairs(self.config))
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            for node_id in list(self.actors):
                actor = self.actors.pop(node_id)
                with contextlib.suppress(Exception):  # a node already gone
                    ray.kill(actor)
            self.reporter.stop(self.summary)
        return self.summary


def _local_pairs(config: BenchConfig) -> list[tuple[str, str]]:
    """The (backend, variant) pairs the runner's own plan gives on this machine (a worker per
    backend asks it for its variants; a backend not installed here is planned under its
    "default" variant, as a local run records it)."""
    from rnnbench.bench.runner import plan_cases

    cases, _ = plan_cases(config)
    return list(dict.fromkeys((c.backend, c.variant) for c in cases))


_PAYLOAD_ONLY = ("already_done", "interrupted", "messages", "pairs", "started", "finished")


def _dead_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """What Ray raises for a call whose actor or node died (the actor is never restarted)."""
    ex = ray.exceptions
    names = ("RayActorError", "NodeDiedError", "WorkerCrashedError", "ActorUnschedulableError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def run_cluster(
    config: BenchConfig,
    address: str,
    per: str = "machine",
    split: bool = False,
    reporter: Reporter | None = None,
) -> BenchSummary:
    """Run ``config``'s sweep on the Ray cluster at ``address`` ("ray": start one on this
    machine; "auto": the one this machine belongs to; "ray://HOST:PORT" or "HOST:PORT": that
    one); every result is in ``config.out`` as soon as its node sends it back.

    ``per="machine"``: every case once per machine kind, on one node of each kind (or split
    between the nodes of a kind, each case on one of them, with ``split``); ``per="node"``:
    every case on every node. A case already measured in ``config.out`` on a machine of the
    kind (or on the node) is not run again."""
    if per not in PER_CHOICES:
        raise SpecError(f"unknown per {per!r}", "use machine (once per kind) or node (every node)")
    if split and per != "machine":
        raise SpecError(
            "--split shares a machine kind's cases between its nodes; with --per node every "
            "node runs every case",
            "drop --split, or use --per machine",
        )
    for name in config.backends or []:
        backend_info(name)  # an unknown name is an error here, before Ray starts
    ray = import_ray()
    owned = _connect(ray, address)
    try:
        return _Fleet(ray, config, per, split, reporter or PlainReporter()).run()
    finally:
        if owned:
            ray.shutdown()
