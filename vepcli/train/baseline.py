"""The k-mer baselines a pretrained model must beat: predict a masked base from its k flanking bases, or
(for a causal model) the next base from the k bases before it.

For each k, count (k bases left, k bases right) -> centre base over the training intervals, and
predict the most frequent centre of the context (backing off to k-1 when the context was never
seen or runs off the window or into an N or a [MASK]). It is scored on the very validation
targets of `vepcli pretrain` (same windows, same masks), in two ways:
- like for like: the flanks are read from the model's own input, where 15% of the context is
  masked or replaced, exactly what the model sees;
- generous: the flanks are the true bases, which the model never sees.
And two figures each, as for the model:
- [MASK] targets: the base is hidden, only the context can tell it;
- all targets: at the 20% of targets whose input still shows a base (10% unchanged, 10% random)
  the best guess is that base (right 62.5% of the time), and the baseline takes it.

The causal baseline predicts each base of a validation window after its first from the k bases before it
in the window (backing off to k-1 when the context runs off the window's start, into an N, or was never
seen in training), the prediction a causal model makes at every position; with its accuracy goes the
cross-entropy of the add-one smoothed counts of the longest seen context, next to the model's loss.

    vepcli tools kmer-baseline --fasta genome.fa --val-region 22:47000001-51304566 --seq-len 1024
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.nn.tokenizer import MASK, NUCLEOTIDES
from vepcli.train.causal import causal_validation_set
from vepcli.train.data import Interval, split_intervals, validation_set
from vepcli.train.masking import IGNORE

_CODE = np.full(256, -1, dtype=np.int8)  # token id -> 0..3 for A, C, G, T; -1 otherwise
_CODE[list(NUCLEOTIDES)] = np.arange(4)
DENSE_MAX_K = 5  # up to 4^11 keys we count with bincount; above, with np.unique


def _codes(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Token-id arrays -> one int64 array of 0..3, separated by -1 so no context spans two of them."""
    parts = []
    for s in seqs:
        parts += [_CODE[s].astype(np.int64), np.array([-1], dtype=np.int64)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _context(codes: np.ndarray, k: int, causal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(context key, valid) for every position: the 2k flanking bases (causal: the k bases before it) in
    base 4, valid if all are ACGT."""
    n = len(codes)
    key = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    valid[:k] = False
    if not causal:
        valid[n - k :] = False
    for j in range(1, k + 1):
        sides = ((-j, j - 1),) if causal else ((-j, j - 1), (j, k + j - 1))  # left neighbour j, right neighbour j
        for shift, digit in sides:
            nb = np.full(n, -1, dtype=np.int64)
            if shift < 0:
                nb[-shift:] = codes[:shift]
            else:
                nb[:-shift] = codes[shift:]
            valid &= nb >= 0
            key += np.maximum(nb, 0) << (2 * digit)
    return key, valid


class KmerTable:
    """The most frequent centre base of every 2k-base context seen in training (causal: the most frequent
    next base of every k-base left context)."""

    def __init__(self, codes: np.ndarray, k: int, causal: bool = False) -> None:
        self.k, self.causal = k, causal
        key, valid = _context(codes, k, causal)
        valid &= codes >= 0
        full = (key[valid] << 2) | codes[valid]
        width = k if causal else 2 * k
        if width <= 2 * DENSE_MAX_K:
            counts = np.bincount(full, minlength=4 ** (width + 1)).reshape(-1, 4)
            self.contexts = np.flatnonzero(counts.sum(1))
            self.counts = counts[self.contexts]
        else:
            uniq, n = np.unique(full, return_counts=True)
            self.contexts, row = np.unique(uniq >> 2, return_inverse=True)
            self.counts = np.zeros((len(self.contexts), 4), dtype=np.int64)
            np.add.at(self.counts, (row, uniq & 3), n)
        self.best = self.counts.argmax(1)  # ties: the first base in A, C, G, T order

    def lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of the context in the table, known) for every position of `codes`."""
        key, valid = _context(codes, self.k, self.causal)
        i = np.clip(np.searchsorted(self.contexts, key), 0, len(self.contexts) - 1)
        return i, valid & (self.contexts[i] == key)

    def predict(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prediction 0..3, known) for every position of `codes`."""
        i, known = self.lookup(codes)
        return np.where(known, self.best[i], 0), known

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Add-one smoothed next-base probabilities (n, 4) of the contexts at `rows` (from `lookup`)."""
        counts = self.counts[rows] + 1.0
        return counts / counts.sum(1, keepdims=True)


def kmer_baseline(
    train_seqs: Sequence[np.ndarray],
    val: Sequence[tuple[np.ndarray, np.ndarray]],
    ks: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7),
) -> dict[int, dict[str, float]]:
    """Accuracy on the validation targets for each k (with back-off to smaller k), as a dict by k.

    `val` holds (inputs, labels) pairs as `validation_set` makes them; the true window is the
    labels at targets and the inputs elsewhere. Keys: acc_masked and acc_all with the flanks the
    model sees, the same with `_true_flanks` for the true bases.
    """
    train = _codes(train_seqs)
    inputs = np.stack([x for x, _ in val])
    labels = np.stack([y for _, y in val])
    truth = _codes(list(np.where(labels != IGNORE, labels, inputs)))
    target = np.concatenate([np.r_[lab != IGNORE, False] for lab in labels])
    hidden = np.concatenate([np.r_[x == MASK, False] for x in inputs]) & target
    shown = _codes(list(inputs))  # the model's view: [MASK] and N are -1, random bases look real
    fallback = np.bincount(train[train >= 0], minlength=4).argmax()
    preds = {"": np.full(len(truth), fallback), "_true_flanks": np.full(len(truth), fallback)}
    out: dict[int, dict[str, float]] = {}
    for k in sorted(ks):
        table = KmerTable(train, k) if k > 0 else None
        out[k] = {}
        for suffix, flanks in (("", shown), ("_true_flanks", truth)):
            if table is not None:
                p, known = table.predict(flanks)
                preds[suffix] = np.where(known, p, preds[suffix])
            right = preds[suffix] == truth
            copy = np.where(hidden, right, shown == truth)
            out[k][f"acc_masked{suffix}"] = float(right[hidden].mean())
            out[k][f"acc_all{suffix}"] = float(copy[target].mean())
    return out


def causal_kmer_baseline(
    train_seqs: Sequence[np.ndarray], windows: Sequence[np.ndarray], ks: Sequence[int] = tuple(range(9))
) -> dict[int, dict[str, float]]:
    """Next-base accuracy and cross-entropy (nats) on the validation windows for each k, by k.

    The targets are a causal model's: every A/C/G/T of a window but its first position. Each is predicted
    from the k bases before it in the window, backing off to smaller k (k = 0: the training base
    frequencies); the loss uses the add-one smoothed counts of the context the prediction came from."""
    train = _codes(train_seqs)
    codes = _codes(windows)  # windows separated by -1: no context reaches into the window before
    target = np.concatenate([np.r_[False, _CODE[w[1:]] >= 0, False] for w in windows])
    unigram = np.bincount(train[train >= 0], minlength=4) + 1.0
    preds = np.full(len(codes), unigram.argmax())
    probs = np.broadcast_to(unigram / unigram.sum(), (len(codes), 4))
    truth = np.maximum(codes, 0)
    out: dict[int, dict[str, float]] = {}
    for k in sorted(ks):
        if k > 0:
            table = KmerTable(train, k, causal=True)
            rows, known = table.lookup(codes)
            preds = np.where(known, table.best[rows], preds)
            probs = np.where(known[:, None], table.probabilities(rows), probs)
        p_true = probs[np.arange(len(codes)), truth]
        out[k] = {
            "acc": float((preds == codes)[target].mean()),
            "loss": float(-np.log(p_true[target]).mean()),
        }
    return out


def train_sequences(genome: Genome, intervals: Sequence[Interval]) -> list[np.ndarray]:
    from vepcli.nn.tokenizer import encode

    return [encode(genome.fetch(iv.contig, iv.start, iv.end)) for iv in intervals]


def run_baseline(
    fasta: str,
    intervals: str | None = None,
    val_intervals: str | None = None,
    val_regions: Sequence[str] = (),
    val_fraction: float = 0.05,
    seq_len: int = 1024,
    val_windows: int = 128,
    mask_prob: float = 0.15,
    min_base_fraction: float = 0.5,
    seed: int = 0,
    max_k: int = 7,
    models: Sequence[str] = (),
    output: str | None = None,
    objective: str | None = None,
) -> dict:
    """`vepcli tools kmer-baseline`: the baseline on the validation set of `vepcli pretrain` with the same data
    options and seed; prints a table, returns (and writes to `output` as JSON) the figures. The objective
    (masked or causal) is the models' when `models` are given, else `objective` (default masked)."""
    from vepcli.modelcheck import load_checked

    checked = {path: load_checked(path) for path in models}  # refuse a bad folder before the long count
    objective = baseline_objective(objective, {path: model.objective for path, (_, model, _) in checked.items()})
    genome = Genome(fasta)
    train_iv, val_iv = split_intervals(genome, intervals, val_intervals, list(val_regions), val_fraction)
    train = train_sequences(genome, train_iv)
    if objective == "causal":
        val = causal_validation_set(genome, val_iv, seq_len, val_windows, min_base_fraction)
        inputs = [x for x, _ in val]  # the windows with N as [PAD]: neither is a base to the counts
        record = causal_report(causal_kmer_baseline(train, inputs, range(max_k + 1)))
    else:
        val = validation_set(genome, val_iv, seq_len, val_windows, seed, mask_prob, min_base_fraction)
        record = masked_report(kmer_baseline(train, val, range(max_k + 1)))
    record.update({"val_windows": len(val), "seq_len": seq_len, "seed": seed, "val_regions": list(val_regions)})
    record["models"] = {
        path: score_model(path, model, sha256, val, objective) for path, (_, model, sha256) in checked.items()
    }
    for path, m in record["models"].items():
        masked = f"[MASK] {m['val_acc_masked']:.4f}, all targets " if objective == "masked" else "next base "
        print(f"{path}: {masked}{m['val_acc']:.4f}, loss {m['val_loss']:.4f}")
    if output:
        with open(output, "w") as fh:
            json.dump(record, fh, indent=2)
    return record


def baseline_objective(flag: str | None, of_models: dict[str, str]) -> str:
    """The baseline's objective: the models' (all alike, and the flag's if it is given), else the flag's."""
    found = set(of_models.values())
    if len(found) > 1:
        raise UserError(f"--model: give models of one objective (these are {', '.join(sorted(found))})")
    if found and flag is not None and found != {flag}:
        raise UserError(f"--objective {flag}: the model is a {found.pop()} language model; drop --objective")
    return found.pop() if found else flag or "masked"


def masked_report(res: dict[int, dict[str, float]]) -> dict:
    """Print the masked baseline's table; its record (best k of each figure, figures by k)."""
    best = {key: max(res, key=lambda k, key=key: res[k][key]) for key in res[0]}
    print("accuracy on the validation targets; flanks as the model sees them | true flanks")
    print("k (each side)  [MASK] targets  all targets | [MASK] targets  all targets")
    for k, r in res.items():
        print(
            f"{k:>13}  {r['acc_masked']:>14.4f}  {r['acc_all']:>11.4f} | "
            f"{r['acc_masked_true_flanks']:>14.4f}  {r['acc_all_true_flanks']:>11.4f}"
        )
    summary = {key: {"k": k, "acc": res[k][key]} for key, k in best.items()}
    for key, b in summary.items():
        print(f"best {key}: {b['acc']:.4f} (k={b['k']})")
    return {"best": summary, "by_k": res}


def causal_report(res: dict[int, dict[str, float]]) -> dict:
    """Print the causal baseline's table; its record (the best k by accuracy and by loss, figures by k)."""
    print("next-base accuracy and loss on the validation windows, from the k bases before each")
    print("k (before)  accuracy  loss (nats)")
    for k, r in res.items():
        print(f"{k:>10}  {r['acc']:>8.4f}  {r['loss']:>11.4f}")
    k_acc = max(res, key=lambda k: res[k]["acc"])
    k_loss = min(res, key=lambda k: res[k]["loss"])
    summary = {"acc": {"k": k_acc, "acc": res[k_acc]["acc"]}, "loss": {"k": k_loss, "loss": res[k_loss]["loss"]}}
    print(f"best accuracy: {res[k_acc]['acc']:.4f} (k={k_acc}); best loss: {res[k_loss]['loss']:.4f} (k={k_loss})")
    return {"objective": "causal", "best": summary, "by_k": res}


def score_model(path: str, model, sha256: str, val: list[tuple[np.ndarray, np.ndarray]], objective: str) -> dict:
    """A model's validation loss and accuracies on these windows (and masks), as pretraining computes them,
    with what identifies it (so a card can compare a new model with the one it replaces, like for like)."""
    import torch

    from vepcli.train.distributed import Dist
    from vepcli.train.engine import Placement
    from vepcli.train.lmtask import evaluate

    figures = evaluate(model, val, Placement(Dist(), torch.device("cpu"), None, micro=1, accum=1), objective)
    d_state = model.describe().get("d_state")  # Caduceus' Mamba state size; other families name no such field
    architecture = f"{model.arch}, d_model {model.hidden_width}, n_layer {model.n_layer}"
    if d_state is not None:
        architecture += f", d_state {d_state}"
    return {
        "name": Path(path).resolve().name,
        "sha256": sha256,
        "architecture": architecture,
        "parameters": model.num_parameters(),
        "trained_length": model.trained_length,
        **figures,
    }
