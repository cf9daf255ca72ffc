"""The pre-norms of Caduceus' residual stream: RMSNorm (all released checkpoints) or LayerNorm, in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * w, computed in fp32."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = None

    def forward(self, x: torch.Tensor, flipped: bool = False) -> torch.Tensor:
        return apply_norm(self, x, flipped)


def apply_norm(norm: nn.Module, x: torch.Tensor, flipped: bool = False) -> torch.Tensor:
    """Apply an RMSNorm or LayerNorm; `flipped` gives flip_C(norm(flip_C(x))) without flipping x.

    Both norm types go through here so that the reverse-complement half (rcps.rc_norm) needs no copy
    of x and both compute in fp32 whatever the activations' dtype."""
    w, b = norm.weight, norm.bias
    if flipped:
        w = w.flip(0)
        b = None if b is None else b.flip(0)
    xf = x.float()
    if isinstance(norm, RMSNorm):
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps) * w.float()
    else:
        y = F.layer_norm(xf, (x.shape[-1],), w.float(), None if b is None else b.float(), norm.eps)
    return y.to(x.dtype)
