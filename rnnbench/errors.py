"""Exceptions rnnbench raises. Every message names what is wrong and ends with a ``Hint:`` on how
to fix it, so that a user reading a traceback knows the next step without opening the source."""

from __future__ import annotations


class RNNBenchError(Exception):
    """Base class of every error rnnbench raises on purpose."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(f"{message}\nHint: {hint}" if hint else message)


class SpecError(RNNBenchError, ValueError):
    """An RNNSpec field has a value no RNN can have."""


class ShapeError(RNNBenchError, ValueError):
    """An array has the wrong rank or size."""


class NonFiniteError(RNNBenchError, ValueError):
    """An array holds NaN or infinity."""


class DTypeError(RNNBenchError, TypeError):
    """An array has a dtype rnnbench does not compute in."""


class LayoutError(RNNBenchError, ValueError):
    """A library's weights do not fit the layout they claim to be (a missing key, a bad count)."""


class WeightFileError(RNNBenchError, OSError):
    """A weight file is absent, truncated, of an unknown format, or would need pickle to read."""


class UnknownBackendError(RNNBenchError, LookupError):
    """No backend is registered under that name."""


class BackendUnavailableError(RNNBenchError, ImportError):
    """The backend is registered but its library is not installed (or cannot run here)."""


class UnsupportedPaddingError(BackendUnavailableError):
    """The backend's library has no way to take this padding (a mask with holes, an empty row)."""


class BackendRuntimeError(RNNBenchError, RuntimeError):
    """A backend failed while running (in this process or in its worker process)."""


class ToleranceError(RNNBenchError, AssertionError):
    """A backend's output is farther from the reference than the tolerance allows."""
