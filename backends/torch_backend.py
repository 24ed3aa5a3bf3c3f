"""The PyTorch backend: the eager ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` users write,
batch-first, in inference mode.

On CPU each module dispatches to one fused ATen op (``rnn_tanh``, ``rnn_relu``, ``lstm``,
``gru``) whose C++ loop hoists the input projection into one GEMM and runs one ``addmm`` per
step for the recurrence. A float32 LSTM goes one level further when torch is built with oneDNN:
``aten::lstm`` hands each layer and direction to oneDNN's fused LSTM (``mkldnn_rnn_layer``). On
CUDA every cell dispatches to cuDNN (``_cudnn_rnn``). ``path()`` says which of these ran.

``nn.GRU`` applies the reset gate after the recurrent product (``r * (h @ w_hh_n + b_hh_n)``),
so a reset-before GRU spec is refused rather than computed with the wrong formula.

cuDNN runs float32 RNNs in TF32 on Ampere and later unless told not to, and oneDNN's RNN
follows the generic fp32 precision (which a user may set to TF32 or bf16). The cell takes
``allow_tf32`` (False by default, as equivalence needs) and applies it only around its own
forward, through ``torch.backends.cudnn.flags`` and oneDNN's RNN precision, so that the
process-wide settings are left as the user had them.

A batch with ``lengths`` runs as torch users run one: ``pack_padded_sequence`` (unsorted rows
allowed), the module on the ``PackedSequence``, and ``pad_packed_sequence`` back to (batch, T),
zeros past each length; all three are inside ``run``, so a benchmark times the padding mechanism
as a user pays for it. The packed overload of each fused op runs the rows as the batch shrinks
step by step: every row's reverse direction starts at its own last step and ``h_n`` holds the
state after it. On CUDA cuDNN takes the packed batch (``_cudnn_rnn`` with batch sizes); on CPU
ATen's packed loop does, and a float32 LSTM does not reach oneDNN, whose RNN has no packed
form. ``path()`` says "packed" after such a run. A mask with holes has no torch equivalent and
is refused.

Gradients (``vjp``) come from torch autograd, as a training loop gets them: the same module call
(packed for lengths) outside inference mode, with the parameters, x and h0 (zeros when not given)
requiring grad for that call only, then ``torch.autograd.grad`` of the outputs with the
cotangents as ``grad_outputs``. The module is in training mode for the call (cuDNN's backward
needs the forward's training workspace; with no dropout both modes compute the same function)
and is put back in eval mode with frozen parameters afterwards. The weight gradients, keyed like
the state dict, go through ``RNNWeights.from_torch`` as weights do. The backward runs in the
forward's TF32/oneDNN precision scope: on CUDA ``_cudnn_rnn_backward``; on CPU a float32 LSTM's
``mkldnn_rnn_layer_backward`` (oneDNN), and every other case autograd's graph of the fused op's
step ops (``aten::lstm`` and the others are composite on CPU: one ``AddmmBackward0`` per step).
``info()["backward_path"]`` says which ran in the last ``vjp``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendUnavailableError
from rnnbench.gradients import Grads
from rnnbench.padding import Padding
from rnnbench.state import State
from rnnbench.weights import RNNWeights

# The fused ATen op each cell's module calls on CPU (before any cuDNN or oneDNN dispatch).
ATEN_OPS = {"lstm": "lstm", "gru": "gru"}


class TorchCell(BaseCell):
    """``torch.nn.RNN`` / ``LSTM`` / ``GRU(batch_first=True)`` on ``device`` ("cpu" or "cuda"),
    float32 or float64."""

    name = "torch"
    distribution = "torch"
    devices = ("cpu", "cuda")
    variants = ("eager",)
    # Packed sequences pad only at the end of a row: lengths, but no mask with holes.
    takes_lengths = True
    computes_gradients = True

    def __init__(
        self,
        device: str = "cpu",
        dtype: Any = "float32",
        variant: str | None = None,
        *,
        allow_tf32: bool = False,
    ) -> None:
        super().__init__(device=device, dtype=dtype, variant=variant)
        import torch  # lazily: importing rnnbench must not import torch

        self._torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend 'torch' cannot use device 'cuda': torch {torch.__version__} sees no "
                f"CUDA GPU (built for CUDA {torch.version.cuda or 'none: a CPU-only build'})",
                "use device='cpu', or run on a machine with an NVIDIA GPU and a CUDA build of "
                "torch",
            )
        self.allow_tf32 = bool(allow_tf32)
        self._torch_dtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self._device = torch.device(device)
        self._module: Any = None
        self._packed = False  # whether the last run was a padded (packed) batch
        self._backward: str | None = None  # what ran for the last vjp's backward pass

    # --- loading -------------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        torch = self._torch
        spec = weights.spec
        if spec.cell == "gru" and spec.reset_after is False:
            self.refuse_spec(
                spec,
                "torch.nn.GRU applies the reset gate after the recurrent product "
                "(r * (h @ w_hh_n + b_hh_n)), while this GRU applies it before "
                "((r * h) @ w_hh_n), and no nn.GRU weights reproduce that formula",
                "run it on keras (GRU(reset_after=False)), tf1 (GRUCell), jax or numpy; or use "
                "a reset-after GRU (reset_after=True), the formula nn.GRU computes",
            )
        common = {
            "input_size": spec.input_size,
            "hidden_size": spec.hidden_size,
            "num_layers": spec.num_layers,
            "bias": spec.bias,
            "batch_first": True,
            "bidirectional": spec.bidirectional,
            "device": "meta",
            "dtype": self._torch_dtype,
        }
        # Built on the meta device, then given empty storage: no random init is drawn from the
        # user's RNG state, and every parameter is overwritten by load_state_dict(strict=True).
        if spec.cell == "lstm":
            module = torch.nn.LSTM(**common)
        elif spec.cell == "gru":
            module = torch.nn.GRU(**common)
        else:
            module = torch.nn.RNN(nonlinearity=spec.nonlinearity, **common)
        module = module.to_empty(device=self._device)
        state = {
            key: torch.from_numpy(np.array(value, dtype=self.dtype))
            for key, value in weights.to_torch().items()
        }
        module.load_state_dict(state, strict=True)
        module.eval().requires_grad_(False)
        # On CUDA this packs the weights into cuDNN's one contiguous buffer (a no-op on CPU).
        module.flatten_parameters()
        self._module = module
        self._packed = False  # nothing has run on this module yet
        self._backward = None

    # --- running -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Inference mode, plus this cell's TF32 choice for cuDNN and oneDNN for the duration
        only."""
        with self._torch.inference_mode(), self._precision():
            yield

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """This cell's TF32 choice for cuDNN and oneDNN, for the duration only."""
        torch = self._torch
        cudnn = torch.backends.cudnn
        # flags() resets every flag it is not given, so the current ones are passed through.
        # TF32 off also sets the fp32 precision to "ieee": the RNN op's own precision inherits
        # it, whatever the user set as the generic default.
        with (
            cudnn.flags(
                enabled=cudnn.enabled,
                benchmark=cudnn.benchmark,
                benchmark_limit=cudnn.benchmark_limit,
                deterministic=cudnn.deterministic,
                allow_tf32=self.allow_tf32,
                fp32_precision=cudnn.fp32_precision if self.allow_tf32 else "ieee",
            ),
            self._onednn_rnn_precision(),
        ):
            yield

    @contextlib.contextmanager
    def _grad_scope(self) -> Iterator[None]:
        """Autograd on (also inside a caller's inference mode), the module in training mode
        with its parameters requiring grad, in this cell's precision; afterwards the module is
        as ``_load`` left it (eval mode, frozen parameters), so later forwards are unchanged."""
        torch = self._torch
        module = self._module
        with torch.inference_mode(False), torch.enable_grad(), self._precision():
            # cuDNN's backward needs the training forward's workspace; without dropout the
            # training forward computes the same function.
            module.train().requires_grad_(True)
            try:
                yield
            finally:
                module.eval().requires_grad_(False)

    @contextlib.contextmanager
    def _onednn_rnn_precision(self) -> Iterator[None]:
        """oneDNN's RNN (the CPU float32 LSTM) inherits a generic fp32 precision of "tf32" or
        "bf16" when a user sets one; with TF32 off it is pinned to IEEE float32 for the run."""
        # The module's type stubs list only its older flags, not the per-op precision objects.
        rnn = self._torch.backends.mkldnn.rnn  # type: ignore[attr-defined]
        if self.allow_tf32:
            yield
            return
        before = rnn.fp32_precision
        rnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            rnn.fp32_precision = before

    def prepare(
        self,
        x: np.ndarray,
        h0: State | None = None,
        lengths: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Any:
        xs, hs = self.check_inputs(x, h0)
        # Checked before torch sees them: a zero, too long or float length is rnnbench's error.
        padding = self.check_padding(xs, lengths, mask)
        prepared = self._to_torch(xs, hs, padding)
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)  # the copies are not part of a timed run
        return prepared

    def _to_torch(
        self, xs: np.ndarray, hs: tuple[np.ndarray, ...] | None, padding: Padding | None
    ) -> tuple[Any, Any, Any]:
        """Checked arrays as the module's arguments: x, h0 (a pair for an LSTM, or None) and
        the lengths for packing (or None)."""
        torch = self._torch
        x_t = torch.from_numpy(xs).to(self._device)
        h_t: Any = None
        if hs is not None:
            states = tuple(torch.from_numpy(s).to(self._device) for s in hs)
            # nn.LSTM takes the pair (h0, c0); nn.RNN and nn.GRU take h0 alone.
            h_t = states if self.spec.cell == "lstm" else states[0]
        lengths_t: Any = None
        if padding is not None and padding.lengths is not None:
            # pack_padded_sequence takes the lengths on the CPU as int64, also for a CUDA input.
            lengths_t = torch.from_numpy(padding.lengths.astype(np.int64))
        return x_t, h_t, lengths_t

    def run(self, prepared: Any) -> Any:
        with self._scope():
            return self._call(*prepared)

    def _call(self, x_t: Any, h_t: Any, lengths_t: Any) -> Any:
        """The module on a full batch, or on the packed batch padded back to (batch, T)."""
        self._packed = lengths_t is not None
        if lengths_t is None:
            return self._module(x_t, h_t)
        rnn_utils = self._torch.nn.utils.rnn
        packed = rnn_utils.pack_padded_sequence(
            x_t, lengths_t, batch_first=True, enforce_sorted=False
        )
        # The module reorders h0 by the packed batch's sorted_indices and h_n back, so both
        # stay in the caller's row order.
        y_packed, final = self._module(packed, h_t)
        y, _ = rnn_utils.pad_packed_sequence(
            y_packed, batch_first=True, padding_value=0.0, total_length=x_t.shape[1]
        )
        return y, final

    def _prepare_vjp(
        self,
        x: np.ndarray,
        h0: tuple[np.ndarray, ...],
        dy: np.ndarray,
        dstates: tuple[np.ndarray, ...],
        padding: Padding | None,
    ) -> Any:
        torch = self._torch
        # Tensors made inside the scope: under a caller's inference mode they would be
        # inference tensors, which autograd cannot use.
        with self._grad_scope():
            x_t, h_t, lengths_t = self._to_torch(x, h0, padding)
            leaves = (x_t, *(h_t if isinstance(h_t, tuple) else (h_t,)))
            for leaf in leaves:
                leaf.requires_grad_(True)
            grad_outputs = [torch.from_numpy(c).to(self._device) for c in (dy, *dstates)]
        return x_t, h_t, lengths_t, leaves, grad_outputs

    def run_vjp(self, prepared: Any) -> Any:
        """The forward pass with autograd on, then ``torch.autograd.grad`` of the outputs with
        the cotangents: a training step's recurrence, left on the device."""
        x_t, h_t, lengths_t, leaves, grad_outputs = prepared
        with self._grad_scope():
            y, final = self._call(x_t, h_t, lengths_t)
            outputs = (y, *(final if isinstance(final, tuple) else (final,)))
            params = tuple(self._module.parameters())
            grads = self._torch.autograd.grad(outputs, (*leaves, *params), grad_outputs)
        self._backward = self._backward_path()
        return grads, len(leaves)

    def fetch_vjp(self, result: Any) -> Grads:
        grads, n = result
        arrays = [g.detach().cpu().numpy() for g in grads]
        names = [name for name, _ in self._module.named_parameters()]
        # Keyed like the module's state dict, through the converter weights take.
        weights = RNNWeights.from_torch(dict(zip(names, arrays[n:], strict=True)), spec=self.spec)
        return Grads(dx=arrays[0], dh0=self.public_state(arrays[1:n]), weights=weights)

    def synchronize(self, result: Any) -> None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)

    def fetch(self, result: Any) -> tuple[np.ndarray, State]:
        # A packed run's output is already padded back to (batch, T): both fetch alike.
        y, final = result
        # nn.LSTM returns (h_n, c_n); nn.RNN and nn.GRU return h_n alone.
        states = final if isinstance(final, tuple) else (final,)
        return y.detach().cpu().numpy(), self.public_state(
            tuple(s.detach().cpu().numpy() for s in states)
        )

    # --- reporting -----------------------------------------------------------------------
    def _uses_cudnn(self) -> bool:
        torch = self._torch
        if self._device.type != "cuda":
            return False
        probe = torch.empty(0, dtype=self._torch_dtype, device=self._device)
        return bool(torch.backends.cudnn.enabled and torch.backends.cudnn.is_acceptable(probe))

    def _uses_onednn(self, op: str) -> bool:
        """ATen's CPU lstm hands float32 to oneDNN when torch is built with it and it is on,
        for a full batch only: the packed overload keeps its own loop."""
        mkldnn = self._torch.backends.mkldnn
        return (
            op == "lstm"
            and not self._packed
            and self._device.type == "cpu"
            and self.dtype == np.float32
            and bool(mkldnn.is_available() and mkldnn.enabled)
        )

    def aten_op(self) -> str:
        """The fused ATen op the loaded module calls: rnn_tanh, rnn_relu, lstm or gru."""
        spec = self._spec
        if spec is not None and spec.cell in ATEN_OPS:
            return ATEN_OPS[spec.cell]
        return "rnn_relu" if spec and spec.nonlinearity == "relu" else "rnn_tanh"

    def path(self) -> str:
        """The dispatch of the last run; ", packed" when it was a padded batch (cuDNN takes
        packed batches through the same call, the CPU op runs its packed loop)."""
        op = self.aten_op()
        packed = ", packed" if self._packed else ""
        if self._uses_cudnn():
            tf32 = "TF32 allowed" if self.allow_tf32 else "TF32 off"
            return f"cudnn (aten::{op} -> _cudnn_rnn, {tf32}{packed})"
        if self._uses_onednn(op):
            return f"onednn (aten::{op} -> mkldnn_rnn_layer, cpu)"
        return f"aten fused {op} ({self._device.type}{packed})"

    def _backward_path(self) -> str:
        """What autograd ran backwards through for the last vjp (its forward's dispatch)."""
        op = self.aten_op()
        packed = ", packed" if self._packed else ""
        if self._uses_cudnn():
            tf32 = "TF32 allowed" if self.allow_tf32 else "TF32 off"
            return f"cudnn (_cudnn_rnn_backward, {tf32}{packed})"
        if self._uses_onednn(op):
            return "onednn (MkldnnRnnLayerBackward0 -> mkldnn_rnn_layer_backward, cpu)"
        # The CPU fused ops are composite: autograd records and reverses their step ops.
        return f"autograd of aten::{op}'s step ops ({self._device.type}{packed})"

    def info(self) -> dict[str, Any]:
        torch = self._torch
        out = super().info()
        out["backward_path"] = self._backward
        out["threads"] = torch.get_num_threads()
        out["allow_tf32"] = self.allow_tf32
        if self._device.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(self._device)
            out["cudnn_version"] = torch.backends.cudnn.version()
        return out
