"""Fine-tuning Caduceus on labelled variants or intervals: `vepcli finetune` (see docs/finetuning.md).

- `data`: labelled examples, windows, labels, covariates, the train/validation/test split;
- `model`: strand-conjoined pooling, the head, the model directory (`load_finetuned`, `head_probability`);
- `loop`: the training loop (checkpoints, resume, early stopping, autocast, torchrun);
- `compare`: fine-tuning against a frozen-embedding probe on the same split.
"""

from vepcli.finetune.model import (
    Finetuned,
    ScoreHead,
    check_compatible,
    finetuned_dir,
    head_probabilities,
    head_probability,
    load_finetuned,
)

__all__ = [
    "Finetuned",
    "ScoreHead",
    "check_compatible",
    "finetuned_dir",
    "head_probabilities",
    "head_probability",
    "load_finetuned",
]
