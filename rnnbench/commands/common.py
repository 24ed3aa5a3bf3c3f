"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
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


# What the command line takes: every size a whole number >= 1, dtypes rnnbench computes in, the
# devices a backend may have. One set of argparse types below checks them at parse time, for
# `check` and `bench` alike, so a bad value is a usage error (exit 2) before anything runs.
DTYPE_CHOICES = ("float32", "float64")
DEVICE_CHOICES = ("cpu", "cuda")


def _items(text: str, what: str) -> list[str]:
    """The items of a comma list; an empty list or an empty item is an error, never dropped."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        raise argparse.ArgumentTypeError(f"no {what} given (an empty list)")
    if any(not part for part in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty item: give a comma list without empty entries, e.g. 1,2"
        )
    return parts


def comma_list(kind: Callable[[str], Any] = str, what: str = "value") -> Callable[[str], list[Any]]:
    """An argparse type for 'a,b,c' lists of ``kind``; an empty list or item is an error."""

    def parse(text: str) -> list[Any]:
        out = []
        parts = _items(text, what)
        for part in parts:
            try:
                out.append(kind(part))
            except argparse.ArgumentTypeError as exc:
                if len(parts) == 1:
                    raise
                raise argparse.ArgumentTypeError(f"in {text!r}: {exc}") from None
            except (ValueError, TypeError):
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not a comma list of {what} ({part!r} is not one)"
                ) from None
        return out

    parse.__name__ = f"comma list of {what}"
    return parse


def whole_number(text: str, minimum: int, what: str = "a whole number") -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (sizes, layers, rounds, thread counts)."""
    return whole_number(text, 1)


def seed_int(text: str) -> int:
    """An argparse type: a seed, a whole number >= 0 (what NumPy's generators take)."""
    return whole_number(text, 0)


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (timeouts, norms)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (seconds of warm-up or measurement)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


# argparse types: comma lists of whole numbers >= 1, e.g. --batch 1,32 or --threads 1,2
size_list = comma_list(positive_int, "sizes")
thread_list = comma_list(positive_int, "thread counts")


def choice_list(choices: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma list of ``choices`` (any case), each once, in the order given."""
    known = tuple(choices)

    def parse(text: str) -> list[str]:
        out: list[str] = []
        for part in _items(text, what):
            value = part.lower()
            if value not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {part!r}: use {', '.join(known)} (a comma list)"
                )
            if value not in out:
                out.append(value)
        return out

    parse.__name__ = f"comma list of {what}"
    return parse


def dtype_list(text: str) -> list[str]:
    """An argparse type: a comma list of float32, float64 (the dtypes rnnbench computes in)."""
    try:
        return choice_list(DTYPE_CHOICES, "dtype")(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; rnnbench computes in float32 and float64 only (no float16 or bfloat16)"
        ) from None


def backend_names(text: str) -> list[str]:
    """An argparse type: a comma list of backend names, each once (not looked up)."""
    return list(dict.fromkeys(_items(text, "backend")))


def backend_list(text: str) -> list[str]:
    """An argparse type: a comma list of registered backend names, each once."""
    from rnnbench.registry import list_backends

    known = list_backends()
    out: list[str] = []
    for name in _items(text, "backend"):
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown backend {name!r}: the registered ones are {', '.join(known)} "
                "(`rnnbench list` shows which can run here)"
            )
        if name not in out:
            out.append(name)
    return out


def available_memory() -> int | None:
    """Bytes of memory this machine can still give a process (MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def cell_list(text: str) -> list[tuple[str, bool | None]]:
    """An argparse type: 'rnn,lstm,gru,gru-reset-before' (or 'all') -> [(cell, reset_after)],
    in the order given, each once."""
    out: list[tuple[str, bool | None]] = []
    if not text.strip():
        raise argparse.ArgumentTypeError("no cell given: use e.g. --cell rnn,lstm,gru")
    for part in (p.lower() for p in _items(text, "cell")):
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


def add_backend_option(parser: argparse.ArgumentParser, look_up: bool = True) -> None:
    """``--backends``: names looked up at parse time (an unknown one is a usage error), or with
    ``look_up=False`` only checked to be a list, for a command that looks them up itself."""
    parser.add_argument(
        "--backends",
        type=backend_list if look_up else backend_names,
        default=None,
        help="comma list of backends (default: every registered one; `rnnbench list` shows them)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="cpu", choices=DEVICE_CHOICES, help="cpu or cuda (default cpu)"
    )
