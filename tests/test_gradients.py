"""The reference backward pass (rnnbench.gradients) proved by central finite differences of the
reference forward pass, element by element, for every cell, stacked and bidirectional, with
padding; and cross-checked against torch autograd."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import state as state_mod
from rnnbench.gradients import Grads, _forward_scan, reference_vjp, vjp_tuple
from rnnbench.padding import Padding, check_padding
from rnnbench.reference import forward_tuple, scan, step_function
from rnnbench.weights import ARRAY_NAMES, array_key

CELLS = {
    "rnn-tanh": {"cell": "rnn"},
    "rnn-relu": {"cell": "rnn", "nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}
LAYOUTS = {"1layer": (3, 3, 1, False, 4), "2layer-bidir": (2, 2, 2, True, 3)}  # I, H, L, bidir, T
BATCH = 2
EPS = 1e-6
# The worst relative error measured over every case below is ~1e-8 (central differences in
# float64 with EPS = 1e-6); a wrong gradient is off by far more (see the test that it fails).
THRESHOLD = 1e-7
HOLES = np.array([[False, True, True], [True, False, True]])  # a mask with holes, T = 3


@dataclasses.dataclass
class Case:
    weights: rb.RNNWeights
    x: np.ndarray
    h0: tuple[np.ndarray, ...]
    dy: np.ndarray
    dstates: tuple[np.ndarray, ...]
    padding: Padding | None = None


def make_case(
    cell: str,
    layout: str,
    seed: int = 0,
    bias: bool = True,
    lengths: Any = None,
    mask: Any = None,
) -> Case:
    inp, hidden, layers, bidir, time = LAYOUTS[layout]
    spec = rb.RNNSpec(inp, hidden, layers, bidir, bias=bias, **CELLS[cell])  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    # Larger than the default init, so that every gate works away from its linear region.
    weights = rb.RNNWeights.from_arrays(
        spec,
        {
            k: rng.uniform(-1, 1, a.shape) if bias or "w_" in k else a
            for k, a in rb.RNNWeights.random(spec, seed, "float64").arrays().items()
        },
    )
    shape = state_mod.state_shape(spec, BATCH)
    return Case(
        weights,
        rng.normal(size=(BATCH, time, inp)),
        tuple(rng.normal(size=shape) for _ in spec.state_names),
        rng.normal(size=(BATCH, time, spec.output_size)),
        tuple(rng.normal(size=shape) for _ in spec.state_names),
        check_padding(lengths, mask, BATCH, time),
    )


# --- the finite-difference check ----------------------------------------------------------


def loss_per_row(case: Case, weights: rb.RNNWeights, x: np.ndarray, h0: Any) -> np.ndarray:
    """L of every row of x (rows are independent; L is their sum) through the reference."""
    reps = x.shape[0] // BATCH
    padding = case.padding
    if padding is not None and reps > 1:
        lengths = None if padding.lengths is None else np.tile(padding.lengths, reps)
        padding = Padding(np.tile(padding.mask, (reps, 1)), lengths)
    y, states = forward_tuple(weights, x, h0, padding)
    per_row = (y * np.tile(case.dy, (reps, 1, 1))).sum(axis=(1, 2))
    for s, ds in zip(states, case.dstates):
        per_row = per_row + (s * np.tile(ds, (1, reps, 1))).sum(axis=(0, 2))
    return per_row


def fd_input_grads(case: Case) -> dict[str, np.ndarray]:
    """dL/dx and dL/d(each initial state) by central differences: every perturbed copy of the
    batch is a block of rows of one big batch, run through the reference once."""
    spec = case.weights.spec
    names = ["dx"] + [f"d{n}0" for n in spec.state_names]
    values = [case.x, *case.h0]
    sizes = [v.size for v in values]
    copies = 2 * sum(sizes)
    xs = np.tile(case.x, (copies, 1, 1))
    h0s = [np.tile(h, (1, copies, 1)) for h in case.h0]
    j = 0
    for a, v in enumerate(values):
        for flat in range(v.size):
            index = np.unravel_index(flat, v.shape)
            for sign in (1, -1):
                if a == 0:
                    xs[j * BATCH + index[0], index[1], index[2]] += sign * EPS
                else:
                    h0s[a - 1][index[0], j * BATCH + index[1], index[2]] += sign * EPS
                j += 1
    per_copy = loss_per_row(case, case.weights, xs, tuple(h0s)).reshape(copies, BATCH).sum(1)
    diffs = (per_copy[0::2] - per_copy[1::2]) / (2 * EPS)
    out, start = {}, 0
    for name, v, size in zip(names, values, sizes):
        out[name] = diffs[start : start + size].reshape(v.shape)
        start += size
    return out


def with_array(weights: rb.RNNWeights, k: int, d: int, name: str, arr: Any) -> rb.RNNWeights:
    """``weights`` with one array replaced, without the constructor's checks (kept cheap: it
    runs twice per weight element)."""
    new = copy.copy(weights)
    layers = [list(row) for row in weights.layers]
    layers[k][d] = dataclasses.replace(layers[k][d], **{name: arr})
    new.layers = tuple(tuple(row) for row in layers)
    return new


def fd_weight_grads(case: Case) -> dict[str, np.ndarray]:
    """dL/d(each weight array) by central differences, one element at a time. A spec without
    bias has no biases to perturb (they stay zero): those are left out."""
    w = case.weights
    out = {}
    for k, d, dw in w.iter_directions():
        for name in ARRAY_NAMES:
            if name.startswith("b_") and not w.spec.bias:
                continue
            base = getattr(dw, name)
            grad = np.empty_like(base)
            for index in np.ndindex(base.shape):
                losses = []
                for sign in (1, -1):
                    arr = base.copy()
                    arr[index] += sign * EPS
                    losses.append(
                        loss_per_row(case, with_array(w, k, d, name, arr), case.x, case.h0).sum()
                    )
                grad[index] = (losses[0] - losses[1]) / (2 * EPS)
            out[array_key(k, d, name)] = grad
    return out


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |analytic - numeric| over the array, relative to the array's largest entry (absolute
    when both are ~zero, as dx at padded steps is)."""
    scale = max(float(np.abs(analytic).max()), float(np.abs(numeric).max()))
    diff = float(np.abs(analytic - numeric).max())
    return diff / scale if scale > 1e-8 else diff


