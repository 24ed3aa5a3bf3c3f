"""Speed of one recurrent layer per backend, cell (rnn, lstm, gru, gru-reset-before) and size,
through pytest-benchmark's pedantic mode: the cell is built, loaded and given its input before
timing; the first call (trace, compile, cuDNN plan) and warm-up rounds stay out of the
statistics. A backend that cannot compute a cell (torch has no reset-before GRU) is skipped
with its reason.

Each case is timed twice, as ``rnnbench bench --mode inference,training`` does: the forward
pass (``run`` + ``synchronize``, ``test_rnn_forward``) and the training step's recurrence, the
forward and backward pass of ``sum(y * dy) + sum(h_n * dh_n)`` (``run_vjp`` + ``synchronize``,
``test_rnn_training``; 3x the forward's FLOPs). A backend without gradients skips the second
with its reason."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
from rnnbench.bench.cases import TRAINING_FLOPS_FACTOR
from rnnbench.bench.jobs import cotangents
from rnnbench.registry import runs_in_this_process

# (batch, seq_len, input_size, hidden_size): latency-bound, small, and mid-size.
SIZES = [(1, 100, 32, 32), (8, 50, 64, 64), (32, 100, 128, 256)]
TARGET_S = 0.3  # seconds of timed rounds per benchmark
_cells: dict[tuple[str, str, str], Any] = {}


def _cell(name: str, variant: str, device: str) -> Any:
    info = rb.backend_info(name)
    reason = info.unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    if not runs_in_this_process(info):
        env = " ".join(f"{k}={v}" for k, v in info.env.items())
        pytest.skip(
            f"backend {name!r} needs {env} set before its library is imported, so it cannot "
            f"share this process; run `{env} pytest benchmarks --bench-backends {name}`, or "
            f"`rnnbench bench --backends {name}` (a worker process of its own)"
        )
    if device == "cuda":
        from rnnbench.bench.machine import cuda_unavailable_reason

        why = cuda_unavailable_reason()
        if why:
            pytest.skip(why)
    key = (name, variant, device)
    if key not in _cells:
        try:
            _cells[key] = rb.get_backend(name, device, "float32", variant, isolate=False)
        except rb.BackendUnavailableError as exc:
            pytest.skip(str(exc).split("\nHint:")[0])
    return _cells[key]


def _loaded(name: str, variant: str, device: str, cell: tuple[str, bool | None], size: Any) -> Any:
    """The backend's cell with seeded weights of ``cell`` and ``size``, and its spec."""
    kind, reset_after = cell
    _, _, input_size, hidden = size
    rnn = _cell(name, variant, device)
    spec = rb.RNNSpec(input_size=input_size, hidden_size=hidden, cell=kind, reset_after=reset_after)
    try:
        rnn.load(rb.RNNWeights.random(spec, seed=0))
    except rb.BackendUnavailableError as exc:
        pytest.skip(str(exc).split("\nHint:")[0])
    return rnn, spec


def _time(
    benchmark: Any,
    rnn: Any,
    spec: Any,
    call: Any,
    first: Any,
    size: tuple[int, int, int, int],
    mode: str,
    name: str,
    variant: str,
    device: str,
) -> None:
    """``first`` (compile and first call) apart, then ``call`` for about TARGET_S, with the
    case, its FLOPs and the path that ran in ``extra_info``."""
    batch, seq_len, input_size, hidden = size
    t0 = time.perf_counter()
    first()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    call()
    once = max(time.perf_counter() - t0, 1e-7)
    rounds = int(min(max(TARGET_S / once, 5), 2000))
    # every gate's products counted; a training step 3x (each product's two gradients)
    flops = spec.flops(batch, seq_len) * (TRAINING_FLOPS_FACTOR if mode == "training" else 1)
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=max(2, rounds // 10))
    info = rnn.info()
    benchmark.extra_info.update(
        case={
            "backend": name,
            "variant": variant,
            "batch": batch,
            "seq_len": seq_len,
            "input_size": input_size,
            "hidden_size": hidden,
            "dtype": "float32",
            "cell": spec.cell,
            "reset_after": spec.reset_after,
            "mode": mode,
        },
        flops=flops,
        path=info.get("path"),
        device=device,
        version=info.get("version"),
        compile_s=compile_s,
    )
    if mode == "training":
        benchmark.extra_info["backward_path"] = info.get("backward_path")
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:
        benchmark.extra_info["gflops"] = flops / stats.median / 1e9
        benchmark.extra_info["time_per_step_s"] = stats.median / seq_len


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}-T{}-I{}-H{}".format(*s))
def test_rnn_forward(
    benchmark: Any,
    backend_variant: tuple[str, str],
    device: str,
    cell: tuple[str, bool | None],
    size: tuple[int, int, int, int],
) -> None:
    name, variant = backend_variant
    batch, seq_len, input_size, hidden = size
    rnn, spec = _loaded(name, variant, device, cell, size)
    x = np.random.default_rng(1).standard_normal((batch, seq_len, input_size), np.float32)
    prepared = rnn.prepare(x, None)

    def call() -> None:
        rnn.synchronize(rnn.run(prepared))

    def first() -> None:
        if hasattr(rnn, "compile"):
            rnn.compile(prepared)
        call()

    _time(benchmark, rnn, spec, call, first, size, "inference", name, variant, device)
    y, state = rnn.fetch(rnn.run(prepared))
    assert np.isfinite(y).all() and y.shape == (batch, seq_len, hidden)
    parts = state if spec.cell == "lstm" else (state,)  # an LSTM's final state is (h_n, c_n)
    assert len(parts) == len(spec.state_names)
    assert all(p.shape == (1, batch, hidden) for p in parts)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}-T{}-I{}-H{}".format(*s))
def test_rnn_training(
    benchmark: Any,
    backend_variant: tuple[str, str],
    device: str,
    cell: tuple[str, bool | None],
    size: tuple[int, int, int, int],
) -> None:
    """The training step's recurrence: forward and backward pass, as ``rnnbench bench --mode
    training`` times it (the same seeded cotangents; no optimizer update)."""
    name, variant = backend_variant
    batch, seq_len, input_size, _ = size
    rnn, spec = _loaded(name, variant, device, cell, size)
    if not getattr(rnn, "computes_gradients", False):
        pytest.skip(f"backend {name!r} does not compute gradients")
    x = np.random.default_rng(1).standard_normal((batch, seq_len, input_size), np.float32)
    dy, dh_n = cotangents(spec, batch, seq_len, "float32", seed=0)
    try:
        prepared = rnn.prepare_vjp(x, None, dy, dh_n)
    except rb.BackendUnavailableError as exc:
        pytest.skip(str(exc).split("\nHint:")[0])

    def call() -> None:
        rnn.synchronize(rnn.run_vjp(prepared))

    # compile() is the forward pass's: the first training call is compile and first run
    _time(benchmark, rnn, spec, call, call, size, "training", name, variant, device)
    grads = rnn.fetch_vjp(rnn.run_vjp(prepared))
    assert grads.dx.shape == (batch, seq_len, input_size)
    assert all(np.isfinite(a).all() for a in grads.arrays().values())
