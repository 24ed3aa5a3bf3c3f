"""The pytest plugin (entry point ``pytest11``, name ``rnnbench``): inert unless
``--rnnbench-cell=module:factory`` is given, when the run also collects rnnbench's check suite
(``rnnbench/testing/test_checks.py``) against that factory; without other paths given, the
suite alone."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from rnnbench.errors import SpecError

OPTION = "--rnnbench-cell"
# The folder, not the file: test ids then read test_checks.py::test_check[...].
SUITE = Path(__file__).parent
IMPLEMENTATIONS = pytest.StashKey[list[Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnnbench", "rnnbench equivalence checks")
    group.addoption(
        OPTION,
        action="append",
        default=None,
        metavar="MODULE:FACTORY",
        help="run rnnbench's checks against the cells FACTORY(dtype=..., device=...) of "
        "MODULE returns (repeatable)",
    )
    group.addoption(
        "--rnnbench-device",
        default="cpu",
        help="device the --rnnbench-cell cells run on (default: cpu)",
    )
    group.addoption(
        "--rnnbench-require",
        default="",
        metavar="FEATURES",
        help="comma list of features whose refusal fails a check instead of skipping it "
        "(lengths, mask, gradients, dtype, device, spec)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("rnnbench_cell"):
        return
    # Bad targets are usage errors now, before anything is collected.
    config.stash[IMPLEMENTATIONS] = implementations(config)
    suite = str(SUITE)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [suite]  # no paths given: the suite alone, not the folder's tests
    elif suite not in config.args:
        config.args.append(suite)


def load_factory(target: str) -> Any:
    """``module:attribute`` -> the factory it names, with a clear error when it is not one."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise pytest.UsageError(
            f"{OPTION}={target!r}: expected MODULE:FACTORY, e.g. {OPTION}=mylib.rnn:make_cell"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(
            f"{OPTION}={target!r}: cannot import {module_name!r} ({exc}); run pytest where it is "
            "importable (installed, or in the current folder)"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise pytest.UsageError(f"{OPTION}={target!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise pytest.UsageError(f"{OPTION}={target!r}: {attr!r} is not callable")
    return obj


def implementations(config: pytest.Config) -> list[Any]:
    """The implementations ``--rnnbench-cell`` names (loaded once, in ``pytest_configure``)."""
    if IMPLEMENTATIONS in config.stash:
        return config.stash[IMPLEMENTATIONS]
    from rnnbench.testing import Implementation

    raw = config.getoption("rnnbench_require", default="") or ""
    required = [f.strip() for f in raw.split(",") if f.strip()]
    out = []
    for target in config.getoption("rnnbench_cell", default=None) or ():
        try:
            out.append(
                Implementation(
                    load_factory(target),
                    name=target.partition(":")[2],
                    device=config.getoption("rnnbench_device"),
                    required=required,
                )
            )
        except SpecError as exc:
            raise pytest.UsageError(f"{OPTION}={target!r}: {exc}") from exc
    return out
