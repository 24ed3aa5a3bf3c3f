"""The checks: each one a named test of one property of a cell, against the float64 reference.

Every check takes an :class:`~rnnbench.testing.Implementation`, a cell kind (``rnn``, ``lstm``,
``gru``, ``gru-reset-before``; ``any`` for the property test, which draws it) and a dtype, and
either returns (passed), skips with the reason (the implementation does not support what the
check needs) or fails with a message in the protocol's terms. ``CHECKS`` lists them with the
(kind, dtype) pairs each runs for; :func:`check_cases` expands them into test cases.

The cases share a few shapes (``_small``, ``_stacked``) so that a library that compiles per
input shape compiles each once; tolerances all come from :mod:`rnnbench.tolerances`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from rnnbench.compare import BackendComparison, CompareResult, measure
from rnnbench.padding import random_lengths, random_mask
from rnnbench.reference import reference_forward
from rnnbench.spec import RNNSpec
from rnnbench.testing._compare import Recorder, fail, run_compare
from rnnbench.testing.implementation import Implementation
from rnnbench.tolerances import step_ages, tolerance_for
from rnnbench.weights import RNNWeights

# Cell kind -> the spec fields that make it.
KINDS: dict[str, dict[str, Any]] = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}
DTYPES = ("float32", "float64")
# Spectral norm of W_hh and input scale of the three weight regimes.
REGIMES = {"contractive": (0.5, 1.0), "near-orthogonal": (1.0, 1.0), "chaotic": (5.0, 0.1)}
# Right-padded rows, unsorted, with a one-step row and a full one.
RAGGED_LENGTHS = np.array([6, 1, 7, 3])


def make_spec(kind: str, input_size: int, hidden_size: int, **fields: Any) -> RNNSpec:
    """An RNNSpec of cell kind ``kind``; a relu nonlinearity is kept for the vanilla RNN only
    (gated cells have fixed activations)."""
    if kind != "rnn":
        fields.pop("nonlinearity", None)
    return RNNSpec(input_size, hidden_size, **fields, **KINDS[kind])


def inputs(spec: RNNSpec, batch: int, time: int, seed: int = 1, h0: bool = False) -> tuple:
    """A standard-normal x, and an initial state uniform in [-1, 1] when asked: h0, or
    (h0, c0) for an LSTM."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, spec.input_size))
    state = None
    if h0:
        shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        parts = tuple(rng.uniform(-1, 1, shape) for _ in spec.state_names)
        state = parts if spec.cell == "lstm" else parts[0]
    return x, state


def _small(kind: str, **fields: Any) -> RNNSpec:
    """One layer, input and hidden size 5 (square weights): batch 4, T=7 in every use."""
    return make_spec(kind, 5, 5, **fields)


def _stacked(kind: str, **fields: Any) -> RNNSpec:
    """Two bidirectional layers of the same sizes: batch 4, T=7 in every use."""
    return make_spec(kind, 5, 5, num_layers=2, bidirectional=True, **fields)


def _stacked_from_h0(
    impl: Implementation,
    kind: str,
    dtype: str,
    seed: int,
    what: str,
    cell: Recorder | None = None,
) -> BackendComparison:
    """Compare ``_stacked(kind)`` (float64 weights of ``seed``) from a given initial state,
    batch 4, T=7: the case several checks run, each for the fault its name says."""
    spec = _stacked(kind)
    w = RNNWeights.random(spec, seed=seed, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=seed, h0=True)
    return run_compare(impl, cell or Recorder(impl.cell(dtype)), w, x, h0, what=what)


def _cast(state: Any, dtype: str) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(np.asarray(s).astype(dtype) for s in state)
    return np.asarray(state).astype(dtype)


def _parts(state: Any) -> tuple[np.ndarray, ...]:
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


# --- the checks ---------------------------------------------------------------------------------


