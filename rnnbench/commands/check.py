"""``rnnbench check``: every backend against the float64 reference, one case per cell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rnnbench.commands.common import (
    add_backend_option,
    add_cell_option,
    cell_name,
    comma_list,
)

HELP = "compare every backend's output with the float64 NumPy reference; exit 1 if one differs"

# The file `--json` writes: {"schema": CHECKS_SCHEMA, "checks": [one check result per cell]},
# each check result as `rnnbench.compare` writes it (schema rnnbench.check/1.x). A list of them,
# so that one run of several cells is one file; `rnnbench report` reads it and the older
# single-result files alike.
CHECKS_SCHEMA = "rnnbench.checks/1"

EPILOG = """\
One table per cell. --cell takes a comma list, e.g. `--cell lstm,gru,gru-reset-before` checks
both GRU formulas in one run; every cell gets the same sizes, seed and dtypes. An LSTM is
checked on its output, h_n and c_n (the table's c_n column). --h0 starts from a random
initial state: (h0, c0) for an LSTM. A backend that cannot compute a cell (torch has no
reset-before GRU) is listed as skipped with the reason. --json FILE writes every cell's result
into one file (schema rnnbench.checks/1: {"checks": [...]}, each entry a rnnbench.check/1.3
result). Exit status: 0 every backend passed or was skipped, 1 a backend failed or broke in
some cell, 2 a usage error.

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
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--input-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default="tanh",
        help="the rnn cell's (default tanh); lstm and gru have their own",
    )
    parser.add_argument("--no-bias", action="store_true", help="a layer without biases")
    parser.add_argument(
        "--dtype", type=comma_list(str), default=["float32"], help="comma list: float32,float64"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the input")
    parser.add_argument(
        "--recurrent-norm",
        type=float,
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


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from rnnbench.compare import compare
    from rnnbench.padding import random_lengths, random_mask
    from rnnbench.spec import RNNSpec
    from rnnbench.state import from_tuple
    from rnnbench.weights import RNNWeights

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
            args.backends,
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
        with open(args.json, "w") as fh:
            json.dump(
                {"schema": CHECKS_SCHEMA, "checks": [r.to_dict() for r in results]}, fh, indent=2
            )
    if len(results) > 1:
        bad = [cell_name(*cell) for cell, r in zip(args.cell, results) if not r.passed]
        print(
            f"\n{len(results)} cells checked: "
            + (f"a backend differs in {', '.join(bad)}" if bad else "no backend differs")
        )
    return 0 if all(r.passed for r in results) else 1
