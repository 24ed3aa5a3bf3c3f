"""RNNSpec: validation, derived sizes, serialisation."""

from __future__ import annotations

import pytest

import rnnbench as rb


def test_defaults_and_derived_sizes() -> None:
    spec = rb.RNNSpec(input_size=2, hidden_size=4)
    assert (spec.num_layers, spec.bidirectional, spec.nonlinearity, spec.bias) == (
        1,
        False,
        "tanh",
        True,
    )
    assert spec.output_size == 4
    # the seed's rule: a kernel of I+N rows and N columns, and N biases
    assert spec.num_parameters == (2 + 4) * 4 + 4
    assert spec.flops_per_step == 2 * (2 + 4) * 4


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_seed_parameter_rule(n: int) -> None:
    # kernels of 3x1, 4x2, 5x3, 6x4 for I=2 and N=1..4
    spec = rb.RNNSpec(input_size=2, hidden_size=n)
    assert spec.num_parameters == (2 + n) * n + n


def test_stacked_bidirectional_sizes() -> None:
    spec = rb.RNNSpec(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, bias=False)
    assert spec.layer_input_size(0) == 3
    assert spec.layer_input_size(1) == 10
    assert spec.num_parameters == 2 * (3 + 5) * 5 + 2 * (10 + 5) * 5
    assert spec.flops(batch=7, seq_len=11) == 7 * 11 * (2 * 2 * (3 + 5) * 5 + 2 * 2 * (10 + 5) * 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size must be >= 1"),
        ({"hidden_size": -3}, "hidden_size must be >= 1"),
        ({"input_size": 2.5}, "input_size must be an int"),
        ({"num_layers": 0}, "num_layers must be >= 1"),
        ({"nonlinearity": "sigmoid"}, "unknown nonlinearity 'sigmoid'"),
        ({"bidirectional": "yes"}, "bidirectional must be True or False"),
        ({"cell": "lstm2"}, "unknown cell 'lstm2'"),
        ({"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity='relu' is for the vanilla RNN"),
        ({"cell": "gru", "nonlinearity": "relu"}, "GRU cells have sigmoid gates"),
        ({"cell": "lstm", "reset_after": False}, "reset_after=False is a GRU setting"),
        ({"reset_after": True}, "reset_after=True is a GRU setting"),
        ({"cell": "gru", "reset_after": 1}, "reset_after must be True or False"),
    ],
)
def test_bad_values_are_named(kwargs: dict, message: str) -> None:
    base = {"input_size": 2, "hidden_size": 4}
    with pytest.raises(rb.SpecError, match=message) as info:
        rb.RNNSpec(**{**base, **kwargs})
    assert "Hint:" in str(info.value)


def test_json_round_trip_and_unknown_field() -> None:
    spec = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, nonlinearity="relu", bias=False)
    assert rb.RNNSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(rb.SpecError, match="unknown RNNSpec field"):
        rb.RNNSpec.from_dict({**spec.to_dict(), "dropout": 0.1})


def test_gated_cells_count_their_gates() -> None:
    # As Keras' count_params() counts them: (I + H) * G * H kernels, G * H biases, and a second
    # G * H bias for a reset-after GRU (its recurrent n bias sits inside the reset gate).
    lstm = rb.RNNSpec(3, 5, cell="lstm")
    assert lstm.gates == 4 and lstm.state_names == ("h", "c")
    assert lstm.num_parameters == (3 + 5) * 20 + 20
    assert lstm.flops_per_step == 2 * (3 + 5) * 20
    gru = rb.RNNSpec(3, 5, cell="gru")
    assert gru.reset_after is True and gru.gates == 3 and gru.state_names == ("h",)
    assert gru.num_parameters == (3 + 5) * 15 + 2 * 15
    before = rb.RNNSpec(3, 5, cell="gru", reset_after=False)
    assert before.num_parameters == (3 + 5) * 15 + 15
    assert before.cell_label == "gru(reset-before)" and gru.cell_label == "gru"
    stacked = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, cell="lstm", bias=False)
    assert stacked.num_parameters == 2 * (3 + 5) * 20 + 2 * (10 + 5) * 20
    assert stacked.flops(2, 7) == 2 * 7 * stacked.flops_per_step
    assert rb.RNNSpec(3, 5).reset_after is None


def test_gru_default_is_reset_after_and_round_trips() -> None:
    # None normalises to True for a GRU, so a spec read back from a file compares equal.
    assert rb.RNNSpec(3, 5, cell="gru") == rb.RNNSpec(3, 5, cell="gru", reset_after=True)
    for spec in (
        rb.RNNSpec(3, 5, cell="gru", reset_after=False),
        rb.RNNSpec(3, 5, cell="lstm", num_layers=2),
    ):
        assert rb.RNNSpec.from_dict(spec.to_dict()) == spec
    # A file written before gated cells existed has no reset_after and still reads.
    old = {k: v for k, v in rb.RNNSpec(3, 5).to_dict().items() if k != "reset_after"}
    assert rb.RNNSpec.from_dict(old) == rb.RNNSpec(3, 5)
    assert rb.RNNSpec(3, 5, cell="lstm").describe() == "LSTM I=3 H=5"
    assert rb.RNNSpec(3, 5, cell="gru", reset_after=False).describe() == "GRU(RESET-BEFORE) I=3 H=5"
