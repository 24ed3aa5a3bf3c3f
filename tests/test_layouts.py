"""Conversions between the canonical weights and each library's layout (pure NumPy; the
library-to-library proofs live in test_porting.py)."""

from __future__ import annotations

import numpy as np
import pytest

import rnnbench as rb

SPECS = [
    rb.RNNSpec(2, 4),
    rb.RNNSpec(3, 5, num_layers=3, bidirectional=True, nonlinearity="relu"),
    rb.RNNSpec(3, 2, num_layers=2, bias=False),
    rb.RNNSpec(1, 1, bidirectional=True),
]


def one_bias(w: rb.RNNWeights) -> rb.RNNWeights:
    """The same layer with b_hh folded into b_ih: what a one-bias layout can hold exactly."""
    layers = [
        [rb.DirectionWeights(d.w_ih, d.w_hh, d.b_ih + d.b_hh, np.zeros_like(d.b_hh)) for d in row]
        for row in w.layers
    ]
    return rb.RNNWeights(w.spec, layers)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_bias_layouts_round_trip_exactly(spec: rb.RNNSpec, dtype: str) -> None:
    w = rb.RNNWeights.random(spec, seed=3, dtype=dtype)
    assert rb.RNNWeights.from_torch(w.to_torch(), nonlinearity=spec.nonlinearity).equals(w)
    onnx = w.to_onnx()
    back = (
        rb.RNNWeights.from_onnx(*onnx, nonlinearity=spec.nonlinearity, bias=spec.bias)
        if spec.num_layers == 1
        else rb.RNNWeights.from_onnx(onnx, nonlinearity=spec.nonlinearity, bias=spec.bias)
    )
    assert back.equals(w)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_one_bias_layouts_round_trip_exactly(spec: rb.RNNSpec) -> None:
    w = one_bias(rb.RNNWeights.random(spec, seed=4))
    keras = rb.RNNWeights.from_keras(w.to_keras(), nonlinearity=spec.nonlinearity)
    assert keras.equals(w)
    if spec.bias:  # a BasicRNNCell always has a bias
        assert rb.RNNWeights.from_tf1(w.to_tf1(), nonlinearity=spec.nonlinearity).equals(w)


def test_one_bias_layouts_sum_the_biases() -> None:
    w = rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=1)
    d = w[0, 0]
    kernel, bias = w.to_tf1()
    np.testing.assert_array_equal(bias, d.b_ih + d.b_hh)
    np.testing.assert_array_equal(kernel[:2], d.w_ih)
    np.testing.assert_array_equal(kernel[2:], d.w_hh)
    k, rk, b = w.to_keras()
    np.testing.assert_array_equal(b, d.b_ih + d.b_hh)
    np.testing.assert_array_equal(k, d.w_ih)
    np.testing.assert_array_equal(rk, d.w_hh)


def test_native_shapes_and_names() -> None:
    spec = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True)
    w = rb.RNNWeights.random(spec)
    sd = w.to_torch()
    assert sd["weight_ih_l0"].shape == (5, 3)
    assert sd["weight_hh_l0_reverse"].shape == (5, 5)
    assert sd["weight_ih_l1"].shape == (5, 10)
    assert len(sd) == 2 * 2 * 4
    W, R, B = w.to_onnx()[1]
    assert (W.shape, R.shape, B.shape) == ((2, 5, 10), (2, 5, 5), (2, 10))
    (kf, bf), (kb, _) = w.to_tf1()[0]
    assert kf.shape == (8, 5) and kb.shape == (8, 5) and bf.shape == (5,)
    keras0 = w.to_keras()[0]
    assert [a.shape for a in keras0] == [(3, 5), (5, 5), (5,)] * 2


def test_torch_state_dict_with_prefix_and_tensors_by_duck_typing() -> None:
    w = rb.RNNWeights.random(rb.RNNSpec(2, 3, num_layers=2))
    model_state = {f"encoder.rnn.{k}": v for k, v in w.to_torch().items()}
    model_state["decoder.weight"] = np.zeros((1, 1))
    assert rb.RNNWeights.from_torch(model_state).equals(w)


# --- bad input -----------------------------------------------------------------------------
def test_state_dict_missing_key_is_named() -> None:
    sd = rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True)).to_torch()
    del sd["bias_hh_l0_reverse"]
    with pytest.raises(rb.LayoutError, match="missing key 'bias_hh_l0_reverse'"):
        rb.RNNWeights.from_torch(sd)


def test_state_dict_with_a_wrong_shape_names_the_array() -> None:
    sd = rb.RNNWeights.random(rb.RNNSpec(2, 3)).to_torch()
    sd["weight_hh_l0"] = np.zeros((3, 4), np.float32)
    with pytest.raises(rb.ShapeError, match=r"layer 0 forward w_hh has shape \(4, 3\)"):
        rb.RNNWeights.from_torch(sd)


def test_tf1_kernel_rows_that_do_not_fit() -> None:
    with pytest.raises(rb.ShapeError, match="do not fit I \\+ H"):
        rb.RNNWeights.from_tf1(np.zeros((4, 4), np.float32), np.zeros(4, np.float32))
    with pytest.raises(rb.ShapeError, match="do not fit I \\+ H = 3 \\+ 4 = 7"):
        rb.RNNWeights.from_tf1(np.zeros((6, 4)), np.zeros(4), input_size=3)


def test_tf1_bias_that_does_not_match() -> None:
    with pytest.raises(rb.ShapeError, match=r"bias has shape \(3,\), but the kernel has 4 columns"):
        rb.RNNWeights.from_tf1(np.zeros((6, 4)), np.zeros(3))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((1, 4, 2), (1, 4, 3), (1, 8)), r"R has shape \(1, 4, 3\)"),
        (((1, 4, 2), (2, 4, 4), (1, 8)), r"R has shape \(2, 4, 4\)"),
        (((1, 4, 2), (1, 4, 4), (1, 4)), r"B has shape \(1, 4\)"),
        (((3, 4, 2), (3, 4, 4), (3, 8)), "3 directions"),
    ],
)
def test_onnx_shapes_that_disagree(shapes: tuple, message: str) -> None:
    W, R, B = (np.zeros(s, np.float32) for s in shapes)
    with pytest.raises(rb.ShapeError, match=message):
        rb.RNNWeights.from_onnx(W, R, B)


def test_keras_weight_list_of_a_wrong_length() -> None:
    with pytest.raises(rb.LayoutError, match="has 5 arrays"):
        rb.RNNWeights.from_keras([np.zeros((2, 2))] * 5)


def test_non_finite_weights_are_refused() -> None:
    kernel = np.zeros((6, 4), np.float32)
    kernel[3, 1] = np.nan
    with pytest.raises(rb.NonFiniteError, match=r"non-finite value.*\(1, 1\)"):
        rb.RNNWeights.from_tf1(kernel, np.zeros(4, np.float32))
    sd = rb.RNNWeights.random(rb.RNNSpec(2, 3)).to_torch()
    sd["bias_ih_l0"] = np.array([0.0, np.inf, 0.0])
    with pytest.raises(rb.NonFiniteError, match="layer 0 forward b_ih"):
        rb.RNNWeights.from_torch(sd)


def test_unsupported_activation() -> None:
    with pytest.raises(rb.LayoutError, match="activation 'sigmoid'"):
        rb.RNNWeights.from_onnx(np.zeros((1, 2, 1)), np.zeros((1, 2, 2)), nonlinearity="sigmoid")
