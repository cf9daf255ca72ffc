"""Evaluation of a probe on held-out embeddings: AUROC and AUPRC overall and per bucket, ROC and PR plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vepcli.atomic import atomic_file
from vepcli.errors import UserError
from vepcli.features import as_text, binary_metrics, label_vector, require_columns
from vepcli.probe.embeddings import Embeddings
from vepcli.probe.model import Probe

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
    auroc, auprc = binary_metrics(y, s)
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
        echo=ident.echo,
    )
    require_columns(emb.table, [label], "label")
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
        require_columns(table, [bucket_by], "--bucket-by")
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
    for kind, target in (("roc", roc_path), ("pr", pr_path)):
        with atomic_file(target) as tmp:
            figs[kind][0].savefig(tmp, format="png")
    return roc_path, pr_path


def _finish(fig_ax: tuple[Figure, Axes], xlabel: str, ylabel: str, title: str, diagonal: bool = False) -> None:
    fig, ax = fig_ax
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right" if diagonal else "best", fontsize=7)
    fig.tight_layout()
