"""The limit model: for each benchmark case, a time the machine could not beat, built from what
is measured on the same machine, in the same run, at the case's own shapes.

Three floors, the highest binds (``limit_s = max(compute_s, memory_s, dispatch_s)``):

**Compute** (``compute_s``). G gate blocks (rnn 1, gru 3, lstm 4), D directions (2 when
bidirectional), per layer ``l`` an input width ``I_l`` (I for layer 0, D·H above). Per layer and
direction the forward pass does

- one input projection ``(T·B × I_l) · (I_l × G·H)``: every step's input is known up front, so
  it is one product batched over time;
- T *sequential* recurrent products ``(B × H) · (H × G·H)``: step t needs h_{t-1}. A
  reset-before GRU needs two dependent products per step, ``(B × H) · (H × 2H)`` for the reset
  and update gates and then ``(B × H) · (H × H)`` for the candidate (it multiplies ``r ⊙ h``, and
  r comes from the first).

A training case (forward and backward pass of one loss) adds, per layer and direction,

- T sequential products of the backward recurrence ``dh_{t-1} = dgates_t · W_hhᵀ``,
  ``(B × G·H) · (G·H × H)`` (a reset-before GRU: ``(B × H) · (H × H)`` then
  ``(B × 2H) · (2H × H)``);
- the products batched over time once every step's gate gradient is known: the weight
  gradients ``(I_l × T·B) · (T·B × G·H)`` and ``(H × T·B) · (T·B × G·H)`` and the input
  gradient ``(T·B × G·H) · (G·H × I_l)``.

``compute_s = Σ_terms count · t_gemm(m, k, n)``, where ``t_gemm`` is the *measured* time of one
product of that exact shape (``measure_limits``; its fastest sample, each sample a run of calls
averaged: the floor is what the machine did at best, while a median drifts up with any load
during the measurement): at B = 1 a (1 × H) · (H × G·H) product runs far below the
square-GEMM peak, a floor every library faces at each step unless it fuses
steps. Layers and directions are summed as if run one after another, each product using the
whole device: a library that overlaps them (cuDNN's layer wavefront, two directions at once) or
fuses the steps of the recurrence into one persistent kernel can beat this floor, and its
fraction is then above 1 (never clipped).

**Memory** (``memory_s = bytes / bandwidth``), the bytes a call must move at least, itemsize e,
S state arrays (2 for an LSTM: h and c; else 1), weights ``W = Σ_l,d G·H·(I_l + H) + G·H`` (both
matrices and one bias vector) elements:

- inference: read x (B·T·I), write y (B·T·D·H) and the final states (S·L·D·B·H), read the
  weights once (W); the initial state is not passed (zeros), so nothing is read for it;
- training: read x, the weights, the cotangents dy (B·T·D·H) and dh_n (S·L·D·B·H); write dx
  (B·T·I), dh0 (S·L·D·B·H) and the weight gradients (W); and the activations the backward pass
  needs, stored by the forward and read back once: at least every step's state of every layer
  and direction (S·L·D·B·T·H, counted twice, written and read; the gates can be recomputed from
  them).

Activations passed between layers, and y and h_n inside a training step, are not counted: they
can stay in cache or never be materialized. ``bandwidth`` is a streaming copy of arrays far
larger than the last-level cache (``np.copyto`` on the CPU, in one thread and split across the
worker's threads, the faster kept: a library streaming with every core is not bound by one
core's rate; ``Tensor.copy_`` on CUDA), counting read + write bytes, the same way the model
counts them.

**Dispatch** (``dispatch_s``): the median time of the cheapest library call on the device
(``np.add`` of 1-element arrays with ``out=`` on the CPU; a 1-element ``torch.add`` and
``torch.cuda.synchronize()`` on CUDA): a call cannot take less than one.

``fraction(limit_s, median_s) = limit_s / median_s``: 1.0 is at the limit, 0.1 is ten times
slower than it, above 1 the library beat the model.

Not in the model: the elementwise gate work (O(B·H) per step), caches (a case whose arrays fit
in the last-level cache can stream faster than the DRAM bandwidth used here), ragged lengths (a
ragged case is modelled at its padded size: a library that skips padded steps can beat it).

NumPy only at import; torch is imported inside the CUDA (or ``library="torch"``) branch.
"""

from __future__ import annotations

import functools
import gc
import itertools
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.bench.cases import KEY_DEFAULTS
from rnnbench.errors import RNNBenchError, SpecError

MODEL = "rnnbench.limits/1"
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
BOUNDS = ("compute", "memory", "dispatch")

