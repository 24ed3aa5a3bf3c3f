"""A test-only backend for the benchmark harness's failure handling; imported by name inside a
worker process (the repo root is on its PYTHONPATH). Its variants misbehave on the 4th call to
``run`` (after the first call and during warm-up or measurement): "crash" kills its own process
(as the out-of-memory killer would), "hang" sleeps past any timeout, "oom" raises MemoryError;
"ok" behaves. ``RefusingCell`` computes every cell but the reset-before GRU, which it refuses
the way a real backend without that formula does (torch). ``NoLengthsCell`` is a backend not
wired for padding (the two-argument ``prepare``, ``takes_lengths`` False); ``LateLengthsCell``
says it takes lengths but its ``prepare`` refuses them (as a library that cannot pad some
layer would). For training cases: ``NoGradsCell`` computes no gradients (``computes_gradients``
False), ``LateGradsCell`` says it does but its ``prepare_vjp`` refuses (as a backend whose
gradients are not wired up yet), and ``NanGradsCell`` returns a gradient holding a NaN."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
from rnnbench.backends.numpy_backend import NumpyCell

from rnnbench.errors import BackendUnavailableError, UnsupportedPaddingError
from rnnbench.gradients import Grads
from rnnbench.state import State
from rnnbench.weights import RNNWeights


class FakeCell(NumpyCell):
    name = "bench-fake"
    variants = ("ok", "crash", "hang", "oom")

    def run(self, prepared: Any) -> Any:
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 4:
            if self.variant == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.variant == "hang":
                time.sleep(3600)
            elif self.variant == "oom":
                raise MemoryError("fake: cannot allocate the output")
        return super().run(prepared)


class RefusingCell(NumpyCell):
    name = "bench-refuser"

    def _load(self, weights: RNNWeights) -> None:
        spec = weights.spec
        if spec.cell == "gru" and not spec.reset_after:
            self.refuse_spec(
                spec,
                "this test backend has only the reset-after GRU",
                "use cell gru (reset_after=True)",
            )
        super()._load(weights)


class NoLengthsCell(NumpyCell):
    name = "bench-no-lengths"
    takes_lengths = False
    takes_mask = False

    def prepare(self, x: np.ndarray, h0: State | None = None) -> Any:  # type: ignore[override]
        return super().prepare(x, h0)


class LateLengthsCell(NumpyCell):
    name = "bench-late-lengths"

    def prepare(
        self, x: np.ndarray, h0: State | None = None, lengths: Any = None, mask: Any = None
    ) -> Any:
        if lengths is not None:
            raise UnsupportedPaddingError(
                "backend 'bench-late-lengths' cannot pad this layer",
                "time it on full-length batches",
            )
        return super().prepare(x, h0)


class NoGradsCell(NumpyCell):
    name = "bench-no-grads"
    computes_gradients = False


class LateGradsCell(NumpyCell):
    name = "bench-late-grads"

    def prepare_vjp(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailableError(
            "backend 'bench-late-grads' does not compute gradients", "time its inference"
        )


class NanGradsCell(NumpyCell):
    name = "bench-nan-grads"

    def fetch_vjp(self, result: Any) -> Grads:
        grads = super().fetch_vjp(result)
        grads.dx = grads.dx.copy()
        grads.dx[0, -1, 0] = np.nan
        return grads
