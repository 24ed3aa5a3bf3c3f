"""Conversions between the canonical weights and each library's layout (pure NumPy, plus one
in-process torch check; the library-to-library proofs live in test_porting.py).

The gate-order tests fill every canonical gate block with its own constant and read the blocks
back from each library's arrays, against orders written out here by hand from each library's
documentation (not read from rnnbench.gates, which they check)."""

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
    sd = rb.RNNWeights.random(rb.RNNSpec(2, 3, num_layers=2)).to_torch()
    sd["weight_hh_l1"] = np.zeros((3, 4), np.float32)
    with pytest.raises(rb.ShapeError, match=r"layer 1 forward w_hh has shape \(4, 3\)"):
        rb.RNNWeights.from_torch(sd)
    # weight_hh_l0 says the cell: a width that is no cell's is named
    sd = rb.RNNWeights.random(rb.RNNSpec(2, 3)).to_torch()
    sd["weight_hh_l0"] = np.zeros((3, 2), np.float32)
    with pytest.raises(rb.ShapeError, match=r"weight_hh_l0 \(3, 2\).*which is no cell"):
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
        (((1, 4, 2), (1, 4, 3), (1, 8)), r"R \(1, 4, 3\) is 4 / 3 gate blocks wide"),
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


# === LSTM and GRU =========================================================================
LSTM = rb.RNNSpec(3, 4, cell="lstm")
GRU = rb.RNNSpec(3, 4, cell="gru")
GRU_BEFORE = rb.RNNSpec(3, 4, cell="gru", reset_after=False)
GATED = [LSTM, GRU, GRU_BEFORE]
# every cell, 1 and 2 layers, bidirectional, without bias
ALL_CELLS = [
    rb.RNNSpec(3, 4),
    rb.RNNSpec(2, 3, num_layers=2, bidirectional=True, nonlinearity="relu"),
    *GATED,
    *(
        rb.RNNSpec(2, 3, num_layers=2, bidirectional=True, cell=s.cell, reset_after=s.reset_after)
        for s in GATED
    ),
    *(rb.RNNSpec(2, 3, bias=False, cell=s.cell, reset_after=s.reset_after) for s in GATED),
]
ids = lambda s: s.describe()  # noqa: E731

# Canonical positions: LSTM i=0 f=1 g=2 o=3; GRU r=0 z=1 n=2. A block at canonical position p
# holds BASE[array] + p + 1.
BASE = {"w_ih": 0, "w_hh": 10, "b_ih": 20, "b_hh": 30}


def block_weights(spec: rb.RNNSpec) -> rb.RNNWeights:
    """Weights whose every gate block holds one constant naming its array and gate."""
    h = spec.hidden_size
    g = spec.gates
    layers = []
    for k in range(spec.num_layers):
        row = []
        for _ in range(spec.num_directions):
            rows = {"w_ih": spec.layer_input_size(k), "w_hh": h}
            arrs = {}
            for name, base in BASE.items():
                blocks = [
                    np.full((rows[name], h) if name in rows else h, base + p + 1.0)
                    for p in range(g)
                ]
                arrs[name] = np.concatenate(blocks, axis=-1)
            row.append(rb.DirectionWeights(**arrs))
        layers.append(row)
    return rb.RNNWeights(spec, layers, dtype="float64")


def block_values(a: np.ndarray, count: int, axis: int = -1) -> list[float]:
    """The constant of each of ``count`` blocks of ``a`` along ``axis`` (asserting it is one)."""
    out = []
    for part in np.split(np.asarray(a), count, axis=axis):
        assert np.unique(part).size == 1, part
        out.append(float(part.flat[0]))
    return out


def v(base: str, *positions: int) -> list[float]:
    return [BASE[base] + p + 1.0 for p in positions]


def vs(*positions: int) -> list[float]:
    """One-bias libraries hold b_ih + b_hh."""
    return [a + b for a, b in zip(v("b_ih", *positions), v("b_hh", *positions))]


I_, F_, G_, O_ = 0, 1, 2, 3  # LSTM canonical positions
R_, Z_, N_ = 0, 1, 2  # GRU canonical positions


def test_torch_gate_order_is_the_canonical_one() -> None:
    for spec, order in [(LSTM, (I_, F_, G_, O_)), (GRU, (R_, Z_, N_))]:
        sd = block_weights(spec).to_torch()
        assert block_values(sd["weight_ih_l0"], spec.gates, 0) == v("w_ih", *order)
        assert block_values(sd["weight_hh_l0"], spec.gates, 0) == v("w_hh", *order)
        assert block_values(sd["bias_ih_l0"], spec.gates) == v("b_ih", *order)
        assert block_values(sd["bias_hh_l0"], spec.gates) == v("b_hh", *order)
        assert sd["weight_ih_l0"].shape == (spec.gates * 4, 3)


