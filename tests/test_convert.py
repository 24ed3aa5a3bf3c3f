"""``rnnbench convert``: every pair of formats round-trips, the converted file runs in its own
library with the source's output, and files of the wrong kind are refused clearly."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import porting_drivers as drv
import pytest

import rnnbench as rb
from rnnbench import formats
from rnnbench.cli import main
from rnnbench.compare import reference_forward
from rnnbench.errors import LayoutError, RNNBenchError, WeightFileError
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
PAIRS = [(a, b) for a in FILES for b in FILES if a != b]
CASE = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, nonlinearity="tanh")


def _need(*fmts: str) -> None:
    for fmt in fmts:
        lib = NEEDS.get(fmt) or ("tf1" if fmt == "tf1-npz" else None)
        if lib and drv.missing(lib) and fmt != "tf1-npz":
            pytest.skip(f"{fmt} needs {', '.join(drv.missing(lib))}")


def convert(src: Path, dst: Path, *extra: str) -> None:
    assert main(["convert", str(src), "-o", str(dst), *extra]) == 0


@pytest.fixture(scope="module")
def weights() -> rb.RNNWeights:
    spec = rb.RNNSpec(**CASE)  # type: ignore[arg-type]
    w = rb.RNNWeights.random(spec, seed=5)  # two different, non-zero biases
    assert all(dw.b_hh.any() for _, _, dw in w.iter_directions())
    return w


@pytest.fixture(scope="module")
def sources(weights: rb.RNNWeights, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per format, written from the same weights."""
    folder = tmp_path_factory.mktemp("sources")
    out = {}
    for fmt, name in FILES.items():
        if fmt in NEEDS and drv.missing(NEEDS[fmt]):
            continue
        formats.write(weights, folder / name, fmt)
        out[fmt] = folder / name
    return out


def assert_same_weights(a: rb.RNNWeights, b: rb.RNNWeights, exact_biases: bool) -> None:
    assert a.spec == b.spec and a.dtype == b.dtype
    for (_, _, x), (_, _, y) in zip(a.iter_directions(), b.iter_directions()):
        np.testing.assert_array_equal(x.w_ih, y.w_ih)
        np.testing.assert_array_equal(x.w_hh, y.w_hh)
        if exact_biases:
            np.testing.assert_array_equal(x.b_ih, y.b_ih)
            np.testing.assert_array_equal(x.b_hh, y.b_hh)
        else:  # a one-bias format on the way: the sum survives, bit for bit
            np.testing.assert_array_equal(x.bias, y.bias)


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_round_trip(a: str, b: str, sources: dict[str, Path], tmp_path: Path) -> None:
    """A -> B -> A gives A's weights: exact where both hold two biases, else their sum exactly."""
    _need(a, b)
    there, back = tmp_path / FILES[b], tmp_path / ("back_" + FILES[a])
    convert(sources[a], there, "--to", b)
    convert(there, back, "--to", a)
    exact = formats.two_biases(a) and formats.two_biases(b)
    original = formats.read(sources[a], a)
    assert_same_weights(original, formats.read(back, a), exact)
    assert_same_weights(original, formats.read(there, b), exact)


# --- the converted file runs in its own library ----------------------------------------------
@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 6, CASE["input_size"])).astype(np.float32)


def run_file(fmt: str, path: Path, x: np.ndarray, case: dict[str, Any]) -> np.ndarray:
    """The file in its own library, loaded the way that library's users load it."""
    if fmt == "torch":
        import torch

        module = drv._torch_rnn(case)
        module.load_state_dict(torch.load(path, weights_only=True))
        return drv._torch_run(module, x)
    if fmt == "keras":
        return drv.runners(("keras",))["keras"].call(
            "keras_load_weights_file", {"x": x}, path=str(path), **case
        )[1]["y"]
    if fmt == "onnx":
        return drv.onnx_run(path.read_bytes(), x)
    if fmt == "tf1-ckpt":
        return drv.runners(("tf1",))["tf1"].call(
            "tf1_restore_checkpoint", {"x": x}, path=str(path), **case
        )[1]["y"]
    if fmt == "tf1-npz" and not drv.missing("tf1"):
        return drv.runners(("tf1",))["tf1"].call(
            "tf1_assign_by_name", {"x": x}, path=str(path), **case
        )[1]["y"]
    # rnnbench's own files (and TF1 arrays without TensorFlow): the NumPy backend in float32
    w = formats.read(path, fmt, nonlinearity=case["nonlinearity"])
    cell = rb.get_backend("numpy", dtype="float32")
    cell.load(w)
    return cell.forward(x)[0]


