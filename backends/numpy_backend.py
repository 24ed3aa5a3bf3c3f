"""The NumPy backend: the reference recurrence (``rnnbench.reference``) as a cell.

In float64 it is the reference every other backend is judged by; in float32 it is one more
backend. The input projection of all time steps is one matrix product before the loop, so the
loop holds only the recurrent product; this is also how cuDNN and the Keras/JAX scans split the
work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnbench import reference
from rnnbench.cell import BaseCell
from rnnbench.gradients import Grads, vjp_tuple
from rnnbench.padding import Padding
from rnnbench.state import State
from rnnbench.weights import RNNWeights


class NumpyCell(BaseCell):
    """Pure NumPy, every cell; runs on the CPU through whatever BLAS NumPy links (``info()``)."""

    name = "numpy"
    distribution = "numpy"
    devices = ("cpu",)
    variants = ("hoisted",)
    takes_lengths = True
    takes_mask = True
    computes_gradients = True

    def _load(self, weights: RNNWeights) -> None:
        self._weights = weights

    def prepare(
        self, x: np.ndarray, h0: State | None = None, lengths: Any = None, mask: Any = None
    ) -> Any:
        xs, hs = self.check_inputs(x, h0)
        return xs, hs, self.check_padding(xs, lengths, mask)

    def run(self, prepared: Any) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        x, h0, padding = prepared
        return reference.forward_tuple(self._weights, x, h0, padding)

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        y, states = result
        return y, self.public_state(states)

    def _vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Grads:
        # The hand-written backward pass of the reference, in this cell's dtype.
        return vjp_tuple(self._weights, x, h0, dy, dstates, padding)

    def path(self) -> str:
        return "numpy-loop (input projection hoisted into one GEMM)"

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["backward_path"] = "the reference's hand-written BPTT (rnnbench.gradients), numpy loop"
        return out
