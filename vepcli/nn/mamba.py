"""The Mamba (v1) mixer and the bi-directional BiMamba of Caduceus (Gu & Dao 2023; Schiff et al. 2024).

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
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.kernels import conv1d_silu, selective_scan


class Mamba(nn.Module):
    """One selective-state-space mixer, (batch, L, d_model) -> (batch, L, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        **_ignored,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_ssm(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor) -> None:
        """S4D-real A, D = 1, and dt drawn log-uniform in [dt_min, dt_max] (mamba_ssm's recipe)."""
        std = self.dt_rank**-0.5 * dt_scale
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

    def A(self) -> torch.Tensor:
        return -torch.exp(self.A_log.float())

    def in_proj_xz(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and z = in_proj(hidden), as two products: their gradients then meet in the input's gradient
        (dx Wx + dz Wz) rather than in one new tensor that autograd concatenates from both halves (8% of a
        small model's training step here)."""
        w, b, d = self.in_proj.weight, self.in_proj.bias, self.d_inner
        x, z = (F.linear(hidden, w[h], None if b is None else b[h]) for h in (slice(None, d), slice(d, None)))
        return x, z

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out_proj(ssm(*self.in_proj_xz(hidden), [self]))


def ssm(x: torch.Tensor, z: torch.Tensor, mixers: Sequence[Mamba], reverse: Sequence[bool] | None = None):
    """The SSM branch of one or more Mamba mixers over the same in_proj output (x, z):

        u = SiLU(conv1d(x)),  (dt, B, C) = x_proj(u),  delta = dt_proj(dt),  y = S6(u; delta, A, B, C, D) SiLU(z)

    Each mixer is one parameter group of the kernels, so G mixers give (G batch, L, d_inner): mixer g's
    rows are g batch .. (g + 1) batch - 1, scanned from the end where reverse[g]. The projections of the
    G mixers run as one batched matmul; B and C stay views of x_proj's output; no tensor is flipped.
    """
    m0, G = mixers[0], len(mixers)
    batch, L, d_inner = x.shape
    conv_w = torch.stack([m.conv1d.weight[:, 0] for m in mixers])  # (G, d_inner, d_conv)
    conv_b = None if m0.conv1d.bias is None else torch.stack([m.conv1d.bias for m in mixers])
    u = conv1d_silu(x, conv_w, conv_b, reverse)  # (G batch, L, d_inner)
    w_x = torch.stack([m.x_proj.weight for m in mixers]).transpose(1, 2)  # (G, d_inner, dt_rank + 2 d_state)
    dbc = torch.bmm(u.view(G, batch * L, d_inner), w_x)
    dt, B, C = dbc.split([m0.dt_rank, m0.d_state, m0.d_state], dim=-1)
    w_dt = torch.stack([m.dt_proj.weight for m in mixers]).transpose(1, 2)  # (G, dt_rank, d_inner)
    delta = torch.bmm(dt, w_dt).view(G * batch, L, d_inner)  # dt_proj's bias goes inside the softplus
    A = torch.stack([m.A() for m in mixers]) if G > 1 else m0.A()
    D, dt_bias = (
        torch.stack(ts) if G > 1 else ts[0] for ts in ([m.D for m in mixers], [m.dt_proj.bias for m in mixers])
    )
    rows = (G * batch, L, m0.d_state)
    return selective_scan(u, delta, A, B.reshape(rows), C.reshape(rows), D, z, dt_bias, True, reverse)


class BiMamba(nn.Module):
    """Caduceus' bi-directional mixer: mamba_fwd(x) (+ or *) flip_L(mamba_rev(flip_L(x))).

    The reverse direction runs as the kernels' reverse scan and anti-causal conv, so nothing is
    flipped. With weight tying the two directions share in_proj and out_proj (one tensor): one in_proj
    serves both, both run as one doubled batch, and for "add" one out_proj serves both, since
    out_proj(y_f) + out_proj(y_r) = out_proj(y_f + y_r).
    """

    def __init__(
        self,
        d_model: int,
        bidirectional: bool = True,
        bidirectional_strategy: str = "add",
        bidirectional_weight_tie: bool = True,
        **mamba_kwargs,
    ) -> None:
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
        fwd, rev = self.mamba_fwd, self.mamba_rev
        if not self.bidirectional:
            return fwd(hidden)
        if self.tied:
            y_f, y_r = ssm(*fwd.in_proj_xz(hidden), [fwd, rev], reverse=[False, True]).chunk(2)
        else:
            y_f = ssm(*fwd.in_proj_xz(hidden), [fwd])
            y_r = ssm(*rev.in_proj_xz(hidden), [rev], reverse=[True])
        if self.strategy == "add":
            return fwd.out_proj(y_f + y_r)
        return fwd.out_proj(y_f) * rev.out_proj(y_r)
