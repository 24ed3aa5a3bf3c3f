"""``rnnbench check``: every backend against the float64 reference, one case per cell."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from rnnbench.commands.common import (
    add_backend_option,
    add_cell_option,
    add_device_option,
    available_memory,
    cell_name,
    dtype_list,
    gib,
    positive_float,
    positive_int,
    seed_int,
)

HELP = "compare every backend's output with the float64 NumPy reference; exit 1 if one differs"

# The file `--json` writes: {"schema": CHECKS_SCHEMA, "checks": [one check result per cell]},
# each check result as `rnnbench.compare` writes it (schema rnnbench.check/1.x). A list of them,
# so that one run of several cells is one file; `rnnbench report` reads it and the older
# single-result files alike. Next to "checks", the file records "inputs" (every option the
# run was given, under the names of INPUT_KEYS, and the command line that repeats it) and
# "machine" (rnnbench.bench.machine.machine_record(), as a bench results file has it).
CHECKS_SCHEMA = "rnnbench.checks/1"
INPUT_KEYS = (
    "cells",
    "backends",
    "dtypes",
    "device",
    "batch",
    "seq_len",
    "input_size",
    "hidden_size",
    "layers",
    "bidirectional",
    "nonlinearity",
    "bias",
    "seed",
    "recurrent_norm",
    "h0",
    "lengths",
    "mask",
    "grad",
    "command",
)

EPILOG = """\
One table per cell. --cell takes a comma list, e.g. `--cell lstm,gru,gru-reset-before` checks
both GRU formulas in one run; every cell gets the same sizes, seed and dtypes. An LSTM is
checked on its output, h_n and c_n (the table's c_n column). --h0 starts from a random
initial state: (h0, c0) for an LSTM. A backend that cannot compute a cell (torch has no
reset-before GRU) is listed as skipped with the reason. --json FILE writes every cell's result
into one file (schema rnnbench.checks/1: {"checks": [...]}, each entry a rnnbench.check/1.3
result, with "inputs": every option of the run and the command line that repeats it, and
"machine": this machine and its software); it is checked to be writable before anything runs,
and an existing file there that is not a check result (a bench results file) is never
overwritten.

Exit status: 0 every backend passed or was skipped, and at least one was compared; 1 a backend
failed or broke in some cell; 2 a usage error (a bad option, an unwritable --json, a case too
large for this machine's memory); 3 nothing was verified: every backend was skipped in every
cell (e.g. --device cuda on a machine without CUDA), each with its reason.

Padded batches: --lengths random draws each row's length in [1, T], --lengths MIN:MAX in
[MIN, MAX] (the first row always gets the longest), and every backend runs them through its
library's own mechanism (packed sequences, sequence_length, Keras masks, a masked scan). Outputs
past a length must be zero and the final state the one after each row's last real step.
--mask random puts holes anywhere in the batch (Keras' mask semantics: a masked step carries the
state and repeats the previous output); backends whose library pads only at the end (torch,
tf1) are listed as skipped with the reason.

--grad also checks the backward pass: each backend's own autodiff computes the gradients of
sum(y * dy) + sum(h_n * dh_n) (+ c_n for an LSTM) for seeded random cotangents, and a second
table gives, per backend and dtype, the max error of dx, dh0 (dc0) and the worst weight array
against its bound, and the first step where dx leaves its tolerance (errors grow backwards in
time, from the last step to the first). The JSON rows hold every array's error and bound."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_backend_option(parser)
    add_cell_option(parser)
    parser.add_argument("--batch", type=positive_int, default=4, help="(default 4)")
    parser.add_argument("--seq-len", type=positive_int, default=50, help="(default 50)")
    parser.add_argument("--input-size", type=positive_int, default=8, help="(default 8)")
    parser.add_argument("--hidden-size", type=positive_int, default=16, help="(default 16)")
    parser.add_argument("--layers", type=positive_int, default=1, help="(default 1)")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default="tanh",
        help="the rnn cell's (default tanh); lstm and gru have their own",
    )
    parser.add_argument("--no-bias", action="store_true", help="a layer without biases")
    parser.add_argument(
        "--dtype", type=dtype_list, default=["float32"], help="comma list: float32,float64"
    )
    add_device_option(parser)
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="seed of the weights and the input (>= 0)"
    )
    parser.add_argument(
        "--recurrent-norm",
        type=positive_float,
        default=None,
        help="rescale W_hh to this spectral norm (<1 contractive, >1 expansive)",
    )
    parser.add_argument(
        "--h0",
        action="store_true",
        help="start from a random initial state ((h0, c0) for an lstm)",
    )
    padded = parser.add_mutually_exclusive_group()
    padded.add_argument(
        "--lengths",
        type=lengths_option,
        default=None,
        metavar="random|MIN:MAX",
        help="right-padded rows of random lengths, in [1, T] or in [MIN, MAX]",
    )
    padded.add_argument(
        "--mask",
        choices=("random",),
        default=None,
        help="a mask with holes anywhere (Keras semantics; numpy, jax and keras take it)",
    )
    parser.add_argument(
        "--grad",
        action="store_true",
        help="also compare gradients (each backend's autodiff against the float64 BPTT)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write every cell's comparison as JSON (one file)"
    )


