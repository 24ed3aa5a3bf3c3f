"""The PyTorch backend: the eager ``torch.nn.RNN`` users write, batch-first, in inference mode.

On CPU, ``nn.RNN`` dispatches to ATen's fused ``rnn_tanh`` / ``rnn_relu`` op, whose C++ loop
hoists the input projection into one GEMM and runs one ``addmm`` per step for the recurrence; on
CUDA it dispatches to cuDNN (``_cudnn_rnn``). ``path()`` says which of the two ran.

cuDNN runs float32 RNNs in TF32 on Ampere and later unless told not to. The cell takes
``allow_tf32`` (False by default, as equivalence needs) and applies it only around its own
forward, through ``torch.backends.cudnn.flags``, so that the process-wide setting is left as the
user had it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnbench.cell import BaseCell
from rnnbench.errors import BackendUnavailableError
from rnnbench.weights import RNNWeights


class TorchCell(BaseCell):
    """``torch.nn.RNN(batch_first=True)`` on ``device`` ("cpu" or "cuda"), float32 or float64."""

    name = "torch"
    distribution = "torch"
    devices = ("cpu", "cuda")
    variants = ("eager",)

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

    # --- loading -------------------------------------------------------------------------
    def _load(self, weights: RNNWeights) -> None:
        torch = self._torch
        spec = weights.spec
        # Built on the meta device, then given empty storage: no random init is drawn from the
        # user's RNG state, and every parameter is overwritten by load_state_dict(strict=True).
        module = torch.nn.RNN(
            input_size=spec.input_size,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            nonlinearity=spec.nonlinearity,
            bias=spec.bias,
            batch_first=True,
            bidirectional=spec.bidirectional,
            device="meta",
            dtype=self._torch_dtype,
        )
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

    # --- running -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Inference mode, plus this cell's TF32 choice for cuDNN for the duration only."""
        torch = self._torch
        cudnn = torch.backends.cudnn
        # flags() resets every flag it is not given, so the current ones are passed through.
        # TF32 off also sets the fp32 precision to "ieee": the RNN op's own precision inherits
        # it, whatever the user set as the generic default.
        with (
            torch.inference_mode(),
            cudnn.flags(
                enabled=cudnn.enabled,
                benchmark=cudnn.benchmark,
                benchmark_limit=cudnn.benchmark_limit,
                deterministic=cudnn.deterministic,
                allow_tf32=self.allow_tf32,
                fp32_precision=cudnn.fp32_precision if self.allow_tf32 else "ieee",
            ),
        ):
            yield

    def prepare(self, x: np.ndarray, h0: np.ndarray | None = None) -> Any:
        xs, hs = self.check_inputs(x, h0)
        torch = self._torch
        x_t = torch.from_numpy(xs).to(self._device)
        h_t = None if hs is None else torch.from_numpy(hs).to(self._device)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)  # the copies are not part of a timed run
        return x_t, h_t

    def run(self, prepared: Any) -> Any:
        x_t, h_t = prepared
        with self._scope():
            return self._module(x_t, h_t)

    def synchronize(self, result: Any) -> None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)

    def fetch(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        y, h_n = result
        return y.detach().cpu().numpy(), h_n.detach().cpu().numpy()

    # --- reporting -----------------------------------------------------------------------
    def _uses_cudnn(self) -> bool:
        torch = self._torch
        if self._device.type != "cuda":
            return False
        probe = torch.empty(0, dtype=self._torch_dtype, device=self._device)
        return bool(torch.backends.cudnn.enabled and torch.backends.cudnn.is_acceptable(probe))

    def path(self) -> str:
        op = "rnn_relu" if self._spec and self._spec.nonlinearity == "relu" else "rnn_tanh"
        if self._uses_cudnn():
            tf32 = "TF32 allowed" if self.allow_tf32 else "TF32 off"
            return f"cudnn (aten::{op} -> _cudnn_rnn, {tf32})"
        return f"aten fused {op} ({self._device.type})"

    def info(self) -> dict[str, Any]:
        torch = self._torch
        out = super().info()
        out["threads"] = torch.get_num_threads()
        out["allow_tf32"] = self.allow_tf32
        if self._device.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(self._device)
            out["cudnn_version"] = torch.backends.cudnn.version()
        return out
