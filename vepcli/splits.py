"""Held-out rows in genome order, for the probe's cross-validation and fine-tuning's splits.

Neighbouring variants share sequence, so a random split leaks: a test variant's window overlaps its
training neighbours'. Held-out rows are therefore contiguous blocks in genome order, and training rows
within a window of a held-out row are dropped. Genome order is one order everywhere: contigs in the order
they first appear in the table (the input's own order, as a sorted VCF has them), then position.
"""

from __future__ import annotations

import numpy as np


def genome_order(chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Row indexes sorted by contig (first appearance) then position; ties keep the input order."""
    rank = {c: i for i, c in enumerate(dict.fromkeys(chrom))}
    return np.lexsort((pos, np.array([rank[c] for c in chrom], dtype=np.int64)))


def genome_blocks(chrom: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, block of each row): k contiguous blocks of (nearly) equal size in genome order."""
    order = genome_order(chrom, pos)
    blocks = np.empty(len(pos), dtype=int)
    blocks[order] = np.arange(len(pos)) * k // len(pos)
    return order, blocks


def genome_tail(order: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(head, tail) of rows already in genome order, the tail the last `fraction` of them (at least one),
    each sorted by row index."""
    n_tail = max(1, round(fraction * len(order)))
    return np.sort(order[: len(order) - n_tail]), np.sort(order[len(order) - n_tail :])


def drop_near_test_rows(train: np.ndarray, test: np.ndarray, chrom: np.ndarray, pos: np.ndarray, bp: int) -> np.ndarray:
    """Drop training rows within `bp` of a test row on the same contig: their windows share sequence."""
    if bp <= 0:
        return train
    keep = np.ones(len(train), dtype=bool)
    for c in np.unique(chrom[test]):
        test_pos = np.sort(pos[test][chrom[test] == c])
        on_c = chrom[train] == c
        p = pos[train][on_c]
        i = np.clip(np.searchsorted(test_pos, p), 1, len(test_pos)) - 1
        j = np.clip(i + 1, 0, len(test_pos) - 1)
        near = np.minimum(np.abs(p - test_pos[i]), np.abs(p - test_pos[j])) < bp
        keep[np.flatnonzero(on_c)[near]] = False
    return train[keep]
