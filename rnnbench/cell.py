"""The ``RNNCell`` protocol every backend implements, and a base class that does the checking.

A cell is used in two ways:
- ``forward(x, h0, lengths=None, mask=None)``: NumPy in, NumPy out, for equivalence checks and
  porting. The state is one array for the vanilla RNN and the GRU and a pair ``(h, c)`` for the
  LSTM, in and out, as ``torch.nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` have it (see
  :mod:`rnnbench.state`). ``lengths`` or ``mask`` pad the batch (see :mod:`rnnbench.padding`).
- ``prepare`` / ``run`` / ``synchronize`` / ``fetch``: the benchmark's split, so that the timer
  covers only ``run`` + ``synchronize`` (the input is already on the device, the output stays
  there).
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from rnnbench import state as state_mod
from rnnbench.arrays import float_array, resolve_dtype
from rnnbench.errors import BackendUnavailableError, ShapeError, SpecError, UnsupportedPaddingError
from rnnbench.padding import Padding, check_padding, empty_rows
from rnnbench.spec import RNNSpec
from rnnbench.state import State
from rnnbench.weights import RNNWeights

if TYPE_CHECKING:  # the gradients module imports this one
    from rnnbench.gradients import Grads


@runtime_checkable
class RNNCell(Protocol):
    """What rnnbench needs of a backend (see ``BaseCell`` for a ready implementation)."""

    name: str
    device: str
    dtype: np.dtype
    variant: str

    def load(self, weights: RNNWeights) -> None:
        """Copy canonical weights into the library (cast to the cell's dtype)."""

    def forward(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, State]:
        """Run the layer: x (batch, time, input) -> y (batch, time, dirs*hidden) and the final
        state h_n (layers*dirs, batch, hidden), or (h_n, c_n) for an LSTM, as
        torch.nn.RNN / LSTM / GRU(batch_first=True) return them. ``lengths`` (batch,) or
        ``mask`` (batch, time) say which steps are real (:mod:`rnnbench.padding`)."""
        ...

    def prepare(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Any:
        """Put a checked input (and its padding) on the device; the result is what ``run``
        takes."""

    def run(self, prepared: Any) -> Any:
        """The recurrence alone; its result stays on the device (may still be in flight)."""

    def synchronize(self, result: Any) -> None:
        """Block until ``result`` is computed (the library's own way)."""

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        """``result`` as NumPy arrays (y, h_n), or (y, (h_n, c_n)) for an LSTM."""
        ...

    def info(self) -> dict[str, Any]:
        """Library, version, device, dtype, variant and the dispatch path that ran."""
        ...

    def vjp(
        self,
        x: np.ndarray,
        h0: State | None = None,
        dy: np.ndarray | None = None,
        dh_n: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Grads:
        """The gradients of ``L = sum(y * dy) + sum(h_n * dh_n)`` (+ ``sum(c_n * dc_n)``) by
        the library's own autodiff: dx, dh0 and every weight array in the canonical layout
        (see :mod:`rnnbench.gradients`)."""
        ...


def check_inputs(
    spec: RNNSpec, x: Any, h0: Any, dtype: Any
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """Validate and cast an input and an initial state for ``spec``. The state comes back as a
    tuple in ``spec.state_names`` order ((h0,) or (h0, c0)), or None for zeros.

    ``x`` is cast to the cell's ``dtype``: a float64 ``x`` given to a float32 cell is rounded
    to float32 (the cell computes in float32; that is what a float32 layer of any library
    does), and a float32 ``x`` given to a float64 cell is widened exactly. An array in float16
    or bfloat16 (it has already lost most of its digits) or of integers (seldom what was meant)
    is refused with a DTypeError; nested Python lists of numbers are read as numbers."""
    from rnnbench.errors import DTypeError

    source = str(getattr(x, "dtype", "")).lower()
    kind = next((k for k in ("bfloat16", "float16", "half", "int", "bool") if k in source), None)
    if kind is not None:
        raise DTypeError(
            f"x has dtype {getattr(x, 'dtype', '')}; rnnbench takes x in float32 or float64 "
            f"(this cell computes in {resolve_dtype(dtype)})",
            "cast it first, e.g. x.astype(np.float32) (torch: x.float()), knowing that a "
            "float16/bfloat16 x has already lost digits the reference would compare"
            if kind in ("bfloat16", "float16", "half")
            else "cast it first, e.g. x.astype(np.float32), if its values are meant as numbers",
        )
    arr = float_array("x", x, dtype)
    if arr.ndim != 3:
        raise ShapeError(
            f"x has {arr.ndim} axes (shape {arr.shape}); expected 3: (batch, time, "
            f"input_size={spec.input_size})",
            "add the missing axis, e.g. x[None] for one sequence, or x[:, :, None] for one feature",
        )
    batch, time, features = arr.shape
    if features != spec.input_size:
        raise ShapeError(
            f"x has {features} features on its last axis, the spec's input_size is "
            f"{spec.input_size}",
            "inputs are batch-major (batch, time, features); transpose time-major data first",
        )
    if batch < 1 or time < 1:
        raise ShapeError(f"x has shape {arr.shape}; batch and time must both be >= 1")
    return np.ascontiguousarray(arr), state_mod.check_state(spec, h0, batch, dtype)


def library_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class BaseCell(ABC):
    """Validation, dtype handling and ``forward`` for adapters; subclasses fill in the library.

    Subclasses set ``name``, ``distribution`` (for the version), ``devices``, ``variants`` and
    ``dtypes``, and implement ``_load``, ``prepare``, ``run`` and ``fetch`` (``synchronize`` is a
    no-op unless the library computes asynchronously). ``check_inputs`` hands ``prepare`` the
    state as a tuple ((h0,) or (h0, c0)); ``fetch`` returns the public form (``public_state``).
    A cell that cannot compute some spec (a formula its library lacks) raises
    ``BackendUnavailableError`` from ``_load`` with the reason (``refuse_spec`` helps).

    Padding: ``takes_lengths`` / ``takes_mask`` say whether the library's own mechanism is wired
    up; ``check_padding`` refuses the rest with ``UnsupportedPaddingError``. ``prepare`` is
    called with ``lengths``/``mask`` keywords only when the batch is padded, so a backend
    without padding keeps the two-argument ``prepare``. ``mask_output`` says what the library
    writes at a masked step of a ``mask`` (Keras' repeat, or zeros); past a length every
    backend writes zeros.
    """

    name: ClassVar[str] = "base"
    distribution: ClassVar[str | None] = None
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    variants: ClassVar[tuple[str, ...]] = ("default",)
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "float64")
    takes_lengths: ClassVar[bool] = False
    takes_mask: ClassVar[bool] = False
    takes_empty_rows: ClassVar[bool] = True  # a mask row with no real step at all
    computes_gradients: ClassVar[bool] = False  # ``_vjp`` (or the vjp split) is implemented

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        self.dtype = resolve_dtype(dtype)
        if str(self.dtype) not in self.dtypes:
            raise BackendUnavailableError(
                f"backend {self.name!r} does not compute in {self.dtype}",
                f"use dtype {' or '.join(self.dtypes)}",
            )
        if device not in self.devices:
            raise BackendUnavailableError(
                f"backend {self.name!r} has no device {device!r}",
                f"use device {' or '.join(repr(d) for d in self.devices)}",
            )
        self.device = device
        variant = variant or self.variants[0]
        if variant not in self.variants:
            raise SpecError(
                f"backend {self.name!r} has no variant {variant!r}",
                f"use one of {', '.join(self.variants)}",
            )
        self.variant = variant
        self._spec: RNNSpec | None = None

    @property
    def spec(self) -> RNNSpec:
        if self._spec is None:
            raise SpecError(
                f"backend {self.name!r} has no weights yet", "call cell.load(weights) first"
            )
        return self._spec

    def load(self, weights: RNNWeights) -> None:
        if not isinstance(weights, RNNWeights):
            raise SpecError(
                f"load() takes RNNWeights, got {type(weights).__name__}",
                "convert first, e.g. RNNWeights.from_torch(state_dict)",
            )
        weights = weights.astype(self.dtype)
        self._load(weights)
        self._spec = weights.spec

    def forward(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, State]:
        if lengths is None and mask is None:
            prepared = self.prepare(x, h0)
        else:
            # Refused here too: a backend without padding may not take the keywords at all.
            self._check_supported("lengths" if lengths is not None else "mask")
            prepared = self.prepare(x, h0, lengths=lengths, mask=mask)
        result = self.run(prepared)
        self.synchronize(result)
        return self.fetch(result)

    def check_inputs(self, x: Any, h0: Any) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        return check_inputs(self.spec, x, h0, self.dtype)

    def check_padding(self, x: np.ndarray, lengths: Any, mask: Any) -> Padding | None:
        """The checked padding of the (checked) input ``x``, refused with the reason when this
        backend's library cannot take it."""
        padding = check_padding(lengths, mask, x.shape[0], x.shape[1])
        if padding is None:
            return None
        self._check_supported(padding.kind)
        empty = empty_rows(padding)
        if empty and not self.takes_empty_rows:
            raise UnsupportedPaddingError(
                f"backend {self.name!r} cannot take a mask row with no real step (rows {empty})",
                "drop empty rows from the batch, or run it on numpy or jax",
            )
        return padding

    def _check_supported(self, kind: str) -> None:
        if kind == "lengths" and not self.takes_lengths:
            raise UnsupportedPaddingError(
                f"backend {self.name!r} does not take sequence lengths",
                "compare it on full-length batches, or use a backend that does "
                "(rnnbench list-backends)",
            )
        if kind == "mask" and not self.takes_mask:
            raise UnsupportedPaddingError(
                f"backend {self.name!r} cannot take a mask with holes: its library pads only "
                "at the end of each sequence",
                "for right-padded rows pass lengths=... instead of mask=...; a mask with holes "
                "runs on numpy, jax and the keras backends",
            )

    def vjp(
        self,
        x: np.ndarray,
        h0: State | None = None,
        dy: np.ndarray | None = None,
        dh_n: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Grads:
        """The gradients of ``sum(y * dy) + sum(h_n * dh_n)`` (+ ``sum(c_n * dc_n)``):
        ``prepare_vjp``, ``run_vjp``, ``synchronize`` and ``fetch_vjp`` in turn, the same split
        as the forward pass, so that a training benchmark times ``run_vjp`` alone."""
        prepared = self.prepare_vjp(x, h0, dy, dh_n, lengths=lengths, mask=mask)
        result = self.run_vjp(prepared)
        self.synchronize(result)
        return self.fetch_vjp(result)

    def prepare_vjp(
        self,
        x: np.ndarray,
        h0: State | None = None,
        dy: np.ndarray | None = None,
        dh_n: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Any:
        """Check the inputs and cotangents, then ``_prepare_vjp`` (on the device). A backend
        without ``computes_gradients`` is refused like a missing library, so ``compare`` lists
        it as skipped with the reason."""
        from rnnbench.gradients import check_cotangents

        if not self.computes_gradients:
            raise BackendUnavailableError(
                f"backend {self.name!r} does not compute gradients",
                "compare gradients on one that does: numpy, torch, jax, tf1 and the keras "
                "backends compute them",
            )
        xs, hs = self.check_inputs(x, h0)
        padding = self.check_padding(xs, lengths, mask)
        batch, time = xs.shape[:2]
        dy_c, dstates = check_cotangents(self.spec, batch, time, dy, dh_n, self.dtype)
        # Zeros stand for what was not given: the initial state is then an input of the graph
        # like any other (its gradient exists), and every library sees one call signature.
        return self._prepare_vjp(
            xs,
            hs if hs is not None else self.zeros_state(batch),
            dy_c
            if dy_c is not None
            else np.zeros((batch, time, self.spec.output_size), self.dtype),
            dstates if dstates is not None else self.zeros_state(batch),
            padding,
        )

    def _prepare_vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Any:
        """Checked inputs and cotangents (states as tuples in ``spec.state_names`` order, zeros
        where the caller gave none) put where ``run_vjp`` takes them. The default keeps them
        as they are, for a backend whose ``_vjp`` does everything in one call."""
        return x, h0, dy, dstates, padding

    def run_vjp(self, prepared: Any) -> Any:
        """Forward and backward pass on prepared inputs; the result may stay on the device
        (``synchronize`` waits for it, ``fetch_vjp`` makes it ``Grads``). The default calls
        ``_vjp``, for a library whose gradients come back to the host in one call."""
        return self._vjp(*prepared)

    def fetch_vjp(self, result: Any) -> Grads:
        """``run_vjp``'s result as ``Grads`` in the canonical layout."""
        from rnnbench.gradients import Grads

        if not isinstance(result, Grads):
            raise NotImplementedError(f"backend {self.name!r} must define fetch_vjp")
        return result

    def _vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Grads:
        """The library's backward pass in one call, to the host (see ``_prepare_vjp``); a
        backend that keeps its result on the device overrides ``_prepare_vjp``, ``run_vjp``
        and ``fetch_vjp`` instead."""
        raise NotImplementedError

    def mask_output(self) -> str:
        """What this backend writes at a masked step of a ``mask``: "repeat" (the previous
        output of that direction, Keras' default) or "zero"."""
        return "repeat"

    def public_state(self, states: Any) -> State:
        """A tuple of final states ((h_n,) or (h_n, c_n)) in the form ``forward`` returns."""
        return state_mod.from_tuple(self.spec, tuple(states))

    def refuse_spec(self, spec: RNNSpec, reason: str, hint: str) -> None:
        """Raise the error that makes ``compare`` skip this backend for ``spec``, with why."""
        raise BackendUnavailableError(
            f"backend {self.name!r} cannot compute {spec.describe()}: {reason}", hint
        )

    def synchronize(self, result: Any) -> None:  # noqa: B027 - synchronous libraries need none
        """Nothing to wait for in a synchronous library."""

    def zeros_state(self, batch: int) -> tuple[np.ndarray, ...]:
        """Zero initial states as a tuple ((h0,) or (h0, c0))."""
        return state_mod.zeros(self.spec, batch, self.dtype)

    def path(self) -> str:
        """The dispatch path that ran (e.g. 'cudnn', 'xla-jit'); subclasses refine it."""
        return self.variant

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "library": self.distribution,
            "version": library_version(self.distribution) if self.distribution else None,
            "device": self.device,
            "dtype": str(self.dtype),
            "variant": self.variant,
            "path": self.path(),
            "padding": [
                k for k, ok in (("lengths", self.takes_lengths), ("mask", self.takes_mask)) if ok
            ],
            "mask_output": self.mask_output() if self.takes_mask and self._spec else None,
        }

    @abstractmethod
    def _load(self, weights: RNNWeights) -> None: ...

    @abstractmethod
    def prepare(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Any:
        """Check the input (``check_inputs``, ``check_padding``) and put it on the device. A
        backend without padding may leave out ``lengths`` and ``mask``: they are passed only
        for a padded batch, which ``check_padding`` refuses for it."""

    @abstractmethod
    def run(self, prepared: Any) -> Any: ...

    @abstractmethod
    def fetch(self, result: Any) -> tuple[np.ndarray, State]: ...
