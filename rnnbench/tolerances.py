"""Every tolerance rnnbench uses, in one place, and why it has the size it has.

A backend in dtype ``d`` is compared with the float64 reference element-wise:
``|y - ref| <= atol(t) + rtol(t) * |ref|`` at time step t. The allowance has two parts, and the
larger one counts:

1. **A floor from rounding.** Each step adds a local rounding error of about
   ``u * sqrt(fan_in)`` (u: the unit roundoff of ``d``; fan_in = I + H terms summed in each dot
   product, whose errors add like a random walk), per layer. With the recurrence contracting or
   preserving errors they accumulate no faster than a random walk: ``* sqrt(t + 1)``, with t the
   age of the output (steps counted in the direction each value was computed).
2. **The trajectory's own sensitivity, measured.** Whether carried errors shrink or grow depends
   on the weights *and* the input: saturated tanh units damp them, a chaotic network (large
   ``||W_hh||``, weak input) amplifies them until float32 and float64 trajectories part ways. A
   priori bounds (``||W_hh||^t``) are useless here (they exceed 1 within tens of steps even
   when nothing grows), so rnnbench measures it: the float64 reference is run once more with
   every weight and input perturbed by one unit roundoff of ``d`` (relative, random sign), and
   ``PROBE_SAFETY`` times that run's deviation (its running window maximum) is allowed. A
   correct library's rounding is a perturbation of the same size, amplified the same way.

The allowance is capped at 2 for tanh (no two tanh outputs differ by more): steps where it is
capped are not really compared, and ``comparable_steps`` counts those that are, so drift in a
chaotic regime is measured and reported, not hidden.

``SAFETY`` covers what the first-order model leaves out: correct but different tanh
implementations (XLA and Eigen use rational approximations within a few ulp), fused
multiply-adds, the library's GEMM summation order, and stacking. Both factors were set from
measurements of all seven backends in float32 and float64 (2026-11, CPU; 6 cases from one step
to T=500, stacked, bidirectional, relu, chaotic): the worst error was 0.06 of the allowance on
the rounding floor and 0.09 on the probe part (tf1, chaotic onset), a margin of 10x or more.
``tests/test_tolerances.py`` keeps both ends honest: errors well inside the allowance, and the
allowance no looser than 1000x the error actually made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.arrays import resolve_dtype

SAFETY = 4.0
PROBE_SAFETY = 100.0  # a correct library's amplified rounding vs. the probe's, same order
PROBE_WINDOW = 2  # steps either side, so that a momentary dip of the probe cannot pinch the bound
PROBE_SEED = 20261128
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
    """The allowance of one comparison: ``|y - ref| <= s + min(s, 1) * |ref|`` with
    ``s = min(max(floor[age], probe[t]), cap)``."""

    floor: np.ndarray  # (time,), indexed by the age of an output
    probe: np.ndarray  # (time,), indexed by the time step (zeros without a probe)
    cap: float
    dtype: str

    def scale(self, ages: np.ndarray) -> np.ndarray:
        """(time, features) allowance for outputs of the given ages (see ``step_ages``)."""
        return np.minimum(np.maximum(self.floor[ages], self.probe[:, None]), self.cap)

    @property
    def atol(self) -> np.ndarray:
        """(time,) allowance for forward outputs (age = t)."""
        return np.minimum(np.maximum(self.floor, self.probe), self.cap)

    def bounds(self, ref: np.ndarray, ages: np.ndarray) -> np.ndarray:
        """Element-wise bound for a reference output ``ref`` (batch, time, features)."""
        s = self.scale(ages)[None]
        return s + np.minimum(s, 1.0) * np.abs(ref)

    def describe(self) -> str:
        atol = self.atol
        return f"atol {atol[0]:.1e} at t=0 .. {atol[-1]:.1e} at t={len(atol) - 1} ({self.dtype})"


def tolerance(
    dtype: Any,
    seq_len: int,
    *,
    fan_in: int,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    sensitivity: np.ndarray | None = None,
) -> Tolerance:
    """Tolerances for ``seq_len`` steps of a backend computing in ``dtype``.

    ``fan_in``: the largest I + H over the layers. ``sensitivity``: the per-step deviation of a
    probe run (see :func:`sensitivity`); without it only the rounding floor applies.
    """
    u = unit_roundoff(dtype)
    local = SAFETY * u * np.sqrt(fan_in) * num_layers
    floor = local * np.sqrt(np.arange(seq_len, dtype=np.float64) + 1.0)
    probe = (
        np.zeros(seq_len)
        if sensitivity is None
        else PROBE_SAFETY * _window_max(sensitivity, PROBE_WINDOW)
    )
    return Tolerance(
        floor=floor, probe=probe, cap=CAP.get(nonlinearity, np.inf), dtype=str(resolve_dtype(dtype))
    )


def _window_max(values: np.ndarray, half: int) -> np.ndarray:
    padded = np.pad(np.asarray(values, np.float64), half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.asarray(windows.max(axis=-1))


def sensitivity(
    weights: Any,
    x: np.ndarray,
    h0: Any,
    dtype: Any,
    reference: np.ndarray | None = None,
    padding: Any = None,
) -> np.ndarray:
    """Per-step max deviation of the float64 reference when every weight, input and initial
    state is perturbed by one unit roundoff of ``dtype`` (relative, random sign; a fixed seed
    keeps it repeatable). ``h0``: the initial state as a tuple ((h0,) or (h0, c0)) or None.
    ``reference``: the float64 output y of (weights, x, h0), when the caller has it already.
    ``padding``: the batch's checked ``rnnbench.padding.Padding``, or None.
    """
    from rnnbench.reference import forward_tuple

    u = unit_roundoff(dtype)
    rng = np.random.default_rng(PROBE_SEED)

    def nudge(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        return a * (1.0 + u * rng.choice((-1.0, 1.0), size=a.shape))

    w64 = weights.astype(np.float64)
    nudged = {k: nudge(v) for k, v in w64.arrays().items()}
    probe = type(weights).from_arrays(weights.spec, nudged)
    x64 = np.asarray(x, np.float64)
    h64 = None if h0 is None else tuple(np.asarray(s, np.float64) for s in h0)
    ref = reference if reference is not None else forward_tuple(w64, x64, h64, padding)[0]
    nudged_h0 = None if h64 is None else tuple(map(nudge, h64))
    out, _ = forward_tuple(probe, nudge(x64), nudged_h0, padding)
    return np.asarray(np.abs(out - ref).max(axis=(0, 2)))


def tolerance_for(
    weights: Any,
    dtype: Any,
    x: np.ndarray,
    h0: Any = None,
    reference: np.ndarray | None = None,
    padding: Any = None,
) -> Tolerance:
    """``tolerance`` for one case: fan-in and layers from the spec, sensitivity measured on
    (x, h0, padding); ``h0`` is the public state (an array, or an LSTM's (h0, c0)) or None;
    ``reference`` (the float64 output) saves recomputing it. Gated cells sum I + H terms per
    gate pre-activation too, so the fan-in is the same. A padded row runs fewer steps than T,
    so the ages of a full batch (``step_ages``) bound its outputs' ages from above."""
    from rnnbench.state import as_tuple

    spec = weights.spec
    states = None if h0 is None else as_tuple(spec, h0)
    fan_in = max(spec.layer_input_size(k) + spec.hidden_size for k in range(spec.num_layers))
    return tolerance(
        dtype,
        np.shape(x)[1],
        fan_in=fan_in,
        num_layers=spec.num_layers,
        nonlinearity=spec.nonlinearity,
        sensitivity=sensitivity(weights, x, states, dtype, reference, padding),
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


# --- gradients ------------------------------------------------------------------------------
#
# A backward pass runs the recurrence in reverse: the gradient reaching step t has come back
# through the T-1-t later steps (through the t earlier ones in a reverse direction), and each
# step adds its rounding to it, so dx at step t carries errors of "backward age" T-1-t (T-1 for
# every step above or beside a reverse direction). The rounding floor grows with that age like
# the forward one, as a random walk: ``SAFETY * u * sqrt(fan_in) * layers * sqrt(age + 1)``,
# relative to the largest value of the array (a gradient is not bounded by 1 as a tanh output
# is, and its rounding is relative to the terms summed). A weight gradient sums its terms over
# every step and row, so its floor takes the oldest age and sqrt(batch) more. The measured
# part is the forward one's: the float64 reference backward pass rerun with every weight,
# input, initial state and cotangent nudged by one unit roundoff, and PROBE_SAFETY times that
# run's deviation allowed, per step of dx and per array otherwise. A chaotic trajectory
# amplifies gradient errors as it amplifies forward ones, and the probe follows it.


@dataclass(frozen=True)
class GradTolerance:
    """Bounds of one gradient comparison: per array name of ``Grads.arrays()`` an absolute bound
    on its max error, and for ``dx`` a bound per time step (to find the first bad step)."""

    bounds: dict[str, float]
    dx_steps: np.ndarray  # (time,)
    dtype: str

    def describe(self) -> str:
        d = self.dx_steps
        return (
            f"dx atol {d.min():.1e}..{d.max():.1e}, weights up to "
            f"{max(v for k, v in self.bounds.items() if k != 'dx'):.1e} ({self.dtype})"
        )


def gradient_tolerance(
    weights: Any,
    dtype: Any,
    x: np.ndarray,
    h0: Any,
    dy: np.ndarray | None,
    dh_n: Any,
    padding: Any = None,
    reference: Any = None,
) -> GradTolerance:
    """Gradient tolerances for one vjp (public state forms for ``h0`` and ``dh_n``; ``padding``
    a checked ``Padding`` or None; ``reference`` the float64 ``Grads`` when the caller has it)."""
    from rnnbench.gradients import reference_vjp

    spec = weights.spec
    u = unit_roundoff(dtype)
    kwargs = {} if padding is None else padding.arguments()
    w64 = weights.astype(np.float64)
    ref = reference if reference is not None else reference_vjp(w64, x, h0, dy, dh_n, **kwargs)
    rng = np.random.default_rng(PROBE_SEED)

    def nudge(a: Any) -> Any:
        if a is None:
            return None
        if isinstance(a, tuple):
            return tuple(nudge(p) for p in a)
        a = np.asarray(a, np.float64)
        return a * (1.0 + u * rng.choice((-1.0, 1.0), size=a.shape))

    probe_w = type(weights).from_arrays(spec, {k: nudge(v) for k, v in w64.arrays().items()})
    probe = reference_vjp(probe_w, nudge(x), nudge(h0), nudge(dy), nudge(dh_n), **kwargs)
    ref_arrays, probe_arrays = ref.arrays(), probe.arrays()
    batch, time = np.shape(x)[:2]
    fan_in = max(spec.layer_input_size(k) + spec.hidden_size for k in range(spec.num_layers))
    local = SAFETY * u * np.sqrt(fan_in) * spec.num_layers
    if spec.num_directions == 1 and spec.num_layers == 1:
        ages = np.arange(time - 1, -1, -1, dtype=np.float64)
    else:
        ages = np.full(time, time - 1, np.float64)
    tiny = np.finfo(np.float64).tiny
    bounds: dict[str, float] = {}
    for name, value in ref_arrays.items():
        scale = max(float(np.abs(value).max()), tiny)
        deviation = float(np.abs(probe_arrays[name] - value).max())
        extra = np.sqrt(batch) if name not in ("dx", "dh0", "dc0") else 1.0
        floor = local * np.sqrt(time) * extra * scale
        bounds[name] = max(floor, PROBE_SAFETY * deviation)
    dx_ref = ref_arrays["dx"]
    dx_scale = max(float(np.abs(dx_ref).max()), tiny)
    dx_dev = np.abs(probe_arrays["dx"] - dx_ref).max(axis=(0, 2))
    dx_steps = np.maximum(
        local * np.sqrt(ages + 1.0) * dx_scale,
        PROBE_SAFETY * _window_max(dx_dev, PROBE_WINDOW),
    )
    return GradTolerance(bounds=bounds, dx_steps=dx_steps, dtype=str(resolve_dtype(dtype)))
