"""Canonical weights: one set of NumPy arrays per layer and direction, for every cell.

Vanilla RNN: ``h_t = act(x_t @ w_ih + b_ih + h_{t-1} @ w_hh + b_hh)`` with ``w_ih`` of shape
(input, hidden), ``w_hh`` (hidden, hidden), ``b_ih`` and ``b_hh`` (hidden,). An LSTM (4 gates)
or a GRU (3 gates) keeps the same four arrays with its gate blocks stacked along the last axis
(width ``gates * hidden``) in PyTorch's order (LSTM i, f, g, o; GRU r, z, n), with the formulas
:mod:`rnnbench.gates` states. Keeping PyTorch's and ONNX's two biases makes their round trips
exact; a one-bias library receives their sum (exact for every cell except the reset-after
GRU, whose recurrent candidate bias sits inside the reset gate, so Keras keeps both).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from rnnbench import layouts, weightio
from rnnbench.arrays import check_shape, float_array, resolve_dtype
from rnnbench.errors import LayoutError, SpecError
from rnnbench.spec import RNNSpec

DIRECTION_NAMES = ("forward", "reverse")
ARRAY_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh")


@dataclass(frozen=True)
class DirectionWeights:
    """The four canonical arrays of one layer and direction."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.w_ih, self.w_hh, self.b_ih, self.b_hh)

    @property
    def bias(self) -> np.ndarray:
        """The one bias of one-bias layouts: ``b_ih + b_hh``."""
        return self.b_ih + self.b_hh


