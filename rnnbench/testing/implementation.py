"""The implementation under test: a factory of cells, and what the cells say they support.

A factory is called as ``factory(dtype=..., device=...)`` ("float32" or "float64", and the
device of the run) and returns an object following :class:`rnnbench.RNNCell`; a subclass of
:class:`rnnbench.BaseCell` is a factory itself. What a cell supports is read from it:

- ``dtypes``, ``devices``: refused by raising ``BackendUnavailableError`` from the factory
  (``BaseCell.__init__`` does it from its class flags of those names);
- ``takes_lengths``, ``takes_mask``: padding (``info()["padding"]`` when the flags are absent);
- ``computes_gradients``: ``vjp``;
- cells, layers, directions, nonlinearities: ``load(weights)`` raises
  ``BackendUnavailableError`` for a spec the implementation cannot compute
  (``BaseCell.refuse_spec``).

A check that needs something the cell does not support is skipped with the reason, unless the
feature is ``required``, when the refusal fails it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest

from rnnbench.errors import BackendUnavailableError, SpecError
from rnnbench.weights import RNNWeights

# What a check may find unsupported; ``required`` names some of them.
FEATURES = ("dtype", "device", "spec", "lengths", "mask", "gradients")


def reason_of(exc: BaseException) -> str:
    """An rnnbench error's message without its hint (the reason alone)."""
    return str(exc).split("\nHint:")[0]


@dataclass
class Implementation:
    """A factory of cells under test, its name in test ids and messages, the device the cells
    run on, and the features whose absence fails a check instead of skipping it."""

    factory: Callable[..., Any]
    name: str = ""
    device: str = "cpu"
    required: Iterable[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not callable(self.factory):
            raise SpecError(
                f"an implementation's factory must be callable, got {type(self.factory).__name__}",
                "pass a function factory(dtype=..., device=...) returning a cell, or a BaseCell "
                "subclass",
            )
        self.required = tuple(self.required)
        unknown = sorted(set(self.required) - set(FEATURES))
        if unknown:
            raise SpecError(
                f"unknown required feature(s) {unknown}", f"use some of {', '.join(FEATURES)}"
            )
        if not self.name:
            name = getattr(self.factory, "__qualname__", None) or type(self.factory).__name__
            self.name = "cell" if "<lambda>" in name else name

    def __str__(self) -> str:
        return self.name

    def unsupported(self, feature: str, reason: str) -> NoReturn:
        """Skip the running check with ``reason``, or fail it when ``feature`` is required."""
        if feature in self.required:
            pytest.fail(f"{self.name} must support {feature}, but: {reason}", pytrace=False)
        pytest.skip(reason)

    def cell(self, dtype: str) -> Any:
        """A new cell computing in ``dtype`` on this implementation's device."""
        try:
            cell = self.factory(dtype=dtype, device=self.device)
        except BackendUnavailableError as exc:
            feature = "device" if "device" in reason_of(exc) else "dtype"
            self.unsupported(feature, reason_of(exc))
        declared = getattr(cell, "dtypes", None)
        if isinstance(declared, (tuple, list)) and dtype not in declared:
            self.unsupported("dtype", f"{self.name} does not compute in {dtype}")
        if str(getattr(cell, "dtype", dtype)) != dtype:
            pytest.fail(
                f"{self.name}: the factory was asked for a {dtype} cell and returned one whose "
                f"dtype is {getattr(cell, 'dtype', None)}",
                pytrace=False,
            )
        return cell

    def load(self, cell: Any, weights: RNNWeights) -> None:
        """Load ``weights`` (cast to the cell's dtype); a refused spec skips the check."""
        try:
            cell.load(weights.astype(str(cell.dtype)))
        except BackendUnavailableError as exc:
            self.unsupported("spec", reason_of(exc))

    def require(self, cell: Any, feature: str) -> None:
        """Skip (or fail) unless ``cell`` says it supports ``feature`` (lengths, mask,
        gradients)."""
        if not supports(cell, feature):
            flag = {"lengths": "takes_lengths", "mask": "takes_mask"}.get(
                feature, "computes_gradients"
            )
            self.unsupported(feature, f"{self.name} does not declare {flag} = True")


def supports(cell: Any, feature: str) -> bool:
    """Whether ``cell`` says it supports ``feature``: its class flag, else (for cells that run
    elsewhere, e.g. in a worker process) its ``info()``."""
    flag = {"lengths": "takes_lengths", "mask": "takes_mask", "gradients": "computes_gradients"}[
        feature
    ]
    value = getattr(cell, flag, None)
    if value is not None:
        return bool(value)
    if feature == "gradients":
        return callable(getattr(cell, "vjp", None))
    info = getattr(cell, "info", None)
    if callable(info):
        return feature in (info().get("padding") or ())
    return False
