"""The NumPy backend: the float64 reference every other backend is judged by, and a float32 path.

The input projection of all time steps is one matrix product before the loop (x @ w_ih for the
whole sequence), so the loop holds only the recurrent product; this is also how cuDNN and the
Keras/JAX scans split the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.weights import RNNWeights

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0, out=a),
}


def rnn_forward(
    weights: RNNWeights, x: np.ndarray, h0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The whole stacked (bidirectional) RNN in the dtype of ``weights``.

    x: (batch, time, input); h0: (layers*dirs, batch, hidden) or None for zeros.
    Returns y (batch, time, dirs*hidden) and h_n (layers*dirs, batch, hidden).
    """
    spec = weights.spec
    dtype = weights.dtype
    act = _ACTIVATIONS[spec.nonlinearity]
    batch, time, _ = x.shape
    hidden = spec.hidden_size
    layer_input = np.asarray(x, dtype=dtype)
    finals = []
    for k, row in enumerate(weights.layers):
        outputs = []
        for d, dw in enumerate(row):
            index = k * spec.num_directions + d
            h = np.zeros((batch, hidden), dtype) if h0 is None else np.array(h0[index], dtype=dtype)
            # One GEMM over all steps: (batch*time, in) @ (in, hidden), plus both biases.
            proj = layer_input @ dw.w_ih + (dw.b_ih + dw.b_hh)
            out = np.empty((batch, time, hidden), dtype)
            steps = range(time - 1, -1, -1) if d == 1 else range(time)
            for t in steps:
                pre = proj[:, t, :] + h @ dw.w_hh
                h = act(pre)
                out[:, t, :] = h
            outputs.append(out)
            finals.append(h)
        layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
    return layer_input, np.stack(finals)


class NumpyCell(BaseCell):
    """Pure NumPy; runs on the CPU through whatever BLAS NumPy links (see ``info()``)."""

    name = "numpy"
    distribution = "numpy"
    devices = ("cpu",)
    variants = ("hoisted",)

    def _load(self, weights: RNNWeights) -> None:
        self._weights = weights

    def prepare(self, x: np.ndarray, h0: np.ndarray | None = None) -> Any:
        return self.check_inputs(x, h0)

    def run(self, prepared: Any) -> tuple[np.ndarray, np.ndarray]:
        x, h0 = prepared
        return rnn_forward(self._weights, x, h0)

    def fetch(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        return result

    def path(self) -> str:
        return "numpy-loop (input projection hoisted into one GEMM)"