def check_shapes(impl: Implementation, kind: str, dtype: str) -> None:
    """Output and final-state shapes and dtypes (y (batch, T, dirs*hidden); h_n
    (layers*dirs, batch, hidden), a pair (h_n, c_n) for an LSTM) and values, on the oddest
    sizes at once: every size 1 (batch, a single time step, input, hidden), in both directions,
    where a squeezed or broadcast axis goes unnoticed by any larger case. (One spec and one
    shape: a library that compiles per model compiles once.)"""
    cell = Recorder(impl.cell(dtype))
    cases = [
        (
            "input 1, hidden 1, bidirectional, batch 1, T=1",
            {"input_size": 1, "hidden_size": 1, "bidirectional": True},
            1,
            1,
        ),
    ]
    for what, shape, batch, time in cases:
        spec = make_spec(kind, **shape)
        w = RNNWeights.random(spec, seed=2)
        x, _ = inputs(spec, batch, time)
        impl.load(cell, w.astype(dtype))
        run_compare(impl, cell, w, x, what=what)
        assert cell.output is not None
        y, h_n = cell.output
        parts = _parts(h_n)
        want = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        problems = []
        if kind == "lstm" and not (isinstance(h_n, tuple) and len(h_n) == 2):
            problems.append(f"an LSTM's final state must be the pair (h_n, c_n), got {h_n!r:.60}")
        for name, arr in [("y", y), *zip(("h_n", "c_n"), parts)]:
            if np.asarray(arr).dtype != np.dtype(dtype):
                problems.append(f"{name} has dtype {np.asarray(arr).dtype}, expected {dtype}")
        if np.shape(y) != (batch, time, spec.output_size):
            expected = (batch, time, spec.output_size)
            problems.append(f"y has shape {np.shape(y)}, expected {expected}")
        for name, arr in zip(("h_n", "c_n"), parts):
            if np.shape(arr) != want:
                problems.append(f"{name} has shape {np.shape(arr)}, expected {want}")
        if problems:
            pytest.fail(f"{impl} ({dtype}), {what}: " + "; ".join(problems), pytrace=False)


def check_float64_precision(impl: Implementation, kind: str, dtype: str) -> None:
    """Three bidirectional layers from a given initial state (relu for the vanilla RNN, whose
    outputs are unbounded), held to float64's allowance: a float64 cell that rounds anywhere
    to float32 fails here and is named so."""
    spec = make_spec(kind, 5, 8, num_layers=3, bidirectional=True, nonlinearity="relu")
    w = RNNWeights.random(spec, seed=3, dtype="float64")
    x, h0 = inputs(spec, 3, 12, h0=True)
    cell = Recorder(impl.cell(dtype))
    run_compare(impl, cell, w, x, h0, what="3 bidirectional layers from h0, float64 allowance")


def check_initial_state(impl: Implementation, kind: str, dtype: str) -> None:
    """A given initial state (h0, and c0 for an LSTM) through two bidirectional layers: each
    layer and direction starts from its own slice of it. (A missing h0, zeros, is what most
    other checks run.)"""
    _stacked_from_h0(impl, kind, dtype, 6, "2 bidirectional layers, h0 given")


def check_bias(impl: Implementation, kind: str, dtype: str) -> None:
    """The biases: a spec without them, and a spec with them from a given h0 (a bias must not
    be dropped when h0 is passed)."""
    spec = make_spec(kind, 4, 6, bias=False)
    w = RNNWeights.random(spec, seed=2)
    cell = Recorder(impl.cell(dtype))
    run_compare(impl, cell, w, inputs(spec, 2, 9)[0], what="bias=False, batch 2, T=9")
    _stacked_from_h0(impl, kind, dtype, 7, "biases with h0 given", cell)


def check_reverse_final_state(impl: Implementation, kind: str, dtype: str) -> None:
    """A reverse direction's final state is the state after its last step, t=0 (torch's h_n),
    in both layers of a bidirectional stack."""
    _stacked_from_h0(impl, kind, dtype, 8, "2 bidirectional layers (h_n of the reverse direction)")


def check_square_weights(impl: Implementation, kind: str, dtype: str) -> None:
    """Input size equal to hidden size, so that a transposed kernel (x @ w_ih.T, h @ w_hh.T)
    has the right shape and only its values are wrong (each gate's block of w_hh is square)."""
    _stacked_from_h0(impl, kind, dtype, 9, "input size = hidden size = 5")


def check_long_sequence(impl: Implementation, kind: str, dtype: str) -> None:
    """T=500 through two bidirectional layers: drift over a long sequence stays inside the
    allowance."""
    spec = make_spec(kind, 8, 32, num_layers=2, bidirectional=True)
    w = RNNWeights.random(spec, seed=4)
    x, _ = inputs(spec, 2, 500)
    cell = Recorder(impl.cell(dtype))
    run_compare(impl, cell, w, x, what="T=500, 2 bidirectional layers")


