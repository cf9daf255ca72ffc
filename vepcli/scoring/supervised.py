"""Supervised scores: a trained model's probability of the positive class, from pooled ref/alt vectors.

The probe of `--probe` and the head of a fine-tuned `--model` are the two kinds vepcli has. Each is
wrapped (by `vepcli/supervised.py`, above the pipeline) as a `SupervisedModel`, and the block scorer
calls them all the same way, once per block, through `predict_all`. Which models a run has is decided
after its model is loaded, by `SupervisedLoader`s: a loader sees the run's header (model, digests,
window, pooling) and returns its model, or None when it has none for this run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from vepcli.runheader import Record, RunHeader


class SupervisedModel(Protocol):
    """A trained classifier on pooled ref/alt vectors, written as the score column `name`."""

    name: str  # a registered supervised score
    description: str  # its ##INFO Description in this run (the head's names its label)

    def identity(self) -> dict[str, Any]:
        """What resuming and merging must match (paths, full digests)."""
        ...

    def header_record(self) -> Record:
        """Its `##vepcli_<name>` header line."""
        ...

    def predict(self, ref: np.ndarray, alt: np.ndarray, extras: list[dict[str, Any]]) -> np.ndarray:
        """(n,) P(positive) for n alleles: pooled vectors (n, d_model) and each allele's input columns."""
        ...


SupervisedLoader = Callable[["RunHeader"], "SupervisedModel | None"]


def predict_all(models: Sequence[SupervisedModel], ref, alt, extras: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every model's probabilities for one block of alleles, by score name."""
    return {m.name: [float(p) for p in m.predict(ref, alt, extras)] for m in models}
