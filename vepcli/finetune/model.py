"""The fine-tuning model: a backbone (`vepcli.nn.backbone`), strand-conjoined pooling, and a small classification head.

Pooling is the engine's (`vepcli/infer.py`): the last hidden state is mean-pooled over a span and the two
strands are averaged (PS: its two halves, the second flipped back in channels; Ph: a second pass on the
reverse complement, read at the same bases). The head sees only these pooled, strand-averaged vectors,
so its output on a window equals its output on the reverse-complemented window: no strand augmentation
is needed and the fine-tuned model keeps Caduceus' RC invariance at the level of its predictions.

A fine-tuned model directory holds the backbone in the published layout (`config.json`,
`model.safetensors`: any vepcli command loads it as a plain model), `head.safetensors` and
`finetune.json`. `load_finetuned` reads it back; `head_probability` turns pooled ref/alt vectors that the
engine computed with that backbone into the head's probability, which is what `vepcli score` adds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vepcli.atomic import atomic_dir
from vepcli.defaults import LAYOUTS
from vepcli.errors import UserError
from vepcli.modelinfo import file_sha256
from vepcli.nn.backbone import Backbone
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.strand import carries_both_strands, check_echo, read_states
from vepcli.nn.strand import pooled_strand_average as strand_pool
from vepcli.nn.tokenizer import reverse_complement_ids
from vepcli.runheader import Record, short

FORMAT = "vepcli-finetune"
FORMAT_VERSION = 1
META_NAME, HEAD_NAME = "finetune.json", "head.safetensors"


# ---------------------------------------------------------------- pooling


def pooled_strand_average(lm: Backbone, ids: torch.Tensor, span: tuple[int, int], echo: bool = False) -> torch.Tensor:
    """(B, hidden_width) float32: the hidden state mean-pooled over [start, end), both strands averaged.

    The engine's arithmetic (`vepcli.nn.strand`), so pooled vectors from `vepcli score`/`embed` with the
    fine-tuned backbone feed the head as they were during training. `echo`: the states of each pass are
    the second copy's of `[x ; x]`, so that a causal model's state at a base has read both its sides.
    """
    if carries_both_strands(lm.strands, lm.arch):
        return strand_pool(read_states(lm, ids, echo), None, span, rcps=True)
    n = ids.shape[0]
    hidden = read_states(lm, torch.cat([ids, reverse_complement_ids(ids)]), echo)
    return strand_pool(hidden[:n], hidden[n:], span, rcps=False)


def layout_features(blocks: dict[str, torch.Tensor], layout: str) -> torch.Tensor:
    """Concatenate the layout's blocks: `ref-alt-diff` -> [ref | alt | alt - ref] (the issue's default)."""
    parts = []
    for name in LAYOUTS[layout]:
        parts.append(blocks["alt"] - blocks["ref"] if name == "alt-ref" else blocks[name])
    return torch.cat(parts, dim=-1)


# ---------------------------------------------------------------- head


class Head(nn.Module):
    """Standardise the pooled features, append one-hot covariates, then a linear layer or a 1-hidden-layer MLP.

    The standardisation (`mean`, `std` buffers, from the training rows before any update) matters because
    the blocks differ in scale by orders of magnitude: ref and alt vectors of one SNV are nearly equal, so
    `alt - ref` is tiny and would be ignored by a head that sees raw features (as in `vepcli probe`).
    """

    def __init__(
        self, n_features: int, n_covariates: int, n_classes: int, hidden: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.n_features, self.n_covariates, self.n_classes = n_features, n_covariates, n_classes
        self.hidden, self.dropout_p = hidden, dropout
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        n_in = n_features + n_covariates
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(n_in, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, n_classes),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, n_classes))

    def spec(self) -> dict[str, Any]:
        """What `finetune.json` records to rebuild the head."""
        return {
            "n_features": self.n_features,
            "n_covariates": self.n_covariates,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
        }

    @torch.no_grad()
    def set_standardisation(self, features: torch.Tensor) -> None:
        """Per-feature mean and s.d. of (training) features; a constant feature keeps s.d. 1."""
        f = features.double()
        std = f.std(0, unbiased=False)
        self.mean.copy_(f.mean(0).float())
        self.std.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)).float())

    def forward(self, features: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        x = (features.float() - self.mean) / self.std
        if self.n_covariates:
            x = torch.cat([x, covariates.float()], dim=-1)
        return self.net(x)


class FinetuneNet(nn.Module):
    """Backbone + head as one module (what DDP wraps). `frozen`: the backbone runs without gradients."""

    def __init__(
        self,
        lm: Backbone,
        head: Head,
        mode: str,
        layout: str,
        span: tuple[int, int],
        frozen: bool = False,
        echo: bool = False,
    ) -> None:
        super().__init__()
        check_echo(lm, echo)
        self.lm, self.head = lm, head
        self.mode, self.layout, self.span, self.frozen, self.echo = mode, layout, tuple(span), frozen, echo

    def features(self, ids: torch.Tensor, alt_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled, strand-averaged features in the head's layout; ref and alt run as one batch."""
        with torch.no_grad() if self.frozen else torch.enable_grad():
            if self.mode == "intervals":
                return pooled_strand_average(self.lm, ids, self.span, self.echo)
            both = pooled_strand_average(self.lm, torch.cat([ids, alt_ids]), self.span, self.echo)
            n = ids.shape[0]
            return layout_features({"ref": both[:n], "alt": both[n:]}, self.layout)

    def forward(
        self,
        ids: torch.Tensor | None = None,
        alt_ids: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, n_classes); give `features` to skip the backbone (cached features of a frozen one)."""
        if features is None:
            features = self.features(ids, alt_ids)
        return self.head(features, covariates)


def build_head(meta_head: dict[str, Any]) -> Head:
    return Head(
        meta_head["n_features"],
        meta_head["n_covariates"],
        meta_head["n_classes"],
        meta_head["hidden"],
        meta_head["dropout"],
    )


# ---------------------------------------------------------------- the model directory


def save_head(head: Head, path: Path) -> None:
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(path), metadata={"format": FORMAT}
    )


def load_head_state(head: Head, path: Path) -> None:
    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    own = head.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise UserError(f"{path} does not match the head described in {META_NAME}")
    head.load_state_dict(state)


def save_finetuned(lm: Backbone, head: Head, meta: dict[str, Any], directory: Path) -> Path:
    """Write the model directory into a temporary sibling and rename it: a stopped save leaves the old one."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        save_model(lm, tmp)
        save_head(head, tmp / HEAD_NAME)
        meta = {
            **meta,
            "model": {
                **meta.get("model", {}),
                "weights_sha256": file_sha256(tmp / "model.safetensors"),
                "head_sha256": file_sha256(tmp / HEAD_NAME),
            },
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


class Finetuned(NamedTuple):
    """What `load_finetuned` returns: unpack as `model, head, meta = load_finetuned(path)`."""

    model: Backbone
    head: Head
    meta: dict[str, Any]


def finetuned_dir(path: str | Path) -> Path | None:
    """The model directory if `path` is one (or a run folder holding `model/`), else None."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / META_NAME).is_file():
            return cand
    return None


def load_finetuned(path: str | Path, device: str | torch.device = "cpu") -> Finetuned | None:
    """(backbone, head, meta) of a `vepcli finetune` model directory; None if `path` is not one.

    Refuses, in one line, a directory whose backbone weights are not the ones the head was trained on.
    """
    directory = finetuned_dir(path)
    if directory is None:
        return None
    meta = read_meta(directory)
    for name, key, what in (
        ("model.safetensors", "weights_sha256", "the backbone the head was trained with"),
        (HEAD_NAME, "head_sha256", "the head finetune.json describes"),
    ):
        path, recorded = directory / name, meta["model"].get(key)
        if path.exists() and recorded and file_sha256(path) != recorded:
            raise UserError(f"{path} is not {what} (its sha256 differs from {directory / META_NAME})")
    lm = load_model(directory, device=device)
    head = build_head(meta["head"])
    load_head_state(head, directory / HEAD_NAME)
    return Finetuned(lm, head.to(device).eval(), meta)


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_NAME
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} is not a vepcli fine-tuned model (format {meta.get('format')!r})")
    return meta


# ---------------------------------------------------------------- prediction from pooled vectors


def check_compatible(
    meta: dict[str, Any], window: int, pool_span: tuple[int, int], strand_average: bool = True, echo: bool = False
) -> None:
    """Refuse, in one line, pooled vectors made with another window, pooling span, strand or echo setting."""
    wrong = []
    if echo != meta.get("echo", False):
        wrong.append("echo states" if echo else "no echo states (the head was trained on echo states: add --echo)")
    if int(window) != meta["window"]:
        wrong.append(f"window {window} (head: {meta['window']})")
    if list(pool_span) != list(meta["pool_span"]):
        wrong.append(f"pooling span {list(pool_span)} (head: {meta['pool_span']})")
    if not strand_average:
        wrong.append("no strand averaging (the head needs it)")
    if wrong:
        raise UserError(
            f"the fine-tuned head was trained on other embeddings: this run has {'; '.join(wrong)}; "
            f"use --window {meta['window']} --pool {meta['pool']}"
        )


def head_probabilities(
    head: Head,
    meta: dict[str, Any],
    ref: np.ndarray | torch.Tensor,
    alt: np.ndarray | torch.Tensor | None = None,
    covariates: pd.DataFrame | None = None,
) -> np.ndarray:
    """(n, n_classes) class probabilities, columns in `meta["label"]["classes"]` order; NaN rows stay NaN.

    `ref`, `alt`: (n, d_model) pooled strand-averaged vectors (variants); for an intervals model pass the
    pooled window vectors as `ref` and no `alt`. `covariates`: a frame with the covariate columns.
    """
    from vepcli.features import one_hot

    ref_t = torch.as_tensor(np.asarray(ref, dtype=np.float32))
    d = meta["base_model"]["d_model"]
    if ref_t.ndim != 2 or ref_t.shape[1] != d:
        raise UserError(f"the head expects pooled vectors of shape (n, {d}); got {tuple(ref_t.shape)}")
    if meta["mode"] == "variants":
        if alt is None:
            raise UserError("this head scores variants: give pooled ref and alt vectors")
        alt_t = torch.as_tensor(np.asarray(alt, dtype=np.float32))
        if alt_t.shape != ref_t.shape:
            raise UserError(f"ref and alt vectors differ in shape: {tuple(ref_t.shape)} vs {tuple(alt_t.shape)}")
        feats = layout_features({"ref": ref_t, "alt": alt_t}, meta["features"]["layout"])
    else:
        feats = ref_t
    cov = torch.from_numpy(one_hot(covariates, meta["covariates"], len(feats)))
    out = np.full((len(feats), meta["head"]["n_classes"]), np.nan)
    ok = torch.isfinite(feats).all(1)
    if ok.any():
        param = next(head.parameters())
        with torch.no_grad():
            logits = head.eval()(feats[ok].to(param.device), cov[ok].to(param.device))
        out[ok.numpy()] = torch.softmax(logits.float(), -1).double().cpu().numpy()
    return out


def head_probability(
    head: Head,
    meta: dict[str, Any],
    ref: np.ndarray | torch.Tensor,
    alt: np.ndarray | torch.Tensor | None = None,
    covariates: pd.DataFrame | None = None,
) -> np.ndarray:
    """(n,) probability of the positive class (binary labels, or `--positive` of a multi-class one)."""
    positive = meta["label"].get("positive")
    if positive is None:
        raise UserError("this head has more than two classes and no --positive class; use head_probabilities")
    col = meta["label"]["classes"].index(positive)
    return head_probabilities(head, meta, ref, alt, covariates)[:, col]


class ScoreHead:
    """The `finetune` score of `vepcli score --model <fine-tuned dir>`: load once, call once per block.

    head = ScoreHead.load(model_dir, window, pool, strand_average)   # None for a plain model
    p = head(ref, alt, [v.extra for v in variants])                  # (n,) P(positive)
    """

    name = "finetune"

    def __init__(self, finetuned: Finetuned, directory: Path) -> None:
        self.head, self.meta, self.directory = finetuned.head, finetuned.meta, directory

    @classmethod
    def load(
        cls, model_dir: str | Path, window: int, pool: int, strand_average: bool = True, echo: bool = False
    ) -> ScoreHead | None:
        """The head of a fine-tuned model directory, checked against this run's window, pooling and echo."""
        from vepcli.scores import pool_span

        ft = load_finetuned(model_dir)
        if ft is None:
            return None
        if ft.meta["mode"] != "variants":
            raise UserError(f"{model_dir} classifies intervals (sequence classification); it has no variant score")
        if ft.meta["label"].get("positive") is None:
            raise UserError(
                f"{model_dir} has {len(ft.meta['label']['classes'])} classes and no --positive class; "
                "fine-tune it again with --positive CLASS to score variants with it"
            )
        check_compatible(ft.meta, window, pool_span(window, window // 2, pool), strand_average, echo)
        return cls(ft, finetuned_dir(model_dir))

    @property
    def description(self) -> str:
        label = self.meta["label"]
        return (
            f"Probability that {label['column']} is {label['positive']}, from the head fine-tuned with the "
            "backbone of --model"
        )

    def header_record(self) -> Record:
        """Its `##vepcli_finetune` header line."""
        m, v = self.meta, self.meta["validation"]
        return Record(
            "finetune",
            {
                "path": str(self.directory),
                "label": m["label"]["column"],
                "positive": str(m["label"]["positive"]),
                "features": m["features"]["layout"],
                "head_sha256": short(m["model"]["head_sha256"]),
                f"val_{v['metric']}": f"{v[v['metric']]:.4f}",
            },
        )

    def header_line(self) -> str:
        return self.header_record().to_line()

    def __call__(self, ref: np.ndarray, alt: np.ndarray, extras: list[dict[str, Any]]) -> np.ndarray:
        covariates = pd.DataFrame(extras) if self.meta["covariates"] else None
        return head_probability(self.head, self.meta, ref, alt, covariates)
