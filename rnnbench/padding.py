"""Variable-length batches: which steps of each row are real, and what a layer writes at the rest.

A batch says it in one of two ways:

- ``lengths``: a (batch,) integer array, ``1 <= lengths[b] <= T``; row b is right-padded after
  its first ``lengths[b]`` steps. The canonical result (every backend returns it): outputs past a
  row's length are zero; the final state is the state after the row's last real step; the
  reverse direction of a row starts at its own last real step (``lengths[b] - 1``), not at the
  padding, and its final state is the state after step 0.
- ``mask``: a (batch, T) boolean array, True where a step is real, holes anywhere (Keras'
  semantics). A masked step leaves the state as it was, and its output repeats the previous
  output of that direction (zeros before the first real step). Keras' ``Bidirectional`` writes
  zeros at masked steps instead (it forces ``zero_output_for_mask``); a cell says which it
  writes (``BaseCell.mask_output``) and ``compare`` checks masked steps against that.

Right-padding by lengths is the mask ``t < lengths[b]`` with zeros written at masked steps, so
one masked scan (``rnnbench.reference``) computes both. Only the final layer's outputs at masked
steps depend on what is written there: every layer above reads them at steps it masks too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.arrays import to_numpy
from rnnbench.errors import DTypeError, ShapeError

# What a layer writes at a masked step: zeros, or the previous output of its direction again.
MASKED_OUTPUTS = ("zero", "repeat")


@dataclass(frozen=True)
class Padding:
    """A checked padding of one batch: the (batch, time) mask of real steps, the lengths when it
    came as lengths (right-padded rows), and what the canonical forward writes at masked steps."""

    mask: np.ndarray
    lengths: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return "lengths" if self.lengths is not None else "mask"

    @property
    def masked_output(self) -> str:
        """Canonical output at masked steps: zeros past a length, Keras' repeat for a mask."""
        return "zero" if self.lengths is not None else "repeat"

    def arguments(self) -> dict[str, np.ndarray]:
        """The keyword ``forward`` took it as: ``{"lengths": ...}`` or ``{"mask": ...}``."""
        if self.lengths is not None:
            return {"lengths": self.lengths}
        return {"mask": self.mask}

    def describe(self) -> str:
        if self.lengths is not None:
            return f"lengths {int(self.lengths.min())}..{int(self.lengths.max())}"
        real = int(self.mask.sum())
        return f"mask ({real}/{self.mask.size} steps real)"

    def to_dict(self) -> dict[str, Any]:
        if self.lengths is not None:
            return {"kind": "lengths", "lengths": [int(v) for v in self.lengths]}
        return {"kind": "mask", "mask": self.mask.astype(int).tolist()}


def check_lengths(lengths: Any, batch: int, time: int) -> np.ndarray:
    """``lengths`` as a (batch,) int64 array, each in [1, time]; a clear error otherwise."""
    arr = to_numpy(lengths)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)):
            whole = bool(np.all(arr == np.round(arr)))
            extra = " (whole numbers, but a float dtype)" if whole else ""
        else:
            extra = ""
        raise DTypeError(
            f"lengths has dtype {arr.dtype}{extra}; sequence lengths are integers",
            "pass lengths as an integer array, e.g. np.array([5, 3], dtype=np.int64)",
        )
    if arr.shape != (batch,):
        raise ShapeError(
            f"lengths has shape {arr.shape}; expected ({batch},): one length per row of x",
            f"pass one length per sequence in the batch ({batch} of them)",
        )
    low, high = int(arr.min()), int(arr.max())
    if low < 1:
        row = int(np.argmin(arr))
        raise ShapeError(
            f"lengths[{row}] is {low}; every sequence needs at least one real step "
            f"(1 <= length <= T={time})",
            "drop empty sequences from the batch, or give them length 1",
        )
    if high > time:
        row = int(np.argmax(arr))
        raise ShapeError(
            f"lengths[{row}] is {high}, longer than x's {time} time steps",
            f"lengths count real steps of x (batch, time, features): at most T={time}",
        )
    return arr.astype(np.int64)


def check_mask(mask: Any, batch: int, time: int) -> np.ndarray:
    """``mask`` as a (batch, time) boolean array; a clear error otherwise."""
    arr = to_numpy(mask)
    if arr.dtype.kind != "b":
        raise DTypeError(
            f"mask has dtype {arr.dtype}; a mask is boolean (True where a step is real)",
            "pass mask as a bool array, e.g. mask.astype(bool), or pass lengths for "
            "right-padded rows",
        )
    if arr.shape != (batch, time):
        raise ShapeError(
            f"mask has shape {arr.shape}; expected (batch, time) = ({batch}, {time}) like x's "
            "first two axes",
            "one flag per step of each sequence (a per-feature mask is not supported)",
        )
    return np.ascontiguousarray(arr)


def lengths_mask(lengths: np.ndarray, time: int) -> np.ndarray:
    """The (batch, time) mask of right-padded rows of the given lengths."""
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def check_padding(lengths: Any, mask: Any, batch: int, time: int) -> Padding | None:
    """The checked padding of a batch, or None when neither ``lengths`` nor ``mask`` is given."""
    if lengths is not None and mask is not None:
        raise ShapeError(
            "both lengths and mask were given; a batch is padded one way",
            "pass lengths for right-padded rows, or mask for steps masked anywhere",
        )
    if lengths is not None:
        checked = check_lengths(lengths, batch, time)
        return Padding(mask=lengths_mask(checked, time), lengths=checked)
    if mask is not None:
        return Padding(mask=check_mask(mask, batch, time))
    return None


def empty_rows(padding: Padding) -> list[int]:
    """Rows of a mask with no real step at all."""
    return [int(b) for b in np.nonzero(~padding.mask.any(axis=1))[0]]


def as_written(y: np.ndarray, padding: Padding | None, masked_output: str) -> np.ndarray:
    """A canonical output ``y`` as a layer that writes ``masked_output`` at masked steps
    returns it. Zeros are the only rewrite needed: every canonical output writes either zeros or
    the repeated output, and a layer that repeats matches the canonical mask output."""
    if padding is None or masked_output == padding.masked_output:
        return y
    if masked_output == "zero":
        return np.where(padding.mask[:, :, None], y, 0.0)
    raise ValueError(f"cannot derive {masked_output!r} outputs from {padding.masked_output!r}")


def random_lengths(batch: int, time: int, low: int, high: int, seed: int = 0) -> np.ndarray:
    """Lengths drawn uniformly in [low, high] (clipped to [1, time]), repeatable by seed; the
    first row has the longest length drawn so that every batch uses all ``high`` steps."""
    low, high = max(1, min(low, time)), max(1, min(high, time))
    rng = np.random.default_rng(seed)
    out = rng.integers(low, high + 1, size=batch)
    out[0] = high
    return out.astype(np.int64)


def random_mask(batch: int, time: int, seed: int = 0, keep: float = 0.7) -> np.ndarray:
    """A mask with holes anywhere (each step real with probability ``keep``), every row with at
    least one real step, and a leading and a trailing masked run in some rows: the cases where
    a wrong masked-step rule shows."""
    rng = np.random.default_rng(seed)
    mask = rng.random((batch, time)) < keep
    if time > 2:
        mask[0, 0] = False  # a masked first step: the output before any real one is zeros
        mask[-1, -1] = False  # a masked last step: the reverse direction starts on a hole
    for b in range(batch):
        if not mask[b].any():
            mask[b, rng.integers(time)] = True
    return mask
