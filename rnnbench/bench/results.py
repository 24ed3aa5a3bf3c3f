"""The results file: ``{"schema", "machine", "machines", "peak", "peaks", "results": [...]}``.

It is rewritten whole after every case, atomically (``rnnbench.fileio``: a temporary file in the
same folder, then ``os.replace``; the file gets the umask's mode), so that a crash or Ctrl-C at
any moment leaves either the previous or the new complete file, never half of one. Opening an
existing file resumes it: cases already measured (status "ok") are skipped; any other status is
measured again and its record replaced.

Schema 1.1 added the cell to every result (``cell``, ``reset_after``, ``nonlinearity``, all part
of the case key). A 1.0 file resumes as what it held, vanilla tanh RNNs: its records get those
fields and the file is written back as the current version.

Schema 1.2 added how the batch is padded (``lengths``: "full" or "ragged", part of the case
key) and the lengths' ``lengths_mean`` / ``lengths_min`` / ``lengths_max`` (and the
``lengths_seed`` they were drawn with). Every batch before it was full length: an older
record resumes as "full", with each length T.

Schema 1.3 added what a case times (``mode``: "inference", the forward pass, or "training",
the forward and backward pass of one loss; part of the case key), ``flops`` of the timed call
(three times ``forward_flops`` for training) and a training case's ``backward_path``. Every case
before it timed the forward pass: an older record resumes as "inference".

Schema 1.4 keeps every machine's record and every peak a result was computed against:

- Nothing is written until the first record of a run is added (a case measured, or recorded
  with the status it got in this run), and then the run's machine and peaks go in with it: a
  run that stops at planning (an unknown backend) or a resume with nothing left to measure
  leaves the file as it was.
- ``machines`` maps each ``machine_id`` to its record, with the ``threads`` and ``tf32`` each
  backend's worker reported on it, merged per backend: a run that times only numpy keeps what
  an earlier run recorded for torch. ``machine`` is the record of the latest run's machine
  (with its ``machine_id``), the same as its entry in ``machines``.
- ``peaks`` maps a peak id, ``"<key>@<machine_id>"`` (the key is ``device/dtype`` or
  ``device/dtype/threads=N``), to the GEMM peak measured for that key on that machine; every
  result computed against a peak names it (``peak_id``, with ``peak_key`` and ``peak_gflops``,
  the denominator of its ``efficiency``). A peak is measured once per key and machine and then
  kept: a resume on the same machine (same hardware and library versions, see
  ``machine_id``) uses the file's peak instead of measuring again, so every efficiency of one
  machine in a file is against one peak the file holds. Measuring again on each resume would
  give each run's results a different denominator (a GEMM rate varies by a few percent from
  run to run) and make efficiencies in one table incomparable; only a peak whose measurement
  failed (no ``gflops``, so no result used it) is measured again. A resume on another machine
  measures its own peak under its own id, next to the first machine's. ``peak`` maps each key
  to the latest run's peak for it (what readers before 1.4 show).
- A file before 1.4 resumes with what it can tell: its top-level machine's threads and TF32
  go into that machine's ``machines`` entry; a peak of ``peak`` goes into ``peaks`` (and its
  results get its ``peak_id``) when results of one machine carry its ``peak_key`` and
  ``peak_gflops``. A peak that no result names is not attributed to a machine, so it is
  measured again; a result whose peak an older version already replaced keeps its
  ``peak_gflops``, which is all that is left of it.

Schema 1.5 records how far each number can be trusted:

- Each case runs in several worker processes (``processes``, interleaved with the other
  backends of its group); ``samples`` holds them process after process, ``process_rounds``
  how many each process took, ``process_medians`` each one's median, ``process_sd`` the
  standard deviation of their logs (about their relative spread) and ``process_compile_s``
  each one's first call; ``compile_s`` is the median of those. A record before 1.5 was one
  process (``processes`` 1, every sample its own).
- ``runs`` holds one record per run that added results (each result names its ``run_id``):
  its settings (processes, min-time, rounds, warm-up, seed), the machine's load average at
  its start and end, the CPU governor, the GEMM calibration at its start and end (``drift``:
  how much the machine's own speed moved) and the warnings these gave.
- ``limits`` maps ``"<key>@<machine_id>"`` (the peak's key) to what the limit model measured
  on that machine: GEMM times at each case's shapes, the streaming bandwidth, the dispatch
  floor. Each result computed against them carries ``limit_s`` (the time the machine could
  not beat), ``limit_fraction`` (limit_s / median_s), ``limit_bound`` (what binds: compute,
  memory or dispatch), ``limit`` (the three floors and the bytes) and ``limit_id``. Kept
  across resumes on one machine, like the peak.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from rnnbench.bench.cases import KEY_DEFAULTS, BenchCase, key_of
from rnnbench.errors import RNNBenchError
from rnnbench.fileio import atomic_write_text

SCHEMA = "rnnbench.bench/1.5"
_MAJOR, _MINOR = 1, 5
_SCHEMA_RE = re.compile(r"^rnnbench\.bench/(\d+)(?:\.(\d+))?$")
# what a backend's worker reports about the machine at run time, kept per backend
RUNTIME_FIELDS = ("threads", "tf32")

# The fields every result carries; extra fields may follow.
RESULT_FIELDS = (
    "backend",
    "variant",
    "path",
    "device",
    "dtype",
    "cell",
    "reset_after",
    "nonlinearity",
    "batch",
    "seq_len",
    "input_size",
    "hidden_size",
    "layers",
    "bidirectional",
    "lengths",
    "lengths_mean",
    "lengths_min",
    "lengths_max",
    "mode",
    "median_s",
    "iqr_s",
    "min_s",
    "rounds",
    "samples",
    "compile_s",
    "flops",
    "gflops",
    "efficiency",
    "status",
    "error",
)
STATUSES = ("ok", "failed", "timeout", "skipped", "interrupted")


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """Give a record of an older minor version the fields it lacks (in place): a 1.0 record was
    a vanilla tanh RNN, a record before 1.2 a full-length batch (every length T), a record
    before 1.3 an inference case (the forward pass, whose FLOPs are its ``forward_flops``)."""
    for key in ("cell", "reset_after", "nonlinearity", "lengths", "mode"):
        record.setdefault(key, KEY_DEFAULTS[key])
    if record["cell"] == "gru" and record["reset_after"] is None:
        record["reset_after"] = True
    if record["lengths"] == "full" and isinstance(record.get("seq_len"), int):
        t = record["seq_len"]
        for key, value in (
            ("lengths_mean", float(t)),
            ("lengths_min", t),
            ("lengths_max", t),
            ("lengths_seed", None),
        ):
            record.setdefault(key, value)
    if record["mode"] == "inference" and "flops" in record:
        record.setdefault("forward_flops", record["flops"])
    if record.get("status") == "ok" and "processes" not in record:
        # before 1.5 a case ran in one process: every sample its own, its median the median
        samples = record.get("samples") or []
        record["processes"] = 1
        record["process_rounds"] = [len(samples)]
        record["process_medians"] = [record.get("median_s")]
        record["process_sd"] = None
    return record


def peak_id(key: str, machine_id: str | None) -> str:
    """The id of the peak measured for ``key`` on a machine (one per key and machine)."""
    return f"{key}@{machine_id}"


def _usable(peak: Any) -> bool:
    return isinstance(peak, dict) and bool(peak.get("gflops"))


def _upgrade_file(data: dict[str, Any]) -> None:
    """Give a file before 1.4 what 1.4 keeps (in place): its latest machine's runtime facts in
    that machine's ``machines`` entry, and each peak its results name in ``peaks``."""
    top = data["machine"]
    mid = top.get("machine_id")
    entry = data["machines"].get(mid) if isinstance(mid, str) else None
    if isinstance(mid, str) and not isinstance(entry, dict):
        entry = data["machines"][mid] = {k: v for k, v in top.items() if k != "machine_id"}
    if isinstance(entry, dict):
        for field in RUNTIME_FIELDS:
            seen = entry.get(field)
            if not isinstance(seen, dict):
                seen = entry[field] = {}
            reported = top.get(field)
            for backend, value in (reported if isinstance(reported, dict) else {}).items():
                seen.setdefault(backend, value)
    for key, peak in data["peak"].items():
        if not _usable(peak) or "peak_id" in peak:
            continue
        users = [
            r
            for r in data["results"]
            if isinstance(r, dict)
            and r.get("peak_key") == key
            and r.get("peak_gflops") == peak["gflops"]
        ]
        machines = {r.get("machine_id") for r in users}
        if len(machines) != 1 or None in machines:
            continue  # no result (or results of several machines) names it: whose is unknown
        (owner,) = machines
        pid = peak_id(key, owner)
        peak.update(key=key, machine_id=owner, peak_id=pid)
        data["peaks"].setdefault(pid, peak)
        for r in users:
            r.setdefault("peak_id", pid)


