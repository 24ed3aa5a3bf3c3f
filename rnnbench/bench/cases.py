"""One benchmark case, and the sweep: every option takes a comma list, the run is the product."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rnnbench.commands.common import cell_name as _cell_name
from rnnbench.errors import SpecError
from rnnbench.padding import random_lengths
from rnnbench.spec import RNNSpec

# How the rows of a case's batch are padded: "full" (every row T steps, no padding passed) or
# "ragged" (right-padded rows, lengths drawn in [T/2, T] and passed to the backend's own
# padding mechanism). The first is what every run measured before padding existed.
LENGTHS_CHOICES = ("full", "ragged")

# What a case times: "inference" (the forward pass, ``cell.run``) or "training" (the forward
# and backward pass of one loss, ``cell.run_vjp``: a training step's recurrence, without the
# optimizer's update). The first is what every run measured before training existed.
MODES = ("inference", "training")
# A training step's matrix-product FLOPs per forward FLOP: the backward pass of each product
# is two products of the same size (the input gradient and the weight gradient).
TRAINING_FLOPS_FACTOR = 3

# The fields that identify a case in a results file (resume and `rnnbench compare` match on all
# of them): the cell and its formula are part of it, so that runs of different cells never mix.
KEY_FIELDS = (
    "backend",
    "variant",
    "device",
    "dtype",
    "cell",
    "reset_after",
    "nonlinearity",
    "batch",
    "seq_len",
    "input_size",
    "hidden_size",
    "layers",
    "bidirectional",
    "lengths",
    "mode",
    "threads",
)
# What a record written before a field existed means (schema rnnbench.bench/1.0 had no cell:
# every case was a vanilla tanh RNN; before 1.2 every batch was full length; before 1.3 every
# case timed the forward pass alone).
KEY_DEFAULTS: dict[str, Any] = {
    "cell": "rnn",
    "reset_after": None,
    "nonlinearity": "tanh",
    "layers": 1,
    "bidirectional": False,
    "threads": None,
    "lengths": "full",
    "mode": "inference",
}


@dataclass(frozen=True)
class BenchCase:
    backend: str
    variant: str
    device: str
    dtype: str
    batch: int
    seq_len: int
    input_size: int
    hidden_size: int
    layers: int = 1
    bidirectional: bool = False
    threads: int | None = None  # None: the library's default thread count
    cell: str = "rnn"
    reset_after: bool | None = None  # a GRU's formula; None (and True) for a GRU means after
    nonlinearity: str = "tanh"  # the vanilla RNN's; gated cells are always "tanh"
    lengths: str = "full"  # LENGTHS_CHOICES
    mode: str = "inference"  # MODES

    def __post_init__(self) -> None:
        if self.lengths not in LENGTHS_CHOICES:
            raise SpecError(
                f"unknown lengths {self.lengths!r} for a benchmark case",
                f"use {' or '.join(LENGTHS_CHOICES)}",
            )
        if self.mode not in MODES:
            raise SpecError(
                f"unknown mode {self.mode!r} for a benchmark case", f"use {' or '.join(MODES)}"
            )
        # The spec checks the combination (relu on a gated cell, reset_after on an LSTM) and
        # settles a GRU's reset_after, so that "gru" and "gru, reset_after=True" are one key.
        object.__setattr__(self, "reset_after", self.spec.reset_after)

    @property
    def spec(self) -> RNNSpec:
        return RNNSpec(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.layers,
            bidirectional=self.bidirectional,
            nonlinearity=self.nonlinearity,  # type: ignore[arg-type]
            cell=self.cell,
            reset_after=self.reset_after,
        )

    @property
    def cell_name(self) -> str:
        """ "rnn", "lstm", "gru" or "gru-reset-before" (as ``--cell`` names it)."""
        return _cell_name(self.cell, self.reset_after)

    @property
    def forward_flops(self) -> int:
        """2·B·T·(I+H)·G·H per layer and direction, G the cell's gates (``RNNSpec.flops``)."""
        return self.spec.flops(self.batch, self.seq_len)

    @property
    def flops(self) -> int:
        """The matrix-product FLOPs of one timed call: the forward pass's for inference, three
        times that for training (the forward products, then for each of them the input
        gradient and the weight gradient, both products of the same size). Elementwise work
        is not counted, in either mode."""
        factor = TRAINING_FLOPS_FACTOR if self.mode == "training" else 1
        return factor * self.forward_flops

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    def row_lengths(self, seed: int) -> np.ndarray | None:
        """The lengths a ragged case passes (uniform in [T/2, T], the first row T, repeatable
        by ``seed``); None for a full-length case, which passes no padding at all."""
        if self.lengths == "full":
            return None
        t = self.seq_len
        return random_lengths(self.batch, t, t // 2, t, seed=seed)

    def lengths_record(self, seed: int) -> dict[str, Any]:
        """What a result records of its lengths: mean, min and max (all T for a full batch),
        and the seed they were drawn with, so that a report can show the real work fraction
        (mean length / T) and a run can be repeated."""
        lengths = self.row_lengths(seed)
        if lengths is None:
            t = self.seq_len
            return {
                "lengths_mean": float(t),
                "lengths_min": t,
                "lengths_max": t,
                "lengths_seed": None,
            }
        return {
            "lengths_mean": float(lengths.mean()),
            "lengths_min": int(lengths.min()),
            "lengths_max": int(lengths.max()),
            "lengths_seed": seed,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def size_label(self) -> str:
        text = f"B={self.batch} T={self.seq_len} I={self.input_size} H={self.hidden_size}"
        if self.layers > 1:
            text += f" L={self.layers}"
        if self.bidirectional:
            text += " bi"
        if self.threads is not None:
            text += f" thr={self.threads}"
        if self.lengths != "full":
            text += f" {self.lengths}"
        if self.mode != "inference":
            text += f" {self.mode}"
        return text

    def label(self) -> str:
        cell = self.cell_name + (f" {self.nonlinearity}" if self.nonlinearity != "tanh" else "")
        return (
            f"{self.backend}[{self.variant}] {self.device} {self.dtype} {cell} {self.size_label()}"
        )


def key_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """The case key of a result record read back from a file; fields an older record lacks take
    what they meant then (``KEY_DEFAULTS``), and a GRU without reset_after is reset-after."""
    values = {f: record.get(f, KEY_DEFAULTS.get(f)) for f in KEY_FIELDS}
    if values["cell"] == "gru" and values["reset_after"] is None:
        values["reset_after"] = True
    return tuple(values[f] for f in KEY_FIELDS)


def group_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """The case a record (or ``BenchCase.to_dict()``) measured, without its backend and
    variant: the cases of one group run interleaved, and compare one backend with another."""
    return tuple(v for f, v in zip(KEY_FIELDS, key_of(record)) if f not in ("backend", "variant"))


def expand_cases(
    backends_variants: Sequence[tuple[str, str]],
    *,
    device: str,
    dtypes: Sequence[str],
    batches: Sequence[int],
    seq_lens: Sequence[int],
    input_sizes: Sequence[int | None],
    hidden_sizes: Sequence[int],
    layers: Sequence[int] = (1,),
    bidirectional: Sequence[bool] = (False,),
    threads: Sequence[int | None] = (None,),
    cells: Sequence[tuple[str, bool | None]] = (("rnn", None),),
    nonlinearities: Sequence[str] = ("tanh",),
    lengths: Sequence[str] = ("full",),
    modes: Sequence[str] = ("inference",),
) -> list[BenchCase]:
    """The product of every option, grouped by (backend, variant, threads) so that one worker
    process serves a whole group; within a group, by dtype and cell, then sizes grow (small
    cases first). ``cells`` holds (cell, reset_after) pairs. ``nonlinearities`` are the vanilla
    RNN's: gated cells have their own (sigmoid gates, tanh candidate), so each of their cases
    is made once, with "tanh", whatever ``nonlinearities`` holds. ``modes`` varies fastest,
    then ``lengths``, so that the inference and the training case of one shape run one after
    the other, and the full and the ragged case of one mode one or two cases apart (each ratio,
    the training cost and the padding cost, is best measured close together). An input size
    of None is the
    case's hidden size (I = H, as DeepBench sizes its layers); a case that comes out twice
    (e.g. sizes 32 and None with hidden 32) is made once."""
    out: list[BenchCase] = []
    seen: set[tuple[Any, ...]] = set()
    for (backend, variant), thr in itertools.product(backends_variants, threads):
        for dtype, (cell, reset_after) in itertools.product(dtypes, cells):
            for act, layer, bidi, hidden, inp, batch, seq, padded, mode in itertools.product(
                nonlinearities if cell == "rnn" else ["tanh"],
                layers,
                bidirectional,
                hidden_sizes,
                input_sizes,
                batches,
                seq_lens,
                lengths,
                modes,
            ):
                case = BenchCase(
                    backend,
                    variant,
                    device,
                    dtype,
                    batch,
                    seq,
                    hidden if inp is None else inp,
                    hidden,
                    layer,
                    bidi,
                    thr,
                    cell=cell,
                    reset_after=reset_after,
                    nonlinearity=act,
                    lengths=padded,
                    mode=mode,
                )
                if case.key() not in seen:
                    seen.add(case.key())
                    out.append(case)
    return out
