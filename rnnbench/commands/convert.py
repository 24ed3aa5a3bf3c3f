"""``rnnbench convert``: RNN, LSTM and GRU weights from one library's file format to another's."""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

from rnnbench.errors import RNNBenchError

HELP = (
    "convert RNN/LSTM/GRU weights between file formats (torch .pt, Keras .weights.h5, ONNX, "
    "TF1, npz)"
)

_FORMAT_HELP = (
    "npz, safetensors (rnnbench's own, spec inside), torch (.pt state dict), keras "
    "(.weights.h5), onnx (.onnx), tf1-npz (.tf1.npz: TF1 variable names as keys), tf1-ckpt "
    "(.ckpt checkpoint prefix)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="the file to read")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="the file to write")
    parser.add_argument(
        "--from",
        dest="from_format",
        metavar="FMT",
        default=None,
        help=f"format of IN (default: from its name; a plain .npz by its keys): {_FORMAT_HELP}",
    )
    parser.add_argument(
        "--to",
        dest="to_format",
        metavar="FMT",
        default=None,
        help="format of OUT (default: from its name; a plain .npz is rnnbench's own)",
    )
    parser.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default=None,
        help="a vanilla RNN's activation, for formats that do not record it (torch, keras, "
        "tf1-*; default tanh); must agree with formats that do",
    )
    parser.add_argument(
        "--forget-bias",
        type=float,
        default=1.0,
        metavar="F",
        help="the forget_bias a TF1 LSTMCell/BasicLSTMCell is built with, which TF1 adds to the "
        "forget gate at run time and never stores: added to the bias when reading a TF1 LSTM, "
        "taken out when writing one (default 1.0, TF1's default)",
    )
    formula = parser.add_mutually_exclusive_group()
    formula.add_argument(
        "--reset-after",
        dest="reset_after",
        action="store_const",
        const=True,
        default=None,
        help="the GRU applies its reset gate after the recurrent product (PyTorch, Keras' "
        "default), for a file that does not say it (a Keras GRU without bias); must agree with "
        "files that do",
    )
    formula.add_argument(
        "--reset-before",
        dest="reset_after",
        action="store_const",
        const=False,
        help="the GRU applies its reset gate before the recurrent product (TF1 GRUCell, Keras "
        "reset_after=False, ONNX linear_before_reset=0)",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="read only the RNN under this name prefix (a torch module path 'encoder.rnn.', a "
        "TF1 scope 'encoder/', a Keras layer group, an ONNX node name)",
    )


# Python keywords of the readers whose hints the command line says with its own flags.
_KEYWORD = re.compile(
    r"(?<![\w(.])(prefix|nonlinearity|forget_bias|reset_after)=('[^']*'|\"[^\"]*\"|[\w.+-]+)?"
)
_FLAGS = {"prefix": "--prefix", "nonlinearity": "--nonlinearity", "forget_bias": "--forget-bias"}


def as_flags(text: str) -> str:
    """A reader's hint in command-line words: ``prefix='enc.'`` -> ``--prefix enc.``,
    ``reset_after=False`` -> ``--reset-before`` (a library's own call, such as
    ``GRU(reset_after=False)``, is left as it is)."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if name == "reset_after":
            return {"True": "--reset-after", "False": "--reset-before"}.get(
                value or "", "--reset-after or --reset-before"
            )
        return f"{_FLAGS[name]} {value.strip(chr(34) + chr(39))}" if value else _FLAGS[name]

    return _KEYWORD.sub(flag, text)


def _in_flags(exc: RNNBenchError) -> RNNBenchError:
    """The same error, its hint naming the flags the user typed instead of Python keywords."""
    if not exc.hint or as_flags(exc.hint) == exc.hint:
        return exc
    try:
        return type(exc)(str(exc).split("\nHint: ")[0], as_flags(exc.hint))
    except TypeError:  # a subclass with a constructor of its own
        return exc


def run(args: argparse.Namespace) -> int:
    from rnnbench import formats
    from rnnbench.fileio import PathError, check_output_file

    source = Path(args.input)
    if source.is_dir():
        raise PathError(
            f"{source}: is a folder, not a weight file",
            "give the weight file itself (for a TF1 checkpoint, its prefix: DIR/model.ckpt)",
        )
    # Before reading: an output that cannot be written is refused first, and the input is
    # never the output (a failed write would not harm it, but a converted file over its
    # source is never what was meant).
    check_output_file(args.output, flag="-o", inputs=(args.input,), what="weight file")
    src_fmt = args.from_format or formats.guess(args.input, reading=True)
    dst_fmt = args.to_format or formats.guess(args.output, reading=False)
    formats.get_format(src_fmt)
    formats.get_format(dst_fmt)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            weights = formats.read(
                args.input,
                src_fmt,
                nonlinearity=args.nonlinearity,
                prefix=args.prefix,
                forget_bias=args.forget_bias,
                reset_after=args.reset_after,
            )
    except RNNBenchError as exc:
        raise _in_flags(exc) from exc
    # The read line comes first, so that a refused write still shows what the file held.
    print(f"read  {args.input} ({src_fmt}): {weights.spec.describe()}, {weights.dtype}")
    notes = [str(w.message) for w in caught]
    if (
        weights.spec.cell == "rnn"
        and args.nonlinearity is None
        and not formats.carries_nonlinearity(src_fmt)
        and not any("nonlinearity" in note for note in notes)
    ):
        notes.append(
            f"{src_fmt} files do not record a vanilla RNN's activation: read as tanh; if the "
            "model used relu, convert again with --nonlinearity relu"
        )
    for note in notes:
        print(f"note: {as_flags(note)}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    try:
        notes = formats.write(weights, args.output, dst_fmt, forget_bias=args.forget_bias)
    except RNNBenchError as exc:
        raise _in_flags(exc) from exc
    print(f"wrote {args.output} ({dst_fmt})")
    for note in notes:
        print(f"note: {note}")
    return 0