Shape = tuple[int, int, int]
Reply = tuple[dict[str, Any], dict[str, np.ndarray]]

# A sample of a short operation is several calls timed together and divided, so that the
# timer's own cost (about 0.1 µs) is not charged to a call of a few microseconds.
_SAMPLE_S = 1e-3
_MAX_CALLS = 10_000
_MIB = 1 << 20


class LimitMeasurementError(RNNBenchError, LookupError):
    """The measurements given to the limit model lack something the case needs."""


# --- the model ----------------------------------------------------------------------------


def _field(case: dict[str, Any], name: str) -> Any:
    value = case.get(name, KEY_DEFAULTS.get(name))
    if value is None:
        raise SpecError(
            f"the case has no {name!r}, which the limit model needs",
            "pass a result record of a bench file (cell, batch, seq_len, input_size, "
            "hidden_size, layers, bidirectional, mode, dtype, device)",
        )
    return value


def _cell(case: dict[str, Any]) -> tuple[str, bool]:
    """(cell, reset_before): a GRU is reset-after unless ``reset_after`` is False or the cell
    is named "gru-reset-before" (as ``--cell`` names it)."""
    cell = str(_field(case, "cell"))
    if cell == "gru-reset-before":
        return "gru", True
    if cell not in GATES:
        raise SpecError(
            f"unknown cell {cell!r} for the limit model", f"use one of {', '.join(GATES)}"
        )
    return cell, cell == "gru" and case.get("reset_after") is False


def gemm_terms(case: dict[str, Any]) -> list[tuple[int, Shape]]:
    """The products of one call as (count, (m, k, n)) pairs, ``(m × k) · (k × n)`` each, summed
    over layers and directions: the compute floor is ``Σ count · t_gemm(m, k, n)``."""
    cell, reset_before = _cell(case)
    g = GATES[cell]
    b, t = int(_field(case, "batch")), int(_field(case, "seq_len"))
    i, h = int(_field(case, "input_size")), int(_field(case, "hidden_size"))
    layers = int(_field(case, "layers"))
    d = 2 if _field(case, "bidirectional") else 1
    training = _field(case, "mode") == "training"
    if min(b, t, i, h, layers) < 1:
        raise SpecError(
            f"the case has a size below 1 (B={b} T={t} I={i} H={h} layers={layers})",
            "every size of a benchmark case is a positive integer",
        )
    tb, gh = t * b, g * h
    # the per-step products of the forward and of the backward recurrence
    step = [(b, h, 2 * h), (b, h, h)] if reset_before else [(b, h, gh)]
    back = [(b, h, h), (b, 2 * h, h)] if reset_before else [(b, gh, h)]
    terms: list[tuple[int, Shape]] = []
    for layer in range(layers):
        il = i if layer == 0 else d * h
        per_direction: list[tuple[int, Shape]] = [(1, (tb, il, gh))]
        per_direction += [(t, s) for s in step]
        if training:
            per_direction += [(t, s) for s in back]
            per_direction += [(1, (il, tb, gh)), (1, (h, tb, gh)), (1, (tb, gh, il))]
        terms += [(count * d, shape) for count, shape in per_direction]
    return terms


def gemm_shapes(case: dict[str, Any]) -> list[Shape]:
    """The distinct (m, k, n) shapes of the products a case's model needs, in first-use order."""
    return list(dict.fromkeys(shape for _, shape in gemm_terms(case)))


def shape_key(shape: Shape | list[int]) -> str:
    """How a shape is named in ``measure_limits``' ``gemm`` map: "m,k,n"."""
    return ",".join(str(int(v)) for v in shape)


def itemsize(dtype: str) -> int:
    """Bytes per element of a benchmark dtype (float32 or float64)."""
    return int(np.dtype(dtype).itemsize)


def min_bytes(case: dict[str, Any]) -> int:
    """The bytes one call must move at least (see the module's docstring for the count)."""
    cell, _ = _cell(case)
    g = GATES[cell]
    b, t = int(_field(case, "batch")), int(_field(case, "seq_len"))
    i, h = int(_field(case, "input_size")), int(_field(case, "hidden_size"))
    layers = int(_field(case, "layers"))
    d = 2 if _field(case, "bidirectional") else 1
    s = 2 if cell == "lstm" else 1
    weights = sum(
        d * (g * h * ((i if layer == 0 else d * h) + h) + g * h) for layer in range(layers)
    )
    x, y, states = b * t * i, b * t * d * h, s * layers * d * b * h
    if _field(case, "mode") == "training":
        stored = s * layers * d * b * t * h
        elements = (x + weights + y + states) + (x + states + weights) + 2 * stored
    else:
        elements = x + y + states + weights
    return elements * itemsize(str(_field(case, "dtype")))


