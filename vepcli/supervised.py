"""The supervised scores of a run: the probe of `--probe` and the head of a fine-tuned `--model`.

Both are loaded here, above the pipeline, and wrapped as `vepcli.scoring.SupervisedModel`s, so that the
pipeline scores with them without importing `probe` or `finetune`:

    score_file(variants, fasta, out, settings, supervised=loaders(settings))
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vepcli.modelinfo import file_sha256
from vepcli.runheader import Record, RunHeader, short
from vepcli.scoring import SupervisedLoader, SupervisedModel
from vepcli.scoring import get as get_score

if TYPE_CHECKING:
    from vepcli.pipeline import ScoreSettings


def loaders(settings: ScoreSettings) -> list[SupervisedLoader]:
    """The loaders `vepcli score` and `embed` use: the probe of `settings.probe`, then a fine-tuned head."""
    out: list[SupervisedLoader] = [partial(load_probe_score, settings.probe)] if settings.probe else []
    return [*out, load_head_score]


class ProbeScore:
    """The `probe` score: P(positive) of a probe trained on this model's embeddings (`vepcli probe train`)."""

    name = "probe"

    def __init__(self, probe: Any, path: str) -> None:
        self.probe, self.path, self.sha256 = probe, path, file_sha256(Path(path))
        self.description = get_score(self.name).description

    def identity(self) -> dict[str, Any]:
        return {"path": os.path.abspath(self.path), "sha256": self.sha256}

    def header_record(self) -> Record:
        return Record(self.name, {"path": self.path, "sha256": short(self.sha256)})

    def predict(self, ref: np.ndarray, alt: np.ndarray, extras: list[dict[str, Any]]) -> np.ndarray:
        import pandas as pd

        covariates = pd.DataFrame(extras)
        return self.probe.predict_proba(ref, alt, covariates if len(covariates.columns) else None)


def load_probe_score(path: str, run: RunHeader) -> SupervisedModel:
    """The probe at `path`, refused in one line unless it was trained on this run's kind of embeddings."""
    from vepcli.probe import load_probe

    probe = load_probe(path)
    probe.check_compatible(
        run.model.config_hash,
        run.window,
        run.pool,
        weights_sha256=run.model.weights_sha256,
        strand_average=run.strand_average,
        echo=run.echo,
    )
    return ProbeScore(probe, path)


class HeadScore:
    """The `finetune` score: P(positive) from the head of a fine-tuned model directory (`vepcli finetune`)."""

    name = "finetune"

    def __init__(self, head: Any, model_dir: str) -> None:
        self.head, self.model_dir = head, model_dir
        self.description = head.description

    def identity(self) -> dict[str, Any]:
        return {"path": self.model_dir, "head_sha256": self.head.meta["model"]["head_sha256"]}

    def header_record(self) -> Record:
        return self.head.header_record()

    def predict(self, ref: np.ndarray, alt: np.ndarray, extras: list[dict[str, Any]]) -> np.ndarray:
        return self.head(ref, alt, extras)


def load_head_score(run: RunHeader) -> SupervisedModel | None:
    """The head of the run's model if it is a fine-tuned one, checked against the window and pooling."""
    from vepcli.finetune import ScoreHead

    head = ScoreHead.load(run.model.path, run.window, run.pool, run.strand_average, run.echo)
    return None if head is None else HeadScore(head, run.model.path)
