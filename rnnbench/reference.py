"""The reference recurrence: every cell, stacked and bidirectional, in plain NumPy.

In float64 this is the reference every backend is judged by; the NumPy backend runs the same code
in float32 too, and the tolerance probe reruns it on perturbed inputs. One scan loop serves every
cell: a cell is a *step function* over a tuple state ("h", or "h", "c"), and the input
projection of every step is hoisted into one matrix product before the loop (as cuDNN and the
Keras/JAX scans split the work). The formulas are those of :mod:`rnnbench.gates`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnbench import state as state_mod
from rnnbench.padding import Padding, check_padding
from rnnbench.weights import DirectionWeights, RNNWeights

Carry = tuple[np.ndarray, ...]
# (projected input of one step, carry) -> new carry; the output of the step is carry[0].
Step = Callable[[np.ndarray, Carry], Carry]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """The logistic function through tanh: no overflow for large |a| in either dtype, and
    within an ulp of 1 in absolute terms."""
    return 0.5 * np.tanh(0.5 * a) + 0.5


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0, out=a)


def _cell_step(cell: str, nonlinearity: str, dw: DirectionWeights) -> tuple[np.ndarray, Step]:
    """(input bias to hoist, step function) of one layer and direction."""
    w_hh = dw.w_hh
    if cell == "rnn":
        act = np.tanh if nonlinearity == "tanh" else _relu

        def rnn_step(p: np.ndarray, carry: Carry) -> Carry:
            return (act(p + carry[0] @ w_hh),)

        return dw.b_ih + dw.b_hh, rnn_step

    if cell == "lstm":

        def lstm_step(p: np.ndarray, carry: Carry) -> Carry:
            h, c = carry
            i, f, g, o = np.split(p + h @ w_hh, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            return sigmoid(o) * np.tanh(c), c

        return dw.b_ih + dw.b_hh, lstm_step

    raise AssertionError(cell)  # GRUs are built by _gru_step


def _gru_step(reset_after: bool, dw: DirectionWeights) -> tuple[np.ndarray, Step]:
    w_hh, b_hh = dw.w_hh, dw.b_hh
    hidden = w_hh.shape[0]
    if reset_after:
        # b_hh stays in the loop: its n block is multiplied by the reset gate.
        def after_step(p: np.ndarray, carry: Carry) -> Carry:
            h = carry[0]
            xr, xz, xn = np.split(p, 3, axis=-1)
            hr, hz, hn = np.split(h @ w_hh + b_hh, 3, axis=-1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            return ((1 - z) * n + z * h,)

        return dw.b_ih, after_step

    w_rz, w_n = w_hh[:, : 2 * hidden], w_hh[:, 2 * hidden :]

    # Every bias is outside the reset gate: both are hoisted with the input projection.
    def before_step(p: np.ndarray, carry: Carry) -> Carry:
        h = carry[0]
        r, z = np.split(sigmoid(p[..., : 2 * hidden] + h @ w_rz), 2, axis=-1)
        n = np.tanh(p[..., 2 * hidden :] + (r * h) @ w_n)
        return ((1 - z) * n + z * h,)

    return dw.b_ih + dw.b_hh, before_step


def step_function(weights: RNNWeights, layer: int, direction: int) -> tuple[np.ndarray, Step]:
    """The hoisted input bias and the step function of one layer and direction."""
    spec = weights.spec
    dw = weights[layer, direction]
    if spec.cell == "gru":
        return _gru_step(bool(spec.reset_after), dw)
    return _cell_step(spec.cell, spec.nonlinearity, dw)


def scan(
    step: Step,
    proj: np.ndarray,
    carry: Carry,
    reverse: bool = False,
    mask: np.ndarray | None = None,
    masked_output: str = "zero",
) -> tuple[np.ndarray, Carry]:
    """Run ``step`` over the time axis of ``proj`` (batch, time, G*hidden); the outputs stay
    aligned with the input's time axis in either direction, and the final carry is the state
    after the last step run (step 0 for ``reverse``), as torch's ``h_n`` holds it.

    ``mask`` (batch, time), True where a step is real: a masked step keeps the carry as it was
    and writes zeros, or (``masked_output="repeat"``) the previous output of this direction
    again, zeros before the first real one (see :mod:`rnnbench.padding`). Right-padded rows
    scanned in reverse thus start at their own last real step."""
    batch, time, _ = proj.shape
    hidden = carry[0].shape[-1]
    out = np.empty((batch, time, hidden), carry[0].dtype)
    written = np.zeros((batch, hidden), carry[0].dtype)  # the previous output, for "repeat"
    for t in range(time - 1, -1, -1) if reverse else range(time):
        new = step(proj[:, t, :], carry)
        if mask is None:
            carry = new
            out[:, t, :] = carry[0]
            continue
        real = mask[:, t, None]
        carry = tuple(np.where(real, n, c) for n, c in zip(new, carry))
        written = np.where(real, new[0], written if masked_output == "repeat" else 0.0)
        out[:, t, :] = written
    return out, carry


def forward_tuple(
    weights: RNNWeights,
    x: np.ndarray,
    h0: tuple[np.ndarray, ...] | None = None,
    padding: Padding | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The whole layer in the dtype of ``weights``, with the state as a tuple (see
    :mod:`rnnbench.state`). x: (batch, time, input). Returns y (batch, time, dirs*hidden) and the
    final states, each (layers*dirs, batch, hidden). ``padding`` (checked, see
    :mod:`rnnbench.padding`) masks steps in every layer and direction."""
    mask = None if padding is None else padding.mask
    masked_output = "zero" if padding is None else padding.masked_output
    spec = weights.spec
    dtype = weights.dtype
    batch = x.shape[0]
    initial = h0 if h0 is not None else state_mod.zeros(spec, batch, dtype)
    layer_input = np.asarray(x, dtype=dtype)
    finals: list[Carry] = []
    for k in range(spec.num_layers):
        outputs = []
        for d in range(spec.num_directions):
            index = k * spec.num_directions + d
            bias, step = step_function(weights, k, d)
            proj = layer_input @ weights[k, d].w_ih + bias  # one GEMM over all steps
            carry = tuple(np.array(s[index], dtype=dtype) for s in initial)
            out, carry = scan(step, proj, carry, d == 1, mask, masked_output)
            outputs.append(out)
            finals.append(carry)
        layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
    states = tuple(np.stack([f[i] for f in finals]) for i in range(len(spec.state_names)))
    return layer_input, states


