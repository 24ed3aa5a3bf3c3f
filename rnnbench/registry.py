"""The backend registry: every backend rnnbench knows, in one place, plus outside ones.

A backend is a ``BackendInfo``: where its cell class lives, which modules it needs, which extra
installs them, which devices it has, and the process environment it must run under. Backends
that need a process-wide setting (``KERAS_BACKEND``, ``TF_USE_LEGACY_KERAS`` and TF1's
``disable_v2_behavior``) are *isolated*: ``get_backend`` hands back a proxy that runs the cell in
a worker process of its own, so that the caller's process is never switched behind its back.

Outside packages add backends through the ``rnnbench.backends`` entry-point group; each entry
point names a ``BackendInfo`` object.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rnnbench.cell import RNNCell
from rnnbench.errors import (
    BackendRuntimeError,
    BackendUnavailableError,
    RNNBenchError,
    UnknownBackendError,
)

ENTRY_POINT_GROUP = "rnnbench.backends"


@dataclass(frozen=True)
class BackendInfo:
    """How to find, check and start one backend."""

    name: str
    target: str  # "package.module:CellClass"
    requires: tuple[str, ...] = ()  # importable module names the backend needs
    extra: str | None = None  # the rnnbench extra that installs them
    devices: tuple[str, ...] = ("cpu",)
    env: Mapping[str, str] = field(default_factory=dict)  # environment of its worker process
    isolated: bool = False  # always run in a worker process of its own
    description: str = ""
    distributions: tuple[str, ...] = ()  # whose versions to report

    def missing(self) -> list[str]:
        """The required modules that cannot be found (checked without importing them)."""
        out = []
        for module in self.requires:
            try:
                if importlib.util.find_spec(module) is None:
                    out.append(module)
            except (ImportError, ValueError):
                out.append(module)
        return out

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or None when it can."""
        missing = self.missing()
        if not missing:
            return None
        how = f"pip install 'rnnbench[{self.extra}]'" if self.extra else "install them"
        return f"needs {', '.join(missing)}, not installed; {how}"

    def versions(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for dist in self.distributions:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = None
        return out


_B = "rnnbench.backends"
BUILTIN_BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo(
        "numpy",
        f"{_B}.numpy_backend:NumpyCell",
        (),
        None,
        ("cpu",),
        description="NumPy loop, every cell; float64 is the reference",
        distributions=("numpy",),
    ),
    BackendInfo(
        "torch",
        f"{_B}.torch_backend:TorchCell",
        ("torch",),
        "torch",
        ("cpu", "cuda"),
        description="torch.nn.RNN / LSTM / GRU (cuDNN on cuda; GRU reset-after only)",
        distributions=("torch",),
    ),
    BackendInfo(
        "jax",
        f"{_B}.jax_backend:JaxCell",
        ("jax",),
        "jax",
        ("cpu", "cuda"),
        description="jax.lax.scan under jax.jit, every cell",
        distributions=("jax", "jaxlib"),
    ),
    BackendInfo(
        "keras",
        f"{_B}.keras_backend:KerasTensorFlowCell",
        ("keras", "tensorflow"),
        "keras",
        ("cpu",),
        env={"KERAS_BACKEND": "tensorflow"},
        isolated=True,
        description="Keras 3 SimpleRNN / LSTM / GRU on TensorFlow",
        distributions=("keras", "tensorflow"),
    ),
    BackendInfo(
        "keras-jax",
        f"{_B}.keras_backend:KerasJaxCell",
        ("keras", "jax"),
        "keras",
        ("cpu", "cuda"),
        env={"KERAS_BACKEND": "jax"},
        isolated=True,
        description="Keras 3 SimpleRNN / LSTM / GRU on JAX",
        distributions=("keras", "jax"),
    ),
    BackendInfo(
        "keras-torch",
        f"{_B}.keras_backend:KerasTorchCell",
        ("keras", "torch"),
        "keras",
        ("cpu", "cuda"),
        env={"KERAS_BACKEND": "torch"},
        isolated=True,
        description="Keras 3 SimpleRNN / LSTM / GRU on PyTorch",
        distributions=("keras", "torch"),
    ),
    BackendInfo(
        "tf1",
        f"{_B}.tf1_backend:TF1Cell",
        ("tensorflow", "tf_keras"),
        "tf1",
        ("cpu",),
        env={"TF_USE_LEGACY_KERAS": "1"},
        isolated=True,
        description="TF1 BasicRNNCell / LSTMCell / GRUCell (reset-before), dynamic_rnn, Session",
        distributions=("tensorflow", "tf-keras"),
    ),
)