def fd_grads(case: Case) -> dict[str, np.ndarray]:
    return {**fd_input_grads(case), **fd_weight_grads(case)}


def fd_errors(
    case: Case, grads: Grads, numeric: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    numeric = fd_grads(case) if numeric is None else numeric
    analytic = grads.arrays()
    return {name: relative_error(analytic[name], numeric[name]) for name in numeric}


def vjp_of(case: Case) -> Grads:
    spec = case.weights.spec
    padding = case.padding
    kwargs: dict[str, Any] = {}
    if padding is not None:
        kwargs = (
            {"lengths": padding.lengths} if padding.kind == "lengths" else {"mask": padding.mask}
        )
    return reference_vjp(
        case.weights,
        case.x,
        state_mod.from_tuple(spec, case.h0),
        case.dy,
        state_mod.from_tuple(spec, case.dstates),
        **kwargs,
    )


WORST: dict[str, float] = {}


def check_fd(case: Case, label: str) -> Grads:
    grads = vjp_of(case)
    errors = fd_errors(case, grads)
    worst = max(errors, key=errors.__getitem__)
    WORST[label] = errors[worst]
    assert errors[worst] < THRESHOLD, f"{label}: {worst} is off by {errors[worst]:.2e}: {errors}"
    return grads


# --- finite differences, every cell -------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell: str, layout: str) -> None:
    check_fd(make_case(cell, layout), f"{cell} {layout}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "padding", [{"lengths": np.array([3, 1])}, {"mask": HOLES}], ids=["lengths", "mask"]
)
def test_padded_gradients_match_finite_differences(cell: str, padding: dict[str, Any]) -> None:
    case = make_case(cell, "2layer-bidir", seed=1, **padding)
    grads = check_fd(case, f"{cell} {next(iter(padding))}")
    assert case.padding is not None
    # Padded steps' values do not matter: no gradient reaches them.
    assert not grads.dx[~case.padding.mask].any()


@pytest.mark.parametrize(
    ("cell", "layout"), [("rnn-tanh", "2layer-bidir"), ("lstm", "1layer"), ("gru", "2layer-bidir")]
)
def test_no_bias_gradients_are_zero_and_match(cell: str, layout: str) -> None:
    grads = check_fd(make_case(cell, layout, seed=2, bias=False), f"{cell} {layout} no bias")
    for _, _, dw in grads.weights.iter_directions():
        assert not dw.b_ih.any() and not dw.b_hh.any()


def test_the_check_catches_wrong_gradients() -> None:
    """The finite-difference check is not vacuous: a wrong dy scale, swapped directions and the
    wrong masked-step rule each fail it by far."""
    case = make_case("rnn-tanh", "2layer-bidir", seed=3, lengths=np.array([3, 2]))
    numeric = fd_grads(case)
    assert max(fd_errors(case, vjp_of(case), numeric).values()) < THRESHOLD
    scaled = vjp_of(dataclasses.replace(case, dy=1.01 * case.dy))
    assert max(fd_errors(case, scaled, numeric).values()) > 1e-3

    right = vjp_of(case)
    layers = [tuple(reversed(row)) for row in right.weights.layers]
    swapped = dataclasses.replace(right, weights=rb.RNNWeights(case.weights.spec, layers))
    assert max(fd_errors(case, swapped, numeric).values()) > 1e-2

    assert case.padding is not None  # lengths write zeros; the same mask as a mask repeats
    repeat = dataclasses.replace(case, padding=Padding(case.padding.mask))
    assert max(fd_errors(case, vjp_of(repeat), numeric).values()) > 1e-2


def test_h0_none_is_zeros_and_has_a_gradient() -> None:
    case = make_case("lstm", "1layer")
    zeros = dataclasses.replace(case, h0=tuple(np.zeros_like(h) for h in case.h0))
    spec = case.weights.spec
    got = reference_vjp(
        case.weights, case.x, None, case.dy, state_mod.from_tuple(spec, case.dstates)
    )
    want = check_fd(zeros, "lstm h0=zeros")
    for name, arr in want.arrays().items():
        np.testing.assert_array_equal(got.arrays()[name], arr, err_msg=name)
    assert np.abs(got.dh0[0]).max() > 0.01 and np.abs(got.dh0[1]).max() > 0.01


def test_an_empty_mask_row_passes_the_state_gradient_through() -> None:
    """A row with no real step: its final state is h0, so dh0 = dh_n there, and nothing else
    (its outputs repeat zeros) has a gradient."""
    mask = np.array([[True, False, True], [False, False, False]])
    case = make_case("gru", "2layer-bidir", mask=mask)
    grads = vjp_of(case)
    np.testing.assert_array_equal(grads.dh0[:, 1], case.dstates[0][:, 1])
    assert not grads.dx[1].any()
    alone = dataclasses.replace(
        case,
        x=case.x[:1],
        h0=(case.h0[0][:, :1],),
        dy=case.dy[:1],
        dstates=(case.dstates[0][:, :1],),
        padding=Padding(mask[:1]),
    )
    for name, arr in vjp_of(alone).weights.arrays().items():
        np.testing.assert_allclose(grads.weights.arrays()[name], arr, rtol=1e-13, atol=1e-15)


def test_cotangents_default_to_zeros() -> None:
    case = make_case("gru", "2layer-bidir")
    grads = reference_vjp(case.weights, case.x, case.h0[0])
    assert all(not a.any() for a in grads.arrays().values())
    only_dy = reference_vjp(case.weights, case.x, case.h0[0], dy=case.dy)
    both = reference_vjp(case.weights, case.x, case.h0[0], case.dy, np.zeros_like(case.h0[0]))
    for name, arr in only_dy.arrays().items():
        np.testing.assert_array_equal(both.arrays()[name], arr, err_msg=name)


def test_arrays_order_and_dtype() -> None:
    case = make_case("lstm", "2layer-bidir")
    grads = vjp_of(case)
    names = list(grads.arrays())
    assert names[:3] == ["dx", "dh0", "dc0"]
    assert names[3:] == list(case.weights.arrays())
    assert all(a.dtype == np.float64 for a in grads.arrays().values())
    w32 = case.weights.astype("float32")
    g32 = vjp_tuple(w32, case.x.astype(np.float32), None, case.dy, case.dstates)
    assert all(a.dtype == np.float32 for a in g32.arrays().values())
    g64 = vjp_tuple(w32.astype("float64"), case.x, None, case.dy, case.dstates)
    for name, arr in g32.arrays().items():
        np.testing.assert_allclose(arr, g64.arrays()[name], rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("padding", [None, "lengths", "mask"])
def test_the_recorded_forward_is_the_reference(padding: str | None) -> None:
    case = make_case(
        "lstm",
        "2layer-bidir",
        lengths=np.array([3, 1]) if padding == "lengths" else None,
        mask=HOLES if padding == "mask" else None,
    )
    mask = None if case.padding is None else case.padding.mask
    output = "zero" if case.padding is None else case.padding.masked_output
    bias, step = step_function(case.weights, 0, 1)
    proj = case.x @ case.weights[0, 1].w_ih + bias
    carry = (case.h0[0][1], case.h0[1][1])
    want = scan(step, proj, carry, True, mask, output)
    got = _forward_scan(step, proj, carry, True, mask, output)
    np.testing.assert_array_equal(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        np.testing.assert_array_equal(g, w)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "field", "value", "words"),
    [
        ("gru", "dy", np.zeros((2, 3, 2)), r"dy has shape \(2, 3, 2\); expected \(2, 3, 4\)"),
        ("gru", "dy", np.zeros((2, 3)), r"expected \(2, 3, 4\)"),
        ("gru", "dh_n", np.zeros((2, 2, 2)), r"dh_n has shape \(2, 2, 2\); expected \(4, 2, 2\)"),
        ("lstm", "dh_n", np.zeros((4, 2, 2)), r"a pair \(dh_n, dc_n\)"),
        ("lstm", "dh_n", (np.zeros((4, 2, 2)), np.zeros((4, 2))), r"dc_n has shape \(4, 2\)"),
    ],
)
def test_bad_cotangents_are_clear_errors(cell: str, field: str, value: Any, words: str) -> None:
    case = make_case(cell, "2layer-bidir")
    with pytest.raises(rb.ShapeError, match="Hint:") as info:
        reference_vjp(case.weights, case.x, **{field: value})
    assert info.match(words)


def test_bad_input_is_a_clear_error() -> None:
    case = make_case("gru", "2layer-bidir")
    with pytest.raises(rb.ShapeError, match="Hint:"):
        reference_vjp(case.weights, case.x[:, :, :1])
    with pytest.raises(rb.ShapeError, match="Hint:"):
        reference_vjp(case.weights, case.x, np.zeros((4, 2, 3)))


# --- torch autograd -----------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [None, [3, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_match_torch_autograd(cell: str, lengths: list[int] | None) -> None:
    torch = pytest.importorskip("torch")
    case = make_case(
        cell, "2layer-bidir", seed=4, lengths=None if lengths is None else np.array(lengths)
    )
    spec = case.weights.spec
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=True,
        batch_first=True,
        dtype=torch.float64,
    )
    module.load_state_dict({k: torch.from_numpy(v) for k, v in case.weights.to_torch().items()})
    x = torch.tensor(case.x, requires_grad=True)
    h0 = tuple(torch.tensor(h, requires_grad=True) for h in case.h0)
    inputs: Any = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
    y, hn = module(inputs, h0 if cell == "lstm" else h0[0])
    if lengths is not None:
        y = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0]
    finals = hn if cell == "lstm" else (hn,)
    loss = (y * torch.from_numpy(case.dy)).sum()
    for s, ds in zip(finals, case.dstates):
        loss = loss + (s * torch.from_numpy(ds)).sum()
    loss.backward()

    # from_torch only transposes and reorders gate blocks, a permutation of the entries, so it
    # maps torch's gradients onto the canonical arrays' gradients too: check it moved values only.
    torch_grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    want = rb.RNNWeights.from_torch(torch_grads, spec=spec).arrays()
    np.testing.assert_array_equal(
        np.sort(np.concatenate([a.ravel() for a in torch_grads.values()])),
        np.sort(np.concatenate([a.ravel() for a in want.values()])),
    )
    want["dx"] = x.grad.numpy()
    for name, h in zip(spec.state_names, h0):
        want[f"d{name}0"] = h.grad.numpy()
    got = vjp_of(case).arrays()
    assert set(got) == set(want)
    for name, arr in got.items():
        np.testing.assert_allclose(arr, want[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.fixture(autouse=True, scope="module")
def report_worst_errors() -> Any:
    """Prints the worst finite-difference error of every case at the end (seen with -s)."""
    yield
    for label, err in sorted(WORST.items()):
        print(f"{label:40s} {err:.1e}")
