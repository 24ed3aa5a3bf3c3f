"""pytest-benchmark suite of rnnbench (``pytest benchmarks --benchmark-json out.json``).

It times the same prepared calls as ``rnnbench bench --mode inference,training`` (``run`` +
``synchronize`` on an input already on the device, and the training step ``run_vjp`` +
``synchronize``; the first call and warm-up rounds outside the timer), but in the pytest
process: backends that need a process-wide setting (keras*, tf1) run only when this process
already has it, e.g. ``KERAS_BACKEND=jax pytest benchmarks --bench-backends keras-jax``;
otherwise they are skipped with that command as the reason. ``rnnbench bench`` runs them all,
each in a worker of its own.

Options: ``--bench-backends a,b`` (env ``RNNBENCH_BACKENDS``), ``--bench-device cpu|cuda``
(env ``RNNBENCH_DEVICE``), ``--bench-variants default|all`` (default: each backend's first),
``--bench-cells rnn,lstm,gru,gru-reset-before`` (env ``RNNBENCH_CELLS``; default all four; a
backend that cannot compute a cell skips it with the reason).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import rnnbench as rb
from rnnbench.registry import load_cell_class


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnnbench")
    group.addoption(
        "--bench-backends",
        default=None,
        help="comma list of backends (default: all; env RNNBENCH_BACKENDS)",
    )
    group.addoption(
        "--bench-device",
        default=None,
        choices=("cpu", "cuda"),
        help="device (default cpu; env RNNBENCH_DEVICE)",
    )
    group.addoption(
        "--bench-cells",
        default=None,
        help="comma list of cells: rnn, lstm, gru, gru-reset-before (default: all; env "
        "RNNBENCH_CELLS)",
    )
    group.addoption(
        "--bench-variants",
        default="default",
        choices=("default", "all"),
        help="each backend's default variant, or all of them",
    )


def bench_device(config: pytest.Config) -> str:
    return config.getoption("--bench-device") or os.environ.get("RNNBENCH_DEVICE") or "cpu"


def _variants(name: str) -> tuple[str, ...]:
    info = rb.backend_info(name)
    if info.unavailable_reason() is not None:
        return ("default",)
    try:
        return tuple(load_cell_class(info).variants)
    except rb.BackendUnavailableError:
        return ("default",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        from rnnbench.commands.common import CELL_CHOICES, cell_list

        raw_cells = metafunc.config.getoption("--bench-cells") or os.environ.get("RNNBENCH_CELLS")
        chosen = cell_list(raw_cells) if raw_cells else list(CELL_CHOICES.values())
        names = {v: k for k, v in CELL_CHOICES.items()}
        metafunc.parametrize("cell", chosen, ids=[names[c] for c in chosen])
    if "backend_variant" not in metafunc.fixturenames:
        return
    config = metafunc.config
    raw = config.getoption("--bench-backends") or os.environ.get("RNNBENCH_BACKENDS")
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else rb.list_backends()
    for name in names:
        rb.backend_info(name)  # an unknown name is a usage error here, not a skip
    every = config.getoption("--bench-variants") == "all"
    pairs = [(n, v) for n in names for v in (_variants(n) if every else _variants(n)[:1])]
    metafunc.parametrize("backend_variant", pairs, ids=[f"{n}-{v}" for n, v in pairs])


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return bench_device(request.config)


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """rnnbench's machine record (CPU, BLAS, GPUs, versions, git commit) next to
    pytest-benchmark's own."""
    from rnnbench.bench.machine import machine_id, machine_record, runtime_info

    record = machine_record()
    record["runtime"] = runtime_info()  # threads and TF32 of the libraries this process loaded
    machine_info["rnnbench"] = {**record, "machine_id": machine_id(record)}
