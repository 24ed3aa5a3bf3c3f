"""What a report shows, gathered from results files before anything is drawn or written: bench
results grouped by machine, by cell and by case, equivalence results, and notes on what was
left out."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.commands.common import CELL_CHOICES, cell_name
from rnnbench.report.results import (
    CASE_KEYS,
    BenchFile,
    CheckFile,
    CheckSet,
    case_key,
    is_ok,
    load,
    run_key,
)

# How a report names each cell in its headings (the key is the --cell name).
CELL_TITLES = {
    "rnn": "rnn (vanilla RNN)",
    "lstm": "lstm",
    "gru": "gru (reset gate after the recurrent product: PyTorch, cuDNN, Keras' default)",
    "gru-reset-before": "gru-reset-before (reset gate before the product: TF1 GRUCell, Keras "
    "reset_after=False)",
}


def cell_of(result: dict[str, Any]) -> str:
    """A bench result's cell as --cell names it ("rnn" for a file written before cells)."""
    return cell_name(str(result.get("cell") or "rnn"), result.get("reset_after"))


def cell_order(names: Iterable[str]) -> list[str]:
    """Cells in the order rnn, lstm, gru, gru-reset-before (any other name after them)."""
    known = list(CELL_CHOICES)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))


@dataclass
class MachineGroup:
    """Every bench result measured on one machine (from one or more files)."""

    label: str
    machine: dict[str, Any]
    peaks: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the runs that measured these results (bench/1.5): settings, load, calibration, warnings
    runs: list[dict[str, Any]] = field(default_factory=list)

    def cases(self) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
        """(case key, results of that case) in the order cases first appear."""
        out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for r in self.results:
            out.setdefault(case_key(r), []).append(r)
        return list(out.items())

    def by_cell(self) -> list[tuple[str, MachineGroup]]:
        """(cell name, this machine's results of that cell), cells in their usual order. Each
        part keeps the machine and its peaks, so that figures and tables draw from it alone."""
        names = cell_order(cell_of(r) for r in self.results)
        return [
            (
                name,
                dataclasses.replace(
                    self, results=[r for r in self.results if cell_of(r) == name], notes=[]
                ),
            )
            for name in names
        ]


@dataclass
class ReportData:
    machines: list[MachineGroup]
    checks: list[CheckFile]
    files: list[str]
    notes: list[str] = field(default_factory=list)


def gather(paths: Sequence[str | Path]) -> ReportData:
    """Read every file; group bench results by machine; a later file's result of the same case
    replaces an earlier one (a rerun), with a note."""
    groups: dict[str, MachineGroup] = {}
    checks: list[CheckFile] = []
    notes: list[str] = []
    for path in paths:
        found = load(path)
        if found.note:
            notes.append(f"{found.path}: {found.note}")
        if isinstance(found, CheckFile):
            checks.append(found)
            continue
        if isinstance(found, CheckSet):
            checks.extend(found.checks)
            continue
        _add_bench(groups, found)
    for group in groups.values():
        group.results = _dedupe(group)
    return ReportData(list(groups.values()), checks, [str(p) for p in paths], notes)


def _add_bench(groups: dict[str, MachineGroup], bench: BenchFile) -> None:
    """A file resumed on another machine holds results of both: each result names its machine
    (``machine_id``, a key of the file's ``machines``) and goes to that machine's group."""
    machines = bench.machines
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for r in bench.results:
        by_machine.setdefault(str(r.get("machine_id")), []).append(r)
    for mid, results in by_machine.items():
        # the top-level record is the latest and carries the threads and TF32 seen at run time
        same = str(bench.machine.get("machine_id")) == mid or mid not in machines
        machine = bench.machine if same else machines[mid]
        peak = bench.peak
        if bench.peaks:  # bench/1.4: each machine shows the peaks measured on it
            peak = {
                str(p.get("key") or pid): p
                for pid, p in bench.peaks.items()
                if p.get("machine_id") == mid
            }
        part = BenchFile(bench.path, bench.schema, machine, peak, results, bench.note)
        part.runs = {
            rid: run
            for rid, run in bench.runs.items()
            if any(r.get("run_id") == rid for r in results)
        }
        _add_machine(groups, part)


def _add_machine(groups: dict[str, MachineGroup], bench: BenchFile) -> None:
    label = machine_label(bench.machine)
    group = groups.get(label)
    if group is None:
        group = groups[label] = MachineGroup(label=label, machine=bench.machine)
    if bench.path not in group.files:
        group.files.append(bench.path)
    for peak in peak_entries(bench.peak):
        if peak not in group.peaks:
            group.peaks.append(peak)
    group.results.extend(bench.results)
    for run in bench.runs.values():
        if run not in group.runs:
            group.runs.append(run)


def _dedupe(group: MachineGroup) -> list[dict[str, Any]]:
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    replaced = 0
    for r in group.results:
        key = run_key(r)
        replaced += key in by_key
        by_key[key] = r
    if replaced:
        group.notes.append(
            f"{replaced} result(s) measured again in a later file: the later one is shown"
        )
    return list(by_key.values())


