"""Reverse-complement parameter sharing (RCPS; Schiff et al. 2024, section 3.2): the pieces that make PS
Caduceus RC-equivariant, in one place.

A hidden tensor carries both strands in 2 d channels: the first half is the forward strand, the second
the reverse-complement strand stored flipped in length and channels, so that RC(x) = flip_LC(x). Every
module acts on the halves with shared weights:

    M_PS([a | b]) = [M(a) | flip_LC(M(flip_LC(b)))]

and the embedding and the tied LM head complement tokens through the vocabulary's complement map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.norm import apply_norm


def flip_LC(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of a hidden tensor (batch, L, C) in the RC-equivariant layout."""
    return x.flip(-2, -1)


def complement_index(complement_map: dict[int, int], vocab_size: int) -> torch.Tensor:
    """The complement map as an index tensor: token id -> id of its complement."""
    return torch.tensor([complement_map[i] for i in range(vocab_size)], dtype=torch.long)


class RCPSEmbedding(nn.Module):
    """[E(ids) | flip_LC(E(rc(ids)))]: each token embedded on both strands with one table."""

    def __init__(self, vocab_size: int, d_model: int, complement_map: dict[int, int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", complement_index(complement_map, vocab_size))
        self.embedding = nn.Embedding(vocab_size, d_model)

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rc_ids = self.complement_map[input_ids.flip(-1)]
        return torch.cat([self.embedding(input_ids), flip_LC(self.embedding(rc_ids))], dim=-1)


class RCPSWrapper(nn.Module):
    """[M(a) | flip_LC(M(flip_LC(b)))]: both strands through one module, as one doubled batch."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, batch = x.shape[-1] // 2, x.shape[0]
        out = self.submodule(torch.cat([x[..., :d], flip_LC(x[..., d:])], dim=0))
        return torch.cat([out[:batch], flip_LC(out[batch:])], dim=-1)


def rc_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[N(a) | flip_C(N(flip_C(b)))]: one per-position norm applied to both strands' halves."""
    d = x.shape[-1] // 2
    return torch.cat([apply_norm(norm, x[..., :d]), apply_norm(norm, x[..., d:], flipped=True)], dim=-1)


class RCPSLMHead(nn.Module):
    """logits = a W^T + flip_C(b) W[comp]^T for x = [a | b]: the RC-equivariant tied LM head."""

    def __init__(self, d_model: int, vocab_size: int, complement_map: dict[int, int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", complement_index(complement_map, vocab_size))
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    @property
    def weight(self) -> nn.Parameter:
        return self.lm_head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        w = self.weight
        return F.linear(x[..., :d], w) + F.linear(x[..., d:].flip(-1), w[self.complement_map])
