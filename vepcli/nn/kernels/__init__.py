"""The selective scan (S6) and its one dispatch.

    selective_scan(u, delta, A, B, C, D, z, delta_bias) -> y          (batch, L, d_inner)

    delta_t = softplus(delta_t + delta_bias)      A-bar_t = exp(delta_t A)     B-bar_t x_t = delta_t B_t u_t
    h_t = A-bar_t h_{t-1} + B-bar_t x_t           y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)

Layout: u, delta, z (batch, L, d_inner); B, C (batch, L, d_state); A (d_inner, d_state), or
(batch, d_inner, d_state) when rows of the batch carry different parameters (the two directions of
BiMamba run as one scan); D and delta_bias (d_inner,) or (batch, 1, d_inner).

Backends, first that applies wins (`VEPCLI_SCAN` forces one, for tests and benchmarks):
- `mamba_ssm`: its CUDA kernel, when installed, on CUDA, with one A for the whole batch;
- `triton`: our Triton kernel on CUDA (and on CPU tensors under TRITON_INTERPRET=1, for tests);
- `cpu`: our compiled C kernel on CPU, fp32;
- `torch`: the chunked pure-PyTorch scan, which runs anywhere.
Every backend keeps the state in fp32 (fp64 stays fp64 on `torch`) and holds nothing of size
(batch, L, d_inner, d_state). `selective_scan_reference` is the float64 yardstick.
"""

from __future__ import annotations

import os

import torch

from vepcli.nn.kernels import cpu as _cpu
from vepcli.nn.kernels.reference import selective_scan_reference
from vepcli.nn.kernels.torch_scan import selective_scan_torch

try:  # mamba_ssm's CUDA kernel, when the `gpu` extra is installed
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except Exception:  # noqa: BLE001 - any import failure (missing, broken build) means: not available
    _mamba_ssm_scan = None

BACKENDS = ("mamba_ssm", "triton", "cpu", "torch")

__all__ = ["BACKENDS", "scan_backend", "selective_scan", "selective_scan_reference", "selective_scan_torch"]


def _triton():
    """Our Triton module, or None where Triton cannot be imported."""
    try:
        from vepcli.nn.kernels import triton_scan
    except ImportError:
        return None
    return triton_scan if triton_scan.available() else None


def _forced() -> str | None:
    name = os.environ.get("VEPCLI_SCAN", "").strip().lower() or None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"VEPCLI_SCAN={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def scan_backend(device: torch.device | str, dtype: torch.dtype = torch.float32, per_row_A: bool = False) -> str:
    """The backend `selective_scan` uses for tensors on `device` (what `model info` and headers report)."""
    forced = _forced()
    if forced is not None:
        return forced
    device = torch.device(device)
    if device.type == "cuda":
        if _mamba_ssm_scan is not None and not per_row_A:
            return "mamba_ssm"
        if _triton() is not None:
            return "triton"
        return "torch"
    if device.type == "cpu" and dtype in (torch.float32, torch.bfloat16, torch.float16) and _cpu.available():
        return "cpu"
    return "torch"


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = True):
    """y = S6(u) with the fused epilogue; gradients flow to every tensor input on every backend."""
    backend = scan_backend(u.device, u.dtype, per_row_A=A.dim() == 3)
    if backend == "mamba_ssm":
        y = _mamba_ssm_scan(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                            D, None if z is None else z.transpose(1, 2), delta_bias, delta_softplus)
        return y.transpose(1, 2)
    if backend == "triton":
        return _triton().selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend == "cpu":
        return _cpu.selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