def test_keras_lstm_blocks_are_i_f_c_o_with_one_bias() -> None:
    kernel, recurrent, bias = block_weights(LSTM).to_keras()
    assert (kernel.shape, recurrent.shape, bias.shape) == ((3, 16), (4, 16), (16,))
    assert block_values(kernel, 4) == v("w_ih", I_, F_, G_, O_)
    assert block_values(recurrent, 4) == v("w_hh", I_, F_, G_, O_)
    assert block_values(bias, 4) == vs(I_, F_, G_, O_)


def test_keras_gru_blocks_are_z_r_h() -> None:
    kernel, recurrent, bias = block_weights(GRU).to_keras()
    assert block_values(kernel, 3) == v("w_ih", Z_, R_, N_)
    assert block_values(recurrent, 3) == v("w_hh", Z_, R_, N_)
    assert bias.shape == (2, 12)  # reset_after=True: [input bias; recurrent bias]
    assert block_values(bias[0], 3) == v("b_ih", Z_, R_, N_)
    assert block_values(bias[1], 3) == v("b_hh", Z_, R_, N_)
    kernel, recurrent, bias = block_weights(GRU_BEFORE).to_keras()
    assert block_values(kernel, 3) == v("w_ih", Z_, R_, N_)
    assert bias.shape == (12,)  # reset_after=False: one bias, the sum
    assert block_values(bias, 3) == vs(Z_, R_, N_)


def test_tf1_lstm_blocks_are_i_j_f_o_and_the_forget_bias_is_subtracted() -> None:
    kernel, bias = block_weights(LSTM).to_tf1(forget_bias=0.5)
    assert kernel.shape == (7, 16) and bias.shape == (16,)
    assert block_values(kernel[:3], 4) == v("w_ih", I_, G_, F_, O_)
    assert block_values(kernel[3:], 4) == v("w_hh", I_, G_, F_, O_)
    expected = vs(I_, G_, F_, O_)
    expected[2] -= 0.5  # TF1 adds forget_bias to f (its third block) at run time
    assert block_values(bias, 4) == expected


def test_tf1_gru_is_a_dict_of_gates_r_u_and_candidate() -> None:
    cell = block_weights(GRU_BEFORE).to_tf1()
    assert list(cell) == ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"]
    assert cell["gates/kernel"].shape == (7, 8) and cell["candidate/kernel"].shape == (7, 4)
    assert block_values(cell["gates/kernel"][:3], 2) == v("w_ih", R_, Z_)
    assert block_values(cell["gates/kernel"][3:], 2) == v("w_hh", R_, Z_)
    assert block_values(cell["gates/bias"], 2) == vs(R_, Z_)
    assert block_values(cell["candidate/kernel"][:3], 1) == v("w_ih", N_)
    assert block_values(cell["candidate/kernel"][3:], 1) == v("w_hh", N_)
    assert block_values(cell["candidate/bias"], 1) == vs(N_)


def test_onnx_blocks_lstm_i_o_f_c_and_gru_z_r_h_with_two_biases() -> None:
    for spec, order in [(LSTM, (I_, O_, F_, G_)), (GRU, (Z_, R_, N_)), (GRU_BEFORE, (Z_, R_, N_))]:
        g = spec.gates
        W, R, B = block_weights(spec).to_onnx()
        assert (W.shape, R.shape, B.shape) == ((1, g * 4, 3), (1, g * 4, 4), (1, 2 * g * 4))
        assert block_values(W[0], g, 0) == v("w_ih", *order)
        assert block_values(R[0], g, 0) == v("w_hh", *order)
        assert block_values(B[0], 2 * g) == v("b_ih", *order) + v("b_hh", *order)


