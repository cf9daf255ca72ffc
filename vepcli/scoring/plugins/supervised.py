"""The supervised scores' declarations: their values come from a `SupervisedModel` (vepcli.scoring.supervised)."""

from __future__ import annotations

from vepcli.scoring.registry import POOLED, Score, register

PROBE = register(
    Score(
        "probe",
        "Probability of the positive class from the probe given with --probe",
        frozenset({POOLED}),
        order=90,
    )
)
FINETUNE = register(
    Score(
        "finetune",
        "Probability from the head of the fine-tuned model given with --model",
        frozenset({POOLED}),
        order=91,
    )
)
