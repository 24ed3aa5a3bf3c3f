"""rnnbench's checks against the implementations named by ``--rnnbench-cell`` (collected by
the plugin; see :mod:`rnnbench.testing.plugin`). Collected without the option, it has no cases
(an empty parameter set: one skip)."""

from __future__ import annotations

from typing import Any

import pytest

from rnnbench.testing import CheckCase, Implementation, check_cases
from rnnbench.testing.plugin import implementations


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"cell", "check"} <= set(metafunc.fixturenames):
        impls = implementations(metafunc.config)
        cases = check_cases()
        params = [(impl, case) for impl in impls for case in cases]
        ids = [c.id if len(impls) == 1 else f"{i.name}-{c.id}" for i, c in params]
        metafunc.parametrize(("cell", "check"), params, ids=ids)


def test_check(cell: Implementation, check: CheckCase) -> Any:
    check(cell)
