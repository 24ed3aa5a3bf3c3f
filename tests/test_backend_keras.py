"""The Keras 3 backends (keras on TensorFlow, keras-jax, keras-torch), each in its own worker
process: every cell against the float64 reference, full and padded batches (lengths and masks,
through Keras' masks), gradients by each backend's own autodiff against the float64 BPTT, which
Keras kernel ran the recurrence, which Keras backend ran, and what each refuses and why. Cells
come from the session's ``cells`` cache, so each worker starts once and its cells are reused."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from reference_cases import (
    CASES,
    CELL_CASES,
    cast_state,
    check_case,
    check_grad_arrays,
    grad_cotangents,
    make_case,
)
from rnnbench.backends.keras_backend import KERNELS

import rnnbench as rb
from rnnbench.gradients import reference_vjp
from rnnbench.padding import as_written, check_padding, lengths_mask, random_mask
from rnnbench.process import pooled_worker

KERAS_BACKENDS = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}
# The default variant: Keras' own predict() compiles (jit_compile="auto"); keras-torch has no
# usable jit (see keras_backend.KerasTorchCell._check_variant).
DEFAULT_VARIANT = {"keras": "jit", "keras-jax": "jit", "keras-torch": "eager"}
# float64: the case with the most states of each gated cell (two layers, two directions, h0).
FLOAT64_CASES = ["lstm-2layer-bidir-h0c0", "gru-2layer-bidir-h0", "gru-before-2layer-bidir-h0"]

# The kernel Keras 3.15 runs on a CPU, per backend and cell (keys: spec.cell_label). An LSTM or
# GRU is first offered to its backend's fused function: without a GPU, TensorFlow's (cuDNN only)
# and JAX's LSTM decline, and every backend declines the reset-before GRU, so Keras' generic
# loop runs them; keras-jax runs the reset-after GRU in its own lax.scan, keras-torch the LSTM
# and the reset-after GRU in a loop with the input projection done once, up front.
GENERIC = {
    "keras": "Keras' generic step loop (tf.while_loop)",
    "keras-jax": "Keras' generic step loop (lax.scan)",
    "keras-torch": "Keras' generic step loop (Python loop over steps)",
}
CPU_KERNELS = {
    ("keras-jax", "gru"): "fused GRU lax.scan, input projection hoisted (backend.gru)",
    ("keras-torch", "lstm"): "fused LSTM Python loop, input projection hoisted (backend.lstm)",
    ("keras-torch", "gru"): "fused GRU Python loop, input projection hoisted (backend.gru)",
}


NVIDIA_GPU = os.path.exists("/dev/nvidia0")


def expected_kernel(name: str, spec: rb.RNNSpec) -> str:
    return CPU_KERNELS.get((name, spec.cell_label), GENERIC[name])


@pytest.fixture(scope="module", autouse=True)
def _start_workers_together(cells: Any) -> Iterator[None]:
    """Start the three Keras workers at once (each import takes seconds, mostly single-core);
    a backend that cannot start is left for its tests to skip or fail on."""

    def start(name: str) -> None:
        # pytest's skip outcome is a BaseException; the backend's own tests report it.
        with contextlib.suppress(BaseException):
            cells.get(name, "float32", variant=DEFAULT_VARIANT[name])

    threads = [threading.Thread(target=start, args=(name,)) for name in KERAS_BACKENDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    yield


def run_case(cell: Any, name: str, case: str, dtype: str) -> None:
    spec = CASES[case][0]
    _, _, found = check_case(cell, *CASES[case])
    # A wrong gate order, Bidirectional weight order or state split is an O(1) error, not
    # rounding; check_case has already held it to the project's tolerance.
    assert found["max_abs"] < (1e-12 if dtype == "float64" else 1e-5), found["max_abs"]
    info = cell.info()
    assert f"recurrence: {' + '.join(info['kernels'])};" in info["path"]
    if NVIDIA_GPU:
        # Keras' own GPU checks do not look at the cell's device: a CPU cell may be offered
        # cuDNN here. Only check that a known kernel was recorded.
        assert set(info["kernels"]) <= {label for _, _, label in KERNELS[KERAS_BACKENDS[name]]}
        assert info["kernels"], case
    else:
        assert info["kernels"] == [expected_kernel(name, spec)], (case, info["kernels"])


def runs_of(case: str) -> dict[str, list[tuple[str, str]]]:
    """(dtype, variant) runs of ``case`` per Keras backend: every case in float32 on each
    backend's default variant; TensorFlow also in float64 (eager, so that both of its variants
    run the gated cells); keras-jax also eager once, on the case with the most states to route."""
    runs = {name: [("float32", DEFAULT_VARIANT[name])] for name in KERAS_BACKENDS}
    if case in FLOAT64_CASES:
        runs["keras"].append(("float64", "eager"))
    if case == "lstm-2layer-bidir-h0c0":
        runs["keras-jax"].append(("float32", "eager"))
    return runs


def run_concurrently(jobs: dict[str, Callable[[], None]]) -> None:
    """Run each backend's job in a thread of its own, so that the worker processes compute at
    the same time. Fails with every backend's failure; skips only when all skipped (a backend
    that is not installed shows as skipped in test_info_reports_the_keras_backend_that_ran)."""
    outcomes: dict[str, BaseException | None] = {}

    def target(name: str, job: Callable[[], None]) -> None:
        try:
            job()
            outcomes[name] = None
        except BaseException as exc:  # pytest's skip is a BaseException too
            outcomes[name] = exc

    threads = [threading.Thread(target=target, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = {
        name: exc
        for name, exc in outcomes.items()
        if exc is not None and not isinstance(exc, pytest.skip.Exception)
    }
    if failed:
        report = "\n".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed.items())
        raise AssertionError(report) from next(iter(failed.values()))
    if all(isinstance(exc, pytest.skip.Exception) for exc in outcomes.values()):
        pytest.skip("; ".join(str(exc) for exc in outcomes.values()))


# The equivalence suite checks every cell in float32 on each backend's default variant; here
# the multi-layer bidirectional case of each cell, for what only this file checks: the kernel
# each Keras backend really ran, float64 on TensorFlow, and keras-jax's eager variant.
@pytest.mark.parametrize("case", [names[-1] for names in CELL_CASES.values()])
def test_every_cell(cells: Any, case: str) -> None:
    def job(name: str, runs: list[tuple[str, str]]) -> Callable[[], None]:
        def run() -> None:
            for dtype, variant in runs:
                try:
                    run_case(cells.get(name, dtype, variant=variant), name, case, dtype)
                except AssertionError as exc:
                    raise AssertionError(f"{dtype} {variant}: {exc}") from exc

        return run

    run_concurrently({name: job(name, runs) for name, runs in runs_of(case).items()})


# Padded batches: one shape for all of them (Keras compiles per model and input shape). The
# lengths are unsorted, with a one-step row and a full one; the mask has holes, a masked first
# step (row 0), a masked last step (row 3) and a row with no real step at all (row 2).
PAD_B, PAD_T, PAD_I, PAD_H = 4, 8, 4, 6
PAD_LENGTHS = np.array([8, 5, 1, 7])
PAD_MASK = random_mask(PAD_B, PAD_T, seed=5)
PAD_MASK[2] = False
PAD_CELLS: dict[str, dict[str, Any]] = {
    "rnn": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "gru(reset-before)": {"cell": "gru", "reset_after": False},
}
# The padded checks run where they are cheapest: TensorFlow eager in float64 (no XLA compile per
# model, and the tight tolerance), keras-jax on its jit (its eager scan recompiles every call),
# keras-torch eager; TensorFlow's jit runs padded batches in the reloading test.
PAD_RUNS = {
    "keras": ("float64", "eager"),
    "keras-jax": ("float32", "jit"),
    "keras-torch": ("float32", "eager"),
}


def padded_specs(cell: str) -> list[rb.RNNSpec]:
    """Two bidirectional layers and one layer one way, both run from an initial state."""
    fields = PAD_CELLS[cell]
    return [
        rb.RNNSpec(PAD_I, PAD_H, num_layers=2, bidirectional=True, **fields),
        rb.RNNSpec(PAD_I, PAD_H, **fields),
    ]


def expected_mask_output(name: str, spec: rb.RNNSpec) -> str:
    # Bidirectional forces zeros; keras-jax's default would write h0 before a row's first real
    # step, so its mask models write zeros (backends/keras_backend.py).
    return "zero" if spec.bidirectional or name == "keras-jax" else "repeat"


def check_padded(cell: Any, name: str, spec: rb.RNNSpec, dtype: str) -> None:
    """``spec`` on ragged lengths and on the mask with holes, against the reference through
    ``compare`` (which checks masked steps against what the cell says it writes); outputs past
    a length are exactly zero, and the kernel log says Keras' generic loop ran (a mask makes its
    fused functions decline)."""
    weights, x, h0 = make_case(spec, PAD_B, PAD_T, True)
    for padding in ({"lengths": PAD_LENGTHS}, {"mask": PAD_MASK}):
        result = rb.compare(
            weights, x, h0, [name], dtypes=[dtype], cells={(name, dtype): cell}, **padding
        )
        result.assert_close()
        row = result.rows[0]
        assert row.status == "pass", result.table()
        if dtype == "float64":
            assert row.max_abs < 1e-12, result.table()
        written = "zero" if "lengths" in padding else expected_mask_output(name, spec)
        assert row.masked_output == written
        assert cell.info()["mask_output"] == expected_mask_output(name, spec)
        kernels = cell.info()["kernels"]
        if NVIDIA_GPU:
            assert set(kernels) <= {label for _, _, label in KERNELS[KERAS_BACKENDS[name]]}
        else:
            assert kernels == [GENERIC[name]], (spec.describe(), padding.keys(), kernels)
        if "lengths" in padding:
            y, _ = cell.forward(x.astype(dtype), cast_state(h0, dtype), **padding)
            assert np.all(y[~lengths_mask(PAD_LENGTHS, PAD_T)] == 0.0), spec.describe()


@pytest.mark.parametrize("cell", list(PAD_CELLS))
def test_padded_batches(cells: Any, cell: str) -> None:
    def job(name: str) -> Callable[[], None]:
        def run() -> None:
            dtype, variant = PAD_RUNS[name]
            keras_cell = cells.get(name, dtype, variant=variant)
            for spec in padded_specs(cell):
                check_padded(keras_cell, name, spec, dtype)

        return run

    run_concurrently({name: job(name) for name in KERAS_BACKENDS})


# --- gradients (vjp) -----------------------------------------------------------------------
# Each backend's autodiff through the forward pass's own model and mask (see keras_backend):
# tf.GradientTape, jax.vjp of stateless_call, torch autograd. The padded shapes and models above
# are reused; test_equivalence.py::test_gradients runs every backend's default (jit) variant.
BACKWARD = {
    "keras": "tf.GradientTape",
    "keras-jax": "jax.vjp of model.stateless_call",
    "keras-torch": "torch.autograd.grad",
}


def check_vjp(
    cell: Any, name: str, spec: rb.RNNSpec, dtype: str, padding: dict[str, Any], kernel: str
) -> None:
    """The cell's vjp of ``spec`` (from an initial state, seeded cotangents of y and the final
    state) against the float64 BPTT on every canonical array: dx, dh0 (dc0), and each layer's
    and direction's weights mapped back by from_keras; then the autodiff and the recurrence
    kernel it went through. A cell that writes zeros at the masked steps of a mask, where the
    reference repeats, has the reference's gradients of dy with those steps zeroed."""
    weights, x, h0 = make_case(spec, PAD_B, PAD_T, True)
    dy, dh_n = grad_cotangents(spec, PAD_B, PAD_T)
    if "mask" in padding and cell.info()["mask_output"] == "zero":
        dy = np.where(padding["mask"][:, :, None], dy, 0.0)
    cell.load(weights.astype(dtype))
    got = cell.vjp(
        x.astype(dtype), cast_state(h0, dtype), dy.astype(dtype), cast_state(dh_n, dtype), **padding
    )
    want = reference_vjp(weights, x, h0, dy, dh_n, **padding)
    check_grad_arrays(got.arrays(), want.arrays(), dtype, zero_ok=not spec.bias)
    info = cell.info()
    assert BACKWARD[name] in info["backward_path"], info["backward_path"]
    if not NVIDIA_GPU:
        assert info["backward_kernels"] == [kernel], (spec.describe(), info["backward_kernels"])
        assert f"recurrence: {kernel}" in info["backward_path"]


