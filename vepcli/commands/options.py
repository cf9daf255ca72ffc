"""Option types shared by the commands, so that every command applies the same rules to the same option.

A value outside its range is a usage error (exit 2, one line) before any work starts.
"""

from __future__ import annotations

import math
import re

import click

from vepcli.modelcheck import MODEL_INT_LIMITS, SSM_INT_LIMITS
from vepcli.scoring import zero_shot_names

MAX_WINDOW = 131_072


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (click's own range lets nan through: nan < x is False)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


THREADS = click.IntRange(min=1)  # --threads: CPU threads (per process in pretrain/finetune)
BATCH = click.IntRange(min=1)  # --batch-size, --micro-batch
WINDOW = click.IntRange(1, MAX_WINDOW)  # --window of score/embed/finetune, --seq-len of pretrain: bases
POOL = click.IntRange(min=0)
MAX_INDEL = click.IntRange(min=1)
POSITIVE = click.IntRange(min=1)  # --steps, --epochs, --val-every, --checkpoint-every, --log-every, ...
COUNT = click.IntRange(min=0)  # --keep-checkpoints (0: all), --patience (0: never), --bootstrap, --head-hidden
FRACTION = FiniteFloat(0.0, 1.0, min_open=True, max_open=True)  # --val-fraction, --mask-prob
UNIT = FiniteFloat(0.0, 1.0)  # --warmup-frac, --min-lr-ratio, --min-base-fraction: 0..1 inclusive
DROPOUT = FiniteFloat(0.0, 1.0, max_open=True)
NONNEG_FLOAT = FiniteFloat(min=0.0)  # --weight-decay, --min-lr
RATE = FiniteFloat(min=0.0, min_open=True)  # learning rates, --grad-clip: > 0
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch take as a seed
FOLDS = click.IntRange(min=2)  # cross-validation needs a fold to hold out and one to train on
# model sizes: the limits modelcheck applies to a config.json, so that what pretrain makes, score loads
D_MODEL = click.IntRange(1, MODEL_INT_LIMITS["d_model"])
N_LAYER = click.IntRange(1, MODEL_INT_LIMITS["n_layer"])
D_STATE = click.IntRange(1, SSM_INT_LIMITS["d_state"])
TRAIN_DEVICE = click.Choice(["auto", "cpu", "cuda"])
TRAIN_PRECISION = click.Choice(["auto", "fp32", "bf16", "fp16"])


def seed_option(default: int = 0):
    """--seed, the same in every command that draws random numbers."""
    return click.option("--seed", type=SEED, default=default, show_default=True, help="Random seed (0..2^32-1).")


def train_threads_option(default: int = 1):
    """--threads of pretrain and finetune: CPU threads per process."""
    return click.option("--threads", type=THREADS, default=default, show_default=True, help="CPU threads per process.")


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:K."""

    name = "device"
    _PATTERN = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")

    def convert(self, value, param, ctx):
        if isinstance(value, str) and self._PATTERN.match(value):
            return value
        self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:K", param, ctx)


class ScoreList(click.ParamType):
    """A comma-separated list of distinct score names."""

    name = "scores"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(s.strip() for s in str(value).split(",") if s.strip())
        if not names:
            self.fail(f"no score named; choose from {', '.join(zero_shot_names())}", param, ctx)
        unknown = [s for s in names if s not in zero_shot_names()]
        if unknown:
            self.fail(f"unknown score(s) {', '.join(unknown)}; choose from {', '.join(zero_shot_names())}", param, ctx)
        twice = sorted({s for s in names if names.count(s) > 1})
        if twice:
            self.fail(f"{', '.join(twice)} named twice; name each score once", param, ctx)
        return names


DEVICE = Device()
SCORES = ScoreList()


def windows_and_run_options(output_help: str):
    """The options `score` and `embed` share (input, model, output, windows, device and run control): declared
    once, so both commands take the same values with the same rules and help; each adds its own after them."""
    from vepcli.defaults import POOL_DEFAULT

    shared = [
        click.argument("variants", type=click.Path(exists=True, dir_okay=False)),
        click.option(
            "-f",
            "--fasta",
            required=True,
            type=click.Path(exists=True, dir_okay=False),
            help="Reference FASTA (bgzip with .fai/.gzi, or plain).",
        ),
        click.option(
            "-m", "--model", default=None, help="Model directory or Hugging Face id [default: bundled model]."
        ),
        click.option("-o", "--output", required=True, help=output_help),
        click.option("-r", "--regions", default=None, help="chr:beg-end[,...] or a BED file."),
        click.option("--window", type=WINDOW, default=None, help="Window in bp [default: the model's trained length]."),
        click.option(
            "--pool",
            type=POOL,
            default=POOL_DEFAULT,
            show_default=True,
            help="Embedding pooling span in bp, centred on the variant.",
        ),
        click.option("--no-strand-average", is_flag=True, help="Forward strand only."),
        click.option("--no-share-ref", is_flag=True, help="Compute the ref window again for every allele."),
        click.option("--ref-mismatch", type=click.Choice(["skip", "error"]), default="skip", show_default=True),
        click.option("--shard", default=None, help="I/N: only shard I of N (1-based)."),
        click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu or cuda[:k]."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True),
        click.option(
            "--batch-size", type=BATCH, default=None, help="Windows per forward pass [default: 8 on a GPU, 1 on a CPU]."
        ),
        click.option("--threads", type=THREADS, default=None, help="CPU threads [default: all cores]."),
        click.option("--resume", is_flag=True, help="Continue a stopped run with the same inputs and settings."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
    ]

    def decorate(fn):
        for decorator in reversed(shared):
            fn = decorator(fn)
        return fn

    return decorate


def score_settings(*, no_strand_average: bool, no_share_ref: bool, shard: str | None, threads: int | None, **values):
    """ScoreSettings from the shared options (and any of the command's own fields), threads applied."""
    if threads:
        import torch  # imported here: `vepcli --help` and `vepcli merge` stay quick

        torch.set_num_threads(threads)
    from vepcli.pipeline import ScoreSettings

    return ScoreSettings(
        strand_average=not no_strand_average, share_ref=not no_share_ref, shard=parse_shard(shard), **values
    )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard I/N as (I, N)."""
    from vepcli.errors import UserError

    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must look like I/N, e.g. 3/8") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard {text}: I must be between 1 and N")
    return i, n
