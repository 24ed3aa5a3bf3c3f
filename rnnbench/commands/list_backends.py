"""``rnnbench list``: every backend, whether it can run here, and why not."""

from __future__ import annotations

import argparse
from typing import Any

from rnnbench.texttable import text_table

HELP = "list every backend: available or not, library version, devices, and what installs it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _torch_cuda() -> str | None:
    """Why the installed torch cannot use CUDA, read from its files (no import), or None."""
    import importlib.metadata
    import importlib.util
    import re
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None  # not installed: the backend is unavailable anyway
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        text = ""
    match = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+)$", text, re.MULTILINE)
    if match is not None:
        return "a CPU-only build of torch" if match.group(1).strip() == "None" else None
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    return "a CPU-only build of torch" if "+cpu" in version else None


def _jax_cuda() -> str | None:
    """Why the installed jax cannot use CUDA (no CUDA plugin, no CUDA jaxlib), or None."""
    import importlib.metadata

    try:
        jaxlib = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    if "cuda" in jaxlib:
        return None
    for plugin in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda11-plugin"):
        try:
            importlib.metadata.version(plugin)
            return None
        except importlib.metadata.PackageNotFoundError:
            continue
    return "a CPU-only build of jax (no jax-cuda plugin installed)"


def unusable_devices(info: Any) -> dict[str, str]:
    """The backend's devices that cannot run here, and why: a CPU-only build of its library
    (read from the installed packages, without importing them) or no NVIDIA driver."""
    if "cuda" not in info.devices:
        return {}
    from rnnbench.bench.machine import cuda_unavailable_reason

    checks = {"torch": _torch_cuda, "jax": _jax_cuda}
    for module in info.requires:
        if module in checks and (reason := checks[module]()) is not None:
            return {"cuda": reason}
    driver = cuda_unavailable_reason()
    return {"cuda": "no NVIDIA driver on this machine"} if driver else {}


def run(args: argparse.Namespace) -> int:
    import json

    from rnnbench.registry import backend_info, list_backends

    rows: list[dict[str, Any]] = []
    for name in list_backends():
        info = backend_info(name)
        reason = info.unavailable_reason()
        versions = info.versions() if reason is None else {}
        unusable = unusable_devices(info) if reason is None else {}
        rows.append(
            {
                "backend": name,
                "available": reason is None,
                "versions": versions,
                # the devices it can use here; "devices_unavailable" says why not the others
                "devices": [d for d in info.devices if d not in unusable],
                "devices_unavailable": unusable,
                "process": "own worker" if info.isolated else "in-process",
                "description": info.description,
                "reason": reason,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("backend", "available", "version", "devices", "process", "what / why not")
    body = [
        (
            r["backend"],
            "yes" if r["available"] else "no",
            " ".join(f"{k} {v}" for k, v in r["versions"].items()) or "-",
            ",".join(r["devices"]),
            r["process"],
            r["description"] if r["available"] else r["reason"],
        )
        for r in rows
    ]
    print(text_table(head, body, rule=False))
    # One line per reason, e.g. "cuda not listed for torch, keras-torch: a CPU-only build".
    missing: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for device, why in r["devices_unavailable"].items():
            missing.setdefault((device, why), []).append(r["backend"])
    if missing:
        print()
    for (device, why), names in sorted(missing.items(), key=lambda item: item[1]):
        print(f"{device} not listed for {', '.join(names)}: {why}")
    return 0