# Where the gradients run: TensorFlow eager in float64 (the tight tolerance, no XLA compile of a
# gradient per model), keras-torch (eager, cheap) in float32 beside it; keras-jax's jit in
# test_vjp_of_the_jit_variants_runs_the_weights_loaded_last.
VJP_RUNS = {"keras": ("float64", "eager"), "keras-torch": ("float32", "eager")}


@pytest.mark.parametrize("cell", list(PAD_CELLS))
def test_vjp_matches_the_float64_bptt(cells: Any, cell: str) -> None:
    """Two bidirectional layers from an initial state on ragged lengths: every layer's and
    direction's gradients, through Keras' mask in its generic loop."""
    spec = padded_specs(cell)[0]

    def job(name: str) -> Callable[[], None]:
        def run() -> None:
            dtype, variant = VJP_RUNS[name]
            keras_cell = cells.get(name, dtype, variant=variant)
            check_vjp(keras_cell, name, spec, dtype, {"lengths": PAD_LENGTHS}, GENERIC[name])

        return run

    run_concurrently({name: job(name) for name in VJP_RUNS})


def test_vjp_without_biases_and_of_fused_kernels(cells: Any) -> None:
    """A spec without biases (Keras holds no bias variable: the canonical bias gradients are
    zeros) on the mask with holes, where a unidirectional layer repeats its previous output on
    TensorFlow and torch; and keras-torch's fused LSTM and GRU loops on full batches, which
    autograd differentiates as they ran."""

    def tensorflow() -> None:
        spec = rb.RNNSpec(PAD_I, PAD_H, cell="lstm", bias=False)
        keras_cell = cells.get("keras", "float64", variant="eager")
        check_vjp(keras_cell, "keras", spec, "float64", {"mask": PAD_MASK}, GENERIC["keras"])

    def torch() -> None:
        keras_cell = cells.get("keras-torch", "float32", variant="eager")
        for cell in ("lstm", "gru"):
            spec = padded_specs(cell)[1]
            kernel = expected_kernel("keras-torch", spec)
            check_vjp(keras_cell, "keras-torch", spec, "float32", {}, kernel)
        spec = rb.RNNSpec(PAD_I, PAD_H, cell="gru", bias=False)
        mask = {"mask": PAD_MASK}
        check_vjp(keras_cell, "keras-torch", spec, "float32", mask, GENERIC["keras-torch"])

    run_concurrently({"keras": tensorflow, "keras-torch": torch})


