"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def comma_list(kind: type = str) -> Callable[[str], list[Any]]:
    """An argparse type for 'a,b,c' lists of ``kind``."""

    def parse(text: str) -> list[Any]:
        try:
            return [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma list of {kind.__name__}"
            ) from exc

    return parse


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends",
        type=comma_list(str),
        default=None,
        help="comma list of backends (default: every registered one; `rnnbench list` shows them)",
    )
