"""A ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dict saved with ``torch.save``
(``.pt``/``.pth``).

Read with ``torch.load(weights_only=True)`` only: a file that needs anything beyond tensors and
plain containers to unpickle is refused, never retried unsafely (an unsafe load would run
whatever code the pickle names). The state dict records both biases but not the nonlinearity
(``--nonlinearity``, tanh by default); the cell is read off the shapes (``weight_hh_l0`` is
(G * H, H): G = 1 for nn.RNN, 4 for nn.LSTM, 3 for nn.GRU). nn.GRU is reset-after only, so a
reset-before GRU cannot be written; an LSTM with ``proj_size`` (``weight_hr`` keys) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError, ShapeError, SpecError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False


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
    try:
        # The cell comes from the shapes: weight_hh_l0 is (G * H, H), G = 1, 4 or 3.
        weights = RNNWeights.from_torch(state, nonlinearity=nonlinearity, prefix=prefix)
    except (LayoutError, ShapeError, SpecError) as exc:
        raise type(exc)(f"{path}: {str(exc).splitlines()[0]}", exc.hint) from exc
    return with_nonlinearity(weights, nonlinearity, False, path)


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    torch = import_library("torch", "torch")
    native = weights.to_torch()  # refuses a reset-before GRU: nn.GRU is reset-after only
    state: dict[str, Any] = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in native.items()}
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)
    return [f"load it with {torch_module_code(weights.spec)}.load_state_dict(torch.load(path))"]


def torch_module_code(spec: RNNSpec) -> str:
    """The ``torch.nn`` constructor call whose state dict the file is."""
    args = [str(spec.input_size), str(spec.hidden_size)]
    if spec.num_layers > 1:
        args.append(f"num_layers={spec.num_layers}")
    if spec.cell == "rnn" and spec.nonlinearity != "tanh":
        args.append(f"nonlinearity='{spec.nonlinearity}'")
    if not spec.bias:
        args.append("bias=False")
    if spec.bidirectional:
        args.append("bidirectional=True")
    name = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[spec.cell]
    return f"nn.{name}({', '.join(args)})"
