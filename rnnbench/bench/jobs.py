"""Functions that run inside a backend's worker process (``Worker.call("...jobs:setup")``).

A case is split into calls so that the parent can show a running median, enforce its timeout
between calls and keep the samples of an interrupted case:
``setup`` (weights, input on the device, the first call timed as compile time) ->
``warmup`` -> ``measure`` (repeated, each returns a chunk of samples) -> ``teardown``.
An inference case times ``cell.run`` + ``cell.synchronize``; a training case
``cell.run_vjp`` + ``cell.synchronize`` (forward and backward pass of one loss).
Each function takes ``arrays`` (unused: inputs are generated here from a seed, so nothing large
crosses the pipe) and returns ``(header, arrays)``.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench.bench.cases import MODES
from rnnbench.bench.machine import runtime_info
from rnnbench.errors import BackendUnavailableError, SpecError, UnsupportedPaddingError
from rnnbench.registry import (
    BackendInfo,
    backend_info,
    get_backend,
    list_backends,
    register_backend,
)
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

Reply = tuple[dict[str, Any], dict[str, np.ndarray]]

_state: dict[str, Any] = {}


def _ensure_registered(backend: str, cell_target: str | None, devices: list[str] | None) -> None:
    """The parent's registry decides which class a backend name is: one registered at run time
    in the parent (e.g. by a test) is unknown to this fresh process, and one the parent
    replaced (e.g. a built-in wrapped to inject a known slowdown) must not be the built-in
    here. Register (or replace) it from the target the parent sent."""
    if not cell_target:
        return
    known = backend_info(backend) if backend in list_backends() else None
    if known is None or known.target != cell_target:
        env = known.env if known is not None else {}
        info = BackendInfo(backend, cell_target, devices=tuple(devices or ("cpu",)), env=env)
        register_backend(info, replace=True)


def variants(
    arrays: Any, backend: str, cell_target: str | None = None, devices: list[str] | None = None
) -> Reply:
    """The backend's variant names, default first (read from its cell class)."""
    from rnnbench.registry import backend_info, load_cell_class

    _ensure_registered(backend, cell_target, devices)
    cls = load_cell_class(backend_info(backend))
    return {"variants": list(getattr(cls, "variants", ("default",)))}, {}


def ready(
    arrays: Any,
    backend: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    variant: str | None = None,
    cell_target: str | None = None,
    devices: list[str] | None = None,
) -> Reply:
    """Answers once the worker has started: the interpreter, NumPy, rnnbench and, given a
    ``backend``, its library (a cell is made and dropped). The parent asks every worker of a
    group at once and waits before the cases' clocks start, so that the libraries load side
    by side and starting them is not charged to any case's timeout."""
    import os

    if backend is not None:
        _ensure_registered(backend, cell_target, devices)
        get_backend(backend, device, dtype, variant, isolate=False)
    return {"pid": os.getpid()}, {}


def _timed_call(cell: Any, prepared: Any) -> tuple[int, Any]:
    """One inference call: the forward pass and its synchronization."""
    t0 = time.perf_counter_ns()
    result = cell.run(prepared)
    cell.synchronize(result)
    return time.perf_counter_ns() - t0, result


def _timed_vjp(cell: Any, prepared: Any) -> tuple[int, Any]:
    """One training call: the forward and backward pass of the loss, and its synchronization
    (torch and jax leave the gradients on the device until ``fetch_vjp``)."""
    t0 = time.perf_counter_ns()
    result = cell.run_vjp(prepared)
    cell.synchronize(result)
    return time.perf_counter_ns() - t0, result


def cotangents(spec: RNNSpec, batch: int, seq_len: int, dtype: str, seed: int) -> tuple[Any, Any]:
    """The seeded cotangents of a training case: ``dy`` (batch, time, dirs*hidden) and ``dh_n``
    in the final state's public form ((dh_n, dc_n) for an LSTM), drawn once per case.

    Standard normal, each array scaled by 1/sqrt(its size) (unit norm): the loss
    ``sum(y * dy) + sum(h_n * dh_n)`` then has gradients of the order a mean-reduced loss gives,
    whatever B, T and H are, far from float32 overflow and from subnormal numbers (which some
    CPUs compute many times slower): the timing is of ordinary arithmetic at every size."""
    rng = np.random.default_rng(seed + 2)
    shape = (batch, seq_len, spec.output_size)
    dy = (rng.standard_normal(shape) / np.sqrt(np.prod(shape))).astype(dtype)
    state = state_mod.state_shape(spec, batch)
    parts = tuple(
        (rng.standard_normal(state) / np.sqrt(np.prod(state))).astype(dtype)
        for _ in spec.state_names
    )
    return dy, state_mod.from_tuple(spec, parts)


