"""Fine-tuning against the frozen-embedding probe of `vepcli probe`, on the same labelled set and split.

    vepcli tools compare-finetune --set probe_set.tsv --fasta chr22_slice.fa --model MODEL \
        --window 256 --pool 256 -o compare_dir [--folds 3] [finetune options]

`--set` is a table of labelled SNVs such as `tests/data/make_probe_set.py` writes (SNVs in soft-masked
repeats vs not, on real DNA). The rows are cut into `--folds` contiguous blocks in genome order; each
block is held out in turn as the test set. On the other rows:

- probe: `vepcli embed` embeddings of the base model, `train_probe` (RBF SVM, C and class weights by
  block cross-validation inside the training rows), AUROC of its decision scores on the held-out block;
- fine-tuned: `vepcli finetune` on the same rows (the last 20% of them in genome order validate, for
  early stopping), AUROC of the head's probability on the held-out block;
- frozen head: the same head on the frozen backbone, to tell the head's share from the backbone's.

Training rows within one window of a held-out (or validation) row are dropped for all three, so no
training window overlaps an evaluated one. Writes `results.json` and prints a table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vepcli.atomic import atomic_file
from vepcli.finetune.config import CompareOptions, FinetuneConfig
from vepcli.splits import drop_near_test_rows, genome_blocks, genome_tail


def fold_table(frame: pd.DataFrame, fold: int, n_folds: int, window: int, val_fraction: float) -> pd.DataFrame:
    """The set with a `split` column for held-out block `fold`: train / valid / test; rows near them dropped."""
    chrom = frame["chromosome"].astype(str).to_numpy()
    pos = frame["position"].to_numpy(np.int64)
    order, block = genome_blocks(chrom, pos, n_folds)
    test = np.flatnonzero(block == fold)
    train, val = genome_tail(order[block[order] != fold], val_fraction)
    train = drop_near_test_rows(drop_near_test_rows(train, test, chrom, pos, window), val, chrom, pos, window)
    split = np.full(len(frame), "", dtype=object)
    split[train], split[val], split[test] = "train", "valid", "test"
    out = frame.assign(split=split)
    return out[out["split"] != ""].reset_index(drop=True)


def probe_auroc(table: pd.DataFrame, emb_path: Path, work: Path, layout: str) -> dict[str, float]:
    """Train a probe on the train + valid rows' embeddings, evaluate on the test rows."""
    import pyarrow.parquet as pq

    from vepcli.probe import evaluate, read_embeddings, train_probe

    emb = pq.read_table(emb_path)
    key = {(str(c), int(p)): s for c, p, s in zip(table["chromosome"], table["position"], table["split"], strict=True)}
    split = np.array(
        [
            key.get((str(c), int(p)), "")
            for c, p in zip(emb.column("chrom").to_pylist(), emb.column("pos").to_pylist(), strict=True)
        ]
    )
    meta = pq.read_schema(emb_path).metadata
    paths = {}
    for name, keep in (("fit", np.isin(split, ["train", "valid"])), ("test", split == "test")):
        paths[name] = work / f"{name}.emb.parquet"
        pq.write_table(emb.filter(keep).replace_schema_metadata(meta), paths[name])
    probe = train_probe(read_embeddings(paths["fit"]), "label", layout=layout)
    test = read_embeddings(paths["test"])
    ev = evaluate(probe, test, "label", bootstrap=0)
    keys = [f"{c}:{p}" for c, p in zip(test.table["chrom"], test.table["pos"], strict=True)]
    return {
        "auroc": float(ev.table["auroc"].iloc[0]),
        "cv_auroc": float(probe.meta["cv"]["mean_auroc"]),
        "C": probe.meta["cv"]["best"]["C"],
        "scores": dict(zip(keys, probe.decision(test.ref, test.alt).tolist(), strict=True)),
    }


def embed_all(set_path: Path, fasta: str, model: str, window: int, pool: int, out: Path) -> Path:
    from vepcli.pipeline import ScoreSettings, score_file

    if out.exists():
        return out
    settings = ScoreSettings(model=model, window=window, pool=pool, scores=(), embeddings=True, device="cpu")
    return score_file(str(set_path), fasta, str(out), settings, quiet=True)


def finetune_auroc(
    table_path: Path, fasta: str, model: str, out: Path, options: dict[str, Any], frozen: bool
) -> dict[str, float]:
    from vepcli.finetune.loop import finetune
    from vepcli.finetune.model import read_meta

    t0 = time.perf_counter()
    if not (out / "model" / "finetune.json").is_file():  # a finished fold is evaluated again, not retrained
        finetune(
            FinetuneConfig(
                train=str(table_path),
                fasta=fasta,
                model=model,
                output=str(out),
                label="label",
                split_column="split",
                freeze_backbone=frozen,
                quiet=True,
                **options,
            )
        )
    meta = read_meta(out / "model")
    table = pd.read_csv(table_path, sep="\t", dtype={"chromosome": str})
    scores = score_path_probabilities(table[table["split"] == "test"], fasta, out / "model")
    return {
        "auroc": meta["test"]["auroc"],
        "val_auroc": meta["validation"]["auroc"],
        "best_step": meta["training"]["best_step"],
        "steps_done": meta["training"]["steps_done"],
        "seconds": round(time.perf_counter() - t0, 1),
        "scores": scores,
    }


