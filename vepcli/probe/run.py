"""What `vepcli probe train|eval` call: read, check every output path before any work, fit or evaluate, write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vepcli.atomic import atomic_file
from vepcli.outpath import check_output_path
from vepcli.probe.cv import CLASS_WEIGHTS, DEFAULT_FOLDS
from vepcli.probe.embeddings import read_embeddings
from vepcli.probe.evaluation import Evaluation, evaluate, parse_edges, plot_curves
from vepcli.probe.model import Probe, train_probe
from vepcli.probe.store import load_probe, save_probe


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
    path = Path(path)
    with atomic_file(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return path
