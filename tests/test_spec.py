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
        ({"cell": "lstm"}, "planned, not built yet"),
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
