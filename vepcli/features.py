"""Labels, categorical covariates and feature layouts, shared by the probe and fine-tuning.

A probe (`vepcli probe`) and a fine-tuned head (`vepcli finetune`) learn from the same kind of table:
pooled ref/alt embeddings, a label column and categorical covariates. Both read label and category
values the same way (`as_text`: 1.0 == 1, NaN is missing), name binary classes the same way
(`label_classes`), one-hot encode covariates with the levels seen in training, lay out features with one
vocabulary (`LAYOUTS`) and report one pair of metrics (`binary_metrics`), so their results compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vepcli.defaults import LAYOUTS
from vepcli.errors import UserError

POSITIVE_NAMES = ("1", "true", "yes", "pos", "positive", "causal")


def as_text(value: Any) -> str:
    """Label and category values as text; 1.0 and 1 (and True) are the same value, NaN is ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def require_columns(table: pd.DataFrame, names: Sequence[str], what: str) -> None:
    """One line naming the missing columns and the ones there are."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise UserError(
            f"{what} column(s) {', '.join(missing)} not found; columns are {', '.join(map(str, table.columns))}"
        )


# ---------------------------------------------------------------- labels


def label_classes(values: pd.Series, positive: str | None = None) -> tuple[str, str]:
    """(negative, positive) class names of a binary label; the positive one is `positive`, else 1/true/yes..."""
    seen = sorted({as_text(v) for v in values} - {""})
    if len(seen) != 2:
        raise UserError(f"the label needs exactly two classes, found {len(seen)}: {', '.join(seen[:10])}")
    if positive is None:
        named = [s for s in seen if s.lower() in POSITIVE_NAMES]
        positive = named[0] if len(named) == 1 else seen[1]
    if positive not in seen:
        raise UserError(f"--positive {positive!r} is not a label value; values are {', '.join(seen)}")
    return (seen[0] if seen[1] == positive else seen[1]), positive


def label_vector(values: pd.Series, classes: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(y in {0, 1}, mask of rows with a label); a value outside `classes` is an error."""
    text = np.array([as_text(v) for v in values], dtype=object)
    has = text != ""
    unknown = sorted(set(text[has]) - set(classes))
    if unknown:
        raise UserError(
            f"label value(s) {', '.join(unknown[:5])} are not among the probe's classes {classes[0]}, {classes[1]}"
        )
    return (text == classes[1]).astype(int), has


@dataclass
class Labels:
    """Class names (sorted; for two classes: [negative, positive]) and each example's class index."""

    column: str
    classes: list[str]
    y: np.ndarray  # (n,) int64
    positive: str | None = None  # binary only: the class whose probability is the score

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def make_labels(values: pd.Series, column: str, positive: str | None = None) -> tuple[Labels, np.ndarray]:
    """Classes from the label values; rows with an empty label are masked out (y = -1).

    Two classes: [negative, positive] as `label_classes` orders them. More: sorted, and `positive` is optional.
    """
    text = np.array([as_text(v) for v in values], dtype=object)
    has = text != ""
    seen = sorted(set(text[has]))
    if len(seen) < 2:
        raise UserError(f"the label column {column} needs at least two classes, found {seen}")
    if len(seen) == 2:
        classes = list(label_classes(pd.Series(text[has]), positive))
        positive = classes[1]
    else:
        classes = seen
        if positive is not None and positive not in classes:
            raise UserError(f"--positive {positive!r} is not a label value; values are {', '.join(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(t, -1) for t in text], dtype=np.int64)
    return Labels(column, classes, y, positive), has


# ---------------------------------------------------------------- covariates


def covariate_levels(table: pd.DataFrame, names: Sequence[str]) -> dict[str, list[str]]:
    """The categories of each covariate among the (training) rows given, sorted."""
    require_columns(table, names, "covariate")
    return {n: sorted({as_text(v) for v in table[n]} - {""}) for n in names}


def one_hot(table: pd.DataFrame | None, levels: Mapping[str, list[str]], n: int) -> np.ndarray:
    """(n, total levels) float32, one column per (covariate, level); an unseen level or a missing value is
    all zeros, so a row from a tissue never trained on still gets a prediction."""
    if not levels:
        return np.zeros((n, 0), dtype=np.float32)
    if table is None:
        raise UserError(f"the model needs covariate column(s) {', '.join(levels)}; none were given")
    require_columns(table, list(levels), "covariate")
    blocks = []
    for name, cats in levels.items():
        values = np.array([as_text(v) for v in table[name]], dtype=object)
        blocks.append(np.stack([values == c for c in cats], axis=1) if cats else np.zeros((n, 0), bool))
    return np.hstack(blocks).astype(np.float32)


# ---------------------------------------------------------------- features and metrics


def layout_blocks(layout: str, choices: Sequence[str] = tuple(LAYOUTS)) -> tuple[str, ...]:
    """The blocks of a layout, or one line naming the layouts this caller takes."""
    if layout not in choices:
        raise UserError(f"unknown feature layout {layout!r}; choose from {', '.join(choices)}")
    return LAYOUTS[layout]


def feature_matrix(
    ref: np.ndarray, alt: np.ndarray, layout: str, choices: Sequence[str] = tuple(LAYOUTS)
) -> np.ndarray:
    """Pooled ref/alt embeddings laid out as `layout` says, float64 (`seq` reads `ref` as the one window)."""
    blocks = {"ref": ref, "seq": ref, "alt": alt}
    parts = [alt - ref if name == "alt-ref" else blocks[name] for name in layout_blocks(layout, choices)]
    return np.hstack(parts).astype(np.float64)


def binary_metrics(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) from continuous scores; NaN when only one class is present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score))