def test_kernel_log_is_kept_per_model(cells: Any) -> None:
    """A jitted function that runs without tracing reports what its own model ran when traced:
    keras-jax runs a full batch of the reset-after GRU in its fused scan and a padded one in its
    generic loop, whichever ran last."""
    if NVIDIA_GPU:
        pytest.skip("on a GPU the fused kernel Keras picks is its own choice")
    cell = cells.get("keras-jax", "float32", variant="jit")
    spec = padded_specs("gru")[1]
    weights, x, _ = make_case(spec, PAD_B, PAD_T, False)
    cell.load(weights.astype("float32"))
    xs = x.astype(np.float32)
    fused = expected_kernel("keras-jax", spec)
    for padding in ({}, {"lengths": PAD_LENGTHS}, {}, {"mask": PAD_MASK}, {}):
        cell.forward(xs, **padding)
        assert cell.info()["kernels"] == [GENERIC["keras-jax"] if padding else fused], padding


def test_stacked_unidirectional_lstm_with_h0_c0(cells: Any) -> None:
    # Three unidirectional layers: each reads its own rows of h0 and c0. One Keras backend
    # suffices, since the model is built by one function for all of them.
    spec = rb.RNNSpec(4, 6, num_layers=3, cell="lstm")
    cell = cells.get("keras", "float64", variant="eager")
    _, _, found = check_case(cell, spec, batch=3, steps=9, with_h0=True)
    assert found["max_abs"] < 1e-12


