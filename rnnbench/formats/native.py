"""rnnbench's own files: ``.npz`` and ``.safetensors`` with the spec inside (RNNWeights.save/load).
They record everything: the cell and a GRU's formula, both biases, the nonlinearity, the dtype.
Files written before the gated cells (a spec without ``cell`` and ``reset_after``) read as the
vanilla RNN they are."""

from __future__ import annotations

from pathlib import Path

from rnnbench.formats._common import with_nonlinearity
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = True


def two_biases(spec: RNNSpec) -> bool:
    return True


def read(
    path: Path,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
) -> RNNWeights:
    return with_nonlinearity(RNNWeights.load(path), nonlinearity, True, path)


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    weights.save(path)  # atomic already (rnnbench.weightio)
    return []
