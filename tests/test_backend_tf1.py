"""The TF1 backend (BasicRNNCell + dynamic_rnn in a Session, in its own worker process): against
the float64 reference, graph reuse, the seed notebook's replay, and a worker that dies."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest
from reference_cases import check_case

import rnnbench as rb
import rnnbench.process
from rnnbench.commands.seed import check_kernel
from rnnbench.process import pooled_worker
from rnnbench.tolerances import SEED_REPLAY_ATOL

CASES = {
    # name: (spec, batch, steps, with_h0, dtype)
    "bidir-relu-h0-f64": (
        rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, nonlinearity="relu"),
        2,
        12,
        True,
        "float64",
    ),
    "bidir-tanh-f32": (rb.RNNSpec(3, 5, num_layers=2, bidirectional=True), 2, 12, False, "float32"),
    "multirnncell-tanh-h0-f32": (rb.RNNSpec(4, 6, num_layers=3), 3, 9, True, "float32"),
    "one-layer-relu-nobias-f64": (
        rb.RNNSpec(2, 4, nonlinearity="relu", bias=False),
        1,
        5,
        False,
        "float64",
    ),
}


def _run(cell: Any, name: str) -> dict[str, Any]:
    spec, batch, steps, with_h0, _ = CASES[name]
    return check_case(cell, spec, batch, steps, with_h0)[2]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(cells: Any, name: str) -> None:
    found = _run(cells.get("tf1", CASES[name][4]), name)
    # A layer that read only its own direction below (bidirectional over MultiRNNCell) or a
    # swapped kernel half would be off by O(0.1), far above rounding.
    assert found["max_abs"] < (1e-12 if CASES[name][4] == "float64" else 1e-5)


def test_graph_built_once_per_shape(cells: Any) -> None:
    cell = cells.get("tf1", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    x = np.ones((2, 4, 2), np.float32)
    cell.forward(x)
    built = cell.info()["graphs_built"]
    y1, _ = cell.forward(x)
    y2, _ = cell.forward(x)
    assert cell.info()["graphs_built"] == built  # reused, not rebuilt
    np.testing.assert_array_equal(y1, y2)
    cell.forward(np.ones((2, 5, 2), np.float32))  # another length: one more graph
    assert cell.info()["graphs_built"] == built + 1
    assert cell.info()["path"] == "tf1 graph + Session (dynamic_rnn while_loop)"
    assert cell.info()["process"] == "worker"


def test_seed_replay_reproduces_the_notebook(cells: Any, seed_notebook: dict) -> None:
    cells.get("tf1", "float32")  # skips without tensorflow/tf-keras; starts the worker once
    x = np.array(seed_notebook["input"], np.float32)
    worker = pooled_worker(rb.backend_info("tf1"))
    target = "rnnbench.backends.tf1_backend:replay_seed"
    header, got = worker.call(target, {"input": x}, num_units=4, graph_seed=35)
    _, again = worker.call(target, {"input": x}, num_units=4, graph_seed=35)
    assert header["state_size"] == 4
    assert header["variables"] == [
        [seed_notebook["kernel_name"], [6, 4]],
        [seed_notebook["bias_name"], [4]],
    ]
    ok, lines = check_kernel(got["kernel"], seed_notebook["kernel"])
    assert ok, lines
    # The kernel is the seed's to the last printed digit; as float32 it is equal wherever the
    # 8 printed decimals pin the value down (3 small elements are 1-2 ulp off the record).
    assert (got["kernel"] == np.float32(seed_notebook["kernel"])).sum() >= 21
    np.testing.assert_array_equal(again["kernel"], got["kernel"])  # a second replay: same seed
    np.testing.assert_allclose(
        got["output"], seed_notebook["output"], atol=SEED_REPLAY_ATOL, rtol=0
    )
    np.testing.assert_allclose(
        got["final_state"], seed_notebook["final_state"], atol=SEED_REPLAY_ATOL, rtol=0
    )


def test_in_process_use_is_refused() -> None:
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        pytest.skip("this process has the tf1 environment; the guard does not apply")
    if rb.backend_info("tf1").unavailable_reason() is not None:
        pytest.skip("tf1 unavailable")
    # Refused before TensorFlow is imported: disable_v2_behavior would switch this process.
    with pytest.raises(rb.BackendUnavailableError, match="worker process of its own"):
        rb.get_backend("tf1", isolate=False)


def test_worker_crash_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private worker pool, so that the session's shared workers are not the ones killed; the
    # NumPy backend in a worker starts in well under a second.
    monkeypatch.setattr(rnnbench.process, "_pool", {})
    cell = rb.get_backend("numpy", isolate=True)
    worker = cell._worker  # type: ignore[attr-defined]
    try:
        cell.load(rb.RNNWeights.random(rb.RNNSpec(1, 4), seed=0))
        x = np.zeros((1, 400_000, 1), np.float32)  # seconds of NumPy loop: killed mid-call
        killer = threading.Timer(0.5, worker.proc.kill)
        killer.start()
        with pytest.raises(rb.BackendRuntimeError, match=r"backend 'numpy'.*died") as died:
            cell.forward(x)
        killer.join()
        assert "exit code -9" in str(died.value)
        with pytest.raises(rb.BackendRuntimeError, match=r"backend 'numpy'.*gone"):
            cell.forward(x[:, :2])
    finally:
        worker.kill()