@pytest.mark.parametrize("name", ["keras", "keras-jax"])
def test_reloading_weights_of_the_same_spec_runs_the_new_ones(cells: Any, name: str) -> None:
    """The jit variants keep their compiled functions across loads of one spec: each must run
    on the weights loaded last, never on the ones it was traced with. That holds for the models
    of padded batches too, built after the first load; this is also the padded check of
    TensorFlow's XLA function (keras-jax's run on its jit in test_padded_batches)."""
    spec = rb.RNNSpec(3, 4, cell="gru")
    cell = cells.get(name, "float32", variant="jit")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    lengths, mask = np.array([5, 2]), np.array([[0, 1, 1, 0, 1], [1, 1, 0, 1, 0]], bool)
    outputs: list[list[np.ndarray]] = []
    for seed in (1, 2):
        weights = rb.RNNWeights.random(spec, seed=seed)
        cell.load(weights)
        outputs.append([])
        for padding in ({}, {"lengths": lengths}, {"mask": mask}):
            y, _ = cell.forward(x, **padding)
            ref, _ = rb.reference_forward(weights, x, **padding)
            if "mask" in padding:  # the reference repeats; a cell may write zeros instead
                checked = check_padding(None, mask, 2, 5)
                ref = as_written(ref, checked, cell.info()["mask_output"])
            np.testing.assert_allclose(y, ref, atol=1e-5)
            outputs[-1].append(y)
            if padding and not NVIDIA_GPU:
                assert cell.info()["kernels"] == [GENERIC[name]]
        assert np.all(outputs[-1][1][~lengths_mask(lengths, 5)] == 0.0)
    for first, second in zip(*outputs):
        assert np.abs(first - second).max() > 1e-2


