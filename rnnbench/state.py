"""The recurrent state a forward pass takes and returns, for every cell.

Public form (as ``torch.nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` take and return it): one array
``h`` of shape (layers*dirs, batch, hidden) for the vanilla RNN and the GRU; a pair ``(h, c)`` of
such arrays for the LSTM. Inside rnnbench every state is handled as a tuple of arrays in the
order of ``spec.state_names`` ("h", or "h", "c"), so that code is written once for all cells.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from rnnbench.arrays import check_shape, float_array
from rnnbench.errors import ShapeError
from rnnbench.spec import RNNSpec

State = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]  # noqa: UP007 - a runtime alias


def state_shape(spec: RNNSpec, batch: int) -> tuple[int, int, int]:
    return (spec.num_layers * spec.num_directions, batch, spec.hidden_size)


def as_tuple(spec: RNNSpec, state: Any) -> tuple[np.ndarray, ...]:
    """The public state (an array, or an LSTM's pair) as a tuple in ``spec.state_names`` order."""
    if spec.cell == "lstm":
        return tuple(state)
    return (state,)


def from_tuple(spec: RNNSpec, states: tuple[Any, ...] | list[Any]) -> Any:
    """The inverse of :func:`as_tuple`: a tuple for the LSTM, the one array otherwise."""
    return tuple(states) if spec.cell == "lstm" else states[0]


def zeros(spec: RNNSpec, batch: int, dtype: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.zeros(state_shape(spec, batch), dtype) for _ in spec.state_names)


def check_state(spec: RNNSpec, h0: Any, batch: int, dtype: Any) -> tuple[np.ndarray, ...] | None:
    """Validate and cast an initial state; None stays None (zeros)."""
    if h0 is None:
        return None
    shape = state_shape(spec, batch)
    if spec.cell == "lstm":
        if not isinstance(h0, (tuple, list)) or len(h0) != 2:
            raise ShapeError(
                f"an LSTM's initial state is a pair (h0, c0); got {type(h0).__name__}"
                + (f" of {len(h0)}" if isinstance(h0, (tuple, list)) else ""),
                f"pass h0=(h0, c0), each of shape {shape}, as torch.nn.LSTM takes it",
            )
        names: tuple[str, ...] = ("h0", "c0")
    else:
        if isinstance(h0, (tuple, list)) and len(h0) == 2 and hasattr(h0[0], "shape"):
            raise ShapeError(
                f"a {spec.cell.upper()} state is one array; got a pair (that is an LSTM's (h, c))",
                f"pass h0 of shape {shape}",
            )
        h0, names = (h0,), ("h0",)
    out = []
    for name, value in zip(names, h0):
        arr = float_array(name, value, dtype)
        check_shape(name, arr, shape)
        out.append(np.ascontiguousarray(arr))
    return tuple(out)
