"""Package a finished run as a shippable model folder: config.json, model.safetensors, MODEL_CARD.md.

    vepcli tools model-card RUN_DIR BASELINE_JSON OUT_DIR

The card records the data, the exact command, steps, time and the validation figures next to the
k-mer baseline computed on the same validation targets (`vepcli tools kmer-baseline -o ...`).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch

from vepcli import __version__
from vepcli.errors import UserError
from vepcli.modelinfo import file_sha256
from vepcli.nn.backbone import Backbone
from vepcli.nn.checkpoint import load_model
from vepcli.train.report import read_metrics

CHR22 = "GRCh37_chr22_subset.fa.gz"
CHR22_NOTE = (
    ": GRCh37 chr22, the 21.6 Mb of it covered by the Ensembl EPO primate alignment example "
    "(the rest N), shipped in the project's shared data"
)


def write_card(run_dir: Path, baseline_json: Path, out: Path, make_target: str = "make pretrain-default") -> Path:
    run_dir, out = Path(run_dir), Path(out)
    record = json.loads((run_dir / "model" / "training.json").read_text())
    base = json.loads(Path(baseline_json).read_text())
    objective = load_model(run_dir / "model").objective
    if objective != base.get("objective", "masked"):
        raise UserError(
            f"{baseline_json} is a {base.get('objective', 'masked')} baseline but the model is a "
            f"{objective} language model; run `vepcli tools kmer-baseline --model` on it"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run_dir / "model" / name, out / name)
    model = load_model(out)  # what we ship must load
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r.get("val_loss") is not None]
    text = (masked_card if model.objective == "masked" else causal_card)(model, record, base, rows, out, make_target)
    (out / "MODEL_CARD.md").write_text(text)
    return out / "MODEL_CARD.md"


def facts_table(model: Backbone, record: dict, out: Path, architecture: str, recipe: str) -> str:
    """The card's table of facts: what the model is, what it was trained on, how and for how long."""
    s = record["settings"]
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    held_out = ", ".join(s["val_regions"]) or s["val_intervals"] or f"last {s['val_fraction']} of each contig"
    facts = [
        ("architecture", architecture),
        ("parameters", f"{model.num_parameters():,} ({size_mb:.1f} MB in fp32 safetensors)"),
        ("trained length", f"{record['seq_len']} bp (`max_length` in config.json)"),
        (
            "data",
            f"`{Path(s['fasta']).name}`"
            + (CHR22_NOTE if Path(s["fasta"]).name == CHR22 else "")
            + (f", intervals `{s['intervals']}`" if s["intervals"] else ""),
        ),
        (
            "validation (held out)",
            f"{held_out}, cut out of training; {s['val_windows']} windows of {record['seq_len']} bp",
        ),
        ("recipe", recipe),
        (
            "steps",
            f"{record['steps']} x {record['batch_size']} windows = {record['tokens']:,} tokens, seed {s['seed']}",
        ),
        (
            "time",
            f"{record['elapsed_s'] / 60:.1f} min wall clock, {record.get('cpu_s_rank0', 0) / 60:.1f} min of CPU, "
            f"{record['processes']} process(es) of {s['threads']} thread(s) on a shared 2-core machine "
            f"({platform.machine()}, torch {torch.__version__})",
        ),
        ("vepcli", __version__),
    ]
    return "\n".join(f"| {k} | {v} |" for k, v in facts)


def optimiser_recipe(s: dict, exempt: str) -> str:
    recipe = (
        f"AdamW lr {s['lr']} betas {tuple(s['betas'])} wd {s['weight_decay']} (none on {exempt}), "
        f"{s['warmup_frac']:.0%} warmup + cosine to {s['min_lr']}, clip {s['grad_clip']}"
    )
    if s.get("average_last", 1) > 1:
        n, every = s["average_last"], s["checkpoint_every"]
        recipe += f"; the weights are the mean of the last {n} checkpoints (every {every} steps)"
    return recipe


