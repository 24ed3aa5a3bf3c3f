"""Weight file formats for ``rnnbench convert``: one module per format, each importing its
library lazily (inside ``read``/``write``), all meeting in the canonical :class:`RNNWeights`.

Each format module has ``read(path, *, nonlinearity, prefix) -> RNNWeights`` and
``write(weights, path) -> list of notes``, plus two facts: ``CARRIES_NONLINEARITY`` (does the file
record tanh/relu?) and ``TWO_BIASES`` (does it hold b_ih and b_hh apart, so a round trip through
it is exact?). Every write is atomic: a temporary file in the target's folder, renamed into place.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import ModuleType

from rnnbench.errors import WeightFileError
from rnnbench.weights import RNNWeights


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    suffixes: tuple[str, ...]  # matched against the end of the file name, longest first
    description: str

    def load(self) -> ModuleType:
        return importlib.import_module(f"rnnbench.formats.{self.module}")


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("npz", "native", (".npz",), "rnnbench's own .npz (RNNWeights.save), spec inside"),
        Format("safetensors", "native", (".safetensors",), "rnnbench's own .safetensors"),
        Format("torch", "torch_pt", (".pt", ".pth"), "a torch.nn.RNN state dict (torch.save)"),
        Format("keras", "keras_h5", (".weights.h5",), "Keras 3 save_weights of SimpleRNN layers"),
        Format("onnx", "onnx_model", (".onnx",), "an ONNX model of RNN nodes"),
        Format("tf1-npz", "tf1_arrays", (".tf1.npz",), "TF1 kernel/bias arrays, by variable name"),
        Format("tf1-ckpt", "tf1_checkpoint", (".ckpt", ".ckpt.index"), "a TF1 Saver checkpoint"),
    )
}


def guess(path: str | PathLike[str], reading: bool) -> str:
    """The format of ``path`` from its name; a plain ``.npz`` being read is told apart by its
    keys (rnnbench's own holds ``rnnbench_spec``; TF1 arrays hold ``.../basic_rnn_cell/kernel``)."""
    name = Path(path).name.lower()
    matches = [(len(s), f.name) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    if not matches:
        known = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
        raise WeightFileError(
            f"cannot tell the format of {path} from its name",
            f"use a known suffix ({known}) or name the format with --from/--to "
            f"({', '.join(FORMATS)})",
        )
    fmt = max(matches)[1]
    if fmt == "npz" and reading:
        from rnnbench.formats import tf1_arrays

        if tf1_arrays.looks_like_tf1(Path(path)):
            return "tf1-npz"
    return fmt


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise WeightFileError(f"unknown format {name!r}", f"use one of {', '.join(FORMATS)}")
    return FORMATS[name]


def read(
    path: str | PathLike[str],
    fmt: str | None = None,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
) -> RNNWeights:
    """Read weights of format ``fmt`` (guessed from the name when None)."""
    source = Path(path)
    fmt = fmt or guess(source, reading=True)
    weights: RNNWeights = (
        get_format(fmt).load().read(source, nonlinearity=nonlinearity, prefix=prefix)
    )
    return weights


def write(weights: RNNWeights, path: str | PathLike[str], fmt: str | None = None) -> list[str]:
    """Write ``weights`` as ``fmt`` (guessed from the name when None); returns notes for the user
    (what the format dropped or changed)."""
    target = Path(path)
    fmt = fmt or guess(target, reading=False)
    module = get_format(fmt).load()
    notes: list[str] = list(module.write(weights, target))
    if not module.CARRIES_NONLINEARITY and weights.spec.nonlinearity != "tanh":
        notes.append(
            f"{fmt} files do not record the nonlinearity: build the layer with "
            f"{weights.spec.nonlinearity} (and pass --nonlinearity "
            f"{weights.spec.nonlinearity} when converting the file back)"
        )
    two = module.TWO_BIASES or not weights.spec.bias
    if not two and any(dw.b_hh.any() for _, _, dw in weights.iter_directions()):
        notes.append(f"{fmt} holds one bias per direction: it got b_ih + b_hh")
    return notes


def carries_nonlinearity(fmt: str) -> bool:
    return bool(get_format(fmt).load().CARRIES_NONLINEARITY)


def two_biases(fmt: str) -> bool:
    return bool(get_format(fmt).load().TWO_BIASES)
