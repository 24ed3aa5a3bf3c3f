"""Every ```python block of README.md and docs/*.md runs (see tests/doc_blocks.py for how a
block declares the environment it needs, e.g. ``<!-- env: TF_USE_LEGACY_KERAS=1 -->``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import doc_blocks
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
DOCS = [p for p in DOCS if p.is_file()]


def _pooled_worker_for(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """rnnbench's pooled worker of a registered backend whose environment is exactly ``env``."""
    import rnnbench as rb
    from rnnbench.process import pooled_worker

    for name in rb.list_backends():
        info = rb.backend_info(name)
        if dict(info.env) == env and info.unavailable_reason() is None:
            return pooled_worker(info)
    return None


def test_docs_were_found() -> None:
    assert ROOT / "docs" / "porting.md" in DOCS
    assert any(doc_blocks.extract(p) for p in DOCS)


def test_extract_reads_env_comments(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("text\n<!-- env: A=1 B=2 -->\n```python\nx = 1\n```\n\n```python\ny = x\n```\n")
    first, second = doc_blocks.extract(md)
    assert first.env == {"A": "1", "B": "2"} and first.code == "x = 1\n" and first.line == 4
    assert second.env == {} and second.code == "y = x\n"


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_python_blocks_run(doc: Path, tmp_path: Path) -> None:
    blocks = doc_blocks.extract(doc)
    if not blocks:
        pytest.skip(f"{doc.name} has no python block")
    groups: dict[str, list[dict[str, object]]] = {}
    for b in blocks:
        groups.setdefault(json.dumps(b.env, sort_keys=True), []).append(asdict(b))
    for env_json, group in groups.items():
        env = json.loads(env_json)
        if not env:
            doc_blocks.run_blocks(None, group, str(tmp_path))
            continue
        worker = _pooled_worker_for(env)
        if worker is not None:
            header, _ = worker.call(
                "tests.doc_blocks:run_blocks", blocks=group, cwd=str(tmp_path), timeout=300
            )
            assert header["ran"] == len(group)
            continue
        (tmp_path / ".blocks.json").write_text(json.dumps(group))
        script = doc_blocks.SCRIPT.format(
            tests=str(ROOT / "tests"), blocks=str(tmp_path / ".blocks.json"), cwd=str(tmp_path)
        )
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, (
            f"{doc.name} blocks with env {env} failed:\n{proc.stderr[-3000:]}"
        )