SOURCE_OUTPUTS: dict[str, np.ndarray] = {}  # format -> its source file's output in its library


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_converted_file_runs(
    a: str,
    b: str,
    sources: dict[str, Path],
    weights: rb.RNNWeights,
    x: np.ndarray,
    tmp_path: Path,
) -> None:
    _need(a, b)
    target = tmp_path / FILES[b]
    convert(sources[a], target, "--to", b)
    if a not in SOURCE_OUTPUTS:
        SOURCE_OUTPUTS[a] = run_file(a, sources[a], x, CASE)
    y_a, y_b = SOURCE_OUTPUTS[a], run_file(b, target, x, CASE)
    ref, _ = reference_forward(weights, x)
    spec = weights.spec
    ages = step_ages(x.shape[1], spec.num_directions, spec.num_layers, spec.hidden_size)
    bound = 2 * tolerance_for(weights, np.float32, x).bounds(ref, ages)
    assert y_b.shape == y_a.shape == ref.shape
    diff = np.abs(y_b.astype(np.float64) - y_a)
    assert (diff <= bound).all(), f"{a} -> {b}: max |diff| {diff.max():.2e}"


def test_relu_travels_through_formats_that_do_not_record_it(tmp_path: Path, x: np.ndarray) -> None:
    """ONNX records relu; a .pt does not: --nonlinearity says it, and the .pt runs as relu."""
    _need("onnx", "torch")
    case = dict(CASE, nonlinearity="relu", num_layers=1, bidirectional=False)
    w = rb.RNNWeights.random(rb.RNNSpec(**case), seed=8)  # type: ignore[arg-type]
    formats.write(w, tmp_path / "r.onnx")
    convert(tmp_path / "r.onnx", tmp_path / "r.pt")
    y_onnx, y_pt = (
        drv.onnx_run((tmp_path / "r.onnx").read_bytes(), x),
        run_file("torch", tmp_path / "r.pt", x, case),
    )
    ref, _ = reference_forward(w, x)
    ages = step_ages(x.shape[1], 1, 1, case["hidden_size"])
    bound = 2 * tolerance_for(w, np.float32, x).bounds(ref, ages)
    assert (np.abs(y_pt.astype(np.float64) - y_onnx) <= bound).all()
    assert formats.read(tmp_path / "r.pt").spec.nonlinearity == "tanh"  # a state dict cannot say
    convert(tmp_path / "r.pt", tmp_path / "r2.onnx", "--nonlinearity", "relu")
    assert_same_weights(w, formats.read(tmp_path / "r2.onnx"), exact_biases=True)
    with pytest.raises(LayoutError, match="records nonlinearity 'relu'"):
        formats.read(tmp_path / "r.onnx", nonlinearity="tanh")


# --- refusals ---------------------------------------------------------------------------------
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
    torch.save(torch.nn.LSTM(3, 4).state_dict(), tmp_path / "lstm.pt")
    with pytest.raises(LayoutError, match="LSTM"):
        formats.read(tmp_path / "lstm.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(WeightFileError, match="not a state dict"):
        formats.read(tmp_path / "list.pt")

    lstm = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4)
    inits = [
        numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "W"),
        numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "R"),
    ]
    graph = helper.make_graph(
        [lstm],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    (tmp_path / "lstm.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(LayoutError, match="LSTM node"):
        formats.read(tmp_path / "lstm.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a model" * 10)
    with pytest.raises(RNNBenchError):
        formats.read(tmp_path / "junk.onnx")

    np.savez(
        tmp_path / "lstm.tf1.npz",
        **{"rnn/lstm_cell/kernel": np.zeros((7, 16)), "rnn/lstm_cell/bias": np.zeros(16)},
    )
    with pytest.raises(LayoutError, match="only other cells"):
        formats.read(tmp_path / "lstm.tf1.npz")
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

    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        f.create_dataset("layers/lstm/cell/vars/0", data=np.zeros((3, 16)))
        f.create_dataset("layers/lstm/cell/vars/1", data=np.zeros((4, 16)))
    with pytest.raises(LayoutError, match="LSTM"):
        formats.read(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "d.weights.h5", "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((3, 4)))
    with pytest.raises(LayoutError, match="not a SimpleRNN"):
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


def test_failed_write_leaves_nothing(
    weights: rb.RNNWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "w.tf1.npz"
    target.write_bytes(b"old")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        formats.write(weights, target)
    assert target.read_bytes() == b"old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tf1.npz"]  # no temporary left
