"""The shape of a recurrent layer, independent of any library."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rnnbench.errors import SpecError

NONLINEARITIES = ("tanh", "relu")
# Cell name -> how many gate blocks its arrays stack along the hidden axis (see gates.py for
# their order). Every cell keeps the same four canonical arrays, G * hidden wide.
CELLS: dict[str, int] = {"rnn": 1, "lstm": 4, "gru": 3}

Nonlinearity = Literal["tanh", "relu"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(
            f"RNNSpec.{name} must be an int, got {type(value).__name__} {value!r}",
            f"pass a whole number >= 1, e.g. {name}=4",
        )
    if value < 1:
        raise SpecError(f"RNNSpec.{name} must be >= 1, got {value}", f"pass {name}=1 or more")
    return value


@dataclass(frozen=True)
class RNNSpec:
    """One (possibly stacked, possibly bidirectional) recurrent layer: a vanilla RNN, an LSTM or
    a GRU.

    ``cell="rnn"``: ``h_t = act(x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh)``, act = tanh or relu.
    ``cell="lstm"`` and ``cell="gru"``: the gated formulas of :mod:`rnnbench.gates` (sigmoid
    gates, tanh candidate; ``nonlinearity`` must stay "tanh"). ``reset_after`` is the GRU's
    formula: True (PyTorch, Keras' default, ONNX ``linear_before_reset=1``) applies the reset
    gate after the recurrent product, False (Keras ``reset_after=False``, TF1 ``GRUCell``,
    ONNX's default) before it. It is None for the other cells, and a GRU's None means True.
    Layer k > 0 reads the (concatenated, for bidirectional) outputs of layer k - 1.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    nonlinearity: Nonlinearity = "tanh"
    bias: bool = True
    cell: str = "rnn"
    reset_after: bool | None = None

    def __post_init__(self) -> None:
        _positive_int("input_size", self.input_size)
        _positive_int("hidden_size", self.hidden_size)
        _positive_int("num_layers", self.num_layers)
        for flag in ("bidirectional", "bias"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(
                    f"RNNSpec.{flag} must be True or False, got {getattr(self, flag)!r}",
                    f"pass {flag}=True or {flag}=False",
                )
        if self.nonlinearity not in NONLINEARITIES:
            raise SpecError(
                f"unknown nonlinearity {self.nonlinearity!r}",
                f"use one of {', '.join(NONLINEARITIES)}",
            )
        if self.cell not in CELLS:
            raise SpecError(f"unknown cell {self.cell!r}", f"use one of {', '.join(CELLS)}")
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise SpecError(
                f"nonlinearity={self.nonlinearity!r} is for the vanilla RNN; {self.cell.upper()} "
                "cells have sigmoid gates and a tanh candidate",
                "drop nonlinearity (or use cell='rnn' for a relu RNN)",
            )
        if self.cell == "gru":
            if self.reset_after is None:
                object.__setattr__(self, "reset_after", True)  # PyTorch's and Keras' default
            elif not isinstance(self.reset_after, bool):
                raise SpecError(
                    f"RNNSpec.reset_after must be True or False, got {self.reset_after!r}",
                    "pass reset_after=True (PyTorch, Keras default) or False (TF1 GRUCell)",
                )
        elif self.reset_after is not None:
            raise SpecError(
                f"reset_after={self.reset_after!r} is a GRU setting; cell={self.cell!r} has none",
                "drop reset_after, or use cell='gru'",
            )

    # --- derived sizes -------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gates(self) -> int:
        """How many gate blocks are stacked along the hidden axis (1 for the vanilla cell)."""
        return CELLS[self.cell]

    @property
    def output_size(self) -> int:
        """Feature size of the layer's output sequence: directions * hidden."""
        return self.num_directions * self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        """Input feature size of layer ``layer``: the spec's input for layer 0, else the output
        of the layer below."""
        if not 0 <= layer < self.num_layers:
            raise SpecError(
                f"layer {layer} is out of range for num_layers={self.num_layers}",
                f"use 0 <= layer < {self.num_layers}",
            )
        return self.input_size if layer == 0 else self.output_size

    @property
    def num_biases(self) -> int:
        """Bias vectors (G * hidden wide) whose values matter apart: 2 for a reset-after GRU,
        whose recurrent candidate bias sits inside the reset gate; 1 otherwise (two biases of
        the other cells only act through their sum)."""
        return 2 if self.cell == "gru" and self.reset_after else 1

    @property
    def num_parameters(self) -> int:
        """Trainable parameters as Keras counts them (``count_params()``): per layer and
        direction a kernel of I+H rows and G*H columns, and ``num_biases`` biases of G*H (the
        seed's rule for the vanilla RNN). PyTorch holds two biases for every cell."""
        gh = self.gates * self.hidden_size
        total = 0
        for layer in range(self.num_layers):
            rows = self.layer_input_size(layer) + self.hidden_size
            per_dir = rows * gh + (self.num_biases * gh if self.bias else 0)
            total += per_dir * self.num_directions
        return total

    @property
    def flops_per_step(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one time step for batch 1, every layer and direction:
        2 * (I_layer + H) * H * gates. Bias adds, the gates' element-wise work and the
        nonlinearities are not counted, as is usual for roofline figures (they are O(H), not
        O(H^2))."""
        g = self.gates
        return (
            sum(
                2 * (self.layer_input_size(layer) + self.hidden_size) * g * self.hidden_size
                for layer in range(self.num_layers)
            )
            * self.num_directions
        )

    def flops(self, batch: int, seq_len: int) -> int:
        """FLOPs of a whole forward pass: 2 * B * T * (I + H) * G * H per layer and direction."""
        return batch * seq_len * self.flops_per_step

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNNSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SpecError(
                f"unknown RNNSpec field(s): {', '.join(sorted(unknown))}",
                f"known fields are {', '.join(sorted(known))}",
            )
        return cls(**data)

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state a forward pass carries: ("h",), or ("h", "c") for an LSTM."""
        return ("h", "c") if self.cell == "lstm" else ("h",)

    @property
    def cell_label(self) -> str:
        """The cell with its formula variant: "rnn", "lstm", "gru" or "gru(reset-before)"."""
        if self.cell == "gru" and not self.reset_after:
            return "gru(reset-before)"
        return self.cell

    def describe(self) -> str:
        parts = [] if self.cell == "rnn" else [self.cell_label.upper()]
        parts += [f"I={self.input_size}", f"H={self.hidden_size}"]
        if self.num_layers > 1:
            parts.append(f"layers={self.num_layers}")
        if self.bidirectional:
            parts.append("bidirectional")
        if self.cell == "rnn":
            parts.append(self.nonlinearity)
        if not self.bias:
            parts.append("no bias")
        return " ".join(parts)