class RNNWeights:
    """Weights of every layer and direction of an :class:`RNNSpec`, in the canonical layout.

    All arrays share one dtype (float32 or float64), are finite, and are never modified in place
    by rnnbench (adapters copy them into their library).
    """

    def __init__(
        self,
        spec: RNNSpec,
        layers: Sequence[Sequence[DirectionWeights]],
        dtype: Any = None,
    ) -> None:
        if not isinstance(spec, RNNSpec):
            raise SpecError(
                f"spec must be an RNNSpec, got {type(spec).__name__}",
                "build one with rnnbench.RNNSpec(input_size=..., hidden_size=...)",
            )
        if len(layers) != spec.num_layers:
            raise LayoutError(
                f"got weights for {len(layers)} layer(s), the spec has {spec.num_layers}",
                "pass one entry per layer",
            )
        if dtype is None:
            first = layers[0][0].w_ih if layers and layers[0] else np.zeros(0, np.float32)
            dtype = np.asarray(first).dtype
            if dtype not in (np.float32, np.float64):
                dtype = np.float32
        self.spec = spec
        self.dtype = resolve_dtype(dtype)
        checked: list[tuple[DirectionWeights, ...]] = []
        gh = spec.gates * spec.hidden_size
        for k, directions in enumerate(layers):
            if len(directions) != spec.num_directions:
                raise LayoutError(
                    f"layer {k} has {len(directions)} direction(s), the spec has "
                    f"{spec.num_directions}",
                    "pass [forward] or [forward, reverse] per layer, to match bidirectional",
                )
            row = []
            for d, dw in enumerate(directions):
                where = f"layer {k} {DIRECTION_NAMES[d]}"
                expected = {
                    "w_ih": (spec.layer_input_size(k), gh),
                    "w_hh": (spec.hidden_size, gh),
                    "b_ih": (gh,),
                    "b_hh": (gh,),
                }
                arrs = {}
                for name in ARRAY_NAMES:
                    arr = float_array(f"{where} {name}", getattr(dw, name), self.dtype)
                    check_shape(f"{where} {name}", arr, expected[name])
                    arr = np.ascontiguousarray(arr)
                    arr.setflags(write=False)
                    arrs[name] = arr
                if not spec.bias and (arrs["b_ih"].any() or arrs["b_hh"].any()):
                    raise LayoutError(
                        f"{where} has non-zero biases but the spec says bias=False",
                        "use bias=True in the spec, or zero biases",
                    )
                row.append(DirectionWeights(**arrs))
            checked.append(tuple(row))
        self.layers: tuple[tuple[DirectionWeights, ...], ...] = tuple(checked)

    # --- construction --------------------------------------------------------------------
    @classmethod
    def random(
        cls,
        spec: RNNSpec,
        seed: int = 0,
        dtype: Any = "float32",
        recurrent_norm: float | None = None,
    ) -> RNNWeights:
        """PyTorch's default init: every array uniform in [-1/sqrt(H), 1/sqrt(H)], drawn in
        float64 from ``numpy.random.default_rng(seed)`` in a fixed order (layer, direction,
        w_ih, w_hh, b_ih, b_hh), then cast to ``dtype``. Zero biases when ``spec.bias`` is False.

        ``recurrent_norm`` rescales every ``w_hh`` to that spectral norm (largest singular
        value): < 1 is contractive, 1 near-orthogonal in scale, > 1 expansive.
        """
        if not isinstance(spec, RNNSpec):
            raise SpecError(
                f"RNNWeights.random takes an RNNSpec, got {type(spec).__name__}",
                "build one with rnnbench.RNNSpec(input_size=..., hidden_size=...)"
                + (", or RNNSpec.from_dict(d) from a dict" if isinstance(spec, dict) else ""),
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SpecError(
                f"seed must be a whole number >= 0, got {seed!r}", "e.g. seed=0 (NumPy's rule)"
            )
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(spec.hidden_size)
        gh = spec.gates * spec.hidden_size
        layers = []
        for k in range(spec.num_layers):
            row = []
            for _ in range(spec.num_directions):
                w_ih = rng.uniform(-bound, bound, (spec.layer_input_size(k), gh))
                w_hh = rng.uniform(-bound, bound, (spec.hidden_size, gh))
                b_ih = rng.uniform(-bound, bound, gh)
                b_hh = rng.uniform(-bound, bound, gh)
                if not spec.bias:
                    b_ih, b_hh = np.zeros(gh), np.zeros(gh)
                row.append(DirectionWeights(w_ih, w_hh, b_ih, b_hh))
            layers.append(row)
        weights = cls(spec, layers, dtype=np.float64)
        if recurrent_norm is not None:
            weights = weights.with_recurrent_norm(recurrent_norm)
        return weights.astype(dtype)

    @classmethod
    def _from_layout(cls, spec: RNNSpec, layers: layouts.LayerArrays) -> RNNWeights:
        return cls(spec, [[DirectionWeights(*arrs) for arrs in row] for row in layers])

    @classmethod
    def from_arrays(cls, spec: RNNSpec, arrays: dict[str, Any]) -> RNNWeights:
        """From the flat name -> array mapping :meth:`arrays` returns (used by the weight files)."""
        layers = []
        for k in range(spec.num_layers):
            row = []
            for d in range(spec.num_directions):
                parts = {}
                for name in ARRAY_NAMES:
                    key = array_key(k, d, name)
                    if key not in arrays:
                        raise LayoutError(
                            f"array {key!r} is missing", "the file must hold every layer's arrays"
                        )
                    parts[name] = arrays[key]
                row.append(DirectionWeights(**parts))
            layers.append(row)
        return cls(spec, layers)

    # --- views and derived weights -------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Flat mapping ``"l{layer}.{forward|reverse}.{w_ih|w_hh|b_ih|b_hh}"`` -> array."""
        out = {}
        for k, d, dw in self.iter_directions():
            for name, arr in zip(ARRAY_NAMES, dw.arrays()):
                out[array_key(k, d, name)] = arr
        return out

    def iter_directions(self) -> Iterator[tuple[int, int, DirectionWeights]]:
        for k, row in enumerate(self.layers):
            for d, dw in enumerate(row):
                yield k, d, dw

    def __getitem__(self, index: tuple[int, int]) -> DirectionWeights:
        """``weights[layer, direction]``: direction 0 is forward, 1 reverse (bidirectional)."""
        spec = self.spec
        valid = f"layer 0..{spec.num_layers - 1}, direction " + (
            "0 (forward) or 1 (reverse)" if spec.bidirectional else "0 (forward)"
        )
        if not (
            isinstance(index, tuple)
            and len(index) == 2
            and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index)
        ):
            raise LayoutError(
                f"weights[{index!r}]: index with two whole numbers, weights[layer, direction]",
                f"this {spec.describe()} has {valid}",
            )
        layer, direction = (int(i) for i in index)
        if not (
            -spec.num_layers <= layer < spec.num_layers
            and -spec.num_directions <= direction < spec.num_directions
        ):
            raise LayoutError(
                f"weights[{layer}, {direction}] is out of range: the spec has "
                f"{spec.num_layers} layer(s) of {spec.num_directions} direction(s)",
                f"use {valid}",
            )
        return self.layers[layer][direction]

    def astype(self, dtype: Any) -> RNNWeights:
        target = resolve_dtype(dtype)
        if target == self.dtype:
            return self
        return RNNWeights(self.spec, self.layers, dtype=target)

    def recurrent_norms(self) -> list[float]:
        """Spectral norm (largest singular value) of every ``w_hh``, layer-major."""
        return [
            float(np.linalg.norm(dw.w_hh.astype(np.float64), 2))
            for _, _, dw in self.iter_directions()
        ]

    def with_recurrent_norm(self, norm: float) -> RNNWeights:
        """A copy whose every ``w_hh`` is rescaled to spectral norm ``norm``."""
        if not np.isfinite(norm) or norm <= 0:
            raise SpecError(f"recurrent_norm must be a positive number, got {norm}", "e.g. 0.5")
        layers = []
        for row in self.layers:
            new_row = []
            for dw in row:
                w_hh = dw.w_hh.astype(np.float64)
                current = np.linalg.norm(w_hh, 2)
                scaled = w_hh * (norm / current) if current > 0 else w_hh
                new_row.append(DirectionWeights(dw.w_ih, scaled, dw.b_ih, dw.b_hh))
            layers.append(new_row)
        return RNNWeights(self.spec, layers, dtype=self.dtype)

    def equals(self, other: RNNWeights) -> bool:
        """Bit-for-bit equality of spec, dtype and every array."""
        return (
            self.spec == other.spec
            and self.dtype == other.dtype
            and all(
                np.array_equal(a, b)
                for (_, _, x), (_, _, y) in zip(self.iter_directions(), other.iter_directions())
                for a, b in zip(x.arrays(), y.arrays())
            )
        )

    def __repr__(self) -> str:
        return f"RNNWeights({self.spec.describe()}, dtype={self.dtype})"

    # --- library layouts (pure NumPy; see rnnbench/layouts.py) ----------------------------
    @classmethod
    def from_torch(cls, module_or_state_dict: Any, **kwargs: Any) -> RNNWeights:
        """From a ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` or its state dict (tensors or
        arrays); the cell is read off ``weight_hh_l0`` (G*H, H). Keywords ``nonlinearity``,
        ``prefix``, ``spec``, ``cell``: see :func:`rnnbench.layouts.from_torch`. Projections
        (``proj_size`` > 0) are refused. Exact."""
        return cls._from_layout(*layouts.from_torch(module_or_state_dict, **kwargs))

    @classmethod
    def from_keras(cls, layer_or_weights: Any, **kwargs: Any) -> RNNWeights:
        """From a Keras ``SimpleRNN`` / ``LSTM`` / ``GRU``, a ``Bidirectional`` wrapper, a model
        or ``get_weights()`` lists (keywords ``nonlinearity``, ``bidirectional``, ``cell``,
        ``reset_after``: see :func:`rnnbench.layouts.from_keras`). The one Keras bias goes to
        ``b_ih`` (``b_hh`` zero); a reset-after GRU's (2, 3H) bias to ``b_ih`` and ``b_hh``."""
        return cls._from_layout(*layouts.from_keras(layer_or_weights, **kwargs))

    @classmethod
    def from_tf1(cls, kernel: Any, bias: Any = None, **kwargs: Any) -> RNNWeights:
        """From TF1 cell weights: ``(kernel (I+H, G*H), bias)`` of a ``BasicRNNCell`` (or, with
        ``cell="lstm"``, an ``LSTMCell``, whose ``forget_bias=`` (default 1.0) is added to the
        forget-gate bias), a ``GRUCell`` dict (a reset-before GRU), or the per-layer structure
        :meth:`to_tf1` returns. See :func:`rnnbench.layouts.from_tf1`. The bias goes to
        ``b_ih``; ``b_hh`` is zero."""
        return cls._from_layout(*layouts.from_tf1(kernel, bias, **kwargs))

    @classmethod
    def from_onnx(cls, W: Any, R: Any = None, B: Any = None, **kwargs: Any) -> RNNWeights:
        """From the ONNX ``RNN`` / ``LSTM`` / ``GRU`` operator's W (dirs, G*H, I), R (dirs, G*H,
        H), B (dirs, 2*G*H), or a list of such triples, one per layer. A GRU needs the node's
        ``linear_before_reset=`` (ONNX's default 0 is the reset-before GRU); non-zero peepholes
        ``P=`` are refused. See :func:`rnnbench.layouts.from_onnx`. Exact."""
        return cls._from_layout(*layouts.from_onnx(W, R, B, **kwargs))

    def to_torch(self) -> dict[str, np.ndarray]:
        """The state dict ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` holds, as NumPy arrays
        (exact). A reset-before GRU raises LayoutError: ``nn.GRU`` applies the reset gate after
        the recurrent product only."""
        return layouts.to_torch(self)

    def to_keras(self) -> Any:
        """``get_weights()`` of the Keras layer (of its Bidirectional wrapper); a list per layer
        when stacked. Sums the two biases into Keras' one (exact only if ``b_hh`` is zero),
        except for a reset-after GRU, whose (2, 3H) bias keeps both (exact)."""
        return layouts.to_keras(self)

    def to_tf1(self, *, forget_bias: float = 1.0) -> Any:
        """TF1 cell weights, one entry per direction (a pair of directions for a bidirectional
        layer; a list per layer when stacked): ``(kernel, bias)`` for a ``BasicRNNCell`` or an
        ``LSTMCell`` built with ``forget_bias`` (subtracted from the stored forget-gate bias,
        since TF1 adds it at run time), a ``GRUCell`` dict for a reset-before GRU. A reset-after
        GRU raises LayoutError. Sums the two biases into TF1's one (exact only if ``b_hh`` is
        zero). See :func:`rnnbench.layouts.to_tf1`."""
        return layouts.to_tf1(self, forget_bias=forget_bias)

    def to_onnx(self) -> Any:
        """ONNX ``(W, R, B)`` with a leading direction axis (exact); a list per layer when
        stacked. The node attributes (GRU ``linear_before_reset`` included) are
        :func:`rnnbench.layouts.onnx_attributes`."""
        return layouts.to_onnx(self)

    # --- files ---------------------------------------------------------------------------
    def save(self, path: str | PathLike[str]) -> None:
        """Write ``.npz`` or ``.safetensors`` (chosen by suffix), spec included; never pickle."""
        weightio.save(self, path)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> RNNWeights:
        """Read a file :meth:`save` wrote, without pickle."""
        spec, arrays = weightio.load(path)
        return cls.from_arrays(spec, arrays)


def array_key(layer: int, direction: int, name: str) -> str:
    return f"l{layer}.{DIRECTION_NAMES[direction]}.{name}"
