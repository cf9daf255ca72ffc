"""What every pretraining objective shares: the model, the data split, the optimiser, the step's batches,
the loss and validation of either objective (`cfg.objective`), the log and the outputs. `train/pretrain.py`
adds each objective's samples and validation set.

Sample i of step s is a window drawn by a generator seeded with (seed, s, i), reverse-complemented half the
time when --rc-aug is on, and made into (inputs, labels) by the objective; the loss is the cross-entropy
summed over the step's targets (all micro-batches, all ranks) and divided by their number, so the update
depends on neither the processes nor the micro-batches.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vepcli.genome import Genome
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.backbone import Backbone
from vepcli.nn.checkpoint import save_model
from vepcli.nn.hybrid import HybridLM, MambaLMConfig
from vepcli.nn.tokenizer import MASK, VOCAB
from vepcli.nn.xlstm import build as build_xlstm
from vepcli.nn.xlstm_config import config_for_arch
from vepcli.regions import Interval
from vepcli.runtime import grad_scaler
from vepcli.train import checkpoints
from vepcli.train.causal import causal_lm_sums
from vepcli.train.config import ARCHS, PretrainConfig, settings
from vepcli.train.data import WindowSampler, reverse_complement_np, sample_rng, split_intervals
from vepcli.train.engine import Optimisation, Placement, Schedule, Task, say
from vepcli.train.masking import IGNORE, masked_lm_sums
from vepcli.train.optim import build_optimizer, build_scheduler
from vepcli.train.report import plot_curves

Pair = tuple[np.ndarray, np.ndarray]  # (inputs, labels) of one window


def hybrid_config(cfg: PretrainConfig) -> MambaLMConfig:
    """The hybrid of --arch hybrid: Mamba-2 blocks with attention at --attn-layers (rotary over the whole
    head, as many key/value heads as heads), the gated MLP when --d-intermediate > 0."""
    head = cfg.d_model // cfg.attn_heads
    return MambaLMConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        d_intermediate=cfg.d_intermediate,
        vocab_size=len(VOCAB),
        ssm_cfg={"layer": "Mamba2", "d_state": cfg.d_state, "headdim": cfg.headdim},
        attn_layer_idx=list(cfg.attn_layers),
        attn_cfg={"num_heads": cfg.attn_heads, "num_heads_kv": cfg.attn_heads, "rotary_emb_dim": head}
        if cfg.attn_layers
        else {},
        max_length=cfg.seq_len,
    )


def build_model(cfg: PretrainConfig) -> Backbone:
    """A freshly initialised model of cfg's --arch and shape."""
    if cfg.arch == "hybrid":
        return HybridLM(hybrid_config(cfg))
    if cfg.arch.startswith("xlstm-"):
        return build_xlstm(config_for_arch(cfg.arch, cfg.d_model, cfg.n_layer, cfg.seq_len, cfg.slstm_layers))
    config = CaduceusConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        rcps=ARCHS[cfg.arch].equivariant,
        ssm_cfg={"d_state": cfg.d_state},
        max_length=cfg.seq_len,
    )
    return CaduceusForMaskedLM(config)


def stack(pairs: list[Pair], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
    y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
    return x, y


SUMS = {"masked": masked_lm_sums, "causal": causal_lm_sums}


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: list[Pair], place: Placement, objective: str = "masked") -> dict[str, float]:
    """Validation loss and accuracy over all targets of the objective; masked: also over the [MASK]ed ones."""
    was_training = model.training
    model.eval()
    d = place.d
    mine = data[d.rank :: d.world]
    sums = [0.0] * 5
    for i in range(0, len(mine), place.micro):
        x, y = stack(mine[i : i + place.micro], place.device)
        with place.autocast():
            logits = model(x)
        ce, correct, n = SUMS[objective](logits, y)
        masked = (x == MASK) & (y != IGNORE)
        correct_mask = (logits.argmax(-1)[masked] == y[masked]).sum()
        for j, v in enumerate((ce, correct, n, correct_mask, masked.sum())):
            sums[j] += float(v)
    ce, correct, n, correct_mask, n_mask = d.sum(sums, place.device)
    model.train(was_training)
    figures = {"val_loss": ce / max(n, 1), "val_acc": correct / max(n, 1)}
    if objective == "masked":
        figures["val_acc_masked"] = correct_mask / max(n_mask, 1)
    return figures


