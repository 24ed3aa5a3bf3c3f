"""Does `rnnbench compare` tell noise from change? Two runs of the same code (A/A) must give no
"slower" or "faster" verdict, and a backend made 10% slower must be caught.

    .venv/bin/python benchmarks/aa_check.py --out-dir aa            # the case set below
    .venv/bin/python benchmarks/aa_check.py --out-dir aa --min-time 1 --backends numpy,torch

Three runs of the same sweep, one after the other, each a `rnnbench bench` of its own:
``a1.json`` and ``a2.json`` (A/A), then ``slow.json``, where one backend (``--slow``, default
torch) is replaced by the same cell with a calibrated slowdown: after each timed call it keeps
the core busy for ``--slowdown`` (10%) of that call's own time, so the backend is exactly 10%
slower at every size, while the others are unchanged. Then ``rnnbench compare a1 a2`` and
``rnnbench compare a2 slow`` are printed, with their verdict counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

SLOWDOWN_ENV = "RNNBENCH_AA_SLOWDOWN"


def slowed(base: type) -> type:
    """``base`` with every timed call (``run``, ``run_vjp``) made slower by the fraction in
    ``$RNNBENCH_AA_SLOWDOWN``: real work first, then a busy wait of that fraction of its time
    (a sleep would free the core and change what the call competes with)."""

    class Slowed(base):  # type: ignore[misc, valid-type]
        def _slow(self, t0: float) -> None:
            extra = (time.perf_counter() - t0) * float(os.environ.get(SLOWDOWN_ENV, "0.1"))
            end = time.perf_counter() + extra
            while time.perf_counter() < end:
                pass

        def run(self, prepared: Any) -> Any:
            t0 = time.perf_counter()
            result = super().run(prepared)
            self.synchronize(result)
            self._slow(t0)
            return result

        def run_vjp(self, prepared: Any) -> Any:
            t0 = time.perf_counter()
            result = super().run_vjp(prepared)
            self.synchronize(result)
            self._slow(t0)
            return result

    Slowed.__name__ = Slowed.__qualname__ = f"Slowed{base.__name__}"
    return Slowed


def _slowed_target(name: str) -> str:
    return f"benchmarks.aa_check:slowed_{name.replace('-', '_')}"


BASE_ENV = "RNNBENCH_AA_BASE"


def __getattr__(attr: str) -> Any:
    """``benchmarks.aa_check:slowed_torch`` (a worker loads the cell class by this name): the
    class of the built-in target the parent put in ``$RNNBENCH_AA_BASE`` (the worker's
    registry names this very target for the backend), slowed."""
    if attr.startswith("slowed_"):
        import importlib

        module, _, name = os.environ[BASE_ENV].partition(":")
        return slowed(getattr(importlib.import_module(module), name))
    raise AttributeError(attr)


def main(argv: list[str] | None = None) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    import dataclasses

    from rnnbench import registry
    from rnnbench.bench import BenchConfig, run_bench
    from rnnbench.bench.progress import PlainReporter
    from rnnbench.cli import main as cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--backends", default="numpy,torch,jax,keras-jax")
    parser.add_argument("--slow", default="torch", help="the backend made slower in slow.json")
    parser.add_argument("--slowdown", type=float, default=0.10)
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    config = BenchConfig(
        backends=args.backends.split(","),
        batches=[1, 32],
        seq_lens=[100],
        input_sizes=[32, 128],
        hidden_sizes=[256],
        min_time=args.min_time,
        processes=args.processes,
    )
    paths = {name: os.path.join(args.out_dir, f"{name}.json") for name in ("a1", "a2", "slow")}
    for name, path in paths.items():
        if os.path.exists(path):
            os.remove(path)
        if name == "slow":
            os.environ[SLOWDOWN_ENV] = str(args.slowdown)
            info = registry.backend_info(args.slow)
            os.environ[BASE_ENV] = info.target  # the workers inherit it
            slowed_info = dataclasses.replace(info, target=_slowed_target(args.slow))
            registry._load_registry()[args.slow] = slowed_info
        t0 = time.perf_counter()
        print(f"=== {name}: {path}", flush=True)
        run_bench(dataclasses.replace(config, out=path), PlainReporter())
        print(f"=== {name} took {time.perf_counter() - t0:.0f} s", flush=True)
    for old, new in (("a1", "a2"), ("a2", "slow")):
        print(f"\n=== rnnbench compare {paths[old]} {paths[new]}", flush=True)
        code = cli(["compare", paths[old], paths[new]])
        print(f"(exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
