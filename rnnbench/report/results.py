"""Reading result files: bench results (``rnnbench bench --out``) and equivalence results
(``rnnbench check --json``: one check per cell, or one check in files of schema check/1.x
written before cells), told apart by their ``schema`` field.

Schema versions are ``rnnbench.<kind>/<major>[.<minor>]`` (``/1`` means ``/1.0``). The rule:
a file is read when its kind is known and its major version is the one this rnnbench reads.
Minor versions only ever *add* fields, so any minor of the same major is read: fields an older
file lacks take their defaults, fields a newer file adds are ignored. A different major version,
an unknown kind, or a file without a schema is refused with a message that says which versions
are read. Required fields (the ones every minor has) must be present in every result.

bench/1.1 added the cell to every result (``cell``, ``reset_after``, ``nonlinearity``): a 1.0
result is a vanilla tanh RNN. bench/1.2 added how the batch is padded (``lengths``: "full" or
"ragged", part of the case key, with ``lengths_mean`` / ``lengths_min`` / ``lengths_max``): an
older result is a full-length batch. bench/1.3 added what a case times (``mode``: "inference"
or "training", part of the case key; ``flops`` of the timed call, three times
``forward_flops`` for training; ``backward_path``): an older result is an inference case.
bench/1.5 added each case's processes (``process_medians``, ``process_rounds``,
``process_sd``), the ``runs`` (settings, load, calibration, warnings) and the limit model
(``limits``; each result's ``limit_s``, ``limit_fraction``, ``limit_bound``): an older result
is one process, and `rnnbench compare` judges it on its samples as before.
bench/1.4 added ``peaks`` (every GEMM peak a result was computed against, by id) and each
result's ``peak_id``; every result has always carried its own ``efficiency`` and
``peak_gflops``, which is what tables and figures show, so an older file reads as before.
check/1.1 added the spec (and with it the cell) and the LSTM's ``c_n_max_abs``: a 1.0 check
is of a vanilla RNN. check/1.2 added the padding, check/1.3 the gradients (each row's
``grad_status``, ``grad_errors`` and ``grad_bounds`` per array, ``grad_first_bad_step``): an
older check has none, and its report has no gradient table. A check file may carry the
``inputs`` it was run with and its ``machine`` (at its top level, or a checks/1 file's for
every entry). ``rnnbench.checks/1`` is a list of check results (``{"checks": [...]}``), each
read as a check file of its own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.bench.cases import KEY_DEFAULTS, KEY_FIELDS
from rnnbench.commands.common import cell_name
from rnnbench.errors import RNNBenchError

# kind -> (major, minor) this rnnbench writes and reads
READS: dict[str, tuple[int, int]] = {"bench": (1, 5), "check": (1, 3), "checks": (1, 0)}

_SCHEMA_RE = re.compile(r"^rnnbench\.([a-z_]+)/(\d+)(?:\.(\d+))?$")

# the fields that identify a benchmark case (everything but the backend that ran it); threads
# None means the library's default thread count
CASE_KEYS = tuple(k for k in KEY_FIELDS if k not in ("backend", "variant"))
# what every minor of bench/1 has; the key fields added later take KEY_DEFAULTS
BENCH_REQUIRED = (
    "backend",
    *(k for k in CASE_KEYS if k not in KEY_DEFAULTS),
    "layers",
    "bidirectional",
    "median_s",
    "status",
)
# optional fields and their defaults (absent in older minors, or when a run failed)
BENCH_DEFAULTS: dict[str, Any] = {
    "variant": "default",
    "path": None,
    "iqr_s": math.nan,
    "min_s": math.nan,
    "rounds": 0,
    "samples": [],
    "compile_s": math.nan,
    "gflops": math.nan,
    "efficiency": math.nan,
    "error": None,
    "nonlinearity": "tanh",
    "cell": "rnn",
    "reset_after": None,
    "threads": None,
    "lengths": "full",
    "mode": "inference",
    "backward_path": None,
    "forward_flops": math.nan,
    "lengths_mean": math.nan,
    "lengths_min": math.nan,
    "lengths_max": math.nan,
    "q1_s": math.nan,
    "q3_s": math.nan,
    "time_per_step_s": math.nan,
    "flops": math.nan,
    "peak_gflops": math.nan,
}
CHECK_REQUIRED = ("backend", "dtype", "status")
OK_STATUSES = ("ok", "pass")


class ResultsFileError(RNNBenchError, ValueError):
    """A results file cannot be read: not JSON, no schema, another version, missing fields."""


@dataclass
class BenchFile:
    """One ``rnnbench bench --out`` file."""

    path: str
    schema: str
    machine: dict[str, Any]
    peak: dict[str, Any]
    results: list[dict[str, Any]]
    note: str | None = None  # e.g. read from a newer minor version
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine_id -> record
    # peak id -> every peak a result was computed against (bench/1.4; results name theirs by
    # ``peak_id``); ``peak`` holds the latest run's peak per key, the only one older files have
    peaks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # run id -> that run's record (bench/1.5: settings, load, calibration, warnings); results
    # name theirs by ``run_id``
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # limits id -> what the limit model measured on a machine (bench/1.5)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run_of(self, result: dict[str, Any]) -> dict[str, Any]:
        """The record of the run that measured ``result`` (empty before bench/1.5)."""
        return self.runs.get(str(result.get("run_id")), {})


@dataclass
class CheckFile:
    """One equivalence check (one case, one cell): a ``rnnbench check --json`` file of schema
    check/1.x, or one entry of a checks/1 file."""

    path: str
    schema: str
    case: str
    batch: int | None
    seq_len: int | None
    rows: list[dict[str, Any]]
    machine: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # empty in check/1.0 files
    # what the check was run with (seed, sizes, dtypes, backends, ...), when the file says
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def has_gradients(self) -> bool:
        """Whether any row carries a gradient verdict (``check --grad``, check/1.3)."""
        return any(r.get("grad_status") is not None for r in self.rows)

    @property
    def cell(self) -> str:
        """The cell as ``--cell`` names it; a check/1.0 file (no spec) checked a vanilla RNN."""
        return cell_name(
            str(self.spec.get("cell") or "rnn"),
            self.spec.get("reset_after"),
        )


@dataclass
class CheckSet:
    """A ``rnnbench check --json`` file of schema checks/1: one check per cell."""

    path: str
    schema: str
    checks: list[CheckFile]
    note: str | None = None


def parse_schema(schema: Any, path: str) -> tuple[str, int, int]:
    """``rnnbench.bench/1.2`` -> ("bench", 1, 2); a clear error for anything else."""
    if not isinstance(schema, str) or not (m := _SCHEMA_RE.match(schema)):
        raise ResultsFileError(
            f"{path}: no rnnbench schema (found schema={schema!r})",
            "give a file written by `rnnbench bench --out` or `rnnbench check --json`",
        )
    return m.group(1), int(m.group(2)), int(m.group(3) or 0)


def check_version(kind: str, major: int, minor: int, path: str) -> str | None:
    """Refuse what this rnnbench cannot read; return a note for a newer minor version."""
    if kind not in READS:
        raise ResultsFileError(
            f"{path}: results of kind {kind!r} are not read here "
            f"(known: {', '.join(f'rnnbench.{k}/*' for k in READS)})",
            "give a bench or check results file",
        )
    our_major, our_minor = READS[kind]
    if major != our_major:
        raise ResultsFileError(
            f"{path}: schema rnnbench.{kind}/{major}.{minor} is another major version; this "
            f"rnnbench reads rnnbench.{kind}/{our_major}.x only",
            "read it with the rnnbench version that wrote it, or rerun the benchmark"
            if major < our_major
            else "upgrade rnnbench to read it",
        )
    if minor > our_minor:
        return (
            f"written with schema rnnbench.{kind}/{major}.{minor}, newer than this rnnbench's "
            f"{our_major}.{our_minor}: fields added since are ignored"
        )
    return None


def load(path: str | Path) -> BenchFile | CheckFile | CheckSet:
    """Read one results file of any kind."""
    name = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ResultsFileError(f"{name}: no such file", "check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsFileError(
            f"{name}: not a JSON results file ({exc})",
            "a run cut short may have left it truncated; rerun it",
        ) from None
    if not isinstance(data, dict):
        raise ResultsFileError(f"{name}: the top level is not a JSON object", None)
    kind, major, minor = parse_schema(data.get("schema"), name)
    note = check_version(kind, major, minor, name)
    if kind == "bench":
        return _bench(data, name, note)
    if kind == "checks":
        return _check_set(data, name, note)
    return _check(data, name, note)


def load_bench(path: str | Path) -> BenchFile:
    """Read a bench results file; a check file is refused."""
    found = load(path)
    if not isinstance(found, BenchFile):
        raise ResultsFileError(
            f"{path}: holds equivalence results ({found.schema}), not timings",
            "give files written by `rnnbench bench --out`",
        )
    return found


def _bench(data: dict[str, Any], path: str, note: str | None) -> BenchFile:
    raw = data.get("results")
    if not isinstance(raw, list):
        raise ResultsFileError(f"{path}: no 'results' list", "rerun `rnnbench bench --out`")
    results = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ResultsFileError(f"{path}: results[{i}] is not an object", None)
        missing = [k for k in BENCH_REQUIRED if k not in item]
        if missing:
            raise ResultsFileError(
                f"{path}: results[{i}] lacks {', '.join(missing)}",
                "the file is damaged or not written by `rnnbench bench`",
            )
        row = {**BENCH_DEFAULTS, **item}
        if row["cell"] == "gru" and row["reset_after"] is None:
            row["reset_after"] = True  # a GRU's None means PyTorch's formula (RNNSpec's rule)
        for key in (
            "median_s",
            "iqr_s",
            "q1_s",
            "q3_s",
            "min_s",
            "compile_s",
            "gflops",
            "efficiency",
            "time_per_step_s",
            "flops",
            "forward_flops",
            "peak_gflops",
            "lengths_mean",
            "lengths_min",
            "lengths_max",
        ):
            row[key] = _num(row[key])
        if row["lengths"] == "full" and not math.isfinite(row["lengths_mean"]):
            # a full batch (every file before bench/1.2) has every row T steps long
            row["lengths_mean"] = row["lengths_min"] = row["lengths_max"] = _num(row["seq_len"])
        row["samples"] = [float(s) for s in (row["samples"] or []) if _num(s) == _num(s)]
        results.append(row)
    return BenchFile(
        path=path,
        schema=str(data["schema"]),
        machine=dict(data.get("machine") or {}),
        peak=dict(data.get("peak") or {}),
        results=results,
        note=note,
        machines={str(k): dict(v) for k, v in (data.get("machines") or {}).items()},
        peaks={str(k): dict(v) for k, v in _dict(data.get("peaks")).items() if isinstance(v, dict)},
        runs={
            str(r["run_id"]): dict(r)
            for r in _list(data.get("runs"))
            if isinstance(r, dict) and "run_id" in r
        },
        limits={
            str(k): dict(v) for k, v in _dict(data.get("limits")).items() if isinstance(v, dict)
        },
    )


def _check(
    data: dict[str, Any], path: str, note: str | None, outer: dict[str, Any] | None = None
) -> CheckFile:
    """One check; ``outer`` is the checks/1 file around it, whose ``inputs`` and ``machine``
    stand for an entry that has none of its own."""
    raw = data.get("rows")
    if not isinstance(raw, list):
        raise ResultsFileError(f"{path}: no 'rows' list", "rerun `rnnbench check --json`")
    rows = []
    for i, item in enumerate(raw):
        missing = [k for k in CHECK_REQUIRED if not isinstance(item, dict) or k not in item]
        if missing:
            raise ResultsFileError(f"{path}: rows[{i}] lacks {', '.join(missing)}", None)
        row = dict(item)
        for key in ("max_abs", "max_rel", "h_n_max_abs", "c_n_max_abs"):
            row[key] = _num(row.get(key))
        row["error_per_step"] = [_num(v) for v in row.get("error_per_step") or []]
        for key in ("grad_errors", "grad_bounds"):
            row[key] = {str(k): _num(v) for k, v in _dict(row.get(key)).items()}
        rows.append(row)
    outer = outer or {}
    return CheckFile(
        path=path,
        schema=str(data["schema"]),
        case=str(data.get("case", "")),
        batch=data.get("batch"),
        seq_len=data.get("seq_len"),
        rows=rows,
        machine=_dict(data.get("machine")) or _dict(outer.get("machine")),
        note=note,
        spec=dict(data.get("spec") or {}),
        inputs=_dict(data.get("inputs")) or _dict(outer.get("inputs")),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _check_set(data: dict[str, Any], path: str, note: str | None) -> CheckSet:
    raw = data.get("checks")
    if not isinstance(raw, list):
        raise ResultsFileError(f"{path}: no 'checks' list", "rerun `rnnbench check --json`")
    checks = []
    for i, item in enumerate(raw):
        where = f"{path} checks[{i}]"
        if not isinstance(item, dict):
            raise ResultsFileError(f"{where}: not an object", None)
        kind, major, minor = parse_schema(item.get("schema"), where)
        if kind != "check":
            raise ResultsFileError(
                f"{where}: schema rnnbench.{kind}/{major}.{minor}, expected rnnbench.check/1.x",
                "the file is damaged or not written by `rnnbench check`",
            )
        checks.append(_check(item, path, check_version(kind, major, minor, where) or note, data))
    return CheckSet(path=path, schema=str(data["schema"]), checks=checks, note=note)


def _num(value: Any) -> float:
    """A float, NaN for None or anything that is not a number (JSON has no NaN of its own)."""
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def case_key(result: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(result.get(k) for k in CASE_KEYS)


def run_key(result: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies one measurement across runs: backend, variant and the case."""
    return (result["backend"], result.get("variant", "default"), *case_key(result))


def is_ok(result: dict[str, Any]) -> bool:
    return result.get("status") in OK_STATUSES and math.isfinite(result.get("median_s", math.nan))
