"""The results file: ``{"schema", "machine", "machines", "peak", "results": [...]}``.

It is rewritten whole after every case, atomically (a temporary file in the same folder, then
``os.replace``), so that a crash or Ctrl-C at any moment leaves either the previous or the new
complete file, never half of one. Opening an existing file resumes it: cases already measured
(status "ok") are skipped; any other status is measured again and its record replaced.

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
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rnnbench.bench.cases import KEY_DEFAULTS, BenchCase, key_of
from rnnbench.errors import RNNBenchError

SCHEMA = "rnnbench.bench/1.3"
_MAJOR, _MINOR = 1, 3
_SCHEMA_RE = re.compile(r"^rnnbench\.bench/(\d+)(?:\.(\d+))?$")

# The fields every result carries (the item 7); extra fields may follow.
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
    return record


class ResultsFile:
    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "machine": {},
            "machines": {},
            "peak": {},
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
        for key, empty in (("machine", {}), ("machines", {}), ("peak", {}), ("results", [])):
            data.setdefault(key, empty)
        for record in data["results"]:
            if isinstance(record, dict):
                upgrade_record(record)
        data["schema"] = SCHEMA
        return data

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.data["results"]

    def is_done(self, case: BenchCase) -> bool:
        key = case.key()
        return any(key_of(r) == key and r.get("status") == "ok" for r in self.results)

    def set_machine(self, machine: dict[str, Any], machine_id: str) -> None:
        self.data["machine"] = {**machine, "machine_id": machine_id}
        self.data["machines"][machine_id] = machine
        self.save()

    def set_peak(self, key: str, peak: dict[str, Any]) -> None:
        self.data["peak"][key] = peak
        self.save()

    def note_runtime(self, backend: str, runtime: dict[str, Any]) -> None:
        """What a backend's worker reported about its threads and TF32 settings."""
        machine = self.data["machine"]
        machine.setdefault("threads", {})[backend] = runtime.get("threads")
        machine.setdefault("tf32", {})[backend] = runtime.get("tf32")

    def add(self, record: dict[str, Any]) -> None:
        """Append (or replace the unfinished record of the same case) and save at once."""
        key = key_of(record)
        self.data["results"] = [r for r in self.results if key_of(r) != key]
        self.results.append(record)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        folder = self.path.parent if str(self.path.parent) else Path(".")
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.data, fh)  # compact: files hold every raw sample
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for sharing
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