def test_bidirectional_and_stacked_structures() -> None:
    spec = rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="lstm")
    w = rb.RNNWeights.random(spec, seed=1)
    keras = w.to_keras()
    assert [a.shape for a in keras[1]] == [(8, 16), (4, 16), (16,)] * 2
    tf1 = w.to_tf1()
    assert isinstance(tf1, list) and isinstance(tf1[0], tuple) and len(tf1[0]) == 2
    assert tf1[1][1][0].shape == (12, 16)
    W, R, B = w.to_onnx()[1]
    assert (W.shape, R.shape, B.shape) == ((2, 16, 8), (2, 16, 4), (2, 32))
    sd = w.to_torch()
    assert sd["weight_ih_l1_reverse"].shape == (16, 8) and len(sd) == 16
    gru = rb.RNNWeights.random(
        rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="gru", reset_after=False)
    ).to_tf1()
    assert isinstance(gru[1], tuple) and set(gru[1][1]) == {
        "gates/kernel",
        "gates/bias",
        "candidate/kernel",
        "candidate/bias",
    }


# --- round trips ---------------------------------------------------------------------------
def onnx_back(w: rb.RNNWeights) -> rb.RNNWeights:
    spec = w.spec
    native = w.to_onnx()
    kwargs = {
        "nonlinearity": spec.nonlinearity,
        "bias": spec.bias,
        "linear_before_reset": int(bool(spec.reset_after)),
    }
    if spec.num_layers == 1:
        return rb.RNNWeights.from_onnx(*native, **kwargs)
    return rb.RNNWeights.from_onnx(native, **kwargs)


@pytest.mark.parametrize("spec", ALL_CELLS, ids=ids)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_and_onnx_round_trip_every_cell_exactly(spec: rb.RNNSpec, dtype: str) -> None:
    w = rb.RNNWeights.random(spec, seed=5, dtype=dtype)
    assert onnx_back(w).equals(w)
    if spec.cell_label != "gru(reset-before)":
        back = rb.RNNWeights.from_torch(w.to_torch(), nonlinearity=spec.nonlinearity)
        assert back.equals(w)


@pytest.mark.parametrize("spec", ALL_CELLS, ids=ids)
def test_keras_round_trips_exactly(spec: rb.RNNSpec) -> None:
    w = rb.RNNWeights.random(spec, seed=6, dtype="float64")
    two_biases = spec.cell == "gru" and spec.reset_after
    if not two_biases:
        w = one_bias(w)
    kwargs = {"nonlinearity": spec.nonlinearity} if spec.cell == "rnn" else {}
    if spec.cell == "gru" and not spec.bias:  # a bias-less GRU list does not say its formula
        kwargs["reset_after"] = spec.reset_after
    assert rb.RNNWeights.from_keras(w.to_keras(), **kwargs).equals(w)


@pytest.mark.parametrize("spec", [s for s in ALL_CELLS if s.bias], ids=ids)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tf1_round_trips(spec: rb.RNNSpec, dtype: str) -> None:
    if spec.cell == "gru" and spec.reset_after:
        return  # refused: see test_tf1_refuses_a_reset_after_gru
    w = one_bias(rb.RNNWeights.random(spec, seed=7, dtype=dtype))
    cell = {"rnn": "rnn", "lstm": "lstm", "gru": "rnn"}[spec.cell]  # a dict says GRU itself
    kwargs = {"nonlinearity": spec.nonlinearity} if spec.cell == "rnn" else {"cell": cell}
    exact = rb.RNNWeights.from_tf1(w.to_tf1(forget_bias=0.0), forget_bias=0.0, **kwargs)
    assert exact.equals(w)
    if spec.cell == "lstm":  # default forget_bias 1.0: b - 1 + 1 rounds once, within 1 ulp of 1
        back = rb.RNNWeights.from_tf1(w.to_tf1(), **kwargs)
        assert back.spec == spec and not back.equals(w)  # the rounding is real...
        one_ulp = np.spacing(np.array(1.0, dtype=dtype))
        for (_, _, a), (_, _, b) in zip(back.iter_directions(), w.iter_directions()):
            np.testing.assert_array_equal(a.w_ih, b.w_ih)
            np.testing.assert_array_equal(a.w_hh, b.w_hh)
            assert np.abs(a.b_ih - b.b_ih).max() <= one_ulp  # ...and at most one ulp of 1.0
            f = slice(spec.hidden_size, 2 * spec.hidden_size)
            np.testing.assert_array_equal(np.delete(a.b_ih, np.r_[f]), np.delete(b.b_ih, np.r_[f]))


def test_tf1_lstm_forget_bias_lands_on_the_canonical_f_block() -> None:
    h = 4
    kernel = np.zeros((7, 16))
    bias = np.zeros(16)
    w = rb.RNNWeights.from_tf1(kernel, bias, cell="lstm", forget_bias=1.5)
    expected = np.zeros(16)
    expected[h : 2 * h] = 1.5  # canonical i, f, g, o: f is the second block
    np.testing.assert_array_equal(w[0, 0].b_ih, expected)
    assert not w[0, 0].b_hh.any()


