"""Array checks shared by the weights, the harness and the adapters (NumPy only).

Library tensors are accepted by duck typing (``.detach()``, ``.numpy()``, ``__array__``) so that
the core never imports a framework to read one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnbench.errors import DTypeError, NonFiniteError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array from a NumPy array, a torch tensor, a TF/JAX array or a nested list."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        return np.asarray(value.numpy())
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor, tf.Variable
        return np.asarray(value.numpy())
    return np.asarray(value)


def resolve_dtype(dtype: Any) -> np.dtype:
    """float32 or float64, from any spelling NumPy understands ('float32', np.float64, ...)."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"unknown dtype {dtype!r}", "use 'float32' or 'float64'") from exc
    if resolved not in FLOAT_DTYPES:
        raise DTypeError(
            f"dtype {resolved} is not supported", "rnnbench computes in 'float32' or 'float64'"
        )
    return resolved


def float_array(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a finite float32/float64 NumPy array (cast to ``dtype`` when given)."""
    arr = to_numpy(value)
    if arr.dtype.kind not in "fiu":
        raise DTypeError(
            f"{name} has dtype {arr.dtype}, not a real number type",
            f"pass {name} as a float32 or float64 array",
        )
    if dtype is not None:
        arr = arr.astype(resolve_dtype(dtype), copy=False)
    elif arr.dtype not in FLOAT_DTYPES:
        arr = arr.astype(np.float64 if arr.dtype.itemsize > 4 else np.float32)
    check_finite(name, arr)
    return arr


def check_finite(name: str, arr: np.ndarray) -> None:
    """Refuse NaN and infinity, naming the first bad index."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        count = int((~finite).sum())
        index = tuple(int(i) for i in bad)
        raise NonFiniteError(
            f"{name} holds {count} non-finite value(s); the first is {arr[index]} at index {index}",
            f"check how {name} was produced; rnnbench only runs on finite numbers",
        )


def check_shape(name: str, arr: np.ndarray, expected: Sequence[int | None]) -> None:
    """Check ``arr.shape`` against ``expected`` (None matches any size on that axis)."""
    want = tuple(expected)
    got = arr.shape
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        shown = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
        raise ShapeError(
            f"{name} has shape {got}, expected {shown}",
            f"pass {name} with shape {shown}",
        )
