"""Padded batches in onnxruntime: the ONNX file rnnbench writes, run with every recurrent node's
``sequence_lens`` input fed (and a one-layer model's ``initial_h``/``initial_c``), gives the
canonical result of ``reference_forward(..., lengths=...)`` for every cell: outputs past a row's
length exactly zero, the final state after the row's last real step, and the reverse direction
starting at each row's own last step. The file itself takes no lengths; the test adds the input
the way a user would (``format_drivers.with_graph_inputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import format_drivers as fd
import numpy as np
import pytest

import rnnbench as rb
from rnnbench import formats
from rnnbench.compare import measure
from rnnbench.padding import check_padding
from rnnbench.tolerances import step_ages, tolerance_for

pytest.importorskip("onnx", reason="onnx not installed: pip install 'rnnbench[onnx]'")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install onnxruntime")

BATCH, STEPS = 5, 7
LENGTHS = {
    # Ragged and unsorted, with a length-1 row and a full row.
    "full-row": np.array([7, 1, 4, 6, 3]),
    # No row reaches T: the last steps are padding in every row.
    "no-full-row": np.array([5, 1, 3, 2, 4]),
}
CELLS = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru-reset-after": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}
# (layers, bidirectional, initial state fed): a stack reads the layer below only at its real
# steps; a one-layer model takes initial_h (and initial_c) straight from the graph's inputs.
LAYOUTS = {"1layer-h0": (1, False, True), "2layer-bidir": (2, True, False)}


def case(cell: str, layout: str) -> tuple[rb.RNNWeights, np.ndarray, Any]:
    layers, bidirectional, with_h0 = LAYOUTS[layout]
    spec = rb.RNNSpec(3, 4, num_layers=layers, bidirectional=bidirectional, **CELLS[cell])
    weights = rb.RNNWeights.random(spec, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, STEPS, 3))
    h0: Any = None
    if with_h0:
        shape = (layers * spec.num_directions, BATCH, spec.hidden_size)
        states = tuple(0.5 * rng.standard_normal(shape) for _ in spec.state_names)
        h0 = states if spec.cell == "lstm" else states[0]
    return weights, x, h0


@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_sequence_lens_gives_the_canonical_result(
    tmp_path: Path, cell: str, layout: str, lengths: str
) -> None:
    weights, x, h0 = case(cell, layout)
    spec, lens = weights.spec, LENGTHS[lengths]
    formats.write(weights, tmp_path / "m.onnx", "onnx")
    header, out = fd.onnx_run_lengths(tmp_path / "m.onnx", x, lens, h0)
    assert "sequence_lens" in header["inputs"]
    y = out["y"]
    states = (out["Y_h"], out["Y_c"]) if spec.cell == "lstm" else out["Y_h"]

    ref_y, ref_h = rb.reference_forward(weights, x, h0, lengths=lens)
    padding = check_padding(lens, None, BATCH, STEPS)
    tol = tolerance_for(weights, np.float32, x, h0, reference=ref_y, padding=padding)
    ages = step_ages(STEPS, spec.num_directions, spec.num_layers, spec.hidden_size)
    found = measure(y, states, ref_y, ref_h, tol, ages)
    assert found["passed"], (found["max_abs"], found["h_n_max_abs"], found["c_n_max_abs"])
    # What onnxruntime writes past a length: exact zeros in every direction, as TF1 does.
    assert padding is not None
    padded = ~padding.mask
    assert np.all(y[padded] == 0.0)
    assert np.all(y[~padded] != 0.0)

    # Control: the same run without lengths (the reverse direction starting at T - 1, the state
    # running on through the padding) is far outside that tolerance.
    full_y, full_h = rb.reference_forward(weights, x, h0)
    assert not measure(full_y, full_h, ref_y, ref_h, tol, ages)["passed"]


def test_the_written_file_takes_no_lengths(tmp_path: Path) -> None:
    """rnnbench's file leaves sequence_lens empty (every row full length): the lengths are the
    caller's to add, and the file runs unpadded as before."""
    import onnx

    weights, x, _ = case("lstm", "2layer-bidir")
    formats.write(weights, tmp_path / "m.onnx", "onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    nodes = [n for n in model.graph.node if n.op_type in fd.RECURRENT_OPS]
    assert len(nodes) == 2 and all(len(n.input) <= 4 for n in nodes)
    assert [i.name for i in model.graph.input] == ["X"]
    # Full lengths fed: the unpadded run (bit for bit with onnxruntime 1.32).
    _, plain = fd.onnx_run(tmp_path / "m.onnx", x)
    _, full = fd.onnx_run_lengths(tmp_path / "m.onnx", x, np.full(BATCH, STEPS))
    for name in ("y", "Y_h", "Y_c"):
        np.testing.assert_allclose(full[name], plain[name], rtol=0, atol=1e-6)
