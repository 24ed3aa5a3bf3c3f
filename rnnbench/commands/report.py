"""``rnnbench report``: bench and check results into report.md and a self-contained report.html."""

from __future__ import annotations

import argparse

HELP = "write report.md and a self-contained report.html from bench and check result files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="RESULTS.json",
        help="files from `rnnbench bench --out` and `rnnbench check --json`, from one or more "
        "machines (told apart by their schema; merged, grouped by machine)",
    )
    parser.add_argument(
        "-o", "--out", metavar="DIR", default="report", help="output folder (default: report)"
    )
    parser.add_argument(
        "--no-figures", action="store_true", help="tables and notes only (faster, no matplotlib)"
    )


def run(args: argparse.Namespace) -> int:
    from rnnbench.report.build import write_report

    written = write_report(args.files, args.out, figures=not args.no_figures)
    page = written["html"].resolve()
    print(f"report written: {page} (and {written['markdown']})")
    print(f"open it in a browser: {page.as_uri()}")
    return 0
