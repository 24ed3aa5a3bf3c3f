"""Run a sweep. The cases that differ only in backend run as a group, side by side: each case
gets ``processes`` worker processes, all of them stay alive through the group, and they take
their timed turns in a new random order each round, so that whatever the machine does meanwhile
(a clock change, another tenant, a cron job) lands on every backend alike, and the spread
between a case's processes measures the noise a second run would see. A failure gets fresh
workers, every finished case is saved at once, each case has its own timeout (its own workers'
time), and Ctrl-C keeps what was done."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import functools
import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnbench.bench import jobs
from rnnbench.bench import limits as limits_mod
from rnnbench.bench.cases import BenchCase, expand_cases, group_of
from rnnbench.bench.machine import (
    cuda_unavailable_reason,
    device_env,
    machine_id,
    machine_record,
    other_load,
    thread_env,
)
from rnnbench.bench.progress import Reporter, make_reporter
from rnnbench.bench.results import ResultsFile
from rnnbench.bench.stability import run_warnings
from rnnbench.bench.stats import log_spread, summarize
from rnnbench.errors import (
    BackendRuntimeError,
    BackendUnavailableError,
    RNNBenchError,
    SpecError,
)
from rnnbench.process import Worker
from rnnbench.registry import BackendInfo, backend_info, list_backends
from rnnbench.wire import WireTimeout

JOBS = jobs.__name__
# Worker processes per case by default: the spread between them is the noise a second run
# would see. Three is the fewest that give a spread at all with one to spare; more narrow the
# intervals (rnnbench compare pools the spread over a backend's cases, so a sweep of several
# cases needs no more) at the cost of a compile and a warm-up each.
DEFAULT_PROCESSES = 3
# Each process takes about this many timed turns per case (its share of --min-time in slices).
TURNS_PER_PROCESS = 5
# Seconds a worker may take to start (an interpreter and NumPy; many start at once), at least.
STARTUP_TIMEOUT = 120.0
# Seconds of the GEMM that calibrates the machine's speed at the start and the end of a run.
CALIBRATION_TIME = 0.2


@dataclass
class BenchConfig:
    backends: Sequence[str] | None = None  # None: every registered backend
    variants: Sequence[str] | None = None  # None: defaults; ["all"]; names or backend:variant
    device: str = "cpu"
    dtypes: Sequence[str] = ("float32",)
    batches: Sequence[int] = (32,)
    seq_lens: Sequence[int] = (100,)
    input_sizes: Sequence[int | None] = (128,)  # None: the hidden size (I = H)
    hidden_sizes: Sequence[int] = (256,)
    layers: Sequence[int] = (1,)
    bidirectional: Sequence[bool] = (False,)
    threads: Sequence[int | None] = (None,)
    # (RNNSpec.cell, reset_after) pairs: ("rnn", None), ("lstm", None), ("gru", True/False)
    cells: Sequence[tuple[str, bool | None]] = (("rnn", None),)
    nonlinearities: Sequence[str] = ("tanh",)  # the vanilla RNN's; gated cells run tanh only
    # "full" (no padding passed) and/or "ragged" (lengths in [T/2, T] drawn with ``seed``)
    lengths: Sequence[str] = ("full",)
    # "inference" (the forward pass) and/or "training" (forward + backward of one loss)
    modes: Sequence[str] = ("inference",)
    processes: int = DEFAULT_PROCESSES  # worker processes per case, interleaved
    min_time: float = 1.0  # seconds of timed calls per case, over all its processes
    min_rounds: int = 5  # timed calls per case at least, over all its processes
    max_rounds: int = 10_000  # caps the samples kept per case
    warmup_time: float = 0.2
    warmup_rounds: int = 2
    timeout: float = 300.0  # per case: setup, compile, warm-up and measurement
    seed: int = 0
    out: str | None = None
    peak: bool = True
    peak_sizes: Sequence[int] | None = None  # None: 512,1024,2048 on the CPU, 4096.. on CUDA
    peak_min_time: float = 0.3  # seconds per GEMM size
    limit_min_time: float = 0.05  # seconds per measurement of the limit model
    load_window: float = 0.25  # seconds the other work on the machine is measured, start and end
    chunk_s: float = 0.25  # the parent hears from the worker this often (running median)


@dataclass
class BenchSummary:
    path: str | None
    records: list[dict[str, Any]] = field(default_factory=list)  # this run's, in order
    already_done: int = 0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    def exit_code(self) -> int:
        """0: every case measured (now or before) or skipped with a reason, at least one
        measured; 1: a case failed or timed out (the rest is kept); 3: nothing measured at all
        (every case skipped, e.g. no CUDA); 130: interrupted."""
        if self.interrupted:
            return 130
        if self.count("failed") or self.count("timeout"):
            return 1
        if self.count("ok") == 0 and self.already_done == 0:
            return 3
        return 0


class _CaseTimeout(Exception):
    pass


def _stopped_by_ctrl_c(worker: Worker) -> bool:
    """Ctrl-C on a terminal reaches the whole process group, workers included: a worker that
    died of it means the user interrupted, not that the backend failed."""
    code = worker.proc.poll()
    return code == -signal.SIGINT or (
        code is not None and "KeyboardInterrupt" in worker.stderr_tail(3)
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _as_list(values: Any) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


def _peak_key(device: str, dtype: str, threads: int | None) -> str:
    return f"{device}/{dtype}" + ("" if threads is None else f"/threads={threads}")


def _probe_variants(info: BackendInfo) -> list[str]:
    worker = Worker(info.name, info.env)
    try:
        header, _ = worker.call(
            f"{JOBS}:variants",
            timeout=120,
            backend=info.name,
            cell_target=info.target,
            devices=list(info.devices),
        )
        return list(header["variants"])
    finally:
        worker.close()


def select_variants(
    available: dict[str, list[str]], requested: Sequence[str] | None
) -> dict[str, list[str]]:
    """Which variants of each backend run: the default (first) one, "all", or named ones (a
    plain name applies to every backend that has it, "backend:variant" to one; a backend none
    names runs its default)."""
    if not requested or list(requested) == ["default"]:
        return {b: v[:1] for b, v in available.items()}
    if list(requested) == ["all"]:
        return {b: list(v) for b, v in available.items()}
    chosen: dict[str, list[str]] = {b: [] for b in available}
    for token in requested:
        backend, _, name = token.rpartition(":")
        hits = [b for b in available if (not backend or b == backend) and name in available[b]]
        if not hits:
            known = "; ".join(f"{b}: {', '.join(v)}" for b, v in available.items())
            raise SpecError(
                f"no selected backend has a variant {token!r}",
                f"variants are {known}; or pass 'all' or 'default'",
            )
        for b in hits:
            if name not in chosen[b]:
                chosen[b].append(name)
    return {b: (v or available[b][:1]) for b, v in chosen.items()}


def plan_cases(config: BenchConfig) -> tuple[list[BenchCase], dict[str, str]]:
    """Every case of the sweep, and for backends that cannot run, why not (a worker per
    installed backend is asked for its variants; an unknown backend is an error)."""
    c = config
    names = list(c.backends) if c.backends else list_backends()
    skip: dict[str, str] = {}
    available: dict[str, list[str]] = {}
    for name in names:
        info = backend_info(name)  # an unknown name is an error, before anything runs
        reason = info.unavailable_reason()
        if reason is None and c.device not in info.devices:
            reason = (
                f"backend {name!r} has no device {c.device!r} (its devices: "
                f"{', '.join(info.devices)})"
            )
        if reason is None and c.device == "cuda":
            reason = cuda_unavailable_reason()
        if reason is None:
            try:
                available[name] = _probe_variants(info)
            except BackendUnavailableError as exc:
                reason = str(exc).split("\nHint:")[0]
        if reason is not None:
            skip[name] = reason
            available.setdefault(name, ["default"])
    chosen = select_variants(available, c.variants)
    pairs = [(b, v) for b in names for v in chosen[b]]
    cases = expand_cases(
        pairs,
        device=c.device,
        dtypes=c.dtypes,
        batches=c.batches,
        seq_lens=c.seq_lens,
        input_sizes=c.input_sizes,
        hidden_sizes=c.hidden_sizes,
        layers=c.layers,
        bidirectional=c.bidirectional,
        threads=c.threads,
        cells=c.cells,
        nonlinearities=c.nonlinearities,
        lengths=c.lengths,
        modes=c.modes,
    )
    return cases, skip


class _Turns:
    """Only the worker whose turn it is may run: the others are stopped (SIGSTOP) until their
    next turn (SIGCONT). An idle worker is asleep on its pipe, but the thread pools of its
    library are not: OpenBLAS, OpenMP and Eigen threads spin for up to a tenth of a second
    after each call, waiting for the next. With a case's processes and the other backends
    alive side by side, those spinning threads took the cores from the worker being timed:
    on two cores, three NumPy processes differed by 136% (one was 11x slower), against 2%
    with one BLAS thread. Stopped, they cannot run at all. Every way out of a run continues
    them first (before they exit or are killed). Should the parent itself be killed, a
    stopped worker whose process group is left orphaned (a run started from a shell) gets
    SIGHUP and SIGCONT from the kernel and ends. Where there is no SIGSTOP (not POSIX),
    workers are left running."""

    def __init__(self) -> None:
        self.stopped: set[int] = set()
        self.enabled = hasattr(signal, "SIGSTOP")

    def give(self, worker: Worker, others: list[Worker]) -> None:
        """``worker`` runs; every other live worker of ``others`` is stopped."""
        if not self.enabled:
            return
        for other in others:
            pid = _pid(other)
            if other is not worker and pid is not None and pid not in self.stopped and other.alive:
                self._signal(pid, signal.SIGSTOP)
                self.stopped.add(pid)
        self.release([worker])

    def release(self, workers: list[Worker]) -> None:
        """Let ``workers`` run again (before they load side by side, exit or are killed)."""
        if not self.enabled:
            return
        for worker in workers:
            pid = _pid(worker)
            if pid in self.stopped:
                self.stopped.discard(pid)
                self._signal(pid, signal.SIGCONT)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it died meanwhile
            os.kill(pid, sig)


def _pid(worker: Worker) -> int | None:
    """The worker's process id (None for a worker without a process of its own)."""
    proc = getattr(worker, "proc", None)
    return getattr(proc, "pid", None)


