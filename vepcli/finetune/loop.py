"""The fine-tuning loop: backbone + head on labelled variants or intervals, for one process or several.

Engineering is pretraining's (`vepcli/train/`): AdamW with the recipe's no-decay groups (separate learning
rates for head and backbone), linear warmup + cosine, gradient clipping, autocast on GPUs, atomic
checkpoints with RNG states (`vepcli.train.checkpoints`), DistributedDataParallel under torchrun
(`vepcli.train.distributed`). The batch of step s is a pure function of (seed, s): epoch e = s // S takes
a permutation of the training rows drawn from a generator seeded with [seed, 1, e], and rank r of W takes
its share of each batch. So a resumed run takes exactly the steps of an uninterrupted one, and W
processes take the same steps as one process with gradient accumulation.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vepcli import __version__
from vepcli.defaults import POOL_DEFAULT
from vepcli.errors import UserError
from vepcli.finetune.data import (
    Examples,
    Labels,
    Split,
    covariate_levels,
    make_labels,
    one_hot,
    read_labelled_intervals,
    read_labelled_variants,
    split_examples,
)
from vepcli.finetune.model import (
    HEAD_NAME,
    LAYOUTS,
    FinetuneNet,
    Head,
    load_head_state,
    save_finetuned,
    save_head,
)
from vepcli.genome import Genome
from vepcli.modelinfo import config_hash
from vepcli.nn.checkpoint import load_model
from vepcli.nn.hub import resolve_model_dir
from vepcli.scores import pool_span
from vepcli.train import checkpoints, distributed
from vepcli.train.config import jsonable
from vepcli.train.loop import pick_device, pick_precision
from vepcli.train.optim import WarmupCosine, param_groups

METRICS = {"auroc": "max", "accuracy": "max", "loss": "min"}
DEFAULT_WINDOW = 1024
STANDARDISE_ROWS = 2048  # training rows whose initial features set the head's standardisation
# settings a resumed run must share with the run it continues (the others change only speed or logging)
_RUN_DEFINING = (
    "train",
    "fasta",
    "model",
    "label",
    "intervals",
    "covariates",
    "positive",
    "split_column",
    "val_chroms",
    "val_fraction",
    "window",
    "pool",
    "layout",
    "head_hidden",
    "dropout",
    "epochs",
    "batch_size",
    "lr",
    "backbone_lr",
    "weight_decay",
    "warmup_frac",
    "min_lr_ratio",
    "grad_clip",
    "freeze_backbone",
    "class_weight",
    "metric",
    "val_every",
    "patience",
    "max_n_fraction",
    "seed",
)
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


@dataclass
class FinetuneConfig:
    """Every setting of `vepcli finetune` (see docs/finetuning.md)."""

    train: str
    fasta: str
    output: str
    model: str | None = None
    label: str | None = None
    intervals: bool = False
    covariates: tuple[str, ...] = ()
    positive: str | None = None
    split_column: str | None = None
    val_chroms: tuple[str, ...] = ()
    val_fraction: float = 0.2
    window: int | None = None
    pool: int = POOL_DEFAULT
    layout: str = "ref-alt-diff"
    head_hidden: int = 64
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 16
    micro_batch: int | None = None
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    freeze_backbone: bool = False
    class_weight: str = "none"
    metric: str = "auroc"
    val_every: int | None = None
    patience: int = 3
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    log_every: int = 10
    max_n_fraction: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int = 1
    resume: bool = False
    quiet: bool = False
    command: str = field(default_factory=lambda: " ".join(["vepcli", *sys.argv[1:]]))

    def __post_init__(self) -> None:
        self.covariates, self.val_chroms = tuple(self.covariates), tuple(self.val_chroms)
        if Path(self.train).name.lower().endswith((".bed", ".bed.gz")):
            self.intervals = True
        if self.intervals:
            self.layout = "seq"
            if self.label is None and Path(self.train).name.lower().endswith((".bed", ".bed.gz")):
                self.label = "label"  # a BED's 4th column
        elif self.layout not in LAYOUTS or self.layout == "seq":
            raise UserError(f"--features must be one of ref-alt-diff, ref-alt, diff, not {self.layout!r}")
        if self.label is None:
            raise UserError("--label COLUMN is needed: the column (or VCF INFO field) that holds the class")
        if self.metric not in METRICS:
            raise UserError(f"--metric must be one of {', '.join(METRICS)}")
        if self.class_weight not in ("none", "balanced"):
            raise UserError("--class-weight must be none or balanced")
        for name in ("epochs", "batch_size", "log_every", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.head_hidden < 0 or not 0 <= self.dropout < 1 or self.patience < 0:
            raise UserError("--head-hidden and --patience must be >= 0 and --dropout in [0, 1)")

    def run_defining(self) -> dict[str, Any]:
        return {k: jsonable(getattr(self, k)) for k in _RUN_DEFINING}


def _say(cfg: FinetuneConfig, d: distributed.Dist, msg: str) -> None:
    if d.main and not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


def _autocast(device: torch.device, amp: torch.dtype | None):
    return contextlib.nullcontext() if amp is None else torch.autocast(device.type, dtype=amp)


# ---------------------------------------------------------------- data set-up


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


def load_data(cfg: FinetuneConfig, genome: Genome, model_max_length: int | None) -> Data:
    """Read, window, label and split the training file; covariate levels come from the training rows."""
    window = cfg.window
    if cfg.intervals:
        examples = read_labelled_intervals(cfg.train, genome, window, cfg.covariates, cfg.label, cfg.max_n_fraction)
    else:
        window = window or min(DEFAULT_WINDOW, model_max_length or DEFAULT_WINDOW)
        extra = [c for c in dict.fromkeys([cfg.label, *cfg.covariates, cfg.split_column]) if c]
        examples = read_labelled_variants(cfg.train, genome, window, extra, cfg.max_n_fraction)
    if not 1 <= examples.window <= 131_072:
        raise UserError(f"--window {examples.window} is outside 1..131072")
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
    weights = _class_weights(labels, split, cfg.class_weight, cfg.metric)
    return Data(examples, labels, split, cov, levels, W, span, weights)


def _class_weights(labels: Labels, split: Split, how: str, metric: str) -> torch.Tensor:
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


# ---------------------------------------------------------------- model set-up


def build_optimizer(net: FinetuneNet, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """Head and backbone as separate AdamW groups (each split into decay / no-decay as pretraining does)."""
    groups = []
    for module, lr in ((net.head, cfg.lr), (net.lm, cfg.backbone_lr)):
        if module is net.lm and cfg.freeze_backbone:
            continue
        for g in param_groups(module, cfg.weight_decay):
            if g["params"]:
                groups.append({**g, "lr": lr})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def _batch_tensors(data: Data, idx: np.ndarray, device: torch.device, feats: torch.Tensor | None):
    """(ids, alt ids, covariates, labels, cached features) of rows `idx` on `device`."""
    y = torch.from_numpy(data.labels.y[idx]).to(device)
    cov = data.covariates[idx].to(device)
    if feats is not None:
        return None, None, cov, y, feats[idx].to(device)
    ex = data.examples
    ids = torch.from_numpy(ex.ids[idx].astype(np.int64)).to(device)
    alt = None if ex.alt_ids is None else torch.from_numpy(ex.alt_ids[idx].astype(np.int64)).to(device)
    return ids, alt, cov, y, None


@torch.no_grad()
def compute_features(
    net: FinetuneNet, data: Data, idx: np.ndarray, micro: int, device: torch.device, amp: torch.dtype | None
) -> torch.Tensor:
    """Pooled features of rows `idx` (CPU float32), in eval mode."""
    was = net.training
    net.eval()
    out = []
    for i in range(0, len(idx), micro):
        ids, alt, _, _, _ = _batch_tensors(data, idx[i : i + micro], device, None)
        with _autocast(device, amp):
            out.append(net.features(ids, alt).float().cpu())
    net.train(was)
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def predict(
    net: torch.nn.Module,
    data: Data,
    idx: np.ndarray,
    micro: int,
    device: torch.device,
    amp: torch.dtype | None,
    d: distributed.Dist,
    feats: torch.Tensor | None = None,
) -> np.ndarray:
    """(len(idx), n_classes) probabilities; the rows are shared out over the ranks and summed back."""
    was = net.training
    net.eval()
    n_classes = data.labels.n_classes
    out = np.zeros((len(idx), n_classes))
    mine = np.arange(d.rank, len(idx), d.world)
    for i in range(0, len(mine), micro):
        pos = mine[i : i + micro]
        ids, alt, cov, _, f = _batch_tensors(data, idx[pos], device, feats)
        with _autocast(device, amp):
            logits = net(ids, alt, cov, f)
        out[pos] = torch.softmax(logits.float(), -1).double().cpu().numpy()
    net.train(was)
    if d.world > 1:
        out = np.array(d.sum(out.ravel().tolist(), device)).reshape(len(idx), n_classes)
    return out


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Loss (mean cross-entropy), accuracy, AUROC (binary; macro one-vs-rest for more classes), AUPRC (binary)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = np.clip(proba, 1e-12, 1.0)
    out = {
        "loss": float(-np.log(p[np.arange(len(y)), y]).mean()),
        "accuracy": float((proba.argmax(1) == y).mean()),
        "auroc": float("nan"),
        "auprc": float("nan"),
        "n": len(y),
    }
    if len(np.unique(y)) == proba.shape[1]:
        if proba.shape[1] == 2:
            out["auroc"] = float(roc_auc_score(y, proba[:, 1]))
            out["auprc"] = float(average_precision_score(y, proba[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    return out


def _improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if METRICS[metric] == "max" else value < best


# ---------------------------------------------------------------- metrics log


class FinetuneLog:
    """metrics.csv, one row per logged step; on resume the rows past the checkpoint are dropped."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / "metrics.csv"
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, LOG_COLUMNS).writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})


