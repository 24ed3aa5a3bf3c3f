"""``rnnbench check``: every backend against the float64 reference on one case."""

from __future__ import annotations

import argparse

from rnnbench.commands.common import add_backend_option, comma_list

HELP = "compare every backend's output with the float64 NumPy reference; exit 1 if one differs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_option(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--input-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh")
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
    parser.add_argument("--h0", action="store_true", help="start from a random initial state")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from rnnbench.compare import compare
    from rnnbench.spec import RNNSpec
    from rnnbench.weights import RNNWeights

    spec = RNNSpec(
        input_size=args.input_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        bidirectional=args.bidirectional,
        nonlinearity=args.nonlinearity,
        bias=not args.no_bias,
    )
    weights = RNNWeights.random(
        spec, seed=args.seed, dtype="float64", recurrent_norm=args.recurrent_norm
    )
    rng = np.random.default_rng(args.seed + 1)
    x = rng.standard_normal((args.batch, args.seq_len, args.input_size))
    h0 = None
    if args.h0:
        h0 = rng.uniform(
            -1, 1, (spec.num_layers * spec.num_directions, args.batch, spec.hidden_size)
        )
    result = compare(weights, x, h0, args.backends, dtypes=args.dtype, device=args.device)
    print(result.table())
    for row in result.rows:
        if row.status in ("fail", "error"):
            print(f"\n{row.backend} ({row.dtype}): {row.reason}; tolerance {row.tolerance}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result.to_dict(), fh, indent=2)
    return 0 if result.passed else 1