def masked_card(model: Backbone, record: dict, base: dict, rows: list[dict], out: Path, make_target: str) -> str:
    """The card of a masked (Caduceus) model: [MASK] accuracy against the masked k-mer baseline."""
    cfg, s, val = model.config, record["settings"], record["final_validation"]
    curve = "\n".join(
        f"| {int(r['step'])} | {r['val_loss']:.4f} | {r['val_acc']:.4f} | {r['val_acc_masked']:.4f} |" for r in rows
    )
    b = base["best"]
    by_k = "\n".join(
        f"| {k} | {v['acc_masked']:.4f} | {v['acc_all']:.4f} | {v['acc_masked_true_flanks']:.4f} | "
        f"{v['acc_all_true_flanks']:.4f} |"
        for k, v in base["by_k"].items()
    )
    recipe = "MLM 15% (80/10/10), N as [PAD], " + optimiser_recipe(s, "biases, A_log, D, embeddings, norms")
    architecture = (
        f"{cfg.arch}, d_model {cfg.d_model}, n_layer {cfg.n_layer}, d_state {cfg.d_state}, "
        f"expand {cfg.ssm_cfg['expand']}"
    )
    table = facts_table(model, record, out, architecture, recipe)

    def best(key: str) -> str:
        return f"{b[key]['acc']:.4f} (k={b[key]['k']})"

    others = base.get("models", {})
    other_rows = "".join(
        f"| {m['name']} ({m['architecture']}, {m['parameters']:,} parameters, trained at {m['trained_length']} bp;"
        f" weights sha256 {m['sha256'][:12]}) | {m['val_acc_masked']:.4f} | {m['val_acc']:.4f} |\n"
        for m in others.values()
    )
    verdict = masked_verdict(val, b, others)
    text = f"""# {out.name}

A small Caduceus-PS (reverse-complement-equivariant bi-directional Mamba) masked language model,
pretrained by `vepcli pretrain` on human chromosome 22. It is vepcli's bundled default: small
enough to ship and to run on a laptop CPU, not a substitute for the published 131k models.

| | |
| --- | --- |
{table}

Reproduce with `{make_target}`, which ran:

    {record["command"]}

## Validation: masked-token accuracy vs the best k-mer baseline

All are scored on the same {base["val_windows"]} held-out windows with the same masks. The k-mer
baseline predicts a masked base as the most frequent centre base of its k left + k right bases in
the training region (backing off to smaller k), for k = 0..{max(map(int, base["by_k"]))}; the best k is
reported. "Like for like" reads the flanks from the model's own input (15% of it masked or
replaced); "true flanks" reads the true bases, which the model never sees.

| | [MASK] targets | all targets |
| --- | ---: | ---: |
| **this model** | **{val["val_acc_masked"]:.4f}** | **{val["val_acc"]:.4f}** |
{other_rows}| best k-mer, like for like | {best("acc_masked")} | {best("acc_all")} |
| best k-mer, true flanks | {best("acc_masked_true_flanks")} | {best("acc_all_true_flanks")} |

{verdict}

Validation loss {val["val_loss"]:.4f} nats per target. "All targets" counts the 20% of targets whose
input still shows a base; the best guess there is that base, and the baseline takes it.

Validation during training:

| step | loss | accuracy, all targets | accuracy, [MASK] targets |
| ---: | ---: | ---: | ---: |
{curve}

k-mer baseline by k:

| k | [MASK], like for like | all, like for like | [MASK], true flanks | all, true flanks |
| ---: | ---: | ---: | ---: | ---: |
{by_k}

{use_and_limits(record, out)}"""
    return text


def masked_verdict(val: dict, b: dict, others: dict) -> str:
    """Whether the model beats the best masked k-mer baseline and the models it is compared with."""
    margins = [
        (name, 100 * (val["val_acc_masked"] - b[key]["acc"]))
        for name, key in (("like for like", "acc_masked"), ("with true flanks", "acc_masked_true_flanks"))
    ]
    verdict = (
        "On [MASK] targets the model "
        + "; ".join(
            f"{'beats' if m > 0 else 'does NOT beat'} the best k-mer baseline {name} ({m:+.2f} points)"
            for name, m in margins
        )
        + "."
    )
    return verdict + "".join(
        f" Against {m['name']} ({m['sha256'][:12]}) on the same targets: "
        f"{100 * (val['val_acc_masked'] - m['val_acc_masked']):+.2f} points of [MASK] accuracy, "
        f"{val['val_loss'] - m['val_loss']:+.4f} nats of validation loss ({m['val_loss']:.4f})."
        for m in others.values()
    )


