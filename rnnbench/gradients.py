"""The reference backward pass: backpropagation through time in plain NumPy, for every cell.

The scalar whose gradient is taken is the vector-Jacobian product of the forward pass with the
cotangents ``dy`` (of the output) and ``dh_n`` (of the final state; ``(dh_n, dc_n)`` for an
LSTM)::

    L = sum(y * dy) + sum(h_n * dh_n) [+ sum(c_n * dc_n)]

and :func:`reference_vjp` returns dL/dx, dL/dh0 (and dL/dc0) and dL/d(every canonical weight
array), in float64. The forward pass is :mod:`rnnbench.reference`'s, step functions included;
this module records the carry entering each step and then scans every layer and direction once
backwards, top layer first, with one *backward step* per cell that recomputes the step's gates
from ``(p, carry)`` and returns ``(dp, dcarry, dW_hh, db_hh)``. With ``a = p + h @ W_hh``
(``p`` the hoisted input projection ``x @ W_ih + bias``), ``s = sigmoid`` and primes meaning
the values after the step:

- RNN: ``h' = act(a)``; ``da = dh' * act'(a)`` (tanh: ``1 - h'^2``; relu: ``a > 0``).
- LSTM: ``i, f, g, o = split(a)``; ``c' = s(f) c + s(i) tanh(g)``, ``h' = s(o) tanh(c')``::

      dc~ = dc' + dh' s(o) (1 - tanh(c')^2)          (all the gradient reaching c')
      do = dh' tanh(c') s'(o)   di = dc~ tanh(g) s'(i)   df = dc~ c s'(f)
      dg = dc~ s(i) (1 - tanh(g)^2)   dc = dc~ s(f)

- GRU: ``h' = (1 - z) n + z h``, so ``dn = dh' (1 - z)``, ``dz = dh' (h - n)`` and ``h`` gets
  ``dh' z`` directly; ``da_n = dn (1 - n^2)``, ``da_r = dr s'(r)``, ``da_z = dz s'(z)``.
  Reset-after (``n = tanh(xi_n + r * hh_n)``, ``hh = h @ W_hh + b_hh`` in the loop):
  ``dr = da_n hh_n`` and ``d hh = [da_r, da_z, r da_n]``, whence ``dW_hh``, the loop's
  ``db_hh`` and ``dh += d hh @ W_hh^T``. Reset-before (``n = tanh(p_n + (r h) @ W_n)``):
  ``d(r h) = da_n @ W_n^T``, ``dr = d(r h) h``, ``dh += d(r h) r + [da_r, da_z] @ W_rz^T``.

In every cell ``dp = da`` (``[da_r, da_z, da_n]`` for the GRU): the gradients of the hoisted
input projection, turned after the time loop into ``dW_ih = X^T dP`` and ``dX = dP @ W_ih^T``
(one GEMM each over all steps, as the forward hoists ``X @ W_ih``). A bias hoisted into ``p``
(both of them, except a reset-after GRU's ``b_hh``) gets ``sum(dP)``. Layer k > 0 reads both
directions of layer k - 1, so ``dX`` of layer k is the output cotangent of layer k - 1.

Padding (:mod:`rnnbench.padding`): at a masked step the forward keeps the carry, so its
gradient passes to the previous carry unchanged and the step itself gets none. The output
written there is zero (``"zero"``: ``dy`` at that step goes nowhere) or the previous output of
the direction in processing order (``"repeat"``: ``dy`` there is added to that output's
gradient, i.e. it reaches the last real step before it in processing order, or nowhere when no
step is real yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench.arrays import float_array
from rnnbench.cell import check_inputs
from rnnbench.errors import ShapeError
from rnnbench.padding import Padding, check_padding
from rnnbench.reference import Carry, sigmoid, step_function
from rnnbench.spec import RNNSpec
from rnnbench.weights import DirectionWeights, RNNWeights

# (p, carry entering the step, gradient of the carry leaving it)
#   -> (dp, gradient of the carry entering it, dW_hh, gradient of a b_hh used inside the step)
BackStep = Callable[
    [np.ndarray, Carry, Carry], tuple[np.ndarray, Carry, np.ndarray, np.ndarray | None]
]


@dataclass
class Grads:
    """The gradients of one vector-Jacobian product: ``dx`` (batch, time, input), ``dh0`` in the
    public state form (an array, or ``(dh0, dc0)`` for an LSTM) and ``weights``, an
    :class:`RNNWeights` of the same spec holding dL/d(each canonical array). A spec with
    ``bias=False`` has no biases to train: its bias gradients are zeros, as its biases are."""

    dx: np.ndarray
    dh0: Any
    weights: RNNWeights

    @property
    def spec(self) -> RNNSpec:
        return self.weights.spec

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array: ``dx``, ``dh0`` (and ``dc0``), then the weight gradients under the
        names :meth:`RNNWeights.arrays` uses (``l0.forward.w_ih``, ...)."""
        out = {"dx": self.dx}
        for name, arr in zip(self.spec.state_names, state_mod.as_tuple(self.spec, self.dh0)):
            out[f"d{name}0"] = arr
        out.update(self.weights.arrays())
        return out

    @classmethod
    def from_arrays(cls, spec: RNNSpec, arrays: dict[str, np.ndarray]) -> Grads:
        """The inverse of :meth:`arrays` (e.g. for gradients sent from a worker process)."""
        states = tuple(arrays[f"d{name}0"] for name in spec.state_names)
        weights = {k: v for k, v in arrays.items() if k != "dx" and not k.startswith("d")}
        return cls(
            dx=arrays["dx"],
            dh0=state_mod.from_tuple(spec, states),
            weights=RNNWeights.from_arrays(spec, weights),
        )

    def astype(self, dtype: Any) -> Grads:
        return Grads(
            dx=self.dx.astype(dtype),
            dh0=state_mod.from_tuple(
                self.spec, tuple(s.astype(dtype) for s in state_mod.as_tuple(self.spec, self.dh0))
            ),
            weights=self.weights.astype(dtype),
        )


