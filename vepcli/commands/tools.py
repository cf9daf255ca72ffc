"""`vepcli tools ...`: the maintainer tools behind `make pretrain-default` and docs/finetuning.md.

- `kmer-baseline`: the k-mer baseline a pretrained model must beat, on the validation set of `vepcli pretrain`
  (masked or causal, as the model);
- `model-card`: a finished pretraining run -> a shippable model folder with MODEL_CARD.md;
- `compare-finetune`: fine-tuning against the frozen-embedding probe, on the same labelled set and folds.
"""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.finetune.config import CompareOptions
from vepcli.train.config import PretrainConfig

COMPARE = opt.config_defaults(CompareOptions)
PRETRAIN = opt.config_defaults(PretrainConfig)  # the data options must match the run's to rebuild its validation set


@click.group()
def tools() -> None:
    """Maintainer tools: k-mer baseline, model card, fine-tune vs probe comparison."""


@tools.command("kmer-baseline")
@opt.fasta_option()
@click.option("--intervals", type=click.Path(dir_okay=False), help="Training BED, as given to `vepcli pretrain`.")
@click.option("--val-intervals", type=click.Path(dir_okay=False), help="Validation BED, as for `vepcli pretrain`.")
@click.option(
    "--val-region",
    "val_regions",
    multiple=True,
    metavar="CHR:START-END",
    help="Held-out validation region; repeatable.",
)
@click.option("--val-fraction", default=PRETRAIN["val_fraction"], show_default=True, type=opt.FRACTION)
@click.option("--seq-len", default=PRETRAIN["seq_len"], show_default=True, type=opt.WINDOW)
@click.option("--val-windows", default=PRETRAIN["val_windows"], show_default=True, type=opt.POSITIVE)
@click.option("--mask-prob", default=PRETRAIN["mask_prob"], show_default=True, type=opt.FRACTION)
@click.option("--min-base-fraction", default=PRETRAIN["min_base_fraction"], show_default=True, type=opt.UNIT)
@opt.seed_option(PRETRAIN["seed"])
@click.option(
    "--max-k", default=7, show_default=True, type=opt.POSITIVE, help="Largest k (bases on each side; causal: before)."
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Also score this model folder on the same windows and masks (the card compares with it); repeatable.",
)
@click.option(
    "--objective",
    type=click.Choice(["masked", "causal"]),
    help="Without --model: masked (a base from k bases each side) or causal (the next base from the k before) "
    "[default: the model's objective, else masked].",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
def kmer_baseline(**options) -> None:
    """Accuracy of k-mer models on the validation targets of `vepcli pretrain`: masked bases from their
    flanks (Caduceus), or each next base from the bases before it (a causal model).

    Give the data options and seed of the pretraining run: the validation windows and masks are then
    the ones the model was scored on.
    """
    from vepcli.train.baseline import run_baseline

    run_baseline(**options)


@tools.command("model-card")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("baseline_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("out")
def model_card(run_dir: str, baseline_json: str, out: str) -> None:
    """Copy the model of RUN_DIR (`vepcli pretrain -o`) to OUT with a MODEL_CARD.md built from the run's
    record and BASELINE_JSON (`vepcli tools kmer-baseline -o`)."""
    from vepcli.outpath import check_output_folder
    from vepcli.train.card import write_card

    check_output_folder(out, option="OUT")
    click.echo(write_card(run_dir, baseline_json, out))


@tools.command("compare-finetune")
@click.option(
    "--set",
    "set_",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled SNV table (tests/data/make_probe_set.py).",
)
@opt.fasta_option()
@click.option("--model", required=True, help="Base model directory or Hugging Face id.")
@click.option("-o", "--output", required=True)
@click.option("--window", default=COMPARE["window"], show_default=True, type=opt.WINDOW)
@click.option("--pool", default=COMPARE["pool"], show_default=True, type=opt.POOL)
@click.option("--folds", default=COMPARE["folds"], show_default=True, type=opt.FOLDS)
@click.option("--only-fold", "only_fold", multiple=True, type=int, help="Run this held-out fold only; repeatable.")
@click.option("--epochs", default=COMPARE["epochs"], show_default=True, type=opt.POSITIVE)
@click.option("--batch-size", default=COMPARE["batch_size"], show_default=True, type=opt.BATCH)
@click.option("--lr", default=COMPARE["lr"], show_default=True, type=opt.RATE)
@click.option("--backbone-lr", default=COMPARE["backbone_lr"], show_default=True, type=opt.RATE)
@click.option("--head-hidden", default=COMPARE["head_hidden"], show_default=True, type=opt.COUNT)
@click.option("--patience", default=COMPARE["patience"], show_default=True, type=opt.COUNT)
@click.option("--features", default=COMPARE["features"], show_default=True, help="Input of the fine-tuned head.")
@click.option("--probe-features", default=COMPARE["probe_features"], show_default=True)
@click.option("--no-finetune", is_flag=True, help="Probe and frozen head only.")
@click.option(
    "--bootstrap",
    default=COMPARE["bootstrap"],
    show_default=True,
    type=opt.COUNT,
    help="Paired resamples for the pooled AUROC differences.",
)
@opt.seed_option(COMPARE["seed"])
@opt.threads_option(COMPARE["threads"], "CPU threads.")
def compare_finetune(set_: str, only_fold: tuple[int, ...], **options) -> None:
    """Held-out AUROC of a probe, a frozen head and a fine-tuned model on the same folds (docs/finetuning.md)."""
    from vepcli.finetune.compare import run
    from vepcli.outpath import check_output_folder

    check_output_folder(options["output"])
    run(CompareOptions(set=set_, only_fold=list(only_fold) or None, **options))
