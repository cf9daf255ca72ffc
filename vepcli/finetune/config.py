"""The settings of `vepcli finetune`, importable without torch (the CLI reads their defaults at start-up).

As for pretraining (`vepcli.train.config`), fields made with `operational` change only speed, logging or
where files go; every other field defines the run and must match on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vepcli.defaults import LAYOUTS, POOL_DEFAULT, added_setting
from vepcli.errors import UserError
from vepcli.train.config import RunControl, operational, require_at_least_one

METRICS = {"auroc": "max", "accuracy": "max", "loss": "min"}  # validation metric -> which way is better
# the head's input: pooled blocks, concatenated in this order ("seq": an interval's window, no alleles)
VARIANT_LAYOUTS = tuple(k for k in LAYOUTS if k != "seq")
CLASS_WEIGHTS = ("none", "balanced")


def _is_bed(path: str) -> bool:
    return Path(path).name.lower().endswith((".bed", ".bed.gz"))


@dataclass
class FinetuneConfig(RunControl):
    """Every setting of `vepcli finetune` (see docs/finetuning.md)."""

    train: str
    fasta: str
    output: str = operational()
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
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    freeze_backbone: bool = False
    class_weight: str = "none"
    metric: str = "auroc"
    val_every: int | None = None  # default: once per epoch
    patience: int = 3
    checkpoint_every: int | None = operational(None)  # default: at every validation
    max_n_fraction: float = 0.5
    seed: int = 0
    echo: bool = added_setting(False)  # pool echo states ([x ; x], the second copy's): causal models only

    def __post_init__(self) -> None:
        self.covariates, self.val_chroms = tuple(self.covariates), tuple(self.val_chroms)
        if _is_bed(self.train):
            self.intervals = True
        if self.intervals:
            self.layout = "seq"
            if self.label is None and _is_bed(self.train):
                self.label = "label"  # a BED's 4th column
        elif self.layout not in VARIANT_LAYOUTS:
            raise UserError(f"--features must be one of {', '.join(VARIANT_LAYOUTS)}, not {self.layout!r}")
        if self.label is None:
            raise UserError("--label COLUMN is needed: the column (or VCF INFO field) that holds the class")
        if self.metric not in METRICS:
            raise UserError(f"--metric must be one of {', '.join(METRICS)}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise UserError("--class-weight must be none or balanced")
        require_at_least_one(self, ("epochs", "batch_size", "log_every", "threads"))
        if self.head_hidden < 0 or not 0 <= self.dropout < 1 or self.patience < 0:
            raise UserError("--head-hidden and --patience must be >= 0 and --dropout in [0, 1)")


@dataclass
class CompareOptions:
    """The settings of one comparison (`vepcli tools compare-finetune`), recorded in results.json."""

    set: str  # labelled SNV table (tests/data/make_probe_set.py)
    fasta: str
    model: str
    output: str
    window: int = 256
    pool: int = 256
    folds: int = 3
    only_fold: list[int] | None = None  # run these held-out folds only
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    head_hidden: int = 64
    patience: int = 3
    features: str = "ref-alt-diff"  # the fine-tuned head's input
    probe_features: str = "ref-alt"
    no_finetune: bool = False  # probe and frozen head only
    bootstrap: int = 2000  # paired resamples of the pooled AUROC differences
    seed: int = 0
    threads: int = 1
