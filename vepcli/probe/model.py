"""The probe: a fitted scaler + classifier and the metadata that says what it needs and was trained on.

`train_probe` picks C and the class weights by held-out-group cross-validation (vepcli.probe.cv), fits on
every labelled row and, for an SVM, calibrates P(positive) by Platt scaling on out-of-fold scores.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vepcli import __version__
from vepcli.defaults import PROBE_LAYOUTS, recorded
from vepcli.errors import UserError
from vepcli.features import (
    binary_metrics,
    covariate_levels,
    feature_matrix,
    label_classes,
    label_vector,
    layout_blocks,
    one_hot,
    require_columns,
)
from vepcli.probe.cv import (
    C_GRID,
    CLASS_WEIGHTS,
    DEFAULT_FOLDS,
    KINDS,
    Splits,
    cross_validate,
    make_estimator,
    make_splits,
    platt_scale,
)
from vepcli.probe.embeddings import EmbeddingIdentity, Embeddings
from vepcli.runheader import same_digest

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

FORMAT = "vepcli-probe"
FORMAT_VERSION = 1
LAYOUTS = PROBE_LAYOUTS  # the feature layouts (vepcli.features.LAYOUTS) a probe takes


class Probe:
    """A fitted pipeline and its metadata: what it needs as input and what it was trained on."""

    def __init__(self, pipeline: Pipeline, meta: dict[str, Any], path: str = "") -> None:
        self.pipeline, self.meta, self.path = pipeline, meta, path

    @property
    def covariates(self) -> list[str]:
        """Columns `predict_proba` needs in its `covariates` frame (categorical, one-hot encoded)."""
        return list(self.meta["covariates"])

    @property
    def classes(self) -> tuple[str, str]:
        """(negative, positive) label values; `predict_proba` is P(positive)."""
        neg, pos = self.meta["label"]["classes"]
        return neg, pos

    @property
    def identity(self) -> EmbeddingIdentity:
        return EmbeddingIdentity(**self.meta["embedding"])

    def check_compatible(
        self,
        config_hash: str,
        window: int,
        pool: int,
        *,
        weights_sha256: str | None = None,
        strand_average: bool | None = None,
        echo: bool = False,
    ) -> None:
        """Refuse, in one line, embeddings from another model (config or weights), window, pooling, strands
        or kind of states (echo or plain)."""
        mine = self.identity
        wrong = []
        if config_hash != mine.config_hash:
            wrong.append(f"model config {config_hash} (probe: {mine.config_hash})")
        if weights_sha256 and "unknown" not in (weights_sha256, mine.weights_sha256):
            if not same_digest(weights_sha256, mine.weights_sha256):
                wrong.append(f"model weights {weights_sha256[:16]} (probe: {mine.weights_sha256[:16]})")
        if int(window) != mine.window:
            wrong.append(f"window {window} (probe: {mine.window})")
        if int(pool) != mine.pool:
            wrong.append(f"pool {pool} (probe: {mine.pool})")
        if strand_average is not None and bool(strand_average) != mine.strand_average:
            wrong.append(
                f"strand averaging {'on' if strand_average else 'off'} (probe: "
                f"{'on' if mine.strand_average else 'off'})"
            )
        if bool(echo) != mine.echo:
            wrong.append(f"{_states(echo)} embeddings (probe: {_states(mine.echo)})")
        if wrong:
            raise UserError(
                f"probe {self.path or '(unsaved)'} was trained on other embeddings: this run has "
                f"{'; '.join(wrong)}; use the probe's model ({mine.model_path or mine.arch}) with "
                f"--window {mine.window} --pool {mine.pool}{' --echo' if mine.echo else ''}, or train a new probe "
                "on `vepcli embed` output of this model"
            )

    def _matrix(self, ref: np.ndarray, alt: np.ndarray, covariates: pd.DataFrame | None) -> np.ndarray:
        ref, alt = np.asarray(ref, dtype=np.float64), np.asarray(alt, dtype=np.float64)
        d = self.meta["embedding"]["d_model"]
        if ref.ndim != 2 or ref.shape != alt.shape or ref.shape[1] != d:
            raise UserError(f"probe expects ref and alt embeddings of shape (n, {d}); got {ref.shape} and {alt.shape}")
        if covariates is not None and len(covariates) != len(ref):
            raise UserError(f"covariates have {len(covariates)} rows but there are {len(ref)} embeddings")
        X = feature_matrix(ref, alt, self.meta["features"]["layout"], LAYOUTS)
        return np.hstack([X, one_hot(covariates, self.meta["covariates"], len(X))])

    def decision(self, ref: np.ndarray, alt: np.ndarray, covariates: pd.DataFrame | None = None) -> np.ndarray:
        """Decision scores (larger = more likely positive); NaN for rows whose embeddings hold NaN."""
        X = self._matrix(ref, alt, covariates)
        out = np.full(len(X), np.nan)
        ok = np.isfinite(X).all(axis=1)
        if ok.any():
            out[ok] = self.pipeline.decision_function(X[ok])
        return out

    def predict_proba(self, ref: np.ndarray, alt: np.ndarray, covariates: pd.DataFrame | None = None) -> np.ndarray:
        """P(positive class) per row, shape (n,); NaN for rows without embeddings.

        SVM: Platt scaling fitted on the cross-validation's held-out decision scores; logistic: its own."""
        if self.meta["kind"] == "logistic":
            X = self._matrix(ref, alt, covariates)
            out = np.full(len(X), np.nan)
            ok = np.isfinite(X).all(axis=1)
            if ok.any():
                out[ok] = self.pipeline.predict_proba(X[ok])[:, 1]
            return out
        cal = self.meta["calibration"]
        return 1.0 / (1.0 + np.exp(-(cal["a"] * self.decision(ref, alt, covariates) + cal["b"])))