def check_weight_regimes(impl: Implementation, kind: str, dtype: str) -> None:
    """T=300 under the three weight regimes, by the spectral norm of W_hh: contractive (errors
    are forgotten), near-orthogonal (they accumulate like a random walk) and chaotic (a strongly
    expansive RNN driven weakly: float32 and float64 part ways, and the allowance follows the
    measured sensitivity step by step). Gated cells saturate rather than turn chaotic; for them
    the contractive regime says nothing new and is left out."""
    cell = Recorder(impl.cell(dtype))
    spec = make_spec(kind, 4, 32)
    for regime, (norm, scale) in REGIMES.items():
        if kind != "rnn" and regime == "contractive":
            continue
        w = RNNWeights.random(spec, seed=5, dtype="float64", recurrent_norm=norm)
        x = inputs(spec, 2, 300)[0] * scale
        row = run_compare(impl, cell, w, x, what=f"{regime} weights (||W_hh|| = {norm}), T=300")
        if regime != "chaotic" or kind != "rnn":
            # Where float32 does not part from float64, the whole sequence is really compared.
            assert row.checked_steps == 300, (regime, row.checked_steps, row.tolerance)


def check_lengths(impl: Implementation, kind: str, dtype: str) -> None:
    """Right-padded rows (``lengths``): outputs past a length are zeros, the final state is the
    one after each row's last real step, and the reverse direction of each row starts at its
    own last real step; one layer from h0 and two bidirectional layers."""
    cell = Recorder(impl.cell(dtype))
    impl.require(cell, "lengths")
    for what, spec, with_h0 in [
        ("ragged lengths, one layer from h0", _small(kind), True),
        ("ragged lengths, 2 bidirectional layers", _stacked(kind), False),
    ]:
        w = RNNWeights.random(spec, seed=12, dtype="float64")
        x, h0 = inputs(spec, 4, 7, seed=12, h0=with_h0)
        row = run_compare(impl, cell, w, x, h0, what=what, lengths=RAGGED_LENGTHS)
        assert row.masked_output == "zero"


def check_mask(impl: Implementation, kind: str, dtype: str) -> None:
    """A mask with holes anywhere (Keras' semantics: a masked step keeps the state; its output
    repeats the previous one or is zero, as the cell's ``mask_output()`` says), a masked first
    and last step included, through two bidirectional layers from h0."""
    cell = Recorder(impl.cell(dtype))
    impl.require(cell, "mask")
    spec = _stacked(kind)
    w = RNNWeights.random(spec, seed=13, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=13, h0=True)
    run_compare(impl, cell, w, x, h0, what="mask with holes", mask=random_mask(4, 7, seed=13))


def check_gradients(impl: Implementation, kind: str, dtype: str) -> None:
    """``vjp``: dx, dh0 (dc0) and every weight array, in the canonical layout, against the
    float64 hand-written backpropagation through time, for random cotangents of y and the final
    state; one layer from h0 (relu for the vanilla RNN, whose derivative is a step)."""
    cell = Recorder(impl.cell(dtype))
    impl.require(cell, "gradients")
    spec = _small(kind, nonlinearity="relu")
    w = RNNWeights.random(spec, seed=14, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=14, h0=True)
    row = run_compare(impl, cell, w, x, h0, what="gradients, one layer from h0", grad=True)
    assert row.grad_status == "pass"


def check_gradients_lengths(impl: Implementation, kind: str, dtype: str) -> None:
    """``vjp`` of a right-padded batch through two bidirectional layers from h0: no gradient
    flows from padded steps, and each row's reverse direction starts at its own last step."""
    cell = Recorder(impl.cell(dtype))
    impl.require(cell, "gradients")
    impl.require(cell, "lengths")
    spec = _stacked(kind, nonlinearity="relu")
    w = RNNWeights.random(spec, seed=14, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=14, h0=True)
    row = run_compare(
        impl, cell, w, x, h0, what="gradients, ragged lengths", grad=True, lengths=RAGGED_LENGTHS
    )
    assert row.grad_status == "pass"


def check_continuation(impl: Implementation, kind: str, dtype: str) -> None:
    """``forward(x1, h0)`` then ``forward(x2, h_n)`` equals ``forward(concat(x1, x2), h0)``:
    the final state is a state the cell takes back."""
    spec = _small(kind)
    w = RNNWeights.random(spec, seed=15, dtype="float64")
    x, h0 = inputs(spec, 4, 14, seed=15, h0=True)
    cell = Recorder(impl.cell(dtype))
    impl.load(cell, w.astype(dtype))
    y1, h1 = cell.forward(x[:, :7].astype(dtype), _cast(h0, dtype))
    y2, h2 = cell.forward(x[:, 7:].astype(dtype), h1)
    y = np.concatenate([np.asarray(y1, np.float64), np.asarray(y2, np.float64)], axis=1)
    what = "forward(x[:, :7], h0) then forward(x[:, 7:], h_n) against forward(x, h0), T=14"
    check_output(impl, cell, w, x, h0, y, h2, what)


