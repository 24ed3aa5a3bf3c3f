"""The PyTorch backend: every cell against the float64 reference, the fused op each dispatches
to, the reset-before GRU it refuses, its scoped TF32 setting, and its errors. CUDA parts skip on
machines without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from reference_cases import (
    CELL_CASES,
    case,
    check_against_reference,
    check_lstm_state_pair,
)

import rnnbench as rb
from rnnbench.tolerances import SEED_ATOL

torch = pytest.importorskip("torch", reason="torch not installed: pip install 'rnnbench[torch]'")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU visible to torch here")


# Every case nn.RNN / nn.LSTM / nn.GRU can compute: all but the reset-before GRU.
COMPUTED = [
    name for cell, names in CELL_CASES.items() if cell != "gru(reset-before)" for name in names
]
REFUSED = list(CELL_CASES["gru(reset-before)"])
# One spec per fused op, for the dispatch tests: (ATen op, spec).
OP_SPECS = {
    "rnn_tanh": rb.RNNSpec(3, 4, num_layers=2, bidirectional=True),
    "rnn_relu": rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, nonlinearity="relu"),
    "lstm": rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="lstm"),
    "gru": rb.RNNSpec(3, 4, num_layers=2, bidirectional=True, cell="gru"),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", COMPUTED)
def test_matches_float64_reference(cells: Any, name: str, dtype: str) -> None:
    check_against_reference(cells.get("torch", dtype), name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", REFUSED)
def test_refuses_the_reset_before_gru(cells: Any, name: str, dtype: str) -> None:
    """nn.GRU has only the reset-after formula: a reset-before spec is refused at load with the
    reason and where it does run, never computed with the other formula."""
    cell = cells.get("torch", dtype)
    weights, _, _ = case(name)
    with pytest.raises(rb.BackendUnavailableError) as info:
        cell.load(weights.astype(dtype))
    message = str(info.value)
    assert "cannot compute GRU(RESET-BEFORE)" in message
    assert "reset gate after the recurrent product" in message
    hint = message.split("Hint:")[1]
    for other in ("keras", "GRU(reset_after=False)", "tf1", "jax", "numpy"):
        assert other in hint
    # The refusal leaves the cell usable for a spec it can compute.
    check_against_reference(cell, "gru-1layer")


def test_compare_skips_the_reset_before_gru() -> None:
    weights, x, h0 = case(REFUSED[0])
    result = rb.compare(weights, x, h0, backends=["torch"], dtypes=("float32", "float64"))
    assert [(r.dtype, r.status) for r in result.rows] == [
        ("float32", "skipped"),
        ("float64", "skipped"),
    ]
    for row in result.rows:
        assert "reset gate after the recurrent product" in (row.reason or "")
        assert "Hint" not in (row.reason or "")
    assert result.passed  # a skip is listed, not a failure


def test_compare_passes_the_reset_after_gru_and_lstm() -> None:
    for name in ("gru-2layer-bidir-h0", "lstm-2layer-bidir-h0c0"):
        weights, x, h0 = case(name)
        result = rb.compare(weights, x, h0, backends=["torch"], dtypes=("float32", "float64"))
        assert [r.status for r in result.rows] == ["pass", "pass"], result.table()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_takes_h0_and_c0(cells: Any, dtype: str) -> None:
    check_lstm_state_pair(cells.get("torch", dtype), dtype)


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", list(OP_SPECS))
def test_dispatches_one_fused_op(cells: Any, op: str, dtype: str) -> None:
    """Each module runs ATen's fused op: one rnn_tanh / rnn_relu / lstm / gru call is the only
    top-level op, and every matrix product and activation happens inside it (ATen's C++ step
    loop, or oneDNN's), none in Python.

    On CPU the fused op itself does one addmm per step for h @ w_hh (the input projection of all
    steps is hoisted into one product), so the nested count grows with T; what must not grow is
    the number of top-level ops. A float32 LSTM goes on to oneDNN: one mkldnn_rnn_layer per layer
    and direction, nested in aten::lstm, and no addmm at all."""
    cell = cells.get("torch", dtype)
    spec = OP_SPECS[op]
    cell.load(rb.RNNWeights.random(spec, seed=0))
    onednn = op == "lstm" and dtype == "float32" and torch.backends.mkldnn.is_available()
    aten = f"aten::{op}"
    top_level = {}
    for steps in (4, 16):
        events = _profile(cell, steps)
        fused = [e for e in events if e.name == aten]
        assert len(fused) == 1, [e.name for e in events]
        roots = [e for e in events if e.cpu_parent is None and e.name != "aten::zeros"]
        assert [e.name for e in roots] == [aten]
        kernels = ("aten::mkldnn_rnn_layer",) if onednn else ("aten::mm", "aten::addmm")
        nested = [e for e in events if e.name in (*kernels, "aten::bmm")]
        assert nested, f"expected the fused op's {kernels} to be recorded"
        if onednn:
            layers = spec.num_layers * spec.num_directions
            assert [e.name for e in nested] == ["aten::mkldnn_rnn_layer"] * layers
            assert not [e for e in events if e.name in ("aten::mm", "aten::addmm")]
        for event in nested:
            while event.cpu_parent is not None:
                event = event.cpu_parent
            assert event.name == aten  # nested inside the fused op, not called from Python
        top_level[steps] = len(roots)
    assert top_level[4] == top_level[16] == 1
    expected = (
        f"onednn (aten::{op} -> mkldnn_rnn_layer, cpu)" if onednn else f"aten fused {op} (cpu)"
    )
    assert cell.info()["path"] == expected


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


def test_onednn_rnn_precision_is_ieee_for_the_run_only(cells: Any) -> None:
    """oneDNN's RNN (the float32 LSTM on CPU) would follow a user's bf16 choice; the cell pins it
    to IEEE float32 inside its scope and puts the user's setting back after."""
    rnn = torch.backends.mkldnn.rnn
    before = rnn.fp32_precision
    rnn.fp32_precision = "bf16"
    try:
        with cells.get("torch", "float32")._scope():
            assert rnn.fp32_precision == "ieee"
        assert rnn.fp32_precision == "bf16"
    finally:
        rnn.fp32_precision = before


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


def test_lstm_prepare_and_run_carry_the_pair(cells: Any) -> None:
    cell = cells.get("torch", "float64")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3, bidirectional=True, cell="lstm"), seed=0))
    state = (np.full((2, 1, 3), 0.1), np.full((2, 1, 3), 0.2))
    x_t, (h0_t, c0_t) = cell.prepare(np.zeros((1, 5, 2)), state)
    assert isinstance(c0_t, torch.Tensor) and float(c0_t[0, 0, 0]) == 0.2
    y, (h_n, c_n) = cell.run((x_t, (h0_t, c0_t)))
    assert tuple(y.shape) == (1, 5, 6)
    assert tuple(h_n.shape) == tuple(c_n.shape) == (2, 1, 3)


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
@pytest.mark.parametrize("name", COMPUTED)
def test_cuda_matches_reference_with_tf32_off(cells: Any, name: str, dtype: str) -> None:
    cell = cells.get("torch", dtype, device="cuda")
    check_against_reference(cell, name)
    assert cell.info()["path"].startswith("cudnn")
    assert cell.info()["allow_tf32"] is False


@pytest.mark.gpu
@needs_cuda
def test_cuda_refuses_the_reset_before_gru(cells: Any) -> None:
    weights, _, _ = case(REFUSED[0])
    with pytest.raises(rb.BackendUnavailableError, match="reset gate after"):
        cells.get("torch", "float32", device="cuda").load(weights.astype("float32"))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("op", list(OP_SPECS))
def test_cuda_dispatches_to_cudnn(cells: Any, op: str) -> None:
    """One cuDNN call for the whole stacked, bidirectional layer of every cell."""
    cell = cells.get("torch", "float32", device="cuda")
    cell.load(rb.RNNWeights.random(OP_SPECS[op], seed=0))
    names = [e.name for e in _profile(cell, 16)]
    assert names.count("aten::_cudnn_rnn") == 1, names
    assert "aten::addmm" not in names
    assert cell.info()["path"] == f"cudnn (aten::{op} -> _cudnn_rnn, TF32 off)"
