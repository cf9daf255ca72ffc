"""Cross-validation of a probe: folds that hold out whole chromosomes or genomic blocks, and the fits.

Held-out groups keep neighbouring variants (which share sequence) on one side of each fold, so the CV
figure that picks C and the class weights is not inflated (see vepcli.splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vepcli.defaults import PROBE_FOLDS, PROBE_KINDS
from vepcli.errors import UserError
from vepcli.features import as_text, binary_metrics, require_columns
from vepcli.splits import drop_near_test_rows, genome_blocks

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

KINDS = PROBE_KINDS  # in vepcli.defaults, so that the CLI reads them without loading pandas
C_GRID = {"svm": (1.0, 5.0, 10.0), "logistic": (0.01, 0.1, 1.0, 10.0)}  # svm: the paper's grid
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
DEFAULT_FOLDS = PROBE_FOLDS
MIN_CHROMOSOMES = 3  # fewer than this: hold out contiguous genomic blocks instead


@dataclass
class Splits:
    """Cross-validation folds that hold out whole groups, and how the groups were made."""

    method: str  # chromosome | genomic_blocks | column:NAME
    groups: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: list[str] = field(default_factory=list)
    buffer_bp: int = 0


def _block_groups(chrom: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, list[str]]:
    """k contiguous blocks of (nearly) equal size in genome order, and a line describing each."""
    order, groups = genome_blocks(chrom, pos, k)
    spans = []
    for g in range(k):
        idx = order[groups[order] == g]
        first, last = idx[0], idx[-1]
        spans.append(f"block {g + 1}: {chrom[first]}:{pos[first]}-{chrom[last]}:{pos[last]} ({len(idx)} variants)")
    return groups, spans


def make_splits(
    table: pd.DataFrame, n_folds: int = DEFAULT_FOLDS, groups_column: str | None = None, buffer_bp: int = 0
) -> Splits:
    """Folds by `groups_column`, else by chromosome (>= 3 of them), else by contiguous genomic blocks.

    Block folds drop training variants within `buffer_bp` of the held-out block (pass the window)."""
    from sklearn.model_selection import GroupKFold

    if n_folds < 2:
        raise UserError(f"--folds must be at least 2, not {n_folds}")
    chrom = table["chrom"].astype(str).to_numpy()
    pos = table["pos"].to_numpy(dtype=np.int64)
    buffer = 0
    if groups_column is not None:
        require_columns(table, [groups_column], "--groups")
        groups = table[groups_column].map(as_text).to_numpy()
        method, description = f"column:{groups_column}", [f"{len(set(groups))} groups from column {groups_column}"]
    elif len(set(chrom)) >= MIN_CHROMOSOMES:
        groups = chrom
        method, description = "chromosome", [f"{len(set(chrom))} chromosomes: {', '.join(dict.fromkeys(chrom))}"]
    else:
        groups, description = _block_groups(chrom, pos, min(n_folds, len(pos)))
        method, buffer = "genomic_blocks", buffer_bp
    k = min(n_folds, len(set(groups)))
    if k < 2:
        raise UserError(f"cross-validation needs at least 2 groups to hold out; {method} gives {len(set(groups))}")
    folds = [
        (drop_near_test_rows(tr, te, chrom, pos, buffer), te)
        for tr, te in GroupKFold(n_splits=k).split(pos, groups=groups)
    ]
    return Splits(method, groups, folds, description, buffer)


def make_estimator(kind: str, C: float, class_weight: str | None, seed: int = 0) -> Pipeline:
    """StandardScaler + SVC(RBF) or LogisticRegression; scaling matters for both (embedding scales vary)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "svm":
        clf = SVC(kernel="rbf", C=C, class_weight=class_weight, random_state=seed)
    elif kind == "logistic":
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=5000, random_state=seed)
    else:
        raise UserError(f"unknown probe kind {kind!r}; choose from {', '.join(KINDS)}")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def cross_validate(
    X: np.ndarray, y: np.ndarray, splits: Splits, kind: str, C: float, class_weight: str | None, seed: int = 0
) -> dict[str, Any]:
    """Held-out AUROC/AUPRC per fold and the out-of-fold decision scores for one setting."""
    oof = np.full(len(y), np.nan)
    aurocs, auprcs = [], []
    for train, test in splits.folds:
        if len(np.unique(y[train])) < 2:
            aurocs.append(float("nan"))
            auprcs.append(float("nan"))
            continue
        model = make_estimator(kind, C, class_weight, seed).fit(X[train], y[train])
        oof[test] = model.decision_function(X[test])
        a, p = binary_metrics(y[test], oof[test])
        aurocs.append(a)
        auprcs.append(p)
    return {
        "C": C,
        "class_weight": class_weight or "none",
        "fold_auroc": aurocs,
        "fold_auprc": auprcs,
        "mean_auroc": _nanmean(aurocs),
        "sd_auroc": _nanstd(aurocs),
        "mean_auprc": _nanmean(auprcs),
        "oof": oof,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _nanstd(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def platt_scale(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """P(positive) = 1 / (1 + exp(-(a * score + b))), fitted on out-of-fold scores (never on training fits)."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(scores)
    if len(np.unique(y[ok])) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores[ok, None], y[ok])
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])