def setup(
    arrays: Any,
    backend: str,
    device: str,
    dtype: str,
    variant: str,
    spec: dict[str, Any],
    batch: int,
    seq_len: int,
    seed: int = 0,
    threads: int | None = None,
    cell_target: str | None = None,
    devices: list[str] | None = None,
    lengths: list[int] | None = None,
    mode: str = "inference",
) -> Reply:
    """Make the cell, load weights, put the input on the device, and time the first call.

    ``lengths`` (a ragged case) go to ``cell.prepare`` with the input, so that the backend's
    own padding mechanism (packing, a mask, a length-aware scan) is set up there and then runs
    inside every timed ``run``: its cost is what a ragged case measures. A backend that takes
    no lengths is refused before its weights are loaded (``UnsupportedPaddingError``, which the
    parent records as "skipped" with the reason).

    ``mode`` "training" times ``cell.run_vjp`` instead of ``cell.run``: the forward and
    backward pass of ``sum(y * dy) + sum(h_n * dh_n)`` for seeded cotangents (``cotangents``),
    prepared with the input by ``cell.prepare_vjp`` (lengths included). A backend without
    gradients is refused (``BackendUnavailableError``: "skipped" with the reason)."""
    if mode not in MODES:
        raise SpecError(f"unknown mode {mode!r}", f"use {' or '.join(MODES)}")
    _state.clear()
    gc.collect()
    _ensure_registered(backend, cell_target, devices)
    # Any: the vjp split and compile() are BaseCell's, beyond the RNNCell protocol
    cell: Any = get_backend(backend, device, dtype, variant, isolate=False)
    if lengths is not None and not getattr(cell, "takes_lengths", False):
        # a backend without padding may not take the keywords at all: refused before prepare
        raise UnsupportedPaddingError(
            f"backend {backend!r} does not take sequence lengths, so it has no ragged timing",
            "its full-length cases (--lengths full) are measured as usual",
        )
    training = mode == "training"
    if training and not getattr(cell, "computes_gradients", False):
        raise BackendUnavailableError(
            f"backend {backend!r} does not compute gradients, so it has no training timing",
            "its inference cases (--mode inference) are measured as usual",
        )
    if threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    rnn_spec = RNNSpec.from_dict(spec)
    cell.load(RNNWeights.random(rnn_spec, seed=seed))
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, seq_len, rnn_spec.input_size)).astype(dtype)
    pad = {} if lengths is None else {"lengths": np.asarray(lengths, dtype=np.int64)}
    if training:
        dy, dh_n = cotangents(rnn_spec, batch, seq_len, dtype, seed)
        # prepare_vjp refuses (BackendUnavailableError) a backend whose gradients are not
        # wired up yet, like a missing library: the parent records "skipped" with the reason.
        prepared = cell.prepare_vjp(x, None, dy, dh_n, **pad)
    else:
        prepared = cell.prepare(x, None, **pad)
    # The first call (trace, compile, cuDNN plan) is timed apart: an ahead-of-time compile when
    # the cell offers one, then the first run itself. A cell's compile() is the forward pass's:
    # a training case's first run_vjp call is its compile time and first run together.
    has_compile = hasattr(cell, "compile") and not training
    t0 = time.perf_counter_ns()
    compile_reported = None
    if has_compile:
        compile_reported = cell.compile(prepared)
    t1 = time.perf_counter_ns()
    timed = _timed_vjp if training else _timed_call
    first_ns, result = timed(cell, prepared)
    detail = {
        "compile_call_s": (t1 - t0) / 1e9 if has_compile else None,
        "compile_reported_s": compile_reported,
        "first_run_s": first_ns / 1e9,
    }
    _state.update(cell=cell, prepared=prepared, result=result, timed=timed, mode=mode)
    # A cell's compile() may warm its fast path after compiling (jax does); what it reports is
    # the compilation alone, so that is what counts, plus the first run.
    compile_ns = (t1 - t0) if compile_reported is None else compile_reported * 1e9
    return {
        "compile_s": (compile_ns + first_ns) / 1e9,
        "compile_detail": detail,
        "info": cell.info(),
    }, {}


def warmup(arrays: Any, min_time: float, min_rounds: int) -> Reply:
    cell, prepared, timed = _state["cell"], _state["prepared"], _state["timed"]
    start = time.perf_counter_ns()
    rounds = 0
    while rounds < min_rounds or time.perf_counter_ns() - start < min_time * 1e9:
        _, _state["result"] = timed(cell, prepared)
        rounds += 1
    elapsed = (time.perf_counter_ns() - start) / 1e9
    gc.collect()  # what set-up and warm-up left, before the timed turns
    return {"rounds": rounds, "elapsed_s": elapsed}, {}


