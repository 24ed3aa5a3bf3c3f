"""The JAX backend: every cell against the float64 reference, the hoisted input projection, one
trace per shape, unroll variants, scoped x64, ahead-of-time compile, ragged lengths and masks with
holes, and its errors. GPU parts skip on machines without one."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from reference_cases import (
    CELL_CASES,
    case,
    cast_state,
    check_against_reference,
    check_grad_arrays,
    check_lstm_state_pair,
    grad_cotangents,
    make_case,
    state_parts,
)

import rnnbench as rb
from rnnbench.compare import measure
from rnnbench.padding import random_mask
from rnnbench.tolerances import SEED_ATOL, step_ages, tolerance_for

jax = pytest.importorskip("jax", reason="jax not installed: pip install 'rnnbench[jax]'")


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


HAS_GPU = _has_gpu()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no GPU visible to jax here")


ALL_CASES = [name for names in CELL_CASES.values() for name in names]
# The stacked bidirectional case of each cell, with an initial state (h0, or (h0, c0)).
DEEP = {
    "rnn": "relu-2layer-bidir-h0",
    "lstm": "lstm-2layer-bidir-h0c0",
    "gru": "gru-2layer-bidir-h0",
    "gru(reset-before)": "gru-before-2layer-bidir-h0",
}

# Padded batches: unsorted lengths with a one-step row and a full-length row, and a mask with
# holes, a masked first and last step, and a row with no real step at all.
PAD_BATCH, PAD_STEPS = 4, 7
LENGTHS = np.array([6, 1, 7, 3])
MASK = random_mask(PAD_BATCH, PAD_STEPS, seed=3)
MASK[2] = False
PADDED_CELLS: dict[str, dict[str, Any]] = {
    "rnn_tanh": {},
    "rnn_relu": {"nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "gru(reset-before)": {"cell": "gru", "reset_after": False},
}
# (layers, bidirectional, with h0): one layer one way from h0; two bidirectional layers from zeros.
PADDED_SHAPES = {"1layer-h0": (1, False, True), "2layer-bidir": (2, True, False)}


# float64 only: the equivalence suite checks float32 (rnnbench.testing's checks).
@pytest.mark.parametrize("dtype", ["float64"])
@pytest.mark.parametrize("name", ALL_CASES)
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    check_against_reference(cells.get("jax", dtype), name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_takes_h0_and_c0(cells: Any, dtype: str) -> None:
    check_lstm_state_pair(cells.get("jax", dtype), dtype)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_formula_follows_the_spec(cells: Any, reset_after: bool) -> None:
    """The same arrays under the other GRU formula are out of tolerance: the cell computes the
    formula its spec names, and the reference check can tell the two apart."""
    cell = cells.get("jax", "float32")
    weights, x, h0 = case("gru-before-2layer-bidir-h0")
    spec = rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru", reset_after=reset_after)
    weights = rb.RNNWeights(spec, weights.layers)
    other = rb.RNNWeights(
        rb.RNNSpec(4, 6, num_layers=2, bidirectional=True, cell="gru", reset_after=not reset_after),
        weights.layers,
    )
    cell.load(weights.astype("float32"))
    y, h_n = cell.forward(x.astype(np.float32), h0.astype(np.float32))
    tol = tolerance_for(weights, "float32", x, h0)
    ages = step_ages(x.shape[1], 2, 2, 6)
    assert measure(y, h_n, *rb.reference_forward(weights, x, h0), tol, ages)["passed"]
    wrong = measure(y, h_n, *rb.reference_forward(other, x, h0), tol, ages)
    assert not wrong["passed"] and wrong["max_abs"] > 1e-2


def _dots(jaxpr: Any) -> tuple[int, list[int]]:
    """(matrix products outside any scan, matrix products inside each scan body)."""
    outside, bodies = 0, []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            outside += 1
        elif eqn.primitive.name == "scan":
            body = eqn.params["jaxpr"].jaxpr
            bodies.append(sum(e.primitive.name == "dot_general" for e in body.eqns))
    return outside, bodies


def _scan_bodies(jaxpr: Any) -> list[list[str]]:
    """The primitives of each scan body, in order."""
    return [
        [e.primitive.name for e in eqn.params["jaxpr"].jaxpr.eqns]
        for eqn in jaxpr.eqns
        if eqn.primitive.name == "scan"
    ]


@pytest.mark.parametrize("cell_label", list(DEEP))
def test_input_projection_is_hoisted(cell_label: str) -> None:
    """One input GEMM per layer and direction outside the scans; inside each scan body only the
    recurrent products: one (h @ w_hh), or two for the reset-before GRU (h @ w_hh_rz, then
    (r * h) @ w_hh_n, which waits on the reset gate). The same holds for a padded batch, whose
    scans mask every step; a full batch's scan body is the step function alone, no mask in it."""
    from rnnbench.backends.jax_backend import _rnn_forward, _step_function, direction_params

    weights, x, h0 = case(DEEP[cell_label])
    spec = weights.spec
    params = tuple(tuple(direction_params(spec, dw) for dw in row) for row in weights.layers)
    states = tuple(np.asarray(s, np.float32) for s in state_parts(h0))
    x32 = x.astype(np.float32)
    runs = spec.num_layers * spec.num_directions
    batch, steps = x.shape[:2]
    pads = {
        "none": None,
        "lengths": np.full(batch, 3, np.int32),
        "mask": np.ones((steps, batch), bool),  # time-major, as prepare puts it
    }
    bodies_of = {}
    for kind, pad in pads.items():
        forward = functools.partial(_rnn_forward, spec=spec, unroll=1, padding=kind)
        jaxpr = jax.make_jaxpr(forward)(params, x32, states, pad)
        outside, bodies = _dots(jaxpr.jaxpr)
        assert outside == runs
        assert bodies == [2 if cell_label == "gru(reset-before)" else 1] * runs
        bodies_of[kind] = _scan_bodies(jaxpr.jaxpr)
    step = _step_function(spec, params[0][0][2:])
    carry = tuple(s[0] for s in states)
    alone = jax.make_jaxpr(step)(carry, np.zeros((x.shape[0], params[0][0][1].size), np.float32))
    step_ops = [e.primitive.name for e in alone.jaxpr.eqns]
    assert bodies_of["none"][0] == step_ops
    for kind in ("lengths", "mask"):
        assert len(bodies_of[kind][0]) > len(step_ops)  # the masking is in the padded scans


