"""Probes (design step 6): scikit-learn classifiers on pooled ref/alt embeddings from `vepcli embed`.

A probe is StandardScaler + SVC (RBF) or LogisticRegression on `[ref | alt]` (or `[ref | alt | alt-ref]`),
plus one-hot categorical covariates. C and the class weights are chosen by cross-validation whose folds
hold out whole chromosomes (or contiguous genomic blocks when there are fewer than 3 chromosomes), so the
CV figure is not inflated by neighbouring variants that share sequence. The probe is saved with skops (no
pickle) together with the identity of the embeddings it was trained on (model config hash, weights digest,
window, pooling, strand averaging), and it refuses embeddings of any other model or window.

Used by `vepcli probe train|eval|info` and, through `load_probe`, by `vepcli score --probe`.
See docs/probes.md.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vepcli import __version__
from vepcli.defaults import PROBE_FOLDS, PROBE_KINDS, PROBE_LAYOUTS
from vepcli.errors import UserError
from vepcli.runheader import RunHeader, embedding_fields, same_digest

FORMAT = "vepcli-probe"
FORMAT_VERSION = 1
KINDS = PROBE_KINDS  # in vepcli.defaults, so that the CLI reads them without loading pandas
LAYOUTS = PROBE_LAYOUTS
C_GRID = {"svm": (1.0, 5.0, 10.0), "logistic": (0.01, 0.1, 1.0, 10.0)}  # svm: the paper's grid
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
DEFAULT_FOLDS = PROBE_FOLDS
MIN_CHROMOSOMES = 3  # fewer than this: hold out contiguous genomic blocks instead
POSITIVE_NAMES = ("1", "true", "yes", "pos", "positive", "causal")


# ---------------------------------------------------------------- embeddings in


@dataclass(frozen=True)
class EmbeddingIdentity:
    """What made a set of embeddings: a probe only makes sense on embeddings with the same identity."""

    config_hash: str
    window: int
    pool: int
    d_model: int
    strand_average: bool = True
    weights_sha256: str = "unknown"
    arch: str = "unknown"
    model_path: str = ""


@dataclass
class Embeddings:
    """Rows of a `vepcli embed` output that have embeddings, with their other columns and identity."""

    table: pd.DataFrame  # every non-vector column, rows aligned with ref/alt
    ref: np.ndarray  # (n, d) float32
    alt: np.ndarray  # (n, d) float32
    identity: EmbeddingIdentity
    skipped: int = 0  # rows without embeddings (status not ok)
    path: str = ""


def parse_identity(lines: list[str], source: str = "embeddings") -> EmbeddingIdentity:
    """The identity recorded in `vepcli embed` header lines (##vepcli_embedding, ##vepcli_model, ...)."""
    emb = embedding_fields(lines)
    if emb is None:
        raise UserError(f"{source} has no ##vepcli_embedding header; make it with `vepcli embed`")
    run = RunHeader.from_lines(lines, source)
    try:
        return EmbeddingIdentity(
            config_hash=emb["config_hash"],
            window=int(emb["window"]),
            pool=int(emb["pool"]),
            d_model=int(emb["d_model"]),
            strand_average=run.strand_average is not False,
            weights_sha256=run.model.weights_sha256 if run.model else "unknown",
            arch=run.model.arch if run.model else "unknown",
            model_path=run.model.path if run.model else "",
        )
    except (KeyError, ValueError) as err:
        raise UserError(
            f"{source}: malformed ##vepcli_embedding header ({err}); make it again with `vepcli embed`"
        ) from None


def _read_parquet(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise UserError(f"{path}: not a readable parquet file ({err})") from None
    meta = (table.schema.metadata or {}).get(b"vepcli")
    lines = json.loads(meta) if meta else []
    if "ref_emb" not in table.column_names or "alt_emb" not in table.column_names:
        raise UserError(f"{path} has no ref_emb/alt_emb columns; make it with `vepcli embed`")
    vectors = [_vector_column(table.column("ref_emb")), _vector_column(table.column("alt_emb"))]
    frame = table.drop_columns(["ref_emb", "alt_emb"]).to_pandas()
    return frame, vectors[0], vectors[1], lines


def _vector_column(column) -> np.ndarray:
    """A fixed-size list column -> (n, d) float32, NaN rows where the value is null."""
    import pyarrow as pa

    column = column.combine_chunks()
    rows = None if pa.types.is_fixed_size_list(column.type) else column.to_pylist()
    d = column.type.list_size if rows is None else next((len(r) for r in rows if r is not None), 0)
    out = np.full((len(column), d), np.nan, dtype=np.float32)
    valid = ~column.is_null().to_numpy(zero_copy_only=False)
    if rows is not None:
        out[valid] = [r for r in rows if r is not None]
    elif valid.any():
        out[valid] = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)  # flatten skips null rows
    return out


def _read_npz(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "ref_emb" not in arrays or "alt_emb" not in arrays:
        raise UserError(f"{path} has no ref_emb/alt_emb arrays; make it with `vepcli embed`")
    lines = [str(x) for x in arrays.pop("meta", [])]
    ref, alt = arrays.pop("ref_emb").astype(np.float32), arrays.pop("alt_emb").astype(np.float32)
    return pd.DataFrame(arrays), ref, alt, lines


def read_embeddings(path: str | Path) -> Embeddings:
    """Read `vepcli embed` output (.parquet or .npz); keep the rows that have both embeddings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    reader = _read_npz if path.suffix == ".npz" else _read_parquet
    frame, ref, alt, lines = reader(path)
    identity = parse_identity(lines, str(path))
    ok = ~(np.isnan(ref).any(axis=1) | np.isnan(alt).any(axis=1)) if len(ref) else np.zeros(0, dtype=bool)
    if "status" in frame:
        ok &= frame["status"].to_numpy() == "ok"
    return Embeddings(frame[ok].reset_index(drop=True), ref[ok], alt[ok], identity, int((~ok).sum()), str(path))


# ---------------------------------------------------------------- features and labels


def features(ref: np.ndarray, alt: np.ndarray, layout: str) -> np.ndarray:
    """`ref-alt`: [ref | alt] as in the paper; `ref-alt-diff`: [ref | alt | alt - ref]."""
    if layout == "ref-alt":
        return np.hstack([ref, alt]).astype(np.float64)
    if layout == "ref-alt-diff":
        return np.hstack([ref, alt, alt - ref]).astype(np.float64)
    raise UserError(f"unknown feature layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def as_text(value: Any) -> str:
    """Label and category values as text; 1.0 and 1 (and True) are the same value, NaN is ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def covariate_levels(table: pd.DataFrame, names: list[str]) -> dict[str, list[str]]:
    """The categories of each covariate in the training data, in sorted order."""
    _require_columns(table, names, "covariate")
    return {n: sorted({as_text(v) for v in table[n]} - {""}) for n in names}


def one_hot(table: pd.DataFrame | None, levels: dict[str, list[str]], n: int) -> np.ndarray:
    """(n, levels) columns, one per (covariate, level); an unseen level or a missing value is all zeros."""
    if not levels:
        return np.zeros((n, 0))
    if table is None:
        raise UserError(f"this probe needs covariate column(s) {', '.join(levels)}; none were given")
    _require_columns(table, list(levels), "covariate")
    blocks = []
    for name, cats in levels.items():
        values = np.array([as_text(v) for v in table[name]], dtype=object)
        blocks.append(np.stack([values == c for c in cats], axis=1).astype(np.float64))
    return np.hstack(blocks)


def _require_columns(table: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise UserError(
            f"{what} column(s) {', '.join(missing)} not found; columns are {', '.join(map(str, table.columns))}"
        )


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


# ---------------------------------------------------------------- held-out splits


@dataclass
class Splits:
    """Cross-validation folds that hold out whole groups, and how the groups were made."""

    method: str  # chromosome | genomic_blocks | column:NAME
    groups: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: list[str] = field(default_factory=list)
    buffer_bp: int = 0


def _block_groups(chrom: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, list[str]]:
    """k contiguous blocks of (nearly) equal size in genome order (contigs in order of appearance)."""
    rank = {c: i for i, c in enumerate(dict.fromkeys(chrom))}
    order = np.lexsort((pos, np.array([rank[c] for c in chrom])))
    groups = np.empty(len(pos), dtype=int)
    groups[order] = np.arange(len(pos)) * k // len(pos)
    spans = []
    for g in range(k):
        idx = order[groups[order] == g]
        first, last = idx[0], idx[-1]
        spans.append(f"block {g + 1}: {chrom[first]}:{pos[first]}-{chrom[last]}:{pos[last]} ({len(idx)} variants)")
    return groups, spans


def drop_near_test_rows(train: np.ndarray, test: np.ndarray, chrom: np.ndarray, pos: np.ndarray, bp: int) -> np.ndarray:
    """Drop training rows within `bp` of a test row on the same contig: their windows share sequence."""
    if bp <= 0:
        return train
    keep = np.ones(len(train), dtype=bool)
    for c in np.unique(chrom[test]):
        test_pos = np.sort(pos[test][chrom[test] == c])
        on_c = chrom[train] == c
        p = pos[train][on_c]
        i = np.clip(np.searchsorted(test_pos, p), 1, len(test_pos)) - 1
        j = np.clip(i + 1, 0, len(test_pos) - 1)
        near = np.minimum(np.abs(p - test_pos[i]), np.abs(p - test_pos[j])) < bp
        keep[np.flatnonzero(on_c)[near]] = False
    return train[keep]


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
        _require_columns(table, [groups_column], "--groups")
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


# ---------------------------------------------------------------- fitting


def make_estimator(kind: str, C: float, class_weight: str | None, seed: int = 0):
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


def _metrics(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) from continuous scores; NaN when only one class is present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score))


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
        a, p = _metrics(y[test], oof[test])
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


def _platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """P(positive) = 1 / (1 + exp(-(a * score + b))), fitted on out-of-fold scores (never on training fits)."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(scores)
    if len(np.unique(y[ok])) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores[ok, None], y[ok])
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


# ---------------------------------------------------------------- the probe


class Probe:
    """A fitted pipeline and its metadata: what it needs as input and what it was trained on."""

    def __init__(self, pipeline, meta: dict[str, Any], path: str = "") -> None:
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
    ) -> None:
        """Refuse, in one line, embeddings from another model (config or weights), window, pooling or strands."""
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
        if wrong:
            raise UserError(
                f"probe {self.path or '(unsaved)'} was trained on other embeddings: this run has "
                f"{'; '.join(wrong)}; use the probe's model ({mine.model_path or mine.arch}) with "
                f"--window {mine.window} --pool {mine.pool}, or train a new probe on `vepcli embed` "
                "output of this model"
            )

    def _matrix(self, ref: np.ndarray, alt: np.ndarray, covariates: pd.DataFrame | None) -> np.ndarray:
        ref, alt = np.asarray(ref, dtype=np.float64), np.asarray(alt, dtype=np.float64)
        d = self.meta["embedding"]["d_model"]
        if ref.ndim != 2 or ref.shape != alt.shape or ref.shape[1] != d:
            raise UserError(f"probe expects ref and alt embeddings of shape (n, {d}); got {ref.shape} and {alt.shape}")
        if covariates is not None and len(covariates) != len(ref):
            raise UserError(f"covariates have {len(covariates)} rows but there are {len(ref)} embeddings")
        X = features(ref, alt, self.meta["features"]["layout"])
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
    _require_columns(emb.table, [label], "label")
    classes = label_classes(emb.table[label], positive)
    y, has = label_vector(emb.table[label], classes)
    table = emb.table[has].reset_index(drop=True)
    y = y[has]
    if min(np.bincount(y, minlength=2)) < 2:
        raise UserError(f"each label class needs at least 2 rows; counts are {np.bincount(y, minlength=2).tolist()}")
    levels = covariate_levels(table, covariates)
    X = features(emb.ref[has], emb.alt[has], layout)
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
    oof_auroc, oof_auprc = _metrics(y[np.isfinite(best["oof"])], best["oof"][np.isfinite(best["oof"])])
    a, b = _platt(best["oof"], y) if kind == "svm" else (float("nan"), float("nan"))
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
    emb,
    label,
    classes,
    y,
    kind,
    layout,
    levels,
    n_features,
    splits,
    results,
    best,
    oof_auroc,
    oof_auprc,
    platt,
    seed,
    unlabelled,
) -> dict[str, Any]:
    import sklearn

    d = emb.identity.d_model
    blocks = [["ref", 0, d], ["alt", d, 2 * d]] + ([["alt-ref", 2 * d, 3 * d]] if layout == "ref-alt-diff" else [])
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
        "embedding": {f: getattr(emb.identity, f) for f in EmbeddingIdentity.__dataclass_fields__},
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


# ---------------------------------------------------------------- save and load (skops, never pickle)


def _allowed_types() -> set[str]:
    """Every type a vepcli probe file may contain beyond what skops trusts by default: nothing else loads."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return {f"{t.__module__}.{t.__qualname__}" for t in (Pipeline, StandardScaler, SVC, LogisticRegression)}


def save_probe(probe: Probe, path: str | Path) -> Path:
    """Write the probe with skops through the atomic writer: a temporary name beside `path`, renamed into place."""
    import skops.io as sio

    from vepcli.output import atomic_output

    path = Path(path)
    if not path.parent.exists():
        raise UserError(f"the output folder {path.parent} does not exist")
    with atomic_output(path) as tmp:
        sio.dump(
            {"format": FORMAT, "meta_json": json.dumps(probe.meta, sort_keys=True), "pipeline": probe.pipeline}, tmp
        )
    probe.path = str(path)
    return path


MAX_D_MODEL = 16_384  # as modelcheck's config rules
MAX_PROBE_BYTES = 1 << 32  # uncompressed members of a probe file: far above any real probe (support vectors)


def load_probe(path: str | Path) -> Probe:
    """Load a probe file made by `vepcli probe train`; refuse any file holding types outside the allow-list.

    Never runs pickle (skops, with vepcli's allow-list checked before loading). A damaged, truncated or
    foreign file, whatever the damage, is a UserError in one line, never a traceback."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"probe file {path} does not exist")
    try:
        return _load_probe(path)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to read a probe file means the file is not one
        why = " ".join(f"{type(err).__name__}: {err}".split())[:160]
        raise UserError(
            f"{path} is not a skops probe file, or it is damaged or truncated ({why}); copy it again "
            "or make one with `vepcli probe train`"
        ) from None


def _load_probe(path: Path) -> Probe:
    import zipfile

    import skops.io as sio

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_PROBE_BYTES:
            raise UserError(
                f"{path} is not a vepcli probe (its members unpack to more than {MAX_PROBE_BYTES >> 30} GiB)"
            )
        bad = zf.testzip()  # every member's CRC: flipped bytes are found here, not halfway through loading
        if bad is not None:
            raise UserError(f"{path} is damaged (member {bad} fails its CRC check); copy it again")
        schema = json.loads(zf.read("schema.json"))
        foreign = sorted({i.filename for i in infos} - {"schema.json"} - _schema_files(schema))
        if foreign:
            raise UserError(
                f"{path} is not a vepcli probe (it holds members skops did not write: {', '.join(foreign[:3])})"
            )
    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - _allowed_types())
    if refused:
        raise UserError(
            f"{path} holds types a vepcli probe never contains ({', '.join(refused[:5])}); not loading "
            "it: train the probe again with `vepcli probe train`"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn's version warning: we check versions below
        obj = sio.load(path, trusted=list(untrusted))
    return Probe(_checked_pipeline(obj, path), _checked_meta(obj, path), str(path))


def _schema_files(node: Any) -> set[str]:
    """The zip members a skops schema refers to (arrays are stored as `file` members)."""
    if isinstance(node, dict):
        found = {node["file"]} if isinstance(node.get("file"), str) else set()
        for value in node.values():
            found |= _schema_files(value)
        return found
    if isinstance(node, list):
        return set().union(*(_schema_files(v) for v in node)) if node else set()
    return set()


def _checked_pipeline(obj: Any, path: Path):
    from sklearn.pipeline import Pipeline

    pipeline = obj.get("pipeline") if isinstance(obj, dict) else None
    allowed = _allowed_types()
    if not isinstance(pipeline, Pipeline) or any(
        f"{type(s).__module__}.{type(s).__qualname__}" not in allowed for _, s in pipeline.steps
    ):
        raise UserError(f"{path} is not a vepcli probe (no scaler + classifier pipeline inside)")
    return pipeline


def _checked_meta(obj: dict, path: Path) -> dict[str, Any]:
    import sklearn

    if obj.get("format") != FORMAT or not isinstance(obj.get("meta_json"), str):
        raise UserError(f"{path} is not a vepcli probe (format marker missing)")
    meta = json.loads(obj["meta_json"])
    version = meta.get("format_version", 0) if isinstance(meta, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise UserError(
            f"{path} is a probe format {meta['format_version']} file; this vepcli reads up to "
            f"{FORMAT_VERSION}: upgrade vepcli"
        )
    _check_meta_fields(meta, path)
    n_in = getattr(obj["pipeline"], "n_features_in_", None)
    d = meta["embedding"]["d_model"]
    expected = features(np.zeros((1, d)), np.zeros((1, d)), meta["features"]["layout"]).shape[1]
    expected += sum(len(levels) for levels in meta["covariates"].values())
    if not n_in == meta["features"]["n_features"] == expected:
        raise UserError(
            f"{path} is damaged: its classifier takes {n_in} features, its metadata says "
            f"{meta['features']['n_features']}"
        )
    if meta.get("sklearn_version") != sklearn.__version__:
        warnings.warn(
            f"probe {path} was made with scikit-learn {meta.get('sklearn_version')}, this is "
            f"{sklearn.__version__}; predictions may differ slightly",
            stacklevel=2,
        )
    return meta


def _check_meta_fields(meta: Any, path: Path) -> None:
    """The metadata fields prediction and the commands read, with their types: else one line naming the field."""

    def bad(field_name: str) -> UserError:
        return UserError(f"{path} is not a vepcli probe (its metadata field {field_name} is missing or wrong)")

    if not isinstance(meta, dict):
        raise bad("(the whole record)")
    number = (int, float)
    checks = [
        ("kind", lambda m: m["kind"] in KINDS),
        ("features.layout", lambda m: m["features"]["layout"] in LAYOUTS),
        ("features.n_features", lambda m: type(m["features"]["n_features"]) is int and m["features"]["n_features"] > 0),
        ("label.column", lambda m: isinstance(m["label"]["column"], str)),
        ("label.classes", lambda m: isinstance(m["label"]["classes"], list) and len(m["label"]["classes"]) == 2),
        (
            "covariates",
            lambda m: isinstance(m["covariates"], dict) and all(isinstance(v, list) for v in m["covariates"].values()),
        ),
        (
            "embedding",
            lambda m: (
                isinstance(m["embedding"], dict)
                and set(m["embedding"]) <= set(EmbeddingIdentity.__dataclass_fields__)
                and all(type(m["embedding"][k]) is int for k in ("window", "pool", "d_model"))
                and 0 < m["embedding"]["d_model"] <= MAX_D_MODEL
                and isinstance(m["embedding"]["config_hash"], str)
            ),
        ),
        ("cv.mean_auroc", lambda m: isinstance(m["cv"]["mean_auroc"], number)),
        (
            "calibration",
            lambda m: m["kind"] != "svm" or all(isinstance(m["calibration"][k], number) for k in ("a", "b")),
        ),
    ]
    for name, ok in checks:
        try:
            good = ok(meta)
        except (KeyError, TypeError):
            good = False
        if not good:
            raise bad(name)


# ---------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Metrics per bucket (first row: all) and what the curves are drawn from."""

    table: pd.DataFrame
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # bucket -> (y, decision scores)
    notes: list[str] = field(default_factory=list)


def parse_edges(text: str) -> list[float]:
    """`0,30000,100000` -> [0, 30000, 100000] (strictly increasing)."""
    try:
        edges = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--buckets {text!r} must be comma-separated numbers, e.g. 0,30000,100000") from None
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise UserError(f"--buckets {text!r} must be increasing numbers, e.g. 0,30000,100000")
    return edges


def bucket_names(edges: list[float]) -> list[str]:
    """Buckets [e0, e1), [e1, e2), ..., >= e_last, named `e0-e1`, ..., `>=e_last`."""
    return [f"{_num(a)}-{_num(b)}" for a, b in zip(edges, edges[1:], strict=False)] + [f">={_num(edges[-1])}"]


def bucket_labels(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """The bucket name of each value; values below e0 or missing get ''."""
    idx = np.searchsorted(edges, values, side="right") - 1
    out = np.array([""] * len(values), dtype=object)
    ok = np.isfinite(values) & (idx >= 0)
    out[ok] = np.array(bucket_names(edges), dtype=object)[idx[ok]]
    return out


def _num(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _bootstrap_ci(y: np.ndarray, s: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of AUROC over `n` resamples of the rows (NaN when n is 0)."""
    from sklearn.metrics import roc_auc_score

    if n <= 0 or len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            stats.append(roc_auc_score(y[i], s[i]))
    return (float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))) if stats else (np.nan, np.nan)


def _row(name: str, y: np.ndarray, s: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any]:
    auroc, auprc = _metrics(y, s)
    lo, hi = _bootstrap_ci(y, s, bootstrap, seed)
    return {
        "bucket": name,
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "pos_rate": float(y.mean()) if len(y) else float("nan"),
        "auroc": auroc,
        "auroc_lo": lo,
        "auroc_hi": hi,
        "auprc": auprc,
    }


def evaluate(
    probe: Probe,
    emb: Embeddings,
    label: str,
    bucket_by: str | None = None,
    edges: list[float] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> Evaluation:
    """AUROC and AUPRC of the probe's decision scores, overall and per bucket of a numeric column."""
    ident = emb.identity
    probe.check_compatible(
        ident.config_hash,
        ident.window,
        ident.pool,
        weights_sha256=ident.weights_sha256,
        strand_average=ident.strand_average,
    )
    _require_columns(emb.table, [label], "label")
    y, has = label_vector(emb.table[label], probe.classes)
    table = emb.table[has].reset_index(drop=True)
    y = y[has]
    if len(y) == 0:
        raise UserError(f"no rows with embeddings and a {label} value in {emb.path}")
    scores = probe.decision(emb.ref[has], emb.alt[has], table if probe.covariates else None)
    notes = [f"{emb.skipped} rows without embeddings and {int((~has).sum())} without a label were left out"]
    notes += _unseen_notes(probe, table)
    rows = [_row("all", y, scores, bootstrap, seed)]
    curves = {"all": (y, scores)}
    if bucket_by:
        _require_columns(table, [bucket_by], "--bucket-by")
        values = pd.to_numeric(table[bucket_by], errors="coerce").to_numpy(dtype=float)
        if np.isnan(values).all():
            raise UserError(f"--bucket-by {bucket_by} has no numeric values")
        edges = edges or [0.0]
        names = bucket_labels(values, edges)
        for name in bucket_names(edges):
            pick = names == name
            rows.append(_row(name, y[pick], scores[pick], bootstrap, seed))
            curves[name] = (y[pick], scores[pick])
        if (names == "").any():
            notes.append(
                f"{int((names == '').sum())} rows with {bucket_by} missing or below {_num(edges[0])} are in no bucket"
            )
    return Evaluation(pd.DataFrame(rows), curves, notes)


def _unseen_notes(probe: Probe, table: pd.DataFrame) -> list[str]:
    notes = []
    for name, cats in probe.meta["covariates"].items():
        unseen = sorted({as_text(v) for v in table[name]} - set(cats) - {""}) if name in table else []
        if unseen:
            notes.append(
                f"covariate {name}: values not seen in training ({', '.join(unseen[:5])}) get all-zero one-hot columns"
            )
    return notes


def format_table(table: pd.DataFrame) -> str:
    """The evaluation table as aligned text, with the 95% interval in one column."""

    def f(x: float) -> str:
        return "NA" if not np.isfinite(x) else f"{x:.3f}"

    rows = [["bucket", "n", "n_pos", "pos_rate", "AUROC", "AUROC_95CI", "AUPRC"]]
    for r in table.itertuples():
        ci = "NA" if not np.isfinite(r.auroc_lo) else f"{r.auroc_lo:.3f}-{r.auroc_hi:.3f}"
        rows.append([r.bucket, str(r.n), str(r.n_pos), f(r.pos_rate), f(r.auroc), ci, f(r.auprc)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return (
        "\n".join(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            for row in rows
        )
        + "\n"
    )


def plot_curves(ev: Evaluation, prefix: str | Path, title: str = "") -> tuple[Path, Path]:
    """ROC and precision-recall curves, one line per bucket, to PREFIX.roc.png and PREFIX.pr.png."""
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    roc_path, pr_path = Path(f"{prefix}.roc.png"), Path(f"{prefix}.pr.png")
    if not roc_path.parent.exists():
        raise UserError(f"the plot folder {roc_path.parent} does not exist")
    figs = {}
    for kind in ("roc", "pr"):
        fig = Figure(figsize=(5.5, 5), dpi=110)
        ax = fig.subplots()
        figs[kind] = (fig, ax)
    colours = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, row in enumerate(ev.table.itertuples()):
        y, s = ev.curves[row.bucket]
        if len(np.unique(y)) < 2:
            continue
        colour, width = colours[i % len(colours)], 2.2 if row.bucket == "all" else 1.4
        fpr, tpr, _ = roc_curve(y, s)
        figs["roc"][1].plot(fpr, tpr, color=colour, lw=width, label=f"{row.bucket}: AUROC {row.auroc:.3f} (n={row.n})")
        prec, rec, _ = precision_recall_curve(y, s)
        figs["pr"][1].plot(
            rec,
            prec,
            color=colour,
            lw=width,
            drawstyle="steps-post",
            label=f"{row.bucket}: AUPRC {row.auprc:.3f} (n={row.n})",
        )
        figs["pr"][1].axhline(row.pos_rate, color=colour, lw=0.8, ls=":")
    _finish(figs["roc"], "False positive rate", "True positive rate", f"ROC {title}", diagonal=True)
    _finish(figs["pr"], "Recall", "Precision", f"Precision-recall {title} (dotted: chance = positive rate)")
    from vepcli.output import atomic_output

    for kind, target in (("roc", roc_path), ("pr", pr_path)):
        with atomic_output(target) as tmp:
            figs[kind][0].savefig(tmp, format="png")
    return roc_path, pr_path


def _finish(fig_ax, xlabel: str, ylabel: str, title: str, diagonal: bool = False) -> None:
    fig, ax = fig_ax
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right" if diagonal else "best", fontsize=7)
    fig.tight_layout()


# ---------------------------------------------------------------- what the commands call


def train_file(
    embeddings: str,
    label: str,
    output: str,
    *,
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
    """`vepcli probe train`: read embeddings, cross-validate, fit, save."""
    from vepcli.outpath import check_output_path

    check_output_path(output, [embeddings], sidecars=())
    emb = read_embeddings(embeddings)
    probe = train_probe(emb, label, kind, layout, covariates, groups, folds, c_grid, class_weights, positive, seed)
    save_probe(probe, output)
    return probe


def train_summary(probe: Probe) -> str:
    """A few lines for stderr: the CV design, the grid and the chosen setting."""
    m, cv = probe.meta, probe.meta["cv"]
    lines = [
        f"probe: {m['kind']} on {m['features']['layout']} ({m['features']['n_features']} features), label "
        f"{m['label']['column']} (positive {m['label']['classes'][1]}: {m['label']['counts'][1]} of "
        f"{sum(m['label']['counts'])})",
        f"cross-validation: {cv['n_folds']} folds holding out {cv['method']}"
        + (f", training rows within {cv['buffer_bp']} bp of held-out rows dropped" if cv["buffer_bp"] else ""),
    ]
    lines += [f"  {g}" for g in cv["groups"]]
    for r in cv["grid"]:
        mark = "*" if (r["C"], r["class_weight"]) == (cv["best"]["C"], cv["best"]["class_weight"]) else " "
        lines.append(
            f" {mark} C={r['C']:g} class_weight={r['class_weight']}: held-out AUROC "
            f"{r['mean_auroc']:.3f} +- {r['sd_auroc']:.3f} (folds: "
            f"{', '.join(f'{a:.3f}' for a in r['fold_auroc'])})"
        )
    lines.append(
        f"chosen setting, out-of-fold: AUROC {cv['oof_auroc']:.3f}, AUPRC {cv['oof_auprc']:.3f} (chance "
        f"{m['label']['counts'][1] / sum(m['label']['counts']):.3f}); the best of {len(cv['grid'])} "
        "settings, so slightly optimistic: evaluate on held-out data with `vepcli probe eval`"
    )
    return "\n".join(lines)


def eval_file(
    probe_path: str,
    embeddings: str,
    label: str | None = None,
    bucket_by: str | None = None,
    buckets: str = "0,30000,100000",
    plots: str | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    table_out: str | None = None,
) -> tuple[Evaluation, tuple[Path, Path]]:
    """`vepcli probe eval`: metrics table and ROC/PR PNGs (PREFIX.roc.png, PREFIX.pr.png), and with
    `table_out` the table as TSV; every output is checked (outpath.py) before any work and written atomically."""
    from vepcli.outpath import check_output_path

    prefix = plots or str(Path(embeddings).with_suffix("")) + ".probe"
    inputs = [probe_path, embeddings]
    for target in (f"{prefix}.roc.png", f"{prefix}.pr.png"):
        check_output_path(target, inputs, option="--plots", sidecars=())
    if table_out and table_out != "-":
        check_output_path(table_out, inputs, sidecars=())
    probe = load_probe(probe_path)
    emb = read_embeddings(embeddings)
    ev = evaluate(
        probe,
        emb,
        label or probe.meta["label"]["column"],
        bucket_by,
        parse_edges(buckets) if bucket_by else None,
        bootstrap,
        seed,
    )
    covs = "".join(f" + {c}" for c in probe.covariates)
    title = f"{probe.meta['kind']} {probe.meta['features']['layout']}{covs}, {Path(embeddings).name}"
    pngs = plot_curves(ev, prefix, title)
    if table_out and table_out != "-":
        write_table_tsv(ev.table, table_out)
    return ev, pngs


def write_table_tsv(table: pd.DataFrame, path: str | Path) -> Path:
    """The evaluation table as TSV, through the atomic writer."""
    from vepcli.output import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return path
