"""The Keras 3 backends (keras on TensorFlow, keras-jax, keras-torch), each in its own worker
process: against the float64 reference, which Keras backend ran, and what each refuses and why.
Cells come from the session's ``cells`` cache, so each worker starts once."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from reference_cases import check_case

import rnnbench as rb

KERAS_BACKENDS = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}

# (backend, dtype, variant): Keras computes float64 only on TensorFlow (see keras_backend.py),
# and keras-torch has no jit variant.
RUNS = [
    ("keras", "float64", "eager"),
    ("keras", "float32", "jit"),
    ("keras-jax", "float32", "eager"),
    ("keras-jax", "float32", "jit"),
    ("keras-torch", "float32", "eager"),
]


@pytest.fixture(scope="module", autouse=True)
def _start_workers_together(cells: Any) -> Iterator[None]:
    """Start the three Keras workers at once (each import takes seconds, mostly single-core);
    a backend that cannot start is left for its tests to skip or fail on."""

    def start(name: str) -> None:
        # pytest's skip outcome is a BaseException; the backend's own tests report it.
        with contextlib.suppress(BaseException):
            cells.get(name, "float32")

    threads = [threading.Thread(target=start, args=(name,)) for name in KERAS_BACKENDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    yield


@pytest.mark.parametrize(("name", "dtype", "variant"), RUNS)
def test_stacked_bidirectional_relu_with_h0(
    cells: Any, name: str, dtype: str, variant: str
) -> None:
    spec = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, nonlinearity="relu")
    cell = cells.get(name, dtype, variant=variant)
    _, _, found = check_case(cell, spec, batch=2, steps=12, with_h0=True)
    # A wrong Bidirectional weight order or state split shows as an O(1) error, not rounding.
    assert found["max_abs"] < (1e-12 if dtype == "float64" else 1e-5)


def test_stacked_unidirectional_tanh(cells: Any) -> None:
    # The model is built by one function for every Keras backend; one of them suffices here.
    spec = rb.RNNSpec(4, 6, num_layers=3)
    check_case(cells.get("keras", "float32"), spec, batch=3, steps=9, with_h0=False)


@pytest.mark.parametrize("name", list(KERAS_BACKENDS))
def test_info_reports_the_keras_backend_that_ran(cells: Any, name: str) -> None:
    info = cells.get(name, "float32").info()
    assert info["backend"] == name
    assert info["keras_backend"] == KERAS_BACKENDS[name]
    default = "eager" if name == "keras-torch" else "jit"  # Keras' predict() compiles
    assert info["variant"] == default
    assert info["path"].startswith(f"keras {KERAS_BACKENDS[name]} {default}")
    assert info["process"] == "worker"
    assert info["versions"]["keras"] and info["versions"][KERAS_BACKENDS[name]]


def test_tensorflow_sync_is_a_host_copy(cells: Any) -> None:
    assert ".numpy() host copy" in cells.get("keras", "float32").info()["path"]


@pytest.mark.parametrize("name", ["keras-jax", "keras-torch"])
def test_float64_refused_with_the_reason(cells: Any, name: str) -> None:
    cells.get(name, "float32")  # skips when unavailable; starts (or reuses) the worker
    with pytest.raises(rb.BackendUnavailableError, match="promotes float64 to float32"):
        rb.get_backend(name, dtype="float64")


def test_keras_torch_jit_refused_with_the_reason(cells: Any) -> None:
    cells.get("keras-torch", "float32")
    with pytest.raises(rb.BackendUnavailableError, match="torch.compile"):
        rb.get_backend("keras-torch", variant="jit")


@pytest.mark.parametrize("name", ["keras-jax", "keras-torch"])
def test_cuda_runs_or_is_a_clear_error(cells: Any, name: str) -> None:
    cells.get(name, "float32")
    try:
        cell = rb.get_backend(name, device="cuda")
    except rb.BackendUnavailableError as exc:  # no GPU here: the message must say so
        assert "no GPU" in str(exc) or "no CUDA device" in str(exc)
        assert name in str(exc)
        return
    spec = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, nonlinearity="relu")
    check_case(cell, spec, batch=2, steps=12, with_h0=True)
    assert cell.info()["device"] == "cuda"


def test_keras_tensorflow_has_no_cuda_device() -> None:
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras not installed")
    with pytest.raises(rb.BackendUnavailableError, match="no device 'cuda'"):
        rb.get_backend("keras", device="cuda")
