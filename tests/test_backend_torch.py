"""The PyTorch backend: every cell against the float64 reference, the fused op each dispatches
to, the reset-before GRU it refuses, its scoped TF32 setting, padded batches through packed
sequences, and its errors. CUDA parts skip on machines without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from reference_cases import (
    CELL_CASES,
    case,
    cast_state,
    check_against_reference,
    check_grad_arrays,
    check_lstm_state_pair,
    grad_cotangents,
    make_case,
    state_parts,
)

import rnnbench as rb
from rnnbench.gradients import Grads, reference_vjp
from rnnbench.padding import lengths_mask
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

# Padded batches. Unsorted lengths with a one-step row and a full-length row: what packing (and
# putting the rows back in order) must get right.
LENGTHS = np.array([6, 1, 7, 3])
PAD_BATCH, PAD_STEPS = 4, 7
# Every cell torch has, keyed by its fused op.
PADDED_CELLS: dict[str, dict[str, Any]] = {
    "rnn_tanh": {},
    "rnn_relu": {"nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
}
# (layers, bidirectional, with h0): one layer one way from h0; two bidirectional layers from zeros.
PADDED_SHAPES = {"1layer-h0": (1, False, True), "2layer-bidir": (2, True, False)}


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


def _profile(cell: Any, steps: int, lengths: np.ndarray | None = None) -> list[Any]:
    from torch.profiler import ProfilerActivity, profile

    batch = 2 if lengths is None else len(lengths)
    x = np.ones((batch, steps, cell.spec.input_size), cell.dtype)
    prepared = cell.prepare(x) if lengths is None else cell.prepare(x, lengths=lengths)
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
    x_t, (h0_t, c0_t), lengths_t = cell.prepare(np.zeros((1, 5, 2)), state)
    assert isinstance(c0_t, torch.Tensor) and float(c0_t[0, 0, 0]) == 0.2
    assert lengths_t is None  # a full batch is not packed
    y, (h_n, c_n) = cell.run((x_t, (h0_t, c0_t), None))
    assert tuple(y.shape) == (1, 5, 6)
    assert tuple(h_n.shape) == tuple(c_n.shape) == (2, 1, 3)


def test_bad_input_shape(cells: Any) -> None:
    cell = cells.get("torch", "float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3), seed=0))
    with pytest.raises(rb.ShapeError, match="features"):
        cell.forward(np.zeros((1, 4, 5), np.float32))


def padded_case(op: str, shape: str) -> tuple[rb.RNNWeights, np.ndarray, Any]:
    layers, bidirectional, with_h0 = PADDED_SHAPES[shape]
    spec = rb.RNNSpec(3, 5, num_layers=layers, bidirectional=bidirectional, **PADDED_CELLS[op])
    return make_case(spec, PAD_BATCH, PAD_STEPS, with_h0)


def row_state(h0: Any, row: int) -> Any:
    """One row of a public state (None, an array, or an LSTM's pair), batch axis kept."""
    if h0 is None:
        return None
    rows = tuple(s[:, row : row + 1] for s in state_parts(h0))
    return rows if isinstance(h0, tuple) else rows[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", list(PADDED_SHAPES))
@pytest.mark.parametrize("op", list(PADDED_CELLS))
def test_ragged_lengths(cells: Any, op: str, shape: str, dtype: str) -> None:
    """Packed sequences give the canonical padded result: within tolerance of the float64
    reference, exact zeros past each length, and per row the final state after its own last
    step, equal to running the row alone, cut at its length, through torch (so the reverse
    direction starts at the row's last real step, not at the padding)."""
    weights, x, h0 = padded_case(op, shape)
    cell = cells.get("torch", dtype)
    result = rb.compare(
        weights, x, h0, ["torch"], dtypes=[dtype], cells={("torch", dtype): cell}, lengths=LENGTHS
    )
    result.assert_close()
    assert result.rows[0].masked_output == "zero"
    assert result.rows[0].path == f"aten fused {op} (cpu, packed)"

    xd, hd = x.astype(dtype), cast_state(h0, dtype)
    y, h_n = cell.forward(xd, hd, lengths=LENGTHS)
    h_n_parts = state_parts(h_n)
    spec = weights.spec
    hidden, top = spec.hidden_size, (spec.num_layers - 1) * spec.num_directions
    atol = 1e-5 if dtype == "float32" else 1e-12
    for b, length in enumerate(LENGTHS):
        assert not y[b, length:].any(), f"row {b}: nonzero output past its length {length}"
        # The last layer's final state is its output at each direction's last step: step
        # length - 1 going forward, step 0 going back.
        np.testing.assert_array_equal(h_n_parts[0][top, b], y[b, length - 1, :hidden])
        if spec.bidirectional:
            np.testing.assert_array_equal(h_n_parts[0][top + 1, b], y[b, 0, hidden:])
        y_row, h_row = cell.forward(xd[b : b + 1, :length], row_state(hd, b))
        np.testing.assert_allclose(y[b, :length], y_row[0], atol=atol, rtol=0)
        for got, alone in zip(h_n_parts, state_parts(h_row), strict=True):
            np.testing.assert_allclose(got[:, b], alone[:, 0], atol=atol, rtol=0)
    if spec.bidirectional:
        # The check can fail: the unpadded run's reverse direction reaches row 3's last real
        # step (2) through the padding after it, and differs there.
        y_full, _ = cell.forward(xd, hd)
        assert np.abs(y_full[3, 2, hidden:] - y[3, 2, hidden:]).max() > 1e-3


def test_a_mask_is_refused_with_lengths_as_the_way(cells: Any) -> None:
    """Packed sequences pad only at the end of a row: a mask is refused (compare skips it), and
    the message says to pass lengths."""
    weights, x, _ = padded_case("gru", "2layer-bidir")
    cell = cells.get("torch", "float32")
    cell.load(weights.astype("float32"))
    mask = lengths_mask(LENGTHS, PAD_STEPS)
    x32 = x.astype(np.float32)
    for call in (lambda: cell.forward(x32, mask=mask), lambda: cell.prepare(x32, mask=mask)):
        with pytest.raises(rb.UnsupportedPaddingError, match="cannot take a mask") as info:
            call()
        assert "lengths=" in str(info.value).split("Hint:")[1]
    assert cell.info()["padding"] == ["lengths"]
    result = rb.compare(weights, x, None, ["torch"], cells={("torch", "float32"): cell}, mask=mask)
    assert result.rows[0].status == "skipped" and "mask" in (result.rows[0].reason or "")


@pytest.mark.parametrize(
    ("lengths", "error", "match"),
    [
        (np.array([6, 0, 7, 3]), rb.ShapeError, r"lengths\[1\] is 0"),
        (np.array([6, 1, 8, 3]), rb.ShapeError, "longer than x's 7 time steps"),
        (np.array([6.0, 1.0, 7.0, 3.0]), rb.DTypeError, "integers"),
        (np.array([6, 1, 7]), rb.ShapeError, r"expected \(4,\)"),
    ],
    ids=["zero", "too-long", "float", "wrong-shape"],
)
def test_bad_lengths_are_rnnbench_errors(
    cells: Any, monkeypatch: pytest.MonkeyPatch, lengths: np.ndarray, error: type, match: str
) -> None:
    """Refused with rnnbench's error and hint before anything is packed."""

    def no_packing(*args: Any, **kwargs: Any) -> None:
        pytest.fail("bad lengths reached pack_padded_sequence")

    monkeypatch.setattr(torch.nn.utils.rnn, "pack_padded_sequence", no_packing)
    weights, x, _ = padded_case("lstm", "2layer-bidir")
    cell = cells.get("torch", "float32")
    cell.load(weights.astype("float32"))
    with pytest.raises(error, match=match) as info:
        cell.forward(x.astype(np.float32), lengths=lengths)
    assert "Hint:" in str(info.value)


@pytest.mark.parametrize("op", list(OP_SPECS))
def test_packed_run_dispatches_one_fused_op(cells: Any, op: str) -> None:
    """A padded batch: packing, one fused op on the packed batch and unpacking all happen in
    ``run`` (what a user pays for padding); the lengths stay a CPU int64 tensor as
    pack_padded_sequence needs. A float32 LSTM runs ATen's packed loop, not oneDNN (which has no
    packed form), and the path says so; a full batch afterwards is reported unpacked again."""
    cell = cells.get("torch", "float32")
    cell.load(rb.RNNWeights.random(OP_SPECS[op], seed=0))
    x = np.ones((PAD_BATCH, PAD_STEPS, 3), np.float32)
    lengths_t = cell.prepare(x, lengths=LENGTHS)[2]
    assert lengths_t.device.type == "cpu" and lengths_t.dtype == torch.int64
    names = [e.name for e in _profile(cell, PAD_STEPS, LENGTHS)]
    assert names.count(f"aten::{op}") == 1, names
    assert "aten::_pack_padded_sequence" in names and "aten::_pad_packed_sequence" in names
    assert "aten::mkldnn_rnn_layer" not in names
    assert cell.info()["path"] == f"aten fused {op} (cpu, packed)"
    cell.forward(x)
    assert "packed" not in cell.info()["path"]


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


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape", list(PADDED_SHAPES))
@pytest.mark.parametrize("op", list(PADDED_CELLS))
def test_cuda_ragged_lengths(cells: Any, op: str, shape: str) -> None:
    """cuDNN takes the packed batch in one call (lengths stay on the CPU as packing needs);
    float32 and float64 within tolerance of the reference, zeros past each length."""
    weights, x, h0 = padded_case(op, shape)
    for dtype in ("float32", "float64"):
        cell = cells.get("torch", dtype, device="cuda")
        result = rb.compare(
            weights,
            x,
            h0,
            ["torch"],
            dtypes=[dtype],
            device="cuda",
            cells={("torch", dtype): cell},
            lengths=LENGTHS,
        )
        result.assert_close()
        y, _ = cell.forward(x.astype(dtype), cast_state(h0, dtype), lengths=LENGTHS)
        for b, length in enumerate(LENGTHS):
            assert not y[b, length:].any()
        assert cell.info()["path"] == f"cudnn (aten::{op} -> _cudnn_rnn, TF32 off, packed)"
        x_t, _, lengths_t = cell.prepare(x.astype(dtype), lengths=LENGTHS)
        assert x_t.device.type == "cuda" and lengths_t.device.type == "cpu"
        names = [e.name for e in _profile(cell, PAD_STEPS, LENGTHS)]
        assert names.count("aten::_cudnn_rnn") == 1, names


# --- gradients (vjp) -----------------------------------------------------------------------


def cotangents(weights: rb.RNNWeights) -> tuple[np.ndarray, Any]:
    """Seeded float64 cotangents of a padded case: dy and dh_n (a pair for an LSTM)."""
    return grad_cotangents(weights.spec, PAD_BATCH, PAD_STEPS)


def check_vjp(
    cell: Any,
    weights: rb.RNNWeights,
    x: np.ndarray,
    h0: Any,
    dy: Any,
    dh_n: Any,
    lengths: np.ndarray | None = None,
) -> Grads:
    """The cell's vjp in its dtype against the float64 reference, every array of arrays()."""
    dtype = str(cell.dtype)
    cell.load(weights.astype(dtype))
    got = cell.vjp(
        x.astype(dtype),
        cast_state(h0, dtype),
        None if dy is None else dy.astype(dtype),
        cast_state(dh_n, dtype),
        lengths=lengths,
    )
    want = reference_vjp(weights, x, h0, dy, dh_n, lengths=lengths).arrays()
    arrays = got.arrays()
    check_grad_arrays(arrays, want, dtype)
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", list(PADDED_SHAPES))
@pytest.mark.parametrize("op", list(PADDED_CELLS))
def test_vjp_matches_the_reference(cells: Any, op: str, shape: str, dtype: str) -> None:
    """Autograd through the module gives the reference's dx, dh0 (dc0; also from a zero h0 that
    was not passed) and every canonical weight gradient, mapped back by from_torch; the backward
    is oneDNN's for a float32 LSTM, else autograd of the fused op's step ops."""
    weights, x, h0 = padded_case(op, shape)
    cell = cells.get("torch", dtype)
    check_vjp(cell, weights, x, h0, *cotangents(weights))
    onednn = op == "lstm" and dtype == "float32" and torch.backends.mkldnn.is_available()
    expected = (
        "onednn (MkldnnRnnLayerBackward0 -> mkldnn_rnn_layer_backward, cpu)"
        if onednn
        else f"autograd of aten::{op}'s step ops (cpu)"
    )
    assert cell.info()["backward_path"] == expected


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", list(PADDED_CELLS))
def test_vjp_with_lengths_goes_through_packing(cells: Any, op: str, dtype: str) -> None:
    """A padded batch's vjp runs the packed module: the reference's gradients, and none at all
    for the input past each row's length (the padding does not enter the result)."""
    weights, x, h0 = padded_case(op, "2layer-bidir")
    cell = cells.get("torch", dtype)
    got = check_vjp(cell, weights, x, h0, *cotangents(weights), lengths=LENGTHS)
    for b, length in enumerate(LENGTHS):
        assert not got.dx[b, length:].any(), f"row {b}: gradient past its length {length}"
    assert cell.info()["backward_path"] == f"autograd of aten::{op}'s step ops (cpu, packed)"
    assert cell.info()["path"] == f"aten fused {op} (cpu, packed)"


def test_vjp_none_cotangents_are_zeros(cells: Any) -> None:
    """dy alone (dh_n None) is the reference's vjp with a zero dh_n; no cotangent at all gives
    zero gradients."""
    weights, x, h0 = padded_case("lstm", "1layer-h0")
    dy, _ = cotangents(weights)
    cell = cells.get("torch", "float64")
    check_vjp(cell, weights, x, h0, dy, None)
    zero = cell.vjp(x, h0)
    assert not any(arr.any() for arr in zero.arrays().values())


def test_vjp_leaves_the_module_for_inference(cells: Any) -> None:
    """After a vjp the module is as load left it: eval mode, frozen parameters without .grad,
    forwards in inference mode giving the same result; a vjp also works from inside a caller's
    inference mode."""
    weights, x, _ = padded_case("gru", "2layer-bidir")
    cell = cells.get("torch", "float32")
    cell.load(weights.astype("float32"))
    x32 = x.astype(np.float32)
    before = cell.forward(x32)[0]
    dy, _ = cotangents(weights)
    with torch.inference_mode():
        first = cell.vjp(x32, dy=dy.astype(np.float32))
    module = cell._module
    assert not module.training
    assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    y, h_n = cell.run(cell.prepare(x32))
    assert y.is_inference() and not y.requires_grad and h_n.grad_fn is None
    np.testing.assert_array_equal(cell.fetch((y, h_n))[0], before)
    again = cell.vjp(x32, dy=dy.astype(np.float32))
    np.testing.assert_array_equal(again.dx, first.dx)


def test_vjp_backward_runs_in_the_cells_precision(
    cells: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backward runs inside the cell's precision scope (oneDNN's RNN pinned to IEEE float32,
    cuDNN's TF32 off), also when the user chose bf16 for oneDNN; afterwards the user's choice
    is back."""
    rnn, cudnn = torch.backends.mkldnn.rnn, torch.backends.cudnn
    seen = []
    real_grad = torch.autograd.grad

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((rnn.fp32_precision, cudnn.allow_tf32, torch.is_grad_enabled()))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    spec = OP_SPECS["lstm"]
    cell = cells.get("torch", "float32")
    cell.load(rb.RNNWeights.random(spec, seed=0))
    before = rnn.fp32_precision
    rnn.fp32_precision = "bf16"
    try:
        cell.vjp(np.ones((2, 3, spec.input_size), np.float32))
        assert rnn.fp32_precision == "bf16"
    finally:
        rnn.fp32_precision = before
    assert seen == [("ieee", False, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vjp_backward_dispatch(cells: Any, dtype: str) -> None:
    """What the profiler sees in the backward: a float32 LSTM runs oneDNN's fused backward, one
    per layer and direction, with no per-step matrix product; a float64 one has no fused
    backward on CPU, and autograd reverses the fused op's step loop (an AddmmBackward0 per step
    and direction)."""
    from torch.profiler import ProfilerActivity, profile

    spec = OP_SPECS["lstm"]
    cell = cells.get("torch", dtype)
    cell.load(rb.RNNWeights.random(spec, seed=0))
    x = np.ones((2, PAD_STEPS, spec.input_size), dtype)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        cell.vjp(x, dy=np.ones((2, PAD_STEPS, spec.output_size), dtype))
    names = [e.name for e in prof.events()]
    layers = spec.num_layers * spec.num_directions
    if dtype == "float32" and torch.backends.mkldnn.is_available():
        assert names.count("aten::mkldnn_rnn_layer_backward") == layers, names
        assert "autograd::engine::evaluate_function: AddmmBackward0" not in names
        assert "onednn" in cell.info()["backward_path"]
    else:
        assert "aten::mkldnn_rnn_layer_backward" not in names
        # One per step and direction, plus the hoisted input projections done by addmm.
        addmm = names.count("autograd::engine::evaluate_function: AddmmBackward0")
        assert addmm >= layers * PAD_STEPS, names
        assert cell.info()["backward_path"] == "autograd of aten::lstm's step ops (cpu)"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "packed"])
@pytest.mark.parametrize("op", list(PADDED_CELLS))
def test_cuda_vjp_runs_cudnn_backward(cells: Any, op: str, lengths: Any) -> None:
    """On CUDA the vjp goes through cuDNN's backward (TF32 off), full or packed, and gives the
    reference's gradients in float32 and float64."""
    from torch.profiler import ProfilerActivity, profile

    weights, x, h0 = padded_case(op, "2layer-bidir")
    dy, dh_n = cotangents(weights)
    for dtype in ("float32", "float64"):
        cell = cells.get("torch", dtype, device="cuda")
        cell.load(weights.astype(dtype))
        before = cell.forward(x.astype(dtype), lengths=lengths)[0]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            check_vjp(cell, weights, x, h0, dy, dh_n, lengths=lengths)
        names = [e.name for e in prof.events()]
        assert "aten::_cudnn_rnn_backward" in names, names
        packed = "" if lengths is None else ", packed"
        assert cell.info()["backward_path"] == f"cudnn (_cudnn_rnn_backward, TF32 off{packed})"
        # The module is back in inference mode with its weights: the same forward as before.
        np.testing.assert_array_equal(cell.forward(x.astype(dtype), lengths=lengths)[0], before)