# --- the machine record -------------------------------------------------------------------


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ("a.b", "value") pairs, lists joined, so that any machine record shows."""
    if isinstance(data, dict):
        out: list[tuple[str, str]] = []
        for key, value in data.items():
            out += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(data, list):
        if all(not isinstance(v, (dict, list)) for v in data):
            return [(prefix, ", ".join(str(v) for v in data))]
        out = []
        for i, value in enumerate(data):
            out += flatten(value, f"{prefix}[{i}]")
        return out
    return [(prefix, "-" if data is None else str(data))]


def machine_label(machine: dict[str, Any]) -> str:
    """A short name for a machine: host, CPU model, GPUs; what identifies it in a merged report
    (software versions may differ between files of one machine: they are shown, not split on)."""
    cpu = machine.get("cpu")
    model = cpu.get("model") if isinstance(cpu, dict) else cpu
    gpus = machine.get("gpus") or []
    gpu_names = [str(g.get("name")) for g in gpus if isinstance(g, dict) and g.get("name")]
    parts = [str(p) for p in (machine.get("hostname"), model) if p]
    if gpu_names:
        counts: dict[str, int] = {}
        for name in gpu_names:
            counts[name] = counts.get(name, 0) + 1
        parts.append(", ".join(f"{n}× {g}" if n > 1 else g for g, n in counts.items()))
    cluster = machine.get("cluster")
    if isinstance(cluster, dict) and cluster.get("kind"):
        # a cluster run's kind (and node, with --per node): Ray nodes of one host stay apart
        kind = cluster.get("kind_label") or cluster["kind"]
        node = f"node {cluster.get('node')}, " if cluster.get("per") == "node" else ""
        parts.append(f"{node}kind {kind}")
    return " · ".join(parts) if parts else "unknown machine"


def machine_summary(machine: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts a reader needs to judge a number, one line each; the full record is shown
    collapsed beside it. Fields the record lacks are left out."""
    out: list[tuple[str, str]] = []
    cpu = machine.get("cpu")
    if isinstance(cpu, dict):
        cores = [
            f"{cpu[k]} {name}"
            for k, name in (
                ("physical_cores", "cores"),
                ("logical_cpus", "logical CPUs"),
                ("usable_cpus", "usable"),
            )
            if cpu.get(k) is not None
        ]
        mem = f", {cpu['memory_gib']} GiB RAM" if cpu.get("memory_gib") else ""
        out.append(("CPU", f"{cpu.get('model') or '?'} ({', '.join(cores)}){mem}"))
    elif cpu:
        out.append(("CPU", str(cpu)))
    if "gpus" in machine:
        gpus = [g for g in machine.get("gpus") or [] if isinstance(g, dict)]
        text = "; ".join(
            f"{g.get('name')} ({g.get('memory_mib')} MiB, driver {g.get('driver')}"
            + (f", sm {g['compute_capability']}" if g.get("compute_capability") else "")
            + ")"
            for g in gpus
        )
        out.append(("GPU", text or "none"))
    blas = machine.get("blas")
    if isinstance(blas, list) and blas:
        out.append(
            (
                "BLAS",
                "; ".join(
                    f"{b.get('internal_api')} {b.get('version') or ''} "
                    f"({b.get('num_threads')} threads)"
                    for b in blas
                    if isinstance(b, dict)
                ),
            )
        )
    elif isinstance(blas, str):
        out.append(("BLAS", blas))
    threads = machine.get("threads")
    if isinstance(threads, dict) and threads:
        out.append(("threads", "; ".join(f"{k}: {_threads(v)}" for k, v in threads.items())))
    tf32 = machine.get("tf32")
    if isinstance(tf32, dict) and tf32:
        out.append(("TF32", "; ".join(f"{k}: {_flat_text(v)}" for k, v in tf32.items() if v)))
    versions = machine.get("versions")
    if isinstance(versions, dict):
        out.append(
            ("libraries", ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None))
        )
    rb = machine.get("rnnbench")
    if isinstance(rb, dict):
        commit = str(rb.get("commit") or "?")[:10]
        dirty = " + local changes" if rb.get("dirty") else ""
        out.append(("rnnbench", f"{rb.get('version')} (commit {commit}{dirty})"))
    for key in ("platform", "python", "timestamp"):
        if machine.get(key):
            out.append((key, str(machine[key])))
    env = machine.get("env")
    if isinstance(env, dict) and env:
        out.append(("environment", ", ".join(f"{k}={v}" for k, v in env.items())))
    return out


def _threads(value: Any) -> str:
    """A backend's thread counts, short: 'torch_intra_op 2, blas openblas 2'."""
    if not isinstance(value, dict):
        return _flat_text(value)
    parts = []
    for key, v in value.items():
        if key == "cpu_count" or v is None:
            continue
        if key == "blas" and isinstance(v, list):
            parts += [
                f"{b.get('internal_api')} {b.get('num_threads')}" for b in v if isinstance(b, dict)
            ]
        else:
            parts.append(f"{key} {v}")
    return ", ".join(parts) or "-"


