"""The ``rnnbench`` command line. Each subcommand lives in ``rnnbench/commands/<name>.py`` with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code``; heavy imports stay inside
``run`` so that ``rnnbench --help`` is instant.

``main`` is the one error boundary: a usage error is argparse's (exit 2); every ``RNNBenchError``,
``OSError`` (no permission, read-only filesystem, a folder where a file was expected, no such
file) and ``MemoryError`` a command raises becomes ``rnnbench CMD: error: PATH: reason`` and a
``Hint:`` line, exit 2, without a traceback (``--debug`` shows it); Ctrl-C is exit 130, and a
closed output pipe (``| head``) a quiet 141.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Sequence

# command name -> module under rnnbench.commands
COMMANDS = {
    "list": "list_backends",
    "check": "check",
    "seed": "seed",
    "bench": "bench",
    "report": "report",
    "compare": "compare_runs",
    "convert": "convert",
}


EXIT_CODES = """\
exit status: 0 done (every check passed, every case measured); 1 a backend differs or a case
failed (check, bench, seed), or a regression (compare); 2 a usage error or a path, file or
memory problem (the message says which); 3 nothing was verified or measured (every backend
skipped, e.g. --device cuda without a GPU); 130 interrupted; 141 the output pipe was closed
(e.g. `| head`)."""


def _add_debug(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the full traceback of an error instead of the one-line message",
    )


def build_parser() -> argparse.ArgumentParser:
    from rnnbench import __version__

    parser = argparse.ArgumentParser(
        prog="rnnbench",
        description="One recurrent layer through every major library: do they agree, and how "
        "fast is each?",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnbench {__version__}")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"rnnbench.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rnnbench.commands.{module_name}":
                raise
            continue  # a command not built yet
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        # `rnnbench CMD --debug` works as well as `rnnbench --debug CMD`.
        _add_debug(p, argparse.SUPPRESS)
        p.set_defaults(_run=module.run)
    return parser


# errno -> what to do about it
_OS_HINTS = {
    errno.EACCES: "no permission: choose a path you own, or fix the permissions",
    errno.EPERM: "no permission: choose a path you own, or fix the permissions",
    errno.EROFS: "the filesystem is read-only: write somewhere else (e.g. under your home folder)",
    errno.EISDIR: "that is a folder: give a file name (a file inside it, for an input)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENOENT: "check the path (and the working directory)",
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EEXIST: "something is already there: choose another name",
}


def format_error(command: str, exc: BaseException) -> str:
    """The message ``main`` prints for an error: ``rnnbench CMD: error: PATH: reason`` and a
    ``Hint:`` line (library text is stripped of terminal escape sequences)."""
    from rnnbench.errors import RNNBenchError
    from rnnbench.process import strip_ansi

    hint: str | None
    if isinstance(exc, RNNBenchError):
        text = str(exc).split("\nHint: ")[0]
        hint = exc.hint or f"run `rnnbench {command} --help` to see what each option takes"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({str(exc) or 'MemoryError'})"
        hint = (
            "use smaller sizes (--batch, --seq-len, --input-size, --hidden-size, --layers), or "
            "a machine with more memory"
        )
    elif isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        text = f"{where}: {reason}" if where else reason
        hint = _OS_HINTS.get(exc.errno or 0, "check the path and its permissions")
    else:
        text, hint = f"{type(exc).__name__}: {exc}", None
    message = f"rnnbench {command}: error: {strip_ansi(text)}"
    return message + (f"\nHint: {strip_ansi(hint)}" if hint else "")


def main(argv: Sequence[str] | None = None) -> int:
    from rnnbench.errors import RNNBenchError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"rnnbench {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output went away (`| head`): stop quietly, as a tool killed by
        # SIGPIPE would (128 + 13), with nothing more written to the closed pipe at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (RNNBenchError, OSError, MemoryError) as exc:
        if args.debug:
            raise
        print(format_error(args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
