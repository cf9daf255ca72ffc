"""Next-token prediction, the hybrid's objective (HybriDNA): every base is a target of the position before it.

A window's inputs are its token ids with N (and any non-ACGT token) made [PAD], as in masked pretraining;
its labels are the ids with non-bases IGNOREd. The logits at position t predict the token at t + 1, so the
loss compares logits[:, :-1] with labels[:, 1:]: the first base of a window is never a target, and no
target is the successor of nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vepcli.genome import Genome
from vepcli.nn.tokenizer import PAD
from vepcli.regions import Interval
from vepcli.train.data import tile_windows
from vepcli.train.masking import IGNORE, IS_BASE, masked_lm_sums


def causal_pair(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) of one window: non-bases -> [PAD] in the inputs and IGNORE in the labels."""
    ids = np.asarray(ids, dtype=np.int64)
    is_base = IS_BASE[ids]
    return np.where(is_base, ids, PAD), np.where(is_base, ids, IGNORE)


def causal_validation_set(
    genome: Genome, intervals: Sequence[Interval], seq_len: int, n_windows: int, min_base_fraction: float = 0.5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The windows of masked pretraining's validation set (`validation_set`), unmasked: what every causal
    evaluation and the causal k-mer baseline see."""
    return [causal_pair(ids) for _, ids in tile_windows(genome, intervals, seq_len, n_windows, min_base_fraction)]


def next_token_targets(labels: torch.Tensor | np.ndarray) -> int:
    """The number of next-token targets of a batch of labels: the bases after each window's first position."""
    shifted = labels[..., 1:]
    return int((shifted != IGNORE).sum())


def causal_lm_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct predictions, targets) of logits[:, :-1] against labels[:, 1:]: the
    masked-LM sums (`masked_lm_sums`) with each position's label the next token's."""
    return masked_lm_sums(logits[..., :-1, :], labels[..., 1:])
