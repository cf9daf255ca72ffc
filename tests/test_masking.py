"""The masking recipe: 15% of bases are targets, 80/10/10, N never a target and [PAD] in the input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vepcli.nn.tokenizer import MASK, NUCLEOTIDES, PAD, N
from vepcli.train.masking import IGNORE, mask_window, masked_lm_sums


def _dna(n: int, n_frac: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.array(NUCLEOTIDES)[rng.integers(0, 4, n)]
    ids[rng.random(n) < n_frac] = N
    return ids


def test_masking_statistics_follow_the_recipe():
    ids = _dna(400_000, n_frac=0.2)
    inputs, labels = mask_window(ids, np.random.default_rng(1))
    is_base = ids != N
    target = labels != IGNORE
    assert not (target & ~is_base).any(), "an N became a target"
    assert (inputs[~is_base] == PAD).all(), "N must be [PAD] in the input"
    assert (labels[target] == ids[target]).all()
    assert (inputs[is_base & ~target] == ids[is_base & ~target]).all(), "non-targets must be left alone"
    assert target[is_base].mean() == pytest.approx(0.15, abs=0.003)
    to_mask = inputs[target] == MASK
    kept = inputs[target] == ids[target]
    other = ~to_mask & ~kept
    assert to_mask.mean() == pytest.approx(0.80, abs=0.006)
    # a random base equals the true one a quarter of the time: 10% + 10%/4 look unchanged
    assert kept.mean() == pytest.approx(0.10 + 0.10 / 4, abs=0.005)
    assert other.mean() == pytest.approx(0.10 * 3 / 4, abs=0.005)
    assert np.isin(inputs[target][other], NUCLEOTIDES).all(), "random replacements must be bases"


def test_masking_is_a_function_of_the_generator():
    ids = _dna(4096, 0.1)
    a = mask_window(ids, np.random.default_rng(7))
    b = mask_window(ids, np.random.default_rng(7))
    c = mask_window(ids, np.random.default_rng(8))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert not (a[1] == c[1]).all()


def test_all_n_window_has_no_targets_and_no_nan_loss():
    ids = np.full(512, N)
    inputs, labels = mask_window(ids, np.random.default_rng(0))
    assert (labels == IGNORE).all() and (inputs == PAD).all()
    logits = torch.randn(1, 512, 16, requires_grad=True)
    ce, correct, n = masked_lm_sums(logits, torch.from_numpy(labels)[None])
    loss = ce / max(int(n), 1)
    loss.backward()
    assert int(n) == 0 and int(correct) == 0 and float(loss.detach()) == 0.0
    assert math.isfinite(float(logits.grad.sum()))


def test_masked_lm_sums_match_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 64, 16)
    labels = torch.full((2, 64), IGNORE)
    labels[0, 3], labels[1, 10], labels[1, 11] = 7, 8, 10
    ce, correct, n = masked_lm_sums(logits, labels)
    assert int(n) == 3
    assert float(ce) == pytest.approx(3 * float(F.cross_entropy(logits.reshape(-1, 16), labels.reshape(-1))), rel=1e-6)
    expect = sum(int(logits[b, i].argmax() == labels[b, i]) for b, i in ((0, 3), (1, 10), (1, 11)))
    assert int(correct) == expect
