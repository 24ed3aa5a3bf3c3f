"""``rnnbench compare``: two bench result files, case by case, with a noise-aware verdict."""

from __future__ import annotations

import argparse

HELP = (
    "compare two `rnnbench bench` result files case by case (ratio of medians, Mann-Whitney U "
    "on the samples); exit 1 when a case got significantly slower beyond the threshold"
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
        help="significance level of the Mann-Whitney U test (default 0.05)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the comparison as JSON (never over OLD, NEW or a file of another kind)",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from rnnbench.errors import RNNBenchError
    from rnnbench.fileio import atomic_write_text, check_input_file, check_output_file
    from rnnbench.report.model import machine_label
    from rnnbench.report.plots import fmt_time
    from rnnbench.report.results import load_bench
    from rnnbench.report.runs import REGRESSIONS, as_dicts, compare_runs

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
    old_m, new_m = machine_label(old.machine), machine_label(new.machine)
    if old_m != new_m:
        print(f"note: the runs come from different machines:\n  old: {old_m}\n  new: {new_m}")
    rows = compare_runs(old, new, args.threshold, args.alpha)
    head = ("backend", "case", "old", "new", "new/old", "p", "verdict")
    body = []
    for r in rows:
        ratio = "-" if r.ratio != r.ratio else f"{r.ratio:.3f}"
        p = "-" if r.p_value is None else f"{r.p_value:.2g}"
        verdict = r.verdict + (f" ({r.note})" if r.note else "")
        label = r.backend if r.variant == "default" else f"{r.backend} [{r.variant}]"
        body.append(
            (label, r.case, fmt_time(r.old_median_s), fmt_time(r.new_median_s), ratio, p, verdict)
        )
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    widths[-1] = len(head[-1])
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
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
            "schema": "rnnbench.compare/1",
            "old": args.old,
            "new": args.new,
            "threshold": args.threshold,
            "alpha": args.alpha,
            "cases": as_dicts(rows),
        }
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n", make_folder=True)
    regressions = [r for r in rows if r.verdict in REGRESSIONS]
    if regressions:
        print(f"{len(regressions)} regression(s): slower beyond the threshold, or newly failing")
        return 1
    return 0