def _number(measured: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = measured
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise LimitMeasurementError(
            f"the limit measurements have no positive {'.'.join(path)} (found {value!r})",
            "measure them for this case's device, dtype and shapes with "
            "measure_limits(None, device, dtype, [list(s) for s in gemm_shapes(case)])",
        )
    return number


def _fastest(measured: dict[str, Any], path: tuple[str, ...]) -> float:
    """A measurement's fastest sample (``min_s``), else its median: the model is a floor, and
    the fastest the machine did is what it could do; a median drifts up with any load on the
    machine while the limits were measured (each sample is itself a run of calls averaged)."""
    value: Any = measured
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if (
        isinstance(value, dict)
        and isinstance(value.get("min_s"), (int, float))
        and value["min_s"] > 0
    ):
        return float(value["min_s"])
    return _number(measured, (*path, "median_s"))


def limit_for(case: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """The case's limit from ``measured`` (a ``measure_limits`` header of its device and dtype):
    ``{"limit_s", "compute_s", "memory_s", "dispatch_s", "bound", "bytes", "model"}``, ``bound``
    naming the floor that binds (the first of compute, memory, dispatch on a tie). Pure: it
    measures nothing."""
    compute = sum(
        count * _fastest(measured, ("gemm", shape_key(shape))) for count, shape in gemm_terms(case)
    )
    nbytes = min_bytes(case)
    memory = nbytes / _number(measured, ("bandwidth", "bytes_per_s"))
    dispatch = _fastest(measured, ("dispatch",))
    floors = dict(zip(BOUNDS, (compute, memory, dispatch)))
    bound = max(BOUNDS, key=lambda name: floors[name])
    return {
        "limit_s": floors[bound],
        "compute_s": compute,
        "memory_s": memory,
        "dispatch_s": dispatch,
        "bound": bound,
        "bytes": nbytes,
        "model": MODEL,
    }


def fraction(limit_s: Any, median_s: Any) -> float:
    """``limit_s / median_s``: 1.0 at the limit, below 1 slower than it, above 1 faster than the
    model allows (fused or overlapped work); NaN when either is missing or not positive."""
    try:
        limit, median = float(limit_s), float(median_s)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(limit) and math.isfinite(median) and limit > 0 and median > 0):
        return math.nan
    return limit / median


# --- the measurements (in a worker process) -----------------------------------------------


def _timed(fn: Callable[[], Any], sync: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter_ns() - t0) / 1e9 / calls


def _per_call(
    fn: Callable[[], Any], sync: Callable[[], Any], min_time: float, once_if_long: bool = True
) -> tuple[list[float], int]:
    """Per-call times of ``fn``: a first call apart (allocation, kernel choice), then samples
    of ``calls`` back-to-back calls and one ``sync``, each divided by ``calls``, for
    ``min_time`` and at least 3 samples. ``calls`` is sized from the fastest of up to three
    single calls (one call preempted on a busy machine must not size every sample); a call
    that outlasts ``min_time`` is timed alone, once, when ``once_if_long`` (a large product is
    long enough to time on its own)."""
    fn()
    sync()
    single: list[float] = []
    while len(single) < 3 and sum(single) < min_time:
        single.append(_timed(fn, sync, 1))
    if single[0] >= min_time and once_if_long:
        return single[:1], 1
    calls = max(1, min(_MAX_CALLS, int(_SAMPLE_S / max(min(single), 1e-9))))
    samples: list[float] = []
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < 3 or time.perf_counter() - start < min_time:
            samples.append(_timed(fn, sync, calls))
    finally:
        gc.enable()
    return samples, calls


def _last_level_cache() -> int | None:
    """The largest CPU cache in bytes (Linux sysfs), or None where it cannot be read."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            size = int(digits) * scale
            best = size if best is None else max(best, size)
    return best


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def copy_array_bytes(cache: int | None, available: int | None, cap: int = 256 * _MIB) -> int:
    """The size of each of the bandwidth copy's two arrays: together (what one copy streams
    through) 4 × the last-level cache, kept within 64 MiB..``cap`` (128 MiB when the cache size
    is unknown), and at most 1/8 of the free memory so that the measurement never pushes the
    machine into swap. Bounded because first touching the pages costs time of its own."""
    both = min(max(4 * cache, 64 * _MIB), cap) if cache else 128 * _MIB
    if available:
        both = min(both, max(available // 8, 16 * _MIB))
    return int(both // 2)


def _check_shapes(shapes: list[list[int]]) -> list[Shape]:
    out: list[Shape] = []
    for shape in shapes:
        values = tuple(int(v) for v in shape)
        if len(values) != 3 or min(values) < 1:
            raise SpecError(
                f"a GEMM shape must be three positive sizes (m, k, n), got {list(shape)!r}",
                "pass the shapes gemm_shapes(case) returns",
            )
        out.append((values[0], values[1], values[2]))
    return list(dict.fromkeys(out))


def _cpu_threads() -> int:
    """The CPUs this process may use, at most the OpenMP thread count the worker was given
    (``--threads`` sets it): the threads a library in this worker could stream with."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else cpus


