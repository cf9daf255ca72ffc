"""Pretraining objectives as tasks of the training engine (`vepcli.train.engine`), on the shared parts of
`vepcli.train.lmtask`: masked-LM (the Caduceus recipe) and next-token prediction (the hybrid's).

Masked: 15% of the bases are targets, mostly [MASK]ed (`masking.py`); validation reports the loss and the
accuracy over all targets and over the [MASK]ed ones. Causal: every base after a window's first is the
target of the position before it (`causal.py`); validation reports the next-token loss and accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vepcli.genome import Genome
from vepcli.regions import Interval
from vepcli.train.causal import causal_pair, causal_validation_set, next_token_targets
from vepcli.train.config import PretrainConfig
from vepcli.train.data import validation_set
from vepcli.train.engine import Engine, launch, resume_point
from vepcli.train.lmtask import Pair, PretrainTask
from vepcli.train.masking import IGNORE, mask_window

COMMON_COLUMNS = ("step", "lr", "train_loss", "train_acc", "grad_norm", "tokens", "elapsed_s", "tokens_per_s")


class MaskedLMTask(PretrainTask):
    """Masked-LM pretraining (Caduceus): BERT-style masks, loss at the targets."""

    log_columns = (*COMMON_COLUMNS, "val_loss", "val_acc", "val_acc_masked")

    def validation_data(self, genome: Genome, intervals: list[Interval]) -> list[Pair]:
        cfg = self.cfg
        return validation_set(
            genome, intervals, cfg.seq_len, cfg.val_windows, cfg.seed, cfg.mask_prob, cfg.min_base_fraction
        )

    def make_pair(self, ids: np.ndarray, rng: np.random.Generator) -> Pair:
        return mask_window(ids, rng, self.cfg.mask_prob)

    def targets(self, labels: torch.Tensor) -> int:
        return int((labels != IGNORE).sum())

    def val_progress(self, row: dict[str, Any]) -> str:
        return f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} [MASK] acc {row['val_acc_masked']:.4f}"


class CausalLMTask(PretrainTask):
    """Next-token pretraining (the hybrid): every base after a window's first is a target."""

    log_columns = (*COMMON_COLUMNS, "val_loss", "val_acc")

    def validation_data(self, genome: Genome, intervals: list[Interval]) -> list[Pair]:
        """The same windows as masked pretraining's validation set (and the k-mer baseline's), unmasked."""
        cfg = self.cfg
        return causal_validation_set(genome, intervals, cfg.seq_len, cfg.val_windows, cfg.min_base_fraction)

    def make_pair(self, ids: np.ndarray, rng: np.random.Generator) -> Pair:
        return causal_pair(ids)

    def targets(self, labels: torch.Tensor) -> int:
        return next_token_targets(labels)

    def val_progress(self, row: dict[str, Any]) -> str:
        return f" | val next-token loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"


TASKS = {"masked": MaskedLMTask, "causal": CausalLMTask}


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) a pretraining run into cfg.output; return the final validation figures."""
    run_dir = Path(cfg.output)
    with launch(cfg) as place:
        resume_from = resume_point(cfg, run_dir, place.d)
        return Engine(cfg, place, TASKS[cfg.objective](cfg, place, run_dir), run_dir).run(resume_from)