def train_probe(
    emb: Embeddings,
    label: str,
    kind: str = "svm",
    layout: str = "ref-alt",
    covariates: list[str] | None = None,
    groups: str | None = None,
    folds: int = DEFAULT_FOLDS,
    c_grid: tuple[float, ...] | None = None,
    class_weights: tuple[str | None, ...] = CLASS_WEIGHTS,
    positive: str | None = None,
    seed: int = 0,
) -> Probe:
    """Choose C and class weights by held-out-group CV on mean AUROC, then fit on every labelled row."""
    if kind not in KINDS:
        raise UserError(f"unknown probe kind {kind!r}; choose from {', '.join(KINDS)}")
    covariates = list(covariates or [])
    require_columns(emb.table, [label], "label")
    classes = label_classes(emb.table[label], positive)
    y, has = label_vector(emb.table[label], classes)
    table = emb.table[has].reset_index(drop=True)
    y = y[has]
    if min(np.bincount(y, minlength=2)) < 2:
        raise UserError(f"each label class needs at least 2 rows; counts are {np.bincount(y, minlength=2).tolist()}")
    levels = covariate_levels(table, covariates)
    X = feature_matrix(emb.ref[has], emb.alt[has], layout, LAYOUTS)
    X = np.hstack([X, one_hot(table, levels, len(X))])
    splits = make_splits(table, folds, groups, buffer_bp=emb.identity.window)
    results = [
        cross_validate(X, y, splits, kind, C, cw, seed) for C in (c_grid or C_GRID[kind]) for cw in class_weights
    ]
    scored = [r for r in results if np.isfinite(r["mean_auroc"])]
    if not scored:
        raise UserError("no cross-validation fold had both label classes; use --groups or fewer --folds")
    best = max(scored, key=lambda r: r["mean_auroc"])  # first of equals: grids go from simple to complex
    pipeline = make_estimator(
        kind, best["C"], None if best["class_weight"] == "none" else best["class_weight"], seed
    ).fit(X, y)
    oof_auroc, oof_auprc = binary_metrics(y[np.isfinite(best["oof"])], best["oof"][np.isfinite(best["oof"])])
    a, b = platt_scale(best["oof"], y) if kind == "svm" else (float("nan"), float("nan"))
    meta = _train_meta(
        emb,
        label,
        classes,
        y,
        kind,
        layout,
        levels,
        X.shape[1],
        splits,
        results,
        best,
        oof_auroc,
        oof_auprc,
        (a, b),
        seed,
        len(has) - int(has.sum()),
    )
    return Probe(pipeline, meta)


def _train_meta(
    emb: Embeddings,
    label: str,
    classes: tuple[str, str],
    y: np.ndarray,
    kind: str,
    layout: str,
    levels: dict[str, list[str]],
    n_features: int,
    splits: Splits,
    results: list[dict[str, Any]],
    best: dict[str, Any],
    oof_auroc: float,
    oof_auprc: float,
    platt: tuple[float, float],
    seed: int,
    unlabelled: int,
) -> dict[str, Any]:
    """The probe's metadata record: everything `vepcli probe info` shows and prediction needs."""
    import sklearn

    d = emb.identity.d_model
    blocks = [[name, i * d, (i + 1) * d] for i, name in enumerate(layout_blocks(layout, LAYOUTS))]
    start = blocks[-1][2]
    for name, cats in levels.items():
        blocks.append([f"{name} (one-hot: {', '.join(cats)})", start, start + len(cats)])
        start += len(cats)
    grid = [{k: v for k, v in r.items() if k != "oof"} for r in results]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vepcli_version": __version__,
        "sklearn_version": sklearn.__version__,
        "embedding": _identity_meta(emb.identity),
        "training_data": {
            "path": os.path.abspath(emb.path) if emb.path else "",
            "rows": int(len(y)),
            "skipped_without_embedding": emb.skipped,
            "skipped_without_label": unlabelled,
        },
        "label": {"column": label, "classes": list(classes), "counts": np.bincount(y, minlength=2).tolist()},
        "kind": kind,
        "features": {"layout": layout, "n_features": int(n_features), "blocks": blocks},
        "covariates": levels,
        "cv": {
            "method": splits.method,
            "groups": splits.description,
            "n_folds": len(splits.folds),
            "buffer_bp": splits.buffer_bp,
            "selection": "mean held-out AUROC over folds",
            "grid": grid,
            "best": {"C": best["C"], "class_weight": best["class_weight"]},
            "fold_auroc": best["fold_auroc"],
            "fold_auprc": best["fold_auprc"],
            "mean_auroc": best["mean_auroc"],
            "sd_auroc": best["sd_auroc"],
            "mean_auprc": best["mean_auprc"],
            "oof_auroc": oof_auroc,
            "oof_auprc": oof_auprc,
        },
        "calibration": (
            {"method": "platt on out-of-fold decision scores", "a": platt[0], "b": platt[1]}
            if kind == "svm"
            else {"method": "logistic regression's own"}
        ),
        "seed": seed,
    }


def _states(echo: bool) -> str:
    return "echo" if echo else "plain"


def _identity_meta(identity: EmbeddingIdentity) -> dict[str, Any]:
    """The identity as a probe file stores it: settings added later (`echo`) only when set, so probes of plain
    embeddings keep the bytes they had before echo embeddings existed (and older files read as plain)."""
    return {f.name: getattr(identity, f.name) for f in fields(identity) if recorded(identity, f)}
