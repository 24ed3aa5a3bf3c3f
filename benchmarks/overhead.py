"""Adapter overhead: each backend's timed call (``run`` + ``synchronize`` on a prepared input)
against the same library called directly on the same configuration, side by side in one
process per backend, in interleaved blocks (A B B A ...) so that drift hits both alike.

    .venv/bin/python benchmarks/overhead.py                       # the default sizes, B=1 and B=32
    .venv/bin/python benchmarks/overhead.py --backends torch,jax --size 32,100,128,256 --json o.json
    .venv/bin/python benchmarks/overhead.py --backends keras,keras-jax --cell rnn,lstm,gru

``--cell`` (default rnn) picks the cells: one layer, one direction, zero initial state. The
direct calls are what a user of the library would write:
- numpy: the hoisted loop written inline (x @ w_ih + b once, then h = tanh(p_t + h @ w_hh));
- torch: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU(batch_first=True)`` called under
  ``torch.inference_mode()``;
- jax: a hand-written ``jax.jit`` of ``lax.scan`` (matmul precision HIGHEST, as the adapter)
  + ``block_until_ready``;
- keras, keras-jax, keras-torch: a ``SimpleRNN`` / ``LSTM`` / ``GRU(return_sequences=True,
  return_state=True)`` layer called on the tensor (the jit variant through
  ``tf.function(jit_compile=True)`` or ``jax.jit`` of ``stateless_call``, as Keras compiles it;
  keras-jax under matmul precision "highest", keras-torch under ``torch.no_grad()``, as the
  adapter); synchronized the adapter's way;
- tf1: ``session.run`` on the adapter's own graph and feed (the graph is the library's; only the
  adapter's wrapper is measured).
numpy, jax and tf1 have a vanilla RNN direct call only; other cells are skipped there.
Ratio = adapter median / direct median (1.00 = no overhead; the target is within 2%).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Call = Callable[[], Any]


# --- direct calls, run inside the backend's worker ----------------------------------------
def _direct_numpy(cell: Any, w: Any, x: np.ndarray) -> Call:
    dw = w.layers[0][0]
    w_ih, w_hh = dw.w_ih.astype(np.float32), dw.w_hh.astype(np.float32)
    b = (dw.b_ih + dw.b_hh).astype(np.float32)
    batch, steps, _ = x.shape

    def call() -> Any:
        proj = x @ w_ih + b
        h = np.zeros((batch, w_hh.shape[0]), np.float32)
        out = np.empty((batch, steps, w_hh.shape[0]), np.float32)
        for t in range(steps):
            h = np.tanh(proj[:, t, :] + h @ w_hh)
            out[:, t, :] = h
        return out, h

    return call


def _direct_torch(cell: Any, w: Any, x: np.ndarray) -> Call:
    import torch

    spec = w.spec
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec.cell]
    rnn = module(spec.input_size, spec.hidden_size, batch_first=True)
    rnn.load_state_dict(
        {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in w.to_torch().items()}
    )
    rnn.eval()
    xt = torch.from_numpy(x)

    def call() -> Any:
        with torch.inference_mode():
            return rnn(xt)

    return call


def _direct_jax(cell: Any, w: Any, x: np.ndarray) -> Call:
    import jax
    import jax.numpy as jnp

    dw = w.layers[0][0]
    unroll = getattr(cell, "unroll", 1)
    hi = jax.lax.Precision.HIGHEST
    params = jax.device_put(
        (
            dw.w_ih.astype(np.float32),
            dw.w_hh.astype(np.float32),
            (dw.b_ih + dw.b_hh).astype(np.float32),
        )
    )
    xj = jax.device_put(x)

    @jax.jit
    def forward(p: Any, x: Any) -> Any:
        w_ih, w_hh, b = p
        proj = jnp.matmul(jnp.swapaxes(x, 0, 1), w_ih, precision=hi) + b

        def step(h: Any, q: Any) -> Any:
            h = jnp.tanh(q + jnp.matmul(h, w_hh, precision=hi))
            return h, h

        h0 = jnp.zeros((x.shape[0], w_hh.shape[0]), x.dtype)
        h, ys = jax.lax.scan(step, h0, proj, unroll=unroll)
        return jnp.swapaxes(ys, 0, 1), h[None]

    def call() -> Any:
        return jax.block_until_ready(forward(params, xj))

    return call


def _direct_keras(cell: Any, w: Any, x: np.ndarray) -> Call:
    import contextlib

    import keras

    spec = w.spec
    layer_class = {
        "rnn": keras.layers.SimpleRNN,
        "lstm": keras.layers.LSTM,
        "gru": keras.layers.GRU,
    }[spec.cell]
    # Keras' defaults (tanh; a GRU resets after the recurrent product) are pair()'s specs.
    layer = layer_class(spec.hidden_size, return_sequences=True, return_state=True)
    xt = keras.ops.convert_to_tensor(x)
    layer(xt)  # build
    layer.set_weights([np.asarray(a, np.float32) for a in w.to_keras()])
    backend = keras.backend.backend()
    scope: Callable[[], Any] = contextlib.nullcontext
    if backend == "jax":
        import jax

        scope = lambda: jax.default_matmul_precision("highest")  # noqa: E731
    elif backend == "torch":
        import torch

        scope = torch.no_grad

    if cell.variant == "jit" and backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda t: layer(t, training=False), jit_compile=True)

        def call() -> Any:
            result = compiled(xt)
            cell.synchronize(result)
            return result

        return call
    if cell.variant == "jit" and backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        forward = jax.jit(lambda tv, ntv, t: layer.stateless_call(tv, ntv, t, training=False)[0])

        def call() -> Any:
            with scope():
                result = forward(trainable, non_trainable, xt)
            cell.synchronize(result)
            return result

        return call

    def call() -> Any:
        with scope():
            result = layer(xt, training=False)
        cell.synchronize(result)  # the library's own way, as the adapter: no other exists
        return result

    return call


def _direct_tf1(cell: Any, w: Any, x: np.ndarray) -> Call:
    built, feed = cell.prepare(x, None)
    return lambda: built.session.run([built.y, built.h_n], feed_dict=feed)


DIRECT = {
    "numpy": _direct_numpy,
    "torch": _direct_torch,
    "jax": _direct_jax,
    "keras": _direct_keras,
    "keras-jax": _direct_keras,
    "keras-torch": _direct_keras,
    "tf1": _direct_tf1,
}
CELLS = ("rnn", "lstm", "gru")
# The cells each backend's direct call is written for (the others: all of CELLS).
DIRECT_CELLS = {"numpy": ("rnn",), "jax": ("rnn",), "tf1": ("rnn",)}


def _block(fn: Call, n: int, out: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e9)


def pair(
    arrays: Any,
    backend: str,
    variant: str | None,
    batch: int,
    seq_len: int,
    input_size: int,
    hidden_size: int,
    seconds: float,
    cell_kind: str = "rnn",
) -> tuple[dict[str, Any], dict]:
    """Runs in the backend's worker: adapter and direct call, interleaved, for ~2*seconds."""
    import gc

    import rnnbench as rb

    cell = rb.get_backend(backend, "cpu", "float32", variant, isolate=False)
    spec = rb.RNNSpec(input_size=input_size, hidden_size=hidden_size, cell=cell_kind)
    weights = rb.RNNWeights.random(spec, seed=0)
    cell.load(weights)
    x = np.random.default_rng(1).standard_normal((batch, seq_len, input_size)).astype(np.float32)
    prepared = cell.prepare(x, None)
    if hasattr(cell, "compile"):
        cell.compile(prepared)

    def adapter() -> Any:
        result = cell.run(prepared)
        cell.synchronize(result)
        return result

    direct = DIRECT[backend](cell, weights, x)
    ya = np.asarray(cell.fetch(adapter())[0])
    yd = direct()
    yd = yd[0] if isinstance(yd, (tuple, list)) else yd
    yd = np.asarray(yd.detach() if hasattr(yd, "detach") else yd)
    same = bool(np.allclose(ya, yd, atol=1e-4))
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up, and a per-call time to size the blocks
        adapter()
        direct()
    per_call = (time.perf_counter() - t0) / 6
    n = int(min(max(0.05 / max(per_call, 1e-7), 1), 500))
    a: list[float] = []
    d: list[float] = []
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < 2 * seconds or len(a) < 10:
            first, second = (
                ((adapter, a), (direct, d)) if k % 2 == 0 else ((direct, d), (adapter, a))
            )
            _block(first[0], n, first[1])
            _block(second[0], n, second[1])
            k += 1
    finally:
        gc.enable()
    ma, md = float(np.median(a)), float(np.median(d))
    return {
        "backend": backend,
        "variant": cell.variant,
        "cell": cell_kind,
        "path": cell.info().get("path"),
        "batch": batch,
        "seq_len": seq_len,
        "input_size": input_size,
        "hidden_size": hidden_size,
        "adapter_median_s": ma,
        "direct_median_s": md,
        "adapter_min_s": min(a),
        "direct_min_s": min(d),
        "ratio": ma / md,
        "ratio_min": min(a) / min(d),
        "rounds": len(a),
        "same_output": same,
    }, {}