def test_seed_notebook(cells: Any, seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:
    cell = cells.get("jax", "float32")
    cell.load(seed_weights)
    y, h_n = cell.forward(np.array(seed_notebook["input"], np.float32))
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)


def test_traces_once_per_shape() -> None:
    cell = rb.get_backend("jax")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=0))
    x = np.random.default_rng(0).standard_normal((2, 7, 2)).astype(np.float32)
    first = cell.forward(x)
    for _ in range(3):
        again = cell.forward(x)
    assert cell.info()["traces"] == 1
    np.testing.assert_array_equal(first[0], again[0])
    cell.forward(x[:, :5])  # a new length is a new shape: one more trace
    assert cell.info()["traces"] == 2
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=1))
    cell.forward(x)  # new weights of the same spec are arguments, not constants: no retrace
    assert cell.info()["traces"] == 2
    # Each padding kind is a function of its own, traced once per shape: lengths and masks of
    # new values reuse the trace, and the full-length function is untouched by them.
    ragged = cell.forward(x, lengths=np.array([7, 2]))[0]
    assert not np.array_equal(ragged, cell.forward(x, lengths=np.array([1, 6]))[0])
    assert cell.info()["traces"] == 3
    mask = random_mask(2, 7, seed=0)
    cell.forward(x, mask=mask)
    cell.forward(x, mask=~mask | np.eye(2, 7, dtype=bool))
    cell.forward(x)
    assert cell.info()["traces"] == 4
    prepared = cell.prepare(x, lengths=np.array([7, 2]))
    assert prepared[2][0] == "lengths" and prepared[2][1].shape == (2,)  # B ints, not a mask


