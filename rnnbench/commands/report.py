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
    from rnnbench.fileio import check_input_file, check_output_folder
    from rnnbench.report.build import write_report

    # Before any work: every input a readable file, the output folder one that can be written.
    for path in args.files:
        check_input_file(path, what="results file")
    check_output_folder(args.out, flag="-o", inputs=args.files)

    written = write_report(args.files, args.out, figures=not args.no_figures)
    page = written["html"].resolve()
    print(f"report written: {page} (and {written['markdown']})")
    print(f"open it in a browser: {page.as_uri()}")
    return 0
