"""Extract and run the ```python blocks of the Markdown docs (used by tests/test_docs.py).

A block may declare the process environment it needs with an HTML comment on the line(s) just
above it, e.g. ``<!-- env: TF_USE_LEGACY_KERAS=1 -->`` or ``<!-- env: KERAS_BACKEND=jax -->``.
Blocks without one run in the test process; blocks with one run in a process with exactly that
environment added (rnnbench's pooled worker of the backend registered with that environment
when there is one, so TensorFlow is not imported once more; else a fresh subprocess). All blocks
of one file with the same environment run in order in one namespace, in one temporary working
directory shared by the whole file.

Imported as ``doc_blocks`` by the tests and as ``tests.doc_blocks`` in a worker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FENCE = re.compile(r"^```python\s*$")
_ENV = re.compile(r"<!--\s*env:\s*(?P<vars>[^>]*?)\s*-->")


@dataclass(frozen=True)
class Block:
    path: str
    line: int  # 1-based line of the first code line
    code: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def extract(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if _FENCE.match(lines[i].strip()) and not lines[i].startswith(" " * 4):
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            env: dict[str, str] = {}
            k = i - 1
            while k >= 0 and (not lines[k].strip() or _ENV.search(lines[k])):
                m = _ENV.search(lines[k])
                if m:
                    for pair in m["vars"].split():
                        key, _, value = pair.partition("=")
                        env.setdefault(key, value)
                k -= 1
            blocks.append(Block(str(path), start + 1, "\n".join(lines[start:j]) + "\n", env))
            i = j + 1
        else:
            i += 1
    return blocks


def run_blocks(arrays: Any, blocks: list[dict[str, Any]], cwd: str) -> tuple[dict[str, Any], dict]:
    """Run blocks (as dicts: path, line, code) in order in one namespace, in ``cwd``. Worker
    signature; also called directly in the test process."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        for b in blocks:
            code = compile(b["code"], f"{b['path']}:{b['line']}", "exec")
            try:
                exec(code, namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the python block at {b['path']}:{b['line']} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    finally:
        os.chdir(previous)
    return {"ran": len(blocks)}, {}


SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from doc_blocks import run_blocks
run_blocks(None, json.load(open({blocks!r})), {cwd!r})
"""
