"""Mamba's sequence kernels and their one dispatch: the selective scan (S6) and the conv before it.

    selective_scan(u, delta, A, B, C, D, z, delta_bias, reverse=...) -> y            (batch, L, d_inner)

    delta_t = softplus(delta_t + delta_bias)      A-bar_t = exp(delta_t A)     B-bar_t x_t = delta_t B_t u_t
    h_t = A-bar_t h_{t-1} + B-bar_t x_t           y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)

    conv1d_silu(x, weight, bias, reverse=...) -> SiLU(depthwise causal conv1d(x))  (groups batch, L, d_inner)

Layout: u, delta (batch, L, d_inner); B, C (batch, L, d_state); A (d_inner, d_state); D and
delta_bias (d_inner,). Parameters may instead be given per group of rows, A (G, d_inner, d_state),
D and delta_bias (G, d_inner): the batch is G equal groups, group g uses A[g]. BiMamba's two
directions are two groups, and `reverse[g]` scans group g from its end (h_t from steps t..L-1) and
makes its conv anti-causal: the reverse direction without flipping any tensor. z may have fewer
rows than u, row b using z[b % z.shape[0]] (both directions share one gate). B, C and z may be
views with a contiguous last dimension (slices of a projection), and are read in place.

Backends, first that applies wins (`VEPCLI_SCAN` forces one, for tests and benchmarks):
- `mamba_ssm`: its CUDA kernel, when installed, on CUDA (one call per parameter group);
- `triton`: our Triton kernel on CUDA (and on CPU tensors under TRITON_INTERPRET=1, for tests);
- `cpu`: our compiled C++ kernels on CPU;
- `torch`: the chunked pure-PyTorch scan, which runs anywhere, fp64 included.
Every backend keeps the state in fp32 (fp64 stays fp64 on `torch`) and holds nothing of size
(batch, L, d_inner, d_state). `selective_scan_reference` is the float64 yardstick.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vepcli.nn.kernels import cpu as _cpu
from vepcli.nn.kernels.reference import selective_scan_reference
from vepcli.nn.kernels.torch_scan import selective_scan_torch

try:  # mamba_ssm's CUDA kernel, when the `gpu` extra is installed
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except Exception:  # noqa: BLE001 - any import failure (missing, broken build) means: not available
    _mamba_ssm_scan = None

BACKENDS = ("mamba_ssm", "triton", "cpu", "torch")

__all__ = [
    "BACKENDS",
    "conv1d_silu",
    "scan_backend",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_torch",
]


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus: bool = True,
    reverse: Sequence[bool] | None = None,
):
    """y = S6(u) with the fused epilogue; gradients flow to every tensor input on every backend."""
    backend = scan_backend(u.device, u.dtype)
    if backend == "cpu":
        return _cpu.selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse)
    if backend == "mamba_ssm":
        return _by_group(_mamba_ssm_call, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse)
    scan = _triton().selective_scan_triton if backend == "triton" else selective_scan_torch
    return _by_row(scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse)


def conv1d_silu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, reverse: Sequence[bool] | None = None
) -> torch.Tensor:
    """SiLU(depthwise conv1d) of x (batch, L, d_inner) for each of G weight groups, (G batch, L, d_inner).

    weight (G, d_inner, d_conv) and bias (G, d_inner); group g is causal (tap k sees x[t - d_conv + 1 + k]),
    or anti-causal where reverse[g] (tap k sees x[t + d_conv - 1 - k]), which is the conv of the flipped
    sequence, flipped back."""
    if scan_backend(x.device, x.dtype) == "cpu":
        return _cpu.conv1d_silu_cpu(x, weight, bias, reverse)
    outs = []
    for g in range(weight.shape[0]):
        flip = bool(reverse and reverse[g])
        xs = x.flip(1) if flip else x
        out = _causal_conv(xs, weight[g], None if bias is None else bias[g])
        outs.append(F.silu(out.flip(1) if flip else out))
    return torch.cat(outs)


def scan_backend(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """The backend `selective_scan` uses for tensors on `device` (what `model info` and headers report)."""
    device = torch.device(device)
    forced = os.environ.get("VEPCLI_SCAN", "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"VEPCLI_SCAN={forced!r}: choose one of {', '.join(BACKENDS)}")
        why = _usable(forced, device, dtype)
        if why is not None:
            raise ValueError(f"VEPCLI_SCAN={forced}: that backend {why}")
        return forced
    order = ("mamba_ssm", "triton", "torch") if device.type == "cuda" else ("cpu", "torch")
    return next(name for name in order if _usable(name, device, dtype) is None)


def _triton():
    """Our Triton module, or None where Triton cannot be imported."""
    try:
        from vepcli.nn.kernels import triton_scan
    except ImportError:
        return None
    return triton_scan if triton_scan.available() else None


def _usable(name: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why backend `name` cannot run here, or None when it can."""
    if name == "mamba_ssm":
        return None if _mamba_ssm_scan is not None and device.type == "cuda" else "needs mamba_ssm and CUDA"
    if name == "triton":
        if _triton() is None:
            return "needs Triton, and CUDA or TRITON_INTERPRET=1"
        return triton_self_check(device) if device.type == "cuda" else None
    if name == "cpu":
        if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return "runs fp32/bf16/fp16 tensors on the CPU"
        return None if _cpu.available() else "its kernel could not be built"
    return None


