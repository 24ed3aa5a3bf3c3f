"""``rnnbench list``: every backend, whether it can run here, and why not."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "list every backend: available or not, library version, devices, and what installs it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from rnnbench.registry import backend_info, list_backends

    rows: list[dict[str, Any]] = []
    for name in list_backends():
        info = backend_info(name)
        reason = info.unavailable_reason()
        versions = info.versions() if reason is None else {}
        rows.append(
            {
                "backend": name,
                "available": reason is None,
                "versions": versions,
                "devices": list(info.devices),
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
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for row in body:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
