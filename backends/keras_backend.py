"""The Keras 3 backend: ``SimpleRNN``, ``LSTM`` or ``GRU`` layers
(``Bidirectional(merge_mode="concat")`` for two directions) in a functional model, on whichever
backend Keras was imported with.

Keras reads ``KERAS_BACKEND`` once, at import, so the three registered backends ("keras" on
TensorFlow, "keras-jax", "keras-torch") are ``isolated``: each runs in a worker process whose
environment names its Keras backend. ``KerasCell`` builds the cell class of the Keras backend
that is running and refuses to start when that is not the one ``KERAS_BACKEND`` asks for.

Variants: ``eager`` calls the model (op by op; Keras' own scan or loop inside); ``jit`` is what
Keras does for ``model.compile(jit_compile=True)``, written against the backend so that inputs
and outputs stay on the device: ``tf.function(jit_compile=True)`` (XLA), ``jax.jit`` over
``model.stateless_call``; on torch, where Keras would use ``torch.compile``, no usable jit
exists (see ``KerasTorchCell._check_variant``). Keras computes float64 only on TensorFlow.

Which kernel runs the recurrence is Keras' choice, made per layer at call time: an LSTM or GRU
layer first offers the whole sequence to its backend's fused function (``backend.lstm``,
``backend.gru``, ``backend.bidirectional_lstm`` / ``_gru``), which either runs it (cuDNN on a GPU;
on keras-torch a loop with the input projection hoisted out of it; on keras-jax a ``lax.scan``
for the reset-after GRU) or raises ``NotImplementedError``, and then Keras runs its generic step
loop (``backend.rnn``). keras-torch also drops from cuDNN to its CPU loop on any exception,
silently. Since nothing tells the caller which one ran, :func:`install_kernel_log` wraps those
functions and records the ones that returned; ``path()`` and ``info()["kernels"]`` report them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendRuntimeError, BackendUnavailableError
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

# Keras backend -> rnnbench backend name (as registered in rnnbench/registry.py).
REGISTERED_NAMES = {"tensorflow": "keras", "jax": "keras-jax", "torch": "keras-torch"}


def _import_keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'keras' cannot import keras: {exc}", "pip install 'rnnbench[keras]'"
        ) from exc
    return keras


def running_keras_backend() -> str:
    """The Keras backend of this process, checked against ``KERAS_BACKEND``."""
    keras = _import_keras()
    running = str(keras.backend.backend())
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted is not None and wanted != running:
        raise BackendUnavailableError(
            f"KERAS_BACKEND={wanted!r} but Keras in this process runs on {running!r} (Keras "
            "reads KERAS_BACKEND once, when it is first imported)",
            f"use rnnbench.get_backend({REGISTERED_NAMES.get(wanted, 'keras')!r}) without "
            "isolate=False: it starts a worker process with the right environment",
        )
    if running not in REGISTERED_NAMES:
        raise BackendUnavailableError(
            f"Keras runs on {running!r}, which rnnbench has no backend for",
            f"set KERAS_BACKEND to one of {', '.join(REGISTERED_NAMES)}",
        )
    return running


_LAYER_KINDS = {"rnn": "simple_rnn", "lstm": "lstm", "gru": "gru"}


def layer_names(spec: RNNSpec) -> list[str]:
    """The names :func:`build_model` gives its layers, one per stacked layer."""
    prefix = "bidirectional" if spec.bidirectional else _LAYER_KINDS[spec.cell]
    return [f"{prefix}_{k}" for k in range(spec.num_layers)]


def _recurrent_layer(keras: Any, spec: RNNSpec, dtype: str, name: str) -> Any:
    common: dict[str, Any] = {
        "use_bias": spec.bias,
        "return_sequences": True,
        "return_state": True,
        "dtype": dtype,
        "name": name,
    }
    if spec.cell == "lstm":
        # Default activations (tanh, sigmoid gates), which are the formula rnnbench computes.
        return keras.layers.LSTM(spec.hidden_size, **common)
    if spec.cell == "gru":
        return keras.layers.GRU(spec.hidden_size, reset_after=spec.reset_after, **common)
    return keras.layers.SimpleRNN(spec.hidden_size, activation=spec.nonlinearity, **common)


def build_model(keras: Any, spec: RNNSpec, dtype: str) -> Any:
    """A functional model. Inputs: x, then one input per initial state array in torch's
    (layers*dirs) order: h0_0, h0_1, ..., and for an LSTM c0_0, c0_1, ... after them. Outputs:
    y, h_n and (LSTM) c_n, each state stacked in torch's (layers*dirs, batch, hidden) order.
    Stacked layers read the previous layer's whole output, so with two directions layer k > 0
    reads both, as in torch.nn.RNN / LSTM / GRU."""
    x = keras.Input((None, spec.input_size), dtype=dtype, name="x")
    n_states = spec.num_layers * spec.num_directions
    initial = [
        [keras.Input((spec.hidden_size,), dtype=dtype, name=f"{s}0_{i}") for i in range(n_states)]
        for s in spec.state_names
    ]
    y = x
    finals: list[list[Any]] = [[] for _ in spec.state_names]  # state j, per layer & direction
    for k, name in enumerate(layer_names(spec)):
        if spec.bidirectional:
            inner = _recurrent_layer(keras, spec, dtype, f"{_LAYER_KINDS[spec.cell]}_{k}")
            layer = keras.layers.Bidirectional(inner, merge_mode="concat", dtype=dtype, name=name)
        else:
            layer = _recurrent_layer(keras, spec, dtype, name)
        # Keras takes a layer's states as a list, [h] or [h, c] (LSTM); Bidirectional takes the
        # forward layer's list then the backward layer's, and returns its states the same way.
        rows = [k * spec.num_directions + d for d in range(spec.num_directions)]
        out = layer(y, initial_state=[states[r] for r in rows for states in initial])
        y, returned = out[0], list(out[1:])
        for d in range(spec.num_directions):
            for j, s in enumerate(returned[d * len(initial) : (d + 1) * len(initial)]):
                finals[j].append(s)
    stacked = [keras.ops.stack(f, axis=0) for f in finals]
    flat_inputs = [h for states in initial for h in states]
    return keras.Model([x, *flat_inputs], [y, *stacked], name=f"rnnbench_{spec.cell}")


# The functions through which Keras 3 runs a recurrent layer, per Keras backend, and what each
# one is when it returns (a fused one that cannot take the layer raises NotImplementedError and
# Keras goes on to the next). Layers look them up on the module at call time, so wrapping the
# module attribute sees every call. keras-torch's backend.lstm / gru are not listed: they return
# from cuDNN or from their CPU loop, and only the inner function says which.
KERNELS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "tensorflow": (
        ("keras.src.backend", "rnn", "Keras' generic step loop (tf.while_loop)"),
        ("keras.src.backend", "lstm", "cuDNN LSTM (backend.lstm)"),
        ("keras.src.backend", "gru", "cuDNN GRU (backend.gru)"),
    ),
    "jax": (
        ("keras.src.backend", "rnn", "Keras' generic step loop (lax.scan)"),
        ("keras.src.backend", "lstm", "cuDNN LSTM (jax.experimental.rnn.lstm)"),
        (
            "keras.src.backend",
            "bidirectional_lstm",
            "cuDNN bidirectional LSTM (jax.experimental.rnn.lstm)",
        ),
        ("keras.src.backend", "gru", "fused GRU lax.scan, input projection hoisted (backend.gru)"),
    ),
    "torch": (
        ("keras.src.backend", "rnn", "Keras' generic step loop (Python loop over steps)"),
        ("keras.src.backend.torch.rnn", "_cudnn_lstm", "cuDNN LSTM (torch._VF.lstm)"),
        (
            "keras.src.backend.torch.rnn",
            "_fallback_lstm",
            "fused LSTM Python loop, input projection hoisted (backend.lstm)",
        ),
        ("keras.src.backend.torch.rnn", "_cudnn_gru", "cuDNN GRU (torch._VF.gru)"),
        (
            "keras.src.backend.torch.rnn",
            "_fallback_gru",
            "fused GRU Python loop, input projection hoisted (backend.gru)",
        ),
        ("keras.src.backend", "bidirectional_lstm", "cuDNN bidirectional LSTM (torch._VF.lstm)"),
        ("keras.src.backend", "bidirectional_gru", "cuDNN bidirectional GRU (torch._VF.gru)"),
    ),
}
_installed: set[str] = set()
_recording: list[str] | None = None


def install_kernel_log(keras_backend: str) -> None:
    """Wrap this process's Keras recurrence functions (once) so that :func:`recording` can tell
    which ran. The wrappers only call through; behaviour is unchanged. A function or module
    missing from another Keras version is left out (its path then shows as not recorded).

    Keras chooses between cuDNN and its loops inside private code and, on torch, falls back
    silently; observing the call is the only way to report the path that really ran rather than
    the one the settings suggest. This runs in the backend's own worker process only."""
    if keras_backend in _installed:
        return
    for module_name, attr, label in KERNELS[keras_backend]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # another Keras version laid its modules out otherwise
            continue
        original = getattr(module, attr, None)
        if callable(original):
            setattr(module, attr, _recorded(original, label))
    _installed.add(keras_backend)