def test_keras_gru_from_bias_shape_and_one_bias_sum() -> None:
    w = rb.RNNWeights.random(GRU_BEFORE, seed=2, dtype="float64")
    back = rb.RNNWeights.from_keras(w.to_keras())
    assert back.spec == GRU_BEFORE  # a (3H,) bias says reset_after=False
    d = w[0, 0]
    np.testing.assert_array_equal(back[0, 0].b_ih, d.b_ih + d.b_hh)
    w = rb.RNNWeights.random(GRU, seed=2, dtype="float64")
    assert rb.RNNWeights.from_keras(w.to_keras()).spec == GRU  # a (2, 3H) bias: reset_after


# --- refusals ------------------------------------------------------------------------------
RESET_BEFORE_HINT = (
    r"Keras GRU\(reset_after=False\), TF1 GRUCell or ONNX GRU.*linear_before_reset=0"
)


def test_to_torch_refuses_a_reset_before_gru() -> None:
    w = rb.RNNWeights.random(GRU_BEFORE)
    with pytest.raises(rb.LayoutError, match="reset gate after the recurrent product") as info:
        w.to_torch()
    assert "not convertible" in str(info.value)
    assert info.value.hint and __import__("re").search(RESET_BEFORE_HINT, info.value.hint)


def test_from_torch_refuses_a_contradicting_cell_or_spec() -> None:
    sd = rb.RNNWeights.random(LSTM).to_torch()
    with pytest.raises(rb.LayoutError, match=r"holds LSTM weights, but cell='gru' \(GRU\)"):
        rb.RNNWeights.from_torch(sd, cell="gru")
    with pytest.raises(rb.LayoutError, match=r"holds LSTM weights .* given GRU spec"):
        rb.RNNWeights.from_torch(sd, spec=GRU)
    assert rb.RNNWeights.from_torch(sd, cell="lstm", spec=LSTM).spec == LSTM
    gru_sd = rb.RNNWeights.random(GRU).to_torch()
    with pytest.raises(rb.LayoutError, match="not the given") as info:
        rb.RNNWeights.from_torch(gru_sd, spec=GRU_BEFORE)
    assert "nn.GRU is reset-after only" in str(info.value)


def test_from_torch_refuses_projections() -> None:
    sd = rb.RNNWeights.random(LSTM).to_torch()
    sd["weight_hr_l0"] = np.zeros((2, 4))
    with pytest.raises(rb.LayoutError, match="weight_hr_l0.*proj_size > 0"):
        rb.RNNWeights.from_torch(sd)


def test_gated_cells_refuse_a_relu_nonlinearity() -> None:
    sd = rb.RNNWeights.random(LSTM).to_torch()
    with pytest.raises(rb.LayoutError, match="nonlinearity='relu' was given for LSTM"):
        rb.RNNWeights.from_torch(sd, nonlinearity="relu")


class SimpleRNN:
    """Keras layers by duck typing: the converters read type names and attributes only."""

    def __init__(self, weights: list, activation: str = "tanh", **attrs: object) -> None:
        self._weights = weights
        self.activation = activation
        self.use_bias = len(weights) == 3
        self.__dict__.update(attrs)

    def get_weights(self) -> list:
        return self._weights


class LSTM_(SimpleRNN):
    pass


class GRU_(SimpleRNN):
    pass


LSTM_.__name__ = "LSTM"
GRU_.__name__ = "GRU"


class Bidirectional:
    def __init__(self, forward: SimpleRNN, backward: SimpleRNN) -> None:
        self.forward_layer = forward
        self.merge_mode = "concat"
        self._weights = forward.get_weights() + backward.get_weights()

    def get_weights(self) -> list:
        return self._weights


def test_keras_layers_are_read_by_duck_typing() -> None:
    w = rb.RNNWeights.random(GRU_BEFORE, seed=3, dtype="float64")
    layer = GRU_(w.to_keras(), recurrent_activation="sigmoid", reset_after=False)
    assert rb.RNNWeights.from_keras(layer).equals(one_bias(w))
    spec = rb.RNNSpec(3, 4, bidirectional=True, cell="lstm")
    w = one_bias(rb.RNNWeights.random(spec, seed=3, dtype="float64"))
    native = w.to_keras()
    fwd = LSTM_(native[:3], recurrent_activation="sigmoid")
    bwd = LSTM_(native[3:], recurrent_activation="sigmoid")
    assert rb.RNNWeights.from_keras(Bidirectional(fwd, bwd)).equals(w)


