"""Probes (design step 6): scikit-learn classifiers on pooled ref/alt embeddings from `vepcli embed`.

A probe is StandardScaler + SVC (RBF) or LogisticRegression on `[ref | alt]` (or `[ref | alt | alt-ref]`),
plus one-hot categorical covariates. C and the class weights are chosen by cross-validation whose folds
hold out whole chromosomes (or contiguous genomic blocks when there are fewer than 3 chromosomes), so the
CV figure is not inflated by neighbouring variants that share sequence. The probe is saved with skops (no
pickle) together with the identity of the embeddings it was trained on (model config hash, weights digest,
window, pooling, strand averaging), and it refuses embeddings of any other model or window.

Used by `vepcli probe train|eval|info` and, through `load_probe`, by `vepcli score --probe`.
See docs/probes.md. The modules, in the order data flows through them:

- `embeddings`: `vepcli embed` output in, with the identity of the model that made it;
- `cv`: held-out-group folds and the fits that choose C and the class weights;
- `model`: the `Probe` and `train_probe`;
- `store`: save and load (skops, an allow-list of types, every field checked);
- `evaluation`: metrics per bucket, ROC and PR plots;
- `run`: what the commands call.

Labels, covariates and feature layouts are vepcli.features (shared with fine-tuning); genome-order
blocks are vepcli.splits.
"""

from vepcli.probe.cv import Splits, cross_validate, make_estimator, make_splits
from vepcli.probe.embeddings import EmbeddingIdentity, Embeddings, parse_identity, read_embeddings
from vepcli.probe.evaluation import (
    Evaluation,
    bucket_labels,
    bucket_names,
    evaluate,
    format_table,
    parse_edges,
    plot_curves,
)
from vepcli.probe.model import Probe, train_probe
from vepcli.probe.run import eval_file, train_file, train_summary, write_table_tsv
from vepcli.probe.store import load_probe, save_probe

__all__ = [
    "EmbeddingIdentity",
    "Embeddings",
    "Evaluation",
    "Probe",
    "Splits",
    "bucket_labels",
    "bucket_names",
    "cross_validate",
    "eval_file",
    "evaluate",
    "format_table",
    "load_probe",
    "make_estimator",
    "make_splits",
    "parse_edges",
    "parse_identity",
    "plot_curves",
    "read_embeddings",
    "save_probe",
    "train_file",
    "train_probe",
    "train_summary",
    "write_table_tsv",
]
