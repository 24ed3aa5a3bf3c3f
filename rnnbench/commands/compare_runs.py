"""``rnnbench compare``: two bench result files, case by case, with a noise-aware verdict."""

from __future__ import annotations

import argparse

HELP = (
    "compare two `rnnbench bench` result files case by case (ratio new/old with an interval "
    "from the spread between processes and the machine's drift between runs); exit 1 when a "
    "case got slower beyond the threshold and beyond the noise"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD.json", help="the baseline run")
    parser.add_argument("new", metavar="NEW.json", help="the run to judge")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="relative change below which a case is 'same' even when significant "
        "(default 0.05 = 5%%)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="1 - the confidence of the ratio's interval (default 0.05: a 95%% interval); for "
        "files before bench/1.5, the level of the Mann-Whitney U test on the samples",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the comparison as JSON (never over OLD, NEW or a file of another kind)",
    )


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rnnbench.errors import RNNBenchError
    from rnnbench.fileio import atomic_write_text, check_input_file, check_output_file
    from rnnbench.report.plots import fmt_time
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import (
        REGRESSIONS,
        as_dicts,
        backend_summaries,
        compare_runs,
        settings_warnings,
    )
    from rnnbench.texttable import text_table

    if not args.threshold >= 0 or not 0 < args.alpha < 1:
        raise RNNBenchError(
            f"--threshold {args.threshold} / --alpha {args.alpha} out of range",
            "use a threshold >= 0 (0.05 = 5%) and an alpha between 0 and 1",
        )
    for path in (args.old, args.new):
        check_input_file(path, what="bench results file")
    if args.json is not None:
        check_output_file(
            args.json,
            flag="--json",
            kinds=("rnnbench.compare/",),
            inputs=(args.old, args.new),
            what="comparison",
        )
    old, new = load_bench(args.old), load_bench(args.new)
    for f in (old, new):
        if f.note:
            print(f"note: {f.path}: {f.note}")
    for text in settings_warnings(old, new):
        print(f"warning: {text}")
    rows = compare_runs(old, new, args.threshold, args.alpha)
    level = f"{100 * (1 - args.alpha):.0f}%"
    head = (
        "backend", "case", "old", "new", "new/old", "others moved", "beyond others",
        f"{level} interval", "verdict",
    )  # fmt: skip
    body = []
    for r in rows:
        ratio = "-" if r.ratio != r.ratio else f"{r.ratio:.3f}"
        moved = "-" if r.shift != r.shift else f"{100 * r.shift:+.1f}%"
        beyond = "-" if r.adjusted != r.adjusted or r.shift != r.shift else f"{r.adjusted:.3f}"
        if r.low == r.low:
            interval = f"[{r.low:.3f}, {r.high:.3f}]"
        elif r.p_value is not None:
            interval = f"p={r.p_value:.2g}"
        else:
            interval = "-"
        verdict = r.verdict + (f" ({r.note})" if r.note else "")
        label = r.backend if r.variant == "default" else f"{r.backend} [{r.variant}]"
        body.append(
            (label, r.case, fmt_time(r.old_median_s), fmt_time(r.new_median_s), ratio, moved,
             beyond, interval, verdict)
        )  # fmt: skip
    print(text_table(head, body, wrap_last=True))
    summaries = backend_summaries(rows, args.threshold, args.alpha)
    if summaries:
        print(f"\nper backend, over its cases ({level} interval from the spread between cases):")
        print(
            text_table(
                ("backend", "cases", "new/old", f"{level} interval", "verdict"),
                [
                    (
                        s.backend if s.variant == "default" else f"{s.backend} [{s.variant}]",
                        s.cases,
                        f"{s.ratio:.3f}",
                        f"[{s.low:.3f}, {s.high:.3f}]",
                        s.verdict,
                    )
                    for s in summaries
                ],
            )
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    print(
        f"\n{len(rows)} case(s): "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + f" (threshold {args.threshold:.0%}, alpha {args.alpha})"
    )
    if args.json:
        record = {
            "schema": "rnnbench.compare/1.1",
            "old": args.old,
            "new": args.new,
            "threshold": args.threshold,
            "alpha": args.alpha,
            "warnings": settings_warnings(old, new),
            "cases": as_dicts(rows),
            "backends": [asdict(s) for s in summaries],
        }
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n", make_folder=True)
    regressions = [r for r in rows if r.verdict in REGRESSIONS]
    slower = [s for s in summaries if s.verdict == "slower"]
    if slower:
        print(
            f"{len(slower)} backend(s) slower over their cases: "
            + ", ".join(f"{s.backend} {s.ratio:.3f}x" for s in slower)
        )
    if regressions or slower:
        print(
            f"{len(regressions)} regression(s): slower beyond the threshold and the noise, or "
            "newly failing"
        )
        return 1
    return 0
