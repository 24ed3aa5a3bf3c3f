"""Golden values: LSTM and GRU outputs computed by each library's OWN layer, with its own
initializer, recorded once by ``tests/data/golden/make_golden.py`` (run by hand; see its
docstring) and stored as JSON with the native weights and the library versions.

Each file is read as a user holding those native weights would: ``RNNWeights.from_X`` on them,
with the library's own input, output and state layouts turned into rnnbench's by hand here. Then

(a) the float64 reference must reproduce the library's recorded output and final states within
    the project tolerance of the dtype the library computed in (float64 for torch, Keras on
    TensorFlow and TF1: about 1e-15; float32 for onnxruntime), and
(b) every backend that can run the cell must reproduce them too (the bidirectional model, which
    holds both directions, with and without an initial state), in float64 where it can (else
    float32), within its own tolerance plus the recording's.

So a converter that forgets a gate permutation, TF1's run-time forget_bias or ONNX's default
``linear_before_reset=0``, or a backend that computes another formula, fails against numbers
the library itself produced, not against rnnbench's own idea of them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
from rnnbench.compare import measure, reference_forward
from rnnbench.tolerances import Tolerance, step_ages, tolerance_for

GOLDEN = Path(__file__).parent / "data" / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.json"))
# The files make_golden.py writes: each library's LSTM and GRU(s); a missing one is a failure.
EXPECTED = {
    "keras_gru",
    "keras_gru_reset_before",
    "keras_lstm",
    "onnx_gru_lbr0",
    "onnx_gru_lbr1",
    "onnx_lstm",
    "tf1_gru",
    "tf1_lstm",
    "torch_gru",
    "torch_lstm",
}
# A backend runs each file in float64 where it can (the tightest check: a float64 recording is
# then matched to ~1e-15), else in float32; either exposes a wrong formula or gate order.
DTYPES = ("float64", "float32")

Run = tuple[np.ndarray, Any, np.ndarray, Any]  # x, h0 (public or None), y, final state (public)


@cache
def golden(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text())
    return doc


def _a(value: Any) -> np.ndarray:
    return np.asarray(value, np.float64)


def _public(cell: str, parts: dict[str, np.ndarray]) -> Any:
    """(h,) or (h, c) stacked over directions -> rnnbench's public state."""
    return (parts["h"], parts["c"]) if cell == "lstm" else parts["h"]


# --- each library's native weights and layouts -> rnnbench --------------------------------
def weights_of(doc: dict[str, Any], model: dict[str, Any]) -> rb.RNNWeights:
    """``RNNWeights.from_X`` on the recorded native weights, as a user would call it."""
    lib, cell, bi = doc["library"], doc["cell"], model["bidirectional"]
    native = {k: _a(v) for k, v in model["weights"].items()}
    if lib == "torch":
        return rb.RNNWeights.from_torch(native)  # the cell follows from weight_hh_l0's shape
    if lib == "keras":  # get_weights(): forward's arrays, then backward's
        return rb.RNNWeights.from_keras(
            list(native.values()), cell=cell, reset_after=doc["reset_after"], bidirectional=bi
        )
    if lib == "tf1":
        per_dir: list[Any] = []
        for d in ("fw", "bw") if bi else ("",):
            prefix = f"bidirectional_rnn/{d}/" if d else "rnn/"
            if cell == "lstm":
                base = f"{prefix}lstm_cell/"
                per_dir.append((native[f"{base}kernel"], native[f"{base}bias"]))
            else:
                base = f"{prefix}gru_cell/"
                per_dir.append({k[len(base) :]: v for k, v in native.items() if k.startswith(base)})
        structure = tuple(per_dir) if bi else per_dir[0]
        if cell == "lstm":
            return rb.RNNWeights.from_tf1(
                structure, cell="lstm", forget_bias=model["options"]["forget_bias"]
            )
        return rb.RNNWeights.from_tf1(structure, cell="gru")
    # ONNX: the node's attribute, or ONNX's default (0) when the node leaves it out.
    lbr = model["options"]["attributes"].get("linear_before_reset", 0)
    return rb.RNNWeights.from_onnx(native["W"], native["R"], native["B"], linear_before_reset=lbr)