def measure(
    arrays: Any, budget_s: float, min_rounds: int, max_rounds: int, warm_calls: int = 0
) -> Reply:
    """Timed calls for ``budget_s`` and ``min_rounds`` (at least one call, at most
    ``max_rounds``); each sample is ``run`` + ``synchronize`` alone (``run_vjp`` +
    ``synchronize`` for training). The garbage collector is off inside the chunk (as timeit
    does) so that a collection of the harness's own garbage is not charged to a call.
    ``warm_calls`` untimed calls come first: when processes take turns, the one before left
    the caches (and on a GPU the clocks) to itself, and a short call would time that."""
    cell, prepared, timed = _state["cell"], _state["prepared"], _state["timed"]
    samples: list[int] = []
    # the young generation only: a full collection walks every object of the library (a
    # tenth of a second with torch or TensorFlow loaded), once per turn; the full one ran
    # after the warm-up
    gc.collect(0)
    gc.disable()
    try:
        for _ in range(warm_calls):
            _, result = timed(cell, prepared)
            del result
        start = time.perf_counter_ns()
        budget_ns = budget_s * 1e9
        while True:
            ns, result = timed(cell, prepared)
            samples.append(ns)
            del result
            if len(samples) >= max_rounds or (
                len(samples) >= min_rounds and time.perf_counter_ns() - start >= budget_ns
            ):
                break
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return {"samples": [s / 1e9 for s in samples], "elapsed_s": elapsed / 1e9}, {}


def teardown(arrays: Any) -> Reply:
    """The cell's info after the runs (the path that ran, and for training the backward path),
    the runtime facts, a sanity check of the output (of every gradient array, for training),
    and the case's memory released."""
    header: dict[str, Any] = {}
    cell = _state.get("cell")
    if cell is not None and "result" in _state:
        if _state.get("mode") == "training":
            grads = cell.fetch_vjp(_state["result"])
            header["output_finite"] = all(
                bool(np.isfinite(a).all()) for a in grads.arrays().values()
            )
        else:
            y, state = cell.fetch(_state["result"])
            # the final state is one array, or an LSTM's (h_n, c_n): every part is checked
            parts = state if isinstance(state, (tuple, list)) else (state,)
            header["output_finite"] = bool(
                np.isfinite(y).all() and all(np.isfinite(p).all() for p in parts)
            )
        header["info"] = cell.info()
    header["runtime"] = runtime_info()
    _state.clear()
    gc.collect()
    return header, {}


# --- the GEMM peak -----------------------------------------------------------------------
def _time_until(fn: Any, sync: Any, min_time: float, min_rounds: int) -> list[float]:
    fn()
    sync()  # first call apart (allocation, kernel selection)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_rounds or time.perf_counter() - start < min_time:
        t0 = time.perf_counter_ns()
        fn()
        sync()
        samples.append((time.perf_counter_ns() - t0) / 1e9)
    return samples


def gemm_peak(
    arrays: Any,
    device: str,
    dtype: str,
    min_time: float = 0.3,
    sizes: list[int] | None = None,
    library: str | None = None,
) -> Reply:
    """The best GEMM rate (square n x n by n x n, 2·n³ FLOPs) over ``sizes``: NumPy's BLAS on
    the CPU, torch on CUDA (``library`` picks another: "torch" on the CPU)."""
    library = library or ("numpy" if device == "cpu" else "torch")
    sizes = sizes or ([512, 1024, 2048] if device == "cpu" else [4096, 8192, 16384])
    rows = []
    extra: dict[str, Any] = {}
    for n in sizes:
        if library == "numpy":
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            c = np.empty((n, n), dtype)
            samples = _time_until(
                lambda a=a, b=b, c=c: np.matmul(a, b, out=c), lambda: None, min_time, 3
            )
            method = "numpy.matmul(a, b, out=c), square float matrices"
            version = np.__version__
        elif library == "torch":
            import torch

            dev = torch.device(device)
            tdtype = getattr(torch, dtype)
            ta = torch.randn(n, n, device=dev, dtype=tdtype)
            tb = torch.randn(n, n, device=dev, dtype=tdtype)
            tc = torch.empty(n, n, device=dev, dtype=tdtype)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            samples = _time_until(
                lambda a=ta, b=tb, c=tc: torch.matmul(a, b, out=c), sync, min_time, 3
            )
            method = (
                "torch.matmul(a, b, out=c) + torch.cuda.synchronize()"
                if device == "cuda"
                else "torch.matmul(a, b, out=c)"
            )
            version = torch.__version__
            if device == "cuda":
                extra = {
                    "gpu": torch.cuda.get_device_name(),
                    "torch.backends.cuda.matmul.allow_tf32": bool(
                        torch.backends.cuda.matmul.allow_tf32
                    ),
                }
        else:
            raise ValueError(f"no GEMM peak for library {library!r}")
        median = float(np.median(samples))
        rows.append(
            {
                "size": n,
                "median_s": median,
                "gflops": 2 * n**3 / median / 1e9,
                "rounds": len(samples),
                "samples": samples,
            }
        )
    best = max(rows, key=lambda r: float(r["gflops"]))  # type: ignore[arg-type]
    return {
        "device": device,
        "dtype": dtype,
        "library": library,
        "version": version,
        "method": f"{method}; median of each size, best size kept",
        "size": best["size"],
        "gflops": best["gflops"],
        "median_s": best["median_s"],
        "samples": best["samples"],
        "sizes": [{k: v for k, v in r.items() if k != "samples"} for r in rows],
        "runtime": runtime_info(),
        **extra,
    }, {}
