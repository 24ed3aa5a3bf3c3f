"""The JAX backend: the recurrence as ``jax.lax.scan`` under ``jax.jit``, for every cell.

Per layer and direction, the input projection of every step (``x @ w_ih`` plus every bias that
sits outside the recurrence) is one matrix product before the scan, so the scan body holds only
the recurrent products and the gate arithmetic of :mod:`rnnbench.gates`: ``h @ w_hh`` for the
vanilla RNN and the LSTM (whose carry is the tuple ``(h, c)``); for a reset-after GRU
``h @ w_hh`` with the ``n`` block of ``b_hh`` kept inside the reset gate; for a reset-before GRU
``h @ w_hh_rz`` and then ``(r * h) @ w_hh_n``, two products per step, the second waiting on the
reset gate. The reverse direction is the same scan with ``reverse=True`` (its outputs stay
aligned with the input's time axis, its final carry is the state after step 0, as torch's
``h_n`` holds it). Layer k > 0 reads both directions of layer k - 1, concatenated. Every product
runs at ``Precision.HIGHEST``, so no TF32 on a GPU.

Variants set scan's ``unroll`` (1, 4, 16). float64 needs JAX's x64 mode; the cell enables it
with the ``jax.enable_x64`` context manager around placing, tracing, compiling and running,
never through the process-wide ``jax_enable_x64`` flag, which stays as the user set it.

A padded batch (:mod:`rnnbench.padding`) runs its own jitted function, so the full-length scan
holds no mask arithmetic. Its scan reads a (time, batch) boolean mask of real steps beside the
projected input: a masked step keeps the carry (``jnp.where``) and writes zeros past a length, or
for a ``mask`` the previous output of its direction, carried as one more part of the carry
(Keras' semantics). Lengths cross to the device as B integers and become the mask inside the
jitted function; the reverse scan of a right-padded row thus starts at its own last real step.
Every layer is masked alike.

Gradients (``vjp``) are ``jax.vjp`` of the same ``_rnn_forward`` (padded alike), jitted per spec
and padding kind beside the forwards and traced once per shape, at the same precision and x64
scope. They are taken with respect to the scan's parameters, the tuples of
:func:`direction_params`, which are not the canonical layout: :func:`direction_grads` maps their
gradients back (the gradient of a sum reaches each term, that of a slice is its block).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench.cell import BaseCell
from rnnbench.errors import BackendUnavailableError
from rnnbench.gradients import Grads
from rnnbench.padding import Padding
from rnnbench.spec import RNNSpec
from rnnbench.state import State
from rnnbench.weights import DirectionWeights, RNNWeights

UNROLL = {"scan": 1, "scan-unroll4": 4, "scan-unroll16": 16}
# How a batch is padded; each kind is a jitted function of its own.
PADDING_KINDS = ("none", "lengths", "mask")
# The jitted functions of this many specs stay with a cell (least recently loaded dropped first),
# so that loading a spec again (comparing several cases on one cell) does not compile it again.
SPECS_KEPT = 8

# (carry, projected input of one step) -> (new carry, output of the step); the carry is a tuple
# in spec.state_names order, (h,) or (h, c).
Step = Callable[[tuple[Any, ...], Any], tuple[tuple[Any, ...], Any]]


def direction_params(spec: RNNSpec, dw: DirectionWeights) -> tuple[np.ndarray, ...]:
    """One layer and direction as the scan uses it: ``(w_ih, hoisted bias, *recurrent)``.

    The hoisted bias is added to the input projection before the scan; ``recurrent`` is what the
    step function needs: ``(w_hh,)`` for the RNN and LSTM, ``(w_hh, b_hh_n)`` for a reset-after
    GRU, ``(w_hh_rz, w_hh_n)`` for a reset-before GRU."""
    if spec.cell != "gru":
        return (dw.w_ih, dw.bias, dw.w_hh)
    two = 2 * spec.hidden_size
    if spec.reset_after:
        # The n block of b_hh is multiplied by the reset gate, so it stays in the loop; the r and
        # z blocks of b_hh are plain sums, and join b_ih in the hoisted product.
        hoisted = dw.b_ih.copy()
        hoisted[:two] += dw.b_hh[:two]
        return (dw.w_ih, hoisted, dw.w_hh, dw.b_hh[two:])
    # Reset-before: every bias is outside the reset gate. w_hh is split on the host, once, so the
    # step runs two whole products rather than slicing a weight every step.
    return (dw.w_ih, dw.bias, dw.w_hh[:, :two], dw.w_hh[:, two:])


def direction_grads(spec: RNNSpec, grads: tuple[np.ndarray, ...]) -> DirectionWeights:
    """The canonical gradients of one layer and direction from the gradients of the tuple
    :func:`direction_params` built (its inverse for gradients, i.e. its adjoint).

    - RNN and LSTM, ``(w_ih, b_ih + b_hh, w_hh)``: both canonical biases enter only through the
      sum, so each one's gradient is the sum's gradient.
    - Reset-after GRU, ``(w_ih, b_ih + [b_hh_r, b_hh_z, 0], w_hh, b_hh_n)``: ``b_ih``'s gradient
      is the hoisted bias's; ``b_hh``'s is the hoisted bias's r and z blocks followed by the
      gradient of ``b_hh_n``, the block kept inside the reset gate.
    - Reset-before GRU, ``(w_ih, b_ih + b_hh, w_hh[:, :2H], w_hh[:, 2H:])``: ``w_hh``'s gradient
      is the two column blocks' gradients side by side; both biases get the sum's gradient.

    A spec without biases has none to train: its bias gradients are zeros, as its biases are."""
    d_w_ih, d_bias, *d_recurrent = grads
    two = 2 * spec.hidden_size
    if spec.cell == "gru" and spec.reset_after:
        d_w_hh, d_b_hn = d_recurrent
        d_b_ih, d_b_hh = d_bias, np.concatenate([d_bias[:two], d_b_hn])
    elif spec.cell == "gru":
        d_w_rz, d_w_n = d_recurrent
        d_w_hh = np.concatenate([d_w_rz, d_w_n], axis=1)
        d_b_ih, d_b_hh = d_bias, d_bias.copy()
    else:
        (d_w_hh,) = d_recurrent
        d_b_ih, d_b_hh = d_bias, d_bias.copy()
    if not spec.bias:
        d_b_ih, d_b_hh = np.zeros_like(d_b_ih), np.zeros_like(d_b_hh)
    return DirectionWeights(d_w_ih, d_w_hh, d_b_ih, d_b_hh)


def _step_function(spec: RNNSpec, recurrent: tuple[Any, ...]) -> Step:
    """The scan body of one layer and direction (formulas of :mod:`rnnbench.gates`)."""
    import jax
    import jax.numpy as jnp

    highest = jax.lax.Precision.HIGHEST
    sigmoid = jax.nn.sigmoid

    def mm(a: Any, b: Any) -> Any:
        return jnp.matmul(a, b, precision=highest)

    if spec.cell == "lstm":
        (w_hh,) = recurrent

        def lstm_step(carry: tuple[Any, ...], p: Any) -> tuple[tuple[Any, ...], Any]:
            h, c = carry
            i, f, g, o = jnp.split(p + mm(h, w_hh), 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
            h = sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        return lstm_step

    if spec.cell == "gru":
        hidden = spec.hidden_size
        two = 2 * hidden
        if spec.reset_after:
            w_hh, b_hn = recurrent

            def after_step(carry: tuple[Any, ...], p: Any) -> tuple[tuple[Any, ...], Any]:
                h = carry[0]
                hh = mm(h, w_hh)
                r = sigmoid(p[..., :hidden] + hh[..., :hidden])
                z = sigmoid(p[..., hidden:two] + hh[..., hidden:two])
                n = jnp.tanh(p[..., two:] + r * (hh[..., two:] + b_hn))
                h = (1 - z) * n + z * h
                return (h,), h

            return after_step

        w_rz, w_n = recurrent

        def before_step(carry: tuple[Any, ...], p: Any) -> tuple[tuple[Any, ...], Any]:
            h = carry[0]
            r, z = jnp.split(sigmoid(p[..., :two] + mm(h, w_rz)), 2, axis=-1)
            n = jnp.tanh(p[..., two:] + mm(r * h, w_n))
            h = (1 - z) * n + z * h
            return (h,), h

        return before_step

    (w_hh,) = recurrent
    act = jnp.tanh if spec.nonlinearity == "tanh" else jax.nn.relu

    def rnn_step(carry: tuple[Any, ...], p: Any) -> tuple[tuple[Any, ...], Any]:
        h = act(p + mm(carry[0], w_hh))
        return (h,), h

    return rnn_step


def _masked_step(step: Step, kind: str) -> Callable[[Any, tuple[Any, Any]], tuple[Any, Any]]:
    """``step`` over ``(projected input, real)`` with ``real`` (batch,) True at a real step: a
    masked step keeps the carry and writes zeros ("lengths"), or ("mask") the previous output of
    the direction, which rides in the carry as ``(carry, written)``."""
    import jax.numpy as jnp

    if kind == "lengths":

        def zero_step(carry: tuple[Any, ...], xs: tuple[Any, Any]) -> tuple[Any, Any]:
            p, real = xs
            new, out = step(carry, p)
            real = real[:, None]
            kept = tuple(jnp.where(real, n, c) for n, c in zip(new, carry, strict=True))
            return kept, jnp.where(real, out, 0)

        return zero_step

    def repeat_step(state: tuple[Any, Any], xs: tuple[Any, Any]) -> tuple[Any, Any]:
        carry, written = state
        p, real = xs
        new, out = step(carry, p)
        real = real[:, None]
        kept = tuple(jnp.where(real, n, c) for n, c in zip(new, carry, strict=True))
        written = jnp.where(real, out, written)
        return (kept, written), written

    return repeat_step


def _rnn_forward(
    params: Any,
    x: Any,
    h0: Any,
    pad: Any = None,
    *,
    spec: RNNSpec,
    unroll: int,
    padding: str = "none",
    on_trace: Any = None,
) -> tuple[Any, tuple[Any, ...]]:
    """The stacked (bidirectional) layer of any cell. params: per layer, per direction, the
    tuple of :func:`direction_params`; x (batch, time, input); h0 a tuple in
    ``spec.state_names`` order, each (layers*dirs, batch, hidden). ``padding`` is "none" (``pad``
    unused), "lengths" (``pad`` the (batch,) lengths) or "mask" (``pad`` the (time, batch)
    boolean mask of real steps). Returns y and the final states as such a tuple."""
    import jax
    import jax.numpy as jnp

    if on_trace is not None:
        on_trace()  # runs while tracing only: counts how often jit traces
    highest = jax.lax.Precision.HIGHEST
    batch, steps, _ = x.shape
    real = None
    if padding == "lengths":
        real = jnp.arange(steps, dtype=pad.dtype)[:, None] < pad[None, :]  # (time, batch)
    elif padding == "mask":
        real = pad
    layer_input = jnp.swapaxes(x, 0, 1)  # time-major (time, batch, features) for scan
    finals = []
    for k, row in enumerate(params):
        outputs = []
        for d, (w_ih, bias, *recurrent) in enumerate(row):
            # One GEMM for all steps: (time*batch, in) @ (in, G*hidden).
            flat = layer_input.reshape(steps * batch, layer_input.shape[-1])
            proj = (jnp.matmul(flat, w_ih, precision=highest) + bias).reshape(steps, batch, -1)
            index = k * spec.num_directions + d
            carry = tuple(s[index] for s in h0)
            step = _step_function(spec, tuple(recurrent))
            if real is None:
                last, out = jax.lax.scan(step, carry, proj, reverse=d == 1, unroll=unroll)
            elif padding == "lengths":
                last, out = jax.lax.scan(
                    _masked_step(step, padding), carry, (proj, real), reverse=d == 1, unroll=unroll
                )
            else:
                # The output written before the first real step (in processing order) is zeros.
                start = (carry, jnp.zeros_like(carry[0]))
                (last, _), out = jax.lax.scan(
                    _masked_step(step, padding), start, (proj, real), reverse=d == 1, unroll=unroll
                )
            outputs.append(out)
            finals.append(last)
        layer_input = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
    states = tuple(jnp.stack([f[i] for f in finals]) for i in range(len(spec.state_names)))
    return jnp.swapaxes(layer_input, 0, 1), states


def _rnn_vjp(
    params: Any,
    x: Any,
    h0: Any,
    pad: Any,
    dy: Any,
    dstates: Any,
    *,
    spec: RNNSpec,
    unroll: int,
    padding: str = "none",
    on_trace: Any = None,
) -> tuple[Any, Any, tuple[Any, ...]]:
    """``jax.vjp`` of :func:`_rnn_forward` (same padding, ``pad`` held fixed) with respect to
    ``(params, x, h0)``, applied to the cotangents ``dy`` (batch, time, dirs*hidden) and
    ``dstates`` (a tuple like ``h0``): (d params, dx, dh0 tuple)."""
    import jax

    if on_trace is not None:
        on_trace()  # runs while tracing only: counts how often jit traces

    def forward(p: Any, inputs: Any, initial: Any) -> tuple[Any, tuple[Any, ...]]:
        return _rnn_forward(p, inputs, initial, pad, spec=spec, unroll=unroll, padding=padding)

    _, pullback = jax.vjp(forward, params, x, h0)
    d_params, dx, dh0 = pullback((dy, tuple(dstates)))
    return d_params, dx, dh0


class JaxCell(BaseCell):
    """``lax.scan`` under ``jax.jit`` on ``device`` ("cpu" or "cuda"), float32 or float64, for
    the RNN, the LSTM and both GRU formulas; lengths and masks are masked inside the scan."""

    name = "jax"
    distribution = "jax"
    devices = ("cpu", "cuda")
    variants = tuple(UNROLL)
    takes_lengths = True
    takes_mask = True
    computes_gradients = True

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device=device, dtype=dtype, variant=variant)
        import jax  # lazily: importing rnnbench must not import jax

        self._jax = jax
        self._device = self._find_device(device)
        self.unroll = UNROLL[self.variant]
        self.traces = 0  # how many times jit traced the forward (a retrace is a recompile)
        self.vjp_traces = 0  # how many times jit traced the vjp
        self.compile_seconds: float | None = None
        self._params: Any = None
        self._jitted: Any = None  # the full-length forward
        self._padded: dict[str, Any] = {}  # the padded forwards, by padding kind
        self._vjps: dict[str, Any] = {}  # the vjps, by padding kind ("none" included)
        self._functions: OrderedDict[RNNSpec, tuple[Any, dict[str, Any], dict[str, Any]]] = (
            OrderedDict()
        )

    def _find_device(self, device: str) -> Any:
        jax = self._jax
        platform = "gpu" if device == "cuda" else "cpu"
        try:
            found = jax.devices(platform)
        except RuntimeError as exc:
            raise BackendUnavailableError(
                f"backend 'jax' cannot use device {device!r}: jax {jax.__version__} has no "
                f"{platform} platform ({str(exc).splitlines()[0]})",
                "install a CUDA build of jax (pip install 'jax[cuda12]') on a machine with an "
                "NVIDIA GPU, or use device='cpu'",
            ) from exc
        return found[0]

    def _x64(self) -> contextlib.AbstractContextManager[Any]:
        """Scoped (thread-local) x64 mode for a float64 cell; nothing for float32."""
        if self.dtype == np.float64:
            return self._jax.enable_x64(True)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        with self._x64(), self._jax.default_device(self._device):
            yield

    def _count_trace(self) -> None:
        self.traces += 1

    def _count_vjp_trace(self) -> None:
        self.vjp_traces += 1

    # --- loading -------------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        jax = self._jax
        spec = weights.spec
        host = tuple(tuple(direction_params(spec, dw) for dw in row) for row in weights.layers)
        with self._scope():
            self._params = jax.device_put(host, self._device)
        # A spec is a function of its own (weights of the same spec are arguments, not
        # constants); what was traced and compiled for it is kept for the next load of it.
        if spec not in self._functions:

            def per_kind(fn: Callable[..., Any], on_trace: Callable[[], None]) -> dict[str, Any]:
                return {
                    kind: jax.jit(
                        functools.partial(
                            fn, spec=spec, unroll=self.unroll, padding=kind, on_trace=on_trace
                        )
                    )
                    for kind in PADDING_KINDS
                }

            forward = per_kind(_rnn_forward, self._count_trace)
            vjps = per_kind(_rnn_vjp, self._count_vjp_trace)
            self._functions[spec] = (forward.pop("none"), forward, vjps)
            if len(self._functions) > SPECS_KEPT:
                self._functions.popitem(last=False)
        self._functions.move_to_end(spec)
        self._jitted, self._padded, self._vjps = self._functions[spec]

    # --- running -------------------------------------------------------------------------
    def prepare(
        self, x: np.ndarray, h0: State | None = None, lengths: Any = None, mask: Any = None
    ) -> Any:
        """``(x, h0, pad)`` on the device; ``pad`` is None for a full batch, else ``(kind,
        array)``: the (batch,) lengths as int32, or the mask time-major (time, batch) as the
        scan reads it."""
        xs, hs = self.check_inputs(x, h0)
        padding = self.check_padding(xs, lengths, mask)
        if hs is None:
            hs = self.zeros_state(xs.shape[0])
        host = self._pad_host(padding)
        with self._scope():
            x_d, h_d, pad_d = self._jax.device_put((xs, hs, host), self._device)
        prepared = (x_d, h_d, None if padding is None else (padding.kind, pad_d))
        self._jax.block_until_ready(prepared)  # the copies are not part of a timed run
        return prepared

    @staticmethod
    def _pad_host(padding: Padding | None) -> np.ndarray | None:
        """What a padded function reads: the (batch,) lengths as int32, or the mask time-major
        (time, batch); None for a full batch."""
        if padding is None:
            return None
        if padding.lengths is not None:
            return padding.lengths.astype(np.int32)  # 1 <= length <= T
        return np.ascontiguousarray(padding.mask.T)

    @staticmethod
    def _signature(prepared: Any) -> tuple[Any, ...]:
        x, h0, pad = prepared
        kind, shape = ("none", None) if pad is None else (pad[0], pad[1].shape)
        return (kind, x.shape, str(x.dtype), tuple(s.shape for s in h0), shape)

    def _call(self, prepared: Any) -> tuple[Any, tuple[Any, ...]]:
        """The jitted function for ``prepared``'s padding and its arguments."""
        x, h0, pad = prepared
        if pad is None:
            return self._jitted, (self._params, x, h0)
        kind, array = pad
        return self._padded[kind], (self._params, x, h0, array)

    def compile(self, prepared: Any) -> float:
        """Trace and compile ahead of time (``lower().compile()``) for ``prepared``'s shapes and
        padding and return the seconds that took: compilation, reported apart from any run.

        ``run`` keeps calling the ``jax.jit`` function, whose C++ dispatch costs ~80 us a call
        where the ahead-of-time executable measured 100-200 us (benchmarks/overhead.py, B=1).
        Its own first call does not find the ahead-of-time executable (it traces and compiles
        again), so this method also makes that call once, untimed, and ``run`` is warm after it.
        """
        function, args = self._call(prepared)
        start = time.perf_counter()
        with self._scope():
            function.lower(*args).compile()
        self.compile_seconds = time.perf_counter() - start
        self.synchronize(self.run(prepared))
        return self.compile_seconds

    def run(self, prepared: Any) -> Any:
        x, h0, pad = prepared
        # The inputs and weights are committed to the device (prepare/load), so the computation
        # runs there without a default_device scope (which costs 6-20 us a call); only a float64
        # cell needs its scoped x64 mode while calling. A full batch calls its own function
        # directly: padding costs it nothing.
        if pad is not None:
            function, args = self._call(prepared)
            with self._x64():
                return function(*args)
        if self.dtype == np.float64:
            with self._x64():
                return self._jitted(self._params, x, h0)
        return self._jitted(self._params, x, h0)

    def _prepare_vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Any:
        # BaseCell passes zeros for what was not given: every call of one shape is one
        # trace, whichever cotangents the caller had.
        kind = "none" if padding is None else padding.kind
        with self._scope():
            args = self._jax.device_put((x, h0, self._pad_host(padding), dy, dstates), self._device)
        return kind, args

    def run_vjp(self, prepared: Any) -> Any:
        """The jitted forward and ``jax.vjp`` backward of one padding kind, left on the
        device (asynchronous: ``synchronize`` waits)."""
        kind, args = prepared
        with self._scope():
            return self._vjps[kind](self._params, *args)

    def fetch_vjp(self, result: Any) -> Grads:
        spec = self.spec
        with self._scope():
            d_params, dx, dh0 = self._jax.device_get(result)
        rows = [
            [direction_grads(spec, tuple(np.asarray(g) for g in d)) for d in row]
            for row in d_params
        ]
        return Grads(
            dx=np.asarray(dx),
            dh0=state_mod.from_tuple(spec, tuple(np.asarray(s) for s in dh0)),
            weights=RNNWeights(spec, rows, dtype=self.dtype),
        )

    def synchronize(self, result: Any) -> None:
        self._jax.block_until_ready(result)

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        y, states = result
        return np.asarray(y), self.public_state(tuple(np.asarray(s) for s in states))

    # --- reporting -----------------------------------------------------------------------
    def path(self) -> str:
        return f"xla-jit lax.scan unroll={self.unroll} ({self._device.platform})"

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["jax_device"] = str(self._device)
        out["precision"] = "HIGHEST"
        out["x64"] = "scoped (jax.enable_x64)" if self.dtype == np.float64 else "off"
        out["traces"] = self.traces
        out["vjp_traces"] = self.vjp_traces
        out["backward_path"] = f"jax.vjp of the same lax.scan (xla-jit, {self._device.platform})"
        out["compile_s"] = self.compile_seconds
        return out