def run_structure(
    arrays: Any, backend: str, cell_kind: str = "lstm", num_layers: int = 1
) -> tuple[dict[str, Any], dict]:
    """Runs in a Keras backend's worker: what one ``run`` of the jit variant does, the structure
    that keeps its overhead near zero (tests/test_backend_keras.py pins it). Returns how many
    times the run called the model's compiled function, whether its result is that function's
    own output (nothing restacked, sliced or cast after it), whether a run that does not trace
    enters the cell's scope, the prepared list's length, the result's shapes and, on JAX,
    whether every dot of the compiled function has HIGHEST precision (set at trace time)."""
    import rnnbench as rb

    cell = rb.get_backend(backend, "cpu", "float32", "jit", isolate=False)
    spec = rb.RNNSpec(2, 3, cell=cell_kind, num_layers=num_layers, bidirectional=num_layers > 1)
    weights = rb.RNNWeights.random(spec, seed=0)
    cell.load(weights)
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    prepared = cell.prepare(x, None)
    key, inputs = prepared
    compiled = cell._fns[key]
    returned: list[Any] = []

    def counted(*args: Any) -> Any:
        returned.append(compiled(*args))
        return returned[-1]

    cell._fns[key] = counted
    cell.synchronize(cell.run(prepared))  # traces, in the cell's scope
    scopes: list[bool] = []
    scope = cell._scope
    cell._scope = lambda *a, **k: scopes.append(True) or scope(*a, **k)
    try:
        result = cell.run(prepared)
    finally:
        cell._fns[key], cell._scope = compiled, scope
    cell.synchronize(result)
    highest = None
    if cell.keras_backend == "jax":
        text = compiled.lower(cell._values[key], inputs).as_text()
        dots = [line for line in text.splitlines() if "dot_general" in line]
        highest = bool(dots) and all("precision = [HIGHEST, HIGHEST]" in d for d in dots)
    y, state = cell.fetch(result)
    want, want_state = rb.reference_forward(weights, x)
    states = zip(rb.state.as_tuple(spec, state), rb.state.as_tuple(spec, want_state))
    error = max(float(np.abs(y - want).max()), *(float(np.abs(a - b).max()) for a, b in states))
    return {
        "calls": len(returned),
        "result_is_compiled_output": len(returned) == 2 and result is returned[-1],
        "scope_entered": bool(scopes),
        "prepared_tensors": len(inputs),
        "result_shapes": [list(np.shape(t)) for t in result],
        "max_abs_error": error,
        "all_dots_highest": highest,
        "kernels": cell.info()["kernels"],
    }, {}