def check_output(
    impl: Implementation,
    cell: Recorder,
    weights: RNNWeights,
    x: np.ndarray,
    h0: Any,
    y: np.ndarray,
    h_n: Any,
    what: str,
) -> None:
    """An output the check computed itself (not through ``compare``) against the reference of
    (x, h0), with the same tolerance, table and diagnosis."""
    spec = weights.spec
    dtype = str(cell.dtype)
    batch, time = x.shape[:2]
    ref_y, ref_h = reference_forward(weights, x, h0)
    tol = tolerance_for(weights, dtype, x, h0, reference=ref_y)
    ages = step_ages(time, spec.num_directions, spec.num_layers, spec.hidden_size)
    found = measure(y, h_n, ref_y, ref_h, tol, ages)
    if found.pop("passed"):
        return
    row = BackendComparison(backend=impl.name, dtype=dtype, status="fail", device=impl.device)
    for key, value in found.items():
        setattr(row, key, value)
    row.tolerance, row.checked_steps, row.reason = tol.describe(), time, "beyond tolerance"
    result = CompareResult(f"{spec.describe()}, batch {batch}", batch, time, [row], spec.to_dict())
    cell.output = (y, h_n)
    fail(impl, cell, result, weights, x, h0, what)


def check_reload(impl: Implementation, kind: str, dtype: str) -> None:
    """Loading other weights into a loaded cell replaces them (nothing of the first weights is
    kept or cached), and loading the first ones again gives their output again."""
    spec = _stacked(kind)
    first = RNNWeights.random(spec, seed=16, dtype="float64")
    second = RNNWeights.random(spec, seed=17, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=16, h0=True)
    cell = Recorder(impl.cell(dtype))
    run_compare(impl, cell, first, x, h0, what="the first weights")
    run_compare(impl, cell, second, x, h0, what="other weights loaded into the loaded cell")
    run_compare(impl, cell, first, x, h0, what="the first weights loaded again")


def check_strided_input(impl: Implementation, kind: str, dtype: str) -> None:
    """Non-contiguous input (every other row of a larger array, with h0 likewise; a
    Fortran-ordered copy) and a negative-strided one (time reversed by slicing): the same values
    give the output a contiguous array gives."""
    spec = _stacked(kind)
    w = RNNWeights.random(spec, seed=18, dtype="float64")
    big, big_h0 = inputs(spec, 8, 7, seed=18, h0=True)
    parts = tuple(p.astype(dtype) for p in _parts(big_h0))
    cell = Recorder(impl.cell(dtype))
    impl.load(cell, w.astype(dtype))

    def state(rows: Any) -> Any:
        taken = tuple(p[:, rows] for p in parts)
        return taken if spec.cell == "lstm" else taken[0]

    big = big.astype(dtype)
    views = [
        ("x and h0 = every other row of larger arrays", big[::2], state(slice(None, None, 2))),
        ("x in Fortran order", np.asfortranarray(big[:4]), state(slice(0, 4))),
        ("x reversed in time by a negative stride", big[4:, ::-1], state(slice(4, 8))),
    ]
    for what, x, h0 in views:
        assert not x.flags["C_CONTIGUOUS"]
        y, h_n = cell.forward(x, h0)
        check_output(impl, cell, w, np.asarray(x, np.float64), _cast(h0, "float64"), y, h_n, what)