def test_lstm_traces_once_per_shape() -> None:
    """The (h, c) carry is one pytree: passing c0 or not is the same shape, so no retrace. A
    spec loaded again reuses its function, for as long as the cell keeps it."""
    from rnnbench.backends.jax_backend import SPECS_KEPT

    cell = rb.get_backend("jax")
    spec = rb.RNNSpec(2, 3, bidirectional=True, cell="lstm")
    cell.load(rb.RNNWeights.random(spec, seed=0))
    x = np.random.default_rng(0).standard_normal((2, 7, 2)).astype(np.float32)
    cell.forward(x)
    state = (np.full((2, 2, 3), 0.1, np.float32), np.full((2, 2, 3), 0.2, np.float32))
    cell.forward(x, state)
    assert cell.info()["traces"] == 1
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True, cell="gru"), seed=0))
    cell.forward(x)  # a new spec is a new function
    assert cell.info()["traces"] == 2
    cell.load(rb.RNNWeights.random(spec, seed=1))
    cell.forward(x)  # a spec loaded again keeps what was compiled for it
    assert cell.info()["traces"] == 2
    for hidden in range(4, 4 + SPECS_KEPT):  # the functions of a few recent specs are kept
        cell.load(rb.RNNWeights.random(rb.RNNSpec(2, hidden), seed=0))
    assert len(cell._functions) == SPECS_KEPT and spec not in cell._functions


# Unrolling is scan's own loop transformation, the same for every cell (and slow to compile: the
# body is copied unroll times), so the cheapest cell checks the variants, on lengths that are no
# multiple of the unroll factor: unroll 4 on a masked bidirectional layer (T=7: a remainder of 3,
# the padded scans both ways); unroll 16 on a full batch one way (T=20: a remainder of 4).
UNROLL_CASES = [
    ("scan-unroll4", rb.RNNSpec(3, 5, bidirectional=True), PAD_BATCH, PAD_STEPS, True, "mask"),
    ("scan-unroll16", rb.RNNSpec(3, 5), 3, 20, False, None),
]


@pytest.mark.parametrize(
    ("variant", "spec", "batch", "steps", "with_h0", "padding"),
    UNROLL_CASES,
    ids=[f"{c[0]}-{c[1].num_directions}dir-{c[5] or 'full'}" for c in UNROLL_CASES],
)
def test_unroll_variants(
    cells: Any,
    variant: str,
    spec: rb.RNNSpec,
    batch: int,
    steps: int,
    with_h0: bool,
    padding: str | None,
) -> None:
    """Unrolling changes the loop, not the arithmetic: within tolerance of the float64
    reference, the remainder steps included."""
    weights, x, state = make_case(spec, batch, steps, with_h0)
    cell = cells.get("jax", "float32", variant=variant)
    assert steps % cell.unroll != 0
    pad = {} if padding is None else {"mask": MASK}
    result = rb.compare(weights, x, state, ["jax"], cells={("jax", "float32"): cell}, **pad)
    assert [r.status for r in result.rows] == ["pass"], result.table()
    assert cell.info()["path"] == f"xla-jit lax.scan unroll={variant[11:]} (cpu)"


@pytest.mark.parametrize("cell_label", list(DEEP))
def test_float64_is_scoped_and_really_float64(cells: Any, cell_label: str) -> None:
    before = jax.config.jax_enable_x64
    cell = cells.get("jax", "float64")
    weights, x, h0 = case(DEEP[cell_label])
    cell.load(weights)
    result = cell.run(cell.prepare(x, h0))
    cell.synchronize(result)
    # The device arrays themselves, not a cast on fetch.
    assert result[0].dtype == np.float64 and all(s.dtype == np.float64 for s in result[1])
    y, h_n = cell.fetch(result)
    ref_y, ref_h = rb.reference_forward(weights, x, h0)
    # Far below what float32 arithmetic could reach (its unit roundoff is 6e-8).
    assert np.abs(y - ref_y).max() < 1e-12
    for got, ref in zip(state_parts(h_n), state_parts(ref_h)):
        assert np.abs(got - ref).max() < 1e-12
    assert jax.config.jax_enable_x64 == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)
    assert cell.info()["x64"].startswith("scoped")


