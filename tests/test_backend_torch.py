"""The PyTorch backend: against the float64 reference, the fused op it dispatches to, its scoped
TF32 setting, and its errors. CUDA parts skip on machines without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from reference_cases import CASES, check_against_reference

import rnnbench as rb
from rnnbench.tolerances import SEED_ATOL

torch = pytest.importorskip("torch", reason="torch not installed: pip install 'rnnbench[torch]'")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU visible to torch here")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    check_against_reference(cells.get("torch", dtype), name)


def test_seed_notebook(cells: Any, seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:
    cell = cells.get("torch", "float32")
    cell.load(seed_weights)
    y, h_n = cell.forward(np.array(seed_notebook["input"], np.float32))
    np.testing.assert_allclose(y, seed_notebook["output"], atol=SEED_ATOL, rtol=0)
    np.testing.assert_allclose(h_n[0], seed_notebook["final_state"], atol=SEED_ATOL, rtol=0)


def _profile(cell: Any, steps: int) -> list[Any]:
    from torch.profiler import ProfilerActivity, profile

    prepared = cell.prepare(np.ones((2, steps, cell.spec.input_size), cell.dtype))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        cell.synchronize(cell.run(prepared))
    return list(prof.events())


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_dispatches_one_fused_rnn_op(cells: Any, nonlinearity: str) -> None:
    """nn.RNN runs ATen's fused op: one rnn_tanh/rnn_relu call is the only top-level op, and every
    matrix product and activation happens inside it (ATen's C++ step loop), none in Python.

    On CPU the fused op itself does one addmm per step for h @ w_hh (the input projection of all
    steps is hoisted into one product), so the nested count grows with T; what must not grow is
    the number of top-level ops."""
    cell = cells.get("torch", "float32")
    spec = rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, nonlinearity=nonlinearity)
    cell.load(rb.RNNWeights.random(spec, seed=0))
    op = f"aten::rnn_{nonlinearity}"
    top_level = {}
    for steps in (4, 16):
        events = _profile(cell, steps)
        fused = [e for e in events if e.name == op]
        assert len(fused) == 1, [e.name for e in events]
        roots = [e for e in events if e.cpu_parent is None and e.name != "aten::zeros"]
        assert [e.name for e in roots] == [op]
        products = [e for e in events if e.name in ("aten::mm", "aten::addmm", "aten::bmm")]
        assert products, "expected the fused op's matrix products to be recorded"
        for event in products:
            while event.cpu_parent is not None:
                event = event.cpu_parent
            assert event.name == op  # nested inside the fused op, not called from Python
        top_level[steps] = len(roots)
    assert top_level[4] == top_level[16] == 1
    assert cell.info()["path"] == f"aten fused rnn_{nonlinearity} (cpu)"


def test_info_records_threads_and_tf32(cells: Any) -> None:
    cell = cells.get("torch", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    info = cell.info()
    assert info["threads"] == torch.get_num_threads()
    assert info["allow_tf32"] is False
    assert info["version"] == torch.__version__
    assert info["variant"] == "eager"


def test_tf32_choice_is_scoped_to_the_run(cells: Any) -> None:
    """Inside the cell's scope cuDNN's RNN precision is IEEE; outside, the user's flags (here a
    non-default benchmark=True) are as they were, as cudnn.flags() resets what it is not given."""
    cudnn = torch.backends.cudnn
    cell = cells.get("torch", "float32")
    before = (cudnn.allow_tf32, cudnn.fp32_precision, cudnn.rnn.fp32_precision, cudnn.enabled)
    old_benchmark = cudnn.benchmark
    cudnn.benchmark = True
    try:
        with cell._scope():
            assert cudnn.allow_tf32 is False
            assert cudnn.rnn.fp32_precision != "tf32" and cudnn.fp32_precision == "ieee"
            assert cudnn.benchmark is True and cudnn.enabled == before[3]
        after = (cudnn.allow_tf32, cudnn.fp32_precision, cudnn.rnn.fp32_precision, cudnn.enabled)
        assert after == before and cudnn.benchmark is True
    finally:
        cudnn.benchmark = old_benchmark


def test_allow_tf32_keyword() -> None:
    from rnnbench.backends.torch_backend import TorchCell

    cell = TorchCell(allow_tf32=True)
    assert cell.info()["allow_tf32"] is True
    with cell._scope():
        assert torch.backends.cudnn.allow_tf32 is True
        assert torch.backends.cudnn.rnn.fp32_precision == "tf32"


def test_load_leaves_the_global_rng_alone(cells: Any) -> None:
    cell = cells.get("torch", "float32")
    state = torch.random.get_rng_state()
    cell.load(rb.RNNWeights.random(rb.RNNSpec(3, 8, num_layers=2), seed=0))
    assert torch.equal(state, torch.random.get_rng_state())


def test_prepare_and_run_stay_tensors(cells: Any) -> None:
    cell = cells.get("torch", "float64")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True), seed=0))
    prepared = cell.prepare(np.zeros((1, 5, 2)))
    assert isinstance(prepared[0], torch.Tensor) and prepared[0].dtype == torch.float64
    y, h_n = cell.run(prepared)
    assert isinstance(y, torch.Tensor) and tuple(y.shape) == (1, 5, 6)
    assert tuple(h_n.shape) == (2, 1, 3)


def test_bad_input_shape(cells: Any) -> None:
    cell = cells.get("torch", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    with pytest.raises(rb.ShapeError, match="features"):
        cell.forward(np.zeros((1, 4, 5), np.float32))


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present, so device='cuda' is available")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(rb.BackendUnavailableError, match="no CUDA GPU") as info:
        rb.get_backend("torch", device="cuda")
    assert "Hint:" in str(info.value)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_matches_reference_with_tf32_off(cells: Any, dtype: str) -> None:
    cell = cells.get("torch", dtype, device="cuda")
    check_against_reference(cell, "relu-2layer-bidir-h0")
    assert cell.info()["path"].startswith("cudnn")
    assert cell.info()["allow_tf32"] is False


@pytest.mark.gpu
@needs_cuda
def test_cuda_dispatches_to_cudnn(cells: Any) -> None:
    cell = cells.get("torch", "float32", device="cuda")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(3, 4, num_layers=2), seed=0))
    names = [e.name for e in _profile(cell, 16)]
    assert names.count("aten::_cudnn_rnn") == 1, names
    assert "aten::addmm" not in names
