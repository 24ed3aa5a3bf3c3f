"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

# The cells a command line names, and the (RNNSpec.cell, RNNSpec.reset_after) each one means. The
# two GRU formulas are two names, so that one comma list can check or time both in one run.
CELL_CHOICES: dict[str, tuple[str, bool | None]] = {
    "rnn": ("rnn", None),
    "lstm": ("lstm", None),
    "gru": ("gru", True),
    "gru-reset-before": ("gru", False),
}

CELL_HELP = (
    "comma list of cells: rnn (vanilla, tanh or relu), lstm, gru (reset gate after the "
    "recurrent product: PyTorch, Keras' default, cuDNN), gru-reset-before (Keras "
    "reset_after=False, TF1 GRUCell, ONNX's default); 'all' is all four (default: rnn)"
)


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


def cell_list(text: str) -> list[tuple[str, bool | None]]:
    """An argparse type: 'rnn,lstm,gru,gru-reset-before' (or 'all') -> [(cell, reset_after)],
    in the order given, each once."""
    out: list[tuple[str, bool | None]] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        names = list(CELL_CHOICES) if part == "all" else [part]
        for name in names:
            if name not in CELL_CHOICES:
                raise argparse.ArgumentTypeError(
                    f"unknown cell {name!r}: use {', '.join(CELL_CHOICES)} or all"
                )
            if CELL_CHOICES[name] not in out:
                out.append(CELL_CHOICES[name])
    if not out:
        raise argparse.ArgumentTypeError("no cell given: use e.g. --cell rnn,lstm,gru")
    return out


def cell_name(cell: str, reset_after: bool | None) -> str:
    """The command-line name of a cell: "rnn", "lstm", "gru" or "gru-reset-before"."""
    return "gru-reset-before" if cell == "gru" and reset_after is False else cell


def add_cell_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cell", type=cell_list, default=[CELL_CHOICES["rnn"]], metavar="CELLS", help=CELL_HELP
    )


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends",
        type=comma_list(str),
        default=None,
        help="comma list of backends (default: every registered one; `rnnbench list` shows them)",
    )
