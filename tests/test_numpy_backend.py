"""The NumPy backend: the seed, the formula by hand, directions, layers, h0, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import rnnbench as rb
from rnnbench.tolerances import SEED_ATOL


def test_seed_output_from_the_seed_kernel(seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:
    cell = rb.get_backend("numpy")
    cell.load(seed_weights)
    y, h_n = cell.forward(np.array(seed_notebook["input"], np.float32))
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)


def test_seed_as_tf1_computes_it(seed_notebook: dict) -> None:
    """h = tanh([x, h0] @ kernel + bias), written out from the seed's own description."""
    kernel = np.array(seed_notebook["kernel"], np.float64)
    x = np.array(seed_notebook["input"], np.float64)[0, 0]
    h = np.tanh(np.concatenate([x, np.zeros(4)]) @ kernel + np.array(seed_notebook["bias"]))
    np.testing.assert_allclose(h, seed_notebook["output"][0][0], atol=SEED_ATOL)


def _naive(w: rb.RNNWeights, x: np.ndarray, h0: np.ndarray | None) -> tuple:
    """An independent, deliberately plain implementation (loops over batch and time)."""
    spec = w.spec
    act = np.tanh if spec.nonlinearity == "tanh" else (lambda a: np.maximum(a, 0))
    B, T, _ = x.shape
    H = spec.hidden_size
    inp = x
    finals = []
    for k in range(spec.num_layers):
        outs = []
        for d in range(spec.num_directions):
            dw = w[k, d]
            idx = k * spec.num_directions + d
            out = np.zeros((B, T, H))
            for b in range(B):
                h = np.zeros(H) if h0 is None else h0[idx, b].copy()
                order = range(T) if d == 0 else reversed(range(T))
                for t in order:
                    h = act(dw.w_ih.T @ inp[b, t] + dw.b_ih + dw.w_hh.T @ h + dw.b_hh)
                    out[b, t] = h
                if b == 0:
                    finals.append(np.zeros((B, H)))
                finals[-1][b] = h
            outs.append(out)
        inp = np.concatenate(outs, axis=-1)
    return inp, np.stack(finals)


@pytest.mark.parametrize(
    "spec",
    [
        rb.RNNSpec(3, 4),
        rb.RNNSpec(3, 4, num_layers=3, bidirectional=True, nonlinearity="relu"),
        rb.RNNSpec(1, 1, bidirectional=True, bias=False),
    ],
    ids=lambda s: s.describe(),
)
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_a_naive_loop(spec: rb.RNNSpec, with_h0: bool) -> None:
    w = rb.RNNWeights.random(spec, seed=11, dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, spec.input_size))
    h0 = rng.standard_normal((spec.num_layers * spec.num_directions, 2, spec.hidden_size))
    h0 = h0 if with_h0 else None
    cell = rb.get_backend("numpy", dtype="float64")
    cell.load(w)
    y, h_n = cell.forward(x, h0)
    ny, nh = _naive(w, x, h0)
    np.testing.assert_allclose(y, ny, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h_n, nh, rtol=1e-13, atol=1e-13)


def test_reverse_direction_reads_the_sequence_backwards() -> None:
    """A bidirectional layer's reverse half equals the forward pass over the flipped input."""
    spec = rb.RNNSpec(2, 3, bidirectional=True)
    w = rb.RNNWeights.random(spec, seed=2, dtype="float64")
    x = np.random.default_rng(1).standard_normal((1, 6, 2))
    cell = rb.get_backend("numpy", dtype="float64")
    cell.load(w)
    y, h_n = cell.forward(x)
    uni = rb.RNNWeights(rb.RNNSpec(2, 3), [[w[0, 1]]])
    cell.load(uni)
    yr, hr = cell.forward(x[:, ::-1])
    np.testing.assert_array_equal(y[:, :, 3:], yr[:, ::-1])
    np.testing.assert_array_equal(h_n[1], hr[0])
    np.testing.assert_array_equal(h_n[1], y[:, 0, 3:])  # the reverse final state is at t=0


def test_dtype_follows_the_cell() -> None:
    w = rb.RNNWeights.random(rb.RNNSpec(2, 3), dtype="float64")
    cell = rb.get_backend("numpy", dtype="float32")
    cell.load(w)
    y, h_n = cell.forward(np.ones((1, 2, 2)))
    assert y.dtype == np.float32 and h_n.dtype == np.float32


# --- bad input -----------------------------------------------------------------------------
@pytest.fixture
def cell() -> rb.RNNCell:
    c = rb.get_backend("numpy")
    c.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, num_layers=2)))
    return c


def test_input_of_the_wrong_rank(cell: rb.RNNCell) -> None:
    with pytest.raises(rb.ShapeError, match=r"x has 2 axes \(shape \(5, 2\)\); expected 3"):
        cell.forward(np.zeros((5, 2)))


def test_input_of_the_wrong_feature_size(cell: rb.RNNCell) -> None:
    with pytest.raises(rb.ShapeError, match="x has 4 features.*input_size is 2"):
        cell.forward(np.zeros((1, 5, 4)))


def test_h0_of_the_wrong_shape(cell: rb.RNNCell) -> None:
    with pytest.raises(rb.ShapeError, match=r"h0 has shape \(1, 1, 3\), expected \(2, 1, 3\)"):
        cell.forward(np.zeros((1, 5, 2)), np.zeros((1, 1, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(cell: rb.RNNCell, bad: float) -> None:
    x = np.zeros((1, 5, 2))
    x[0, 3, 1] = bad
    with pytest.raises(rb.NonFiniteError, match=r"x holds 1 non-finite value.*\(0, 3, 1\)"):
        cell.forward(x)
    h0 = np.zeros((2, 1, 3))
    h0[1, 0, 2] = bad
    with pytest.raises(rb.NonFiniteError, match="h0 holds"):
        cell.forward(np.zeros((1, 5, 2)), h0)


def test_forward_before_load() -> None:
    with pytest.raises(rb.SpecError, match="no weights yet"):
        rb.get_backend("numpy").forward(np.zeros((1, 1, 1)))


def test_string_input_is_refused(cell: rb.RNNCell) -> None:
    with pytest.raises(rb.DTypeError, match="not a real number type"):
        cell.forward(np.array([[["a", "b"]]]))
