"""Porting, library to library: weights made by library X's own initializer go through
``RNNWeights.from_X(...).to_Y()`` into a bare layer of library Y, which must give X's output.

For every ordered pair of torch, keras, tf1 and onnx that can hold the cell, and for each cell:
the vanilla RNN (one tanh layer, stacked bidirectional, stacked relu), the LSTM and both GRU
formulas (one layer, and two stacked bidirectional layers each). TF1's LSTMCell runs with its
default forget_bias=1.0, which ``from_tf1``/``to_tf1`` fold into the stored bias. Both outputs are
float32; each must lie within ``tolerance_for(weights, float32, T)`` of the float64 reference, so
they may differ from each other by at most the sum of the two bounds, which is asserted too.

A GRU formula some library lacks (torch's nn.GRU resets after the recurrent matmul, TF1's GRUCell
before it, and neither converts into the other) is a pair that must be refused with a
LayoutError, never converted approximately.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import porting_drivers as drv
import pytest

import rnnbench as rb
from rnnbench.compare import measure, reference_forward
from rnnbench.tolerances import step_ages, tolerance_for


def _case(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    seed: int,
    nonlinearity: str = "tanh",
    reset_after: bool | None = None,
) -> dict[str, Any]:
    return dict(
        cell=cell,
        reset_after=reset_after,
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        seed=seed,
    )


CASES: dict[str, dict[str, Any]] = {
    "tanh": _case("rnn", 3, 5, 1, False, 11),
    "stacked-bidirectional": _case("rnn", 3, 4, 2, True, 12),
    "relu-stacked": _case("rnn", 4, 6, 2, False, 13, nonlinearity="relu"),
    "lstm": _case("lstm", 3, 5, 1, False, 21),
    "lstm-stacked-bidirectional": _case("lstm", 3, 4, 2, True, 22),
    "gru": _case("gru", 3, 5, 1, False, 31, reset_after=True),
    "gru-stacked-bidirectional": _case("gru", 3, 4, 2, True, 32, reset_after=True),
    "gru-reset-before": _case("gru", 3, 5, 1, False, 41, reset_after=False),
    "gru-reset-before-stacked-bidirectional": _case("gru", 3, 4, 2, True, 42, reset_after=False),
}
BATCH, TIME = 3, 9


def _holds(library: str, case: dict[str, Any]) -> bool:
    return drv.holds(library, case["cell"], case["reset_after"])


# (source, target, case): every source that holds the cell, to every other library.
PORTS = [
    (x, y, name)
    for name, case in CASES.items()
    for x in drv.LIBRARIES
    for y in drv.LIBRARIES
    if x != y and _holds(x, case)
]


def from_native(library: str, arrays: dict[str, np.ndarray], case: dict[str, Any]) -> rb.RNNWeights:
    """``RNNWeights.from_X`` on X's native weights, as a user holding them would call it. The
    vanilla RNN's nonlinearity is not in any of these structures (ONNX's is in the node, not
    in W, R, B), and a GRU's formula only in Keras' bias shape: both are passed."""
    layers, bi, cell = case["num_layers"], case["bidirectional"], case["cell"]
    kw: dict[str, Any] = {"nonlinearity": case["nonlinearity"]} if cell == "rnn" else {}
    if library == "torch":  # the cell follows from weight_hh_l0's shape
        return rb.RNNWeights.from_torch(arrays, **kw)
    if library == "keras":
        lists = drv.unpack_keras(arrays, layers)
        if cell != "rnn":
            kw.update(cell=cell, reset_after=case["reset_after"])
        return rb.RNNWeights.from_keras(lists[0] if layers == 1 else lists, **kw)
    if library == "tf1":  # LSTMCell's default forget_bias=1.0 is from_tf1's default too
        return rb.RNNWeights.from_tf1(drv.unpack_tf1(arrays, layers, bi), cell=cell, **kw)
    if cell == "gru":  # the node's attribute, as a reader of the model finds it
        kw["linear_before_reset"] = int(case["reset_after"])
    triples = drv.unpack_onnx(arrays, layers)
    if layers == 1:
        return rb.RNNWeights.from_onnx(*triples[0], **kw)
    return rb.RNNWeights.from_onnx(triples, **kw)


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
            if _holds(lib, case):
                _, arrays = runner.call(f"{lib}_source", {"x": x_by_case[name]}, **case)
                y = arrays.pop("y")
                out[lib, name] = (from_native(lib, arrays, case), y)
    return out


def _skip_missing(*libraries: str) -> None:
    for lib in libraries:
        if drv.missing(lib):
            pytest.skip(f"{lib} needs {', '.join(drv.missing(lib))}, not installed")


@pytest.mark.parametrize(
    ("source", "target", "case_name"), PORTS, ids=[f"{x}-to-{y}-{c}" for x, y, c in PORTS]
)
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
    spec = weights.spec
    assert (spec.cell, spec.reset_after, spec.num_layers, spec.bidirectional) == (
        case["cell"],
        case["reset_after"],
        case["num_layers"],
        case["bidirectional"],
    )
    assert spec.nonlinearity == case["nonlinearity"]

    if not _holds(target, case):
        # The other GRU formula: no weights of the target's GRU compute the source's.
        with pytest.raises(rb.LayoutError, match="(?i)reset"):
            to_native(target, weights)
        return

    _, out = runners[target].call(
        f"{target}_target", {"x": x, **to_native(target, weights)}, **case
    )
    y_target = out["y"]

    assert y_target.shape == y_source.shape == (BATCH, TIME, spec.output_size)
    ref_y, ref_h = reference_forward(weights, x)
    tol = tolerance_for(weights, np.float32, x)
    ages = step_ages(TIME, spec.num_directions, spec.num_layers, spec.hidden_size)
    for who, y in ((source, y_source), (target, y_target)):
        # The final state is not compared here (the bare layers return it in different forms):
        # y holds the last step's h.
        checked = measure(y, ref_h, ref_y, ref_h, tol, ages)
        assert checked["passed"], f"{who} output off the float64 reference: {checked}"
    diff = np.abs(y_target.astype(np.float64) - y_source)
    bound = 2 * tol.bounds(ref_y, ages)
    print(f"{source} -> {target} [{case_name}]: max |y_Y - y_X| = {diff.max():.2e}")  # -s shows it
    assert (diff <= bound).all(), f"{source} -> {target}: max |diff| {diff.max():.3e}"
    # The weights were really used: a layer at its own init would not give this output.
    assert np.abs(y_source).max() > 1e-3


def _bias_signature(library: str, cell: str) -> dict[str, float] | None:
    """The canonical b_ih each library's own init gives, per gate block (b_hh is then zero),
    or None for random biases (torch's init; ONNX's hand-made arrays here)."""
    if library in ("torch", "onnx"):
        return None
    if cell == "lstm":  # Keras' unit_forget_bias; TF1's forget_bias=1.0 folded in by from_tf1
        return {"i": 0.0, "f": 1.0, "g": 0.0, "o": 0.0}
    if cell == "gru" and library == "tf1":  # GRUCell's gates/bias starts at 1.0
        return {"r": 1.0, "z": 1.0, "n": 0.0}
    return {"r": 0.0, "z": 0.0, "n": 0.0} if cell == "gru" else {"h": 0.0}


def test_sources_use_their_own_initializers(
    sources: dict[tuple[str, str], tuple[rb.RNNWeights, np.ndarray]],
) -> None:
    """Each library's init has its signature: torch's and ONNX's (here) biases are random;
    Keras' and TF1's are zero, but for the LSTM's forget gate (Keras' unit_forget_bias, TF1's
    run-time forget_bias) and TF1's GRU gates (1.0); Keras' recurrent kernel is orthogonal."""
    if not sources:
        pytest.skip("no library installed")
    from rnnbench.gates import CANONICAL

    for (lib, name), (w, _) in sources.items():
        cell = CASES[name]["cell"]
        dw = w[0, 0]
        signature = _bias_signature(lib, cell)
        if signature is None:
            assert dw.b_ih.any() and dw.b_hh.any()
        else:
            assert not dw.b_hh.any(), (lib, name)
            blocks = np.split(dw.b_ih, len(CANONICAL[cell]))
            for gate, block in zip(CANONICAL[cell], blocks):
                assert np.all(block == signature[gate]), (lib, name, gate, block)
        if lib == "keras":  # (H, G*H): orthonormal rows, whatever the gate order
            np.testing.assert_allclose(dw.w_hh @ dw.w_hh.T, np.eye(len(dw.w_hh)), atol=1e-5)
