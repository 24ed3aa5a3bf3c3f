"""Run a sweep: one worker process per (backend, variant, threads), a fresh one after any
failure, every finished case saved at once, a timeout per case, Ctrl-C keeping what was done."""

from __future__ import annotations

import datetime
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnbench.bench import jobs
from rnnbench.bench.cases import BenchCase, expand_cases
from rnnbench.bench.machine import (
    cuda_unavailable_reason,
    machine_id,
    machine_record,
    thread_env,
)
from rnnbench.bench.progress import Reporter, make_reporter
from rnnbench.bench.results import ResultsFile
from rnnbench.bench.stats import summarize
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
    min_time: float = 1.0  # seconds of timed calls per case
    min_rounds: int = 5
    max_rounds: int = 10_000  # caps the samples kept per case
    warmup_time: float = 0.2
    warmup_rounds: int = 2
    timeout: float = 300.0  # per case: setup, compile, warm-up and measurement
    seed: int = 0
    out: str | None = None
    peak: bool = True
    peak_sizes: Sequence[int] | None = None  # None: 512,1024,2048 on the CPU, 4096.. on CUDA
    peak_min_time: float = 0.3  # seconds per GEMM size
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


class _Run:
    def __init__(self, config: BenchConfig, reporter: Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.file = ResultsFile(config.out)
        machine = machine_record()
        self.machine_id = machine_id(machine)
        # in memory only: the file is written with this run's first record, so that a run that
        # stops at planning or finds nothing to measure leaves an existing file as it was
        self.file.set_machine(machine, self.machine_id)
        self.peaks: dict[str, dict[str, Any]] = {}
        self.summary = BenchSummary(config.out)

    # --- planning ------------------------------------------------------------------------
    def plan(self) -> tuple[list[BenchCase], dict[str, str]]:
        """Every case of the sweep, and for backends that cannot run, why not."""
        c = self.config
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

    # --- the GEMM peak -------------------------------------------------------------------
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
            worker = Worker("gemm-peak", thread_env(case.threads))
            try:
                c = self.config
                peak, _ = worker.call(
                    f"{JOBS}:gemm_peak",
                    timeout=c.timeout,
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
            finally:
                worker.close()
            self.peaks[key] = self.file.set_peak(key, peak)
            if peak.get("gflops"):
                self.reporter.message(
                    f"GEMM peak {key}: {peak['gflops']:.1f} GFLOP/s ({peak['library']}, "
                    f"n={peak['size']})"
                )
        return self.peaks[key]

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
        rec.update(timestamp=_now(), machine_id=self.machine_id)
        return rec

    def measure(self, worker: Worker, case: BenchCase, info: BackendInfo) -> dict[str, Any]:
        c = self.config
        deadline = time.monotonic() + c.timeout

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _CaseTimeout()
            return left

        samples: list[float] = []
        partial: dict[str, Any] = {}
        try:
            try:
                tail = self._calls(worker, case, info, remaining, samples, partial)
            except BackendRuntimeError:
                if _stopped_by_ctrl_c(worker):
                    raise KeyboardInterrupt from None
                raise
        except KeyboardInterrupt:
            worker.kill()
            rec = self._finish(
                case, "interrupted", "interrupted by the user (Ctrl-C)", samples, partial
            )
            self.file.add(rec)
            self.summary.records.append(rec)
            self.summary.interrupted = True
            raise
        except _CaseTimeout:
            worker.kill()
            why = f"the case ran past --timeout {c.timeout} s and its worker was stopped"
            return self._finish(case, "timeout", why, samples, partial)
        except BackendUnavailableError as exc:
            return self._finish(case, "skipped", str(exc), samples, partial)
        except BackendRuntimeError as exc:
            worker.kill()
            if isinstance(exc.__cause__, WireTimeout):
                why = f"no answer within --timeout {c.timeout} s (the worker was stopped)"
                return self._finish(case, "timeout", why, samples, partial)
            return self._finish(case, "failed", str(exc), samples, partial)
        except RNNBenchError as exc:
            worker.kill()
            return self._finish(case, "failed", str(exc), samples, partial)
        rec = self._finish(case, "ok", None, samples, partial)
        rec["info"] = tail.get("info", partial.get("info"))
        rec["path"] = rec["info"].get("path") if rec["info"] else rec["path"]
        rec["version"] = rec["info"].get("version") if rec["info"] else None
        if case.mode == "training":
            # what the library ran backwards through (torch, jax, keras say; else the forward's)
            rec["backward_path"] = (rec["info"] or {}).get("backward_path") or rec["path"]
        rec["output_finite"] = tail.get("output_finite")
        runtime = tail.get("runtime", {})
        rec["threads_used"] = runtime.get("threads")
        rec["tf32"] = runtime.get("tf32")
        self.file.note_runtime(case.backend, runtime)
        if tail.get("output_finite") is False:
            rec["status"] = "failed"
            what = "a gradient" if case.mode == "training" else "the output"
            rec["error"] = f"{what} holds NaN or infinity; the timing is not kept as valid"
        return rec

    def _calls(
        self,
        worker: Worker,
        case: BenchCase,
        info: BackendInfo,
        remaining: Callable[[], float],
        samples: list[float],
        partial: dict[str, Any],
    ) -> dict[str, Any]:
        """setup, warm-up, measurement chunks and teardown in the worker; ``samples`` and
        ``partial`` fill in as it goes, so that an interrupted case keeps what it has."""
        c = self.config
        head, _ = worker.call(
            f"{JOBS}:setup",
            timeout=remaining(),
            backend=case.backend,
            device=case.device,
            dtype=case.dtype,
            variant=case.variant,
            spec=case.spec.to_dict(),
            batch=case.batch,
            seq_len=case.seq_len,
            seed=c.seed,
            threads=case.threads,
            cell_target=info.target,
            devices=list(info.devices),
            lengths=_as_list(case.row_lengths(c.seed)),
            mode=case.mode,
        )
        partial.update(
            compile_s=head["compile_s"],
            compile_detail=head["compile_detail"],
            path=head["info"].get("path"),
            info=head["info"],
        )
        warm, _ = worker.call(
            f"{JOBS}:warmup",
            timeout=remaining(),
            min_time=c.warmup_time,
            min_rounds=c.warmup_rounds,
        )
        partial["warmup_rounds"] = warm["rounds"]
        elapsed = 0.0
        while (elapsed < c.min_time or len(samples) < c.min_rounds) and (
            len(samples) < c.max_rounds
        ):
            left = c.max_rounds - len(samples)
            chunk, _ = worker.call(
                f"{JOBS}:measure",
                timeout=remaining(),
                budget_s=min(c.chunk_s, max(c.min_time - elapsed, 0.0)),
                min_rounds=max(min(c.min_rounds - len(samples), left), 1),
                max_rounds=left,
            )
            samples.extend(chunk["samples"])
            elapsed += chunk["elapsed_s"]
            self.reporter.case_progress(case, summarize(samples)["median_s"], len(samples))
        tail, _ = worker.call(f"{JOBS}:teardown", timeout=remaining())
        return tail

    def _finish(
        self,
        case: BenchCase,
        status: str,
        error: str | None,
        samples: list[float],
        partial: dict[str, Any],
    ) -> dict[str, Any]:
        stats = summarize(samples)
        fields: dict[str, Any] = {**partial, **stats, "samples": samples}
        fields["min_time"] = self.config.min_time
        fields["seed"] = self.config.seed
        if stats["median_s"]:
            median = float(stats["median_s"])
            fields["gflops"] = case.flops / median / 1e9
            fields["time_per_step_s"] = median / case.seq_len
            peak = self.peaks.get(_peak_key(case.device, case.dtype, case.threads))
            if peak and peak.get("gflops"):
                # the peak goes with the result: its value, key and id (the file's ``peaks``)
                fields["peak_gflops"] = peak["gflops"]
                fields["peak_key"] = _peak_key(case.device, case.dtype, case.threads)
                fields["peak_id"] = peak.get("peak_id")
                fields["efficiency"] = fields["gflops"] / peak["gflops"]
        return self.record(case, status, error, **fields)

    # --- the sweep -----------------------------------------------------------------------
    def run(self) -> BenchSummary:
        cases, skip = self.plan()
        todo = [case for case in cases if not self.file.is_done(case)]
        self.summary.already_done = len(cases) - len(todo)
        self.reporter.start(len(cases), self.summary.already_done, self.config.out)
        worker: Worker | None = None
        group: tuple[Any, ...] | None = None
        try:
            for case in todo:
                self.reporter.case_started(case)
                if case.backend in skip:
                    rec = self.record(case, "skipped", skip[case.backend])
                else:
                    self.peak(case)
                    key = (case.backend, case.variant, case.threads)
                    if worker is not None and (key != group or not worker.alive):
                        worker.close()
                        worker = None
                    if worker is None:
                        info = backend_info(case.backend)
                        worker = Worker(case.backend, {**info.env, **thread_env(case.threads)})
                        group = key
                    rec = self.measure(worker, case, backend_info(case.backend))
                    # A refusal ("skipped": BackendUnavailableError from setup, e.g. torch has
                    # no reset-before GRU) leaves the worker sound, and the next case asks it
                    # again, so that each skip names its own case. Any other failure gets a
                    # fresh worker for the next case.
                    if rec["status"] not in ("ok", "skipped"):
                        worker.kill()
                        worker.close()
                        worker = None
                self.file.add(rec)
                self.summary.records.append(rec)
                self.reporter.case_finished(case, rec)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            if worker is not None:
                if self.summary.interrupted:
                    worker.kill()
                worker.close()
            self.reporter.stop(self.summary)
        return self.summary


def run_bench(config: BenchConfig, reporter: Reporter | None = None) -> BenchSummary:
    """Run ``config``'s sweep; every finished case is already in ``config.out`` on return."""
    return _Run(config, reporter or make_reporter()).run()
