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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_norm(self, x)


def apply_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply an RMSNorm or LayerNorm in fp32 whatever the activations' dtype (both norm types go through here)."""
    w, b = norm.weight, norm.bias
    xf = x.float()
    if isinstance(norm, RMSNorm):
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps) * w.float()
    else:
        y = F.layer_norm(xf, (x.shape[-1],), w.float(), None if b is None else b.float(), norm.eps)
    return y.to(x.dtype)
