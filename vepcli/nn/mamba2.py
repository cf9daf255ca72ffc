"""The Mamba-2 mixer (Dao & Gu 2024): SSD with a scalar A per head, as one block of a hybrid backbone.

Parameter names, shapes and constructor keys are mamba_ssm's `Mamba2` (its `ssm_cfg` with
`layer: "Mamba2"`), so a mamba_ssm state dict loads by name:

    z0, x0, z, xBC, dt = in_proj(u)                  [d_mlp, d_mlp, d_ssm, d_ssm + 2 G N, nheads], no bias
    x, B, C = SiLU(causal depthwise conv1d(xBC))     (conv_dim, 1, d_conv) + bias
    dt      = softplus(dt + dt_bias)                 (nheads,)
    y       = SSD(x; dt, A = -exp(A_log), B, C) + D x
    y       = norm(y, z) = RMSNorm(y * SiLU(z)) per group of d_ssm / G channels (norm_before_gate=False)
    out     = out_proj([SiLU(z0) * x0, y])           (d_model, d_inner), no bias

d_mlp = d_inner - d_ssm is 0 unless `d_ssm` is set. The scan is `vepcli.nn.ssd.ssd` (mamba_ssm's
Triton kernels on CUDA when installed, the chunked matrix form otherwise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vepcli.nn.kernels import conv1d_silu
from vepcli.nn.ssd import ssd, ssd_backend

# On a CPU, short chunks are faster (docs/benchmarks.md); the result does not depend on the chunk size.
CPU_CHUNK_SIZE = 32


def upcast(t: Tensor) -> Tensor:
    """t in fp32, or fp64 when it is fp64: the precision the norm, dt and A are computed in."""
    return t if t.dtype == torch.float64 else t.float()


class RMSNormGated(nn.Module):
    """mamba_ssm's gated RMSNorm: RMSNorm(y * SiLU(z)) (or RMSNorm(y) * SiLU(z) with norm_before_gate),
    normalised over groups of `group_size` channels so that each group of heads keeps its own scale."""

    def __init__(self, d: int, eps: float = 1e-5, norm_before_gate: bool = False, group_size: int | None = None):
        super().__init__()
        self.eps, self.norm_before_gate = eps, norm_before_gate
        self.group_size = d if group_size is None else group_size
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        yf = upcast(y)
        gate = None if z is None else F.silu(upcast(z))
        if gate is not None and not self.norm_before_gate:
            yf = yf * gate
        groups = yf.unflatten(-1, (-1, self.group_size))
        yf = (groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + self.eps)).flatten(-2)
        yf = yf * upcast(self.weight)
        if gate is not None and self.norm_before_gate:
            yf = yf * gate
        return yf.to(y.dtype)


class Mamba2(nn.Module):
    """One Mamba-2 mixer, (batch, L, d_model) -> (batch, L, d_model); causal."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        d_ssm: int | None = None,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        use_mem_eff_path: bool = True,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        self.headdim, self.ngroups = headdim, ngroups
        if self.d_ssm % headdim or (self.d_ssm // headdim) % ngroups:
            raise ValueError(
                f"Mamba2: d_ssm {self.d_ssm} must split into heads of {headdim} channels, in {ngroups} groups"
            )
        self.nheads = self.d_ssm // headdim
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit, self.chunk_size, self.layer_idx = tuple(dt_limit), chunk_size, layer_idx
        self.use_mem_eff_path = use_mem_eff_path  # a mamba_ssm key; the result is the same either way

        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads  # [z0, x0, z, x, B, C, dt]
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias)
        conv_dim = self.d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, bias=conv_bias, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        self.D = nn.Parameter(torch.empty(self.d_ssm if D_has_hdim else self.nheads))
        if rmsnorm:
            self.norm = RMSNormGated(self.d_ssm, 1e-5, norm_before_gate, group_size=self.d_ssm // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_ssm(conv_init, A_init_range, dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, conv_init, A_init_range, dt_min, dt_max, dt_init_floor) -> None:
        """mamba_ssm's recipe: dt log-uniform in [dt_min, dt_max] (stored as softplus^-1 in dt_bias),
        A uniform in A_init_range (stored as log(-A)), D = 1."""
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        if not (0 < A_init_range[0] <= A_init_range[1]):
            raise ValueError(f"Mamba2: A_init_range {A_init_range} must satisfy 0 < low <= high")
        self.A_log.copy_(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D.fill_(1.0)
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True

    def A(self) -> Tensor:
        """A = -exp(A_log), in fp32 (fp64 stays fp64) whatever the parameters' dtype: fp16 would underflow."""
        return -torch.exp(upcast(self.A_log))

    def forward(self, u: Tensor) -> Tensor:
        batch, L, _ = u.shape
        d_mlp = self.d_inner - self.d_ssm
        gn = self.ngroups * self.d_state
        z0, x0, z, xBC, dt = self.in_proj(u).split([d_mlp, d_mlp, self.d_ssm, self.d_ssm + 2 * gn, self.nheads], -1)
        conv_b = None if self.conv1d.bias is None else self.conv1d.bias[None]
        xBC = conv1d_silu(xBC, self.conv1d.weight[None, :, 0], conv_b)
        x, B, C = xBC.split([self.d_ssm, gn, gn], dim=-1)
        y = ssd(
            x.reshape(batch, L, self.nheads, self.headdim),
            self.delta(dt),
            self.A(),
            B.reshape(batch, L, self.ngroups, self.d_state),
            C.reshape(batch, L, self.ngroups, self.d_state),
            self.scan_chunk_size(u.device),
            D=self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D,
            z=None if self.rmsnorm else z.reshape(batch, L, self.nheads, self.headdim),
        ).reshape(batch, L, self.d_ssm)
        if self.rmsnorm:
            y = self.norm(y, z)
        if d_mlp:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return self.out_proj(y.to(u.dtype))

    def delta(self, dt: Tensor) -> Tensor:
        """dt = softplus(dt + dt_bias) in fp32 (fp64 stays fp64), clamped to dt_limit when one is set."""
        dt = F.softplus(upcast(dt) + upcast(self.dt_bias))
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(*self.dt_limit)
        return dt

    def scan_chunk_size(self, device: torch.device) -> int:
        """The configured chunk size on mamba_ssm's kernels, at most CPU_CHUNK_SIZE on the PyTorch path."""
        return self.chunk_size if ssd_backend(device) == "mamba_ssm" else min(self.chunk_size, CPU_CHUNK_SIZE)
