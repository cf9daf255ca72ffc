"""`vepcli finetune`: fine-tune a Caduceus backbone and a head on labelled variants or intervals
(see docs/finetuning.md). Options only, their defaults from `FinetuneConfig`; the work is
`vepcli.finetune.loop.finetune`."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.finetune.config import CLASS_WEIGHTS, METRICS, VARIANT_LAYOUTS, FinetuneConfig

D = opt.config_defaults(FinetuneConfig)


@click.command()
@click.argument("train", type=click.Path(exists=True, dir_okay=False))
@opt.fasta_option()
@click.option("-m", "--model", default=None, help="Base model directory or Hugging Face id [default: bundled model].")
@click.option(
    "-o", "--output", required=True, help="Run folder: checkpoints/, metrics.csv, model/ (the fine-tuned model)."
)
@click.option("--label", default=None, help="Label column (VCF: INFO field; BED: the 4th column by default).")
@click.option(
    "--intervals",
    is_flag=True,
    help="TRAIN holds labelled intervals (a .bed is taken as such): "
    "sequence classification of the window centred on each interval.",
)
@click.option("--covariate", "covariates", multiple=True, help="Categorical covariate column; repeatable.")
@click.option("--positive", default=None, help="The positive class (binary: its probability is the score).")
@click.option("--split-column", default=None, help="Column with train / valid / test per row.")
@click.option("--val-chrom", "val_chroms", multiple=True, help="Validation chromosome; repeatable.")
@click.option(
    "--val-fraction",
    default=D["val_fraction"],
    show_default=True,
    type=opt.FRACTION,
    help="Without the two above: the last fraction of rows in genome order validates.",
)
@click.option(
    "--window",
    type=opt.WINDOW,
    default=None,
    help="Window in bp [variants: 1024, or the model's trained length if shorter; intervals: the longest].",
)
@click.option(
    "--pool",
    type=opt.POOL,
    default=D["pool"],
    show_default=True,
    help="Variants: pooling span in bp, centred on the variant (clamped to the window).",
)
@click.option(
    "--features",
    "layout",
    type=click.Choice(VARIANT_LAYOUTS),
    default=D["layout"],
    show_default=True,
    help="Variants: the head's input, [ref | alt | alt-ref] by default.",
)
@click.option(
    "--head-hidden",
    default=D["head_hidden"],
    show_default=True,
    type=opt.COUNT,
    help="Hidden units of the head (0: linear).",
)
@click.option("--dropout", default=D["dropout"], show_default=True, type=opt.DROPOUT, help="Dropout in the head.")
@click.option("--epochs", default=D["epochs"], show_default=True, type=opt.POSITIVE)
@click.option(
    "--batch-size", default=D["batch_size"], show_default=True, type=opt.BATCH, help="Rows per step over all processes."
)
@click.option("--lr", default=D["lr"], show_default=True, type=opt.RATE, help="Peak learning rate of the head.")
@click.option(
    "--backbone-lr",
    default=D["backbone_lr"],
    show_default=True,
    type=opt.RATE,
    help="Peak learning rate of the backbone.",
)
@click.option("--freeze-backbone", is_flag=True, help="Train the head only (the backbone's features are cached).")
@click.option(
    "--echo",
    is_flag=True,
    help="Causal models: pool echo states (the window repeated, [x ; x], the second copy's states), "
    "which see both sides of each base.",
)
@click.option("--weight-decay", default=D["weight_decay"], show_default=True, type=opt.NONNEG_FLOAT)
@click.option("--warmup-frac", default=D["warmup_frac"], show_default=True, type=opt.UNIT)
@click.option(
    "--min-lr-ratio", default=D["min_lr_ratio"], show_default=True, type=opt.UNIT, help="Cosine floor / peak."
)
@click.option("--grad-clip", default=D["grad_clip"], show_default=True, type=opt.RATE)
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=D["class_weight"], show_default=True)
@click.option(
    "--metric",
    type=click.Choice(list(METRICS)),
    default=D["metric"],
    show_default=True,
    help="Validation metric for early stopping and model choice.",
)
@click.option("--val-every", type=opt.POSITIVE, default=None, help="Validate every N steps [default: every epoch].")
@click.option(
    "--patience",
    default=D["patience"],
    show_default=True,
    type=opt.COUNT,
    help="Stop after this many validations without improvement (0: never).",
)
@click.option(
    "--checkpoint-every", type=opt.POSITIVE, default=None, help="Checkpoint every N steps [default: --val-every]."
)
@opt.training_run_options(FinetuneConfig)
def finetune(**options) -> None:
    """Fine-tune a backbone (Caduceus or the hybrid) + head on labelled variants in TRAIN (VCF or table) or
    intervals."""
    from vepcli.outpath import check_output_folder

    check_output_folder(options["output"])
    from vepcli.finetune.loop import finetune as run_finetune  # torch loads here, not at `vepcli --help`

    run_finetune(FinetuneConfig(**options))
