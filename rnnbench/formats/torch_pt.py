"""A ``torch.nn.RNN`` state dict saved with ``torch.save`` (``.pt``/``.pth``).

Read with ``torch.load(weights_only=True)`` only: a file that needs anything beyond tensors and
plain containers to unpickle is refused, never retried unsafely (an unsafe load would run
whatever code the pickle names). The state dict records both biases but not the nonlinearity
(``--nonlinearity``, tanh by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False
TWO_BIASES = True
_GATED = {3: "a GRU (3 gate blocks)", 4: "an LSTM (4 gate blocks)"}


def read(path: Path, *, nonlinearity: str | None = None, prefix: str | None = None) -> RNNWeights:
    torch = import_library("torch", "torch")
    require_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... by cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightFileError(
            f"{path}: torch.load(weights_only=True) refused it ({type(exc).__name__}: {first})",
            "rnnbench reads only plain state dicts and never unpickles unsafely; save one with "
            "torch.save(rnn.state_dict(), path)",
        ) from exc
    if not isinstance(obj, dict):
        raise WeightFileError(
            f"{path} holds a {type(obj).__name__}, not a state dict",
            "save the module's state dict: torch.save(rnn.state_dict(), path)",
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if prefix is not None:
        state = {k: v for k, v in state.items() if k.startswith(prefix)}
    for key, value in state.items():
        if key.endswith("weight_hh_l0") and value.ndim == 2 and value.shape[1] > 0:
            gates = value.shape[0] // value.shape[1]
            if value.shape[0] % value.shape[1] == 0 and gates in _GATED:
                raise LayoutError(
                    f"{path}: {key} has shape {tuple(value.shape)}, the state dict of "
                    f"{_GATED[gates]}, not of a vanilla nn.RNN",
                    "rnnbench converts nn.RNN (tanh/relu) weights; LSTM and GRU are planned",
                )
    try:
        weights = RNNWeights.from_torch(state, nonlinearity=nonlinearity or "tanh", prefix=prefix)
    except LayoutError as exc:
        raise LayoutError(f"{path}: {str(exc).splitlines()[0]}", exc.hint) from exc
    return with_nonlinearity(weights, nonlinearity, False, path)


def write(weights: RNNWeights, path: Path) -> list[str]:
    torch = import_library("torch", "torch")
    state: dict[str, Any] = {
        k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.to_torch().items()
    }
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)
    return []
