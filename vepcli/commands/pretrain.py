"""`vepcli pretrain`: masked-LM pretraining of a Caduceus model on a FASTA (see docs/pretraining.md)."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.train.config import ARCHS, PretrainConfig

_D = PretrainConfig.__dataclass_fields__


def _default(name: str):
    return _D[name].default


@click.command()
@click.option("--fasta", required=True, type=click.Path(dir_okay=False), help="Genome FASTA (plain or bgzip).")
@click.option("-o", "--output", required=True, help="Run folder: checkpoints/, metrics.csv, curves.png, model/.")
@click.option(
    "--intervals",
    type=click.Path(dir_okay=False),
    help="BED of training intervals; a 4th column train/valid/test (Basenji folds) also sets validation.",
)
@click.option("--val-intervals", type=click.Path(dir_okay=False), help="BED of held-out validation intervals.")
@click.option(
    "--val-region",
    "val_regions",
    multiple=True,
    metavar="CHR:START-END",
    help="Held-out validation region (1-based, inclusive); repeatable.",
)
@click.option(
    "--val-fraction",
    default=_default("val_fraction"),
    show_default=True,
    type=opt.FRACTION,
    help="Without validation regions: hold out this last fraction of every contig.",
)
@click.option("--arch", type=click.Choice(list(ARCHS)), default=_default("arch"), show_default=True)
@click.option("--d-model", default=_default("d_model"), show_default=True, type=opt.D_MODEL)
@click.option("--n-layer", default=_default("n_layer"), show_default=True, type=opt.N_LAYER)
@click.option("--d-state", default=_default("d_state"), show_default=True, type=opt.D_STATE)
@click.option(
    "--seq-len", default=_default("seq_len"), show_default=True, type=opt.WINDOW, help="Window length in bases."
)
@click.option(
    "--batch-size",
    default=_default("batch_size"),
    show_default=True,
    type=opt.BATCH,
    help="Windows per optimizer step, over all processes.",
)
@click.option(
    "--micro-batch",
    type=opt.BATCH,
    help="Windows per forward pass and process (gradient accumulation "
    "makes up the rest); default: the whole per-process batch.",
)
@click.option("--steps", default=_default("steps"), show_default=True, type=opt.POSITIVE)
@click.option("--lr", default=_default("lr"), show_default=True, type=opt.RATE, help="Peak learning rate.")
@click.option("--min-lr", default=_default("min_lr"), show_default=True, type=opt.NONNEG_FLOAT, help="Cosine floor.")
@click.option("--warmup-frac", default=_default("warmup_frac"), show_default=True, type=opt.UNIT)
@click.option("--weight-decay", default=_default("weight_decay"), show_default=True, type=opt.NONNEG_FLOAT)
@click.option("--grad-clip", default=_default("grad_clip"), show_default=True, type=opt.RATE)
@click.option("--mask-prob", default=_default("mask_prob"), show_default=True, type=opt.FRACTION)
@click.option(
    "--min-base-fraction",
    default=_default("min_base_fraction"),
    show_default=True,
    type=opt.UNIT,
    help="Windows with fewer A/C/G/T than this share are skipped.",
)
@click.option("--rc-aug/--no-rc-aug", default=None, help="Reverse-complement augmentation [default: on for Ph].")
@click.option("--val-every", default=_default("val_every"), show_default=True, type=opt.POSITIVE)
@click.option("--val-windows", default=_default("val_windows"), show_default=True, type=opt.POSITIVE)
@click.option("--checkpoint-every", default=_default("checkpoint_every"), show_default=True, type=opt.POSITIVE)
@click.option(
    "--keep-checkpoints",
    default=_default("keep_checkpoints"),
    show_default=True,
    type=opt.COUNT,
    help="Newest checkpoints kept (0: all).",
)
@click.option("--log-every", default=_default("log_every"), show_default=True, type=opt.POSITIVE)
@opt.seed_option(_default("seed"))
@click.option("--device", default=_default("device"), show_default=True, type=opt.TRAIN_DEVICE)
@click.option("--precision", default=_default("precision"), show_default=True, type=opt.TRAIN_PRECISION)
@opt.train_threads_option(_default("threads"))
@click.option("--resume", is_flag=True, help="Continue the run in -o from its newest checkpoint.")
@click.option("-q", "--quiet", is_flag=True)
def pretrain(**options) -> None:
    """Pretrain a Caduceus masked language model on a genome (torchrun for several processes)."""
    from vepcli.outpath import check_output_folder

    check_output_folder(options["output"])
    from vepcli.train.pretrain import pretrain as run_pretrain  # torch loads here, not at `vepcli --help`

    run_pretrain(PretrainConfig(**options))
