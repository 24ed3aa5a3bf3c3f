"""The ``rnnbench`` command line. Each subcommand lives in ``rnnbench/commands/<name>.py`` with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code``; heavy imports stay inside
``run`` so that ``rnnbench --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rnnbench.errors import RNNBenchError

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


def build_parser() -> argparse.ArgumentParser:
    from rnnbench import __version__

    parser = argparse.ArgumentParser(
        prog="rnnbench",
        description="One recurrent layer through every major library: do they agree, and how "
        "fast is each?",
    )
    parser.add_argument("--version", action="version", version=f"rnnbench {__version__}")
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
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except RNNBenchError as exc:
        print(f"rnnbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
