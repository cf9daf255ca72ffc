"""Fine-tuning as a task of the training engine: backbone + head on labelled variants or intervals.

The engine (`vepcli.train.engine`) is pretraining's: AdamW with the recipe's no-decay groups (here the head
and the backbone at separate rates), linear warmup + cosine, gradient clipping, autocast on GPUs, atomic
checkpoints with RNG states, DistributedDataParallel under torchrun, early stopping on a validation metric.
This module supplies the rest: the examples and the rows of each step (`batches`), the weighted
cross-entropy, validation (`evaluate`), the best model kept in run_dir/best, and the final model directory.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vepcli.errors import UserError
from vepcli.finetune.batches import Batch, batch_tensors, load_data, step_indices
from vepcli.finetune.config import LAYOUTS, METRICS, FinetuneConfig
from vepcli.finetune.evaluate import classification_metrics, compute_features, predict
from vepcli.finetune.model import (
    HEAD_NAME,
    FinetuneNet,
    Head,
    load_finetuned,
    load_head_state,
    save_finetuned,
    save_head,
)
from vepcli.finetune.record import RunPlan, base_identity, describe, finetune_meta
from vepcli.genome import Genome
from vepcli.nn.checkpoint import load_model
from vepcli.nn.hub import default_model, resolve_model_dir
from vepcli.nn.strand import check_echo
from vepcli.runtime import grad_scaler
from vepcli.train import checkpoints, distributed
from vepcli.train.engine import (
    EarlyStopping,
    Engine,
    Optimisation,
    Placement,
    Schedule,
    Task,
    launch,
    resume_point,
    say,
)
from vepcli.train.optim import build_optimizer, warmup_cosine

STANDARDISE_ROWS = 2048  # training rows whose initial features set the head's standardisation
LOG_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "backbone_lr",
    "train_loss",
    "grad_norm",
    "elapsed_s",
    "examples_per_s",
    "val_loss",
    "val_accuracy",
    "val_auroc",
    "val_auprc",
)


class FinetuneTask(Task):
    """One fine-tuning run's data, model, loss, validation and outputs."""

    log_columns, rate_column = LOG_COLUMNS, "examples_per_s"

    def __init__(self, cfg: FinetuneConfig, place: Placement, run_dir: Path) -> None:
        self.cfg, self.place, self.run_dir = cfg, place, run_dir
        base_dir = resolve_model_dir(cfg.model or default_model())
        lm = load_model(base_dir)
        check_echo(lm, cfg.echo)  # before the data is read
        base = base_identity(base_dir, lm)
        self.data = load_data(cfg, Genome(cfg.fasta), lm.trained_length)
        lm.trained_length = self.data.window  # `vepcli score --model` then defaults to the fine-tuning window
        steps_per_epoch = len(self.data.split.train) // cfg.batch_size
        if steps_per_epoch == 0:
            raise UserError(
                f"--batch-size {cfg.batch_size} is larger than the {len(self.data.split.train)} training rows"
            )
        self.plan = RunPlan(cfg, self.data, base, cfg.epochs * steps_per_epoch, steps_per_epoch)
        val_every = cfg.val_every or steps_per_epoch
        self.schedule = Schedule(
            self.plan.total, val_every, cfg.log_every, cfg.checkpoint_every or val_every, cfg.keep_checkpoints
        )
        self.stopper = EarlyStopping(cfg.metric, METRICS[cfg.metric] == "max", cfg.patience)
        self.per_step = cfg.batch_size
        self._build(lm)
        self.figures: dict[str, float] = {}

    def _build(self, lm: torch.nn.Module) -> None:
        """Head, model, optimizer, schedule, gradient scaler; cached features for a frozen backbone."""
        cfg, data = self.cfg, self.data
        torch.manual_seed(cfg.seed)
        n_feat = len(LAYOUTS[cfg.layout]) * lm.hidden_width
        head = Head(n_feat, data.covariates.shape[1], data.labels.n_classes, cfg.head_hidden, cfg.dropout)
        self.net = FinetuneNet(lm, head, data.examples.mode, cfg.layout, data.span, cfg.freeze_backbone, cfg.echo)
        self.net.to(self.place.device)
        self.model = lm
        if cfg.freeze_backbone:
            lm.requires_grad_(False)
        parts = [(self.net.head, cfg.lr)] + ([] if cfg.freeze_backbone else [(lm, cfg.backbone_lr)])
        optimizer = build_optimizer(parts, cfg.weight_decay, betas=(0.9, 0.999))
        self.optimisation = Optimisation(
            optimizer,
            warmup_cosine(optimizer, self.plan.total, cfg.warmup_frac, cfg.min_lr_ratio),
            grad_scaler(self.place.amp),
            [p for p in self.net.parameters() if p.requires_grad],
            cfg.grad_clip,
        )
        self.feats = None
        if cfg.freeze_backbone:  # the backbone never changes: pool every row once
            self.feats = compute_features(self.net, data, np.arange(len(data.examples)), self.place)
        self.weights = data.class_weights.to(self.place.device)

    def start_fresh(self) -> None:
        """The head's standardisation, from the initial features of (up to) STANDARDISE_ROWS training rows."""
        train = self.data.split.train
        rows = np.sort(train[np.random.default_rng([self.cfg.seed, 2]).permutation(len(train))][:STANDARDISE_ROWS])
        f = self.feats[rows] if self.feats is not None else compute_features(self.net, self.data, rows, self.place)
        self.net.head.set_standardisation(f)

    # ------------------------------------------------------------ one step
    def batches(self, step: int) -> tuple[Iterable[Batch], float]:
        cfg, data, place = self.cfg, self.data, self.place
        idx = step_indices(cfg.seed, step, self.plan.steps_per_epoch, data.split.train, cfg.batch_size)
        norm = float(data.class_weights[torch.from_numpy(data.labels.y[idx])].sum())
        return self._micro_batches(idx[place.share()]), norm

    def _micro_batches(self, mine: np.ndarray) -> Iterator[Batch]:
        micro = self.place.micro
        for m in range(self.place.accum):
            yield batch_tensors(self.data, mine[m * micro : (m + 1) * micro], self.place.device, self.feats)

    def forward(self, net: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return net(batch.ids, batch.alt_ids, batch.covariates, batch.features)

    def loss_sums(self, output: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, list[float]]:
        return F.cross_entropy(output.float(), batch.y, weight=self.weights, reduction="sum"), []

    def step_figures(self, sums: list[float], norm: float, lrs: list[float], grad_norm: float, done: int) -> dict:
        return {
            "epoch": round(done / self.plan.steps_per_epoch, 4),
            "lr": lrs[0],
            "backbone_lr": None if self.cfg.freeze_backbone else lrs[-1],
            "train_loss": sums[0] / norm,
            "grad_norm": grad_norm,
        }

    # ------------------------------------------------------------ validation and outputs
    def validate(self, net: torch.nn.Module, done: int) -> dict[str, float]:
        data = self.data
        proba = predict(net, data, data.split.val, self.place, self.feats)
        self.figures = classification_metrics(data.labels.y[data.split.val], proba)
        return {f"val_{k}": v for k, v in self.figures.items() if k != "n"}

    def keep_best(self, done: int) -> None:
        """The best model so far, in run_dir/best."""
        if self.place.d.main:
            meta = finetune_meta(self.plan, self.net.lm, self.figures, done)
            save_finetuned(self.net.lm, self.net.head, meta, self.run_dir / "best")

    def save_extras(self, folder: Path) -> None:
        save_head(self.net.head, folder / HEAD_NAME)

    def load_extras(self, folder: Path) -> None:
        load_head_state(self.net.head, folder / HEAD_NAME)

    def describe(self) -> str:
        return describe(self.plan, self.net.lm, self.place)

    def progress(self, row: dict[str, Any]) -> str:
        metric = self.cfg.metric
        val = f" val {metric} {row[f'val_{metric}']:.4f}" if "val_loss" in row else ""
        return f"step {row['step']}/{self.plan.total} loss {row['train_loss']:.4f} lr {row['lr']:.2e}{val}"

    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The best validated model becomes run_dir/model, with test figures when the split has test rows."""
        if not self.place.d.main:
            return {}
        cfg, data = self.cfg, self.data
        best = load_finetuned(self.run_dir / "best", device=self.place.device)
        meta = dict(best.meta)
        found = checkpoints.list_checkpoints(self.run_dir)
        meta["training"] = {
            **meta["training"],
            "steps_done": found[-1][0] if found else 0,
            "stopped_early": self.stopper.stopped_early,
        }
        if len(data.split.test):
            net = FinetuneNet(best.model, best.head, data.examples.mode, cfg.layout, data.span).to(self.place.device)
            alone = dataclasses.replace(self.place, d=distributed.Dist())
            meta["test"] = classification_metrics(
                data.labels.y[data.split.test], predict(net, data, data.split.test, alone)
            )
        out = save_finetuned(best.model, best.head, meta, self.run_dir / "model")
        shutil.rmtree(self.run_dir / "best", ignore_errors=True)
        figures = {f"val_{k}": v for k, v in meta["validation"].items() if isinstance(v, float)}
        figures.update({f"test_{k}": v for k, v in meta.get("test", {}).items() if isinstance(v, float)})
        summary = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if math.isfinite(v))
        say(cfg.quiet, self.place.d, f"model written to {out} (best step {meta['training']['best_step']}): {summary}")
        return {**figures, "best_step": meta["training"]["best_step"], "model_dir": str(out)}


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run into cfg.output; return the final validation (and test) figures."""
    run_dir = Path(cfg.output)
    with launch(cfg) as place:
        if (run_dir / "model" / "finetune.json").is_file() and not (run_dir / "checkpoints").is_dir():
            raise UserError(f"{run_dir} already holds a finished fine-tuned model; choose another -o")
        resume_from = resume_point(cfg, run_dir, place.d)
        return Engine(cfg, place, FinetuneTask(cfg, place, run_dir), run_dir).run(resume_from)
