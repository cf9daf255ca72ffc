"""Small pieces the mLSTM and sLSTM layers of xLSTM (Beck et al. 2024) share, in the public code's names.

- `HeadwiseLinear`: the block-diagonal projection (one small matrix per head: weight (heads, out, in)) of
  xLSTM's q/k/v and sLSTM gate inputs; far fewer parameters than a dense d x d matrix.
- `ResidualLayerNorm`: LayerNorm whose scale is stored as an offset from one (scale = 1 + weight), as
  xLSTM stores it, so zero-initialised weights give the identity scale.
- `MultiHeadLayerNorm`: the per-head normalisation of the cell output (a group norm with one group per head).
- `causal_conv_silu`: SiLU(causal depthwise conv) through vepcli's one conv kernel.
- `cell_precision`: the recurrences run in fp32 (fp64 for fp64 inputs) even under mixed precision, as the
  selective scan keeps its state in fp32: exponential gates and long sums lose too much in bf16.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.kernels import conv1d_silu


class HeadwiseLinear(nn.Module):
    """y[..., h, :] = W_h x[..., h, :] (+ bias): a block-diagonal linear map with `heads` blocks."""

    def __init__(self, features: int, heads: int, bias: bool) -> None:
        super().__init__()
        if features % heads:
            raise ValueError(f"{features} features do not split into {heads} heads")
        self.heads = heads
        self.weight = nn.Parameter(torch.empty(heads, features // heads, features // heads))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        nn.init.normal_(self.weight, std=(2 / 5 / (features // heads)) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("...hi,hoi->...ho", x.unflatten(-1, (self.heads, -1)), self.weight).flatten(-2)
        return y if self.bias is None else y + self.bias


class ResidualLayerNorm(nn.Module):
    """LayerNorm with scale 1 + weight and an optional bias."""

    def __init__(self, d: int, bias: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), 1.0 + self.weight, self.bias, self.eps)


class MultiHeadLayerNorm(ResidualLayerNorm):
    """Normalise each head's channels of x (..., heads, head_dim) separately; one scale per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, (x.shape[-1],), eps=self.eps).flatten(-2) * (1.0 + self.weight)
        return y if self.bias is None else y + self.bias


def causal_conv_silu(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """SiLU of the causal depthwise conv of x (batch, L, d) with an nn.Conv1d's weight (d, 1, K) and bias."""
    bias = None if conv.bias is None else conv.bias[None]
    return conv1d_silu(x, conv.weight[:, 0][None], bias)


def cell_precision(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off around a recurrence (its inputs are upcast with `vepcli.nn.mamba2.upcast`)."""
    return torch.autocast(x.device.type, enabled=False)
