"""Helpers shared by the format modules: atomic writes, the nonlinearity rule, library imports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rnnbench import fileio
from rnnbench.errors import BackendUnavailableError, LayoutError, WeightFileError
from rnnbench.weights import RNNWeights


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path next to ``target``, renamed onto it if the block succeeds and removed
    if it fails: readers never see a half-written file (:func:`rnnbench.fileio.atomic_path`:
    fsynced, with the umask's mode)."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise WeightFileError(f"folder {parent} does not exist", "create it first")
    if target.is_dir():
        raise WeightFileError(f"{target} is a folder, not a file name", "give a file name")
    with fileio.atomic_path(target, suffix) as tmp:
        yield tmp


def require_file(path: Path) -> None:
    if path.is_dir():
        raise WeightFileError(f"{path} is a folder, not a weight file", "give the file itself")
    if not path.is_file():
        raise WeightFileError(
            f"{path} does not exist", "check the path (and the working directory)"
        )


def import_library(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"this format needs {module}, which is not installed ({exc})",
            f"pip install 'rnnbench[{extra}]'",
        ) from exc


def with_nonlinearity(
    weights: RNNWeights, given: str | None, recorded: bool, path: Path
) -> RNNWeights:
    """Apply ``--nonlinearity``: for a file that records it, it must agree; for one that does
    not, it is the answer (tanh when not given, the default of every library here)."""
    if given is None or given == weights.spec.nonlinearity:
        return weights
    if recorded:
        raise LayoutError(
            f"{path} records nonlinearity {weights.spec.nonlinearity!r}, but "
            f"--nonlinearity {given} was given",
            "leave --nonlinearity out for this format",
        )
    spec = replace(weights.spec, nonlinearity=given)  # type: ignore[arg-type]
    return RNNWeights(spec, weights.layers, dtype=weights.dtype)
