"""Functions the tests run inside worker processes (``Worker.call("tests.worker_targets:...")``).

The worker has the repository root on its path, so this module is importable there."""

from __future__ import annotations

import os
import time
from typing import Any


def exit_now(arrays: Any, code: int = 3) -> Any:
    """Die in the middle of a request, as a segfault or the OOM killer would."""
    os._exit(code)


def divide(arrays: Any, a: float, b: float) -> tuple[dict[str, float], dict[str, Any]]:
    return {"value": a / b}, {}


def sleep(arrays: Any, seconds: float) -> tuple[dict[str, float], dict[str, Any]]:
    time.sleep(seconds)
    return {"slept": seconds}, {}
