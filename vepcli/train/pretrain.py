"""Masked-LM pretraining (the Caduceus recipe) as a task of the training engine (`vepcli.train.engine`).

Sample i of step s is a window drawn by a generator seeded with (seed, s, i), reverse-complemented half the
time for Ph, and masked; the loss is the cross-entropy summed over the step's targets (all micro-batches,
all ranks) and divided by their number, so the update depends on neither the processes nor the micro-batches.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vepcli.genome import Genome
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.checkpoint import save_model
from vepcli.nn.tokenizer import MASK
from vepcli.runtime import grad_scaler
from vepcli.train.config import ARCHS, PretrainConfig, jsonable
from vepcli.train.data import (
    WindowSampler,
    reverse_complement_np,
    sample_rng,
    split_intervals,
    validation_set,
)
from vepcli.train.engine import Engine, Optimisation, Placement, Schedule, Task, launch, resume_point, say
from vepcli.train.masking import IGNORE, mask_window, masked_lm_sums
from vepcli.train.optim import build_optimizer, build_scheduler
from vepcli.train.report import plot_curves

LOG_COLUMNS = (
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "grad_norm",
    "tokens",
    "elapsed_s",
    "tokens_per_s",
    "val_loss",
    "val_acc",
    "val_acc_masked",
)
Pair = tuple[np.ndarray, np.ndarray]  # (masked ids, targets) of one window


def build_model(cfg: PretrainConfig) -> CaduceusForMaskedLM:
    config = CaduceusConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        rcps=ARCHS[cfg.arch],
        ssm_cfg={"d_state": cfg.d_state},
        max_length=cfg.seq_len,
    )
    return CaduceusForMaskedLM(config)


def make_sample(sampler: WindowSampler, cfg: PretrainConfig, step: int, index: int) -> Pair:
    """Sample `index` of step `step`: a window, reverse-complemented half the time for Ph, masked."""
    rng = sample_rng(cfg.seed, step, index)
    _, ids = sampler.draw(rng)
    if cfg.rc_aug and rng.random() < 0.5:
        ids = reverse_complement_np(ids)
    return mask_window(ids, rng, cfg.mask_prob)


def stack(pairs: list[Pair], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
    y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
    return x, y


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: list[Pair], place: Placement) -> dict[str, float]:
    """Validation loss and masked-token accuracy over all targets and over the [MASK]ed ones alone."""
    was_training = model.training
    model.eval()
    d = place.d
    mine = data[d.rank :: d.world]
    sums = [0.0] * 5
    for i in range(0, len(mine), place.micro):
        x, y = stack(mine[i : i + place.micro], place.device)
        with place.autocast():
            logits = model(x)
        ce, correct, n = masked_lm_sums(logits, y)
        at_mask = (x == MASK) & (y != IGNORE)
        correct_mask = (logits.argmax(-1)[at_mask] == y[at_mask]).sum()
        for j, v in enumerate((ce, correct, n, correct_mask, at_mask.sum())):
            sums[j] += float(v)
    ce, correct, n, correct_mask, n_mask = d.sum(sums, place.device)
    model.train(was_training)
    return {"val_loss": ce / max(n, 1), "val_acc": correct / max(n, 1), "val_acc_masked": correct_mask / max(n_mask, 1)}


class MaskedLMTask(Task):
    """Pretraining's data, loss, validation and outputs."""

    log_columns, rate_column, tensorboard = LOG_COLUMNS, "tokens_per_s", True

    def __init__(self, cfg: PretrainConfig, place: Placement, run_dir: Path) -> None:
        self.cfg, self.place, self.run_dir = cfg, place, run_dir
        genome = Genome(cfg.fasta)
        self.train_iv, val_iv = split_intervals(
            genome, cfg.intervals, cfg.val_intervals, cfg.val_regions, cfg.val_fraction
        )
        self.sampler = WindowSampler(genome, self.train_iv, cfg.seq_len, cfg.min_base_fraction)
        self.val_data = validation_set(
            genome, val_iv, cfg.seq_len, cfg.val_windows, cfg.seed, cfg.mask_prob, cfg.min_base_fraction
        )
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP checks nothing, it broadcasts)
        self.model = self.net = build_model(cfg).to(place.device)
        optimizer = build_optimizer([(self.model, cfg.lr)], cfg.weight_decay, cfg.betas)
        self.optimisation = Optimisation(
            optimizer,
            build_scheduler(optimizer, cfg.steps, cfg.warmup_frac, cfg.lr, cfg.min_lr),
            grad_scaler(place.amp),
            list(self.model.parameters()),
            cfg.grad_clip,
        )
        self.schedule = Schedule(cfg.steps, cfg.val_every, cfg.log_every, cfg.checkpoint_every, cfg.keep_checkpoints)
        self.per_step = cfg.batch_size * cfg.seq_len

    def batches(self, step: int) -> tuple[Iterable[Any], float]:
        cfg, place = self.cfg, self.place
        first = place.share().start
        batches = [
            stack(
                [make_sample(self.sampler, cfg, step, first + m * place.micro + i) for i in range(place.micro)],
                place.device,
            )
            for m in range(place.accum)
        ]
        targets = place.d.sum([float(sum(int((y != IGNORE).sum()) for _, y in batches))], place.device)[0]
        return batches, max(targets, 1.0)

    def forward(self, net: torch.nn.Module, batch: Any) -> torch.Tensor:
        return net(batch[0])

    def loss_sums(self, output: torch.Tensor, batch: Any) -> tuple[torch.Tensor, list[float]]:
        ce, right, _ = masked_lm_sums(output, batch[1])
        return ce, [float(right)]

    def step_figures(self, sums: list[float], norm: float, lrs: list[float], grad_norm: float, done: int) -> dict:
        ce, correct = sums
        return {
            "lr": lrs[0],
            "train_loss": ce / norm,
            "train_acc": correct / norm,
            "grad_norm": grad_norm,
            "tokens": done * self.per_step,
        }

    def validate(self, net: torch.nn.Module, done: int) -> dict[str, float]:
        return evaluate(self.model, self.val_data, self.place)

    def describe(self) -> str:
        cfg, place = self.cfg, self.place
        train_tokens = sum(len(iv) for iv in self.train_iv)
        return (
            f"{cfg.arch} d_model {cfg.d_model} n_layer {cfg.n_layer}: {self.model.num_parameters():,} parameters; "
            f"{len(self.train_iv)} training intervals ({train_tokens:,} bp), {len(self.val_data)} validation windows; "
            f"{place.d.world} process(es) x {place.accum} micro-batch(es) of {place.micro} on {place.device}"
        )

    def progress(self, row: dict[str, Any]) -> str:
        val = (
            f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} [MASK] acc {row['val_acc_masked']:.4f}"
            if "val_loss" in row
            else ""
        )
        return (
            f"step {row['step']}/{self.cfg.steps} loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} "
            f"lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s{val}"
        )

    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The final model in the published layout, its training record, and the curves."""
        cfg, last_val = self.cfg, outcome["last_val"]
        if self.place.d.main:
            out = save_model(self.model, self.run_dir / "model")
            record = {
                "command": cfg.command,
                "arch": cfg.arch,
                "parameters": self.model.num_parameters(),
                "steps": cfg.steps,
                "seq_len": cfg.seq_len,
                "batch_size": cfg.batch_size,
                "tokens": cfg.steps * self.per_step,
                "processes": self.place.d.world,
                "elapsed_s": round(outcome["elapsed_s"], 1),
                "cpu_s_rank0": round(outcome["cpu_s"], 1),
                "final_validation": last_val,
                "settings": {k: jsonable(v) for k, v in dataclasses.asdict(cfg).items() if k != "command"},
            }
            (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
            curves = self.run_dir / "curves.png"
            plot_curves(self.run_dir / "metrics.csv", curves)
            say(cfg.quiet, self.place.d, f"model written to {out} ({outcome['elapsed_s']:.0f} s); curves in {curves}")
        return {"steps": cfg.steps, "elapsed_s": outcome["elapsed_s"], **last_val}


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) a pretraining run into cfg.output; return the final validation figures."""
    run_dir = Path(cfg.output)
    with launch(cfg) as place:
        resume_from = resume_point(cfg, run_dir, place.d)
        return Engine(cfg, place, MaskedLMTask(cfg, place, run_dir), run_dir).run(resume_from)