class PretrainTask(Task):
    """Pretraining's data, model, optimiser and outputs; subclasses give the objective."""

    rate_column, tensorboard = "tokens_per_s", True

    def __init__(self, cfg: PretrainConfig, place: Placement, run_dir: Path) -> None:
        self.cfg, self.place, self.run_dir = cfg, place, run_dir
        genome = Genome(cfg.fasta)
        self.train_iv, val_iv = split_intervals(
            genome, cfg.intervals, cfg.val_intervals, cfg.val_regions, cfg.val_fraction
        )
        self.sampler = WindowSampler(genome, self.train_iv, cfg.seq_len, cfg.min_base_fraction)
        self.val_data = self.validation_data(genome, val_iv)
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
        keep = cfg.keep_checkpoints and max(cfg.keep_checkpoints, cfg.average_last)  # 0 keeps them all
        self.schedule = Schedule(cfg.steps, cfg.val_every, cfg.log_every, cfg.checkpoint_every, keep)
        self.per_step = cfg.batch_size * cfg.seq_len

    # the objective ---------------------------------------------------------------------------------
    @abstractmethod
    def validation_data(self, genome: Genome, intervals: list[Interval]) -> list[Pair]:
        """The fixed validation (inputs, labels) every evaluation sees."""

    @abstractmethod
    def make_pair(self, ids: np.ndarray, rng: np.random.Generator) -> Pair:
        """A training window's (inputs, labels), drawing what it needs from the sample's generator."""

    @abstractmethod
    def targets(self, labels: torch.Tensor) -> int:
        """The number of loss targets in a batch of labels."""

    @abstractmethod
    def val_progress(self, row: dict[str, Any]) -> str:
        """The validation figures of a progress line."""

    # shared ----------------------------------------------------------------------------------------
    def lm_sums(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed cross-entropy, correct predictions, targets) of a batch."""
        return SUMS[self.cfg.objective](logits, labels)

    def validate(self, net: torch.nn.Module, done: int) -> dict[str, float]:
        return evaluate(self.model, self.val_data, self.place, self.cfg.objective)

    def sample(self, step: int, index: int) -> Pair:
        """Sample `index` of step `step`: a window, reverse-complemented half the time with --rc-aug."""
        rng = sample_rng(self.cfg.seed, step, index)
        _, ids = self.sampler.draw(rng)
        if self.cfg.rc_aug and rng.random() < 0.5:
            ids = reverse_complement_np(ids)
        return self.make_pair(ids, rng)

    def batches(self, step: int) -> tuple[Iterable[Any], float]:
        place = self.place
        first = place.share().start
        batches = [
            stack([self.sample(step, first + m * place.micro + i) for i in range(place.micro)], place.device)
            for m in range(place.accum)
        ]
        targets = place.d.sum([float(sum(self.targets(y) for _, y in batches))], place.device)[0]
        return batches, max(targets, 1.0)

    def forward(self, net: torch.nn.Module, batch: Any) -> torch.Tensor:
        return net(batch[0])

    def loss_sums(self, output: torch.Tensor, batch: Any) -> tuple[torch.Tensor, list[float]]:
        ce, right, _ = self.lm_sums(output, batch[1])
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

    def describe(self) -> str:
        cfg, place = self.cfg, self.place
        train_tokens = sum(len(iv) for iv in self.train_iv)
        return (
            f"{cfg.arch} d_model {cfg.d_model} n_layer {cfg.n_layer}: {self.model.num_parameters():,} parameters; "
            f"{len(self.train_iv)} training intervals ({train_tokens:,} bp), {len(self.val_data)} validation windows; "
            f"{place.d.world} process(es) x {place.accum} micro-batch(es) of {place.micro} on {place.device}"
        )

    def progress(self, row: dict[str, Any]) -> str:
        val = self.val_progress(row) if "val_loss" in row else ""
        return (
            f"step {row['step']}/{self.cfg.steps} loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} "
            f"lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s{val}"
        )

    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The final model in the published layout, its training record, and the curves. With
        --average-last N the model is the mean of the last N checkpoints, and its validation is its own."""
        cfg, last_val = self.cfg, outcome["last_val"]
        averaged = checkpoints.average_last(self.run_dir, self.model, cfg.average_last) if cfg.average_last > 1 else []
        if averaged:
            last_val = self.validate(self.net, cfg.steps)
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
                "settings": settings(cfg),
            }
            if averaged:
                record["averaged_steps"] = averaged
            (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
            curves = self.run_dir / "curves.png"
            plot_curves(self.run_dir / "metrics.csv", curves, cfg.objective)
            say(cfg.quiet, self.place.d, f"model written to {out} ({outcome['elapsed_s']:.0f} s); curves in {curves}")
        return {"steps": cfg.steps, "elapsed_s": outcome["elapsed_s"], **last_val}