@pytest.mark.parametrize("name", ["keras", "keras-jax"])
def test_vjp_of_the_jit_variants_runs_the_weights_loaded_last(cells: Any, name: str) -> None:
    """The jit variants compile forward+backward once per model and shape (TensorFlow's
    GradientTape in XLA, jax.vjp in jax.jit) and keep it across loads of one spec: the
    gradients are those of the weights loaded last. The shapes and models are the reloading
    test's (a reset-after GRU on ragged lengths)."""
    spec = rb.RNNSpec(3, 4, cell="gru")
    cell = cells.get(name, "float32", variant="jit")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    lengths = np.array([5, 2])
    dy, dh_n = grad_cotangents(spec, 2, 5)
    found = []
    for seed in (1, 2):
        weights = rb.RNNWeights.random(spec, seed=seed, dtype="float64")
        cell.load(weights.astype("float32"))
        got = cell.vjp(x.astype(np.float32), None, dy, dh_n, lengths=lengths).arrays()
        want = reference_vjp(weights, x, None, dy, dh_n, lengths=lengths).arrays()
        check_grad_arrays(got, want, "float32")
        found.append(got)
    assert np.abs(found[0]["l0.forward.w_hh"] - found[1]["l0.forward.w_hh"]).max() > 1e-2
    info = cell.info()
    assert "jit" in info["backward_path"] and BACKWARD[name] in info["backward_path"]
    if not NVIDIA_GPU:  # recorded when traced, reported for the run that did not trace
        assert info["backward_kernels"] == [GENERIC[name]]