def _numpy_bandwidth(min_time: float) -> dict[str, Any]:
    """The streaming copy rate: one ``np.copyto`` and the same copy split across the worker's
    threads (NumPy releases the GIL while it copies), the faster kept, since a library that
    streams with every core is not bound by one core's rate."""
    cache = _last_level_cache()
    size = copy_array_bytes(cache, _available_memory())
    src = np.ones(size // 4, np.float32)
    dst = np.empty_like(src)
    threads = _cpu_threads()
    rates: dict[int, float] = {}
    single, _ = _per_call(lambda: np.copyto(dst, src), _none, min_time, once_if_long=False)
    rates[1] = 2 * src.nbytes / float(np.median(single))
    rounds = len(single)
    if threads > 1:
        bounds = np.linspace(0, src.size, threads + 1).astype(int)
        parts = [(dst[a:b], src[a:b]) for a, b in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(threads) as pool:

            def split() -> None:
                for _ in pool.map(lambda p: np.copyto(p[0], p[1]), parts):
                    pass

            split_samples, _ = _per_call(split, _none, min_time, once_if_long=False)
        rates[threads] = 2 * src.nbytes / float(np.median(split_samples))
        rounds += len(split_samples)
    best = max(rates, key=lambda n: rates[n])
    return {
        "bytes_per_s": rates[best],
        "array_bytes": int(src.nbytes),
        "llc_bytes": cache,
        "threads": best,
        "bytes_per_s_by_threads": {str(n): r for n, r in rates.items()},
        "rounds": rounds,
        "method": "np.copyto(dst, src) of two arrays of array_bytes, in one thread and split "
        "across the worker's threads, the faster kept; read + write bytes counted",
    }


def _numpy_limits(
    dtype: str, shapes: list[Shape], min_time: float, streams: bool = True
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    gemm: dict[str, Any] = {}
    for m, k, n in shapes:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        c = np.empty((m, n), dtype)
        samples, calls = _per_call(functools.partial(np.matmul, a, b, out=c), _none, min_time)
        gemm[shape_key((m, k, n))] = _summary(samples, calls)
    if not streams:  # the machine's bandwidth and dispatch floor are known: shapes only
        return {"gemm": gemm, "library": "numpy", "version": np.__version__}
    bandwidth = _numpy_bandwidth(min_time)
    one = np.ones(1, dtype)
    out = np.empty(1, dtype)
    samples, calls = _per_call(lambda: np.add(one, one, out=out), _none, min_time)
    dispatch = {
        **_summary(samples, calls),
        "method": "np.add(a, b, out=c) on 1-element arrays",
    }
    return {
        "gemm": gemm,
        "gemm_method": "np.matmul(a, b, out=c), C-contiguous (m×k)·(k×n); calls back to back",
        "bandwidth": bandwidth,
        "dispatch": dispatch,
        "library": "numpy",
        "version": np.__version__,
    }


def _torch_bandwidth(dev: Any, sync: Callable[[], Any], min_time: float) -> dict[str, Any]:
    """The streaming copy rate of ``Tensor.copy_`` on ``dev`` (arrays past the GPU's L2 on
    CUDA, past the last-level cache on the CPU)."""
    import torch

    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        cache = int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0)) or None
        size = copy_array_bytes(cache, int(free), cap=2048 * _MIB)
    else:
        cache = _last_level_cache()
        size = copy_array_bytes(cache, _available_memory())
    src = torch.ones(size // 4, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    samples, _ = _per_call(lambda: dst.copy_(src), sync, min_time, once_if_long=False)
    array_bytes = int(src.numel() * src.element_size())
    return {
        "bytes_per_s": 2 * array_bytes / float(np.median(samples)),
        "array_bytes": array_bytes,
        "llc_bytes": cache,
        "rounds": len(samples),
        "method": "dst.copy_(src), two arrays of array_bytes; read + write bytes counted",
    }


def _torch_limits(
    device: str, dtype: str, shapes: list[Shape], min_time: float, streams: bool = True
) -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    tdtype = getattr(torch, dtype)
    cuda = dev.type == "cuda"
    sync: Callable[[], Any] = (lambda: torch.cuda.synchronize(dev)) if cuda else _none
    gen = torch.Generator(device=dev).manual_seed(0)
    gemm: dict[str, Any] = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=dev, dtype=tdtype, generator=gen)
        b = torch.randn(k, n, device=dev, dtype=tdtype, generator=gen)
        c = torch.empty(m, n, device=dev, dtype=tdtype)
        # back to back on one stream, one synchronize per sample: a step's product costs what
        # a loop of launches costs per launch, as in a library that launches one per step
        samples, calls = _per_call(functools.partial(torch.matmul, a, b, out=c), sync, min_time)
        gemm[shape_key((m, k, n))] = _summary(samples, calls)
    if not streams:  # the device's bandwidth and dispatch floor are known: shapes only
        return {"gemm": gemm, "library": "torch", "version": torch.__version__}
    bandwidth = _torch_bandwidth(dev, sync, min_time)
    one = torch.ones(1, device=dev, dtype=tdtype)
    out = torch.empty(1, device=dev, dtype=tdtype)

    def tiny() -> None:
        # one launch and its synchronization per call: what the shortest timed call pays
        torch.add(one, one, out=out)
        sync()

    samples, calls = _per_call(tiny, _none, min_time)
    dispatch = {
        **_summary(samples, calls),
        "method": "torch.add on 1-element tensors"
        + (" + torch.cuda.synchronize()" if cuda else ""),
    }
    extra: dict[str, Any] = {}
    if cuda:
        extra = {
            "gpu": torch.cuda.get_device_name(dev),
            "torch.backends.cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        }
    return {
        "gemm": gemm,
        "gemm_method": "torch.matmul(a, b, out=c), contiguous (m×k)·(k×n); calls back to back"
        + (", one torch.cuda.synchronize() per sample" if cuda else ""),
        "bandwidth": bandwidth,
        "dispatch": dispatch,
        "library": "torch",
        "version": torch.__version__,
        **extra,
    }


def _none() -> None:
    return None


def _summary(samples: list[float], calls: int) -> dict[str, Any]:
    return {
        "median_s": float(np.median(samples)),
        "min_s": float(np.min(samples)),
        "rounds": len(samples),
        "calls": calls,
    }


def measure_limits(
    arrays: Any,
    device: str,
    dtype: str,
    shapes: list[list[int]],
    min_time: float = 0.05,
    library: str | None = None,
    streams: bool = True,
) -> Reply:
    """Measure what ``limit_for`` needs, on this device and dtype, in this process (a worker
    job: ``arrays`` is unused, the reply is ``(header, {})``, like ``jobs.gemm_peak``).

    - ``gemm``: "m,k,n" -> the median time of one (m × k) · (k × n) product (``median_s``), the
      samples (``rounds``) and the calls each sample timed back to back (``calls``);
    - ``bandwidth``: a streaming copy of two arrays far larger than the last-level cache
      (``bytes_per_s`` counts read + write);
    - ``dispatch``: the cheapest call (a 1-element add; with a synchronize on CUDA).

    ``streams=False`` measures the products alone (the bandwidth and the dispatch floor of
    the device are already known to the caller). NumPy on the CPU, torch on CUDA
    (``library="torch"`` measures torch on the CPU). Each
    measurement runs for ``min_time`` seconds (at least 3 samples; a product longer than
    ``min_time`` is timed once after a first call)."""
    library = library or ("numpy" if device == "cpu" else "torch")
    checked = _check_shapes(shapes)
    if library == "numpy":
        if device != "cpu":
            raise SpecError(
                f"NumPy measures the CPU only, not {device!r}", "use library='torch' for cuda"
            )
        header = _numpy_limits(dtype, checked, min_time, streams)
    elif library == "torch":
        header = _torch_limits(device, dtype, checked, min_time, streams)
    else:
        raise SpecError(f"no limit measurements for library {library!r}", "use numpy or torch")
    return {"device": device, "dtype": dtype, "min_time": min_time, **header}, {}