@pytest.mark.parametrize("padding", ["none", "lengths"])
def test_compile_ahead_of_time(padding: str) -> None:
    """compile() compiles the function of the batch's padding (a padded one too), reports the
    seconds, and leaves run warm: no trace after it, and the result within tolerance."""
    cell = rb.get_backend("jax")
    weights, x, h0 = make_case(rb.RNNSpec(3, 5), PAD_BATCH, PAD_STEPS, True)
    pad: dict[str, Any] = {"none": {}, "lengths": {"lengths": LENGTHS}, "mask": {"mask": MASK}}[
        padding
    ]
    cell.load(weights.astype("float32"))
    prepared = cell.prepare(x.astype(np.float32), cast_state(h0, np.float32), **pad)
    seconds = cell.compile(prepared)
    assert seconds > 0 and cell.info()["compile_s"] == seconds
    assert cell.info()["traces"] == 2  # the ahead-of-time trace, then the jitted function's
    y, h_n = cell.fetch(cell.run(prepared))
    assert cell.info()["traces"] == 2  # run is warm: no new trace after compile()
    ref_y, ref_h = rb.reference_forward(weights, x, h0, **pad)
    last = tolerance_for(weights, "float32", x, h0).atol[-1]
    np.testing.assert_allclose(y, ref_y, atol=last, rtol=0)
    for got, want in zip(state_parts(h_n), state_parts(ref_h), strict=True):
        np.testing.assert_allclose(got, want, atol=last, rtol=0)


def padded_case(cell_label: str, shape: str) -> tuple[rb.RNNWeights, np.ndarray, Any]:
    layers, bidirectional, with_h0 = PADDED_SHAPES[shape]
    spec = rb.RNNSpec(
        3, 5, num_layers=layers, bidirectional=bidirectional, **PADDED_CELLS[cell_label]
    )
    return make_case(spec, PAD_BATCH, PAD_STEPS, with_h0)


def _padded_run(
    cells: Any, cell_label: str, shape: str, dtype: str, pad: dict[str, np.ndarray]
) -> tuple[rb.RNNSpec, Any, np.ndarray, tuple[np.ndarray, ...]]:
    """The padded case through compare (asserting a pass against the float64 reference), then
    through forward: (spec, the public h0 cast, y, the final state parts)."""
    weights, x, h0 = padded_case(cell_label, shape)
    cell = cells.get("jax", dtype)
    result = rb.compare(
        weights, x, h0, ["jax"], dtypes=[dtype], cells={("jax", dtype): cell}, **pad
    )
    assert [r.status for r in result.rows] == ["pass"], result.table()
    assert result.rows[0].masked_output == ("zero" if "lengths" in pad else "repeat")
    hd = cast_state(h0, dtype)
    y, h_n = cell.forward(x.astype(dtype), hd, **pad)
    assert y.dtype == dtype
    return weights.spec, hd, y, state_parts(h_n)


# float32 is the equivalence suite's; here the float64 path through the masked scan.
@pytest.mark.parametrize("dtype", ["float64"])
@pytest.mark.parametrize("shape", list(PADDED_SHAPES))
@pytest.mark.parametrize("cell_label", list(PADDED_CELLS))
def test_ragged_lengths(cells: Any, cell_label: str, shape: str, dtype: str) -> None:
    """Lengths give the canonical padded result: within tolerance of the float64 reference,
    exact zeros past each length, and per row the top layer's final state is its output at its
    own last real step going forward and at step 0 going back (the reverse scan starts at the
    row's last real step, not at the padding)."""
    spec, _, y, h_n = _padded_run(cells, cell_label, shape, dtype, {"lengths": LENGTHS})
    hidden, top = spec.hidden_size, (spec.num_layers - 1) * spec.num_directions
    for b, length in enumerate(LENGTHS):
        assert not y[b, length:].any(), f"row {b}: nonzero output past its length {length}"
        np.testing.assert_array_equal(h_n[0][top, b], y[b, length - 1, :hidden])
        if spec.bidirectional:
            np.testing.assert_array_equal(h_n[0][top + 1, b], y[b, 0, hidden:])