def lengths_option(text: str) -> tuple[int, int] | str:
    """An argparse type: 'random' (lengths in [1, T]) or 'MIN:MAX' (1 <= MIN <= MAX)."""
    if text.strip().lower() == "random":
        return "random"
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'random' or MIN:MAX (two whole numbers, e.g. 10:50)"
        ) from exc
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(
            f"lengths {text!r}: need 1 <= MIN <= MAX (every row has at least one real step)"
        )
    return bounds


def case_bytes(args: argparse.Namespace, gates: int) -> int:
    """About how many bytes one cell's check holds at its peak: x (drawn in float64, cast to
    the dtype), the weights (float64 and the dtype), a pass's outputs and gate pre-activations
    (the float64 reference's and a backend's, in the widest dtype asked for), the errors
    measured on them, the initial states and, with --grad, every step's activations kept for
    the backward pass. An estimate (NumPy's own peak is about 1.2 to 2 times smaller), to
    refuse a case that cannot fit before allocating it."""
    b, t, i, h = args.batch, args.seq_len, args.input_size, args.hidden_size
    d = 2 if args.bidirectional else 1
    # the backends run one dtype at a time: the widest one counts
    s = max(4 if dtype == "float32" else 8 for dtype in args.dtype)
    weights = sum(d * ((i if k == 0 else d * h) + h + 2) * gates * h for k in range(args.layers))
    y = b * t * d * h
    activations = y * (gates + 3)
    states = 2 * args.layers * d * b * h
    total = (
        weights * (16 + s)
        + b * t * i * (16 + s)
        + activations * (8 + s)
        + 3 * 8 * y  # the errors, bounds and relative errors of one comparison
        + states * (8 + s)
    )
    if args.recurrent_norm is not None:
        total += 4 * 8 * h * gates * h  # the SVD of each w_hh
    if args.grad:
        total += args.layers * activations * (8 + s) + (b * t * i + y) * (8 + s)
    return int(total)


def check_memory(args: argparse.Namespace) -> None:
    """Refuse (exit 2) a case larger than the memory this machine has free."""
    from rnnbench.errors import SpecError
    from rnnbench.spec import CELLS

    needed = max(case_bytes(args, CELLS[cell]) for cell, _ in args.cell)
    free = available_memory()
    if free is not None and needed > free:
        raise SpecError(
            f"this check needs about {gib(needed)} of memory (x, the weights, outputs and "
            f"states in each dtype and the float64 reference's copies), but this machine has "
            f"{gib(free)} available",
            "use smaller sizes: --batch, --seq-len, --input-size, --hidden-size or --layers "
            "(the float64 reference holds every output of the whole sequence)",
        )