def _recorded(fn: Any, label: str) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if _recording is not None:
            _recording.append(label)
        return out

    return call


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """The labels of the kernels that return inside the block (once per layer and direction;
    under a jit only while it traces)."""
    global _recording
    previous, _recording = _recording, []
    try:
        yield _recording
    finally:
        _recording = previous


class KerasCell(BaseCell):
    """Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU``; ``KerasCell(...)`` gives the subclass of the
    running Keras backend (``KerasTensorFlowCell``, ``KerasJaxCell`` or ``KerasTorchCell``)."""

    name: ClassVar[str] = "keras"
    distribution = "keras"
    keras_backend: ClassVar[str] = "tensorflow"
    variants = ("eager", "jit")

    def __new__(cls, *args: Any, **kwargs: Any) -> KerasCell:
        if cls is KerasCell:
            cls = _CELL_CLASSES[running_keras_backend()]
        return super().__new__(cls)

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device, dtype, variant)
        running = running_keras_backend()
        if running != self.keras_backend:  # a subclass built by hand in the wrong process
            raise BackendUnavailableError(
                f"backend {self.name!r} needs Keras on {self.keras_backend!r}; this process "
                f"runs Keras on {running!r}",
                f"use rnnbench.get_backend({self.name!r})",
            )
        self._keras = _import_keras()
        if self.dtype == np.float64 and self._keras.backend.result_type("float64") != "float64":
            # Keras 3 promotes float64 to float32 on every backend but TensorFlow (its dtype
            # lattice follows JAX without x64): ops.matmul then computes a float64 layer in
            # float32 on torch, and lax.scan rejects the mixed carry on jax.
            raise BackendUnavailableError(
                f"backend {self.name!r} cannot compute in float64: Keras "
                f"{self._keras.__version__} on {running} promotes float64 to float32 "
                "(keras.backend.result_type('float64') is "
                f"{self._keras.backend.result_type('float64')!r})",
                "use dtype float32, or the 'keras' backend (TensorFlow) for float64",
            )
        self._check_device()
        self._check_variant()
        install_kernel_log(self.keras_backend)
        self._model: Any = None
        self._fn: Any = None
        self._kernels: list[str] | None = None  # what the last traced or eager call ran

    # --- per-backend hooks ---------------------------------------------------------------
    def _check_device(self) -> None:
        """Raise BackendUnavailableError when ``self.device`` is not present."""

    def _check_variant(self) -> None:
        """Raise BackendUnavailableError when ``self.variant`` cannot run on this backend."""

    def _extra_scope(self, stack: contextlib.ExitStack) -> None:
        """Enter backend settings that must hold while building, loading and running."""

    def _compile(self, model: Any) -> Any:
        """The ``jit`` variant's function of the input list, returning the model's outputs."""
        raise NotImplementedError

    def _call(self, inputs: list[Any]) -> Any:
        if self.variant == "eager":
            return self._model(inputs, training=False)
        if self._fn is None:
            self._fn = self._compile(self._model)
        return self._fn(inputs)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        keras_device = "cpu" if self.device == "cpu" else "gpu:0"
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._keras.device(keras_device))
            self._extra_scope(stack)
            yield

    # --- the cell ------------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        keras = self._keras
        spec = weights.spec
        with self._scope():
            if self._model is None or spec != self._spec:
                self._model = build_model(keras, spec, str(self.dtype))
                self._fn = None
                self._kernels = None
            per_layer = weights.to_keras()
            per_layer = per_layer if spec.num_layers > 1 else [per_layer]
            for name, arrays in zip(layer_names(spec), per_layer):
                # Bidirectional.get_weights() is the forward layer's, then the backward's:
                # the order to_keras() gives (checked by tests/test_backend_keras.py).
                layer = self._model.get_layer(name)
                layer.set_weights([np.asarray(a, self.dtype) for a in arrays])
            # New values for the same model keep the compiled function: it reads the
            # variables (TensorFlow) or takes their values as arguments (JAX), so reloading
            # weights of the same spec recompiles nothing.
            self._weights_loaded()

    def _weights_loaded(self) -> None:
        """Hook: the model's variables have new values."""

    def prepare(self, x: np.ndarray, h0: Any = None) -> Any:
        xs, states = self.check_inputs(x, h0)
        if states is None:
            states = self.zeros_state(xs.shape[0])
        # The model's inputs: x, then each state array split per layer and direction.
        flat = [xs, *(s[i] for s in states for i in range(s.shape[0]))]
        ops = self._keras.ops
        with self._scope():
            return [ops.convert_to_tensor(a, dtype=str(self.dtype)) for a in flat]

    def run(self, prepared: Any) -> Any:
        with self._scope(), recording() as ran:
            out = self._call(prepared)
        if ran:  # nothing is recorded when a compiled function runs without tracing
            self._kernels = list(dict.fromkeys(ran))
        return out

    def fetch(self, result: Any) -> tuple[np.ndarray, Any]:
        with self._scope():
            y, *states = (np.asarray(self._keras.ops.convert_to_numpy(t)) for t in result)
        if any(a.dtype != self.dtype for a in (y, *states)):
            raise BackendRuntimeError(
                f"backend {self.name!r} computed in {y.dtype}, not the requested {self.dtype}",
                "a float64 Keras layer needs its backend's 64-bit mode",
            )
        return y, self.public_state(states)

    def path(self) -> str:
        how, sync = self._path_detail()
        return (
            f"keras {self.keras_backend} {self.variant}: {how}; recurrence: "
            f"{self.kernels_text()}; synchronized by {sync}"
        )

    def kernels_text(self) -> str:
        if self._kernels is None:
            return "not run yet"
        return " + ".join(self._kernels) if self._kernels else "not recorded"

    def _path_detail(self) -> tuple[str, str]:
        """(how the variant calls the model, how ``synchronize`` waits)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["keras_backend"] = str(self._keras.backend.backend())
        out["kernels"] = list(self._kernels or [])
        out["versions"] = {
            "keras": self._keras.__version__,
            self.keras_backend: _module_version(self.keras_backend),
        }
        return out


def _module_version(module: str) -> str | None:
    with contextlib.suppress(ImportError):
        return str(__import__(module).__version__)
    return None


class KerasTensorFlowCell(KerasCell):
    name = "keras"
    keras_backend = "tensorflow"
    devices = ("cpu",)
    # Keras' own predict() compiles (jit_compile="auto"): that is the path its users run, so
    # it is the default; "eager" calls the layers op by op.
    variants = ("jit", "eager")

    def _compile(self, model: Any) -> Any:
        import tensorflow as tf

        return tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)

    def synchronize(self, result: Any) -> None:
        # TensorFlow has no "wait for this tensor": a host copy is the only way.
        for t in result:
            t.numpy()

    def _path_detail(self) -> tuple[str, str]:
        how = "model call" if self.variant == "eager" else "tf.function(jit_compile=True) (XLA)"
        return how, "a .numpy() host copy (TF's only way)"


class KerasJaxCell(KerasCell):
    name = "keras-jax"
    keras_backend = "jax"
    devices = ("cpu", "cuda")
    # Keras' own predict() compiles (jit_compile="auto"): that is the path its users run, so
    # it is the default; "eager" calls the layers op by op.
    variants = ("jit", "eager")

    def _check_device(self) -> None:
        if self.device == "cuda":
            import jax

            try:
                jax.devices("gpu")
            except RuntimeError as exc:
                raise BackendUnavailableError(
                    f"backend {self.name!r}: JAX sees no GPU ({exc})",
                    "install jax[cuda12] on a machine with an NVIDIA GPU, or use device='cpu'",
                ) from exc

    def _extra_scope(self, stack: contextlib.ExitStack) -> None:
        import jax

        # Scoped (thread-local) switches, not process-wide ones: float64 needs JAX's 64-bit
        # mode, and float32 matrix products must not drop to TF32 on GPUs.
        # (The precision switch is for float32 alone: under it, JAX computes a float64 dot in
        # float32, seen with jax 0.10.)
        if self.dtype == np.float64:
            stack.enter_context(jax.enable_x64(True))
        else:
            stack.enter_context(jax.default_matmul_precision("highest"))

    def _weights_loaded(self) -> None:
        # stateless_call takes the variables' values as arguments: keep the current ones, so
        # the jitted function (traced once per input shape) runs on them.
        model = self._model
        self._values = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )

    def _compile(self, model: Any) -> Any:
        import jax

        @jax.jit
        def forward(tv: Any, ntv: Any, inputs: Any) -> Any:
            outputs, _ = model.stateless_call(tv, ntv, inputs, training=False)
            return outputs

        return lambda inputs: forward(*self._values, inputs)

    def synchronize(self, result: Any) -> None:
        import jax

        jax.block_until_ready(result)

    def _path_detail(self) -> tuple[str, str]:
        how = "model call" if self.variant == "eager" else "jax.jit(model.stateless_call) (XLA)"
        precision = "matmul precision highest" if self.dtype == np.float32 else "x64 mode"
        return f"{how}; {precision}", "block_until_ready"


class KerasTorchCell(KerasCell):
    name = "keras-torch"
    keras_backend = "torch"
    devices = ("cpu", "cuda")

    def _check_device(self) -> None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend {self.name!r}: torch sees no CUDA device",
                "install a CUDA build of torch on a machine with an NVIDIA GPU, or use "
                "device='cpu'",
            )

    def _extra_scope(self, stack: contextlib.ExitStack) -> None:
        import torch

        stack.enter_context(torch.no_grad())  # inference, as Keras' predict does

    def _check_variant(self) -> None:
        if self.variant == "jit":
            # What model.compile(jit_compile=True) does on torch is torch.compile; measured with
            # keras 3.15 / torch 2.13 on a 1-layer H=5 RNN of T=7: Dynamo unrolls Keras' Python
            # loop over the steps, took 124 s to compile, then hit its recompile limit and fell
            # back to eager without saying so. That is no compiled path to measure.
            raise BackendUnavailableError(
                f"backend {self.name!r} has no usable 'jit' variant: torch.compile (what Keras "
                "uses for jit_compile=True on torch) unrolls Keras' per-step Python loop, takes "
                "minutes for a few steps and silently falls back to eager at its recompile limit",
                "use variant 'eager' for keras-torch, or the 'torch' backend for compiled torch",
            )

    def _compile(self, model: Any) -> Any:
        raise NotImplementedError  # unreachable: _check_variant refuses 'jit'

    def synchronize(self, result: Any) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def _path_detail(self) -> tuple[str, str]:
        sync = "torch.cuda.synchronize" if self.device == "cuda" else "none needed on cpu"
        return "model call under torch.no_grad", sync


_CELL_CLASSES: dict[str, type[KerasCell]] = {
    "tensorflow": KerasTensorFlowCell,
    "jax": KerasJaxCell,
    "torch": KerasTorchCell,
}
