"""`vepcli pretrain`: masked-LM pretraining of a Caduceus or DNA-xLSTM model, or next-token pretraining of a
hybrid Mamba-2/attention or causal DNA-xLSTM model, on a FASTA (see docs/pretraining.md)."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.train.config import ARCHS, PretrainConfig

D = opt.config_defaults(PretrainConfig)


class IndexList(click.ParamType):
    """Comma-separated layer indices (`3,7`); an empty value is the empty list."""

    name = "indices"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of layer indices (e.g. 3,7)", param, ctx)


@click.command()
@opt.fasta_option()
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
    metavar="REGION",
    help="Held-out validation region: chr, chr:beg-end or chr:beg- (1-based, inclusive; no thousands "
    "separators); repeatable.",
)
@click.option(
    "--val-fraction",
    default=D["val_fraction"],
    show_default=True,
    type=opt.FRACTION,
    help="Without validation regions: hold out this last fraction of every contig.",
)
@click.option("--arch", type=click.Choice(list(ARCHS)), default=D["arch"], show_default=True)
@click.option("--d-model", default=D["d_model"], show_default=True, type=opt.D_MODEL)
@click.option("--n-layer", default=D["n_layer"], show_default=True, type=opt.N_LAYER)
@click.option("--d-state", default=D["d_state"], show_default=True, type=opt.D_STATE)
@click.option(
    "--headdim", type=click.IntRange(min=1), help="Hybrid: Mamba-2 channels per head [default: 64, at most 2 d_model]."
)
@click.option(
    "--attn-layers",
    type=IndexList(),
    metavar="I,J,...",
    help="Hybrid: indices (from 0) of the attention layers; '' for none [default: the last of every 8 layers].",
)
@click.option(
    "--attn-heads",
    type=click.IntRange(min=1),
    help="Hybrid: attention heads (as many key/value heads) [default: d_model / 64].",
)
@click.option(
    "--d-intermediate", type=opt.COUNT, help="Hybrid: gated-MLP width after each mixer; 0: none [default: 0]."
)
@click.option(
    "--slstm-layers",
    type=IndexList(),
    metavar="I,J,...",
    help="DNA-xLSTM: indices (from 0) of the sLSTM blocks, the rest mLSTM [default: none, all mLSTM].",
)
@click.option("--seq-len", default=D["seq_len"], show_default=True, type=opt.WINDOW, help="Window length in bases.")
@click.option(
    "--batch-size",
    default=D["batch_size"],
    show_default=True,
    type=opt.BATCH,
    help="Windows per optimizer step, over all processes.",
)
@click.option("--steps", default=D["steps"], show_default=True, type=opt.POSITIVE)
@click.option("--lr", default=D["lr"], show_default=True, type=opt.RATE, help="Peak learning rate.")
@click.option("--min-lr", default=D["min_lr"], show_default=True, type=opt.NONNEG_FLOAT, help="Cosine floor.")
@click.option("--warmup-frac", default=D["warmup_frac"], show_default=True, type=opt.UNIT)
@click.option("--weight-decay", default=D["weight_decay"], show_default=True, type=opt.NONNEG_FLOAT)
@click.option("--grad-clip", default=D["grad_clip"], show_default=True, type=opt.RATE)
@click.option("--mask-prob", default=D["mask_prob"], show_default=True, type=opt.FRACTION)
@click.option(
    "--min-base-fraction",
    default=D["min_base_fraction"],
    show_default=True,
    type=opt.UNIT,
    help="Windows with fewer A/C/G/T than this share are skipped.",
)
@click.option("--rc-aug/--no-rc-aug", default=None, help="Reverse-complement augmentation [default: on for Ph].")
@click.option("--val-every", default=D["val_every"], show_default=True, type=opt.POSITIVE)
@click.option("--val-windows", default=D["val_windows"], show_default=True, type=opt.POSITIVE)
@click.option("--checkpoint-every", default=D["checkpoint_every"], show_default=True, type=opt.POSITIVE)
@click.option(
    "--average-last",
    default=D["average_last"],
    show_default=True,
    type=opt.POSITIVE,
    help="Write as the model the mean of the weights of the last N checkpoints (checkpoint averaging), "
    "validated anew; 1: the last step's weights.",
)
@opt.training_run_options(PretrainConfig)
def pretrain(**options) -> None:
    """Pretrain a DNA language model on a genome: Caduceus or DNA-xLSTM (masked LM), the hybrid
    Mamba-2/attention decoder or a causal DNA-xLSTM (next token); torchrun for several processes."""
    from vepcli.outpath import check_output_folder

    check_output_folder(options["output"])
    from vepcli.train.pretrain import pretrain as run_pretrain  # torch loads here, not at `vepcli --help`

    run_pretrain(PretrainConfig(**options))
