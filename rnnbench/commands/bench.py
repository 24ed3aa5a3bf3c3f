"""``rnnbench bench``: time every backend over a sweep of sizes and write a results file."""

from __future__ import annotations

import argparse

from rnnbench.bench.runner import DEFAULT_PROCESSES
from rnnbench.commands.common import (
    add_backend_option,
    add_cell_option,
    choice_list,
    comma_list,
    dtype_list,
    nonnegative_float,
    positive_float,
    positive_int,
    seed_int,
    size_list,
    thread_list,
)

HELP = "time every backend (each in a worker process of its own) over a sweep of sizes"

EPILOG = """\
Every size option, --cell and --nonlinearity take a comma list; the run is their product
(--nonlinearity is the rnn cell's: an lstm or gru case runs once, with its own sigmoid gates
and tanh candidate). The cell is part of every result's key, so that resumed and compared
runs never mix cells. A backend that cannot compute a cell (torch has no reset-before GRU)
records those cases as "skipped" with the reason, and the sweep goes on. GFLOP/s counts the
matrix products of every gate: 2*B*T*(I+H)*G*H per layer and direction, G = 1 (rnn), 4
(lstm), 3 (gru).

--lengths full,ragged measures the cost of padding: a ragged case passes right-padded rows
(lengths drawn uniformly in [T/2, T] with --seed, the first row T long) to the backend's own
padding mechanism, which runs inside the timer. `rnnbench report` shows time(ragged) /
time(full) next to the real work (mean length / T). A backend that takes no lengths records
its ragged cases as "skipped" with the reason. The lengths are part of every result's key;
a ragged case's FLOPs still count every padded step (B*T), so its GFLOP/s compares with the
full case's.

--mode inference,training times the training step's recurrence too: a training case is the
forward and the backward pass of L = sum(y*dy) + sum(h_n*dh_n) (+ c_n for an lstm), seeded
cotangents, synchronized, in each library's own autodiff (cell.run_vjp); the first call is
timed apart as compile time, and no optimizer update is timed (it is the same elementwise
update in every library, not the recurrence). Its FLOPs are 3x the forward's: the backward
pass of each matrix product is two products of the same size (input and weight gradients).
The mode is part of every result's key; `rnnbench report` shows time(training) /
time(inference). A backend without gradients records its training cases as "skipped" with
the reason.

Each finished case is written to --out at once; running again with the same --out resumes
(cases with status "ok" are skipped). Exit status: 0 every case measured (or skipped with a
reason, e.g. a missing library) and at least one measured; 1 a case failed or timed out
(every other result is kept); 3 nothing could be measured (e.g. --device cuda on a machine
without CUDA: every case is recorded as skipped with the reason); 2 a usage error; 130
interrupted (Ctrl-C; finished cases are kept)."""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def mode_list(text: str) -> list[str]:
    """An argparse type: 'inference,training' -> each mode once, in the order given."""
    from rnnbench.bench.cases import MODES

    parts = [p.strip().lower() for p in text.split(",")]
    for mode in parts:
        if mode not in MODES:
            what = f"unknown mode {mode!r}" if mode else f"{text!r} has an empty item"
            raise argparse.ArgumentTypeError(
                f"{what}: use inference, training or inference,training"
            )
    return list(dict.fromkeys(parts))