def run_of(doc: dict[str, Any], model: dict[str, Any], run: dict[str, Any]) -> Run:
    """The run's input, initial state, output and final state in rnnbench's layouts: x (B, T, I),
    y (B, T, D*H), states (D, B, H) (an LSTM's as the pair (h, c))."""
    lib, cell, bi = doc["library"], doc["cell"], model["bidirectional"]
    states = ("h", "c") if cell == "lstm" else ("h",)
    init = run["initial_state"]
    out, fin = run["output"], run["final_state"]
    if lib == "torch":  # batch_first=True; states (D, B, H) as rnnbench's
        h0 = None if init is None else _public(cell, {s: _a(init[f"{s}0"]) for s in states})
        final = _public(cell, {s: _a(fin[f"{s}_n"]) for s in states})
        return _a(run["x"]), h0, _a(out["output"]), final
    if lib == "keras":  # one (B, H) array per state and direction, in Keras' list order
        dirs = ("forward_", "backward_") if bi else ("",)

        def stack(named: dict[str, Any]) -> Any:
            return _public(cell, {s: np.stack([_a(named[d + s]) for d in dirs]) for s in states})

        h0 = None if init is None else stack(init)
        return _a(run["x"]), h0, _a(out["output"]), stack(fin)
    if lib == "tf1":  # LSTMStateTuple(c, h) per direction; bidirectional outputs apart
        dirs = ("fw/", "bw/") if bi else ("",)

        def stack(named: dict[str, Any]) -> Any:
            return _public(cell, {s: np.stack([_a(named[d + s]) for d in dirs]) for s in states})

        y = (
            np.concatenate([_a(out["output_fw"]), _a(out["output_bw"])], -1)
            if bi
            else out["output"]
        )
        h0 = None if init is None else stack(init)
        return _a(run["x"]), h0, _a(y), stack(fin)
    # ONNX: X (T, B, I); Y (T, D, B, H); Y_h, Y_c, initial_h, initial_c (D, B, H)
    x = _a(run["x"]).transpose(1, 0, 2)
    y_native = _a(out["Y"])
    t, d, b, h = y_native.shape
    y = y_native.transpose(2, 0, 1, 3).reshape(b, t, d * h)
    h0 = None if init is None else _public(cell, {s: _a(init[f"initial_{s}"]) for s in states})
    final = _public(cell, {s: _a(fin[f"Y_{s}"]) for s in states})
    return x, h0, y, final


def _parts(state: Any) -> tuple[np.ndarray, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def _cast(state: Any, dtype: str) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.astype(dtype) for s in state)
    return state.astype(dtype)


class Checked:
    """One recorded run with its reference and the recording's tolerance."""

    def __init__(self, doc: dict[str, Any], model: dict[str, Any], run: dict[str, Any]) -> None:
        self.weights = weights_of(doc, model).astype(np.float64)
        self.x, self.h0, self.y, self.final = run_of(doc, model, run)
        self.ref_y, self.ref_state = reference_forward(self.weights, self.x, self.h0)
        spec = self.weights.spec
        self.ages = step_ages(doc["time"], spec.num_directions, 1, spec.hidden_size)
        self.recorded_tol = self.tolerance(doc["dtype"])

    def tolerance(self, dtype: str) -> Tolerance:
        return tolerance_for(self.weights, dtype, self.x, self.h0, reference=self.ref_y)

    def against_recording(self, y: np.ndarray, state: Any, tol: Tolerance) -> float:
        """The largest |got - recorded| over y and every final state; asserts each element is
        within ``tol`` + the recording's own tolerance (both measured around the reference)."""
        rec = self.recorded_tol
        diff = np.abs(np.asarray(y, np.float64) - self.y)
        bound = tol.bounds(self.ref_y, self.ages) + rec.bounds(self.ref_y, self.ages)
        assert (diff <= bound).all(), f"output off the recording by {diff.max():.3e}"
        worst = float(diff.max())
        s = float(tol.scale(self.ages).max()) + float(rec.scale(self.ages).max())
        for got, want, ref in zip(_parts(state), _parts(self.final), _parts(self.ref_state)):
            d = np.abs(np.asarray(got, np.float64) - want)
            assert (d <= s + min(s, 1.0) * np.abs(ref)).all(), f"state off by {d.max():.3e}"
            worst = max(worst, float(d.max()))
        return worst


