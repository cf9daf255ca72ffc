"""What every scan backend shares: the exp2 constant and the test for taking the autograd path."""

from __future__ import annotations

import torch

LOG2_E = 1.4426950408889634  # exp(x) = exp2(x log2 e): A is scaled once so the kernels call exp2


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """True when autograd is on and an input wants a gradient: the backend then keeps what backward needs."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