def use_and_limits(record: dict, out: Path) -> str:
    return f"""## Use and limits

Load with `vepcli.nn.checkpoint.load_model("{out}")` or give the folder as `--model`. Trained for
{record.get("cpu_s_rank0", record["elapsed_s"]) / 60:.0f} minutes of one CPU core: it knows local
sequence statistics and little else. Windows longer than {record["seq_len"]} bp run but were never
seen in training.
"""


def causal_card(model: Backbone, record: dict, base: dict, rows: list[dict], out: Path, make_target: str) -> str:
    """The card of a causal (hybrid) model: next-token accuracy and loss against the causal k-mer baseline."""
    s, val, b = record["settings"], record["final_validation"], base["best"]
    facts = model.describe()
    architecture = (
        f"{facts['architecture']}, d_model {facts['d_model']}, n_layer {facts['n_layer']}, "
        f"attention layers {facts['attention layers']} ({facts['attention']}), Mamba-2 {facts['mamba-2']}, "
        f"d_intermediate {facts['d_intermediate']}"
    )
    rc = "reverse-complement augmentation on half the windows, " if s["rc_aug"] else ""
    recipe = "next-token prediction, N as [PAD] and never a target, " + rc
    recipe += optimiser_recipe(s, "biases, A_log, D, dt_bias, embeddings, norms")
    table = facts_table(model, record, out, architecture, recipe)
    curve = "\n".join(f"| {int(r['step'])} | {r['val_loss']:.4f} | {r['val_acc']:.4f} |" for r in rows)
    by_k = "\n".join(f"| {k} | {v['acc']:.4f} | {v['loss']:.4f} |" for k, v in base["by_k"].items())
    acc_margin = 100 * (val["val_acc"] - b["acc"]["acc"])
    loss_margin = val["val_loss"] - b["loss"]["loss"]
    verdict = (
        f"The model {'beats' if acc_margin > 0 else 'does NOT beat'} the best k-mer baseline's next-base "
        f"accuracy ({acc_margin:+.2f} points) and {'beats' if loss_margin < 0 else 'does NOT beat'} its loss "
        f"({loss_margin:+.4f} nats)."
    )
    mine = file_sha256(out / "model.safetensors")  # a baseline run with --model on this very model
    others = "".join(
        f"| {m['name']} ({m['architecture']}, {m['parameters']:,} parameters; weights sha256 {m['sha256'][:12]}) "
        f"| {m['val_acc']:.4f} | {m['val_loss']:.4f} |\n"
        for m in base.get("models", {}).values()
        if m["sha256"] != mine
    )
    return f"""# {out.name}

A small hybrid Mamba-2/attention decoder (HybriDNA-style; arXiv 2502.10807): a causal DNA language
model that predicts each base from the bases before it, pretrained by `vepcli pretrain --arch hybrid`.
Its figures are next-token figures: the accuracy of predicting every base from its left context
alone, not the [MASK] accuracy of a masked (Caduceus) model, which sees both sides of a base.

| | |
| --- | --- |
{table}

Made by:

    {record["command"]}

## Validation: next-token accuracy vs the best causal k-mer baseline

Scored on the same {base["val_windows"]} held-out windows: every A/C/G/T after a window's first base
is a target. The k-mer baseline predicts each as the most frequent next base of the k bases before it
in the window, in the training region (backing off to smaller k), for k = 0..{max(map(int, base["by_k"]))};
its loss is that of the add-one smoothed counts. The best k of each is reported.

| | next-base accuracy | loss (nats per base) |
| --- | ---: | ---: |
| **this model** | **{val["val_acc"]:.4f}** | **{val["val_loss"]:.4f}** |
{others}| best k-mer | {b["acc"]["acc"]:.4f} (k={b["acc"]["k"]}) | {b["loss"]["loss"]:.4f} (k={b["loss"]["k"]}) |

{verdict}

Validation during training:

| step | next-token loss | next-token accuracy |
| ---: | ---: | ---: |
{curve}

Causal k-mer baseline by k:

| k | accuracy | loss |
| ---: | ---: | ---: |
{by_k}

{use_and_limits(record, out)}"""