@cache
def cases(name: str) -> list[tuple[str, Checked]]:
    doc = golden(name)
    return [
        (f"{model['name']}/{run['name']}", Checked(doc, model, run))
        for model in doc["models"]
        for run in model["runs"]
    ]


# --- the files --------------------------------------------------------------------------------
def test_every_golden_file_is_there() -> None:
    assert set(NAMES) == EXPECTED, "run tests/data/golden/make_golden.py"
    for name in NAMES:
        doc = golden(name)
        assert doc["versions"] and doc["library"] in name and doc["cell"] in name
        assert doc["dtype"] == ("float32" if doc["library"] == "onnx" else "float64")
        assert [m["bidirectional"] for m in doc["models"]] == [False, True]
        for model in doc["models"]:
            assert [r["initial_state"] is None for r in model["runs"]] == [True, False]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_native_weights_convert_to_the_recorded_spec(name: str) -> None:
    doc = golden(name)
    for model in doc["models"]:
        spec = weights_of(doc, model).spec
        assert (spec.cell, spec.input_size, spec.hidden_size) == (
            doc["cell"],
            doc["input_size"],
            doc["hidden_size"],
        )
        assert spec.bidirectional == model["bidirectional"] and spec.num_layers == 1
        assert spec.reset_after == doc["reset_after"]


# --- (a) the float64 reference reproduces each library ---------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_reproduces_the_library(name: str) -> None:
    doc = golden(name)
    for label, c in cases(name):
        found = measure(c.y, c.final, c.ref_y, c.ref_state, c.recorded_tol, c.ages)
        assert found["passed"], (label, found["max_abs"], found["first_bad_step"])
        err = max(found["max_abs"], found["h_n_max_abs"], np.nan_to_num(found["c_n_max_abs"]))
        # -s shows them: float64 recordings agree to ~1e-15, onnxruntime's float32 to ~1e-7.
        print(f"{name} [{label}] reference vs {doc['library']} ({doc['dtype']}): {err:.2e}")
        assert err < (1e-12 if doc["dtype"] == "float64" else 1e-5)
        assert np.abs(c.y).max() > 0.05  # the run did something


def test_goldens_catch_the_usual_mistakes() -> None:
    """Negative controls: the checks above fail for the classic porting slips."""
    # TF1's forget_bias left out (the bias read as stored, with nothing added at run time).
    doc = golden("tf1_lstm")
    model, run = doc["models"][0], doc["models"][0]["runs"][0]
    w = rb.RNNWeights.from_tf1(
        (_a(model["weights"]["rnn/lstm_cell/kernel"]), _a(model["weights"]["rnn/lstm_cell/bias"])),
        cell="lstm",
        forget_bias=0.0,
    )
    x, _, y, _ = run_of(doc, model, run)
    assert np.abs(reference_forward(w, x)[0] - y).max() > 1e-2
    # ONNX's default linear_before_reset=0 read as PyTorch's reset-after formula.
    doc = golden("onnx_gru_lbr0")
    model, run = doc["models"][0], doc["models"][0]["runs"][1]
    arrays = {k: _a(v) for k, v in model["weights"].items()}
    w = rb.RNNWeights.from_onnx(arrays["W"], arrays["R"], arrays["B"], linear_before_reset=1)
    x, h0, y, _ = run_of(doc, model, run)
    assert np.abs(reference_forward(w, x, h0)[0] - y).max() > 1e-3
    # Keras' kernel taken in PyTorch's gate order (z,r,h read as r,z,n).
    doc = golden("keras_gru")
    model, run = doc["models"][0], doc["models"][0]["runs"][0]
    good = weights_of(doc, model)
    swapped = rb.RNNWeights.from_torch(
        {
            k: (v[[*range(4, 8), *range(0, 4), *range(8, 12)]] if v.shape[0] == 12 else v)
            for k, v in good.to_torch().items()
        }
    )
    x, _, y, _ = run_of(doc, model, run)
    assert np.abs(reference_forward(good, x)[0] - y).max() < 1e-12
    assert np.abs(reference_forward(swapped, x)[0] - y).max() > 1e-2