def check_input_not_modified(impl: Implementation, kind: str, dtype: str) -> None:
    """``forward`` leaves its arguments (x, and h0 or (h0, c0)) as they were."""
    spec = _stacked(kind)
    w = RNNWeights.random(spec, seed=19, dtype="float64")
    x0, h00 = inputs(spec, 4, 7, seed=19, h0=True)
    cell = impl.cell(dtype)
    impl.load(cell, w.astype(dtype))
    x, h0 = x0.astype(dtype), _cast(h00, dtype)
    args: dict[str, np.ndarray] = {"x": x, **dict(zip(("h0", "c0"), _parts(h0)))}
    kept = {name: arr.copy() for name, arr in args.items()}
    cell.forward(x, h0)
    for name, arr in args.items():
        if not np.array_equal(arr, kept[name], equal_nan=True):
            changed = np.argwhere(arr != kept[name])
            first = tuple(int(i) for i in changed[0])
            pytest.fail(
                f"{impl} ({dtype}): forward(x, h0) modified its input {name} in place: "
                f"{len(changed)} element(s) changed, the first {name}{list(first)} from "
                f"{kept[name][first]:.9g} to {arr[first]:.9g}; a cell must copy what it "
                "writes into",
                pytrace=False,
            )


def check_bad_input(impl: Implementation, kind: str, dtype: str) -> None:
    """Bad input gets an error, never an answer: x with 2 axes, x with the wrong feature count,
    h0 of the wrong shape, an LSTM's h0 without c0, NaN in x and in h0."""
    spec = _stacked(kind)
    w = RNNWeights.random(spec, seed=20, dtype="float64")
    x, h0 = inputs(spec, 4, 7, seed=20, h0=True)
    x, h0 = x.astype(dtype), _cast(h0, dtype)
    cell = impl.cell(dtype)
    impl.load(cell, w.astype(dtype))
    parts = _parts(h0)

    def state(first: np.ndarray) -> Any:
        return (first, parts[1]) if spec.cell == "lstm" else first

    nan_x = x.copy()
    nan_x[1, 3, 2] = np.nan
    nan_h = parts[0].copy()
    nan_h[0, 2, 1] = np.nan
    cases: list[tuple[str, Any, Any]] = [
        ("x with 2 axes (time, features), no batch axis", x[0], None),
        (
            f"x with {spec.input_size + 1} features, the spec has {spec.input_size}",
            np.concatenate([x, x[:, :, :1]], axis=2),
            None,
        ),
        ("h0 with a batch of 3 for an input batch of 4", x, state(parts[0][:, :3])),
        ("NaN in x (at [1, 3, 2])", nan_x, None),
        ("NaN in h0 (at [0, 2, 1])", x, state(nan_h)),
    ]
    if spec.cell == "lstm":
        cases.append(("an LSTM's h0 without c0", x, parts[0]))
    answered = []
    for what, bad_x, bad_h0 in cases:
        try:
            cell.forward(bad_x, bad_h0)
        except Exception:
            continue
        answered.append(what)
    if answered:
        pytest.fail(
            f"{impl} ({dtype}): forward() returned an answer for bad input instead of raising: "
            + "; ".join(answered)
            + ". Check the input (rnnbench.cell.check_inputs does) and raise, e.g. "
            "rnnbench.ShapeError or rnnbench.NonFiniteError",
            pytrace=False,
        )


def check_property(impl: Implementation, kind: str, dtype: str) -> None:
    """A property test (hypothesis, 6 derandomized examples): any cell the implementation
    supports, input and hidden sizes, 1 to 3 layers, either direction, tanh or relu, with or
    without bias, batch, T, h0, and padding (lengths or a mask) where supported; every
    combination agrees with the reference."""
    try:
        from hypothesis import HealthCheck, given, reject, settings
        from hypothesis import strategies as st
        from hypothesis.errors import Unsatisfiable
    except ImportError:
        pytest.skip("hypothesis is not installed (pip install hypothesis)")
    cell = Recorder(impl.cell(dtype))
    paddings = ["none"] + [p for p in ("lengths", "mask") if _supports(cell, p)]
    refused: dict[str, str] = {}  # cell kind -> why the implementation refuses it

    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        kind=st.sampled_from(list(KINDS)),
        input_size=st.integers(1, 6),
        hidden_size=st.integers(1, 9),
        num_layers=st.integers(1, 3),
        bidirectional=st.booleans(),
        nonlinearity=st.sampled_from(["tanh", "relu"]),
        bias=st.booleans(),
        batch=st.integers(1, 3),
        time=st.integers(1, 12),
        with_h0=st.booleans(),
        padded=st.sampled_from(paddings),
    )
    def agrees(
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        nonlinearity: str,
        bias: bool,
        batch: int,
        time: int,
        with_h0: bool,
        padded: str,
    ) -> None:
        if kind in refused:
            reject()
        spec = make_spec(
            kind,
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            nonlinearity=nonlinearity,
            bias=bias,
        )
        w = RNNWeights.random(spec, seed=input_size * 100 + hidden_size)
        x, h0 = inputs(spec, batch, time, h0=with_h0)
        padding: dict[str, Any] = {}
        if padded == "lengths":
            padding["lengths"] = random_lengths(batch, time, 1, time, seed=batch * 13 + time)
        elif padded == "mask":
            padding["mask"] = random_mask(batch, time, seed=batch * 13 + time)
        try:
            run_compare(
                impl,
                cell,
                w,
                x,
                h0,
                what=f"hypothesis example {spec.describe()}, "
                f"batch {batch}, T={time}, h0 {with_h0}, padding {padded}",
                **padding,
            )
        except pytest.skip.Exception as exc:
            # A spec the implementation refuses (a cell kind, bidirectional, ...): when the
            # plainest spec of its kind is refused too, the kind's later draws are dropped at
            # once, and when every kind is, the check is skipped with their reasons.
            plain = RNNWeights.random(make_spec(kind, 1, 1), dtype=dtype)
            try:
                impl.load(cell, plain)
            except pytest.skip.Exception:
                refused[kind] = str(exc)
                if len(refused) == len(KINDS):
                    impl.unsupported("spec", "; ".join(refused.values()))
            reject()

    try:
        agrees()
    except Unsatisfiable:
        impl.unsupported("spec", "the implementation refused every example drawn")


