"""AdamW with the recipe's no-decay groups, and the linear-warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from vepcli.nn.mamba2 import RMSNormGated
from vepcli.nn.norm import RMSNorm
from vepcli.nn.xlstm_parts import ResidualLayerNorm

_NORMS = (RMSNorm, RMSNormGated, nn.LayerNorm, ResidualLayerNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weights decay; biases, A_log, D, dt_bias, embeddings and norm weights (Mamba-2's
    gated RMSNorm too) do not.

    A tied tensor (the LM head is the embedding table, mamba_rev shares mamba_fwd's projections) is
    listed once; it takes no decay if any module that holds it is exempt.
    """
    params: dict[int, nn.Parameter] = {}
    exempt: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            params.setdefault(id(p), p)
            if (
                getattr(p, "_no_weight_decay", False)
                or name == "bias"
                or isinstance(module, nn.Embedding)
                or isinstance(module, _NORMS)
            ):
                exempt.add(id(p))
    decay = [p for i, p in params.items() if i not in exempt]
    no_decay = [p for i, p in params.items() if i in exempt]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    parts: list[tuple[nn.Module, float]], weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW over each part's decay / no-decay groups, each part at its own peak rate.

    Pretraining has one part, the model; fine-tuning two, the head and the backbone (unless frozen).
    """
    groups = [{**g, "lr": lr} for module, lr in parts for g in param_groups(module, weight_decay) if g["params"]]
    return torch.optim.AdamW(groups, lr=parts[0][1], betas=betas)


class WarmupCosine:
    """LR multiplier at optimizer step `s` (0-based): linear warmup to 1, then cosine to min_lr/lr.

    A plain object (not a lambda) so that LambdaLR's state_dict records it and a resume restores it.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps, self.warmup_steps, self.min_ratio = total_steps, warmup_steps, min_ratio

    def __call__(self, s: int) -> float:
        if s < self.warmup_steps:
            return (s + 1) / self.warmup_steps
        progress = min(1.0, (s - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_frac: float, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group's rate follows WarmupCosine; warmup_frac of the steps (at least one, unless 0) warm up."""
    warmup = max(1, round(warmup_frac * total_steps)) if warmup_frac > 0 else 0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup, min_ratio))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_frac: float, lr: float, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Pretraining's schedule: the floor given as a rate (--min-lr) rather than a ratio."""
    return warmup_cosine(optimizer, total_steps, warmup_frac, min(1.0, min_lr / lr))