# --- backward steps ---------------------------------------------------------------------------


def _rnn_back(nonlinearity: str, dw: DirectionWeights) -> BackStep:
    w_hh = dw.w_hh

    def rnn_back(p: np.ndarray, carry: Carry, dnew: Carry) -> Any:
        h = carry[0]
        a = p + h @ w_hh
        da = dnew[0] * (1 - np.tanh(a) ** 2 if nonlinearity == "tanh" else a > 0)
        return da, (da @ w_hh.T,), h.T @ da, None

    return rnn_back


def _lstm_back(dw: DirectionWeights) -> BackStep:
    w_hh = dw.w_hh

    def lstm_back(p: np.ndarray, carry: Carry, dnew: Carry) -> Any:
        h, c = carry
        dh_new, dc_new = dnew
        i, f, g, o = np.split(p + h @ w_hh, 4, axis=-1)
        si, sf, tg, so = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        tc = np.tanh(sf * c + si * tg)
        dc = dc_new + dh_new * so * (1 - tc**2)
        da = np.concatenate(
            [
                dc * tg * si * (1 - si),
                dc * c * sf * (1 - sf),
                dc * si * (1 - tg**2),
                dh_new * tc * so * (1 - so),
            ],
            axis=-1,
        )
        return da, (da @ w_hh.T, dc * sf), h.T @ da, None

    return lstm_back


