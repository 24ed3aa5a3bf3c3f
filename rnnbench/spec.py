"""The shape of a recurrent layer, independent of any library."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rnnbench.errors import SpecError

NONLINEARITIES = ("tanh", "relu")
# Gated cells (LSTM, GRU) will stack their gates along the hidden axis of the same four
# canonical arrays; only the vanilla cell is built so far, so only "rnn" is accepted.
CELLS: dict[str, int] = {"rnn": 1}
PLANNED_CELLS = ("lstm", "gru")

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
    """One (possibly stacked, possibly bidirectional) vanilla RNN layer.

    ``h_t = act(x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh)`` for each layer and direction; layer
    k > 0 reads the (concatenated, for bidirectional) outputs of layer k - 1.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    nonlinearity: Nonlinearity = "tanh"
    bias: bool = True
    cell: str = "rnn"

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
            planned = " (planned, not built yet)" if self.cell in PLANNED_CELLS else ""
            raise SpecError(
                f"unknown cell {self.cell!r}{planned}",
                f"use one of {', '.join(CELLS)}",
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
    def num_parameters(self) -> int:
        """Trainable parameters in one-bias form (the seed's rule: a kernel of I+N rows and N
        columns and N biases, per layer and direction). Two-bias libraries hold N more each."""
        g = self.gates
        total = 0
        for layer in range(self.num_layers):
            rows = self.layer_input_size(layer) + self.hidden_size
            per_dir = rows * g * self.hidden_size + (g * self.hidden_size if self.bias else 0)
            total += per_dir * self.num_directions
        return total

    @property
    def flops_per_step(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one time step for batch 1, every layer and direction:
        2 * (I_layer + H) * H * gates. Bias adds and the nonlinearity are not counted, as is usual
        for roofline figures (they are O(H), not O(H^2))."""
        g = self.gates
        return (
            sum(
                2 * (self.layer_input_size(layer) + self.hidden_size) * g * self.hidden_size
                for layer in range(self.num_layers)
            )
            * self.num_directions
        )

    def flops(self, batch: int, seq_len: int) -> int:
        """FLOPs of a whole forward pass: 2 * B * T * (I + H) * H per layer and direction."""
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

    def describe(self) -> str:
        parts = [f"I={self.input_size}", f"H={self.hidden_size}"]
        if self.num_layers > 1:
            parts.append(f"layers={self.num_layers}")
        if self.bidirectional:
            parts.append("bidirectional")
        parts.append(self.nonlinearity)
        if not self.bias:
            parts.append("no bias")
        return " ".join(parts)
