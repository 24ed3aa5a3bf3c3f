"""``rnnbench convert``: for every cell (vanilla RNN, LSTM, GRU reset-after and reset-before),
every pair of formats that can hold it round-trips, the converted file runs in its own library
with rnnbench's reference output, and what a format cannot hold is refused clearly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import format_drivers as fd
import numpy as np
import porting_drivers as drv
import pytest

import rnnbench as rb
from rnnbench import formats
from rnnbench.cli import main
from rnnbench.compare import reference_forward
from rnnbench.errors import LayoutError, RNNBenchError, ShapeError, WeightFileError
from rnnbench.tolerances import step_ages, tolerance_for

FILES = {
    "npz": "w.npz",
    "safetensors": "w.safetensors",
    "torch": "w.pt",
    "keras": "w.weights.h5",
    "onnx": "w.onnx",
    "tf1-npz": "w.tf1.npz",
    "tf1-ckpt": "w.ckpt",
}
NEEDS = {"torch": "torch", "keras": "keras", "onnx": "onnx", "tf1-ckpt": "tf1"}
TF1 = ("tf1-npz", "tf1-ckpt")
# cell label -> spec fields; the labels are CELL_CASES' (tests/reference_cases.py)
CELLS: dict[str, dict[str, Any]] = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru(reset-before)": {"cell": "gru", "reset_after": False},
}
SHAPES: dict[str, dict[str, Any]] = {
    "2bi": {"num_layers": 2, "bidirectional": True},
    "1": {"num_layers": 1, "bidirectional": False},
}
CASE = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, nonlinearity="tanh")


def spec_for(cell: str, shape: str = "2bi") -> rb.RNNSpec:
    return rb.RNNSpec(input_size=3, hidden_size=4, **SHAPES[shape], **CELLS[cell])


def _pairs() -> list[Any]:
    out = []
    for cell in CELLS:
        fmts = [f for f in FILES if formats.holds(f, spec_for(cell))]
        for shape in SHAPES:
            # The stacked bidirectional spec: A -> B -> A for every two formats A before B,
            # which converts both ways (A -> B, B -> A). One layer: through every format.
            pairs = [(a, b) for i, a in enumerate(fmts) for b in fmts[i + 1 :]]
            if shape == "1":
                pairs = [(a, b) for a, b in pairs if a == "npz"]
            out += [pytest.param(cell, shape, a, b, id=f"{cell}-{shape}-{a}-{b}") for a, b in pairs]
    return out


def _need(*fmts: str) -> None:
    for fmt in fmts:
        lib = NEEDS.get(fmt)
        if lib and drv.missing(lib):
            pytest.skip(f"{fmt} needs {', '.join(drv.missing(lib))}")


def convert(src: Path, dst: Path, *extra: str) -> None:
    assert main(["convert", str(src), "-o", str(dst), *extra]) == 0


_WEIGHTS: dict[tuple[str, str], rb.RNNWeights] = {}
_SOURCES: dict[tuple[str, str, str], Path] = {}


def weights_for(cell: str, shape: str = "2bi") -> rb.RNNWeights:
    """Random weights whose two biases differ and are non-zero, so a lost b_hh shows."""
    if (cell, shape) not in _WEIGHTS:
        w = rb.RNNWeights.random(spec_for(cell, shape), seed=5)
        assert all(dw.b_hh.any() for _, _, dw in w.iter_directions())
        _WEIGHTS[cell, shape] = w
    return _WEIGHTS[cell, shape]


def source(cell: str, shape: str, fmt: str, folder: Path) -> Path:
    """One file per format, written from the same weights (once per test module)."""
    key = (cell, shape, fmt)
    if key not in _SOURCES:
        path = folder / f"{cell}-{shape}" / FILES[fmt]
        path.parent.mkdir(exist_ok=True)
        formats.write(weights_for(cell, shape), path, fmt)
        _SOURCES[key] = path
    return _SOURCES[key]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Start the Keras and TF1 workers now, side by side: their TensorFlow imports (seconds
    # each) overlap instead of adding up.
    drv.runners(tuple(lib for lib in ("keras", "tf1") if not drv.missing(lib)))
    return tmp_path_factory.mktemp("sources")


def assert_same_weights(
    a: rb.RNNWeights, b: rb.RNNWeights, exact_biases: bool, forget_bias: float | None = None
) -> None:
    """Kernels bit for bit; both biases bit for bit where every format on the way held both,
    else their sum bit for bit; with ``forget_bias`` (a TF1 LSTM on the way, which stored the sum
    less forget_bias) the forget block within one rounding of it either way."""
    assert a.spec == b.spec and a.dtype == b.dtype
    for (_, _, x), (_, _, y) in zip(a.iter_directions(), b.iter_directions()):
        np.testing.assert_array_equal(x.w_ih, y.w_ih)
        np.testing.assert_array_equal(x.w_hh, y.w_hh)
        if exact_biases:
            np.testing.assert_array_equal(x.b_ih, y.b_ih)
            np.testing.assert_array_equal(x.b_hh, y.b_hh)
        elif forget_bias is None:
            np.testing.assert_array_equal(x.bias, y.bias)
        else:
            h = a.spec.hidden_size
            f = slice(h, 2 * h)  # the canonical LSTM's forget block
            others = np.r_[0:h, 2 * h : 4 * h]
            np.testing.assert_array_equal(x.bias[others], y.bias[others])
            ulp = np.spacing(np.abs(x.bias[f]) + a.dtype.type(abs(forget_bias)))
            assert (np.abs(x.bias[f] - y.bias[f]) <= 2 * ulp).all()


# --- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "shape", "a", "b"), _pairs())
def test_round_trip(cell: str, shape: str, a: str, b: str, folder: Path, tmp_path: Path) -> None:
    """A -> B -> A gives A's weights: exact where both hold two biases, else their sum exactly
    (a TF1 LSTM: within one rounding of the forget bias it stores apart)."""
    _need(a, b)
    there, back = tmp_path / FILES[b], tmp_path / ("back_" + FILES[a])
    src = source(cell, shape, a, folder)
    convert(src, there, "--to", b)
    convert(there, back, "--to", a)
    spec = spec_for(cell, shape)
    exact = formats.two_biases(a, spec) and formats.two_biases(b, spec)
    fb = 1.0 if spec.cell == "lstm" and (a in TF1 or b in TF1) else None
    original = formats.read(src, a)
    assert original.spec == spec
    assert_same_weights(original, formats.read(back, a), exact, fb)
    assert_same_weights(original, formats.read(there, b), exact, fb)


def test_round_trip_exactness_is_what_each_format_holds() -> None:
    """Which formats keep both biases, per cell (what the round trips above assert)."""
    two = {
        cell: sorted(f for f in FILES if formats.two_biases(f, spec_for(cell))) for cell in CELLS
    }
    exact = ["npz", "onnx", "safetensors", "torch"]
    assert two["rnn"] == two["lstm"] == two["gru(reset-before)"] == exact
    assert two["gru"] == sorted([*exact, "keras"])  # Keras' GRU holds (2, 3H): both biases
    held = {cell: [f for f in FILES if formats.holds(f, spec_for(cell))] for cell in CELLS}
    assert "torch" not in held["gru(reset-before)"] and "tf1-npz" not in held["gru"]


def test_read_line_names_the_cell_and_tf1_lstm_notes_forget_bias(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = source("lstm", "2bi", "npz", folder)
    convert(src, tmp_path / "l.tf1.npz", "--forget-bias", "0.25")
    out = capsys.readouterr().out
    assert "LSTM I=3 H=4 layers=2 bidirectional, float32" in out.splitlines()[0]
    assert "forget_bias=0.25" in out and "b_ih + b_hh" in out
    convert(source("gru(reset-before)", "1", "npz", folder), tmp_path / "g.onnx")
    out = capsys.readouterr().out
    assert "GRU(RESET-BEFORE) I=3 H=4" in out and "linear_before_reset=0" in out


def test_tf1_lstm_forget_bias_goes_out_on_write_and_back_on_read(
    folder: Path, tmp_path: Path
) -> None:
    """The stored TF1 bias is b_ih + b_hh - F on the forget block; reading with the same F gives
    the sum back, reading with another F shifts that block by the difference."""
    w = weights_for("lstm", "1")
    convert(source("lstm", "1", "npz", folder), tmp_path / "l.tf1.npz", "--forget-bias", "0.5")
    with np.load(tmp_path / "l.tf1.npz") as data:
        stored = data["rnn/lstm_cell/bias"]
    h, s = 4, w[0, 0].bias
    np.testing.assert_array_equal(stored[2 * h : 3 * h], s[h : 2 * h] - np.float32(0.5))  # i,j,f,o
    np.testing.assert_array_equal(stored[h : 2 * h], s[2 * h : 3 * h])  # j is the candidate g
    assert_same_weights(w, formats.read(tmp_path / "l.tf1.npz", forget_bias=0.5), False, 0.5)
    shifted = formats.read(tmp_path / "l.tf1.npz")  # TF1's default 1.0: half a unit more
    np.testing.assert_allclose(shifted[0, 0].bias[h : 2 * h] - s[h : 2 * h], 0.5, atol=1e-6)


# --- the converted file runs in its own library --------------------------------------------
@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 6, 3)).astype(np.float32)


def _bound(w: rb.RNNWeights, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    spec = w.spec
    ages = step_ages(x.shape[1], spec.num_directions, spec.num_layers, spec.hidden_size)
    return np.asarray(2 * tolerance_for(w, np.float32, x, reference=ref).bounds(ref, ages))


def run_file(fmt: str, path: Path, x: np.ndarray, spec: rb.RNNSpec, fb: float = 1.0) -> Any:
    """(y, states or None): the file in its own library, loaded the way its users load it."""
    d = spec.to_dict()
    if fmt == "torch":
        _, out = fd.torch_load_state_dict(path, d, x)
        return out["y"], [out[k] for k in sorted(out) if k.startswith("s")]
    if fmt == "onnx":
        _, out = fd.onnx_run(path, x)
        return out["y"], [out[k] for k in ("Y_h", "Y_c") if k in out]
    if fmt == "keras":
        return fd.worker_call("keras", "keras_load_weights", {"x": x}, path=str(path), spec=d)[1][
            "y"
        ], None
    if fmt in TF1:
        function = "tf1_restore_checkpoint" if fmt == "tf1-ckpt" else "tf1_assign_by_name"
        return fd.worker_call("tf1", function, {"x": x}, path=str(path), spec=d, forget_bias=fb)[1][
            "y"
        ], None
    # rnnbench's own files: the NumPy backend in float32
    cell = rb.get_backend("numpy", dtype="float32")
    cell.load(formats.read(path, fmt))
    y, state = cell.forward(x)
    return y, list(state) if isinstance(state, tuple) else [state]


def _library_cases() -> list[Any]:
    out = []
    for cell in ("lstm", "gru", "gru(reset-before)"):
        for fmt in ("torch", "keras", "onnx", "tf1-npz", "tf1-ckpt"):
            if formats.holds(fmt, spec_for(cell)):
                out.append(pytest.param(cell, fmt, id=f"{cell}-{fmt}"))
    return out


@pytest.mark.parametrize(("cell", "fmt"), _library_cases())
def test_converted_gated_file_runs_in_its_library(
    cell: str, fmt: str, folder: Path, x: np.ndarray, tmp_path: Path
) -> None:
    """The written file, loaded into the library's own LSTM/GRU (torch load_state_dict, Keras
    load_weights, onnxruntime, TF1 Saver.restore / variable.load by name), gives rnnbench's
    float64 reference output (and final states, where the library returns them)."""
    _need(fmt, *(["tf1-ckpt"] if fmt in TF1 else []))
    w = weights_for(cell)
    target = tmp_path / FILES[fmt]
    fb = "0.75" if cell == "lstm" and fmt in TF1 else "1.0"  # not TF1's default, on purpose
    convert(source(cell, "2bi", "npz", folder), target, "--forget-bias", fb)
    y, states = run_file(fmt, target, x, w.spec, float(fb))
    ref, ref_state = reference_forward(w, x)
    assert y.shape == ref.shape
    diff = np.abs(y.astype(np.float64) - ref)
    assert (diff <= _bound(w, x, ref)).all(), f"{cell} {fmt}: max |diff| {diff.max():.2e}"
    assert diff.max() < 1e-5
    if states:
        ref_states = ref_state if isinstance(ref_state, tuple) else (ref_state,)
        assert len(states) == len(ref_states)
        for got, want in zip(states, ref_states):
            np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("lbr", [None, 0, 1])
def test_onnx_gru_linear_before_reset_is_read_as_the_spec_says(
    lbr: int | None, x: np.ndarray, tmp_path: Path
) -> None:
    """A GRU node from elsewhere: linear_before_reset 1 is the reset-after GRU, 0 and absent
    (ONNX's default) the reset-before one; onnxruntime agrees with the reference of what was
    read."""
    _need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    W, R, B = (
        rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in ((1, 12, 3), (1, 12, 4), (1, 24))
    )
    attrs: dict[str, Any] = {} if lbr is None else {"linear_before_reset": lbr}
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y4", "Y_h"], hidden_size=4, **attrs)
    squeeze = helper.make_node("Squeeze", ["Y4", "axis"], ["Y"])
    inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis"))
    graph = helper.make_graph(
        [node, squeeze],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "g.onnx").write_bytes(model.SerializeToString())
    w = formats.read(tmp_path / "g.onnx")
    assert w.spec.cell == "gru" and w.spec.reset_after is bool(lbr)
    y = fd.onnx_run(tmp_path / "g.onnx", x)[1]["y"]
    ref, _ = reference_forward(w, x)
    assert np.abs(y - ref).max() < 1e-5
    other, _ = reference_forward(
        rb.RNNWeights(rb.RNNSpec(3, 4, cell="gru", reset_after=not lbr), w.layers), x
    )
    assert np.abs(y - other).max() > 1e-3  # the two formulas differ: the check can fail


def test_rnn_file_runs_in_every_library(folder: Path, x: np.ndarray, tmp_path: Path) -> None:
    """The vanilla RNN, converted from a .pt to every format, runs there with torch's output."""
    _need("torch")
    w = weights_for("rnn")
    y_pt, _ = run_file("torch", source("rnn", "2bi", "torch", folder), x, w.spec)
    ref, _ = reference_forward(w, x)
    for fmt in FILES:
        if fmt == "torch" or (NEEDS.get(fmt) and drv.missing(NEEDS[fmt])):
            continue
        if fmt == "tf1-npz" and drv.missing("tf1"):
            continue
        target = tmp_path / FILES[fmt]
        convert(source("rnn", "2bi", "torch", folder), target, "--to", fmt)
        y, _ = run_file(fmt, target, x, w.spec)
        diff = np.abs(y.astype(np.float64) - y_pt)
        assert (diff <= _bound(w, x, ref)).all(), f"{fmt}: max |diff| {diff.max():.2e}"


def test_relu_travels_through_formats_that_do_not_record_it(tmp_path: Path, x: np.ndarray) -> None:
    """ONNX records relu; a .pt does not: --nonlinearity says it, and the .pt runs as relu."""
    _need("onnx", "torch")
    case = dict(CASE, nonlinearity="relu", num_layers=1, bidirectional=False)
    w = rb.RNNWeights.random(rb.RNNSpec(**case), seed=8)  # type: ignore[arg-type]
    formats.write(w, tmp_path / "r.onnx")
    convert(tmp_path / "r.onnx", tmp_path / "r.pt")
    y_onnx, _ = run_file("onnx", tmp_path / "r.onnx", x, w.spec)
    y_pt, _ = run_file("torch", tmp_path / "r.pt", x, w.spec)
    ref, _ = reference_forward(w, x)
    assert (np.abs(y_pt.astype(np.float64) - y_onnx) <= _bound(w, x, ref)).all()
    assert formats.read(tmp_path / "r.pt").spec.nonlinearity == "tanh"  # a state dict cannot say
    convert(tmp_path / "r.pt", tmp_path / "r2.onnx", "--nonlinearity", "relu")
    assert_same_weights(w, formats.read(tmp_path / "r2.onnx"), exact_biases=True)
    with pytest.raises(LayoutError, match="records nonlinearity 'relu'"):
        formats.read(tmp_path / "r.onnx", nonlinearity="tanh")


# --- what a format cannot hold ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "fmt", "reason"),
    [
        ("gru(reset-before)", "torch", "reset"),
        ("gru", "tf1-npz", "reset"),
        ("gru", "tf1-ckpt", "reset"),
    ],
)
def test_a_gru_formula_the_library_lacks_is_refused_on_write(
    cell: str, fmt: str, reason: str, folder: Path, tmp_path: Path, capsys: Any
) -> None:
    target = tmp_path / FILES[fmt]
    with pytest.raises(LayoutError, match=reason):
        formats.write(weights_for(cell), target, fmt)
    assert main(["convert", str(source(cell, "2bi", "npz", folder)), "-o", str(target)]) == 2
    captured = capsys.readouterr()
    assert "GRU" in captured.out.splitlines()[0]  # what was read is still shown
    assert "error" in captured.err and "Hint:" in captured.err
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def _onnx_lstm(tmp_path: Path, name: str, extra_inputs: int = 0, **attrs: Any) -> Path:
    """A valid one-layer LSTM model, but for ``attrs`` (and a peephole input P when asked)."""
    from onnx import TensorProto, helper, numpy_helper

    w = weights_for("lstm", "1")
    (W, R, B) = w.to_onnx()
    inputs = ["X", "W", "R", "B"]
    inits = [numpy_helper.from_array(np.asarray(a), n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
    if extra_inputs:
        inputs += ["", "", "", "P"]
        P = np.zeros((1, 12), np.float32)
        P[0, 5] = 0.1 * extra_inputs - 0.1  # extra_inputs=1: zero P; 2: a non-zero peephole
        inits.append(numpy_helper.from_array(P, "P"))
    node = helper.make_node("LSTM", inputs, ["Y"], hidden_size=4, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def test_onnx_lstm_features_without_a_canonical_equivalent_are_refused(tmp_path: Path) -> None:
    _need("onnx")
    plain = formats.read(_onnx_lstm(tmp_path, "plain"))
    assert plain.spec.cell == "lstm"
    assert_same_weights(weights_for("lstm", "1"), plain, exact_biases=True)
    zero_p = formats.read(_onnx_lstm(tmp_path, "zero_p", extra_inputs=1))  # P all zero: no-op
    assert_same_weights(plain, zero_p, exact_biases=True)
    defaults = _onnx_lstm(tmp_path, "defaults", activations=["Sigmoid", "Tanh", "Tanh"])
    assert_same_weights(plain, formats.read(defaults), exact_biases=True)
    refused = {
        "peepholes": (_onnx_lstm(tmp_path, "p", extra_inputs=2), "non-zero peephole"),
        "clip": (_onnx_lstm(tmp_path, "clip", clip=3.0), "clip=3.0"),
        "input_forget": (_onnx_lstm(tmp_path, "if", input_forget=1), "input_forget=1"),
        "activations": (
            _onnx_lstm(tmp_path, "act", activations=["HardSigmoid", "Tanh", "Tanh"]),
            "activations",
        ),
    }
    for what, (path, match) in refused.items():
        with pytest.raises(LayoutError, match=match) as info:
            formats.read(path)
        assert "Hint:" in str(info.value), what


def test_tf1_peepholes_and_projections_are_refused(tmp_path: Path) -> None:
    base = {"rnn/lstm_cell/kernel": np.zeros((7, 16)), "rnn/lstm_cell/bias": np.zeros(16)}
    np.savez(tmp_path / "ok.tf1.npz", **base)  # type: ignore[arg-type]
    assert formats.read(tmp_path / "ok.tf1.npz").spec.cell == "lstm"
    for var, match in (
        ("w_f_diag", "peephole"),
        ("w_i_diag", "peephole"),
        ("w_o_diag", "peephole"),
        ("projection/kernel", "num_proj"),
    ):
        extra = {f"rnn/lstm_cell/{var}": np.zeros((4, 2) if "proj" in var else 4)}
        np.savez(tmp_path / "x.tf1.npz", **base, **extra)  # type: ignore[arg-type]
        with pytest.raises(LayoutError, match=match):
            formats.read(tmp_path / "x.tf1.npz")


def test_tf1_names_of_every_cell_are_read(tmp_path: Path) -> None:
    """BasicLSTMCell's names, GRUCell's four variables, an outer scope; the cell they say."""
    lstm = {
        "enc/rnn/basic_lstm_cell/kernel": np.ones((7, 16)),
        "enc/rnn/basic_lstm_cell/bias": np.zeros(16),
        "enc/rnn/basic_lstm_cell/kernel/Adam": np.zeros((7, 16)),  # an optimizer slot: ignored
    }
    np.savez(tmp_path / "b.npz", **lstm)  # type: ignore[arg-type]
    w = formats.read(tmp_path / "b.npz")  # a plain .npz: TF1 arrays by its keys
    assert w.spec.cell == "lstm" and w.spec.input_size == 3
    np.testing.assert_array_equal(w[0, 0].bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    gru = {
        "rnn/gru_cell/gates/kernel": np.zeros((7, 8)),
        "rnn/gru_cell/gates/bias": np.ones(8),
        "rnn/gru_cell/candidate/kernel": np.zeros((7, 4)),
        "rnn/gru_cell/candidate/bias": np.zeros(4),
    }
    np.savez(tmp_path / "g.tf1.npz", **gru)  # type: ignore[arg-type]
    assert formats.read(tmp_path / "g.tf1.npz").spec.cell_label == "gru(reset-before)"
    del gru["rnn/gru_cell/candidate/bias"]
    np.savez(tmp_path / "g2.tf1.npz", **gru)  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="lacks candidate/bias"):
        formats.read(tmp_path / "g2.tf1.npz")
    np.savez(tmp_path / "mix.tf1.npz", **lstm, **{"enc/rnn/gru_cell/gates/kernel": np.zeros(1)})  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="mixes gru and lstm"):
        formats.read(tmp_path / "mix.tf1.npz")


def test_torch_projection_and_wrong_cell_are_refused(tmp_path: Path) -> None:
    _need("torch")
    import torch

    torch.save(torch.nn.LSTM(3, 4, proj_size=2).state_dict(), tmp_path / "proj.pt")
    with pytest.raises(LayoutError, match="weight_hr|proj"):
        formats.read(tmp_path / "proj.pt")
    torch.save(torch.nn.LSTM(3, 4, num_layers=2).state_dict(), tmp_path / "lstm.pt")
    assert formats.read(tmp_path / "lstm.pt").spec == rb.RNNSpec(3, 4, 2, cell="lstm")
    with pytest.raises(LayoutError, match="differ in cell"):
        formats.read(tmp_path / "lstm.pt", spec=rb.RNNSpec(3, 4, 2, cell="gru"))
    with pytest.raises(LayoutError, match="differ in num_layers"):
        formats.read(tmp_path / "lstm.pt", spec=rb.RNNSpec(3, 4, 1, cell="lstm"))
    gru = formats.read(tmp_path / "lstm.pt", spec=rb.RNNSpec(3, 4, 2, cell="lstm"))
    assert gru.spec.cell == "lstm"


def test_a_file_read_as_another_cell_is_refused(folder: Path, tmp_path: Path) -> None:
    """An LSTM file read with a GRU spec, an LSTM's arrays under a GRU spec, and a GRU read
    with the other formula: refused, never reinterpreted."""
    lstm = weights_for("lstm")
    gru_spec = spec_for("gru")
    for fmt in ("npz", "onnx", "keras", "tf1-npz"):
        if NEEDS.get(fmt) and drv.missing(NEEDS[fmt]):
            continue
        with pytest.raises(LayoutError, match="differ in cell"):
            formats.read(source("lstm", "2bi", fmt, folder), fmt, spec=gru_spec)
    with pytest.raises(ShapeError):
        rb.RNNWeights.from_arrays(gru_spec, lstm.arrays())  # (3, 16) is not a GRU's (3, 12)
    np.savez(  # an rnnbench .npz whose spec lies about its arrays
        tmp_path / "lie.npz",
        rnnbench_spec=np.array(gru_spec.to_json()),
        rnnbench_format=np.array("1"),
        **lstm.arrays(),  # type: ignore[arg-type]
    )
    with pytest.raises(ShapeError):
        formats.read(tmp_path / "lie.npz")
    with pytest.raises(LayoutError, match="reset_after=False was given"):
        formats.read(source("gru", "2bi", "npz", folder), reset_after=False)
    with pytest.raises(LayoutError, match="differ in reset_after"):
        formats.read(source("gru", "2bi", "npz", folder), spec=spec_for("gru(reset-before)"))


def test_keras_gru_formula_comes_from_the_bias_or_must_be_given(tmp_path: Path) -> None:
    spec = rb.RNNSpec(3, 4, cell="gru", reset_after=False, bias=False)
    w = rb.RNNWeights.random(spec, seed=2)
    formats.write(w, tmp_path / "g.weights.h5")
    with pytest.raises(LayoutError, match="GRU without bias"):
        formats.read(tmp_path / "g.weights.h5")
    assert formats.read(tmp_path / "g.weights.h5", reset_after=False).equals(w)
    assert formats.read(tmp_path / "g.weights.h5", spec=spec).equals(w)
    assert main(["convert", str(tmp_path / "g.weights.h5"), "-o", str(tmp_path / "g.npz"),
                 "--reset-before"]) == 0  # fmt: skip
    assert formats.read(tmp_path / "g.npz").equals(w)
    formats.write(weights_for("gru", "1"), tmp_path / "ra.weights.h5")
    with pytest.raises(LayoutError, match="reset_after=True.*reset_after=False was given"):
        formats.read(tmp_path / "ra.weights.h5", reset_after=False)


def test_old_npz_files_without_cell_or_reset_after_still_read(tmp_path: Path) -> None:
    """Files written before the gated cells have a spec without ``cell`` and ``reset_after``."""
    w = weights_for("rnn", "1")
    old = {k: v for k, v in w.spec.to_dict().items() if k not in ("cell", "reset_after")}
    np.savez(
        tmp_path / "old.npz",
        rnnbench_spec=np.array(json.dumps(old)),
        rnnbench_format=np.array("1"),
        **w.arrays(),  # type: ignore[arg-type]
    )
    assert formats.read(tmp_path / "old.npz").equals(w)
    gru = weights_for("gru", "1")
    spec = {k: v for k, v in gru.spec.to_dict().items() if k != "reset_after"}
    np.savez(
        tmp_path / "gru.npz",
        rnnbench_spec=np.array(json.dumps(spec)),
        rnnbench_format=np.array("1"),
        **gru.arrays(),  # type: ignore[arg-type]
    )
    assert formats.read(tmp_path / "gru.npz").spec.reset_after is True  # the GRU's default


# --- files of the wrong kind ------------------------------------------------------------------
class Marker:
    """Unpickling this would create a file (a stand-in for arbitrary code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def test_malicious_pickle_in_pt_is_refused_and_never_runs(tmp_path: Path, capsys: Any) -> None:
    _need("torch")
    import torch

    marker = tmp_path / "pwned"
    torch.save({"weight_ih_l0": torch.zeros(2, 2), "evil": Marker(marker)}, tmp_path / "zip.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(Marker(marker)))  # legacy, non-zip pickle
    assert not marker.exists()
    for name in ("zip.pt", "raw.pt"):
        with pytest.raises(WeightFileError, match="weights_only=True"):
            formats.read(tmp_path / name)
        assert main(["convert", str(tmp_path / name), "-o", str(tmp_path / "o.npz")]) == 2
        assert "never unpickles unsafely" in capsys.readouterr().err
        assert not marker.exists()
    assert not (tmp_path / "o.npz").exists()


def test_bad_files_are_refused_clearly(tmp_path: Path) -> None:
    _need("torch", "onnx")
    import torch
    from onnx import TensorProto, helper, numpy_helper

    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(LayoutError, match="weight_ih_l0"):
        formats.read(tmp_path / "linear.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(WeightFileError, match="not a state dict"):
        formats.read(tmp_path / "list.pt")

    def model(*nodes: Any) -> bytes:
        inits = [
            numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "W"),
            numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "R"),
        ]
        graph = helper.make_graph(
            list(nodes),
            "g",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 3])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
            inits,
        )
        return bytes(helper.make_model(graph).SerializeToString())

    (tmp_path / "rev.onnx").write_bytes(
        model(helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4, direction="reverse"))
    )
    with pytest.raises(LayoutError, match="direction 'reverse'"):
        formats.read(tmp_path / "rev.onnx")
    (tmp_path / "h.onnx").write_bytes(
        model(helper.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=4))  # 16 != 3 * 4
    )
    with pytest.raises(ShapeError, match="hidden_size 4"):
        formats.read(tmp_path / "h.onnx")
    (tmp_path / "mm.onnx").write_bytes(
        model(helper.make_node("MatMul", ["X", "W"], ["Y"]))  # no recurrent node
    )
    with pytest.raises(LayoutError, match="no RNN, LSTM or GRU node"):
        formats.read(tmp_path / "mm.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a model" * 10)
    with pytest.raises(RNNBenchError):
        formats.read(tmp_path / "junk.onnx")

    fused = {
        "rnn/lstm_fused_cell/kernel": np.zeros((7, 16)),
        "rnn/lstm_fused_cell/bias": np.zeros(16),
    }
    np.savez(tmp_path / "fused.tf1.npz", **fused)  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="only other cells"):
        formats.read(tmp_path / "fused.tf1.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(WeightFileError, match="holds no rnnbench spec"):
        formats.read(tmp_path / "other.npz")
    (tmp_path / "x.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightFileError, match="not an HDF5 file"):
        formats.read(tmp_path / "x.weights.h5")
    with pytest.raises(WeightFileError, match="cannot tell the format"):
        formats.read(tmp_path / "weights.bin")
    with pytest.raises(WeightFileError, match="does not exist"):
        formats.read(tmp_path / "missing.pt")


def test_keras_file_of_another_model_is_refused(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "m.weights.h5", "w") as f:  # named an LSTM, shaped as a GRU
        f.create_dataset("layers/lstm/cell/vars/0", data=np.zeros((3, 12)))
        f.create_dataset("layers/lstm/cell/vars/1", data=np.zeros((4, 12)))
    with pytest.raises(LayoutError, match="named a LSTM.*GRU"):
        formats.read(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "mix.weights.h5", "w") as f:
        for group, cols in (("lstm", 16), ("simple_rnn", 4)):
            f.create_dataset(f"layers/{group}/cell/vars/0", data=np.zeros((3, cols)))
            f.create_dataset(f"layers/{group}/cell/vars/1", data=np.zeros((4, cols)))
    with pytest.raises(LayoutError, match="mixes layer kinds"):
        formats.read(tmp_path / "mix.weights.h5")
    with h5py.File(tmp_path / "d.weights.h5", "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((3, 4)))
    with pytest.raises(LayoutError, match="not a SimpleRNN, LSTM or GRU"):
        formats.read(tmp_path / "d.weights.h5")


def test_tf1_bidirectional_multirnncell_is_refused(tmp_path: Path) -> None:
    names = {
        f"bidirectional_rnn/{d}/multi_rnn_cell/cell_{k}/basic_rnn_cell/{v}": np.zeros(
            (7 if k == 0 else 8, 4) if v == "kernel" else 4
        )
        for d in ("fw", "bw")
        for k in range(2)
        for v in ("kernel", "bias")
    }
    np.savez(tmp_path / "bi.tf1.npz", **names)  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="MultiRNNCell inside bidirectional_dynamic_rnn"):
        formats.read(tmp_path / "bi.tf1.npz")


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "w.tf1.npz"
    target.write_bytes(b"old")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        formats.write(weights_for("lstm"), target)
    assert target.read_bytes() == b"old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tf1.npz"]  # no temporary left
