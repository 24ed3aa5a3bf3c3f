"""The worker process behind ``ProcessCell`` and the benchmark: ``python -m rnnbench.worker``.

It serves requests on stdin/stdout (see ``rnnbench.wire``). Library chatter printed to stdout
would corrupt the pipe, so the real stdout is kept on a private descriptor and file descriptor 1
is pointed at stderr before any library is imported.

Requests: ``new`` (make a cell, get a handle), ``load``, ``forward``, ``vjp``, ``info``,
``close``, and
``call`` (run ``module:function(**kwargs)`` that returns ``(header_dict, arrays_dict)``; used by
the benchmark and ``rnnbench seed`` to run whole jobs inside the backend's process).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import numpy as np


def _serve() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from rnnbench import state as state_mod
    from rnnbench import wire
    from rnnbench.registry import backend_info, get_backend
    from rnnbench.spec import RNNSpec
    from rnnbench.weights import RNNWeights

    cells: dict[int, Any] = {}
    next_handle = 0
    fd = sys.stdin.fileno()
    while True:
        try:
            header, arrays = wire.receive(fd)
        except wire.WireClosed:
            return
        op = header.get("op")
        try:
            reply: dict[str, Any] = {"ok": True}
            out_arrays: dict[str, np.ndarray] = {}
            if op == "new":
                info = backend_info(header["backend"])
                cell = get_backend(
                    info.name,
                    header["device"],
                    header["dtype"],
                    header.get("variant"),
                    isolate=False,
                )
                next_handle += 1
                cells[next_handle] = cell
                reply["handle"] = next_handle
                reply["info"] = cell.info()
                reply["variant"] = cell.variant
            elif op == "load":
                spec = RNNSpec.from_dict(header["spec"])
                cells[header["handle"]].load(RNNWeights.from_arrays(spec, arrays))
            elif op == "forward":
                cell = cells[header["handle"]]
                states = wire.read_state("0", arrays)
                h0 = None if states is None else state_mod.from_tuple(cell.spec, states)
                y, h_n = cell.forward(
                    arrays["x"], h0, lengths=arrays.get("lengths"), mask=arrays.get("mask")
                )
                final = tuple(np.asarray(s) for s in state_mod.as_tuple(cell.spec, h_n))
                out_arrays = {"y": np.asarray(y), **wire.state_arrays("_n", final)}
                reply["info"] = cell.info()
            elif op == "vjp":
                cell = cells[header["handle"]]
                states = wire.read_state("0", arrays)
                dstates = wire.read_state("_n_grad", arrays)
                grads = cell.vjp(
                    arrays["x"],
                    None if states is None else state_mod.from_tuple(cell.spec, states),
                    arrays.get("dy"),
                    None if dstates is None else state_mod.from_tuple(cell.spec, dstates),
                    lengths=arrays.get("lengths"),
                    mask=arrays.get("mask"),
                )
                out_arrays = grads.arrays()
                reply["info"] = cell.info()
            elif op == "info":
                reply["info"] = cells[header["handle"]].info()
            elif op == "close":
                cells.pop(header["handle"], None)
            elif op == "call":
                module_name, _, func = header["target"].partition(":")
                function = getattr(importlib.import_module(module_name), func)
                result_header, out_arrays = function(arrays=arrays, **header.get("kwargs", {}))
                reply["result"] = result_header
            elif op == "exit":
                wire.send(out, reply)
                return
            else:
                raise ValueError(f"unknown worker request {op!r}")
        except Exception as exc:
            reply = {
                "ok": False,
                "error_type": type(exc).__name__,
                "message": str(exc),
                "hint": getattr(exc, "hint", None),
                "traceback": traceback.format_exc(),
            }
            out_arrays = {}
        wire.send(out, reply, out_arrays)


if __name__ == "__main__":
    _serve()