def test_keras_layer_with_non_default_activations_is_refused() -> None:
    native = rb.RNNWeights.random(LSTM).to_keras()
    for act, rec in [("relu", "sigmoid"), ("tanh", "hard_sigmoid")]:
        layer = LSTM_(native, activation=act, recurrent_activation=rec)
        with pytest.raises(rb.LayoutError, match="non-default activations"):
            rb.RNNWeights.from_keras(layer)


def test_keras_gru_layer_says_reset_after_even_without_bias() -> None:
    spec = rb.RNNSpec(3, 4, bias=False, cell="gru", reset_after=False)
    native = rb.RNNWeights.random(spec).to_keras()
    layer = GRU_(native, recurrent_activation="sigmoid", reset_after=False)
    assert rb.RNNWeights.from_keras(layer).spec == spec
    with pytest.raises(rb.LayoutError, match="GRU without bias.*do not say its formula"):
        rb.RNNWeights.from_keras(native)
    with pytest.raises(rb.LayoutError, match="contradicts layer 0's reset_after=False"):
        rb.RNNWeights.from_keras(layer, reset_after=True)


def test_keras_lists_refuse_a_contradicting_cell_or_formula() -> None:
    lstm = rb.RNNWeights.random(LSTM).to_keras()
    with pytest.raises(rb.LayoutError, match=r"holds LSTM weights, but cell='gru'"):
        rb.RNNWeights.from_keras(lstm, cell="gru")
    gru = rb.RNNWeights.random(GRU).to_keras()
    with pytest.raises(rb.LayoutError, match=r"\(2, 3H\) bias.*but reset_after=False"):
        rb.RNNWeights.from_keras(gru, reset_after=False)
    with pytest.raises(rb.ShapeError, match="which is no cell"):
        rb.RNNWeights.from_keras([np.zeros((3, 8)), np.zeros((4, 8))])


def test_tf1_refuses_a_reset_after_gru() -> None:
    with pytest.raises(rb.LayoutError, match="TF1 GRUCell applies the reset gate before") as info:
        rb.RNNWeights.random(GRU).to_tf1()
    assert "Keras GRU" in str(info.value) and "linear_before_reset=1" in str(info.value)


def test_tf1_lstm_pair_without_cell_hints_cell_lstm() -> None:
    kernel, bias = rb.RNNWeights.random(LSTM).to_tf1()  # (7, 16): no RNN kernel
    with pytest.raises(rb.ShapeError, match="do not fit") as info:
        rb.RNNWeights.from_tf1(kernel, bias)
    assert "cell='lstm'" in str(info.value)
    assert rb.RNNWeights.from_tf1(kernel, bias, cell="lstm").spec == LSTM


def test_tf1_gru_dict_keys_and_cell_are_checked() -> None:
    cell = rb.RNNWeights.random(GRU_BEFORE).to_tf1()
    assert rb.RNNWeights.from_tf1(cell).spec == GRU_BEFORE
    assert rb.RNNWeights.from_tf1(cell, cell="gru").spec == GRU_BEFORE
    renamed = dict(cell)
    renamed["gru_cell/gates/kernel"] = renamed.pop("gates/kernel")
    with pytest.raises(rb.LayoutError, match=r"exactly the keys.*missing: \['gates/kernel'\]"):
        rb.RNNWeights.from_tf1(renamed)
    with pytest.raises(rb.LayoutError, match="GRUCell dicts, but cell='lstm'"):
        rb.RNNWeights.from_tf1(cell, cell="lstm")
    kernel, bias = rb.RNNWeights.random(rb.RNNSpec(3, 4)).to_tf1()
    with pytest.raises(rb.LayoutError, match="cell='gru' was given, but .* pairs"):
        rb.RNNWeights.from_tf1(kernel, bias, cell="gru")
    short = dict(cell, **{"candidate/kernel": cell["candidate/kernel"][:, :2]})
    with pytest.raises(rb.ShapeError, match="candidate/"):
        rb.RNNWeights.from_tf1(short)