@dataclass
class _Slot:
    """One worker process of one case: its samples and how much timed work it has done."""

    index: int
    worker: Worker
    samples: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0  # timed seconds (the samples' sum, as the worker measured them)
    compile_s: float | None = None
    warmup_rounds: int = 0
    done: bool = False


@dataclass
class _CaseRun:
    """A case in flight: its processes, and the wall time its workers have used (its timeout
    counts that, not the time other backends of the group took in their turns)."""

    case: BenchCase
    info: BackendInfo
    slots: list[_Slot] = field(default_factory=list)
    busy_s: float = 0.0
    partial: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # set once the case has finished, whatever its status

    def samples(self) -> list[float]:
        return [s for slot in self.slots for s in slot.samples]


class _Run:
    def __init__(self, config: BenchConfig, reporter: Reporter) -> None:
        if config.processes < 1:
            raise SpecError(
                f"processes must be >= 1, got {config.processes}",
                "give each case at least one worker process (--processes 1 or more)",
            )
        self.config = config
        self.reporter = reporter
        self.file = ResultsFile(config.out)
        machine = machine_record()
        self.machine_id = machine_id(machine)
        # in memory only: the file is written with this run's first record, so that a run that
        # stops at planning or finds nothing to measure leaves an existing file as it was
        self.file.set_machine(machine, self.machine_id)
        self.peaks: dict[str, dict[str, Any]] = {}
        self.limits: dict[str, dict[str, Any]] = {}
        self.summary = BenchSummary(config.out)
        self.pool: dict[tuple[Any, ...], Worker] = {}
        self.helpers: dict[int | None, Worker] = {}  # the measuring workers (_helper_call)
        self.turns = _Turns()
        self.rng = random.Random(config.seed)
        system = machine.get("system") or {}
        self.run_record: dict[str, Any] = {
            "run_id": f"{self.machine_id}/{_now()}",
            "machine_id": self.machine_id,
            "started": _now(),
            "finished": None,
            "settings": {
                "processes": config.processes,
                "min_time": config.min_time,
                "min_rounds": config.min_rounds,
                "max_rounds": config.max_rounds,
                "warmup_time": config.warmup_time,
                "seed": config.seed,
                "interleaved": True,
            },
            "cpu_count": system.get("cpu_count"),
            "governor": system.get("governor"),
            # what else kept the cores busy just before the first case and after the last
            "load_start": other_load(config.load_window),
            "load_end": None,
            "calibration": None,
        }

    def plan(self) -> tuple[list[BenchCase], dict[str, str]]:
        return plan_cases(self.config)

    # --- the GEMM peak, the calibration and the limit model -------------------------------
    def _helper_call(self, name: str, threads: int | None, target: str, **kwargs: Any) -> Any:
        """One call in the run's measuring worker for ``threads`` (NumPy, or torch on CUDA):
        the GEMM peak, the calibration and the limit model share it, in a process of their
        own (no backend's library loaded beside them); it waits, asleep, while cases run."""
        worker = self.helpers.get(threads)
        if worker is None or not worker.alive:
            env = {**thread_env(threads), **device_env(self.config.device)}
            worker = self.helpers[threads] = Worker(name, env)
        self.turns.give(worker, list(self.pool.values()))
        try:
            return worker.call(target, timeout=self.config.timeout, **kwargs)[0]
        except RNNBenchError:
            self.helpers.pop(threads, None)
            worker.kill()
            worker.close()
            raise

    def peak(self, case: BenchCase) -> dict[str, Any] | None:
        if not self.config.peak:
            return None
        key = _peak_key(case.device, case.dtype, case.threads)
        held = None if key in self.peaks else self.file.held_peak(key)
        if held is not None:
            # Results of this machine in the file were computed against it: measuring again
            # would give this run's results another denominator.
            self.peaks[key] = self.file.set_peak(key, held)
            self.reporter.message(
                f"GEMM peak {key}: {held['gflops']:.1f} GFLOP/s, measured on this machine "
                f"{held.get('timestamp') or 'earlier'} and kept from the results file"
            )
        if key not in self.peaks:
            self.reporter.message(f"measuring the GEMM peak for {key}")
            c = self.config
            try:
                peak = self._helper_call(
                    "gemm-peak",
                    case.threads,
                    f"{JOBS}:gemm_peak",
                    device=case.device,
                    dtype=case.dtype,
                    min_time=c.peak_min_time,
                    sizes=list(c.peak_sizes) if c.peak_sizes else None,
                )
                peak["timestamp"] = _now()
            except RNNBenchError as exc:
                peak = {
                    "device": case.device,
                    "dtype": case.dtype,
                    "gflops": None,
                    "error": str(exc),
                }
            self.peaks[key] = self.file.set_peak(key, peak)
            if peak.get("gflops"):
                self.reporter.message(
                    f"GEMM peak {key}: {peak['gflops']:.1f} GFLOP/s ({peak['library']}, "
                    f"n={peak['size']})"
                )
        return self.peaks[key]

    def calibrate(self, when: str, case: BenchCase) -> None:
        """A short GEMM at the best size of ``case``'s peak (the run's first case, at the
        start and at the end of the run): how much the machine's own speed moved while the
        cases ran (``rnnbench compare`` also reads it as the noise between runs that no
        spread within a run shows)."""
        key = _peak_key(case.device, case.dtype, case.threads)
        peak = self.peaks.get(key) if self.config.peak else None
        if not peak or not peak.get("gflops"):
            return
        try:
            got = self._helper_call(
                "calibration",
                case.threads,
                f"{JOBS}:gemm_peak",
                device=case.device,
                dtype=case.dtype,
                min_time=CALIBRATION_TIME,
                sizes=[int(peak["size"])] if peak.get("size") else None,
            )
        except RNNBenchError as exc:
            self.reporter.message(f"calibration at the {when} failed: {exc}")
            return
        cal = self.run_record["calibration"] or {"key": key, "size": peak.get("size")}
        cal[f"{when}_gflops"] = got["gflops"]
        if "start_gflops" in cal and "end_gflops" in cal:
            cal["drift"] = cal["end_gflops"] / cal["start_gflops"] - 1.0
        self.run_record["calibration"] = cal

    def limits_for(self, case: BenchCase) -> dict[str, Any] | None:
        """What the limit model needs for ``case`` (GEMMs at its shapes, the streaming
        bandwidth, the dispatch floor), measured once per key and machine and kept in the
        file; None when it could not be measured (the result then has no limit)."""
        if not self.config.peak:
            return None
        key = _peak_key(case.device, case.dtype, case.threads)
        shapes = [list(s) for s in limits_mod.gemm_shapes(case.to_dict())]
        held = self.limits.get(key) or self.file.held_limits(key) or {}
        missing = [s for s in shapes if limits_mod.shape_key(s) not in held.get("gemm", {})]
        if missing or "bandwidth" not in held:
            try:
                got = self._helper_call(
                    "limits",
                    case.threads,
                    f"{limits_mod.__name__}:measure_limits",
                    device=case.device,
                    dtype=case.dtype,
                    shapes=missing,
                    min_time=self.config.limit_min_time,
                    streams="bandwidth" not in held,
                )
            except RNNBenchError as exc:
                self.reporter.message(f"the limit model for {key} could not be measured: {exc}")
                return None
            merged = {**held, **{k: v for k, v in got.items() if k != "gemm"}}
            merged["gemm"] = {**held.get("gemm", {}), **got.get("gemm", {})}
            held = merged
        self.limits[key] = self.file.set_limits(key, held)
        return held

    # --- workers ---------------------------------------------------------------------------
    def _worker(self, case: BenchCase, index: int) -> Worker:
        """Process ``index`` of the case's (backend, variant, threads): kept across the groups
        of the sweep (a library starts once per process, not once per case)."""
        key = (case.backend, case.variant, case.threads, index)
        worker = self.pool.get(key)
        if worker is None or not worker.alive:
            info = backend_info(case.backend)
            env = {**info.env, **thread_env(case.threads), **device_env(case.device)}
            worker = self.pool[key] = Worker(case.backend, env)
        return worker

    def _drop(self, worker: Worker, kill: bool = True) -> None:
        self.turns.release([worker])
        for key, held in list(self.pool.items()):
            if held is worker:
                del self.pool[key]
        if kill:
            worker.kill()
        worker.close()

    def _keep_only(self, cases: list[BenchCase]) -> None:
        """Close the workers no case of the next group uses (their memory is the next's)."""
        wanted = {(c.backend, c.variant, c.threads) for c in cases}
        for key, worker in list(self.pool.items()):
            if key[:3] not in wanted:
                self._drop(worker, kill=False)

    # --- one case ------------------------------------------------------------------------
    def record(
        self, case: BenchCase, status: str, error: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        rec: dict[str, Any] = {
            **case.to_dict(),
            **case.lengths_record(self.config.seed),
            "path": None,
            "median_s": None,
            "iqr_s": None,
            "min_s": None,
            "rounds": 0,
            "samples": [],
            "compile_s": None,
            "flops": case.flops,  # of the timed call: 3x the forward's for training
            "forward_flops": case.forward_flops,
            "gflops": None,
            "efficiency": None,
            "status": status,
            "error": error,
        }
        rec.update(fields)
        rec.update(timestamp=_now(), machine_id=self.machine_id, run_id=self.run_record["run_id"])
        return rec

    def _call(self, run: _CaseRun, slot: _Slot, target: str, **kwargs: Any) -> dict[str, Any]:
        """One call of a case's worker, charged to the case's own time budget."""
        left = self.config.timeout - run.busy_s
        if left <= 0:
            raise _CaseTimeout()
        self.turns.give(slot.worker, list(self.pool.values()))
        t0 = time.monotonic()
        try:
            header, _ = slot.worker.call(f"{JOBS}:{target}", timeout=left, **kwargs)
        finally:
            run.busy_s += time.monotonic() - t0
        return header

    def _start_all(self, runs: list[_CaseRun]) -> None:
        """Ask every worker of the group whether it has started (and loaded its library), all
        at once from threads; a case whose worker could not start ends as its error says."""
        timeout = max(self.config.timeout, STARTUP_TIMEOUT)
        self.turns.release(list(self.pool.values()))  # libraries load side by side

        def ask(run: _CaseRun, slot: _Slot) -> None:
            case = run.case
            slot.worker.call(
                f"{JOBS}:ready",
                timeout=timeout,
                backend=case.backend,
                device=case.device,
                dtype=case.dtype,
                variant=case.variant,
                cell_target=run.info.target,
                devices=list(run.info.devices),
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            pending = {run.case: [pool.submit(ask, run, s) for s in run.slots] for run in runs}
            for run in runs:
                for future in pending[run.case]:
                    self._guarded(run, future.result)
                    if run.record is not None:
                        break

    def _setup(self, run: _CaseRun, slot: _Slot) -> None:
        c, case = self.config, run.case
        head = self._call(
            run,
            slot,
            "setup",
            backend=case.backend,
            device=case.device,
            dtype=case.dtype,
            variant=case.variant,
            spec=case.spec.to_dict(),
            batch=case.batch,
            seq_len=case.seq_len,
            seed=c.seed,
            threads=case.threads,
            cell_target=run.info.target,
            devices=list(run.info.devices),
            lengths=_as_list(case.row_lengths(c.seed)),
            mode=case.mode,
        )
        slot.compile_s = head["compile_s"]
        if not run.partial:
            run.partial.update(
                compile_detail=head["compile_detail"],
                path=head["info"].get("path"),
                info=head["info"],
            )
        warm = self._call(run, slot, "warmup", min_time=c.warmup_time, min_rounds=c.warmup_rounds)
        slot.warmup_rounds = warm["rounds"]

    def _chunk(self, run: _CaseRun, slot: _Slot, per_process: _Quota) -> None:
        """One turn of one process: a chunk of timed calls, after one untimed call when calls
        are short (the turn before was another process's, which left the caches and the
        thread pools to itself)."""
        running = float(np.median(slot.samples)) if slot.samples else math.inf
        warm_calls = 1 if running < per_process.chunk_s / 4 else 0
        left = per_process.max_rounds - len(slot.samples)
        chunk = self._call(
            run,
            slot,
            "measure",
            budget_s=min(per_process.chunk_s, max(per_process.time_s - slot.elapsed_s, 0.0)),
            min_rounds=1,
            max_rounds=max(left, 1),
            warm_calls=warm_calls,
        )
        slot.samples.extend(chunk["samples"])
        slot.elapsed_s += sum(chunk["samples"])
        slot.done = len(slot.samples) >= per_process.max_rounds or (
            slot.elapsed_s >= per_process.time_s and len(slot.samples) >= per_process.min_rounds
        )

    def _fail(self, run: _CaseRun, exc: BaseException) -> None:
        """End a case on an error: the status it means, its processes stopped unless the
        backend only refused (a refusal leaves a worker sound, and the next case asks again
        so that each skip names its own case)."""
        c = self.config
        if isinstance(exc, _CaseTimeout):
            status, why = (
                "timeout",
                (f"the case ran past --timeout {c.timeout} s and its workers were stopped"),
            )
        elif isinstance(exc, BackendUnavailableError):
            status, why = "skipped", str(exc)
        elif isinstance(exc, BackendRuntimeError) and isinstance(exc.__cause__, WireTimeout):
            status, why = "timeout", f"no answer within --timeout {c.timeout} s (stopped)"
        else:
            status, why = "failed", str(exc)
        if status != "skipped":
            for slot in run.slots:
                self._drop(slot.worker)
        run.record = self._finish(run, status, why)

    def _guarded(self, run: _CaseRun, step: Callable[[], None]) -> None:
        """Run one step of a case; an error ends that case (not the group)."""
        try:
            try:
                step()
            except BackendRuntimeError:
                if any(_stopped_by_ctrl_c(slot.worker) for slot in run.slots):
                    raise KeyboardInterrupt from None
                raise
        except KeyboardInterrupt:
            raise
        except (_CaseTimeout, RNNBenchError) as exc:
            self._fail(run, exc)

    def _teardown(self, run: _CaseRun) -> None:
        tails = [self._call(run, slot, "teardown") for slot in run.slots]
        first = tails[0]
        rec = self._finish(run, "ok", None)
        rec["info"] = first.get("info", run.partial.get("info"))
        rec["path"] = rec["info"].get("path") if rec["info"] else rec["path"]
        rec["version"] = rec["info"].get("version") if rec["info"] else None
        if run.case.mode == "training":
            # what the library ran backwards through (torch, jax, keras say; else the forward's)
            rec["backward_path"] = (rec["info"] or {}).get("backward_path") or rec["path"]
        finite = [t.get("output_finite") for t in tails]
        rec["output_finite"] = None if None in finite else all(finite)
        runtime = first.get("runtime", {})
        rec["threads_used"] = runtime.get("threads")
        rec["tf32"] = runtime.get("tf32")
        self.file.note_runtime(run.case.backend, runtime)
        if rec["output_finite"] is False:
            rec["status"] = "failed"
            what = "a gradient" if run.case.mode == "training" else "the output"
            rec["error"] = f"{what} holds NaN or infinity; the timing is not kept as valid"
        run.record = rec

    def _finish(self, run: _CaseRun, status: str, error: str | None) -> dict[str, Any]:
        case = run.case
        samples = run.samples()
        stats = summarize(samples)
        fields: dict[str, Any] = {**run.partial, **stats, "samples": samples}
        timed = [slot for slot in run.slots if slot.samples]
        medians = [float(np.median(slot.samples)) for slot in timed]
        spread = log_spread(medians)
        compiles = [slot.compile_s for slot in run.slots if slot.compile_s is not None]
        fields.update(
            processes=len(timed),
            process_rounds=[len(slot.samples) for slot in timed],
            process_medians=medians,
            process_sd=spread.sd if spread and spread.n > 1 else None,
            process_compile_s=compiles,
            compile_s=float(np.median(compiles)) if compiles else None,
            warmup_rounds=sum(slot.warmup_rounds for slot in run.slots),
            min_time=self.config.min_time,
            seed=self.config.seed,
        )
        if stats["median_s"]:
            median = float(stats["median_s"])
            fields["gflops"] = case.flops / median / 1e9
            fields["time_per_step_s"] = median / case.seq_len
            key = _peak_key(case.device, case.dtype, case.threads)
            peak = self.peaks.get(key)
            if peak and peak.get("gflops"):
                # the peak goes with the result: its value, key and id (the file's ``peaks``)
                fields["peak_gflops"] = peak["gflops"]
                fields["peak_key"] = key
                fields["peak_id"] = peak.get("peak_id")
                fields["efficiency"] = fields["gflops"] / peak["gflops"]
            measured = self.limits.get(key)
            if measured:
                limit = limits_mod.limit_for(case.to_dict(), measured)
                fields.update(
                    limit_s=limit["limit_s"],
                    limit_fraction=limits_mod.fraction(limit["limit_s"], median),
                    limit_bound=limit["bound"],
                    limit=limit,
                    limit_id=measured.get("limits_id"),
                )
        return self.record(case, status, error, **fields)

    # --- one group: the backends of one case, interleaved -----------------------------------
    def _run_group(self, cases: list[BenchCase], skip: dict[str, str]) -> None:
        c = self.config
        runs: list[_CaseRun] = []
        for case in cases:
            self.reporter.case_started(case)
            if case.backend in skip:
                self._done(case, self.record(case, "skipped", skip[case.backend]))
            else:
                runs.append(_CaseRun(case, backend_info(case.backend)))
        if not runs:
            return
        self._keep_only([r.case for r in runs])
        self.peak(runs[0].case)
        self.limits_for(runs[0].case)
        quota = _Quota.of(c)
        try:
            for run in runs:
                run.slots = [_Slot(i, self._worker(run.case, i)) for i in range(c.processes)]
            # every worker starts, and loads its library, at once; the cases' clocks start
            # once they all have
            self._start_all(runs)
            # set-up and warm-up, each process in turn (compiles are timed apart, not raced)
            for run in runs:
                for slot in run.slots:
                    if run.record is None:
                        self._guarded(run, functools.partial(self._setup, run, slot))
            # the rounds: every process that still needs time takes one chunk, in a new
            # random order each round, so that drift lands on every backend alike
            while True:
                turns = [
                    (run, slot)
                    for run in runs
                    if run.record is None
                    for slot in run.slots
                    if not slot.done
                ]
                if not turns:
                    break
                self.rng.shuffle(turns)
                for run, slot in turns:
                    if run.record is not None:
                        continue
                    self._guarded(run, functools.partial(self._chunk, run, slot, quota))
                    if run.record is None:
                        self.reporter.case_progress(
                            run.case, summarize(run.samples())["median_s"], len(run.samples())
                        )
            for run in runs:
                if run.record is None:
                    self._guarded(run, functools.partial(self._teardown, run))
        except KeyboardInterrupt:
            for run in runs:
                if run.record is None:
                    for slot in run.slots:
                        self._drop(slot.worker)
                    run.record = self._finish(
                        run, "interrupted", "interrupted by the user (Ctrl-C)"
                    )
                    self._done(run.case, run.record)
            self.summary.interrupted = True
            raise
        for run in runs:
            assert run.record is not None
            self._done(run.case, run.record)

    def _done(self, case: BenchCase, rec: dict[str, Any]) -> None:
        self.file.add(rec, run=self.run_record)
        self.summary.records.append(rec)
        self.reporter.case_finished(case, rec)

    # --- the sweep -----------------------------------------------------------------------
    def run(self) -> BenchSummary:
        cases, skip = self.plan()
        todo = [case for case in cases if not self.file.is_done(case)]
        self.summary.already_done = len(cases) - len(todo)
        self.reporter.start(len(cases), self.summary.already_done, self.config.out)
        groups: dict[tuple[Any, ...], list[BenchCase]] = {}
        for case in todo:
            groups.setdefault(group_of(case.to_dict()), []).append(case)
        first: BenchCase | None = None  # the case whose peak calibrates the run
        try:
            for index, group in enumerate(groups.values()):
                if index == 0 and any(case.backend not in skip for case in group):
                    first = group[0]
                    self.peak(first)
                    self.calibrate("start", first)
                self._run_group(group, skip)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            workers = list(self.pool.values())
            self.pool.clear()
            self.turns.release(workers)
            if self.summary.interrupted:
                for worker in workers:
                    worker.kill()
            # each exits in its own time (a library's teardown): side by side
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as closing:
                list(closing.map(Worker.close, workers))
            if first is not None and not self.summary.interrupted and self.summary.count("ok"):
                self.calibrate("end", first)
            for worker in self.helpers.values():
                worker.close()
            self.run_record["finished"] = _now()
            self.run_record["load_end"] = other_load(self.config.load_window)
            self.run_record["warnings"] = run_warnings(self.run_record)
            self.file.set_run(self.run_record)
            for text in self.run_record["warnings"]:
                self.reporter.message(f"warning: {text}")
            self.reporter.stop(self.summary)
        return self.summary


@dataclass(frozen=True)
class _Quota:
    """What each process of a case owes: ``--min-time`` and the round counts are per case, so
    they are split between its processes; each chunk is a slice of a process's time, small
    enough that every process takes several turns (the interleaving is what spreads drift)."""

    time_s: float
    min_rounds: int
    max_rounds: int
    chunk_s: float

    @classmethod
    def of(cls, config: BenchConfig) -> _Quota:
        n = config.processes
        time_s = config.min_time / n
        return cls(
            time_s=time_s,
            min_rounds=max(1, math.ceil(config.min_rounds / n)),
            max_rounds=max(1, config.max_rounds // n),
            chunk_s=min(config.chunk_s, time_s / TURNS_PER_PROCESS),
        )


def run_bench(config: BenchConfig, reporter: Reporter | None = None) -> BenchSummary:
    """Run ``config``'s sweep; every finished case is already in ``config.out`` on return."""
    return _Run(config, reporter or make_reporter()).run()
