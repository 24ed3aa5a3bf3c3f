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
A jit run is one call of the compiled function on the prepared tensors, whose outputs are the
result: what a run needs besides the model (zero initial states, the states stacked in torch's
order, the matmul precision, the kernel log) is traced into that function, so the adapter adds
next to nothing to what Keras' own compiled call costs (``benchmarks/overhead.py`` measures it).

Which kernel runs the recurrence is Keras' choice, made per layer at call time: an LSTM or GRU
layer first offers the whole sequence to its backend's fused function (``backend.lstm``,
``backend.gru``, ``backend.bidirectional_lstm`` / ``_gru``), which either runs it (cuDNN on a GPU;
on keras-torch a loop with the input projection hoisted out of it; on keras-jax a ``lax.scan``
for the reset-after GRU) or raises ``NotImplementedError``, and then Keras runs its generic step
loop (``backend.rnn``). keras-torch also drops from cuDNN to its CPU loop on any exception,
silently. Since nothing tells the caller which one ran, :func:`install_kernel_log` wraps those
functions and records the ones that returned; ``path()`` and ``info()["kernels"]`` report them.

Padded batches go through Keras' own mechanism, its mask: the model of a padded batch takes one
more input, a boolean (batch, time) mask, passed as ``mask=`` to every recurrent layer (Keras has
no lengths argument; ``lengths`` become the mask ``t < L``). A masked step carries the state
through; what a layer writes there is its ``zero_output_for_mask``:

- ``lengths``: zeros past each length, the canonical result, so the layers of the lengths model
  are built with ``zero_output_for_mask=True``.
- ``mask``: Keras' defaults. A ``Bidirectional`` layer writes zeros (its ``__init__`` forces
  ``zero_output_for_mask = return_sequences`` on both of its layers); a unidirectional layer
  repeats the previous output (``zero_output_for_mask=False``) on TensorFlow and torch. On JAX
  that default writes the layer's *state* at a masked step (``states[0]`` in Keras' ``lax.scan``
  loop): the previous output after the first real step, but the initial state ``h0``, not
  zeros, before it, which is neither rule a cell can declare. keras-jax therefore builds its
  mask models with ``zero_output_for_mask=True`` and writes zeros at every masked step.
  ``mask_output()`` says which ("zero" or "repeat"), and ``compare`` checks masked steps
  against it.