# float32 is the equivalence suite's; here the float64 path through the masked scan.
@pytest.mark.parametrize("dtype", ["float64"])
@pytest.mark.parametrize("shape", list(PADDED_SHAPES))
@pytest.mark.parametrize("cell_label", list(PADDED_CELLS))
def test_mask_with_holes(cells: Any, cell_label: str, shape: str, dtype: str) -> None:
    """A mask with holes gives Keras' result: within tolerance of the float64 reference; a masked
    step repeats the previous output of its direction exactly (zeros before the first real
    one, in processing order); a row with no real step keeps its initial state."""
    spec, hd, y, h_n = _padded_run(cells, cell_label, shape, dtype, {"mask": MASK})
    hidden = spec.hidden_size
    for b, t in zip(*np.nonzero(~MASK), strict=True):
        before = y[b, t - 1, :hidden] if t > 0 else 0.0
        np.testing.assert_array_equal(y[b, t, :hidden], before)
        if spec.bidirectional:
            after = y[b, t + 1, hidden:] if t < PAD_STEPS - 1 else 0.0
            np.testing.assert_array_equal(y[b, t, hidden:], after)
    h0 = state_parts(hd) if hd is not None else tuple(np.zeros_like(s) for s in h_n)
    for got, start in zip(h_n, h0, strict=True):
        np.testing.assert_array_equal(got[:, 2], start[:, 2])


# --- gradients (vjp) -----------------------------------------------------------------------


def cotangents(spec: rb.RNNSpec) -> tuple[np.ndarray, Any]:
    """Seeded float64 cotangents of a padded case: dy and dh_n (a pair for an LSTM)."""
    return grad_cotangents(spec, PAD_BATCH, PAD_STEPS)


def check_vjp(
    cell: Any, weights: rb.RNNWeights, x: np.ndarray, h0: Any, **pad: np.ndarray
) -> rb.gradients.Grads:
    """The cell's vjp in its dtype against the float64 reference, on every array of arrays()."""
    dtype = str(cell.dtype)
    dy, dh_n = cotangents(weights.spec)
    cell.load(weights.astype(dtype))
    got = cell.vjp(
        x.astype(dtype), cast_state(h0, dtype), dy.astype(dtype), cast_state(dh_n, dtype), **pad
    )
    want = rb.gradients.reference_vjp(weights, x, h0, dy, dh_n, **pad).arrays()
    arrays = got.arrays()
    check_grad_arrays(arrays, want, dtype)
    return got


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell_label", list(PADDED_CELLS))
def test_direction_grads_is_the_adjoint_of_direction_params(cell_label: str, bias: bool) -> None:
    """direction_params is linear in the canonical arrays, so the map of gradients back is its
    adjoint: <direction_params(w), g> == <w, direction_grads(g)> for every w and g. On random
    arrays a block put in the wrong place (r and z swapped, b_hh_n read from the hoisted bias,
    w_hh's column halves exchanged, one of two biases left without its gradient) breaks the
    equality. A spec without biases has zero bias gradients."""
    from rnnbench.backends.jax_backend import direction_grads, direction_params

    spec = rb.RNNSpec(3, 4, bias=bias, **PADDED_CELLS[cell_label])
    rng = np.random.default_rng(0)
    shapes = [a.shape for a in rb.RNNWeights.random(spec, seed=0)[0, 0].arrays()]
    w = rb.weights.DirectionWeights(*(rng.standard_normal(s) for s in shapes))
    if not bias:
        w = rb.weights.DirectionWeights(w.w_ih, w.w_hh, 0 * w.b_ih, 0 * w.b_hh)
    params = direction_params(spec, w)
    g = tuple(rng.standard_normal(p.shape) for p in params)
    back = direction_grads(spec, g)
    assert [a.shape for a in back.arrays()] == shapes
    lhs = sum(float(np.sum(p * d)) for p, d in zip(params, g, strict=True))
    rhs = sum(float(np.sum(a * d)) for a, d in zip(w.arrays(), back.arrays(), strict=True))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    if not bias:
        assert not back.b_ih.any() and not back.b_hh.any()