_registry: dict[str, BackendInfo] | None = None


def _load_registry() -> dict[str, BackendInfo]:
    global _registry
    if _registry is None:
        found = {info.name: info for info in BUILTIN_BACKENDS}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                info = ep.load()
            except Exception as exc:  # an outside package's bug must not break rnnbench
                raise RNNBenchError(
                    f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} failed to load: {exc}",
                    f"fix or uninstall the package that provides {ep.value}",
                ) from exc
            if not isinstance(info, BackendInfo):
                raise RNNBenchError(
                    f"entry point {ep.name!r} gives {type(info).__name__}, not a BackendInfo",
                    "point the entry point at a rnnbench.registry.BackendInfo object",
                )
            found.setdefault(info.name, info)
        _registry = found
    return _registry


def register_backend(info: BackendInfo, *, replace: bool = False) -> None:
    """Add a backend at run time (entry points are the way for installed packages)."""
    registry = _load_registry()
    if info.name in registry and not replace:
        raise RNNBenchError(
            f"a backend named {info.name!r} is already registered", "pass replace=True"
        )
    registry[info.name] = info


def list_backends() -> list[str]:
    """Names of every registered backend, installed or not."""
    return list(_load_registry())


def backend_info(name: str) -> BackendInfo:
    registry = _load_registry()
    if name not in registry:
        raise UnknownBackendError(
            f"unknown backend {name!r}", f"registered backends are: {', '.join(registry)}"
        )
    return registry[name]


def available_backends() -> list[str]:
    return [name for name, info in _load_registry().items() if info.unavailable_reason() is None]


def runs_in_this_process(info: BackendInfo) -> bool:
    """True when the backend's environment is already this process's (e.g. inside its worker)."""
    return not info.isolated or all(os.environ.get(k) == v for k, v in info.env.items())


def get_backend(
    name: str,
    device: str = "cpu",
    dtype: Any = "float32",
    variant: str | None = None,
    *,
    isolate: bool | None = None,
) -> RNNCell:
    """An RNNCell for backend ``name``.

    ``isolate`` forces (True) or forbids (False) a worker process; by default isolated backends
    run in one unless this process already has their environment.
    """
    info = backend_info(name)
    reason = info.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(
            f"backend {name!r} is not available: {reason}",
            "`rnnbench list` shows every backend and what each one needs",
        )
    if device not in info.devices:
        raise BackendUnavailableError(
            f"backend {name!r} has no device {device!r}",
            f"its devices are: {', '.join(info.devices)}",
        )
    use_worker = (not runs_in_this_process(info)) if isolate is None else isolate
    if use_worker:
        from rnnbench.process import ProcessCell

        return ProcessCell(info, device=device, dtype=dtype, variant=variant)
    return load_cell_class(info)(device=device, dtype=dtype, variant=variant)


def load_cell_class(info: BackendInfo) -> Any:
    """Import the backend's cell class. A missing *library* makes the backend unavailable (a
    skip); any other import failure is a bug in the adapter and is raised as one."""
    module_name, _, attr = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        if missing and missing in {r.split(".")[0] for r in info.requires}:
            raise BackendUnavailableError(
                f"backend {info.name!r} cannot import {missing}: {exc}",
                f"pip install 'rnnbench[{info.extra}]'" if info.extra else None,
            ) from exc
        raise BackendRuntimeError(
            f"backend {info.name!r}: importing its adapter {module_name} failed: {exc}",
            "this is a bug in the adapter or a broken install, not a missing library",
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise BackendRuntimeError(
            f"backend {info.name!r}: {module_name} has no {attr!r}", "check the registration"
        ) from exc
