"""Padded batches in the core: the checks on lengths and masks, and the reference's semantics,
proved against running each row's real steps alone."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import rnnbench as rb
from rnnbench import padding as pad
from rnnbench.reference import reference_forward
from rnnbench.state import as_tuple

CELLS = {
    "rnn": {"cell": "rnn"},
    "relu": {"cell": "rnn", "nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru", "reset_after": True},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
}


def spec_of(cell: str, layers: int = 2, bidirectional: bool = True) -> rb.RNNSpec:
    return rb.RNNSpec(3, 4, num_layers=layers, bidirectional=bidirectional, **CELLS[cell])  # type: ignore[arg-type]


def random_state(spec: rb.RNNSpec, batch: int, rng: np.random.Generator) -> object:
    shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
    parts = tuple(rng.uniform(-1, 1, shape) for _ in spec.state_names)
    return parts if spec.cell == "lstm" else parts[0]


def row_state(state: object, spec: rb.RNNSpec, b: int) -> object:
    parts = tuple(s[:, b : b + 1] for s in as_tuple(spec, state))
    return parts if spec.cell == "lstm" else parts[0]


# --- the checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "error", "words"),
    [
        ([3, 2], rb.ShapeError, "expected (3,)"),
        ([3, 0, 2], rb.ShapeError, "at least one real step"),
        ([3, -1, 2], rb.ShapeError, "at least one real step"),
        ([3, 6, 2], rb.ShapeError, "longer than x's 5 time steps"),
        (np.array([3.0, 2.0, 1.0]), rb.DTypeError, "whole numbers, but a float dtype"),
        (np.array([2.5, 2.0, 1.0]), rb.DTypeError, "integers"),
        (np.array([True, True, True]), rb.DTypeError, "integers"),
        ([[3, 2, 1]], rb.ShapeError, "one length per row"),
    ],
)
def test_bad_lengths_are_clear_errors(lengths: object, error: type, words: str) -> None:
    with pytest.raises(error, match="Hint:") as info:
        pad.check_padding(lengths, None, 3, 5)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("mask", "error", "words"),
    [
        (np.ones((3, 4), bool), rb.ShapeError, "expected (batch, time) = (3, 5)"),
        (np.ones((3, 5, 1), bool), rb.ShapeError, "per-feature mask"),
        (np.ones((3, 5), np.int64), rb.DTypeError, "boolean"),
        (np.ones((3, 5), np.float32), rb.DTypeError, "pass lengths"),
    ],
)
def test_bad_masks_are_clear_errors(mask: object, error: type, words: str) -> None:
    with pytest.raises(error, match="Hint:") as info:
        pad.check_padding(None, mask, 3, 5)
    assert words in str(info.value)


def test_lengths_and_mask_together_are_refused() -> None:
    with pytest.raises(rb.ShapeError, match="padded one way"):
        pad.check_padding([1, 2, 3], np.ones((3, 5), bool), 3, 5)


def test_lengths_become_a_right_padded_mask() -> None:
    checked = pad.check_padding([2, 5, 1], None, 3, 5)
    assert checked is not None and checked.kind == "lengths"
    assert checked.masked_output == "zero"
    assert checked.mask.tolist() == [
        [True, True, False, False, False],
        [True] * 5,
        [True, False, False, False, False],
    ]
    assert checked.lengths is not None and checked.lengths.dtype == np.int64


def test_random_lengths_and_masks_are_repeatable_and_in_range() -> None:
    lengths = pad.random_lengths(64, 40, 20, 40, seed=3)
    assert lengths[0] == 40 and lengths.min() >= 20 and lengths.max() <= 40
    assert (lengths == pad.random_lengths(64, 40, 20, 40, seed=3)).all()
    mask = pad.random_mask(16, 9, seed=2)
    assert mask.any(axis=1).all()  # no empty row
    assert not mask[0, 0] and not mask[-1, -1]  # a masked first and last step somewhere
    assert (mask == pad.random_mask(16, 9, seed=2)).all()


# --- the reference's semantics --------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("with_h0", [False, True], ids=["zeros", "h0"])
def test_lengths_equal_each_row_run_alone(cell: str, with_h0: bool) -> None:
    """A ragged batch gives, for every row, what that row's real steps give alone: the reverse
    direction starts at the row's own last step, padded outputs are zero, and the final state
    is the one after the last real step (two bidirectional layers, so layer 2 reads layer 1's
    ragged output)."""
    spec = spec_of(cell)
    w = rb.RNNWeights.random(spec, seed=7, dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 3))
    h0 = random_state(spec, 4, rng) if with_h0 else None
    lengths = np.array([6, 1, 4, 3])
    y, h_n = reference_forward(w, x, h0, lengths=lengths)
    for b, length in enumerate(lengths):
        alone, alone_h = reference_forward(
            w, x[b : b + 1, :length], None if h0 is None else row_state(h0, spec, b)
        )
        np.testing.assert_allclose(y[b, :length], alone[0], rtol=1e-12, atol=1e-14)
        assert (y[b, length:] == 0).all()
        for got, want in zip(as_tuple(spec, h_n), as_tuple(spec, alone_h)):
            np.testing.assert_allclose(got[:, b], want[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_mask_with_holes_is_the_real_steps_run_alone(cell: str) -> None:
    """Keras' semantics: a masked step carries the state, so the real steps of a row compute
    what they compute with the holes squeezed out; a masked output repeats the previous output
    of its direction (in processing order), zeros before the first real one."""
    spec = spec_of(cell)
    w = rb.RNNWeights.random(spec, seed=8, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 3))
    h0 = random_state(spec, 3, rng)
    mask = np.array(
        [
            [False, True, True, False, True, False, False],  # leading and trailing holes
            [True, False, False, True, True, True, True],
            [False, False, False, True, False, False, False],  # one real step
        ]
    )
    y, h_n = reference_forward(w, x, h0, mask=mask)
    hidden = spec.hidden_size
    for b in range(3):
        real = np.nonzero(mask[b])[0]
        alone, alone_h = reference_forward(w, x[b : b + 1, real], row_state(h0, spec, b))
        np.testing.assert_allclose(y[b, real], alone[0], rtol=1e-12, atol=1e-14)
        for got, want in zip(as_tuple(spec, h_n), as_tuple(spec, alone_h)):
            np.testing.assert_allclose(got[:, b], want[:, 0], rtol=1e-12, atol=1e-14)
        for t in np.nonzero(~mask[b])[0]:
            before, after = real[real < t], real[real > t]
            fwd = y[b, before[-1], :hidden] if before.size else np.zeros(hidden)
            bwd = y[b, after[0], hidden:] if after.size else np.zeros(hidden)
            np.testing.assert_array_equal(y[b, t], np.concatenate([fwd, bwd]))


def test_an_empty_mask_row_keeps_its_initial_state() -> None:
    spec = spec_of("lstm", layers=1, bidirectional=False)
    w = rb.RNNWeights.random(spec, seed=9, dtype="float64")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3))
    h0 = random_state(spec, 2, rng)
    mask = np.array([[True] * 4, [False] * 4])
    y, (h, c) = reference_forward(w, x, h0, mask=mask)
    assert (y[1] == 0).all()
    np.testing.assert_array_equal(h[:, 1], h0[0][:, 1])  # type: ignore[index]
    np.testing.assert_array_equal(c[:, 1], h0[1][:, 1])  # type: ignore[index]


def test_full_lengths_change_nothing() -> None:
    spec = spec_of("gru")
    w = rb.RNNWeights.random(spec, seed=10, dtype="float64")
    x = np.random.default_rng(3).standard_normal((3, 5, 3))
    y, h = reference_forward(w, x)
    y_l, h_l = reference_forward(w, x, lengths=[5, 5, 5])
    y_m, h_m = reference_forward(w, x, mask=np.ones((3, 5), bool))
    for got in (y_l, y_m):
        np.testing.assert_array_equal(got, y)
    for got in (h_l, h_m):
        np.testing.assert_array_equal(got, h)


def test_zero_written_outputs_are_the_canonical_ones_masked() -> None:
    mask = np.array([[True, False, True]])
    padding = pad.check_padding(None, mask, 1, 3)
    y = np.arange(6.0).reshape(1, 3, 2) + 1
    assert pad.as_written(y, padding, "repeat") is y
    np.testing.assert_array_equal(pad.as_written(y, padding, "zero")[0, 1], [0.0, 0.0])
    np.testing.assert_array_equal(pad.as_written(y, padding, "zero")[0, 2], y[0, 2])


# --- compare and the command line -----------------------------------------------------------


def test_compare_catches_a_backend_that_ignores_the_lengths() -> None:
    """The check can fail: outputs that run through the padding (as if every row were full)
    are out of tolerance past the shortest length."""

    class IgnoresLengths(rb.BaseCell):
        name = "ignores-lengths"
        takes_lengths = True

        def _load(self, weights: rb.RNNWeights) -> None:
            self._w = weights

        def prepare(self, x, h0=None, lengths=None, mask=None):  # type: ignore[no-untyped-def]
            xs, hs = self.check_inputs(x, h0)
            self.check_padding(xs, lengths, mask)
            return xs, hs

        def run(self, prepared):  # type: ignore[no-untyped-def]
            from rnnbench.reference import forward_tuple

            return forward_tuple(self._w, *prepared)

        def fetch(self, result):  # type: ignore[no-untyped-def]
            return result[0], self.public_state(result[1])

    spec = spec_of("rnn", layers=1, bidirectional=False)
    w = rb.RNNWeights.random(spec, seed=11, dtype="float64")
    x = np.random.default_rng(4).standard_normal((2, 6, 3))
    cell = IgnoresLengths(dtype="float64")
    result = rb.compare(
        w,
        x,
        None,
        ["numpy"],
        dtypes=["float64"],
        cells={("numpy", "float64"): cell},
        lengths=[6, 3],
    )
    row = result.rows[0]
    assert row.status == "fail" and row.first_bad_step == 3
    assert rb.compare(w, x, None, ["numpy"], dtypes=["float64"], lengths=[6, 3]).passed


def test_check_command_runs_lengths_and_masks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "check.json"
    cmd = [sys.executable, "-m", "rnnbench", "check", "--backends", "numpy", "--seq-len", "12"]
    done = subprocess.run(
        [*cmd, "--cell", "lstm", "--bidirectional", "--lengths", "3:12", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"lengths \d+\.\.12 ", done.stdout) and "padded steps" in done.stdout
    check = json.loads(out.read_text())["checks"][0]
    assert check["padding"]["kind"] == "lengths" and len(check["padding"]["lengths"]) == 4
    done = subprocess.run([*cmd, "--mask", "random"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "mask (" in done.stdout, done.stderr
    done = subprocess.run([*cmd, "--lengths", "5:20"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "longer than --seq-len 12" in done.stderr
