"""Gate orders: which block of a gated cell's stacked arrays is which gate, in every library.

The canonical arrays (``w_ih`` (I, G*H), ``w_hh`` (H, G*H), ``b_ih``, ``b_hh`` (G*H,)) stack the
gate blocks along their last axis in PyTorch's order:

- LSTM (G = 4), blocks ``i, f, g, o``::

      a = x @ w_ih + b_ih + h @ w_hh + b_hh;  i, f, g, o = split(a, 4)
      c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')

- GRU (G = 3), blocks ``r, z, n``; ``xi = x @ w_ih + b_ih`` and ``hh = h @ w_hh + b_hh``::

      r = sigmoid(xi_r + hh_r);  z = sigmoid(xi_z + hh_z);  h' = (1 - z) * n + z * h
      reset_after=True:   n = tanh(xi_n + r * (h @ w_hh_n + b_hh_n))
      reset_after=False:  n = tanh(xi_n + (r * h) @ w_hh_n + b_hh_n)

  With ``reset_after=False`` the ``n`` block of ``b_hh`` sits outside the reset gate, so only
  ``b_ih_n + b_hh_n`` matters (one-bias libraries hold that sum); with ``reset_after=True`` it
  sits inside, and the two ``n`` biases are not interchangeable.

- The vanilla RNN (G = 1) has one block, ``h``.

Each library stacks the same blocks in its own order (checked numerically against each library's
own layer by the tests). Every converter in :mod:`rnnbench.layouts` reorders through this table,
so a gate order is stated exactly once.
"""

from __future__ import annotations

import numpy as np

from rnnbench.errors import LayoutError

# cell -> the canonical block names, in order.
CANONICAL: dict[str, tuple[str, ...]] = {
    "rnn": ("h",),
    "lstm": ("i", "f", "g", "o"),  # input, forget, candidate ("cell"), output
    "gru": ("r", "z", "n"),  # reset, update, candidate ("new")
}

# (library, cell) -> the canonical block names in the library's stacking order. The library's own
# letters differ (Keras LSTM calls g "c", TF1 calls it "j"; Keras and ONNX GRU call z, r, n
# "z, r, h"; TF1 GRUCell calls z "u"); the table maps them onto canonical names.
ORDERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "lstm"): ("i", "f", "g", "o"),
    ("torch", "gru"): ("r", "z", "n"),
    ("keras", "lstm"): ("i", "f", "g", "o"),  # Keras: i, f, c, o
    ("keras", "gru"): ("z", "r", "n"),  # Keras: z, r, h
    ("tf1", "lstm"): ("i", "g", "f", "o"),  # TF1 LSTMCell: i, j, f, o
    # TF1 GRUCell holds two kernels: gates/kernel stacks [r | u] and candidate/kernel holds n.
    ("tf1", "gru"): ("r", "z", "n"),
    ("onnx", "lstm"): ("i", "o", "f", "g"),  # ONNX: i, o, f, c
    ("onnx", "gru"): ("z", "r", "n"),  # ONNX: z, r, h
    ("jax", "lstm"): ("i", "f", "g", "o"),  # this project's scan uses the canonical arrays
    ("jax", "gru"): ("r", "z", "n"),
}

LIBRARIES = ("torch", "keras", "tf1", "onnx", "jax")


def order(library: str, cell: str) -> tuple[str, ...]:
    """The canonical block names in ``library``'s stacking order for ``cell``."""
    if cell == "rnn":
        return CANONICAL["rnn"]
    try:
        return ORDERS[(library, cell)]
    except KeyError:
        raise LayoutError(
            f"no gate order is known for {cell!r} in {library!r}",
            f"libraries with gate orders: {', '.join(LIBRARIES)}",
        ) from None


def blocks(a: np.ndarray, cell: str, axis: int = -1) -> dict[str, np.ndarray]:
    """Canonical array ``a`` split into its named gate blocks along ``axis``."""
    names = CANONICAL[cell]
    parts = _split(a, len(names), axis, cell)
    return dict(zip(names, parts))


def to_library(a: np.ndarray, library: str, cell: str, axis: int = -1) -> np.ndarray:
    """Reorder the gate blocks of canonical ``a`` (along ``axis``) into ``library``'s order."""
    named = blocks(np.asarray(a), cell, axis)
    return np.concatenate([named[n] for n in order(library, cell)], axis=axis)


def from_library(a: np.ndarray, library: str, cell: str, axis: int = -1) -> np.ndarray:
    """Reorder the ``library``-ordered gate blocks of ``a`` (along ``axis``) canonically."""
    names = order(library, cell)
    named = dict(zip(names, _split(np.asarray(a), len(names), axis, cell)))
    return np.concatenate([named[n] for n in CANONICAL[cell]], axis=axis)


def _split(a: np.ndarray, count: int, axis: int, cell: str) -> list[np.ndarray]:
    width = a.shape[axis]
    if width % count:
        raise LayoutError(
            f"an axis of {width} cannot hold the {count} gate blocks of a {cell.upper()}",
            f"a {cell.upper()} array stacks {count} blocks of hidden_size along that axis",
        )
    return [np.ascontiguousarray(p) for p in np.split(a, count, axis=axis)]
