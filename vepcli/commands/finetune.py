"""`vepcli finetune`: fine-tune a Caduceus backbone and a head on labelled variants or intervals
(see docs/finetuning.md). Options only; the work is `vepcli.finetune.loop.finetune`."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.defaults import POOL_DEFAULT


@click.command()
@click.argument("train", type=click.Path(exists=True, dir_okay=False))
@click.option("-f", "--fasta", required=True, type=click.Path(exists=True, dir_okay=False), help="Reference FASTA.")
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
    default=0.2,
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
    default=POOL_DEFAULT,
    show_default=True,
    help="Variants: pooling span in bp, centred on the variant (clamped to the window).",
)
@click.option(
    "--features",
    "layout",
    type=click.Choice(["ref-alt-diff", "ref-alt", "diff"]),
    default="ref-alt-diff",
    show_default=True,
    help="Variants: the head's input, [ref | alt | alt-ref] by default.",
)
@click.option(
    "--head-hidden", default=64, show_default=True, type=opt.COUNT, help="Hidden units of the head (0: linear)."
)
@click.option("--dropout", default=0.1, show_default=True, type=opt.DROPOUT, help="Dropout in the head.")
@click.option("--epochs", default=10, show_default=True, type=opt.POSITIVE)
@click.option("--batch-size", default=16, show_default=True, type=opt.BATCH, help="Rows per step over all processes.")
@click.option("--micro-batch", type=opt.BATCH, default=None, help="Rows per forward pass and process.")
@click.option("--lr", default=1e-3, show_default=True, type=opt.RATE, help="Peak learning rate of the head.")
@click.option(
    "--backbone-lr", default=1e-4, show_default=True, type=opt.RATE, help="Peak learning rate of the backbone."
)
@click.option("--freeze-backbone", is_flag=True, help="Train the head only (the backbone's features are cached).")
@click.option("--weight-decay", default=0.01, show_default=True, type=opt.NONNEG_FLOAT)
@click.option("--warmup-frac", default=0.1, show_default=True, type=opt.UNIT)
@click.option("--min-lr-ratio", default=0.01, show_default=True, type=opt.UNIT, help="Cosine floor / peak.")
@click.option("--grad-clip", default=1.0, show_default=True, type=opt.RATE)
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True)
@click.option(
    "--metric",
    type=click.Choice(["auroc", "accuracy", "loss"]),
    default="auroc",
    show_default=True,
    help="Validation metric for early stopping and model choice.",
)
@click.option("--val-every", type=opt.POSITIVE, default=None, help="Validate every N steps [default: every epoch].")
@click.option(
    "--patience",
    default=3,
    show_default=True,
    type=opt.COUNT,
    help="Stop after this many validations without improvement (0: never).",
)
@click.option(
    "--checkpoint-every", type=opt.POSITIVE, default=None, help="Checkpoint every N steps [default: --val-every]."
)
@click.option(
    "--keep-checkpoints", default=2, show_default=True, type=opt.COUNT, help="Newest checkpoints kept (0: all)."
)
@click.option("--log-every", default=10, show_default=True, type=opt.POSITIVE)
@opt.seed_option()
@click.option("--device", default="auto", show_default=True, type=opt.TRAIN_DEVICE)
@click.option("--precision", default="auto", show_default=True, type=opt.TRAIN_PRECISION)
@opt.train_threads_option()
@click.option("--resume", is_flag=True, help="Continue the run in -o from its newest checkpoint.")
@click.option("-q", "--quiet", is_flag=True)
def finetune(**options) -> None:
    """Fine-tune a Caduceus backbone + head on labelled variants in TRAIN (VCF or table) or intervals."""
    from vepcli.outpath import check_output_folder

    check_output_folder(options["output"])
    from vepcli.finetune.loop import FinetuneConfig
    from vepcli.finetune.loop import finetune as run_finetune

    run_finetune(FinetuneConfig(**options))
