"""Every tolerance rnnbench uses, in one place, and why it has the size it has.

A backend in dtype ``d`` is compared with the float64 reference element-wise:
``|y - ref| <= atol(t) + rtol(t) * |ref|`` at time step t (steps counted in the direction each
value was computed, so the reverse direction of a bidirectional layer is judged by its own age).

The bound follows first-order error propagation through the recurrence. Each step adds a local
rounding error of about ``u * sqrt(fan_in)`` (u: the unit roundoff of ``d``; fan_in = I + H terms
summed in each dot product, whose errors add like a random walk), and the error already carried
is multiplied by the step's Jacobian, whose norm is at most ``g = ||W_hh||_2`` since
|tanh'| <= 1 and relu' in {0, 1}. After t steps the carried error is thus bounded by
``e * sqrt(sum_k g^(2k))``: it stays flat for contractive weights (g < 1), grows like sqrt(t) for
near-orthogonal ones (g ~ 1) and exponentially for expansive ones (g > 1), where float32 and
float64 trajectories of a chaotic RNN part ways; the bound then reaches its cap and later steps
are not comparable. ``comparable_steps`` says where that happens, so drift is measured, not hidden.

``SAFETY`` covers what the first-order model leaves out: different but correct tanh
implementations (XLA and Eigen use rational approximations within a few ulp), fused
multiply-adds, summation order of the library's GEMM, and stacking (each layer adds its own
error and passes the one below through W_ih). It was set from measurements across all backends
(see tests/test_tolerances.py) and leaves a margin of about 10x over the worst error measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.arrays import resolve_dtype

SAFETY = 16.0
# Above this a float32 comparison says nothing (tanh outputs differ by at most 2).
CAP = {"tanh": 2.0, "relu": np.inf}
# The seed notebook printed float32 to numpy's default precision; the issue fixes 2e-6.
SEED_ATOL = 2e-6
SEED_KERNEL_ATOL = 0.0  # tf1 must reproduce the seed's kernel exactly from graph seed 35
SEED_REPLAY_ATOL = 1e-6


def unit_roundoff(dtype: Any) -> float:
    return float(np.finfo(resolve_dtype(dtype)).eps) / 2


@dataclass(frozen=True)
class Tolerance:
    """Per-time-step absolute and relative tolerances for one comparison."""

    atol: np.ndarray  # (time,)
    rtol: np.ndarray  # (time,)
    dtype: str
    growth: float

    def at(self, step: int) -> tuple[float, float]:
        return float(self.atol[step]), float(self.rtol[step])

    def describe(self) -> str:
        return (
            f"atol {self.atol[0]:.1e}..{self.atol[-1]:.1e}, "
            f"rtol {self.rtol[0]:.1e}..{self.rtol[-1]:.1e} ({self.dtype}, g={self.growth:.2f})"
        )


def tolerance(
    dtype: Any,
    seq_len: int,
    *,
    fan_in: int,
    num_layers: int = 1,
    growth: float = 1.0,
    nonlinearity: str = "tanh",
) -> Tolerance:
    """Tolerances for ``seq_len`` steps of a backend computing in ``dtype``.

    ``fan_in``: the largest I + H over the layers; ``growth``: the largest spectral norm of the
    recurrent weights (``RNNWeights.recurrent_norms()``); values <= 1 accumulate no faster than
    a random walk.
    """
    u = unit_roundoff(dtype)
    local = SAFETY * u * np.sqrt(fan_in) * num_layers
    g2 = max(float(growth), 0.0) ** 2
    steps = np.arange(seq_len, dtype=np.float64)
    with np.errstate(over="ignore"):
        if abs(g2 - 1.0) < 1e-12:
            accumulated = steps + 1.0
        else:
            accumulated = (g2 ** (steps + 1) - 1.0) / (g2 - 1.0)
    scale = local * np.sqrt(np.minimum(accumulated, 1e300))
    cap = CAP.get(nonlinearity, np.inf)
    atol = np.minimum(scale, cap)
    rtol = np.minimum(scale, 1.0)
    return Tolerance(atol=atol, rtol=rtol, dtype=str(resolve_dtype(dtype)), growth=float(growth))


def tolerance_for(weights: Any, dtype: Any, seq_len: int) -> Tolerance:
    """``tolerance`` with fan-in, layers and growth read off an ``RNNWeights``."""
    spec = weights.spec
    fan_in = max(spec.layer_input_size(k) + spec.hidden_size for k in range(spec.num_layers))
    return tolerance(
        dtype,
        seq_len,
        fan_in=fan_in,
        num_layers=spec.num_layers,
        growth=max(weights.recurrent_norms()),
        nonlinearity=spec.nonlinearity,
    )


def comparable_steps(tol: Tolerance, limit: float = 0.1) -> int:
    """How many leading steps are really checked: after them the allowance exceeds ``limit``
    (for expansive weights, where float32 and float64 trajectories part ways)."""
    over = np.nonzero(tol.atol >= limit)[0]
    return int(over[0]) if over.size else len(tol.atol)


def step_ages(seq_len: int, num_directions: int, num_layers: int, hidden: int) -> np.ndarray:
    """(time, features) array of how many steps each output element has been computed through.

    Forward outputs at step t are t steps old; a one-layer reverse direction's are T-1-t. Above
    one bidirectional layer every output depends on both directions below it, so each is judged
    as the oldest (T-1).
    """
    t = np.arange(seq_len)
    fwd = np.repeat(t[:, None], hidden, axis=1)
    if num_directions == 1:
        return fwd
    if num_layers > 1:
        return np.full((seq_len, 2 * hidden), seq_len - 1)
    return np.concatenate([fwd, fwd[::-1]], axis=1)
