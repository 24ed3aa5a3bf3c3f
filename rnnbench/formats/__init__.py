"""Weight file formats for ``rnnbench convert``: one module per format, each importing its
library lazily (inside ``read``/``write``), all meeting in the canonical :class:`RNNWeights`.

Each format module has ``read(path, *, nonlinearity, prefix, forget_bias, reset_after) ->
RNNWeights`` and ``write(weights, path, *, forget_bias) -> list of notes``, plus two facts:
``CARRIES_NONLINEARITY`` (does the file record tanh/relu?) and ``two_biases(spec)`` (does it hold
b_ih and b_hh apart for that spec, so a round trip through it is exact?). Every write is atomic:
a temporary file in the target's folder, renamed into place.

Every format holds every cell (vanilla RNN, LSTM, GRU) that its library has: the cell is read
from the file where the file says it (the npz spec, the ONNX node type, the TF1 variable names,
the Keras group names), else from the shapes (a torch state dict). What a file cannot say is an
argument: the vanilla RNN's ``nonlinearity``, a TF1 LSTM's ``forget_bias`` (added at run time,
never stored; TF1's default 1.0), a bias-free Keras GRU's ``reset_after``. What a library
cannot hold is refused before anything is written: a reset-before GRU as a torch state dict
(nn.GRU is reset-after only), a reset-after GRU as TF1 (GRUCell is reset-before only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from types import ModuleType

from rnnbench.errors import LayoutError, WeightFileError
from rnnbench.spec import RNNSpec
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
        Format(
            "torch", "torch_pt", (".pt", ".pth"), "a torch.nn.RNN/LSTM/GRU state dict (torch.save)"
        ),
        Format(
            "keras",
            "keras_h5",
            (".weights.h5",),
            "Keras 3 save_weights of SimpleRNN/LSTM/GRU layers",
        ),
        Format("onnx", "onnx_model", (".onnx",), "an ONNX model of RNN/LSTM/GRU nodes"),
        Format("tf1-npz", "tf1_arrays", (".tf1.npz",), "TF1 kernel/bias arrays, by variable name"),
        Format("tf1-ckpt", "tf1_checkpoint", (".ckpt", ".ckpt.index"), "a TF1 Saver checkpoint"),
    )
}


def guess(path: str | PathLike[str], reading: bool) -> str:
    """The format of ``path`` from its name; a plain ``.npz`` being read is told apart by its
    keys (rnnbench's own holds ``rnnbench_spec``; TF1 arrays hold cell variables such as
    ``.../basic_rnn_cell/kernel`` or ``.../lstm_cell/kernel``)."""
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
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
    spec: RNNSpec | None = None,
) -> RNNWeights:
    """Read weights of format ``fmt`` (guessed from the name when None).

    ``nonlinearity`` (a vanilla RNN's), ``forget_bias`` (a TF1 LSTM's) and ``reset_after`` (a
    GRU's) say what the file may not; where the file says it, they must agree with it.
    ``spec``, when given, is what the file must hold: it also supplies the nonlinearity and
    reset_after the file cannot say, and a file holding anything else (another cell, size,
    direction...) is refused. A file that always holds biases (TF1) read with ``bias=False``
    must hold zeros.
    """
    source = Path(path)
    fmt = fmt or guess(source, reading=True)
    module = get_format(fmt).load()
    fallback = reset_after  # for a file that does not say its GRU formula
    if spec is not None:
        if nonlinearity is None and spec.cell == "rnn" and not module.CARRIES_NONLINEARITY:
            nonlinearity = spec.nonlinearity
        if fallback is None and spec.cell == "gru":
            fallback = spec.reset_after
    weights: RNNWeights = module.read(
        source,
        nonlinearity=nonlinearity,
        prefix=prefix,
        forget_bias=forget_bias,
        reset_after=fallback,
    )
    found = weights.spec
    if reset_after is not None and found.cell == "gru" and found.reset_after != reset_after:
        raise LayoutError(
            f"{source} holds a GRU with reset_after={found.reset_after}, but "
            f"reset_after={reset_after} was given",
            "leave --reset-after/--reset-before out for this file (it records the formula)",
        )
    if spec is not None:
        weights = _expect(weights, spec, source)
    return weights


def _expect(weights: RNNWeights, spec: RNNSpec, source: Path) -> RNNWeights:
    """``weights`` as ``spec`` says, or a LayoutError naming what differs."""
    found = weights.spec
    zero_biases = not any(
        a.any() for _, _, dw in weights.iter_directions() for a in dw.arrays()[2:]
    )
    if found.bias and not spec.bias and replace(found, bias=False) == spec and zero_biases:
        return RNNWeights(spec, weights.layers, dtype=weights.dtype)  # the file's zeros
    if found != spec:
        fields = [f for f in spec.to_dict() if getattr(found, f) != getattr(spec, f)]
        raise LayoutError(
            f"{source} holds {found.describe()}, not the expected {spec.describe()} "
            f"(they differ in {', '.join(fields)})",
            "pass the file that matches the spec, or a spec that matches the file",
        )
    return weights


def write(
    weights: RNNWeights,
    path: str | PathLike[str],
    fmt: str | None = None,
    *,
    forget_bias: float = 1.0,
) -> list[str]:
    """Write ``weights`` as ``fmt`` (guessed from the name when None); returns notes for the user
    (what the format dropped or changed). ``forget_bias`` is the one a TF1 LSTM cell will be
    built with: it is taken out of the stored forget-gate bias."""
    target = Path(path)
    fmt = fmt or guess(target, reading=False)
    module = get_format(fmt).load()
    notes: list[str] = list(module.write(weights, target, forget_bias=forget_bias))
    spec = weights.spec
    if not module.CARRIES_NONLINEARITY and spec.nonlinearity != "tanh":
        notes.append(
            f"{fmt} files do not record the nonlinearity: build the layer with "
            f"{spec.nonlinearity} (and pass --nonlinearity "
            f"{spec.nonlinearity} when converting the file back)"
        )
    two = module.two_biases(spec) or not spec.bias
    if not two and any(dw.b_hh.any() for _, _, dw in weights.iter_directions()):
        notes.append(f"{fmt} holds one bias per direction: it got b_ih + b_hh")
    return notes


def carries_nonlinearity(fmt: str) -> bool:
    return bool(get_format(fmt).load().CARRIES_NONLINEARITY)


def two_biases(fmt: str, spec: RNNSpec | None = None) -> bool:
    """Whether ``fmt`` holds b_ih and b_hh apart for ``spec`` (a vanilla RNN when None), so that
    a round trip through it keeps both exactly."""
    return bool(get_format(fmt).load().two_biases(spec or RNNSpec(1, 1)))


def holds(fmt: str, spec: RNNSpec) -> bool:
    """Whether ``fmt`` can hold ``spec``'s cell: nn.GRU (torch) is reset-after only, TF1's
    GRUCell reset-before only."""
    if spec.cell == "gru" and spec.reset_after:
        return fmt not in ("tf1-npz", "tf1-ckpt")
    if spec.cell == "gru":
        return fmt != "torch"
    return True
