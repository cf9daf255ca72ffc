"""Next-token prediction, the hybrid's objective (HybriDNA): every base is a target of the position before it.

A window's inputs are its token ids with N (and any non-ACGT token) made [PAD], as in masked pretraining;
its labels are the ids with non-bases IGNOREd. The logits at position t predict the token at t + 1, so the
loss compares logits[:, :-1] with labels[:, 1:]: the first base of a window is never a target, and no
target is the successor of nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vepcli.nn.tokenizer import NUCLEOTIDES, PAD
from vepcli.train.masking import IGNORE

_IS_BASE = np.zeros(256, dtype=bool)
_IS_BASE[list(NUCLEOTIDES)] = True


def causal_pair(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) of one window: non-bases -> [PAD] in the inputs and IGNORE in the labels."""
    ids = np.asarray(ids, dtype=np.int64)
    is_base = _IS_BASE[ids]
    return np.where(is_base, ids, PAD), np.where(is_base, ids, IGNORE)


def next_token_targets(labels: torch.Tensor | np.ndarray) -> int:
    """The number of next-token targets of a batch of labels: the bases after each window's first position."""
    shifted = labels[..., 1:]
    return int((shifted != IGNORE).sum())


def causal_lm_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct predictions, targets) of logits[:, :-1] against labels[:, 1:].

    Sums, not means, as `masked_lm_sums`: the caller divides by the step's target count over all
    micro-batches and ranks, so the update does not depend on how the batch is split."""
    flat = logits[..., :-1, :].reshape(-1, logits.shape[-1]).float()
    y = labels[..., 1:].reshape(-1)
    ce = F.cross_entropy(flat, y, ignore_index=IGNORE, reduction="sum")
    keep = y != IGNORE
    correct = (flat.argmax(-1)[keep] == y[keep]).sum()
    return ce, correct, keep.sum()