def _fmt(v: Any) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def read_log(path: Path) -> list[dict[str, float | None]]:
    """metrics.csv as dicts of floats (None where empty)."""
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(fh)]


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    run_dir: Path, step: int, net: FinetuneNet, optimizer, scheduler, scaler, state: dict[str, Any]
) -> Path:
    """pretraining's checkpoint (backbone in the published layout, optimizer, scheduler, scaler, RNG states)
    plus head.safetensors, made in a staging folder and renamed in one step: a kill leaves the old one."""
    staging = run_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    made = checkpoints.save_checkpoint(staging, step, net.lm, optimizer, scheduler, scaler, state)
    save_head(net.head, made / HEAD_NAME)
    final = run_dir / "checkpoints" / f"step-{step}"
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(made, final)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def load_checkpoint(path: Path, net: FinetuneNet, optimizer, scheduler, scaler) -> dict[str, Any]:
    state = checkpoints.load_checkpoint(path, net.lm, optimizer, scheduler, scaler)
    load_head_state(net.head, path / HEAD_NAME)
    return state


# ---------------------------------------------------------------- entry point


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run into cfg.output; return the final validation (and test) figures."""
    d = distributed.from_env()
    device = pick_device(cfg.device, d)
    amp = pick_precision(cfg.precision, device)
    torch.set_num_threads(cfg.threads)
    per_rank, rem = divmod(cfg.batch_size, d.world)
    micro = cfg.micro_batch or per_rank
    if rem or per_rank == 0 or per_rank % micro:
        raise UserError(
            f"--batch-size {cfg.batch_size} must split evenly into {d.world} process(es) "
            f"and then into micro-batches of {micro}"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed.init(d, device)
    try:
        return Trainer(cfg, d, device, amp, micro, per_rank // micro).run()
    finally:
        distributed.shutdown(d)


def _resume_point(cfg: FinetuneConfig, run_dir: Path, d: distributed.Dist) -> Path | None:
    """The checkpoint to continue from (None for a new run); refuses mixing runs in one folder."""
    if (run_dir / "model" / "finetune.json").is_file() and not (run_dir / "checkpoints").is_dir():
        raise UserError(f"{run_dir} already holds a finished fine-tuned model; choose another -o")
    if not cfg.resume:
        if d.main and checkpoints.list_checkpoints(run_dir):
            raise UserError(f"{run_dir} already holds a run; add --resume to continue it or choose a new -o")
        return None
    found = checkpoints.list_checkpoints(run_dir)
    if not found:
        raise UserError(f"--resume: {run_dir}/checkpoints has no checkpoint to continue from")
    saved = checkpoints.read_state(found[-1][1])["settings"]
    differ = [k for k, v in cfg.run_defining().items() if saved.get(k) != v]
    if differ:
        raise UserError(
            f"--resume: these settings differ from the run in {run_dir}: {', '.join(differ)}; "
            "give the same ones, or a new -o"
        )
    return found[-1][1]


def _base_identity(base_dir: Path, lm) -> dict[str, Any]:
    from vepcli.modelcheck import weights_digest  # safetensors or pytorch_model.bin: every format has a digest

    return {
        "path": str(base_dir),
        "config_hash": config_hash(lm.config.to_dict()),
        "arch": lm.config.arch,
        "d_model": lm.config.d_model,
        "n_layer": lm.config.n_layer,
        "weights_sha256": weights_digest(base_dir),
    }


class Trainer:
    """One fine-tuning run: set-up, optimizer steps, validation with early stopping, checkpoints."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        d: distributed.Dist,
        device: torch.device,
        amp: torch.dtype | None,
        micro: int,
        accum: int,
    ) -> None:
        self.cfg, self.d, self.device, self.amp, self.micro, self.accum = cfg, d, device, amp, micro, accum
        self.run_dir = Path(cfg.output)
        self.resume_from = _resume_point(cfg, self.run_dir, d)
        base_dir = resolve_model_dir(cfg.model or _default_model())
        lm = load_model(base_dir)
        self.base = _base_identity(base_dir, lm)
        self.data = load_data(cfg, Genome(cfg.fasta), lm.config.max_length)
        lm.config.max_length = self.data.window  # `vepcli score --model` then defaults to the fine-tuning window
        self.steps_per_epoch = len(self.data.split.train) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"--batch-size {cfg.batch_size} is larger than the {len(self.data.split.train)} training rows"
            )
        self.total = cfg.epochs * self.steps_per_epoch
        self.val_every = cfg.val_every or self.steps_per_epoch
        self.ckpt_every = cfg.checkpoint_every or self.val_every
        self._build(lm)
        self.state: dict[str, Any] = {
            "best": None,
            "best_step": None,
            "bad": 0,
            "stopped_early": False,
            "elapsed_s": 0.0,
        }
        self.start = self._restore_or_standardise()
        self.ddp = self.net
        if d.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None
            )

    def _build(self, lm) -> None:
        """Head, model, optimizer, schedule, gradient scaler; cached features for a frozen backbone."""
        cfg, data = self.cfg, self.data
        torch.manual_seed(cfg.seed)
        n_feat = len(LAYOUTS[cfg.layout]) * lm.config.d_model
        head = Head(n_feat, data.covariates.shape[1], data.labels.n_classes, cfg.head_hidden, cfg.dropout)
        self.net = FinetuneNet(lm, head, data.examples.mode, cfg.layout, data.span, cfg.freeze_backbone)
        self.net.to(self.device)
        if cfg.freeze_backbone:
            lm.requires_grad_(False)
        self.optimizer = build_optimizer(self.net, cfg)
        warmup = max(1, round(cfg.warmup_frac * self.total)) if cfg.warmup_frac > 0 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(self.total, warmup, cfg.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.amp is torch.float16 else None
        self.feats = None
        if cfg.freeze_backbone:  # the backbone never changes: pool every row once
            self.feats = compute_features(
                self.net, data, np.arange(len(data.examples)), self.micro, self.device, self.amp
            )
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.weights = data.class_weights.to(self.device)

    def _restore_or_standardise(self) -> int:
        """Resume from the checkpoint, or set the head's standardisation from the initial features."""
        if self.resume_from is not None:
            saved = load_checkpoint(self.resume_from, self.net, self.optimizer, self.scheduler, self.scaler)
            self.state.update({k: saved[k] for k in self.state if k in saved})
            if saved.get("stopped_early") or saved["step"] >= self.total:
                raise UserError(f"the run in {self.run_dir} has already finished ({saved['step']} steps)")
            self.say(f"resuming {self.run_dir} at step {saved['step']}")
            return saved["step"]
        train = self.data.split.train
        rows = np.sort(train[np.random.default_rng([self.cfg.seed, 2]).permutation(len(train))][:STANDARDISE_ROWS])
        f = (
            self.feats[rows]
            if self.feats is not None
            else compute_features(self.net, self.data, rows, self.micro, self.device, self.amp)
        )
        self.net.head.set_standardisation(f)
        return 0

    def say(self, msg: str) -> None:
        _say(self.cfg, self.d, msg)

    # ------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step over the step's batch (this rank's share, in micro-batches)."""
        cfg, d, data = self.cfg, self.d, self.data
        idx = step_indices(cfg.seed, step, self.steps_per_epoch, data.split.train, cfg.batch_size)
        norm = float(data.class_weights[torch.from_numpy(data.labels.y[idx])].sum())
        mine = idx[d.rank * self.micro * self.accum : (d.rank + 1) * self.micro * self.accum]
        ce_sum = 0.0
        for m in range(self.accum):
            ids, alt, cov, y, f = _batch_tensors(
                data, mine[m * self.micro : (m + 1) * self.micro], self.device, self.feats
            )
            sync = contextlib.nullcontext() if d.world == 1 or m == self.accum - 1 else self.ddp.no_sync()
            with sync:
                with _autocast(self.device, self.amp):
                    logits = self.ddp(ids, alt, cov, f)
                ce = F.cross_entropy(logits.float(), y, weight=self.weights, reduction="sum")
                loss = ce * (d.world / norm)  # DDP averages over ranks: the result is the step's weighted mean
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            ce_sum += float(ce.detach())
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip))
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {
            "step": step + 1,
            "epoch": round((step + 1) / self.steps_per_epoch, 4),
            "lr": lrs[0],
            "backbone_lr": None if cfg.freeze_backbone else lrs[-1],
            "train_loss": d.sum([ce_sum], self.device)[0] / norm,
            "grad_norm": grad_norm,
        }

    def validate(self, done: int) -> tuple[dict[str, float], bool]:
        """Validation figures; the best model so far is kept in run_dir/best. Returns (figures, stop)."""
        cfg, data = self.cfg, self.data
        proba = predict(self.ddp, data, data.split.val, self.micro, self.device, self.amp, self.d, self.feats)
        figures = classification_metrics(data.labels.y[data.split.val], proba)
        if _improved(cfg.metric, figures[cfg.metric], self.state["best"]):
            self.state.update(best=figures[cfg.metric], best_step=done, bad=0)
            if self.d.main:
                save_finetuned(self.net.lm, self.net.head, self.meta(figures, done), self.run_dir / "best")
            return figures, False
        self.state["bad"] += 1
        return figures, cfg.patience > 0 and self.state["bad"] >= cfg.patience

    def meta(self, figures: dict[str, float], step: int) -> dict[str, Any]:
        return _meta(
            {
                "cfg": self.cfg,
                "data": self.data,
                "base": self.base,
                "total": self.total,
                "steps_per_epoch": self.steps_per_epoch,
                "config_hash": config_hash(self.net.lm.config.to_dict()),
            },
            figures,
            step,
        )

    # ------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.d
        self.say(
            _describe(
                cfg, self.data, self.net.lm, self.total, self.steps_per_epoch, d, self.micro, self.accum, self.device
            )
        )
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            log = FinetuneLog(self.run_dir, self.start if self.resume_from is not None else None)
        self.net.train()
        t0 = last_t = time.perf_counter()
        last_step = self.start
        for step in range(self.start, self.total):
            row = self.train_step(step)
            done, stop = row["step"], False
            if done % self.val_every == 0 or done == self.total:
                figures, stop = self.validate(done)
                row.update({f"val_{k}": v for k, v in figures.items() if k != "n"})
            now = time.perf_counter()
            row["elapsed_s"] = self.state["elapsed_s"] + now - t0
            if d.main and (done % cfg.log_every == 0 or done == self.total or "val_loss" in row or stop):
                row["examples_per_s"] = (done - last_step) * cfg.batch_size / max(now - last_t, 1e-9)
                last_t, last_step = now, done
                log.log(row)
                val = f" val {cfg.metric} {row[f'val_{cfg.metric}']:.4f}" if "val_loss" in row else ""
                self.say(f"step {done}/{self.total} loss {row['train_loss']:.4f} lr {row['lr']:.2e}{val}")
            self.state["stopped_early"] = stop
            if d.main and (done % self.ckpt_every == 0 or done == self.total or stop):
                save_checkpoint(
                    self.run_dir,
                    done,
                    self.net,
                    self.optimizer,
                    self.scheduler,
                    self.scaler,
                    {"settings": cfg.run_defining(), **self.state, "elapsed_s": row["elapsed_s"]},
                )
                checkpoints.prune(self.run_dir, cfg.keep_checkpoints)
            d.barrier()
            if stop:
                self.say(
                    f"early stop at step {done}: no better validation {cfg.metric} in {cfg.patience} "
                    f"evaluations (best {self.state['best']:.4f} at step {self.state['best_step']})"
                )
                break
        result = self.finish() if d.main else {}
        d.barrier()
        return result

    def finish(self) -> dict[str, Any]:
        """The best validated model becomes run_dir/model, with test figures when the split has test rows."""
        from vepcli.finetune.model import load_finetuned

        cfg, data = self.cfg, self.data
        best = load_finetuned(self.run_dir / "best", device=self.device)
        meta = dict(best.meta)
        meta["training"] = {
            **meta["training"],
            "steps_done": _last_step(self.run_dir),
            "stopped_early": self.state["stopped_early"],
        }
        if len(data.split.test):
            net = FinetuneNet(best.model, best.head, data.examples.mode, cfg.layout, data.span).to(self.device)
            proba = predict(net, data, data.split.test, self.micro, self.device, self.amp, distributed.Dist())
            meta["test"] = classification_metrics(data.labels.y[data.split.test], proba)
        out = save_finetuned(best.model, best.head, meta, self.run_dir / "model")
        shutil.rmtree(self.run_dir / "best", ignore_errors=True)
        figures = {f"val_{k}": v for k, v in meta["validation"].items() if isinstance(v, float)}
        figures.update({f"test_{k}": v for k, v in meta.get("test", {}).items() if isinstance(v, float)})
        summary = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if math.isfinite(v))
        self.say(f"model written to {out} (best step {meta['training']['best_step']}): {summary}")
        return {**figures, "best_step": meta["training"]["best_step"], "model_dir": str(out)}


