"""The Mamba (v1) mixer and the bi-directional BiMamba of Caduceus.

Parameter names and shapes are mamba_ssm's `Mamba`, so published checkpoints load unchanged:

    x, z  = in_proj(h)                         (2 d_inner, d_model), no bias
    x     = SiLU(causal depthwise conv1d(x))   (d_inner, 1, d_conv) + bias
    dt, B, C = x_proj(x)                       (dt_rank + 2 d_state, d_inner)
    delta = softplus(dt_proj(dt))              (d_inner, dt_rank) + bias
    y     = S6(x; delta, A = -exp(A_log), B, C) + D x
    out   = out_proj(y * SiLU(z))              (d_model, d_inner), no bias
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.kernels import scan_backend, selective_scan


class Mamba(nn.Module):
    """One selective-state-space mixer, (batch, L, d_model) -> (batch, L, d_model)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False, **_ignored) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias,
                                padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_ssm(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor) -> None:
        """S4D-real A, D = 1, and dt drawn log-uniform in [dt_min, dt_max] (mamba_ssm's recipe)."""
        std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.A_log._no_weight_decay = True
        self.D.fill_(1.0)
        self.D._no_weight_decay = True

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU(depthwise causal conv) in (batch, L, d_inner) layout: a sum of shifted copies, no transposes."""
        w = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv); tap k sees x[t - (d_conv - 1 - k)]
        L = x.shape[1]
        out = x * w[:, -1]
        for k in range(self.d_conv - 1):
            shift = self.d_conv - 1 - k
            if shift < L:
                out[:, shift:] += x[:, : L - shift] * w[:, k]
        if self.conv1d.bias is not None:
            out = out + self.conv1d.bias
        return F.silu(out)

    def ssm_inputs(self, x: torch.Tensor):
        """From the x half of in_proj: the scan's input u and its delta (pre-softplus), B and C."""
        u = self.causal_conv(x)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = dt @ self.dt_proj.weight.t()  # dt_proj's bias goes inside the softplus, in the scan
        return u, delta, B, C

    def A(self) -> torch.Tensor:
        return -torch.exp(self.A_log.float())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        u, delta, B, C = self.ssm_inputs(x)
        y = selective_scan(u, delta, self.A(), B, C, self.D, z, self.dt_proj.bias, delta_softplus=True)
        return self.out_proj(y)


def flip_L(x: torch.Tensor) -> torch.Tensor:
    return x.flip(1)


class BiMamba(nn.Module):
    """Caduceus' bi-directional mixer: mamba_fwd(x) (+ or *) flip_L(mamba_rev(flip_L(x))).

    With weight tying the two directions share in_proj and out_proj (one tensor). Both directions
    then run as one scan over a doubled batch, and for "add" one out_proj serves both, since
    out_proj(y_f) + out_proj(y_r) = out_proj(y_f + y_r).
    """

    def __init__(self, d_model: int, bidirectional: bool = True, bidirectional_strategy: str = "add",
                 bidirectional_weight_tie: bool = True, **mamba_kwargs) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.strategy = bidirectional_strategy or "add"
        self.tied = bidirectional and bidirectional_weight_tie
        self.mamba_fwd = Mamba(d_model, **mamba_kwargs)
        self.mamba_rev = Mamba(d_model, **mamba_kwargs) if bidirectional else None
        if self.tied:
            self.tie_weights()

    def tie_weights(self) -> None:
        """Make mamba_rev's in_proj and out_proj the very tensors of mamba_fwd (checkpoints omit them)."""
        fwd, rev = self.mamba_fwd, self.mamba_rev
        rev.in_proj.weight, rev.out_proj.weight = fwd.in_proj.weight, fwd.out_proj.weight
        rev.in_proj.bias, rev.out_proj.bias = fwd.in_proj.bias, fwd.out_proj.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.bidirectional:
            return self.mamba_fwd(hidden)
        if not self.tied:
            out_rev = flip_L(self.mamba_rev(flip_L(hidden)))
            out = self.mamba_fwd(hidden)
            return out + out_rev if self.strategy == "add" else out * out_rev
        fwd, rev = self.mamba_fwd, self.mamba_rev
        batch = hidden.shape[0]
        x, z = fwd.in_proj(hidden).chunk(2, dim=-1)  # shared in_proj: the reverse pass is its flip
        u_f, delta_f, B_f, C_f = fwd.ssm_inputs(x)
        u_r, delta_r, B_r, C_r = rev.ssm_inputs(flip_L(x))
        if scan_backend(hidden.device) == "mamba_ssm":  # the kernel takes one A per call: one per direction
            y_f = selective_scan(u_f, delta_f, fwd.A(), B_f, C_f, fwd.D, z, fwd.dt_proj.bias)
            y_r = flip_L(selective_scan(u_r, delta_r, rev.A(), B_r, C_r, rev.D, flip_L(z), rev.dt_proj.bias))
            return fwd.out_proj(y_f + y_r) if self.strategy == "add" else fwd.out_proj(y_f) * rev.out_proj(y_r)
        # one scan over [forward; reverse] rows; each half of the batch carries its own A, D, dt bias
        A = torch.cat([fwd.A().expand(batch, -1, -1), rev.A().expand(batch, -1, -1)])
        u, delta, B, C = (torch.cat(p) for p in ((u_f, u_r), (delta_f, delta_r), (B_f, B_r), (C_f, C_r)))
        bias = torch.cat([fwd.dt_proj.bias.expand(batch, 1, -1), rev.dt_proj.bias.expand(batch, 1, -1)])
        D = torch.cat([fwd.D.expand(batch, 1, -1), rev.D.expand(batch, 1, -1)])
        y = selective_scan(u, delta, A, B, C, D, torch.cat([z, flip_L(z)]), bias, delta_softplus=True)
        y_f, y_r = y[:batch], flip_L(y[batch:])
        if self.strategy == "add":
            return fwd.out_proj(y_f + y_r)
        return fwd.out_proj(y_f) * rev.out_proj(y_r)