# --- (b) every backend reproduces each library -----------------------------------------------
class SpecCells:
    """One cell per (backend, dtype, cell kind, formula, directions): each golden file of the
    same kind then reloads a cell already built for its spec, so a jit backend compiles once
    per spec, not once per file."""

    def __init__(self) -> None:
        self.cells: dict[tuple[Any, ...], Any] = {}

    def get(self, backend: str, dtype: str, spec: rb.RNNSpec) -> Any:
        key = (backend, dtype, spec.cell, spec.reset_after, spec.bidirectional)
        if key not in self.cells:
            self.cells[key] = rb.get_backend(backend, dtype=dtype)
        return self.cells[key]

    def close(self) -> None:
        for cell in self.cells.values():
            if hasattr(cell, "close"):  # worker cells release their handle
                cell.close()


def _start(name: str) -> None:
    """Start a backend's worker process and import its library there (a throwaway cell)."""
    cell = rb.get_backend(name)
    if hasattr(cell, "close"):
        cell.close()


@pytest.fixture(scope="module")
def spec_cells(request: pytest.FixtureRequest) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from conftest import selected_backends

    # Worker start-ups (TensorFlow, Keras, JAX imports) overlap instead of queueing one per
    # backend's first test; the processes are rnnbench's pooled ones, shared with other tests.
    isolated = [
        name
        for name in selected_backends(request.config)
        if rb.backend_info(name).isolated and rb.backend_info(name).unavailable_reason() is None
    ]
    with ThreadPoolExecutor(max(len(isolated), 1)) as pool:
        list(pool.map(_start, isolated))
    cells = SpecCells()
    yield cells
    cells.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_backend_reproduces_the_library(name: str, backend: str, spec_cells: SpecCells) -> None:
    reason = rb.backend_info(backend).unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend {backend!r} unavailable: {reason}")
    doc = golden(name)
    by_model: dict[str, list[tuple[str, Checked]]] = {}
    for label, c in cases(name):
        if label.startswith("bidirectional/"):  # (a) checks the other model; this one has both
            by_model.setdefault(label.split("/")[0], []).append((label, c))
    skipped: dict[str, str] = {}  # reason -> the first thing it skipped
    ran = 0
    for model, runs in by_model.items():
        for dtype in DTYPES:
            weights = runs[0][1].weights
            try:  # one load per model; its runs share the weights
                cell = spec_cells.get(backend, dtype, weights.spec)
                cell.load(weights.astype(dtype))
            except rb.BackendUnavailableError as exc:  # a dtype, or a formula its library lacks
                skipped.setdefault(str(exc).split("\nHint:")[0], f"{model} {dtype}")
                continue
            for label, c in runs:
                y, state = cell.forward(c.x.astype(dtype), _cast(c.h0, dtype))
                tol = c.tolerance(dtype)
                found = measure(y, state, c.ref_y, c.ref_state, tol, c.ages)
                assert found["passed"], (label, dtype, found["max_abs"], found["first_bad_step"])
                worst = c.against_recording(y, state, tol)
                print(f"{name} [{label}] {backend} {dtype} vs {doc['library']}: {worst:.2e}")
                ran += 1
            break  # this model ran in the first dtype the backend has
    if not ran:
        first, *more = skipped
        pytest.skip(f"{backend} cannot run {name}: {first}" + (" (and more)" if more else ""))
