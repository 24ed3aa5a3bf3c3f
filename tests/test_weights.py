"""RNNWeights: init, scaling, and weight files (.npz, .safetensors) without pickle."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import rnnbench as rb

SPEC = rb.RNNSpec(3, 5, num_layers=2, bidirectional=True, nonlinearity="relu")


def test_random_is_seeded_typed_and_bounded() -> None:
    a = rb.RNNWeights.random(SPEC, seed=7, dtype="float64")
    b = rb.RNNWeights.random(SPEC, seed=7, dtype="float64")
    c = rb.RNNWeights.random(SPEC, seed=8, dtype="float64")
    assert a.equals(b) and not a.equals(c)
    assert a.dtype == np.float64 and rb.RNNWeights.random(SPEC).dtype == np.float32
    bound = 1 / np.sqrt(SPEC.hidden_size)
    assert all(np.abs(arr).max() <= bound for arr in a.arrays().values())
    # float32 weights are the float64 draw rounded, nothing else
    f32 = rb.RNNWeights.random(SPEC, seed=7, dtype="float32")
    assert f32.equals(a.astype("float32"))


def test_no_bias_spec_has_zero_biases_and_refuses_others() -> None:
    spec = rb.RNNSpec(2, 3, bias=False)
    w = rb.RNNWeights.random(spec)
    assert not w[0, 0].b_ih.any() and not w[0, 0].b_hh.any()
    d = w[0, 0]
    with pytest.raises(rb.LayoutError, match="non-zero biases"):
        rb.RNNWeights(spec, [[rb.DirectionWeights(d.w_ih, d.w_hh, d.b_ih + 1, d.b_hh)]])


@pytest.mark.parametrize("norm", [0.5, 1.0, 1.5])
def test_recurrent_norm_rescales_every_w_hh(norm: float) -> None:
    w = rb.RNNWeights.random(SPEC, seed=1, dtype="float64", recurrent_norm=norm)
    np.testing.assert_allclose(w.recurrent_norms(), [norm] * 4, rtol=1e-12)


def test_arrays_are_read_only() -> None:
    w = rb.RNNWeights.random(SPEC)
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0].w_ih[0, 0] = 1.0


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path: Path, suffix: str, dtype: str) -> None:
    w = rb.RNNWeights.random(SPEC, seed=2, dtype=dtype)
    path = tmp_path / f"w{suffix}"
    w.save(path)
    back = rb.RNNWeights.load(path)
    assert back.equals(w) and back.spec == SPEC
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_safetensors_files_agree_with_the_safetensors_package(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    w = rb.RNNWeights.random(SPEC, seed=5)
    ours = tmp_path / "ours.safetensors"
    w.save(ours)
    loaded = st.load_file(str(ours))
    assert set(loaded) == set(w.arrays())
    for key, arr in w.arrays().items():
        np.testing.assert_array_equal(loaded[key], arr)
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(
        {k: np.ascontiguousarray(v) for k, v in w.arrays().items()},
        str(theirs),
        metadata={"rnnbench_spec": SPEC.to_json()},
    )
    assert rb.RNNWeights.load(theirs).equals(w)


class _Payload:
    """Unpickling this would create a marker file: proof that code in a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_pickle_is_refused_and_nothing_in_it_runs(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(rb.WeightFileError) as info:
        rb.RNNWeights.load(path)
    assert not marker.exists()
    assert str(path) in str(info.value)


def test_an_npz_holding_an_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, rnnbench_spec=np.array([{"a": 1}], dtype=object))
    with pytest.raises(rb.WeightFileError, match="never unpickles"):
        rb.RNNWeights.load(path)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"w{suffix}"
    rb.RNNWeights.random(SPEC).save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(rb.WeightFileError, match="truncated|corrupt"):
        rb.RNNWeights.load(path)


def test_absent_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(rb.WeightFileError, match="does not exist"):
        rb.RNNWeights.load(tmp_path / "nope.npz")
    with pytest.raises(rb.WeightFileError, match="unknown weight file suffix '.pkl'"):
        rb.RNNWeights.load(tmp_path / "w.pkl")
    with pytest.raises(rb.WeightFileError, match="unknown weight file suffix"):
        rb.RNNWeights.random(SPEC).save(tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


def test_file_without_a_spec(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, kernel=np.zeros((2, 2)))
    with pytest.raises(rb.WeightFileError, match="holds no rnnbench spec"):
        rb.RNNWeights.load(path)


# --- the library-layout wrappers pass their keywords through (layouts.py is tested in
# test_layouts.py) ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        rb.RNNSpec(3, 4, cell="lstm", num_layers=2),
        rb.RNNSpec(3, 4, cell="gru", bidirectional=True),
        rb.RNNSpec(3, 4, cell="gru", reset_after=False),
    ],
    ids=lambda s: s.describe(),
)
def test_gated_weights_are_gates_times_hidden_wide(spec: rb.RNNSpec) -> None:
    w = rb.RNNWeights.random(spec, seed=1)
    gh = spec.gates * spec.hidden_size
    for k, _, dw in w.iter_directions():
        assert dw.w_ih.shape == (spec.layer_input_size(k), gh)
        assert dw.w_hh.shape == (spec.hidden_size, gh)
        assert dw.b_ih.shape == dw.b_hh.shape == (gh,)


def test_wrappers_pass_their_keywords() -> None:
    spec = rb.RNNSpec(3, 4, cell="lstm")
    w = rb.RNNWeights.random(spec, seed=2, dtype="float64")
    kernel, bias = w.to_tf1(forget_bias=0.0)
    shifted = w.to_tf1(forget_bias=2.0)[1]
    np.testing.assert_allclose(bias - shifted, np.r_[np.zeros(8), 2 * np.ones(4), np.zeros(4)])
    back = rb.RNNWeights.from_tf1(kernel, bias, cell="lstm", forget_bias=0.0)
    assert back.spec == spec
    with pytest.raises(rb.LayoutError, match="cell='gru'"):
        rb.RNNWeights.from_keras(w.to_keras(), cell="gru")
    gru = rb.RNNWeights.random(rb.RNNSpec(3, 4, cell="gru"), seed=2)
    W, R, B = gru.to_onnx()
    assert rb.RNNWeights.from_onnx(W, R, B, linear_before_reset=1).equals(gru)
    assert rb.RNNWeights.from_torch(gru.to_torch(), cell="gru").equals(gru)
