"""The results file: ``{"schema", "machine", "machines", "peak", "results": [...]}``.

It is rewritten whole after every case, atomically (a temporary file in the same folder, then
``os.replace``), so that a crash or Ctrl-C at any moment leaves either the previous or the new
complete file, never half of one. Opening an existing file resumes it: cases already measured
(status "ok") are skipped; any other status is measured again and its record replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rnnbench.bench.cases import BenchCase, key_of
from rnnbench.errors import RNNBenchError

SCHEMA = "rnnbench.bench/1"

# The fields every result carries (the item 7); extra fields may follow.
RESULT_FIELDS = (
    "backend",
    "variant",
    "path",
    "device",
    "dtype",
    "batch",
    "seq_len",
    "input_size",
    "hidden_size",
    "layers",
    "bidirectional",
    "median_s",
    "iqr_s",
    "min_s",
    "rounds",
    "samples",
    "compile_s",
    "gflops",
    "efficiency",
    "status",
    "error",
)
STATUSES = ("ok", "failed", "timeout", "skipped", "interrupted")


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
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise RNNBenchError(
                f"cannot resume from {path}: its schema is {found!r}, this rnnbench writes "
                f"{SCHEMA!r}",
                "pass another --out, or move the file away",
            )
        for key, empty in (("machine", {}), ("machines", {}), ("peak", {}), ("results", [])):
            data.setdefault(key, empty)
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
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
