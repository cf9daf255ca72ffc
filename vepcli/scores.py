"""Variant effect scores: pure functions of tensors. Signs are documented in docs/scores.md.

- llr: log p(alt) - log p(ref) at the changed positions, read off one forward pass in which all
  of them are [MASK]ed (summed over positions for an MNV). Negative: the model finds the alternate
  allele less likely than the reference (the usual sign of a damaging variant).
- emb_l2: Euclidean distance between the pooled ref and alt embeddings (>= 0; larger = bigger effect).
- emb_cos: cosine distance 1 - cos(ref, alt) between them (0..2; larger = bigger effect).
"""

from __future__ import annotations

import torch

from vepcli.defaults import POOL_DEFAULT, SCORE_NAMES
from vepcli.nn.tokenizer import encode

__all__ = ["POOL_DEFAULT", "SCORE_NAMES", "emb_cos", "emb_l2", "llr", "pool_span"]


def pool_span(window: int, centre: int, pool: int = POOL_DEFAULT) -> tuple[int, int]:
    """[start, end) of `pool` + 1 positions centred on `centre`, clamped to the window."""
    half = pool // 2
    return max(0, centre - half), min(window, centre + half + 1)


def llr(logp: torch.Tensor, ref: str, alt: str) -> float:
    """Sum over changed positions of log p(alt base) - log p(ref base); `logp` is (len(ref), vocab)."""
    ref_ids, alt_ids = torch.from_numpy(encode(ref)), torch.from_numpy(encode(alt))
    rows = torch.arange(len(ref))
    return float((logp[rows, alt_ids] - logp[rows, ref_ids]).sum())


def emb_l2(ref: torch.Tensor, alt: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(alt.double() - ref.double()))


def emb_cos(ref: torch.Tensor, alt: torch.Tensor) -> float:
    return float(1.0 - torch.nn.functional.cosine_similarity(ref.double(), alt.double(), dim=0))