def _describe(cfg, data: Data, lm, total: int, spe: int, d, micro: int, accum: int, device) -> str:
    s = data.split
    counts = np.bincount(data.labels.y[s.train], minlength=data.labels.n_classes)
    classes = ", ".join(f"{c}: {k}" for c, k in zip(data.labels.classes, counts, strict=True))
    return (
        f"{data.examples.mode}: {len(s.train)} training rows ({classes}), {len(s.val)} validation, "
        f"{len(s.test)} test ({s.method}: {s.description}); window {data.window}, pool span {list(data.span)}; "
        f"{lm.config.arch} d_model {lm.config.d_model} ({'frozen' if cfg.freeze_backbone else 'fine-tuned'}); "
        f"{total} steps ({spe} per epoch) on {d.world} process(es) x {accum} micro-batch(es) of {micro} "
        f"on {device}"
    )


def _meta(context: dict[str, Any], val: dict[str, float], step: int) -> dict[str, Any]:
    """finetune.json: what the model was made from and how, what its head expects, and how it validated."""
    cfg: FinetuneConfig = context["cfg"]
    data: Data = context["data"]
    d = context["base"]["d_model"]
    blocks = [[name, i * d, (i + 1) * d] for i, name in enumerate(LAYOUTS[cfg.layout])]
    n_cls = data.labels.n_classes
    train_counts = np.bincount(data.labels.y[data.split.train], minlength=n_cls).tolist()
    return {
        "format": "vepcli-finetune",
        "format_version": 1,
        "vepcli_version": __version__,
        "mode": data.examples.mode,
        "command": cfg.command,
        "base_model": context["base"],
        "model": {"config_hash": context["config_hash"]},
        "window": data.window,
        "pool": cfg.pool,
        "pool_span": list(data.span),
        "strand_average": True,
        "features": {"layout": cfg.layout, "blocks": blocks, "n_features": len(blocks) * d},
        "covariates": data.levels,
        "head": {
            "n_features": len(blocks) * d,
            "n_covariates": int(data.covariates.shape[1]),
            "n_classes": n_cls,
            "hidden": cfg.head_hidden,
            "dropout": cfg.dropout,
        },
        "label": {
            "column": data.labels.column,
            "classes": data.labels.classes,
            "positive": data.labels.positive,
            "train_counts": train_counts,
        },
        "split": data.split.summary(),
        "training": {
            "settings": cfg.run_defining(),
            "steps_planned": context["total"],
            "steps_per_epoch": context["steps_per_epoch"],
            "best_step": step,
            "skipped_rows": data.examples.skipped,
        },
        "validation": {"metric": cfg.metric, **val},
    }


def _last_step(run_dir: Path) -> int:
    found = checkpoints.list_checkpoints(run_dir)
    return found[-1][0] if found else 0


def _default_model() -> str:
    from vepcli.pipeline import default_model

    return default_model()