def inputs_record(args: argparse.Namespace, backends: list[str]) -> dict[str, Any]:
    """Every input of the run, under INPUT_KEYS, and the command line that repeats it."""
    cells = [cell_name(*cell) for cell in args.cell]
    lengths = list(args.lengths) if isinstance(args.lengths, tuple) else args.lengths
    record: dict[str, Any] = {
        "cells": cells,
        "backends": backends,
        "dtypes": list(args.dtype),
        "device": args.device,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "input_size": args.input_size,
        "hidden_size": args.hidden_size,
        "layers": args.layers,
        "bidirectional": bool(args.bidirectional),
        "nonlinearity": args.nonlinearity,
        "bias": not args.no_bias,
        "seed": args.seed,
        "recurrent_norm": args.recurrent_norm,
        "h0": bool(args.h0),
        "lengths": lengths,
        "mask": args.mask,
        "grad": bool(args.grad),
    }
    words = [
        "rnnbench",
        "check",
        "--backends",
        ",".join(backends),
        "--cell",
        ",".join(cells),
        "--dtype",
        ",".join(args.dtype),
        "--device",
        args.device,
    ]
    for key in ("batch", "seq_len", "input_size", "hidden_size", "layers", "seed"):
        words += [f"--{key.replace('_', '-')}", str(record[key])]
    words += ["--nonlinearity", args.nonlinearity]
    if args.recurrent_norm is not None:
        words += ["--recurrent-norm", repr(args.recurrent_norm)]
    if isinstance(args.lengths, tuple):
        words += ["--lengths", f"{args.lengths[0]}:{args.lengths[1]}"]
    elif args.lengths is not None:
        words += ["--lengths", args.lengths]
    if args.mask is not None:
        words += ["--mask", args.mask]
    for flag, on in (
        ("--bidirectional", args.bidirectional),
        ("--no-bias", args.no_bias),
        ("--h0", args.h0),
        ("--grad", args.grad),
    ):
        if on:
            words.append(flag)
    record["command"] = shlex.join(words)
    return record


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from rnnbench.bench.machine import machine_record
    from rnnbench.compare import compare
    from rnnbench.fileio import atomic_write_text, check_output_file
    from rnnbench.padding import random_lengths, random_mask
    from rnnbench.registry import list_backends
    from rnnbench.spec import RNNSpec
    from rnnbench.state import from_tuple
    from rnnbench.weights import RNNWeights

    if args.json is not None:
        # Before any work: a run that cannot keep its result does not start.
        check_output_file(
            args.json,
            flag="--json",
            kinds=("rnnbench.checks/", "rnnbench.check/"),
            what="check result",
        )
    if isinstance(args.lengths, tuple) and args.lengths[1] > args.seq_len:
        print(
            f"rnnbench check: error: --lengths {args.lengths[0]}:{args.lengths[1]} is longer "
            f"than --seq-len {args.seq_len}\nHint: lengths count real steps of each sequence: "
            f"at most --seq-len",
            file=sys.stderr,
        )
        return 2
    # Every spec first: a wrong size fails before any backend runs.
    specs = [
        RNNSpec(
            input_size=args.input_size,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            bidirectional=args.bidirectional,
            nonlinearity=args.nonlinearity if cell == "rnn" else "tanh",
            bias=not args.no_bias,
            cell=cell,
            reset_after=reset_after,
        )
        for cell, reset_after in args.cell
    ]
    check_memory(args)
    backends = list(args.backends) if args.backends is not None else list_backends()
    results = []
    for i, spec in enumerate(specs):
        weights = RNNWeights.random(
            spec, seed=args.seed, dtype="float64", recurrent_norm=args.recurrent_norm
        )
        rng = np.random.default_rng(args.seed + 1)
        x = rng.standard_normal((args.batch, args.seq_len, args.input_size))
        h0 = None
        if args.h0:
            shape = (spec.num_layers * spec.num_directions, args.batch, spec.hidden_size)
            h0 = from_tuple(spec, tuple(rng.uniform(-1, 1, shape) for _ in spec.state_names))
        padding: dict[str, Any] = {}
        if args.lengths is not None:
            low, high = (1, args.seq_len) if args.lengths == "random" else args.lengths
            padding["lengths"] = random_lengths(args.batch, args.seq_len, low, high, args.seed)
        elif args.mask:
            padding["mask"] = random_mask(args.batch, args.seq_len, args.seed)
        result = compare(
            weights,
            x,
            h0,
            backends,
            dtypes=args.dtype,
            device=args.device,
            grad=args.grad,
            **padding,
        )
        results.append(result)
        if i:
            print()
        print(result.table())
        if args.grad:
            print()
            print(result.grad_table())
        for row in result.rows:
            if row.status in ("fail", "error"):
                print(f"\n{row.backend} ({row.dtype}): {row.reason}; tolerance {row.tolerance}")
            if row.grad_status in ("fail", "error"):
                print(
                    f"\n{row.backend} ({row.dtype}) gradients: {row.grad_reason}; tolerance "
                    f"{row.grad_tolerance}"
                )
    if args.json:
        record = {
            "schema": CHECKS_SCHEMA,
            "inputs": inputs_record(args, backends),
            "machine": machine_record(),
            "checks": [r.to_dict() for r in results],
        }
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n", make_folder=True)
    if len(results) > 1:
        bad = [cell_name(*cell) for cell, r in zip(args.cell, results) if not r.passed]
        print(
            f"\n{len(results)} cells checked: "
            + (f"a backend differs in {', '.join(bad)}" if bad else "no backend differs")
        )
    if not all(r.passed for r in results):
        return 1
    if not any(r.compared for r in results):
        reasons = dict.fromkeys(reason for r in results for reason in r.skip_reasons())
        print(
            "\nnothing was verified (exit 3): every backend was skipped"
            + (":\n" + "\n".join(f"- {reason}" for reason in reasons) if reasons else "")
        )
        return 3
    return 0
