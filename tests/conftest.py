"""Shared fixtures. The ``backend`` fixture is parametrized over every registered backend (or the
subset named by ``--backends`` / ``RNNBENCH_BACKENDS``); a backend whose library is missing is a
skip with its reason, an unknown name is a usage error, and an installed one that breaks fails."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnbench as rb

DATA = Path(__file__).parent / "data"
ENV_VAR = "RNNBENCH_BACKENDS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=None,
        help=f"comma list of backends to test (default: all registered; env {ENV_VAR})",
    )


def selected_backends(config: pytest.Config) -> list[str]:
    raw = config.getoption("--backends") or os.environ.get(ENV_VAR)
    known = rb.list_backends()
    if not raw:
        return known
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise pytest.UsageError(
            f"unknown backend(s) {unknown} in --backends; registered: {', '.join(known)}"
        )
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", selected_backends(metafunc.config))


class CellCache:
    """One cell per (backend, dtype, device, variant) for the whole session, so that worker
    processes start once; unavailable backends skip with their reason."""

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str, str, str | None], Any] = {}

    def get(
        self, name: str, dtype: str = "float32", device: str = "cpu", variant: str | None = None
    ) -> Any:
        key = (name, dtype, device, variant)
        if key not in self._cells:
            reason = rb.backend_info(name).unavailable_reason()
            if reason is not None:
                pytest.skip(f"backend {name!r} unavailable: {reason}")
            try:
                self._cells[key] = rb.get_backend(name, device=device, dtype=dtype, variant=variant)
            except rb.BackendUnavailableError as exc:
                pytest.skip(str(exc).split("\nHint:")[0])
        return self._cells[key]


@pytest.fixture(scope="session")
def cells() -> Iterator[CellCache]:
    yield CellCache()


@pytest.fixture(scope="session")
def seed_notebook() -> dict[str, Any]:
    return json.loads((DATA / "seed_notebook.json").read_text())


@pytest.fixture(scope="session")
def seed_weights(seed_notebook: dict[str, Any]) -> rb.RNNWeights:
    return rb.RNNWeights.from_tf1(
        np.array(seed_notebook["kernel"], np.float32), np.array(seed_notebook["bias"], np.float32)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--dist loadgroup`` (``make test``), every test of one backend's parametrization
    runs in one xdist process: its worker process starts once and each model it compiles is
    compiled once, instead of once per xdist process."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "backend" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(f"backend-{callspec.params['backend']}"))