class ResultsFile:
    """A results file in memory. Every change stays in memory until :meth:`add` (a record of
    this run) saves the whole: the machine, the peaks and the runtime facts are written with
    the first record, never on their own."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self.machine_id: str | None = None
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "machine": {},
            "machines": {},
            "peak": {},
            "peaks": {},
            "limits": {},
            "runs": [],
            "results": [],
        }
        if self.path is not None and self.path.exists():
            self.data = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RNNBenchError(
                f"cannot resume from {path}: it is not a readable JSON file ({exc})",
                "pass another --out, or move the file away",
            ) from exc
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        match = _SCHEMA_RE.match(found) if isinstance(found, str) else None
        # An older minor of the same major only lacks fields, which take their defaults; a newer
        # minor may key its cases on fields this rnnbench does not know, so it is not resumed.
        if not (match and int(match.group(1)) == _MAJOR and int(match.group(2) or 0) <= _MINOR):
            raise RNNBenchError(
                f"cannot resume from {path}: its schema is {found!r}, this rnnbench writes "
                f"{SCHEMA!r} (and resumes rnnbench.bench/{_MAJOR}.0 to {_MAJOR}.{_MINOR})",
                "pass another --out, or move the file away",
            )
        for key, empty in (
            ("machine", {}),
            ("machines", {}),
            ("peak", {}),
            ("peaks", {}),
            ("limits", {}),
            ("runs", []),
            ("results", []),
        ):
            if not isinstance(data.get(key), type(empty)):
                data[key] = empty
        for record in data["results"]:
            if isinstance(record, dict):
                upgrade_record(record)
        _upgrade_file(data)
        data["schema"] = SCHEMA
        return data

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.data["results"]

    def is_done(self, case: BenchCase) -> bool:
        key = case.key()
        return any(key_of(r) == key and r.get("status") == "ok" for r in self.results)

    def set_machine(self, machine: dict[str, Any], machine_id: str) -> None:
        """This run's machine (in memory until the first :meth:`add`). What workers reported
        on the same machine before (threads, TF32 per backend) is kept; :meth:`note_runtime`
        replaces a backend's entry when its worker reports again."""
        self.machine_id = machine_id
        earlier = self.data["machines"].get(machine_id)
        earlier = earlier if isinstance(earlier, dict) else {}
        record = {k: v for k, v in machine.items() if k not in RUNTIME_FIELDS}
        for field in RUNTIME_FIELDS:
            seen = earlier.get(field)
            record[field] = dict(seen) if isinstance(seen, dict) else {}
        self.data["machines"][machine_id] = record
        self._mirror()

    def _mirror(self) -> None:
        """The top-level ``machine``: this run's entry of ``machines`` and its id."""
        record = self.data["machines"][self.machine_id]
        self.data["machine"] = {
            **{k: (dict(v) if k in RUNTIME_FIELDS else v) for k, v in record.items()},
            "machine_id": self.machine_id,
        }

    def held_peak(self, key: str) -> dict[str, Any] | None:
        """The peak this file holds for ``key`` on this run's machine, when it was measured
        (a failed measurement is measured again)."""
        peak = self.data["peaks"].get(peak_id(key, self.machine_id))
        return peak if _usable(peak) else None

    def set_peak(self, key: str, peak: dict[str, Any]) -> dict[str, Any]:
        """Keep ``peak`` as this run's peak for ``key`` (in memory until the first
        :meth:`add`) and return it with its ``key``, ``machine_id`` and ``peak_id``. A measured
        peak the file already holds for the key on this machine is kept and returned instead:
        results were computed against it (the runner asks :meth:`held_peak` before measuring)."""
        pid = peak_id(key, self.machine_id)
        held = self.data["peaks"].get(pid)
        if _usable(held):
            kept: dict[str, Any] = held
        else:
            kept = {**peak, "key": key, "machine_id": self.machine_id, "peak_id": pid}
            self.data["peaks"][pid] = kept
        self.data["peak"][key] = kept
        return kept

    def held_limits(self, key: str) -> dict[str, Any] | None:
        """What the limit model measured for ``key`` on this run's machine, if anything."""
        held = self.data["limits"].get(peak_id(key, self.machine_id))
        return dict(held) if isinstance(held, dict) else None

    def set_limits(self, key: str, measured: dict[str, Any]) -> dict[str, Any]:
        """Keep the limit model's measurements for ``key`` on this run's machine (in memory
        until the next :meth:`add`) and return them with their ``limits_id``."""
        lid = peak_id(key, self.machine_id)
        kept = {**measured, "key": key, "machine_id": self.machine_id, "limits_id": lid}
        self.data["limits"][lid] = kept
        return kept

    def set_run(self, run: dict[str, Any]) -> None:
        """Keep (or update) this run's record in ``runs``; written with the next save, and
        saved now when the file already holds a result of this run."""
        runs = [r for r in self.data["runs"] if r.get("run_id") != run["run_id"]]
        self.data["runs"] = [*runs, dict(run)]
        if any(r.get("run_id") == run["run_id"] for r in self.results):
            self.save()

    def note_runtime(self, backend: str, runtime: dict[str, Any]) -> None:
        """What a backend's worker reported about its threads and TF32 settings on this run's
        machine (:meth:`set_machine` first); the other backends' entries stay."""
        if self.machine_id is None:
            raise RuntimeError("ResultsFile.note_runtime needs set_machine first")
        record = self.data["machines"][self.machine_id]
        for field in RUNTIME_FIELDS:
            record.setdefault(field, {})[backend] = runtime.get(field)
        self._mirror()

    def add(self, record: dict[str, Any], run: dict[str, Any] | None = None) -> None:
        """Append (or replace the unfinished record of the same case) and save at once, with
        the record of the ``run`` that made it."""
        if run is not None:
            runs = [r for r in self.data["runs"] if r.get("run_id") != run["run_id"]]
            self.data["runs"] = [*runs, dict(run)]
        key = key_of(record)
        self.data["results"] = [r for r in self.results if key_of(r) != key]
        self.results.append(record)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        # compact: files hold every raw sample
        atomic_write_text(self.path, json.dumps(self.data) + "\n", make_folder=True)

    def merge_run(self, data: dict[str, Any]) -> None:
        """Take in what a run made elsewhere (one node of a cluster: the ``data`` of its own
        results file, or just its ``machines`` and ``results``) and save at once.

        Results are kept per machine: a record replaces this file's record of the same case
        on the same machine (``machine_id``) only, so one file holds a case once per machine
        of a fleet. A machine's runtime facts merge per backend as :meth:`set_machine` does;
        a measured peak this file already holds is kept (results were computed against it).
        Other maps (``limits``) take the run's entries; list entries (``runs``) replace the
        entry with the same ``run_id``, or are appended. ``machine`` (and ``peak``) become
        the run's when it has them: the latest run's, as after a local run."""
        for mid, record in (data.get("machines") or {}).items():
            earlier = self.data["machines"].get(mid)
            merged = dict(record)
            for field in RUNTIME_FIELDS:
                seen = dict(earlier.get(field) or {}) if isinstance(earlier, dict) else {}
                seen.update(record.get(field) or {})
                merged[field] = seen
            self.data["machines"][mid] = merged
        for pid, peak in (data.get("peaks") or {}).items():
            if not _usable(self.data["peaks"].get(pid)):
                self.data["peaks"][pid] = peak
        for name, value in data.items():
            if name in ("schema", "machine", "machines", "peak", "peaks", "results"):
                continue
            held = self.data.get(name)
            if isinstance(value, dict) and isinstance(held, dict):
                held.update(value)
            elif isinstance(value, list) and isinstance(held, list):
                for item in value:
                    rid = item.get("run_id") if isinstance(item, dict) else None
                    if rid is not None:
                        held[:] = [
                            h for h in held if not (isinstance(h, dict) and h.get("run_id") == rid)
                        ]
                    if item not in held:
                        held.append(item)
        machine = data.get("machine")
        if isinstance(machine, dict) and machine.get("machine_id") in self.data["machines"]:
            mid = machine["machine_id"]
            record = self.data["machines"][mid]
            self.data["machine"] = {
                **{k: (dict(v) if k in RUNTIME_FIELDS else v) for k, v in record.items()},
                "machine_id": mid,
            }
            for peak in self.data["peaks"].values():
                if isinstance(peak, dict) and peak.get("machine_id") == mid and peak.get("key"):
                    self.data["peak"][peak["key"]] = peak
        for record in data.get("results") or []:
            key = (record.get("machine_id"), key_of(record))
            self.data["results"] = [
                r for r in self.results if (r.get("machine_id"), key_of(r)) != key
            ]
            self.results.append(record)
        self.save()
