"""The NumPy backend: the seed, the formula by hand, directions, layers, h0, bad input."""

from __future__ import annotations

from typing import Any

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


def _sig(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _naive_step(spec: rb.RNNSpec, dw: rb.DirectionWeights, x: np.ndarray, h: np.ndarray, c: Any):  # type: ignore[no-untyped-def]
    """One step of one sequence, written from the textbook formulas with the gate blocks sliced
    by hand (PyTorch's order: LSTM i, f, g, o; GRU r, z, n)."""
    H = spec.hidden_size
    if spec.cell == "rnn":
        act = np.tanh if spec.nonlinearity == "tanh" else (lambda a: np.maximum(a, 0))
        return act(dw.w_ih.T @ x + dw.b_ih + dw.w_hh.T @ h + dw.b_hh), None
    gx = dw.w_ih.T @ x + dw.b_ih
    if spec.cell == "lstm":
        a = gx + dw.w_hh.T @ h + dw.b_hh
        i, f, g, o = (a[j * H : (j + 1) * H] for j in range(4))
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        return _sig(o) * np.tanh(c), c
    wr, wz, wn = (dw.w_hh[:, j * H : (j + 1) * H] for j in range(3))
    br, bz, bn = (dw.b_hh[j * H : (j + 1) * H] for j in range(3))
    r = _sig(gx[:H] + wr.T @ h + br)
    z = _sig(gx[H : 2 * H] + wz.T @ h + bz)
    if spec.reset_after:
        n = np.tanh(gx[2 * H :] + r * (wn.T @ h + bn))
    else:
        n = np.tanh(gx[2 * H :] + wn.T @ (r * h) + bn)
    return (1 - z) * n + z * h, None


def _naive(w: rb.RNNWeights, x: np.ndarray, h0: Any) -> tuple:
    """An independent, deliberately plain implementation (loops over batch and time)."""
    spec = w.spec
    B, T, _ = x.shape
    H = spec.hidden_size
    lstm = spec.cell == "lstm"
    hs0, cs0 = (h0 if lstm else (h0, None)) if h0 is not None else (None, None)
    inp = x
    finals, cells = [], []
    for k in range(spec.num_layers):
        outs = []
        for d in range(spec.num_directions):
            dw = w[k, d]
            idx = k * spec.num_directions + d
            out = np.zeros((B, T, H))
            finals.append(np.zeros((B, H)))
            cells.append(np.zeros((B, H)))
            for b in range(B):
                h = np.zeros(H) if hs0 is None else hs0[idx, b].copy()
                c = np.zeros(H) if cs0 is None else cs0[idx, b].copy()
                order = range(T) if d == 0 else reversed(range(T))
                for t in order:
                    h, c = _naive_step(spec, dw, inp[b, t], h, c)
                    out[b, t] = h
                finals[-1][b] = h
                if lstm:
                    cells[-1][b] = c
            outs.append(out)
        inp = np.concatenate(outs, axis=-1)
    return inp, ((np.stack(finals), np.stack(cells)) if lstm else np.stack(finals))


@pytest.mark.parametrize(
    "spec",
    [
        rb.RNNSpec(3, 4),
        rb.RNNSpec(3, 4, num_layers=3, bidirectional=True, nonlinearity="relu"),
        rb.RNNSpec(1, 1, bidirectional=True, bias=False),
        rb.RNNSpec(3, 4, cell="lstm"),
        rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="lstm"),
        rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="gru"),
        rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="gru", reset_after=False),
        rb.RNNSpec(2, 1, cell="gru", reset_after=False, bias=False),
    ],
    ids=lambda s: s.describe(),
)
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_a_naive_loop(spec: rb.RNNSpec, with_h0: bool) -> None:
    w = rb.RNNWeights.random(spec, seed=11, dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, spec.input_size))
    shape = (spec.num_layers * spec.num_directions, 2, spec.hidden_size)
    parts = tuple(rng.standard_normal(shape) for _ in spec.state_names)
    h0 = (parts if spec.cell == "lstm" else parts[0]) if with_h0 else None
    cell = rb.get_backend("numpy", dtype="float64")
    cell.load(w)
    y, h_n = cell.forward(x, h0)
    ny, nh = _naive(w, x, h0)
    np.testing.assert_allclose(y, ny, rtol=1e-13, atol=1e-13)
    if spec.cell == "lstm":
        assert isinstance(h_n, tuple) and len(h_n) == 2
        np.testing.assert_allclose(h_n[0], nh[0], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(h_n[1], nh[1], rtol=1e-13, atol=1e-13)
        assert not np.allclose(h_n[0], h_n[1])  # h and c are not the same array twice
    else:
        np.testing.assert_allclose(h_n, nh, rtol=1e-13, atol=1e-13)


def test_the_two_gru_formulas_differ() -> None:
    """Reset-after and reset-before are different networks on the same arrays (a GRU port
    between them is not a relayout): the outputs must differ."""
    after = rb.RNNWeights.random(rb.RNNSpec(3, 4, cell="gru"), seed=1, dtype="float64")
    spec_before = rb.RNNSpec(3, 4, cell="gru", reset_after=False)
    before = rb.RNNWeights(spec_before, after.layers)
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    ya, _ = rb.reference_forward(after, x)
    yb, _ = rb.reference_forward(before, x)
    assert np.abs(ya - yb).max() > 1e-3


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


def test_lstm_state_must_be_a_pair() -> None:
    c = rb.get_backend("numpy")
    c.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, cell="lstm")))
    with pytest.raises(rb.ShapeError, match=r"an LSTM's initial state is a pair \(h0, c0\)"):
        c.forward(np.zeros((1, 5, 2)), np.zeros((1, 1, 3)))
    with pytest.raises(rb.ShapeError, match=r"c0 has shape \(1, 2, 3\), expected \(1, 1, 3\)"):
        c.forward(np.zeros((1, 5, 2)), (np.zeros((1, 1, 3)), np.zeros((1, 2, 3))))
    h0 = np.zeros((1, 1, 3))
    c0 = h0.copy()
    c0[0, 0, 1] = np.nan
    with pytest.raises(rb.NonFiniteError, match="c0 holds 1 non-finite"):
        c.forward(np.zeros((1, 5, 2)), (h0, c0))


def test_gru_state_is_one_array() -> None:
    c = rb.get_backend("numpy")
    c.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, cell="gru")))
    h0 = np.zeros((1, 1, 3))
    with pytest.raises(rb.ShapeError, match="GRU state is one array; got a pair"):
        c.forward(np.zeros((1, 5, 2)), (h0, h0))


def test_forward_before_load() -> None:
    with pytest.raises(rb.SpecError, match="no weights yet"):
        rb.get_backend("numpy").forward(np.zeros((1, 1, 1)))


def test_string_input_is_refused(cell: rb.RNNCell) -> None:
    with pytest.raises(rb.DTypeError, match="not a real number type"):
        cell.forward(np.array([[["a", "b"]]]))