def score_path_probabilities(rows: pd.DataFrame, fasta: str, model_dir: Path) -> dict[str, float]:
    """P(positive) per variant the way `vepcli score` would add it: windows, engine-pooled vectors, ScoreHead."""
    from vepcli.finetune.model import ScoreHead, read_meta
    from vepcli.genome import Genome
    from vepcli.infer import Engine, Request
    from vepcli.nn.checkpoint import load_model
    from vepcli.scores import pool_span
    from vepcli.variants import Variant, check_against_reference, normalise
    from vepcli.windows import build_windows

    meta = read_meta(model_dir)
    window, pool = meta["window"], meta["pool"]
    head = ScoreHead.load(model_dir, window, pool)
    genome = Genome(fasta)
    variants = [
        check_against_reference(normalise(Variant(str(r.chromosome), int(r.position), ".", r.ref, r.alt, i, 0)), genome)
        for i, r in enumerate(rows.itertuples())
    ]
    windows = build_windows(variants, genome, window)
    span = pool_span(window, window // 2, pool)
    res = Engine(load_model(model_dir), device="cpu", batch_size=16).run(
        [Request(s, pool=span) for s in windows.ref_seqs + windows.alt_seqs]
    )
    ref = np.stack([res[i].pooled.numpy() for i in windows.ref_index])
    alt = np.stack([r.pooled.numpy() for r in res[len(windows.ref_seqs) :]])
    p = head(ref, alt, [{} for _ in windows.variants])
    return {f"{v.chrom}:{v.pos}": float(x) for v, x in zip(windows.variants, p, strict=True)}


def pooled_comparison(
    folds: list[dict[str, Any]], labels: dict[str, int], a: str, b: str, n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """AUROC of methods a and b over all held-out rows of all folds (each fold's scores ranked within the
    fold, so that folds with different score scales pool fairly), and a paired bootstrap of the difference."""
    from sklearn.metrics import roc_auc_score

    keys, ra, rb = [], [], []
    for f in folds:
        common = sorted(set(f[a]["scores"]) & set(f[b]["scores"]))
        for method, out in ((a, ra), (b, rb)):
            s = np.array([f[method]["scores"][k] for k in common])
            out.extend((np.argsort(np.argsort(s)) + 0.5) / len(s))
        keys.extend(common)
    y = np.array([labels[k] for k in keys])
    ra, rb = np.array(ra), np.array(rb)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) == 2:
            diffs.append(roc_auc_score(y[i], rb[i]) - roc_auc_score(y[i], ra[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        f"auroc_{a}": float(roc_auc_score(y, ra)),
        f"auroc_{b}": float(roc_auc_score(y, rb)),
        "difference": float(roc_auc_score(y, rb) - roc_auc_score(y, ra)),
        "ci95": [float(lo), float(hi)],
        "p_b_better": float(np.mean(np.array(diffs) > 0)),
        "n": len(y),
    }


def run(args: CompareOptions) -> dict[str, Any]:
    """The comparison of the module docstring: writes results.json in args.output and returns it."""
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(args.set, sep="\t", dtype={"chromosome": str})
    emb = embed_all(Path(args.set), args.fasta, args.model, args.window, args.pool, out / "all.emb.parquet")
    options = {
        "window": args.window,
        "pool": args.pool,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "backbone_lr": args.backbone_lr,
        "head_hidden": args.head_hidden,
        "patience": args.patience,
        "seed": args.seed,
        "layout": args.features,
    }
    folds = []
    for k in args.only_fold if args.only_fold is not None else range(args.folds):
        work = out / f"fold{k}"
        work.mkdir(exist_ok=True)
        table = fold_table(frame, k, args.folds, args.window, 0.2)
        table.to_csv(work / "set.tsv", sep="\t", index=False)
        row = {
            "fold": k,
            "n": {s: int((table["split"] == s).sum()) for s in ("train", "valid", "test")},
            "probe": probe_auroc(table, emb, work, args.probe_features),
        }
        row["frozen_head"] = finetune_auroc(work / "set.tsv", args.fasta, args.model, work / "frozen", options, True)
        if not args.no_finetune:
            row["finetuned"] = finetune_auroc(work / "set.tsv", args.fasta, args.model, work / "ft", options, False)
        print(
            json.dumps(
                {
                    k: ({m: x for m, x in v.items() if m != "scores"} if isinstance(v, dict) else v)
                    for k, v in row.items()
                }
            ),
            flush=True,
        )
        folds.append(row)
    kinds = [k for k in ("probe", "frozen_head", "finetuned") if k in folds[0]]
    summary = {kind: float(np.mean([f[kind]["auroc"] for f in folds])) for kind in kinds}
    labels = {
        f"{c}:{p}": int(y) for c, p, y in zip(frame["chromosome"], frame["position"], frame["label"], strict=True)
    }
    pooled = {
        f"{b}_vs_{a}": pooled_comparison(folds, labels, a, b, args.bootstrap)
        for a, b in (("probe", "finetuned"), ("probe", "frozen_head"), ("frozen_head", "finetuned"))
        if a in kinds and b in kinds
    }
    result = {"settings": asdict(args), "folds": folds, "mean_auroc": summary, "pooled": pooled}
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"mean_auroc": summary, "pooled": pooled}, indent=1))
    return result