def input_size(text: str) -> int | None:
    """An input size (a whole number >= 1), or None for "hidden" (the case's own hidden size)."""
    return None if text.strip().lower() == "hidden" else positive_int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_backend_option(parser)
    add_cell_option(parser)
    parser.add_argument(
        "--nonlinearity",
        type=choice_list(("tanh", "relu"), "nonlinearity"),
        default=["tanh"],
        help="comma list: tanh,relu (default tanh); the rnn cell's only, lstm and gru have "
        "their own",
    )
    parser.add_argument(
        "--lengths",
        type=comma_list(str, "lengths"),
        default=["full"],
        help="comma list: full,ragged (default full: every row T steps, no padding passed); "
        "ragged pads the rows to lengths in [T/2, T] through each backend's own mechanism",
    )
    parser.add_argument(
        "--mode",
        type=mode_list,
        default=["inference"],
        metavar="MODES",
        help="comma list: inference,training (default inference: the forward pass); training "
        "times the forward and backward pass of one loss (a training step without the "
        "optimizer update)",
    )
    parser.add_argument(
        "--variants",
        type=comma_list(str),
        default=None,
        help="'default' (each backend's first variant; the default), 'all', or a comma list of "
        "variant names ('scan-unroll4') or backend:variant ('keras-jax:jit')",
    )
    size = size_list
    parser.add_argument("--batch", type=size, default=[32], help="comma list (default 32)")
    parser.add_argument("--seq-len", type=size, default=[100], help="comma list (default 100)")
    parser.add_argument(
        "--input-size",
        type=comma_list(input_size, "input sizes ('hidden' or whole numbers >= 1)"),
        default=[128],
        help="comma list (default 128); 'hidden' is each case's hidden size (I = H, as "
        "DeepBench sizes its layers)",
    )
    parser.add_argument("--hidden-size", type=size, default=[256], help="comma list (default 256)")
    parser.add_argument("--layers", type=size, default=[1], help="comma list (default 1)")
    parser.add_argument(
        "--bidirectional",
        nargs="?",
        const=[True],
        default=[False],
        type=comma_list(_bool, "yes/no values"),
        help="bidirectional layers; a bare flag means yes, or a comma list such as 'no,yes'",
    )
    parser.add_argument(
        "--dtype",
        type=dtype_list,
        default=["float32"],
        help="comma list: float32,float64 (default float32)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--threads",
        type=thread_list,
        default=None,
        help="comma list of CPU thread counts, set in each worker before its library starts "
        "(OMP/MKL/OpenBLAS/TF env, torch.set_num_threads); default: each library's own",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=DEFAULT_PROCESSES,
        help=f"worker processes per case (default {DEFAULT_PROCESSES}); they stay alive "
        "together with the other backends' and take their turns interleaved, and the spread "
        "between them is the noise a second run would see",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="BACKEND",
        help="the backend each speed is shown relative to, or 'fastest' (per case); default "
        "numpy on the CPU, torch on CUDA",
    )
    parser.add_argument(
        "--min-time",
        type=nonnegative_float,
        default=1.0,
        help="seconds of timed calls per case, over all its processes (default 1.0)",
    )
    parser.add_argument(
        "--min-rounds",
        type=positive_int,
        default=5,
        help="timed calls per case at least, over all its processes (default 5)",
    )
    parser.add_argument(
        "--max-rounds",
        type=positive_int,
        default=10_000,
        help="timed calls per case at most, over all its processes (default 10000)",
    )
    parser.add_argument(
        "--warmup",
        type=nonnegative_float,
        default=0.2,
        help="seconds of untimed warm-up calls after the first (default 0.2)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="seconds a case may take, compile included, before its worker is "
        "stopped and the case recorded as 'timeout' (default 300)",
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of the weights, the input and the ragged lengths",
    )
    parser.add_argument(
        "--no-peak", action="store_true", help="skip the GEMM peak (no roofline efficiency)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain progress lines even on a terminal"
    )
    parser.add_argument(
        "--out",
        metavar="FILE.json",
        default=None,
        help="results file (written after every case; resumed when it exists)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ray|auto|ray://HOST:PORT",
        default=None,
        help="run the sweep on a Ray cluster (pip install 'rnnbench[ray]'): 'ray' starts one "
        "on this machine, 'auto' joins the one this machine belongs to, ray://HOST:PORT (or "
        "HOST:PORT) names one; each node is reserved whole while it measures, and every "
        "result comes back into --out with its node's machine record",
    )
    parser.add_argument(
        "--per",
        choices=("machine", "node"),
        default=None,
        help="with --cluster: 'machine' (default) runs every case once per machine kind (CPU "
        "model, GPU models, library versions, or an rnnbench-kind:NAME node resource); "
        "'node' runs every case on every node",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="with --cluster --per machine: share each kind's cases between its nodes (each "
        "case still runs on one node)",
    )