# Each case compiles a backward scan (1-4 s on a small CPU), so every cell runs once, one layer
# from an initial state in float64; two bidirectional layers from zeros run padded (below), in
# float32 and float64. test_equivalence.py::test_gradients adds every cell unpadded and by
# lengths through compare.
VJP_CASES = [(label, "1layer-h0", "float64") for label in PADDED_CELLS]


@pytest.mark.parametrize(("cell_label", "shape", "dtype"), VJP_CASES)
def test_vjp_matches_the_reference(cells: Any, cell_label: str, shape: str, dtype: str) -> None:
    """jax.vjp of the scan gives the reference's dx, dh0 (dc0; also from a zero h0 that was not
    passed) and every canonical weight gradient, mapped back by direction_grads. A second vjp of
    the same shapes reuses the trace, also with h0 and the cotangents None (zeros of the same
    shapes, so every gradient is zero), and runs no forward trace."""
    cell = cells.get("jax", dtype)
    weights, x, h0 = padded_case(cell_label, shape)
    forward_traces = cell.info()["traces"]
    check_vjp(cell, weights, x, h0)
    traced = cell.info()["vjp_traces"]
    zero = cell.vjp(2 * x.astype(dtype))
    assert not any(arr.any() for arr in zero.arrays().values())
    assert cell.info()["vjp_traces"] == traced and cell.info()["traces"] == forward_traces


@pytest.mark.parametrize(
    ("cell_label", "dtype", "padding"),
    [("lstm", "float32", "mask"), ("gru", "float64", "mask"), ("gru", "float32", "lengths")],
)
def test_vjp_padded(cells: Any, cell_label: str, dtype: str, padding: str) -> None:
    """Two bidirectional layers through the padded scan: the reference's gradients, a masked
    step's output being the repeat of the previous one (its dy reaches that step) or zeros past
    a length. The input of a masked step enters nothing (its dx is zero), and a row with no real
    step carries its state through, so its dh0 is exactly its dh_n."""
    weights, x, h0 = padded_case(cell_label, "2layer-bidir")
    cell = cells.get("jax", dtype)
    pad = {"mask": MASK} if padding == "mask" else {"lengths": LENGTHS}
    got = check_vjp(cell, weights, x, h0, **pad)
    real = MASK if padding == "mask" else np.arange(PAD_STEPS) < LENGTHS[:, None]
    assert not got.dx[~real].any() and got.dx[real].all()
    if padding == "mask":
        _, dh_n = cotangents(weights.spec)
        for d0, dn in zip(state_parts(got.dh0), state_parts(dh_n), strict=True):
            np.testing.assert_array_equal(d0[:, 2], dn[:, 2].astype(dtype))