@functools.cache
def triton_self_check(device: torch.device) -> str | None:
    """Why our Triton kernel cannot serve `device`, or None. Once per device and process it runs a small
    scan (groups, reverse, gate; forward and gradients) and compares it with the pure-PyTorch scan: the
    kernel is tested under Triton's interpreter here, and a GPU or Triton version it fails on falls back
    to the pure-PyTorch scan with one warning instead of giving wrong numbers."""
    g = torch.Generator().manual_seed(0)
    batch, L, dim, N = 4, 100, 24, 16
    ins = [
        torch.randn(batch, L, dim, generator=g),
        torch.randn(batch, L, dim, generator=g),
        -torch.rand(2, dim, N, generator=g) - 0.1,
        torch.randn(batch, L, N, generator=g),
        torch.randn(batch, L, N, generator=g),
        torch.randn(2, dim, generator=g),
        torch.randn(batch // 2, L, dim, generator=g),
        torch.randn(2, dim, generator=g),
    ]
    results = []
    try:
        for scan, where in ((_triton().selective_scan_triton, device), (selective_scan_torch, torch.device("cpu"))):
            xs = [t.to(where).requires_grad_() for t in ins]
            y = _by_row(scan, *xs, True, [False, True])
            grads = torch.autograd.grad(y.square().sum(), xs)
            results.append([t.detach().double().cpu() for t in (y, *grads)])
    except Exception as err:  # noqa: BLE001 - whatever breaks, the kernel cannot serve this device
        reason = f"failed on {device} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    else:
        worst = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(*results, strict=True)
        )
        reason = None if worst < 1e-3 else f"differs from the reference scan on {device} (relative error {worst:.1e})"
    if reason is not None:
        print(f"vepcli: warning: the Triton scan kernel {reason}; using the pure-PyTorch scan", file=sys.stderr)
    return reason


def _groups_of(batch: int, A, D, bias) -> int:
    G = _cpu.groups(A, D, bias)
    if batch % G:
        raise ValueError(f"a batch of {batch} rows does not split into {G} parameter groups")
    return G


def _flip_reversed(x: torch.Tensor | None, G: int, reverse) -> torch.Tensor | None:
    """Flip the reversed groups' rows along L: a backend without `reverse` scans them as they come."""
    if x is None or not reverse or not any(reverse):
        return x
    parts = x.chunk(G)
    return torch.cat([p.flip(1) if r else p for p, r in zip(parts, reverse, strict=True)])


def _full_z(z, batch: int):
    """z with one row per scan row (rows that shared one z get copies)."""
    return z if z is None or z.shape[0] == batch else z.repeat(batch // z.shape[0], 1, 1)


def _by_row(scan, u, delta, A, B, C, D, z, bias, softplus, reverse):
    """Groups as per-row parameters ((batch, d_inner, d_state) A, (batch, 1, d_inner) D and bias) and
    reversed groups as flipped rows: the contract of the torch and Triton scans."""
    batch = u.shape[0]
    G = _groups_of(batch, A, D, bias)
    if G > 1:
        rows = batch // G
        A = A.repeat_interleave(rows, 0) if A.dim() == 3 else A.expand(batch, *A.shape)
        D, bias = (
            None if t is None else (t if t.dim() == 2 else t.expand(G, -1)).repeat_interleave(rows, 0)[:, None]
            for t in (D, bias)
        )
    u, delta, B, C, z = (_flip_reversed(t, G, reverse) for t in (u, delta, B, C, _full_z(z, batch)))
    return _flip_reversed(scan(u, delta, A, B, C, D, z, bias, softplus), G, reverse)


def _by_group(call, u, delta, A, B, C, D, z, bias, softplus, reverse):
    """One call per parameter group (mamba_ssm takes one A per call), reversed groups flipped."""
    batch = u.shape[0]
    G = _groups_of(batch, A, D, bias)
    z = _full_z(z, batch)
    rows = batch // G
    outs = []
    for g in range(G):
        flip = bool(reverse and reverse[g])

        def pick(t, g=g, flip=flip):  # group g's rows, in scan order
            if t is None:
                return None
            part = t[g * rows : (g + 1) * rows]
            return part.flip(1) if flip else part

        def param(t, g=g):  # group g's parameters
            return None if t is None else (t[g] if t.dim() > (2 if t is A else 1) else t)

        y = call(pick(u), pick(delta), param(A), pick(B), pick(C), param(D), pick(z), param(bias), softplus)
        outs.append(y.flip(1) if flip else y)
    return torch.cat(outs)


def _mamba_ssm_call(u, delta, A, B, C, D, z, bias, softplus):
    y = _mamba_ssm_scan(
        u.transpose(1, 2),
        delta.transpose(1, 2),
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D,
        None if z is None else z.transpose(1, 2),
        bias,
        softplus,
    )
    return y.transpose(1, 2)


def _causal_conv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise causal conv in (batch, L, d_inner) layout: a sum of shifted copies, no transposes."""
    L, K = x.shape[1], w.shape[-1]
    out = x * w[:, -1]
    for k in range(K - 1):
        shift = K - 1 - k
        if shift < L:
            out[:, shift:] += x[:, : L - shift] * w[:, k]
    return out if bias is None else out + bias
