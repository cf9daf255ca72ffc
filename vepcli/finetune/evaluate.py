"""Pooled features, predicted class probabilities and the classification metrics of a fine-tuning run."""

from __future__ import annotations

import numpy as np
import torch

from vepcli.finetune.batches import Data, batch_tensors
from vepcli.finetune.model import FinetuneNet
from vepcli.train.engine import Placement


@torch.no_grad()
def compute_features(net: FinetuneNet, data: Data, idx: np.ndarray, place: Placement) -> torch.Tensor:
    """Pooled features of rows `idx` (CPU float32), in eval mode, all on this process."""
    was = net.training
    net.eval()
    out = []
    for i in range(0, len(idx), place.micro):
        b = batch_tensors(data, idx[i : i + place.micro], place.device, None)
        with place.autocast():
            out.append(net.features(b.ids, b.alt_ids).float().cpu())
    net.train(was)
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def predict(
    net: torch.nn.Module, data: Data, idx: np.ndarray, place: Placement, feats: torch.Tensor | None = None
) -> np.ndarray:
    """(len(idx), n_classes) probabilities; the rows are shared out over the ranks and summed back."""
    was = net.training
    net.eval()
    d = place.d
    n_classes = data.labels.n_classes
    out = np.zeros((len(idx), n_classes))
    mine = np.arange(d.rank, len(idx), d.world)
    for i in range(0, len(mine), place.micro):
        pos = mine[i : i + place.micro]
        b = batch_tensors(data, idx[pos], place.device, feats)
        with place.autocast():
            logits = net(b.ids, b.alt_ids, b.covariates, b.features)
        out[pos] = torch.softmax(logits.float(), -1).double().cpu().numpy()
    net.train(was)
    if d.world > 1:
        out = np.array(d.sum(out.ravel().tolist(), place.device)).reshape(len(idx), n_classes)
    return out


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Loss (mean cross-entropy), accuracy, AUROC (binary; macro one-vs-rest for more classes), AUPRC (binary)."""
    from sklearn.metrics import roc_auc_score

    from vepcli.features import binary_metrics

    p = np.clip(proba, 1e-12, 1.0)
    out = {
        "loss": float(-np.log(p[np.arange(len(y)), y]).mean()),
        "accuracy": float((proba.argmax(1) == y).mean()),
        "auroc": float("nan"),
        "auprc": float("nan"),
        "n": len(y),
    }
    if len(np.unique(y)) == proba.shape[1]:
        if proba.shape[1] == 2:
            out["auroc"], out["auprc"] = binary_metrics(y, proba[:, 1])
        else:
            out["auroc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    return out
