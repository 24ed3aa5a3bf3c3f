"""Worker processes: run a backend's cell (or a whole job) in a process of its own.

``ProcessCell`` looks and behaves like an in-process cell (``load``, ``forward``, ``info``); the
worker behind it is started once per backend and kept for reuse until this process exits. A
worker that crashes or hangs becomes a ``BackendRuntimeError`` here, naming the backend and the
tail of the worker's stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench import wire
from rnnbench.arrays import resolve_dtype
from rnnbench.cell import check_inputs
from rnnbench.errors import (
    BackendRuntimeError,
    BackendUnavailableError,
    DTypeError,
    LayoutError,
    RNNBenchError,
    ShapeError,
    SpecError,
    UnsupportedPaddingError,
    WeightFileError,
)
from rnnbench.padding import check_padding
from rnnbench.registry import BackendInfo
from rnnbench.spec import RNNSpec
from rnnbench.state import State
from rnnbench.weights import RNNWeights

if TYPE_CHECKING:
    from rnnbench.gradients import Grads

# Errors a worker may raise that keep their class on this side (others become BackendRuntimeError).
_PASS_THROUGH: dict[str, type[RNNBenchError]] = {
    cls.__name__: cls
    for cls in (
        BackendUnavailableError,
        DTypeError,
        ShapeError,
        SpecError,
        BackendRuntimeError,
        LayoutError,
        WeightFileError,
        UnsupportedPaddingError,
    )
}


# Terminal control sequences (colours, bold, cursor moves) some libraries put in their messages
# and logs: CSI ("ESC [" ... final byte), OSC ("ESC ]" ... BEL or ESC \\) and the short ones
# (ESC, intermediate bytes, a final byte: "ESC ( B", "ESC 7").
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences, for quoting a library's message in a table,
    a JSON file or an error (where the raw bytes would show as garbage)."""
    return _ANSI.sub("", text)


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: 'exited with code 1', 'killed by signal SIGKILL (9): ...'."""
    if code is None:
        return "still running"
    if code >= 0:
        return f"exited with code {code}"
    number = -code
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    why = {
        "SIGKILL": ": stopped from outside, most often by the out-of-memory killer (the case "
        "needed more memory than the machine had)",
        "SIGSEGV": ": a crash in native code",
        "SIGABRT": ": the library aborted (a failed internal check)",
        "SIGBUS": ": a crash in native code (or a memory-mapped file went away)",
    }.get(name, "")
    return f"killed by signal {name} ({number}){why}"


def _worker_env(env: Mapping[str, str]) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env)
    # The worker must import this very rnnbench, even from a source checkout not installed.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (here, merged.get("PYTHONPATH")) if p)
    merged.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return merged


class Worker:
    """One ``python -m rnnbench.worker`` process and the pipe to it."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the worker
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rnnbench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_worker_env(env),
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.seek(0)
        text = strip_ansi(self._stderr.read().decode(errors="replace"))
        return "\n".join(text.strip().splitlines()[-lines:])

    def death_message(self, op: Any) -> str:
        """Why the worker is gone, and what it said on the way (or that it said nothing)."""
        code = self.proc.returncode
        how = f": {describe_exit(code)}" if code is not None and code < 0 else ""
        tail = self.stderr_tail()
        said = (
            f" Last lines of its stderr:\n{tail}"
            if tail
            else " It wrote nothing to stderr (a process killed from outside has no chance to)."
        )
        return (
            f"backend {self.name!r}: its worker process died (exit code {code}) during "
            f"{op!r}{how}.{said}"
        )

    def request(
        self,
        header: dict[str, Any],
        arrays: dict[str, np.ndarray] | None = None,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            try:
                wire.send(self.proc.stdin, header, arrays)  # type: ignore[arg-type]
                reply, out = wire.receive(self.proc.stdout.fileno(), timeout)
            except wire.WireTimeout as exc:
                self.kill()
                raise BackendRuntimeError(
                    f"backend {self.name!r}: its worker gave no answer within {timeout} s to "
                    f"{header.get('op')!r}; it was stopped",
                    "raise the timeout, or use a smaller case",
                ) from exc
            except (wire.WireClosed, BrokenPipeError, OSError) as exc:
                self.proc.wait()
                raise BackendRuntimeError(
                    self.death_message(header.get("op")),
                    "if memory ran out, use a smaller case; run the backend alone "
                    "(--backends NAME) to see more",
                ) from exc
        if not reply.get("ok"):
            cls = _PASS_THROUGH.get(reply.get("error_type", ""), BackendRuntimeError)
            message = f"backend {self.name!r} (in its worker process): {reply.get('message')}"
            if cls is BackendRuntimeError:
                message += f"\n--- worker traceback ---\n{reply.get('traceback', '').rstrip()}"
            hint = reply.get("hint")
            raise cls(
                strip_ansi(message.split("\nHint: ")[0]),
                strip_ansi(hint) if isinstance(hint, str) else hint,
            )
        return reply, out

    def call(
        self,
        target: str,
        arrays: dict[str, np.ndarray] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Run ``target`` ("module:function") in the worker; it returns (header, arrays)."""
        reply, out = self.request(
            {"op": "call", "target": target, "kwargs": kwargs}, arrays, timeout
        )
        return reply["result"], out

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(RNNBenchError):
                self.request({"op": "exit"}, timeout=10)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._stderr.close()


_pool: dict[str, Worker] = {}
_pool_lock = threading.Lock()


def pooled_worker(info: BackendInfo) -> Worker:
    """The shared worker for ``info`` (one per backend), restarted if it died."""
    with _pool_lock:
        worker = _pool.get(info.name)
        if worker is None or not worker.alive:
            worker = Worker(info.name, info.env)
            _pool[info.name] = worker
        return worker


@atexit.register
def shutdown_workers() -> None:
    with _pool_lock:
        for worker in _pool.values():
            try:
                worker.close()
            except Exception:
                worker.kill()
        _pool.clear()


class ProcessCell:
    """An RNNCell whose library runs in a worker process (see the module docstring).

    ``prepare``/``run``/``synchronize`` exist for protocol completeness, but a timing through
    them would include the pipe; the benchmark runs its timing loop inside the worker instead.
    """

    def __init__(
        self,
        info: BackendInfo,
        device: str = "cpu",
        dtype: Any = "float32",
        variant: str | None = None,
    ) -> None:
        self.name = info.name
        self.device = device
        self.dtype = resolve_dtype(dtype)
        self._worker = pooled_worker(info)
        reply, _ = self._worker.request(
            {
                "op": "new",
                "backend": info.name,
                "device": device,
                "dtype": str(self.dtype),
                "variant": variant,
            }
        )
        self._handle = reply["handle"]
        self.variant: str = reply["variant"]
        self._info: dict[str, Any] = reply["info"]
        self._spec: RNNSpec | None = None

    @property
    def spec(self) -> RNNSpec:
        if self._spec is None:
            raise SpecError(
                f"backend {self.name!r} has no weights yet", "call cell.load(weights) first"
            )
        return self._spec

    def _ensure_worker(self) -> None:
        if not self._worker.alive:
            raise BackendRuntimeError(
                f"backend {self.name!r}: its worker process is gone "
                f"({describe_exit(self._worker.proc.returncode)})",
                "get a new cell with rnnbench.get_backend",
            )

    def load(self, weights: RNNWeights) -> None:
        if not isinstance(weights, RNNWeights):
            raise SpecError(
                f"load() takes RNNWeights, got {type(weights).__name__}",
                "convert first, e.g. RNNWeights.from_torch(state_dict), or build them with "
                "RNNWeights.random(spec) or RNNWeights.load(path)",
            )
        self._ensure_worker()
        weights = weights.astype(self.dtype)
        self._worker.request(
            {"op": "load", "handle": self._handle, "spec": weights.spec.to_dict()},
            weights.arrays(),
        )
        self._spec = weights.spec

    def _request_arrays(self, x: Any, h0: Any, lengths: Any, mask: Any) -> dict[str, np.ndarray]:
        """The checked input, state and padding as the worker takes them (bad input fails here,
        not in the worker)."""
        xs, states = check_inputs(self.spec, x, h0, self.dtype)
        padding = check_padding(lengths, mask, xs.shape[0], xs.shape[1])
        arrays = {"x": xs, **wire.state_arrays("0", states)}
        if padding is not None:
            # Whether the backend takes it is the cell's to say, in the worker.
            arrays.update(padding.arguments())
        return arrays

    def forward(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, State]:
        self._ensure_worker()
        arrays = self._request_arrays(x, h0, lengths, mask)
        reply, out = self._worker.request({"op": "forward", "handle": self._handle}, arrays)
        self._info = reply.get("info", self._info)
        final = wire.read_state("_n", out)
        if final is None:
            raise BackendRuntimeError(f"backend {self.name!r}: its worker returned no final state")
        return out["y"], state_mod.from_tuple(self.spec, final)

    def vjp(
        self,
        x: np.ndarray,
        h0: State | None = None,
        dy: np.ndarray | None = None,
        dh_n: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Grads:
        from rnnbench.gradients import Grads, check_cotangents

        self._ensure_worker()
        arrays = self._request_arrays(x, h0, lengths, mask)
        xs = arrays["x"]
        dy_c, dstates = check_cotangents(self.spec, xs.shape[0], xs.shape[1], dy, dh_n, self.dtype)
        if dy_c is not None:
            arrays["dy"] = dy_c
        arrays.update(wire.state_arrays("_n_grad", dstates))
        reply, out = self._worker.request({"op": "vjp", "handle": self._handle}, arrays)
        self._info = reply.get("info", self._info)
        return Grads.from_arrays(self.spec, out)

    def prepare(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Any:
        xs, states = check_inputs(self.spec, x, h0, self.dtype)
        check_padding(lengths, mask, xs.shape[0], xs.shape[1])
        return (
            xs,
            None if states is None else state_mod.from_tuple(self.spec, states),
            lengths,
            mask,
        )

    def run(self, prepared: Any) -> Any:
        return self.forward(*prepared)

    def synchronize(self, result: Any) -> None:
        """``run`` already returned host arrays."""

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        return result  # type: ignore[no-any-return, unused-ignore]

    def info(self) -> dict[str, Any]:
        return {**self._info, "process": "worker"}

    def close(self) -> None:
        if self._worker.alive:
            self._worker.request({"op": "close", "handle": self._handle})
