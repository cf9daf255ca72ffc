"""Training metrics: `metrics.csv` (pretraining and fine-tuning), TensorBoard events for pretraining when
tensorboard is installed, and pretraining's `curves.png`."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only CSV of one row per logged step, in `columns`. On resume, rows past the checkpoint are
    dropped (a run killed after its last checkpoint logged steps that the resumed run does again)."""

    def __init__(
        self, run_dir: Path, columns: tuple[str, ...], resume_step: int | None = None, tensorboard: bool = False
    ) -> None:
        self.path, self.columns = Path(run_dir) / "metrics.csv", columns
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if float(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.tb = _tensorboard(Path(run_dir) / "tensorboard") if tensorboard else None

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(k.replace("_", "/", 1), v, row["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # full precision: resumed runs are compared step for step
    return str(v)


def _tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the CSV has everything
        return None
    return SummaryWriter(str(path))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts of floats (None where a column is empty)."""
    with open(path, newline="") as fh:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(fh)]


def plot_curves(metrics_csv: Path, png: Path, objective: str = "masked") -> None:
    """Training and validation loss, and validation accuracy (masked-token or next-token), against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_csv)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), label=label, marker="o" if key == "val_loss" else None)
    loss_name, acc_name = ("masked-LM", "masked-token") if objective == "masked" else ("next-token", "next-token")
    ax_loss.set(xlabel="step", ylabel=f"{loss_name} loss (nats)", title="loss")
    ax_loss.legend()
    for key, label in (
        ("train_acc", "train"),
        ("val_acc", "validation, all targets"),
        ("val_acc_masked", "validation, [MASK] targets"),
    ):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_acc.plot(*zip(*pts, strict=True), label=label, marker="o" if key.startswith("val") else None)
    ax_acc.set(xlabel="step", ylabel=f"{acc_name} accuracy", title="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
