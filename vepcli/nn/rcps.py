"""Reverse-complement parameter sharing (RCPS; Schiff et al. 2024, section 3.2): the pieces that make PS
models RC-equivariant, in one place.

The hidden state a PS model returns carries both strands in 2 d channels: the first half is the forward
strand, the second the reverse-complement strand stored flipped in length and channels, so that
RC(x) = flip_LC(x). Every module acts on the halves with shared weights:

    M_PS([a | b]) = [M(a) | flip_LC(M(flip_LC(b)))]

so inside the network the two strands run as the rows of one doubled batch, [a ; b'] with b' = flip_LC(b),
each module applied to every row (`strand_rows`), and the channel layout is made once, at the end
(`from_strand_rows`). The embedding and the tied LM head complement tokens through the vocabulary's
complement map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def flip_LC(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of a hidden tensor (batch, L, C) in the RC-equivariant layout."""
    return x.flip(-2, -1)


def complement_index(complement_map: dict[int, int], vocab_size: int) -> torch.Tensor:
    """The complement map as an index tensor: token id -> id of its complement."""
    return torch.tensor([complement_map[i] for i in range(vocab_size)], dtype=torch.long)


def from_strand_rows(rows: torch.Tensor) -> torch.Tensor:
    """[a ; b'] (2 batch, L, d) -> [a | flip_LC(b')] (batch, L, 2 d): the channel layout, made once."""
    batch = rows.shape[0] // 2
    return torch.cat([rows[:batch], flip_LC(rows[batch:])], dim=-1)


def swap_strand_rows(rows: torch.Tensor) -> torch.Tensor:
    """[a ; b'] -> [flip_LC(b') ; flip_LC(a)]: the halves [a | b] of the channel layout swapped to [b | a],
    in one copy (what the published fused add-norm does to the PS residual)."""
    return rows.unflatten(0, (2, -1)).flip(0, -2, -1).flatten(0, 1)


class RCPSEmbedding(nn.Module):
    """[E(ids) | flip_LC(E(rc(ids)))]: each token embedded on both strands with one table."""

    def __init__(self, vocab_size: int, d_model: int, complement_map: dict[int, int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", complement_index(complement_map, vocab_size))
        self.embedding = nn.Embedding(vocab_size, d_model)

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def strand_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[E(ids) ; E(rc(ids))] (2 batch, L, d): both strands as rows, the network's own layout."""
        return self.embedding(torch.cat([input_ids, self.complement_map[input_ids.flip(-1)]]))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return from_strand_rows(self.strand_rows(input_ids))


class RCPSWrapper(nn.Module):
    """M applied to both strands with shared weights: on strand rows [a ; b'], simply M of the batch.

    It holds the module under the name of the published checkpoints (`mixer.submodule.*`)."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.submodule(rows)


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