def _all_dots(jaxpr: Any) -> list[Any]:
    """Every matrix product of ``jaxpr``, those of scan bodies and other inner jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                found.extend(_all_dots(inner))
    return found


def test_vjp_runs_at_highest_precision() -> None:
    """Every matrix product of the vjp runs at HIGHEST (no TF32 on a GPU), the transposed ones
    of the backward pass included."""
    from rnnbench.backends.jax_backend import _rnn_vjp, direction_params

    weights, x, h0 = padded_case("rnn_tanh", "1layer-h0")
    spec = weights.spec
    weights = weights.astype("float32")
    params = tuple(tuple(direction_params(spec, dw) for dw in row) for row in weights.layers)
    dy, dh_n = (a.astype(np.float32) for a in cotangents(spec))
    args = (params, x.astype(np.float32), (h0.astype(np.float32),), None, dy, (dh_n,))
    vjp = functools.partial(_rnn_vjp, spec=spec, unroll=1)
    dots = _all_dots(jax.make_jaxpr(vjp)(*args).jaxpr)
    # x @ w_ih, x^T dP and dP @ w_ih^T outside the scans; h @ w_hh and its two transposes in them.
    assert len(dots) == 6
    highest = jax.lax.Precision.HIGHEST
    for eqn in dots:
        assert eqn.params["precision"] in ((highest, highest), highest), eqn
    assert rb.get_backend("jax").info()["backward_path"] == (
        "jax.vjp of the same lax.scan (xla-jit, cpu)"
    )


def test_info() -> None:
    cell = rb.get_backend("jax", variant="scan-unroll4")
    info = cell.info()
    assert info["precision"] == "HIGHEST" and info["variant"] == "scan-unroll4"
    assert info["path"] == "xla-jit lax.scan unroll=4 (cpu)"
    assert info["version"] == jax.__version__
    assert info["padding"] == ["lengths", "mask"]
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    assert cell.info()["mask_output"] == "repeat"


def test_bad_input(cells: Any) -> None:
    cell = cells.get("jax", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    with pytest.raises(rb.ShapeError, match="h0"):
        cell.forward(np.zeros((1, 4, 2), np.float32), np.zeros((2, 1, 3), np.float32))
    x = np.zeros((2, 4, 2), np.float32)
    with pytest.raises(rb.ShapeError, match=r"lengths\[1\] is 5") as info:
        cell.forward(x, lengths=np.array([4, 5]))
    assert "Hint:" in str(info.value)
    with pytest.raises(rb.DTypeError, match="mask has dtype"):
        cell.prepare(x, mask=np.ones((2, 4)))
    with pytest.raises(rb.ShapeError, match="both lengths and mask"):
        cell.forward(x, lengths=np.array([4, 4]), mask=np.ones((2, 4), bool))
    with pytest.raises(rb.SpecError, match="variant"):
        rb.get_backend("jax", variant="scan-unroll3")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present, so device='cuda' is available")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(rb.BackendUnavailableError, match="no gpu platform") as info:
        rb.get_backend("jax", device="cuda")
    assert "Hint:" in str(info.value)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL_CASES)
def test_gpu_matches_reference(cells: Any, name: str, dtype: str) -> None:
    cell = cells.get("jax", dtype, device="cuda")
    check_against_reference(cell, name)
    assert cell.info()["path"].endswith("(gpu)")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("padding", ["lengths", "mask"])
@pytest.mark.parametrize("cell_label", list(PADDED_CELLS))
def test_gpu_padded(cells: Any, cell_label: str, padding: str, dtype: str) -> None:
    weights, x, h0 = padded_case(cell_label, "2layer-bidir")
    cell = cells.get("jax", dtype, device="cuda")
    pad = {"lengths": LENGTHS} if padding == "lengths" else {"mask": MASK}
    result = rb.compare(
        weights, x, h0, ["jax"], dtypes=[dtype], device="cuda", cells={("jax", dtype): cell}, **pad
    )
    assert [r.status for r in result.rows] == ["pass"], result.table()
    assert cell.info()["path"].endswith("(gpu)")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("padding", [None, "mask"])
def test_gpu_vjp(cells: Any, padding: str | None, dtype: str) -> None:
    """On the GPU the vjp gives the reference's gradients too (HIGHEST: no TF32 in float32)."""
    weights, x, h0 = padded_case("lstm", "2layer-bidir")
    cell = cells.get("jax", dtype, device="cuda")
    check_vjp(cell, weights, x, h0, **({} if padding is None else {"mask": MASK}))
    assert cell.info()["backward_path"] == "jax.vjp of the same lax.scan (xla-jit, gpu)"
