"""rnnbench: one recurrent layer through every major library: do they agree, how fast is each?

Importing rnnbench imports NumPy and nothing else: each backend imports its library when it is
first used (``get_backend``), and the converters read library objects by duck typing.
"""

from rnnbench.cell import BaseCell, RNNCell
from rnnbench.compare import BackendComparison, CompareResult, compare, reference_forward
from rnnbench.errors import (
    BackendRuntimeError,
    BackendUnavailableError,
    DTypeError,
    LayoutError,
    NonFiniteError,
    RNNBenchError,
    ShapeError,
    SpecError,
    ToleranceError,
    UnknownBackendError,
    UnsupportedPaddingError,
    WeightFileError,
)
from rnnbench.registry import (
    BackendInfo,
    available_backends,
    backend_info,
    get_backend,
    list_backends,
    register_backend,
)
from rnnbench.spec import RNNSpec
from rnnbench.tolerances import Tolerance, tolerance
from rnnbench.weights import DirectionWeights, RNNWeights

__version__ = "0.1.0"

__all__ = [
    "BackendComparison",
    "BackendInfo",
    "BackendRuntimeError",
    "BackendUnavailableError",
    "BaseCell",
    "CompareResult",
    "DTypeError",
    "DirectionWeights",
    "LayoutError",
    "NonFiniteError",
    "RNNBenchError",
    "RNNCell",
    "RNNSpec",
    "RNNWeights",
    "ShapeError",
    "SpecError",
    "Tolerance",
    "ToleranceError",
    "UnknownBackendError",
    "UnsupportedPaddingError",
    "WeightFileError",
    "__version__",
    "available_backends",
    "backend_info",
    "compare",
    "get_backend",
    "list_backends",
    "reference_forward",
    "register_backend",
    "tolerance",
]
