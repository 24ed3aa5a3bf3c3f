"""The backend registry: names, unknown and missing backends, entry points, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import registry

BUILTIN = ["numpy", "torch", "jax", "keras", "keras-jax", "keras-torch", "tf1"]


def test_every_builtin_backend_is_registered() -> None:
    assert rb.list_backends()[: len(BUILTIN)] == BUILTIN


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(rb.UnknownBackendError, match="unknown backend 'pytorch'") as info:
        rb.get_backend("pytorch")
    for name in BUILTIN:
        assert name in str(info.value)


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = rb.BackendInfo(
        "fake-lib", "nowhere:Cell", requires=("surely_not_installed_lib",), extra="fake"
    )
    monkeypatch.setitem(registry._load_registry(), "fake-lib", fake)
    assert "fake-lib" not in rb.available_backends()
    with pytest.raises(rb.BackendUnavailableError) as info:
        rb.get_backend("fake-lib")
    message = str(info.value)
    assert "surely_not_installed_lib" in message and "pip install 'rnnbench[fake]'" in message


def test_a_broken_adapter_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its library is installed (numpy), so an import failure of the adapter is a bug."""
    broken = rb.BackendInfo("broken", "rnnbench.backends.no_such_adapter:Cell", requires=("numpy",))
    monkeypatch.setitem(registry._load_registry(), "broken", broken)
    with pytest.raises(rb.BackendRuntimeError, match="importing its adapter"):
        rb.get_backend("broken")


def test_unknown_device_is_refused() -> None:
    with pytest.raises(rb.BackendUnavailableError, match="has no device 'tpu'"):
        rb.get_backend("numpy", device="tpu")


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(rb.SpecError, match="(?s)no variant 'fast'.*hoisted"):
        rb.get_backend("numpy", variant="fast")


def test_register_backend_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = dict(registry._load_registry())
    monkeypatch.setattr(registry, "_registry", reg)
    info = rb.BackendInfo("numpy-again", "rnnbench.backends.numpy_backend:NumpyCell")
    rb.register_backend(info)
    assert "numpy-again" in rb.list_backends()
    with pytest.raises(rb.RNNBenchError, match="already registered"):
        rb.register_backend(info)
    assert isinstance(rb.get_backend("numpy-again"), rb.RNNCell)


def test_entry_point_group_adds_a_backend(tmp_path: Path) -> None:
    """An outside package registers through the 'rnnbench.backends' entry-point group."""
    dist = tmp_path / "outside_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rnnbench.backends]\nmine = outside_pkg:BACKEND\n")
    (tmp_path / "outside_pkg.py").write_text(
        "from rnnbench import BackendInfo\n"
        "BACKEND = BackendInfo('outside', 'rnnbench.backends.numpy_backend:NumpyCell')\n"
    )
    code = "import rnnbench as rb; print(rb.list_backends()); rb.get_backend('outside')"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'outside'" in out.stdout


def test_importing_rnnbench_imports_no_framework() -> None:
    code = (
        "import sys, json, rnnbench, rnnbench.cli, rnnbench.backends;"
        "rnnbench.RNNWeights.random(rnnbench.RNNSpec(2, 3)).to_torch();"
        "rnnbench.list_backends(); rnnbench.cli.build_parser();"
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    frameworks = {
        "torch",
        "jax",
        "jaxlib",
        "tensorflow",
        "keras",
        "tf_keras",
        "onnx",
        "onnxruntime",
        "matplotlib",
        "scipy",
    }
    assert not loaded & frameworks, loaded & frameworks


def test_process_cell_runs_a_backend_in_a_worker() -> None:
    """An isolated run is invisible to the caller: same API, same numbers."""
    w = rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=1)
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    local = rb.get_backend("numpy")
    remote = rb.get_backend("numpy", isolate=True)
    assert type(remote).__name__ == "ProcessCell" and remote.info()["process"] == "worker"
    local.load(w)
    remote.load(w)
    for a, b in zip(local.forward(x), remote.forward(x)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(rb.ShapeError, match="x has 1 features"):
        remote.forward(x[:, :, :1])


def test_a_crashed_worker_becomes_a_clear_error() -> None:
    from rnnbench.process import Worker

    worker = Worker("numpy", {})
    try:
        with pytest.raises(rb.BackendRuntimeError, match="worker process died .*exit code"):
            worker.call(
                "tests.worker_targets:exit_now", code=3
            )  # the worker dies in the middle of a request
    finally:
        worker.close()


def test_a_hung_worker_is_stopped_at_the_timeout() -> None:
    from rnnbench.process import Worker

    worker = Worker("numpy", {})
    try:
        with pytest.raises(rb.BackendRuntimeError, match="no answer within 1.0 s"):
            worker.call("tests.worker_targets:sleep", timeout=1.0, seconds=60)
        assert not worker.alive
    finally:
        worker.close()


def test_a_worker_error_keeps_its_message() -> None:
    from rnnbench.process import Worker

    worker = Worker("numpy", {})
    try:
        with pytest.raises(rb.BackendRuntimeError, match="ZeroDivisionError|division by zero"):
            worker.call("tests.worker_targets:divide", a=1, b=0)
    finally:
        worker.close()
