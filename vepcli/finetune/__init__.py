"""Fine-tuning Caduceus on labelled variants or intervals: `vepcli finetune` (see docs/finetuning.md).

- `config`: the settings, without torch (the CLI reads their defaults);
- `data`: labelled examples, windows, labels, covariates, the train/validation/test split;
- `batches`: the examples a run trains on, and the rows of each optimizer step;
- `model`: strand-conjoined pooling, the head, the model directory (`load_finetuned`, `head_probability`);
- `evaluate`: pooled features, predicted probabilities, classification metrics;
- `record`: what `finetune.json` records about a run;
- `loop`: fine-tuning as a task of the training engine (`vepcli.train.engine`), and `finetune()`;
- `compare`: fine-tuning against a frozen-embedding probe on the same split.

The names below load `model` (and torch) on first use, so that `vepcli.finetune.config` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Finetuned",
    "ScoreHead",
    "check_compatible",
    "finetuned_dir",
    "head_probabilities",
    "head_probability",
    "load_finetuned",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("vepcli.finetune.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