def _supports(cell: Any, feature: str) -> bool:
    from rnnbench.testing.implementation import supports

    return supports(cell, feature)


# --- the list -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check and the (cell kind, dtype) pairs it runs for."""

    name: str
    function: Callable[[Implementation, str, str], None]
    matrix: tuple[tuple[str, str], ...]

    @property
    def doc(self) -> str:
        return (self.function.__doc__ or "").strip()


@dataclass(frozen=True)
class CheckCase:
    """One check for one cell kind and dtype: a test case. Calling it with an implementation
    (or a bare factory) runs it; its ``id`` is ``check_name[kind-dtype]``."""

    check: Check
    kind: str
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.check.name}[{self.kind}-{self.dtype}]"

    def __str__(self) -> str:
        return self.id

    def __call__(self, implementation: Implementation | Callable[..., Any]) -> None:
        impl = (
            implementation
            if isinstance(implementation, Implementation)
            else Implementation(implementation)
        )
        self.check.function(impl, self.kind, self.dtype)


def _every(*dtypes: str, kinds: Iterable[str] = KINDS) -> tuple[tuple[str, str], ...]:
    return tuple((k, d) for k in kinds for d in dtypes)


CHECKS: tuple[Check, ...] = (
    Check("check_shapes", check_shapes, _every("float32")),
    Check("check_float64_precision", check_float64_precision, _every("float64")),
    Check("check_initial_state", check_initial_state, _every("float32")),
    Check("check_bias", check_bias, _every("float32")),
    Check("check_reverse_final_state", check_reverse_final_state, _every("float32")),
    Check("check_square_weights", check_square_weights, _every("float32")),
    Check(
        "check_long_sequence",
        check_long_sequence,
        (*_every("float32"), ("rnn", "float64")),
    ),
    Check("check_weight_regimes", check_weight_regimes, _every("float32")),
    Check("check_property", check_property, (("any", "float32"),)),
    Check("check_continuation", check_continuation, _every("float32")),
    Check("check_reload", check_reload, _every("float32")),
    Check("check_strided_input", check_strided_input, _every("float32")),
    Check("check_input_not_modified", check_input_not_modified, _every("float32")),
    Check("check_bad_input", check_bad_input, _every("float32")),
    Check("check_lengths", check_lengths, _every("float32")),
    Check("check_mask", check_mask, _every("float32")),
    Check("check_gradients", check_gradients, _every("float32")),
    Check("check_gradients_lengths", check_gradients_lengths, _every("float32")),
)


def check_cases(select: Iterable[str] | None = None) -> list[CheckCase]:
    """Every check for every (kind, dtype) of its matrix, in ``CHECKS`` order; ``select``
    keeps the checks of those names."""
    names = None if select is None else set(select)
    known = {c.name for c in CHECKS}
    if names is not None and names - known:
        from rnnbench.errors import SpecError

        raise SpecError(
            f"unknown check(s) {sorted(names - known)}", f"use some of {', '.join(sorted(known))}"
        )
    return [
        CheckCase(c, kind, dtype)
        for c in CHECKS
        if names is None or c.name in names
        for kind, dtype in c.matrix
    ]