# --- the parent ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import rnnbench as rb
    from rnnbench.process import Worker

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(DIRECT))
    parser.add_argument(
        "--size",
        action="append",
        default=None,
        help="B,T,I,H (repeatable; default 32,100,128,256 and 1,100,32,32)",
    )
    parser.add_argument("--seconds", type=float, default=1.5, help="per side and case")
    parser.add_argument(
        "--cell", default="rnn", help=f"comma list of cells, of {', '.join(CELLS)} (default rnn)"
    )
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    sizes = [
        tuple(int(v) for v in s.split(","))
        for s in (args.size or ["32,100,128,256", "1,100,32,32"])
    ]
    kinds = [k.strip() for k in args.cell.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in CELLS]
    if unknown:
        parser.error(f"unknown cell(s) {unknown} in --cell; use {', '.join(CELLS)}")
    rows = []
    print(
        f"{'backend':<22}{'cell':<6}{'size':<22}{'adapter':>12}{'direct':>12}{'ratio':>8}"
        f"{'ratio(min)':>11}"
    )
    for name in args.backends.split(","):
        info = rb.backend_info(name)
        reason = info.unavailable_reason()
        if reason:
            print(f"{name:<22}skipped: {reason}")
            continue
        supported = DIRECT_CELLS.get(name, CELLS)
        left_out = [k for k in kinds if k not in supported]
        if left_out:
            print(f"{name:<22}skipped {', '.join(left_out)}: its direct call is a vanilla RNN")
        cases = [(k, size) for k in kinds if k in supported for size in sizes]
        if not cases:
            continue
        worker = Worker(name, info.env)
        try:
            for kind, (b, t, i, h) in cases:
                try:
                    row, _ = worker.call(
                        "benchmarks.overhead:pair",
                        timeout=600,
                        backend=name,
                        variant=None,
                        batch=b,
                        seq_len=t,
                        input_size=i,
                        hidden_size=h,
                        seconds=args.seconds,
                        cell_kind=kind,
                    )
                except rb.RNNBenchError as exc:
                    print(f"{name:<22}{kind:<6}failed: {str(exc).splitlines()[0]}")
                    break
                rows.append(row)
                label = f"{name}[{row['variant']}]"
                print(
                    f"{label:<22}{kind:<6}{f'B={b} T={t} I={i} H={h}':<22}"
                    f"{row['adapter_median_s'] * 1e3:>10.3f}ms"
                    f"{row['direct_median_s'] * 1e3:>10.3f}ms"
                    f"{row['ratio']:>8.3f}{row['ratio_min']:>11.3f}"
                    + ("" if row["same_output"] else "  (outputs differ!)"),
                    flush=True,
                )
        finally:
            worker.close()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
