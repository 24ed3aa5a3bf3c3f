"""rnnbench's own files: ``.npz`` and ``.safetensors`` with the spec inside (RNNWeights.save/load).
They record everything: both biases, the nonlinearity, the dtype."""

from __future__ import annotations

from pathlib import Path

from rnnbench.formats._common import with_nonlinearity
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = True
TWO_BIASES = True


def read(path: Path, *, nonlinearity: str | None = None, prefix: str | None = None) -> RNNWeights:
    return with_nonlinearity(RNNWeights.load(path), nonlinearity, True, path)


def write(weights: RNNWeights, path: Path) -> list[str]:
    weights.save(path)  # atomic already (rnnbench.weightio)
    return []
