"""BERT-style masking, the Caduceus recipe: 15% of the bases are targets; of those 80% -> [MASK],
10% -> a random base, 10% unchanged. N (and any non-ACGT token) becomes [PAD] in the input and is
never a target, so a window of Ns yields no targets (and the loss divides by max(count, 1)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vepcli.nn.tokenizer import MASK, NUCLEOTIDES, PAD

IGNORE = -100  # label of positions that are not targets (torch's cross_entropy default)
_BASES = np.array(NUCLEOTIDES, dtype=np.int64)
IS_BASE = np.zeros(256, dtype=bool)  # token id -> whether it is A, C, G or T (a possible target)
IS_BASE[list(NUCLEOTIDES)] = True


def mask_window(
    ids: np.ndarray,
    rng: np.random.Generator,
    mask_prob: float = 0.15,
    replace_mask: float = 0.8,
    replace_random: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) for one window of token ids; labels are IGNORE except at the targets.

    Every draw is made for every position, so the masks depend only on the generator's state and
    the window length, not on its content.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.shape[-1]
    is_base = IS_BASE[ids]
    chosen = (rng.random(n) < mask_prob) & is_base
    how = rng.random(n)
    random_bases = _BASES[rng.integers(0, len(_BASES), n)]
    inputs = np.where(is_base, ids, PAD)
    to_mask = chosen & (how < replace_mask)
    to_random = chosen & (how >= replace_mask) & (how < replace_mask + replace_random)
    inputs[to_mask] = MASK
    inputs[to_random] = random_bases[to_random]
    labels = np.where(chosen, ids, IGNORE)
    return inputs, labels


def masked_lm_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct predictions, targets) over the target positions.

    Sums, not means: the caller divides by the number of targets of the whole step, across
    micro-batches and ranks, so the loss never is 0/0 and does not depend on how the batch is split.
    """
    flat, y = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    ce = F.cross_entropy(flat, y, ignore_index=IGNORE, reduction="sum")
    keep = y != IGNORE
    correct = (flat.argmax(-1)[keep] == y[keep]).sum()
    return ce, correct, keep.sum()
