"""Porting, library to library: weights made by library X's own initializer go through
``RNNWeights.from_X(...).to_Y()`` into a bare layer of library Y, which must give X's output.

For every ordered pair of torch, keras, tf1 and onnx (12 pairs) and three cases (one tanh layer,
stacked bidirectional, stacked relu). Both outputs are float32; each must lie within
``tolerance_for(weights, float32, T)`` of the float64 reference, so they may differ from each
other by at most the sum of the two bounds, which is asserted too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import porting_drivers as drv
import pytest

import rnnbench as rb
from rnnbench.compare import measure, reference_forward
from rnnbench.tolerances import step_ages, tolerance_for

CASES: dict[str, dict[str, Any]] = {
    "tanh": dict(
        input_size=3, hidden_size=5, num_layers=1, bidirectional=False, nonlinearity="tanh", seed=11
    ),
    "stacked-bidirectional": dict(
        input_size=3, hidden_size=4, num_layers=2, bidirectional=True, nonlinearity="tanh", seed=12
    ),
    "relu-stacked": dict(
        input_size=4, hidden_size=6, num_layers=2, bidirectional=False, nonlinearity="relu", seed=13
    ),
}
BATCH, TIME = 3, 9
PAIRS = [(x, y) for x in drv.LIBRARIES for y in drv.LIBRARIES if x != y]


def from_native(library: str, arrays: dict[str, np.ndarray], case: dict[str, Any]) -> rb.RNNWeights:
    """``RNNWeights.from_X`` on X's native weights, as a user holding them would call it."""
    layers, bi, nl = case["num_layers"], case["bidirectional"], case["nonlinearity"]
    if library == "torch":  # a bare state dict cannot say its nonlinearity
        return rb.RNNWeights.from_torch(arrays, nonlinearity=nl)
    if library == "keras":  # get_weights() lists do not hold the activation either
        lists = drv.unpack_keras(arrays, layers)
        return rb.RNNWeights.from_keras(lists[0] if layers == 1 else lists, nonlinearity=nl)
    if library == "tf1":
        return rb.RNNWeights.from_tf1(drv.unpack_tf1(arrays, layers, bi), nonlinearity=nl)
    triples = drv.unpack_onnx(arrays, layers)
    if layers == 1:
        return rb.RNNWeights.from_onnx(*triples[0], nonlinearity=nl)
    return rb.RNNWeights.from_onnx(triples, nonlinearity=nl)


def to_native(library: str, weights: rb.RNNWeights) -> dict[str, np.ndarray]:
    """``w.to_Y()``, flattened for the pipe to Y's process."""
    spec = weights.spec
    if library == "torch":
        return weights.to_torch()
    if library == "keras":
        return drv.pack_keras(weights.to_keras(), spec.num_layers)
    if library == "tf1":
        return drv.pack_tf1(weights.to_tf1(), spec.num_layers, spec.bidirectional)
    return drv.pack_onnx(weights.to_onnx(), spec.num_layers)


@pytest.fixture(scope="module")
def runners() -> dict[str, drv.Runner]:
    return drv.runners()


@pytest.fixture(scope="module")
def x_by_case() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    return {
        name: rng.standard_normal((BATCH, TIME, case["input_size"])).astype(np.float32)
        for name, case in CASES.items()
    }


@pytest.fixture(scope="module")
def sources(
    runners: dict[str, drv.Runner], x_by_case: dict[str, np.ndarray]
) -> dict[tuple[str, str], tuple[rb.RNNWeights, np.ndarray]]:
    """(library, case) -> (from_X(native weights), X's own output), made once per module."""
    out = {}
    for lib, runner in runners.items():
        for name, case in CASES.items():
            _, arrays = runner.call(f"{lib}_source", {"x": x_by_case[name]}, **case)
            y = arrays.pop("y")
            out[lib, name] = (from_native(lib, arrays, case), y)
    return out


def _skip_missing(*libraries: str) -> None:
    for lib in libraries:
        if drv.missing(lib):
            pytest.skip(f"{lib} needs {', '.join(drv.missing(lib))}, not installed")


@pytest.mark.parametrize("case_name", list(CASES))
@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{x}-to-{y}" for x, y in PAIRS])
def test_port(
    source: str,
    target: str,
    case_name: str,
    runners: dict[str, drv.Runner],
    sources: dict[tuple[str, str], tuple[rb.RNNWeights, np.ndarray]],
    x_by_case: dict[str, np.ndarray],
) -> None:
    _skip_missing(source, target)
    case, x = CASES[case_name], x_by_case[case_name]
    weights, y_source = sources[source, case_name]
    assert weights.spec.nonlinearity == case["nonlinearity"]
    assert weights.spec.num_layers == case["num_layers"]

    _, out = runners[target].call(
        f"{target}_target", {"x": x, **to_native(target, weights)}, **case
    )
    y_target = out["y"]

    spec = weights.spec
    assert y_target.shape == y_source.shape == (BATCH, TIME, spec.output_size)
    ref_y, ref_h = reference_forward(weights, x)
    tol = tolerance_for(weights, np.float32, x)
    ages = step_ages(TIME, spec.num_directions, spec.num_layers, spec.hidden_size)
    for who, y in ((source, y_source), (target, y_target)):
        # h_n is not compared here (the bare layers return it in different forms): y holds it.
        checked = measure(y, ref_h, ref_y, ref_h, tol, ages)
        assert checked["passed"], f"{who} output off the float64 reference: {checked}"
    diff = np.abs(y_target.astype(np.float64) - y_source)
    bound = 2 * tol.bounds(ref_y, ages)
    print(f"{source} -> {target} [{case_name}]: max |y_Y - y_X| = {diff.max():.2e}")  # -s shows it
    assert (diff <= bound).all(), f"{source} -> {target}: max |diff| {diff.max():.3e}"
    # The weights were really used: a layer at its own init would not give this output.
    assert np.abs(y_source).max() > 1e-3


def test_sources_use_their_own_initializers(
    sources: dict[tuple[str, str], tuple[rb.RNNWeights, np.ndarray]],
) -> None:
    """Each library's init has its signature: torch's and ONNX's (here) biases are non-zero,
    Keras' and TF1's are zero; Keras' recurrent kernel is orthogonal."""
    got = {lib for lib, _ in sources}
    if not got:
        pytest.skip("no library installed")
    for (lib, _), (w, _) in sources.items():
        dw = w[0, 0]
        if lib in ("torch", "onnx"):
            assert dw.b_ih.any() and dw.b_hh.any()
        else:
            assert not dw.b_ih.any() and not dw.b_hh.any()
        if lib == "keras":
            np.testing.assert_allclose(dw.w_hh @ dw.w_hh.T, np.eye(len(dw.w_hh)), atol=1e-5)