def _flat_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def peak_entries(peak: Any) -> list[dict[str, Any]]:
    """The measured peaks of a file as a list of dicts with at least ``gflops``.

    Accepts one peak ({"gflops": ..}), a list of them, or a mapping of name -> peak (e.g.
    "cpu/float32" -> {...}); the name is kept as ``name`` when the entry lacks device/dtype."""
    if isinstance(peak, list):
        return [p for item in peak for p in peak_entries(item)]
    if not isinstance(peak, dict) or not peak:
        return []
    if any(k in peak for k in ("gflops", "peak_gflops")):
        return [dict(peak)]
    out = []
    for name, value in peak.items():
        for entry in peak_entries(value):
            entry.setdefault("name", str(name))
            out.append(entry)
    return out


def peak_gflops(entry: dict[str, Any]) -> float:
    for key in ("gflops", "peak_gflops"):
        try:
            return float(entry[key])
        except (KeyError, TypeError, ValueError):
            continue
    return math.nan


def peak_for(group: MachineGroup, device: str, dtype: str) -> dict[str, Any] | None:
    """The peak measured for a device and dtype, when the file recorded which."""
    for entry in group.peaks:
        name = str(entry.get("name", ""))
        dev = entry.get("device") or (name.split("/")[0] if "/" in name else None)
        dt = entry.get("dtype") or (name.split("/")[-1] if "/" in name else None)
        if dev in (device, None) and dt in (dtype, None):
            return entry
    return None


# --- cases --------------------------------------------------------------------------------


def case_title(key: tuple[Any, ...]) -> str:
    c = dict(zip(CASE_KEYS, key))
    text = (
        f"{c['device']} {c['dtype']} · B={c['batch']} T={c['seq_len']} "
        f"I={c['input_size']} H={c['hidden_size']}"
    )
    if c.get("layers", 1) != 1:
        text += f" · {c['layers']} layers"
    if c.get("bidirectional"):
        text += " · bidirectional"
    if c.get("threads") is not None:
        text += f" · {c['threads']} threads"
    if c.get("nonlinearity", "tanh") != "tanh":
        text += f" · {c['nonlinearity']}"
    if c.get("lengths", "full") != "full":
        text += f" · {c['lengths']} lengths"
    if c.get("mode", "inference") != "inference":
        text += f" · {c['mode']}"
    return text


def series_label(result: dict[str, Any]) -> str:
    variant = result.get("variant") or "default"
    return result["backend"] if variant == "default" else f"{result['backend']} [{variant}]"


def flops(result: dict[str, Any]) -> float:
    """FLOPs of one call: 2·B·T·(I+H)·G·H per layer and direction (layer k>0 reads dirs·H; G
    gate blocks: 1 rnn, 4 lstm, 3 gru), three times that for a training case (the backward
    pass of each product is two products of its size), as recorded or else computed from the
    case."""
    from rnnbench.bench.cases import TRAINING_FLOPS_FACTOR
    from rnnbench.spec import RNNSpec

    recorded = result.get("flops", math.nan)
    if isinstance(recorded, (int, float)) and math.isfinite(recorded):
        return float(recorded)

    spec = RNNSpec(
        input_size=int(result["input_size"]),
        hidden_size=int(result["hidden_size"]),
        num_layers=int(result.get("layers") or 1),
        bidirectional=bool(result.get("bidirectional")),
        cell=str(result.get("cell") or "rnn"),
        reset_after=result.get("reset_after"),
    )
    factor = TRAINING_FLOPS_FACTOR if is_training(result) else 1
    return float(factor * spec.flops(int(result["batch"]), int(result["seq_len"])))


def gflops_of(result: dict[str, Any]) -> float:
    value = result.get("gflops", math.nan)
    if math.isfinite(value) or not is_ok(result):
        return value
    return flops(result) / result["median_s"] / 1e9


def failed(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if not is_ok(r)]


# --- padding ------------------------------------------------------------------------------


def is_ragged(result: dict[str, Any]) -> bool:
    """A result of right-padded rows (``rnnbench bench --lengths ragged``)."""
    return result.get("lengths", "full") != "full"


def work_fraction(result: dict[str, Any]) -> float:
    """The real work of a call as a fraction of its padded work: mean length / T (1 for a
    full-length batch; NaN when the file does not say)."""
    mean = result.get("lengths_mean", math.nan)
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return 1.0 if not is_ragged(result) else math.nan
    return float(mean) / float(result["seq_len"])


def is_training(result: dict[str, Any]) -> bool:
    """A result of a training step (``rnnbench bench --mode training``): forward + backward."""
    return result.get("mode", "inference") == "training"


def training_pairs(
    results: Sequence[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(training result, the inference result of the same backend, variant and case, or None)
    for every training result, in the order they appear."""
    inference = {run_key(r): r for r in results if not is_training(r)}
    return [
        (r, inference.get(run_key({**r, "mode": "inference"}))) for r in results if is_training(r)
    ]


def padding_pairs(
    results: Sequence[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(ragged result, the full-length result of the same backend, variant and case, or None)
    for every ragged result, in the order they appear."""
    full = {run_key(r): r for r in results if not is_ragged(r)}
    return [(r, full.get(run_key({**r, "lengths": "full"}))) for r in results if is_ragged(r)]
