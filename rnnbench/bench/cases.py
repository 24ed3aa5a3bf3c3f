"""One benchmark case, and the sweep: every option takes a comma list, the run is the product."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rnnbench.spec import RNNSpec

# The fields that identify a case in a results file (resume matches on all of them).
KEY_FIELDS = (
    "backend",
    "variant",
    "device",
    "dtype",
    "batch",
    "seq_len",
    "input_size",
    "hidden_size",
    "layers",
    "bidirectional",
    "threads",
)


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

    @property
    def spec(self) -> RNNSpec:
        return RNNSpec(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.layers,
            bidirectional=self.bidirectional,
        )

    @property
    def flops(self) -> int:
        """2·B·T·(I+H)·H per layer and direction (``RNNSpec.flops``)."""
        return self.spec.flops(self.batch, self.seq_len)

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

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
        return text

    def label(self) -> str:
        return f"{self.backend}[{self.variant}] {self.device} {self.dtype} {self.size_label()}"


def key_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """The case key of a result record read back from a file."""
    return tuple(record.get(f) for f in KEY_FIELDS)


def expand_cases(
    backends_variants: Sequence[tuple[str, str]],
    *,
    device: str,
    dtypes: Sequence[str],
    batches: Sequence[int],
    seq_lens: Sequence[int],
    input_sizes: Sequence[int],
    hidden_sizes: Sequence[int],
    layers: Sequence[int] = (1,),
    bidirectional: Sequence[bool] = (False,),
    threads: Sequence[int | None] = (None,),
) -> list[BenchCase]:
    """The product of every option, grouped by (backend, variant, threads) so that one worker
    process serves a whole group; within a group, sizes grow (small cases first)."""
    out = []
    for (backend, variant), thr in itertools.product(backends_variants, threads):
        for dtype, layer, bidi, hidden, inp, batch, seq in itertools.product(
            dtypes, layers, bidirectional, hidden_sizes, input_sizes, batches, seq_lens
        ):
            out.append(
                BenchCase(
                    backend, variant, device, dtype, batch, seq, inp, hidden, layer, bidi, thr
                )
            )
    return out