def run(args: argparse.Namespace) -> int:
    from rnnbench.bench import BenchConfig, run_bench
    from rnnbench.bench.cases import LENGTHS_CHOICES
    from rnnbench.bench.progress import make_reporter
    from rnnbench.errors import SpecError
    from rnnbench.fileio import check_output_file

    _check_cluster_options(args)
    if args.out is not None:
        # Before anything runs (the peak, the first case): an --out that cannot be written, or
        # that holds another kind of file, is refused and left as it is.
        check_output_file(
            args.out, flag="--out", kinds=("rnnbench.bench/",), what="bench results file"
        )
    for act in args.nonlinearity:
        if act not in ("tanh", "relu"):
            raise SpecError(f"unknown --nonlinearity {act!r}", "use tanh, relu or tanh,relu")
    lengths = [text.lower() for text in args.lengths]
    for text in lengths:
        if text not in LENGTHS_CHOICES:
            raise SpecError(
                f"unknown --lengths {text!r}",
                "use full (every row T steps), ragged (rows padded to lengths in [T/2, T]) "
                "or full,ragged",
            )
    if not lengths:
        raise SpecError("--lengths is empty", "use full, ragged or full,ragged")
    for name in ("min_time", "timeout", "warmup"):
        if getattr(args, name) < 0:
            raise SpecError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.min_rounds < 1 or args.max_rounds < args.min_rounds:
        raise SpecError(
            f"--min-rounds {args.min_rounds} / --max-rounds {args.max_rounds}: need "
            "1 <= min-rounds <= max-rounds"
        )
    if args.baseline is not None and args.baseline != "fastest":
        from rnnbench.registry import backend_info

        backend_info(args.baseline)  # an unknown name is a usage error, before anything runs
        if args.backends and args.baseline not in args.backends:
            raise SpecError(
                f"--baseline {args.baseline} is not one of --backends ({', '.join(args.backends)})",
                "add it to --backends, or pick one of them, or 'fastest'",
            )
    config = BenchConfig(
        backends=args.backends,
        variants=args.variants,
        device=args.device,
        dtypes=args.dtype,
        batches=args.batch,
        seq_lens=args.seq_len,
        input_sizes=args.input_size,
        hidden_sizes=args.hidden_size,
        layers=args.layers,
        bidirectional=args.bidirectional,
        threads=args.threads or [None],
        cells=args.cell,
        nonlinearities=args.nonlinearity,
        lengths=list(dict.fromkeys(lengths)),
        modes=args.mode,
        processes=args.processes,
        min_time=args.min_time,
        min_rounds=args.min_rounds,
        max_rounds=args.max_rounds,
        warmup_time=args.warmup,
        timeout=args.timeout,
        seed=args.seed,
        out=args.out,
        peak=not args.no_peak,
    )
    if args.cluster is not None:
        from rnnbench.bench.cluster import run_cluster

        # plain lines: results of several nodes arrive interleaved, each line names its node
        summary = run_cluster(
            config,
            args.cluster,
            per=args.per or "machine",
            split=args.split,
            reporter=make_reporter(plain=True),
        )
        by_machine: dict[str, list[dict]] = {}
        for rec in summary.records:
            by_machine.setdefault(str(rec.get("machine_id")), []).append(rec)
        for records in by_machine.values():
            _print_relative(records, args.baseline)  # each machine's backends against its own
    else:
        summary = run_bench(config, make_reporter(plain=True if args.plain else None))
        _print_relative(summary.records, args.baseline)
    code = summary.exit_code()
    if code == 3:
        reasons = sorted({str(r.get("error")).split("\n")[0] for r in summary.records})
        print("nothing was measured: " + "; ".join(reasons))
    return code


def _check_cluster_options(args: argparse.Namespace) -> None:
    """--per and --split go with --cluster; --cluster names a Ray address."""
    from rnnbench.errors import SpecError

    if args.cluster is None:
        for flag, given in (("--per", args.per is not None), ("--split", args.split)):
            if given:
                raise SpecError(
                    f"{flag} is an option of --cluster, which is not given",
                    "add --cluster ray (a Ray instance on this machine), --cluster auto or "
                    f"--cluster ray://HOST:PORT, or drop {flag}",
                )
        return
    address = args.cluster.strip()
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if address not in ("ray", "auto") and not (colon and host and port.isdigit()):
        raise SpecError(
            f"--cluster {args.cluster!r} is not a Ray address",
            "use ray (start one on this machine), auto (the cluster this machine is a node "
            "of) or ray://HOST:PORT (a cluster's client port, 10001 by default)",
        )
    if args.split and args.per == "node":
        raise SpecError(
            "--split shares a machine kind's cases between its nodes, but --per node runs "
            "every case on every node",
            "drop --split, or use --per machine",
        )
    args.cluster = address


def _print_relative(records: list[dict], baseline: str | None) -> None:
    """Each backend's speed against the baseline, case by case, with its interval."""
    from rnnbench.bench.relative import format_relative, relative_speeds
    from rnnbench.report.runs import describe_case

    rows = relative_speeds(records, baseline, describe=describe_case)
    if any(r.backend != r.baseline for r in rows):
        print()
        print(format_relative(rows))