def _gru_back(reset_after: bool, dw: DirectionWeights) -> BackStep:
    w_hh, b_hh = dw.w_hh, dw.b_hh
    hidden = w_hh.shape[0]
    w_rz, w_n = w_hh[:, : 2 * hidden], w_hh[:, 2 * hidden :]

    def gates_back(
        dh_new: np.ndarray, h: np.ndarray, r: np.ndarray, z: np.ndarray, n: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(da_z, da_n, dh through h' = (1 - z) n + z h alone)."""
        da_z = dh_new * (h - n) * z * (1 - z)
        da_n = dh_new * (1 - z) * (1 - n**2)
        return da_z, da_n, dh_new * z

    def after_back(p: np.ndarray, carry: Carry, dnew: Carry) -> Any:
        h = carry[0]
        xr, xz, xn = np.split(p, 3, axis=-1)
        hr, hz, hn = np.split(h @ w_hh + b_hh, 3, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        da_z, da_n, dh = gates_back(dnew[0], h, r, z, n)
        da_r = da_n * hn * r * (1 - r)
        dhh = np.concatenate([da_r, da_z, r * da_n], axis=-1)  # of h @ w_hh + b_hh
        dp = np.concatenate([da_r, da_z, da_n], axis=-1)
        return dp, (dh + dhh @ w_hh.T,), h.T @ dhh, dhh.sum(axis=0)

    def before_back(p: np.ndarray, carry: Carry, dnew: Carry) -> Any:
        h = carry[0]
        r, z = np.split(sigmoid(p[..., : 2 * hidden] + h @ w_rz), 2, axis=-1)
        n = np.tanh(p[..., 2 * hidden :] + (r * h) @ w_n)
        da_z, da_n, dh = gates_back(dnew[0], h, r, z, n)
        drh = da_n @ w_n.T  # of r * h
        da_rz = np.concatenate([drh * h * r * (1 - r), da_z], axis=-1)
        dh = dh + drh * r + da_rz @ w_rz.T
        dw_hh = np.concatenate([h.T @ da_rz, (r * h).T @ da_n], axis=-1)
        return np.concatenate([da_rz, da_n], axis=-1), (dh,), dw_hh, None

    return after_back if reset_after else before_back


def backward_step(weights: RNNWeights, layer: int, direction: int) -> BackStep:
    """The backward step of one layer and direction (the inverse of ``step_function``)."""
    spec = weights.spec
    dw = weights[layer, direction]
    if spec.cell == "rnn":
        return _rnn_back(spec.nonlinearity, dw)
    if spec.cell == "lstm":
        return _lstm_back(dw)
    return _gru_back(bool(spec.reset_after), dw)


def _b_hh_hoisted(spec: RNNSpec) -> bool:
    """Whether ``b_hh`` is added with the input projection (all but a reset-after GRU)."""
    return not (spec.cell == "gru" and spec.reset_after)


# --- the scans ------------------------------------------------------------------------------


def _forward_scan(
    step: Callable[[np.ndarray, Carry], Carry],
    proj: np.ndarray,
    carry: Carry,
    reverse: bool,
    mask: np.ndarray | None,
    masked_output: str,
) -> tuple[np.ndarray, Carry, list[Carry]]:
    """``rnnbench.reference.scan``, also returning the carry entering each step (by time
    index) for the backward scan."""
    batch, time, _ = proj.shape
    out = np.empty((batch, time, carry[0].shape[-1]), carry[0].dtype)
    written = np.zeros_like(carry[0])
    entering: list[Carry] = [carry] * time
    for t in range(time - 1, -1, -1) if reverse else range(time):
        entering[t] = carry
        new = step(proj[:, t, :], carry)
        if mask is None:
            carry = new
            out[:, t, :] = carry[0]
            continue
        real = mask[:, t, None]
        carry = tuple(np.where(real, n, c) for n, c in zip(new, carry))
        written = np.where(real, new[0], written if masked_output == "repeat" else 0.0)
        out[:, t, :] = written
    return out, carry, entering


def _backward_scan(
    back: BackStep,
    proj: np.ndarray,
    entering: list[Carry],
    dy: np.ndarray,
    dcarry: Carry,
    reverse: bool,
    mask: np.ndarray | None,
    masked_output: str,
) -> tuple[np.ndarray, Carry, np.ndarray, np.ndarray]:
    """The forward scan run backwards: (dP, gradient of the initial carry, dW_hh, gradient of
    a ``b_hh`` used inside the step (zeros when it is hoisted))."""
    batch, time, width = proj.shape
    hidden = dcarry[0].shape[-1]
    dproj = np.zeros_like(proj)
    dw_hh = np.zeros((hidden, width), proj.dtype)
    db_hh = np.zeros(width, proj.dtype)
    # The gradient of the output a "repeat" step copies forward (the previous one written).
    dwritten = np.zeros((batch, hidden), proj.dtype)
    for t in range(time) if reverse else range(time - 1, -1, -1):
        dout = dy[:, t, :] + dwritten
        if mask is None:
            dnew = (dcarry[0] + dout, *dcarry[1:])
        else:
            real = mask[:, t, None]
            # A masked row's new carry and output were discarded: its step gets no gradient.
            dnew = tuple(np.where(real, d, 0.0) for d in (dcarry[0] + dout, *dcarry[1:]))
            dwritten = np.where(real, 0.0, dout if masked_output == "repeat" else 0.0)
        dp, dprev, dw, db = back(proj[:, t, :], entering[t], dnew)
        if mask is not None:
            # A masked step kept the carry: its gradient passes straight to the previous one.
            dprev = tuple(np.where(real, dn, d) for dn, d in zip(dprev, dcarry))
        dcarry = dprev
        dproj[:, t, :] = dp
        dw_hh += dw
        if db is not None:
            db_hh += db
    return dproj, dcarry, dw_hh, db_hh


# --- the whole layer ------------------------------------------------------------------------


def vjp_tuple(
    weights: RNNWeights,
    x: np.ndarray,
    h0: tuple[np.ndarray, ...] | None,
    dy: np.ndarray | None,
    dstates: tuple[np.ndarray, ...] | None,
    padding: Padding | None = None,
) -> Grads:
    """The gradients of ``L = sum(y * dy) + sum over states of sum(state_n * dstate_n)`` in the
    dtype of ``weights``, with states as tuples (see :mod:`rnnbench.state`), all inputs already
    checked; ``h0``, ``dy`` or ``dstates`` None mean zeros. ``padding`` masks steps as
    :func:`rnnbench.reference.forward_tuple` does."""
    spec = weights.spec
    dtype = weights.dtype
    mask = None if padding is None else padding.mask
    masked_output = "zero" if padding is None else padding.masked_output
    layer_input = np.asarray(x, dtype=dtype)
    batch, time, _ = layer_input.shape
    initial = h0 if h0 is not None else state_mod.zeros(spec, batch, dtype)
    dirs, hidden = spec.num_directions, spec.hidden_size

    # Forward, keeping each layer's input, projections and the carries entering every step.
    tape = []
    for k in range(spec.num_layers):
        outputs, layer_tape = [], []
        for d in range(dirs):
            index = k * dirs + d
            bias, step = step_function(weights, k, d)
            proj = layer_input @ weights[k, d].w_ih + bias
            carry = tuple(np.array(s[index], dtype=dtype) for s in initial)
            out, _, entering = _forward_scan(step, proj, carry, d == 1, mask, masked_output)
            outputs.append(out)
            layer_tape.append((proj, entering))
        tape.append((layer_input, layer_tape))
        layer_input = outputs[0] if dirs == 1 else np.concatenate(outputs, axis=-1)

    # Backward, top layer first; each layer's dX is the output gradient of the layer below.
    dout = np.zeros((batch, time, dirs * hidden), dtype) if dy is None else np.asarray(dy, dtype)
    finals = dstates if dstates is not None else state_mod.zeros(spec, batch, dtype)
    dinitial = [np.zeros((spec.num_layers * dirs, batch, hidden), dtype) for _ in finals]
    grads: list[list[DirectionWeights]] = []
    for k in range(spec.num_layers - 1, -1, -1):
        layer_input, layer_tape = tape[k]
        flat_input = layer_input.reshape(batch * time, -1)
        dinput = np.zeros_like(layer_input)
        row = []
        for d in range(dirs):
            index = k * dirs + d
            proj, entering = layer_tape[d]
            dw = weights[k, d]
            dproj, dcarry, dw_hh, db_loop = _backward_scan(
                backward_step(weights, k, d),
                proj,
                entering,
                dout[:, :, d * hidden : (d + 1) * hidden],
                tuple(np.array(s[index], dtype=dtype) for s in finals),
                d == 1,
                mask,
                masked_output,
            )
            for dstate, dc in zip(dinitial, dcarry):
                dstate[index] = dc
            flat_dproj = dproj.reshape(batch * time, -1)
            dinput += dproj @ dw.w_ih.T
            db_ih = flat_dproj.sum(axis=0)
            db_hh = db_ih if _b_hh_hoisted(spec) else db_loop
            if not spec.bias:
                db_ih = db_hh = np.zeros_like(db_ih)
            row.append(DirectionWeights(flat_input.T @ flat_dproj, dw_hh, db_ih, db_hh))
        grads.insert(0, row)
        dout = dinput
    return Grads(
        dx=dout,
        dh0=state_mod.from_tuple(spec, tuple(dinitial)),
        weights=RNNWeights(spec, grads, dtype=dtype),
    )


def _check_cotangent(
    name: str, value: Any, shape: tuple[int, ...], what: str, dtype: Any
) -> np.ndarray:
    arr = float_array(name, value, dtype)
    if arr.shape != shape:
        raise ShapeError(
            f"{name} has shape {arr.shape}; expected {shape}: {what}",
            f"pass {name} of shape {shape}, or None for zeros",
        )
    return arr


def reference_vjp(
    weights: RNNWeights,
    x: Any,
    h0: Any = None,
    dy: Any = None,
    dh_n: Any = None,
    *,
    lengths: Any = None,
    mask: Any = None,
) -> Grads:
    """The float64 reference gradients of ``L = sum(y * dy) + sum(h_n * dh_n)`` (plus
    ``sum(c_n * dc_n)`` for an LSTM, whose ``dh_n`` is the pair ``(dh_n, dc_n)``), where
    ``y, h_n = reference_forward(weights, x, h0, lengths=..., mask=...)``. ``dy`` (batch, time,
    dirs*hidden) and ``dh_n`` (the final state's public form) None mean zeros. Returns dL/dx,
    dL/dh0 (dL/dc0; defined also when ``h0`` is None, i.e. zeros) and dL/d(each weight array)."""
    spec = weights.spec
    weights = weights.astype(np.float64)
    arr, states = check_inputs(spec, x, h0, np.float64)
    batch, time, _ = arr.shape
    padding = check_padding(lengths, mask, batch, time)
    dy_checked, dstates = check_cotangents(spec, batch, time, dy, dh_n, np.float64)
    return vjp_tuple(weights, arr, states, dy_checked, dstates, padding)


def one_bias_grads(grads: RNNWeights) -> RNNWeights:
    """Canonical weight gradients from a library that adds one bias where the canonical layout
    has two (Keras, TF1), after its converter (``from_keras``, ``from_tf1(forget_bias=0)``) put
    the one bias's gradient in ``b_ih`` and zeros in ``b_hh``. Both canonical biases enter the
    step as the same sum, so each one's gradient is the library bias's gradient: it is copied
    into ``b_hh``. A reset-after GRU keeps its two biases in Keras, and is left as it is."""
    spec = grads.spec
    if not spec.bias or not _b_hh_hoisted(spec):
        return grads
    rows = [
        [DirectionWeights(dw.w_ih, dw.w_hh, dw.b_ih, dw.b_ih.copy()) for dw in row]
        for row in grads.layers
    ]
    return RNNWeights(spec, rows, dtype=grads.dtype)


def check_cotangents(
    spec: RNNSpec, batch: int, time: int, dy: Any, dh_n: Any, dtype: Any
) -> tuple[np.ndarray | None, tuple[np.ndarray, ...] | None]:
    """Validate and cast the cotangents of a vjp: ``dy`` (batch, time, dirs*hidden) and ``dh_n``
    (the final state's public form: ``(dh_n, dc_n)`` for an LSTM) as a tuple in
    ``spec.state_names`` order; None stays None (zeros)."""
    out_shape = (batch, time, spec.output_size)
    if dy is not None:
        dy = _check_cotangent(
            "dy", dy, out_shape, "the gradient of the output y (batch, time, dirs*hidden)", dtype
        )
    dstates = None
    if dh_n is not None:
        shape = state_mod.state_shape(spec, batch)
        names: tuple[str, ...]
        if spec.cell == "lstm":
            if not isinstance(dh_n, (tuple, list)) or len(dh_n) != 2:
                raise ShapeError(
                    f"an LSTM's final-state gradient is a pair (dh_n, dc_n); got "
                    f"{type(dh_n).__name__}",
                    f"pass dh_n=(dh_n, dc_n), each of shape {shape} (zeros for one not used)",
                )
            parts, names = tuple(dh_n), ("dh_n", "dc_n")
        else:
            parts, names = (dh_n,), ("dh_n",)
        what = "the gradient of the final state (layers*dirs, batch, hidden)"
        dstates = tuple(_check_cotangent(n, p, shape, what, dtype) for n, p in zip(names, parts))
    return dy, dstates
