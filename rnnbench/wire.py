"""Messages between rnnbench and its worker processes: a JSON header plus NumPy arrays (as an
in-memory ``.npz``, read with ``allow_pickle=False``). Nothing crosses the pipe as a pickle."""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time
from typing import Any, BinaryIO

import numpy as np

_LEN = struct.Struct("<QQ")


class WireClosed(EOFError):
    """The other side closed the pipe (exited or crashed)."""


class WireTimeout(TimeoutError):
    """No answer within the deadline."""


_STATE_NAMES = ("h", "c")  # a state tuple's arrays travel as h<suffix>, c<suffix>


def state_arrays(suffix: str, states: tuple[np.ndarray, ...] | None) -> dict[str, np.ndarray]:
    """A state tuple ((h,) or (h, c)) as named arrays ``h<suffix>``, ``c<suffix>``; none for
    None (zeros)."""
    if states is None:
        return {}
    return {f"{name}{suffix}": np.asarray(s) for name, s in zip(_STATE_NAMES, states)}


def read_state(suffix: str, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """The inverse of :func:`state_arrays`."""
    found = tuple(arrays[f"{n}{suffix}"] for n in _STATE_NAMES if f"{n}{suffix}" in arrays)
    return found or None


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    head = json.dumps(header).encode()
    body = b""
    if arrays:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
        body = buf.getvalue()
    return _LEN.pack(len(head), len(body)) + head + body


def send(
    stream: BinaryIO, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> None:
    stream.write(encode(header, arrays))
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise WireTimeout(
                    f"no answer within the time limit ({n - remaining}/{n} bytes read)"
                )
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise WireClosed("the pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, timeout: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    head_len, body_len = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
    header = json.loads(_read_exact(fd, head_len, deadline))
    arrays: dict[str, np.ndarray] = {}
    if body_len:
        body = _read_exact(fd, body_len, deadline)
        with np.load(io.BytesIO(body), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    return header, arrays
