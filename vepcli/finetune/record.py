"""What a fine-tuning run records: `finetune.json` (what the model was made from and how, what its head
expects, how it validated) and the one-line description of a run that starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vepcli import __version__
from vepcli.finetune.batches import Data
from vepcli.finetune.config import LAYOUTS, FinetuneConfig
from vepcli.modelinfo import config_hash
from vepcli.nn.backbone import Backbone
from vepcli.train.config import run_identity
from vepcli.train.engine import Placement


def base_identity(base_dir: Path, lm: Backbone) -> dict[str, Any]:
    """The base model as finetune.json records it: path, config hash, sizes, weights digest."""
    from vepcli.modelcheck import weights_digest  # safetensors or pytorch_model.bin: every format has a digest

    return {
        "path": str(base_dir),
        "config_hash": config_hash(lm.config.to_dict()),
        "arch": lm.arch,
        "d_model": lm.hidden_width,
        "n_layer": lm.n_layer,
        "weights_sha256": weights_digest(base_dir),
    }


@dataclass
class RunPlan:
    """The run's facts that finetune.json and the start-up line share."""

    cfg: FinetuneConfig
    data: Data
    base: dict[str, Any]  # base_identity
    total: int  # optimizer steps planned
    steps_per_epoch: int


def describe(plan: RunPlan, lm: Backbone, place: Placement) -> str:
    cfg, data, s = plan.cfg, plan.data, plan.data.split
    counts = np.bincount(data.labels.y[s.train], minlength=data.labels.n_classes)
    classes = ", ".join(f"{c}: {k}" for c, k in zip(data.labels.classes, counts, strict=True))
    return (
        f"{data.examples.mode}: {len(s.train)} training rows ({classes}), {len(s.val)} validation, "
        f"{len(s.test)} test ({s.method}: {s.description}); window {data.window}, pool span {list(data.span)}; "
        f"{lm.arch} d_model {lm.hidden_width} ({'frozen' if cfg.freeze_backbone else 'fine-tuned'}); "
        f"{plan.total} steps ({plan.steps_per_epoch} per epoch) on {place.d.world} process(es) x {place.accum} "
        f"micro-batch(es) of {place.micro} on {place.device}"
    )


def finetune_meta(plan: RunPlan, lm: Backbone, val: dict[str, float], step: int) -> dict[str, Any]:
    """finetune.json of the model validated at `step` with figures `val`."""
    cfg, data = plan.cfg, plan.data
    d = plan.base["d_model"]
    blocks = [[name, i * d, (i + 1) * d] for i, name in enumerate(LAYOUTS[cfg.layout])]
    n_cls = data.labels.n_classes
    train_counts = np.bincount(data.labels.y[data.split.train], minlength=n_cls).tolist()
    return {
        "format": "vepcli-finetune",
        "format_version": 1,
        "vepcli_version": __version__,
        "mode": data.examples.mode,
        "command": cfg.command,
        "base_model": plan.base,
        "model": {"config_hash": config_hash(lm.config.to_dict())},
        "window": data.window,
        "pool": cfg.pool,
        "pool_span": list(data.span),
        "strand_average": True,
        **({"echo": True} if cfg.echo else {}),  # pooled echo states (absent: plain states, as before --echo)
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
            "settings": run_identity(cfg),
            "steps_planned": plan.total,
            "steps_per_epoch": plan.steps_per_epoch,
            "best_step": step,
            "skipped_rows": data.examples.skipped,
        },
        "validation": {"metric": cfg.metric, **val},
    }