def forward(
    weights: RNNWeights, x: np.ndarray, h0: Any = None, *, lengths: Any = None, mask: Any = None
) -> tuple[np.ndarray, Any]:
    """``forward_tuple`` with the public state: ``h`` (RNN, GRU) or ``(h, c)`` (LSTM), and the
    padding as ``lengths`` or ``mask`` (checked here)."""
    spec = weights.spec
    x = np.asarray(x)
    padding = check_padding(lengths, mask, x.shape[0], x.shape[1])
    states = None if h0 is None else state_mod.as_tuple(spec, h0)
    y, out = forward_tuple(weights, x, states, padding)
    return y, state_mod.from_tuple(spec, out)


def reference_forward(
    weights: RNNWeights, x: Any, h0: Any = None, *, lengths: Any = None, mask: Any = None
) -> tuple[np.ndarray, Any]:
    """The float64 reference: :func:`forward` on float64 weights, input and state."""
    spec = weights.spec
    states = None if h0 is None else state_mod.as_tuple(spec, h0)
    return forward(
        weights.astype(np.float64),
        np.asarray(x, np.float64),
        None
        if states is None
        else state_mod.from_tuple(spec, tuple(np.asarray(s, np.float64) for s in states)),
        lengths=lengths,
        mask=mask,
    )