So a spec has up to three models (full batch, zeros at masked steps, repeats at masked steps;
a bidirectional spec's lengths and mask share the zero one); each is built when first needed,
gets the weights loaded last, and keeps its compiled function across loads of one spec. A mask
makes Keras' fused LSTM/GRU functions decline (``NotImplementedError``), so on a CPU padded
batches run Keras' generic loop; the kernel log records, per model, what really ran. A mask row
with no real step is taken on all three backends: the row's outputs are zeros and its final
state is the initial one.

Gradients (``vjp``) are each Keras backend's own autodiff through the same model, padding and
mask as the forward pass: ``tf.GradientTape`` (inside ``tf.function(jit_compile=True)`` for the
jit variant), ``jax.vjp`` of ``model.stateless_call`` (jitted for the jit variant), and on torch
``torch.autograd.grad`` of the model called with autograd on (the forward pass runs under
``torch.no_grad``). They are taken with respect to x, every initial state array (zeros when none
is given) and each layer's ``weights`` in the order ``set_weights`` assigns them, then read back
into the canonical layout through ``from_keras``: Keras' one bias is both canonical biases
(``one_bias_grads``), a reset-after GRU keeps its two, and a spec without biases gets zero bias
gradients. Which kernels the differentiated forward pass ran is recorded like the forward's
(``info()["backward_kernels"]``, ``info()["backward_path"]``). On TensorFlow the XLA compile of
the gradient costs about twice the forward's, per model and input shape.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendRuntimeError, BackendUnavailableError
from rnnbench.gradients import Grads, one_bias_grads
from rnnbench.padding import MASKED_OUTPUTS, Padding
from rnnbench.spec import RNNSpec
from rnnbench.state import State
from rnnbench.weights import RNNWeights

# Keras backend -> rnnbench backend name (as registered in rnnbench/registry.py).
REGISTERED_NAMES = {"tensorflow": "keras", "jax": "keras-jax", "torch": "keras-torch"}
# How many specs' models (and their compiled functions) a cell keeps besides the loaded one,
# and how many weights they may hold in all (each model has its own variables): small specs,
# as a test suite goes through, are all kept; a few large ones are not held for nothing.
SPECS_KEPT = 64
PARAMETERS_KEPT = 2**24


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


def _recurrent_layer(
    keras: Any, spec: RNNSpec, dtype: str, name: str, zero_output_for_mask: bool = False
) -> Any:
    common: dict[str, Any] = {
        "use_bias": spec.bias,
        "return_sequences": True,
        "return_state": True,
        "zero_output_for_mask": zero_output_for_mask,
        # Every model gets its weights from load() before it runs: Keras' default initializers
        # (an orthogonal one draws and QR-factors a matrix, compiled per new shape on JAX) would
        # only cost time, seconds per model on keras-jax.
        "kernel_initializer": "zeros",
        "recurrent_initializer": "zeros",
        "bias_initializer": "zeros",
        "dtype": dtype,
        "name": name,
    }
    if spec.cell == "lstm":
        # Default activations (tanh, sigmoid gates), which are the formula rnnbench computes.
        return keras.layers.LSTM(spec.hidden_size, **common)
    if spec.cell == "gru":
        return keras.layers.GRU(spec.hidden_size, reset_after=spec.reset_after, **common)
    return keras.layers.SimpleRNN(spec.hidden_size, activation=spec.nonlinearity, **common)


def build_model(keras: Any, spec: RNNSpec, dtype: str, masked_output: str | None = None) -> Any:
    """A functional model. Inputs: x, then one input per initial state array in torch's
    (layers*dirs) order: h0_0, h0_1, ..., and for an LSTM c0_0, c0_1, ... after them; with
    ``masked_output`` ("zero" or "repeat") one more, the boolean (batch, time) mask of real
    steps, which every recurrent layer takes as ``mask=`` and writes ``masked_output`` at its
    masked steps (``zero_output_for_mask``; a ``Bidirectional`` layer only writes zeros).
    Outputs: y, h_n and (LSTM) c_n, each state stacked in torch's (layers*dirs, batch, hidden)
    order. Stacked layers read the previous layer's whole output, so with two directions layer
    k > 0 reads both, as in torch.nn.RNN / LSTM / GRU."""
    if masked_output is not None and masked_output not in MASKED_OUTPUTS:
        raise ValueError(f"masked_output must be one of {MASKED_OUTPUTS}, not {masked_output!r}")
    if spec.bidirectional and masked_output == "repeat":
        raise ValueError("Keras' Bidirectional writes zeros at masked steps, it cannot repeat")
    zero = masked_output == "zero"
    x = keras.Input((None, spec.input_size), dtype=dtype, name="x")
    n_states = spec.num_layers * spec.num_directions
    initial = [
        [keras.Input((spec.hidden_size,), dtype=dtype, name=f"{s}0_{i}") for i in range(n_states)]
        for s in spec.state_names
    ]
    mask = None if masked_output is None else keras.Input((None,), dtype="bool", name="mask")
    masking = {} if mask is None else {"mask": mask}
    y = x
    finals: list[list[Any]] = [[] for _ in spec.state_names]  # state j, per layer & direction
    for k, name in enumerate(layer_names(spec)):
        if spec.bidirectional:
            inner_name = f"{_LAYER_KINDS[spec.cell]}_{k}"
            inner = _recurrent_layer(keras, spec, dtype, inner_name, zero)
            layer = keras.layers.Bidirectional(inner, merge_mode="concat", dtype=dtype, name=name)
        else:
            layer = _recurrent_layer(keras, spec, dtype, name, zero)
        # Keras takes a layer's states as a list, [h] or [h, c] (LSTM); Bidirectional takes the
        # forward layer's list then the backward layer's, and returns its states the same way.
        rows = [k * spec.num_directions + d for d in range(spec.num_directions)]
        out = layer(y, initial_state=[states[r] for r in rows for states in initial], **masking)
        y, returned = out[0], list(out[1:])
        for d in range(spec.num_directions):
            for j, s in enumerate(returned[d * len(initial) : (d + 1) * len(initial)]):
                finals[j].append(s)
    stacked = [keras.ops.stack(f, axis=0) for f in finals]
    flat_inputs = [h for states in initial for h in states]
    inputs = [x, *flat_inputs, *([] if mask is None else [mask])]
    return keras.Model(inputs, [y, *stacked], name=f"rnnbench_{spec.cell}")


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
# KerasCell._last_key before a run (a model's key may be None).
_NOT_RUN = object()


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
    # Keras' mask is the mechanism for both (see the module docstring); every backend takes a
    # mask row with no real step (zeros out, the initial state as the final one).
    takes_lengths = True
    takes_mask = True
    # The attributes that hold one spec's models and functions (see ``_switch_spec``).
    _PER_SPEC: ClassVar[tuple[str, ...]] = ("_models", "_fns", "_ran", "_vjp_fns", "_vjp_ran")
    computes_gradients = True

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
        # Per spec, one model per kind of batch, keyed by what it writes at masked steps:
        # None (full batches, no mask input), "zero" or "repeat"; built when first needed.
        self._models: dict[str | None, Any] = {}
        self._fns: dict[str | None, Any] = {}  # the jit variant's function of each model
        # The kernels each model ran when last called (eager) or traced (jit), and the key of
        # the model the last run called (_NOT_RUN before one): what the last call ran.
        self._ran: dict[str | None, list[str]] = {}
        self._last_key: str | object | None = _NOT_RUN
        self._layer_weights: list[list[np.ndarray]] = []
        # The vjp's counterparts: the jit variant's forward+backward function of each model,
        # the kernels its forward ran when last traced, and what the last vjp ran.
        self._vjp_fns: dict[str | None, Any] = {}
        self._vjp_ran: dict[str | None, list[str]] = {}
        self._backward_kernels: list[str] | None = None
        # The per-spec dicts above (``_PER_SPEC``) of the specs loaded before, newest last.
        self._kept: collections.OrderedDict[RNNSpec, dict[str, Any]] = collections.OrderedDict()

    # --- per-backend hooks ---------------------------------------------------------------
    def _check_device(self) -> None:
        """Raise BackendUnavailableError when ``self.device`` is not present."""

    def _check_variant(self) -> None:
        """Raise BackendUnavailableError when ``self.variant`` cannot run on this backend."""

    def _extra_scope(self, stack: contextlib.ExitStack, grad: bool = False) -> None:
        """Enter backend settings that must hold while building, loading and running;
        ``grad``: for a vjp, whose forward pass autodiff must see."""

    def _compile(self, key: str | None, model: Any) -> Any:
        """The ``jit`` variant's compiled function of the model of ``key`` (see ``_models``),
        which ``run`` calls on the prepared input list (``_traced`` is its body)."""
        raise NotImplementedError

    def _jit_fn(self, key: str | None) -> Any:
        """The compiled function of the model of ``key``, made when first needed (``prepare``
        makes it, so that ``run`` only looks it up)."""
        if key not in self._fns:
            self._fns[key] = self._compile(key, self._model_for(self.spec, key))
        return self._fns[key]

    def _traced(self, key: str | None, inputs: list[Any], call: Any) -> Any:
        """The body of a compiled function, run when it traces: ``call`` (the model) on the
        model's whole input list, in the cell's scope and with the kernels recorded. Everything
        a run needs besides the model happens here, inside the compiled function, so that a
        run is the one call of it: the zero initial states of an input prepared without them
        are made here, and the scope's settings (JAX's matmul precision; the device, which the
        prepared tensors also carry) are baked into the trace instead of being entered around
        every call."""
        with self._scope(), recording() as ran:
            outputs = call(self._whole_inputs(inputs, key is not None))
        if ran:
            self._ran[key] = list(dict.fromkeys(ran))
        return outputs

    def _whole_inputs(self, inputs: list[Any], masked: bool) -> list[Any]:
        """The model's inputs from a prepared list, given the initial states (all of them) or
        none (zeros): x, every state array, then the mask if ``masked``."""
        n_float = self._n_float_inputs()
        if len(inputs) - masked == n_float:
            return inputs
        x = inputs[0]
        ops = self._keras.ops
        zeros = ops.zeros((ops.shape(x)[0], self.spec.hidden_size), dtype=x.dtype)
        return [x, *([zeros] * (n_float - 1)), *inputs[1:]]

    def _gradient_fn(self, key: str | None, model: Any, n_float: int) -> Any:
        """The function of (inputs, cotangents) that runs ``model`` (the one of ``key``)
        forwards and backwards by the backend's autodiff, for ``self.variant``: the gradients
        of the first ``n_float`` inputs (x and the initial states; not the mask), then of
        ``self._grad_variables(key)``, in that order, on the device."""
        raise NotImplementedError

    def _backward_detail(self) -> str:
        """How the vjp differentiates (for ``info()["backward_path"]``)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _scope(self, grad: bool = False) -> Iterator[None]:
        keras_device = "cpu" if self.device == "cpu" else "gpu:0"
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._keras.device(keras_device))
            self._extra_scope(stack, grad)
            yield

    # --- the cell ------------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        spec = weights.spec
        if spec != self._spec:
            self._switch_spec(spec)
        per_layer = weights.to_keras()
        per_layer = per_layer if spec.num_layers > 1 else [per_layer]
        self._layer_weights = [[np.asarray(a, self.dtype) for a in arrays] for arrays in per_layer]
        # New values for the same models keep their compiled functions: they read the
        # variables (TensorFlow) or take their values as arguments (JAX), so reloading weights
        # of the same spec recompiles nothing.
        for key in self._models:
            self._set_weights(spec, key)
        if None not in self._models:  # the full-batch model: a spec Keras refuses fails here
            self._model_for(spec, None)

    @property
    def _kernels(self) -> list[str] | None:
        """What the last run ran (None before one): a compiled function that runs without
        tracing ran what its model recorded when it was traced, not what another model last
        ran, so each model keeps its own record."""
        if self._last_key is _NOT_RUN:
            return None
        return self._ran.get(self._last_key, [])  # type: ignore[arg-type]

    def _switch_spec(self, spec: RNNSpec) -> None:
        """Put the loaded spec's models and compiled functions aside (the last ``SPECS_KEPT``
        specs, within ``PARAMETERS_KEPT`` weights) and take ``spec``'s back, or none. Going
        back and forth between specs, as a test suite does, then builds and compiles each model
        once: an XLA compile of a forward and backward pass takes seconds."""
        if self._spec is not None:  # None: the last load failed, its models are not kept
            self._kept[self._spec] = {name: getattr(self, name) for name in self._PER_SPEC}
            while len(self._kept) > SPECS_KEPT or (
                sum(s.num_parameters * len(kept["_models"]) for s, kept in self._kept.items())
                > PARAMETERS_KEPT
            ):
                self._kept.popitem(last=False)
        # No weights until this load succeeds: a failure must not leave another spec's models
        # to be built again with this spec's weights.
        self._spec = None
        kept = self._kept.pop(spec, {})
        for name in self._PER_SPEC:
            setattr(self, name, kept.get(name, {}))
        self._last_key, self._backward_kernels = _NOT_RUN, None

    def _model_for(self, spec: RNNSpec, key: str | None) -> Any:
        """The model of ``key`` (see ``_models``), built and given the loaded weights first."""
        if key not in self._models:
            with self._scope():
                self._models[key] = build_model(self._keras, spec, str(self.dtype), key)
            self._set_weights(spec, key)
        return self._models[key]

    def _set_weights(self, spec: RNNSpec, key: str | None) -> None:
        model = self._models[key]
        with self._scope():
            for name, arrays in zip(layer_names(spec), self._layer_weights):
                # Bidirectional.get_weights() is the forward layer's, then the backward's:
                # the order to_keras() gives (checked by tests/test_backend_keras.py).
                model.get_layer(name).set_weights(arrays)
            self._weights_loaded(key, model)

    def _weights_loaded(self, key: str | None, model: Any) -> None:
        """Hook: the variables of the model of ``key`` have new values."""

    def mask_output(self) -> str:
        """Keras' default at a masked step of a mask: zeros from a ``Bidirectional`` layer (it
        forces ``zero_output_for_mask``), the previous output from a unidirectional one
        (keras-jax writes zeros for both, see the module docstring)."""
        return "zero" if self.spec.bidirectional else "repeat"

    def prepare(
        self, x: np.ndarray, h0: State | None = None, lengths: Any = None, mask: Any = None
    ) -> Any:
        xs, states = self.check_inputs(x, h0)
        padding = self.check_padding(xs, lengths, mask)
        if states is None and self.variant == "eager":
            states = self.zeros_state(xs.shape[0])
        prepared = self._model_inputs(xs, states, padding)
        if self.variant == "jit":
            self._jit_fn(prepared[0])  # so that run only looks it up (it traces when first run)
        return prepared

    def _model_inputs(
        self,
        xs: np.ndarray,
        states: tuple[np.ndarray, ...] | None,
        padding: Padding | None,
        grad: bool = False,
    ) -> tuple[str | None, list[Any]]:
        """(the key of the model that takes this batch, its input tensors on the device, made
        in the vjp's scope when ``grad``). Without ``states`` the list has none: the compiled
        function makes the zeros (``_whole_inputs``)."""
        # The model's inputs: x, then each state array split per layer and direction, then
        # for a padded batch its mask (lengths as the mask t < L, Keras' only way to say them).
        flat = [xs, *(s[i] for s in states or () for i in range(s.shape[0]))]
        key: str | None = None
        if padding is not None:
            key = "zero" if padding.kind == "lengths" else self.mask_output()
        self._model_for(self.spec, key)  # built here, not in the timed run
        ops = self._keras.ops
        with self._scope(grad):
            tensors = [ops.convert_to_tensor(a, dtype=str(self.dtype)) for a in flat]
            if padding is not None:
                tensors.append(ops.convert_to_tensor(padding.mask, dtype="bool"))
        return key, self._placed(tensors)

    def _placed(self, tensors: list[Any]) -> list[Any]:
        """Hook: the prepared tensors, made to stay on the cell's device when a run enters no
        device scope."""
        return tensors

    def run(self, prepared: Any) -> Any:
        """eager: the model called in the cell's scope; jit: one call of the model's compiled
        function (``_call_jit``), with nothing else per call: what it ran is the record its
        trace left (``_traced``)."""
        key, inputs = prepared
        if self.variant != "eager":
            self._last_key = key
            return self._call_jit(self._fns.get(key) or self._jit_fn(key), key, inputs)
        with self._scope(), recording() as ran:
            out = self._models[key](inputs, training=False)
        if ran:
            self._ran[key] = list(dict.fromkeys(ran))
        self._last_key = key
        return out

    def _call_jit(self, fn: Any, key: str | None, inputs: list[Any]) -> Any:
        """Hook: one call of the jit variant's compiled function ``fn`` of the model ``key``
        on the prepared ``inputs``."""
        raise NotImplementedError  # a subclass without a jit variant refuses it (_check_variant)

    def fetch(self, result: Any) -> tuple[np.ndarray, Any]:
        with self._scope():
            y, *states = (np.asarray(self._keras.ops.convert_to_numpy(t)) for t in result)
        if any(a.dtype != self.dtype for a in (y, *states)):
            raise BackendRuntimeError(
                f"backend {self.name!r} computed in {y.dtype}, not the requested {self.dtype}",
                "a float64 Keras layer needs its backend's 64-bit mode",
            )
        return y, self.public_state(states)

    # --- gradients -----------------------------------------------------------------------
    def _grad_variables(self, key: str | None) -> list[Any]:
        """The variables of the model of ``key`` whose gradients the vjp takes: per recurrent
        layer, ``layer.weights``, the order ``set_weights`` assigns ``to_keras()``'s list
        (a ``Bidirectional`` layer's forward layer's, then its backward layer's). All of them
        are trainable: Keras' recurrent layers hold no other weights."""
        model = self._models[key]
        found = [v for name in layer_names(self.spec) for v in model.get_layer(name).weights]
        trainable = {id(v) for v in model.trainable_variables}
        frozen = [v.path for v in found if id(v) not in trainable]
        if frozen:
            raise BackendRuntimeError(
                f"backend {self.name!r}: Keras holds the layer weights {frozen} as "
                "non-trainable, so its autodiff would not differentiate them",
                "report this with the Keras version: rnnbench builds its layers trainable",
            )
        return found

    def _n_float_inputs(self) -> int:
        """x and the initial state arrays, split per layer and direction (the model's
        inputs before the mask)."""
        spec = self.spec
        return 1 + len(spec.state_names) * spec.num_layers * spec.num_directions

    def _prepare_vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Any:
        # The same model, inputs and mask as the forward pass, made in the vjp's scope; the
        # cotangents are those of the model's outputs, y then each final state stacked
        # (layers*dirs, batch, hidden).
        key, inputs = self._model_inputs(x, h0, padding, grad=True)
        ops = self._keras.ops
        with self._scope(grad=True):
            cotangents = [ops.convert_to_tensor(c, dtype=str(self.dtype)) for c in (dy, *dstates)]
            inputs = self._grad_inputs(inputs)
        return key, inputs, cotangents

    def _grad_inputs(self, inputs: list[Any]) -> list[Any]:
        """Hook: the input tensors made ready for the backend's autodiff."""
        return inputs

    def run_vjp(self, prepared: Any) -> Any:
        """The model's forward pass and its backward pass by the backend's autodiff, left on
        the device: a flat list of tensors (the gradients of x, of each initial state array,
        then of each layer's weights), which ``synchronize`` waits for."""
        key, inputs, cotangents = prepared
        with self._scope(grad=True), recording() as ran:
            if key not in self._vjp_fns:
                self._vjp_fns[key] = self._gradient_fn(
                    key, self._models[key], self._n_float_inputs()
                )
            grads = list(self._vjp_fns[key](inputs, cotangents))
        if ran:  # as in run(): a compiled function records only while it traces
            self._vjp_ran[key] = list(dict.fromkeys(ran))
        self._backward_kernels = self._vjp_ran.get(key, [])
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            raise BackendRuntimeError(
                f"backend {self.name!r}: Keras' {self.keras_backend} autodiff gave no gradient "
                f"for sources {missing} (x, the initial states, then the layer weights)",
                "every input and weight reaches the outputs; report this with the versions",
            )
        return grads

    def fetch_vjp(self, result: Any) -> Grads:
        spec = self.spec
        with self._scope():
            arrays = [np.asarray(self._keras.ops.convert_to_numpy(t)) for t in result]
        wrong = {str(a.dtype) for a in arrays if a.dtype != self.dtype}
        if wrong:
            raise BackendRuntimeError(
                f"backend {self.name!r} computed gradients in {', '.join(sorted(wrong))}, not "
                f"the requested {self.dtype}",
                "a float64 Keras layer needs its backend's 64-bit mode",
            )
        n_float = self._n_float_inputs()
        rows = spec.num_layers * spec.num_directions  # arrays per state, state-major
        dstates = tuple(
            np.stack(arrays[1 + j * rows : 1 + (j + 1) * rows])
            for j in range(len(spec.state_names))
        )
        # Per layer the list set_weights takes (2 or 3 arrays per direction), read back by the
        # converter weights take; Keras' one bias is both canonical biases (one_bias_grads).
        per_direction = 3 if spec.bias else 2
        per_layer = per_direction * spec.num_directions
        lists = [
            arrays[n_float + k * per_layer : n_float + (k + 1) * per_layer]
            for k in range(spec.num_layers)
        ]
        weights = one_bias_grads(
            RNNWeights.from_keras(
                lists if spec.num_layers > 1 else lists[0],
                nonlinearity=spec.nonlinearity,
                bidirectional=spec.bidirectional,
                cell=spec.cell,
                reset_after=spec.reset_after,
            )
        ).astype(self.dtype)
        return Grads(dx=arrays[0], dh0=self.public_state(dstates), weights=weights)

    def backward_path(self) -> str | None:
        """What the last vjp ran (None before one): the autodiff and the recurrence kernels
        its forward pass ran, which it differentiated."""
        if self._backward_kernels is None:
            return None
        kernels = " + ".join(self._backward_kernels) or "not recorded"
        return f"keras {self.keras_backend} {self.variant}: {self._backward_detail()}; " + (
            f"recurrence: {kernels}"
        )

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
        out["backward_path"] = self.backward_path()
        out["backward_kernels"] = list(self._backward_kernels or [])
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

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device, dtype, variant)
        # A call placed by no device scope goes to a GPU when TensorFlow sees one: then the jit
        # run enters the cell's device scope; where the CPU is the only device it is a no-op.
        self._call_scope: Any = None
        if self.variant == "jit":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                self._call_scope = functools.partial(tf.device, "/CPU:0")

    def _compile(self, key: str | None, model: Any) -> Any:
        import tensorflow as tf

        # The tensors are separate arguments: a tf.function takes a list argument about as
        # much slower as a run of a small model lasts in all (tens of microseconds, seen with
        # TF 2.21), since it walks the list to find the trace; a lone tensor is its fast case.
        def forward(*inputs: Any) -> Any:
            return self._traced(key, list(inputs), lambda whole: model(whole, training=False))

        return tf.function(forward, jit_compile=True)

    def _call_jit(self, fn: Any, key: str | None, inputs: list[Any]) -> Any:
        # the tensors as separate arguments (see _compile), in a device scope only on a
        # machine where TensorFlow would otherwise place them on a GPU
        if self._call_scope is None:
            return fn(*inputs)
        with self._call_scope():
            return fn(*inputs)

    def _gradient_fn(self, key: str | None, model: Any, n_float: int) -> Any:
        import tensorflow as tf

        # The tf.Variables the layers read (Keras' variables wrap them).
        variables = [v.value for v in self._grad_variables(key)]

        def gradients(inputs: list[Any], cotangents: list[Any]) -> Any:
            watched = inputs[:n_float]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(watched)
                tape.watch(variables)
                outputs = model(inputs, training=False)
            return tape.gradient(outputs, [*watched, *variables], output_gradients=cotangents)

        if self.variant == "eager":
            return gradients
        return tf.function(gradients, jit_compile=True)

    def synchronize(self, result: Any) -> None:
        # TensorFlow has no "wait for this tensor": a host copy is the only way. (A forward
        # result and a vjp result are both flat sequences of tensors.)
        for t in result:
            t.numpy()

    def _path_detail(self) -> tuple[str, str]:
        how = "model call" if self.variant == "eager" else "tf.function(jit_compile=True) (XLA)"
        return how, "a .numpy() host copy (TF's only way)"

    def _backward_detail(self) -> str:
        if self.variant == "eager":
            return "tf.GradientTape around the model call, op by op"
        return "tf.GradientTape in tf.function(jit_compile=True) (XLA)"


class KerasJaxCell(KerasCell):
    name = "keras-jax"
    keras_backend = "jax"
    devices = ("cpu", "cuda")
    # Keras' own predict() compiles (jit_compile="auto"): that is the path its users run, so
    # it is the default; "eager" calls the layers op by op.
    variants = ("jit", "eager")
    _PER_SPEC = (*KerasCell._PER_SPEC, "_values")

    def __init__(self, device: str = "cpu", dtype: Any = "float32", variant: str | None = None):
        super().__init__(device, dtype, variant)
        # Per model (see KerasCell._models): the variables' values its jitted function takes.
        self._values: dict[str | None, tuple[list[Any], list[Any]]] = {}

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

    def _extra_scope(self, stack: contextlib.ExitStack, grad: bool = False) -> None:
        import jax

        # Scoped (thread-local) switches, not process-wide ones: float64 needs JAX's 64-bit
        # mode, and float32 matrix products must not drop to TF32 on GPUs.
        # (The precision switch is for float32 alone: under it, JAX computes a float64 dot in
        # float32, seen with jax 0.10.)
        if self.dtype == np.float64:
            stack.enter_context(jax.enable_x64(True))
        else:
            stack.enter_context(jax.default_matmul_precision("highest"))

    def mask_output(self) -> str:
        # Keras' default on JAX writes the initial state, not zeros, at masked steps before a
        # row's first real one (module docstring): the mask models write zeros instead.
        return "zero"

    def _jax_device(self) -> Any:
        import jax

        return jax.devices("gpu" if self.device == "cuda" else "cpu")[0]

    def _placed(self, tensors: list[Any]) -> list[Any]:
        # Committed to the cell's device: a jitted function runs where its committed arguments
        # are, so the jit run needs no device scope (an array made under jax.default_device
        # is uncommitted, and would follow JAX's default device, a GPU where there is one).
        import jax

        return list(jax.device_put(tensors, self._jax_device()))

    def _weights_loaded(self, key: str | None, model: Any) -> None:
        import jax

        # stateless_call takes the variables' values as arguments: keep each model's current
        # ones, so its jitted function (traced once per input shape) runs on them; committed
        # to the cell's device, as the inputs are (_placed).
        self._values[key] = jax.device_put(
            (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            ),
            self._jax_device(),
        )

    def _compile(self, key: str | None, model: Any) -> Any:
        import jax

        # The cell's scope (float32 matmul precision "highest") is entered while tracing
        # (_traced): JAX resolves the precision of each dot when it is traced, so it is baked
        # into the compiled function, and the jit's cache key (which holds the precision in
        # force at the call) is the same at every run.
        def forward(values: Any, inputs: Any) -> Any:
            def call(whole: list[Any]) -> Any:
                outputs, _ = model.stateless_call(*values, whole, training=False)
                return outputs

            return self._traced(key, inputs, call)

        return jax.jit(forward)

    def _call_jit(self, fn: Any, key: str | None, inputs: list[Any]) -> Any:
        # the variables' current values go in as arguments (stateless_call)
        return fn(self._values[key], inputs)

    def _gradient_fn(self, key: str | None, model: Any, n_float: int) -> Any:
        import jax

        # stateless_call takes the values in model.trainable_variables' order; the gradients
        # come back in _grad_variables' order (per layer, as set_weights assigns them).
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        order = [position[id(v)] for v in self._grad_variables(key)]

        def gradients(tv: Any, ntv: Any, floats: Any, rest: Any, cotangents: Any) -> Any:
            def forward(tv: Any, floats: Any) -> Any:
                outputs, _ = model.stateless_call(tv, ntv, [*floats, *rest], training=False)
                return outputs

            _, pullback = jax.vjp(forward, tv, floats)
            d_tv, d_floats = pullback(list(cotangents))
            return [*d_floats, *(d_tv[i] for i in order)]

        fn = jax.jit(gradients) if self.variant == "jit" else gradients
        return lambda inputs, cotangents: fn(
            *self._values[key], inputs[:n_float], inputs[n_float:], cotangents
        )

    def synchronize(self, result: Any) -> None:
        import jax

        jax.block_until_ready(result)

    def _path_detail(self) -> tuple[str, str]:
        how = "model call" if self.variant == "eager" else "jax.jit(model.stateless_call) (XLA)"
        precision = "matmul precision highest" if self.dtype == np.float32 else "x64 mode"
        return f"{how}; {precision}", "block_until_ready"

    def _backward_detail(self) -> str:
        if self.variant == "eager":
            return "jax.vjp of model.stateless_call, op by op"
        return "jax.vjp of model.stateless_call in jax.jit (XLA)"


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

    def _extra_scope(self, stack: contextlib.ExitStack, grad: bool = False) -> None:
        import torch

        # Never inference mode, even inside a caller's: the models' variables and the inputs
        # made here must also serve a vjp, and autograd cannot use inference tensors.
        stack.enter_context(torch.inference_mode(False))
        if grad:
            stack.enter_context(torch.enable_grad())
        else:
            stack.enter_context(torch.no_grad())  # inference, as Keras' predict does

    def _grad_inputs(self, inputs: list[Any]) -> list[Any]:
        # x and the initial states become leaves that require grad; the mask stays as it is.
        n_float = self._n_float_inputs()
        return [t.requires_grad_(True) for t in inputs[:n_float]] + inputs[n_float:]

    def _gradient_fn(self, key: str | None, model: Any, n_float: int) -> Any:
        import torch

        # Keras' torch variables hold a torch Parameter each (what the layers read).
        variables = self._grad_variables(key)
        params = [v.value for v in variables]
        frozen = [v.path for v, p in zip(variables, params) if not p.requires_grad]
        if frozen:
            raise BackendRuntimeError(
                f"backend {self.name!r}: the torch Parameters of {frozen} do not require grad",
                "report this with the Keras version: rnnbench builds its layers trainable",
            )

        def gradients(inputs: list[Any], cotangents: list[Any]) -> Any:
            outputs = model(inputs, training=False)
            return torch.autograd.grad(outputs, [*inputs[:n_float], *params], cotangents)

        return gradients

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

    def _compile(self, key: str | None, model: Any) -> Any:
        raise NotImplementedError  # unreachable: _check_variant refuses 'jit'

    def synchronize(self, result: Any) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def _path_detail(self) -> tuple[str, str]:
        sync = "torch.cuda.synchronize" if self.device == "cuda" else "none needed on cpu"
        return "model call under torch.no_grad", sync

    def _backward_detail(self) -> str:
        return "torch.autograd.grad through the model call"


_CELL_CLASSES: dict[str, type[KerasCell]] = {
    "tensorflow": KerasTensorFlowCell,
    "jax": KerasJaxCell,
    "torch": KerasTorchCell,
}