def test_onnx_attributes_per_cell() -> None:
    assert rb.layouts.onnx_attributes(rb.RNNSpec(3, 4, nonlinearity="relu")) == {
        "hidden_size": 4,
        "direction": "forward",
        "activations": ["Relu"],
    }
    assert rb.layouts.onnx_attributes(rb.RNNSpec(3, 4, cell="lstm", bidirectional=True)) == {
        "hidden_size": 4,
        "direction": "bidirectional",
        "activations": ["Sigmoid", "Tanh", "Tanh"] * 2,
    }
    assert rb.layouts.onnx_attributes(GRU)["linear_before_reset"] == 1
    attrs = rb.layouts.onnx_attributes(GRU_BEFORE)
    assert attrs["linear_before_reset"] == 0 and attrs["activations"] == ["Sigmoid", "Tanh"]
    assert rb.layouts.onnx_activation("tanh") == "Tanh"


def test_onnx_gru_formula_comes_from_linear_before_reset() -> None:
    W, R, B = rb.RNNWeights.random(GRU).to_onnx()
    assert rb.RNNWeights.from_onnx(W, R, B).spec == GRU_BEFORE  # ONNX's default is 0
    assert rb.RNNWeights.from_onnx(W, R, B, linear_before_reset=1).spec == GRU


def test_onnx_refuses_peepholes_and_contradictions() -> None:
    W, R, B = rb.RNNWeights.random(LSTM).to_onnx()
    assert rb.RNNWeights.from_onnx(W, R, B, P=np.zeros((1, 12))).spec == LSTM
    P = np.zeros((1, 12))
    P[0, 5] = 0.1
    with pytest.raises(rb.LayoutError, match="non-zero peephole weights P"):
        rb.RNNWeights.from_onnx(W, R, B, P=P)
    with pytest.raises(rb.LayoutError, match="non-zero peephole"):
        rb.RNNWeights.from_onnx([(W, R, B, P)])
    with pytest.raises(rb.LayoutError, match="holds LSTM weights, but cell='rnn'"):
        rb.RNNWeights.from_onnx(W, R, B, cell="rnn")
    with pytest.raises(rb.LayoutError, match="linear_before_reset is a GRU attribute"):
        rb.RNNWeights.from_onnx(W, R, B, linear_before_reset=1)
    with pytest.raises(rb.ShapeError, match=r"B has shape \(1, 16\)"):
        rb.RNNWeights.from_onnx(W, R, B[:, :16])


# --- torch in process: the converted weights compute what the module computes --------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_module_output_equals_the_reference(
    cell: str, num_layers: int, bidirectional: bool
) -> None:
    torch = pytest.importorskip("torch")
    from rnnbench.reference import forward

    torch.manual_seed(0)
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    module = cls(3, 4, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    module = module.double()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 3))
    dirs = 2 if bidirectional else 1
    h0 = rng.standard_normal((num_layers * dirs, 2, 4))
    c0 = rng.standard_normal((num_layers * dirs, 2, 4))
    with torch.no_grad():
        if cell == "lstm":
            y_t, (h_t, c_t) = module(
                torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0))
            )
        else:
            y_t, h_t = module(torch.from_numpy(x), torch.from_numpy(h0))
    for source in (module, module.state_dict()):
        w = rb.RNNWeights.from_torch(source)
        assert w.spec.cell == cell and w.dtype == np.float64
        y, state = forward(w, x, (h0, c0) if cell == "lstm" else h0)
        np.testing.assert_allclose(y, y_t.numpy(), rtol=0, atol=1e-14)
        if cell == "lstm":
            np.testing.assert_allclose(state[0], h_t.numpy(), rtol=0, atol=1e-14)
            np.testing.assert_allclose(state[1], c_t.numpy(), rtol=0, atol=1e-14)
        else:
            np.testing.assert_allclose(state, h_t.numpy(), rtol=0, atol=1e-14)
    # and back: to_torch loads into a fresh module and gives the same output
    fresh = cls(3, 4, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    fresh = fresh.double()
    fresh.load_state_dict({k: torch.from_numpy(a) for k, a in w.to_torch().items()})
    with torch.no_grad():
        args = (
            (torch.from_numpy(h0), torch.from_numpy(c0)) if cell == "lstm" else torch.from_numpy(h0)
        )
        np.testing.assert_array_equal(fresh(torch.from_numpy(x), args)[0].numpy(), y_t.numpy())


def test_torch_module_with_proj_size_is_refused() -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(rb.LayoutError, match=r"proj_size=2.*projected"):
        rb.RNNWeights.from_torch(module)
    with pytest.raises(rb.LayoutError, match="weight_hr_l0"):
        rb.RNNWeights.from_torch(module.state_dict())
    with pytest.raises(rb.LayoutError, match="holds GRU weights, but cell='lstm'"):
        rb.RNNWeights.from_torch(torch.nn.GRU(3, 4), cell="lstm")
