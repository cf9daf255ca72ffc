"""The examples a fine-tuning run trains on, and the rows of each optimizer step.

The batch of step s is a pure function of (seed, s): epoch e = s // S takes a permutation of the training
rows drawn from a generator seeded with [seed, 1, e]. So a resumed run takes exactly the steps of an
uninterrupted one, and W processes take the same steps as one process with gradient accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vepcli.errors import UserError
from vepcli.features import Labels, covariate_levels, make_labels, one_hot
from vepcli.finetune.config import FinetuneConfig
from vepcli.finetune.data import Examples, Split, read_labelled_intervals, read_labelled_variants, split_examples
from vepcli.genome import Genome
from vepcli.scores import pool_span

DEFAULT_WINDOW = 1024
MAX_WINDOW = 131_072


@dataclass
class Data:
    """Everything the loop needs about the examples, on the CPU."""

    examples: Examples
    labels: Labels
    split: Split
    covariates: torch.Tensor  # (n, levels) one-hot
    levels: dict[str, list[str]]
    window: int
    span: tuple[int, int]
    class_weights: torch.Tensor  # (n_classes,)


@dataclass
class Batch:
    """Rows of one micro-batch on the device: token ids (ref, and alt for variants) or cached features."""

    ids: torch.Tensor | None
    alt_ids: torch.Tensor | None
    covariates: torch.Tensor
    y: torch.Tensor
    features: torch.Tensor | None


def load_data(cfg: FinetuneConfig, genome: Genome, model_max_length: int | None) -> Data:
    """Read, window, label and split the training file; covariate levels come from the training rows."""
    window = cfg.window
    if cfg.intervals:
        examples = read_labelled_intervals(cfg.train, genome, window, cfg.covariates, cfg.label, cfg.max_n_fraction)
    else:
        window = window or min(DEFAULT_WINDOW, model_max_length or DEFAULT_WINDOW)
        extra = [c for c in dict.fromkeys([cfg.label, *cfg.covariates, cfg.split_column]) if c]
        examples = read_labelled_variants(cfg.train, genome, window, extra, cfg.max_n_fraction)
    if not 1 <= examples.window <= MAX_WINDOW:
        raise UserError(f"--window {examples.window} is outside 1..{MAX_WINDOW}")
    labels, has = make_labels(examples.table[cfg.label], cfg.label, cfg.positive)
    if not has.all():
        examples = examples.subset(has)
        labels.y = labels.y[has]
    split = split_examples(
        examples.table,
        split_column=cfg.split_column,
        val_chroms=cfg.val_chroms,
        val_fraction=cfg.val_fraction,
        buffer_bp=examples.window,
    )
    levels = covariate_levels(examples.table.iloc[split.train], cfg.covariates)
    cov = torch.from_numpy(one_hot(examples.table, levels, len(examples)))
    W = examples.window
    span = (0, W) if cfg.intervals else pool_span(W, W // 2, cfg.pool)
    weights = class_weights(labels, split, cfg.class_weight, cfg.metric)
    return Data(examples, labels, split, cov, levels, W, span, weights)


def class_weights(labels: Labels, split: Split, how: str, metric: str) -> torch.Tensor:
    """Loss weight per class (`balanced`: n / (classes x count)); refuses splits a class is missing from."""
    counts = np.bincount(labels.y[split.train], minlength=labels.n_classes)
    if (counts == 0).any():
        missing = [c for c, k in zip(labels.classes, counts, strict=True) if k == 0]
        raise UserError(f"class(es) {', '.join(missing)} have no training rows in this split")
    if metric == "auroc" and len(np.unique(labels.y[split.val])) < labels.n_classes:
        raise UserError(
            "the validation rows lack some classes, so AUROC is undefined; use --metric loss or another split"
        )
    weights = len(split.train) / (labels.n_classes * counts) if how == "balanced" else np.ones(labels.n_classes)
    return torch.tensor(weights, dtype=torch.float32)


def step_indices(seed: int, step: int, steps_per_epoch: int, train: np.ndarray, batch: int) -> np.ndarray:
    """The training rows of optimizer step `step`: a slice of epoch step // S's own permutation."""
    epoch, i = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, 1, epoch]).permutation(len(train))
    return train[perm[i * batch : (i + 1) * batch]]


def batch_tensors(data: Data, idx: np.ndarray, device: torch.device, feats: torch.Tensor | None) -> Batch:
    """Rows `idx` on `device`; with `feats` (a frozen backbone's cached features) no token ids are needed."""
    y = torch.from_numpy(data.labels.y[idx]).to(device)
    cov = data.covariates[idx].to(device)
    if feats is not None:
        return Batch(None, None, cov, y, feats[idx].to(device))
    ex = data.examples
    ids = torch.from_numpy(ex.ids[idx].astype(np.int64)).to(device)
    alt = None if ex.alt_ids is None else torch.from_numpy(ex.alt_ids[idx].astype(np.int64)).to(device)
    return Batch(ids, alt, cov, y, None)