@pytest.mark.parametrize("name", list(KERAS_BACKENDS))
def test_info_reports_the_keras_backend_that_ran(cells: Any, name: str) -> None:
    info = cells.get(name, "float32", variant=DEFAULT_VARIANT[name]).info()
    assert info["backend"] == name
    assert info["keras_backend"] == KERAS_BACKENDS[name]
    assert info["variant"] == DEFAULT_VARIANT[name]
    assert info["path"].startswith(f"keras {KERAS_BACKENDS[name]} {DEFAULT_VARIANT[name]}")
    assert info["process"] == "worker"
    assert info["padding"] == ["lengths", "mask"]
    assert info["versions"]["keras"] and info["versions"][KERAS_BACKENDS[name]]


def test_tensorflow_sync_is_a_host_copy(cells: Any) -> None:
    assert ".numpy() host copy" in cells.get("keras", "float32", variant="jit").info()["path"]


@pytest.mark.parametrize("name", ["keras-jax", "keras-torch"])
def test_float64_refused_with_the_reason(cells: Any, name: str) -> None:
    cells.get(name, "float32", variant=DEFAULT_VARIANT[name])  # skips when unavailable
    with pytest.raises(rb.BackendUnavailableError, match="promotes float64 to float32"):
        rb.get_backend(name, dtype="float64")


def test_keras_torch_jit_refused_with_the_reason(cells: Any) -> None:
    cells.get("keras-torch", "float32", variant="eager")
    with pytest.raises(rb.BackendUnavailableError, match="torch.compile"):
        rb.get_backend("keras-torch", variant="jit")


@pytest.mark.parametrize("name", ["keras-jax", "keras-torch"])
def test_cuda_runs_or_is_a_clear_error(cells: Any, name: str) -> None:
    cells.get(name, "float32", variant=DEFAULT_VARIANT[name])
    try:
        cell = rb.get_backend(name, device="cuda")
    except rb.BackendUnavailableError as exc:  # no GPU here: the message must say so
        assert "no GPU" in str(exc) or "no CUDA device" in str(exc)
        assert name in str(exc)
        return
    for case in ("relu-2layer-bidir-h0", "lstm-2layer-bidir-h0c0", "gru-2layer-bidir-h0"):
        check_case(cell, *CASES[case])
    check_padded(cell, name, padded_specs("lstm")[0], "float32")  # cuDNN declines a mask
    assert cell.info()["device"] == "cuda"


def test_keras_tensorflow_has_no_cuda_device() -> None:
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras not installed")
    with pytest.raises(rb.BackendUnavailableError, match="no device 'cuda'"):
        rb.get_backend("keras", device="cuda")


@pytest.mark.parametrize("name", ["keras", "keras-jax"])
def test_a_jit_run_is_one_call_of_the_compiled_function(cells: Any, name: str) -> None:
    """What keeps the jit variants' overhead near zero (benchmarks/overhead.py): a run is one
    call of the model's compiled function, whose output is the result as it is (the states
    stacked inside it, nothing restacked after), and a run that does not trace enters no
    scope; an input prepared without initial states carries x alone (the compiled function
    makes the zeros); JAX's matmul precision is baked in when it traces. An LSTM: two states."""
    cells.get(name, "float32", variant="jit")  # skips when unavailable; starts the worker
    worker = pooled_worker(rb.backend_info(name))
    got, _ = worker.call("benchmarks.overhead:run_structure", backend=name, cell_kind="lstm")
    assert got["calls"] == 2, got  # the run that traced, then the one checked
    assert got["result_is_compiled_output"], got
    assert not got["scope_entered"], got
    assert got["prepared_tensors"] == 1, got
    assert got["result_shapes"] == [[2, 4, 3], [1, 2, 3], [1, 2, 3]], got
    assert got["max_abs_error"] < 1e-5, got
    assert got["all_dots_highest"] is (True if name == "keras-jax" else None), got
    if not NVIDIA_GPU:
        assert got["kernels"] == [GENERIC[name]], got
