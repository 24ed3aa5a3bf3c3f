"""rnnbench's equivalence suite for anyone's recurrent layer, as pytest tests.

In a test file::

    from rnnbench.testing import parametrize_with_checks
    from mylib import make_cell  # make_cell(dtype=..., device=...) -> an RNNCell

    @parametrize_with_checks([make_cell])
    def test_my_cell(cell, check):
        check(cell)

or without a test file, with the pytest plugin this package registers::

    pytest --rnnbench-cell=mylib:make_cell

Every check is its own test case (``check_reverse_final_state[lstm-float32]``), compares the
cell with rnnbench's float64 reference under the tolerances of :mod:`rnnbench.tolerances`, and
fails with the comparison table, the first bad element and, when it recognises it, the fault.
What the implementation does not support (a dtype, a cell kind, padding, gradients) is skipped
with the reason; see :mod:`rnnbench.testing.implementation` for how a cell says what it
supports, and docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from rnnbench.testing.checks import CHECKS, KINDS, Check, CheckCase, check_cases
from rnnbench.testing.implementation import FEATURES, Implementation

__all__ = [
    "CHECKS",
    "FEATURES",
    "KINDS",
    "Check",
    "CheckCase",
    "CheckResult",
    "Implementation",
    "check_cases",
    "parametrize_with_checks",
    "run_checks",
]


def _implementations(cells: Any, device: str, required: Iterable[str]) -> list[Implementation]:
    items = [cells] if callable(cells) or isinstance(cells, Implementation) else list(cells)
    out = []
    for item in items:
        if isinstance(item, Implementation):
            out.append(item)
        else:
            out.append(Implementation(item, device=device, required=tuple(required)))
    return out


def parametrize_with_checks(
    cells: Callable[..., Any] | Implementation | Iterable[Callable[..., Any] | Implementation],
    *,
    device: str = "cpu",
    required: Iterable[str] = (),
    select: Iterable[str] | None = None,
) -> Any:
    """A ``pytest.mark.parametrize`` of ``(cell, check)`` over every check of every
    implementation in ``cells`` (factories ``factory(dtype=..., device=...)`` returning a cell,
    or :class:`Implementation` objects); the test calls ``check(cell)``. ``device``: where the
    cells run; ``required``: features (``FEATURES``) whose refusal fails instead of skipping;
    ``select``: only the checks of these names. Ids are ``check_name[kind-dtype]``, prefixed by
    the implementation's name when there are several."""
    impls = _implementations(cells, device, required)
    cases = check_cases(select)
    params = [(impl, case) for impl in impls for case in cases]
    ids = [case.id if len(impls) == 1 else f"{impl.name}-{case.id}" for impl, case in params]
    return pytest.mark.parametrize(("cell", "check"), params, ids=ids)


@dataclass(frozen=True)
class CheckResult:
    """One check case run outside pytest: ``outcome`` is "passed", "skipped" or "failed"."""

    id: str
    outcome: str
    message: str = ""


def run_checks(
    cells: Callable[..., Any] | Implementation,
    *,
    device: str = "cpu",
    select: Iterable[str] | None = None,
) -> list[CheckResult]:
    """Run the checks on one implementation without pytest's runner (a notebook, a script):
    every case's outcome and its message."""
    (impl,) = _implementations(cells, device, ())
    out = []
    for case in check_cases(select):
        try:
            case(impl)
        except pytest.skip.Exception as exc:
            out.append(CheckResult(case.id, "skipped", str(exc.msg)))
        except (pytest.fail.Exception, AssertionError) as exc:
            out.append(CheckResult(case.id, "failed", str(getattr(exc, "msg", exc))))
        else:
            out.append(CheckResult(case.id, "passed"))
    return out
