"""Option types shared by the commands, so that every command applies the same rules to the same option.

A value outside its range is a usage error (exit 2, one line) before any work starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click

from vepcli.modelcheck import MODEL_INT_LIMITS, SSM_INT_LIMITS

MAX_WINDOW = 131_072
Decorator = Callable[[Callable], Callable]  # what click.option returns


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
TRAIN_DEVICE = click.Choice(["auto", "cpu", "cuda"])  # each process of a torchrun launch takes its own GPU
SCORE_PRECISIONS = ("fp32", "bf16", "fp16")  # the weights run in this precision
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # autocast over fp32 weights; auto: bf16/fp16 on a GPU


def config_defaults(config: type) -> dict[str, Any]:
    """The defaults of a command's config dataclass: the command shows and uses the library's own values."""
    return {f.name: f.default for f in fields(config) if f.default is not MISSING}


def seed_option(default: int = 0) -> Decorator:
    """--seed, the same in every command that draws random numbers."""
    return click.option("--seed", type=SEED, default=default, show_default=True, help="Random seed (0..2^32-1).")


def fasta_option() -> Decorator:
    """-f/--fasta, the reference genome of every command that reads one."""
    return click.option(
        "-f",
        "--fasta",
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Reference FASTA (bgzip with .fai/.gzi, or plain).",
    )


def threads_option(default: int | None, help: str) -> Decorator:
    """--threads: CPU threads (torch's, per process; for `probe`, numpy's and scikit-learn's)."""
    return click.option("--threads", type=THREADS, default=default, show_default=default is not None, help=help)


def device_option(training: bool, default: str = "auto") -> Decorator:
    """--device: auto, cpu or cuda (scoring also takes cuda:K; a training process takes the GPU of its rank)."""
    if training:
        return click.option("--device", type=TRAIN_DEVICE, default=default, show_default=True)
    return click.option("--device", type=DEVICE, default=default, show_default=True, help="auto, cpu or cuda[:k].")


def precision_option(training: bool, default: str | None = None) -> Decorator:
    """--precision: the weights' precision when scoring (fp32 by default), autocast when training (auto)."""
    choices = TRAIN_PRECISIONS if training else SCORE_PRECISIONS
    return click.option("--precision", type=click.Choice(choices), default=default or choices[0], show_default=True)


def apply(decorators: list[Decorator]) -> Decorator:
    """Apply click decorators in the order listed (the first is the first in --help)."""

    def decorate(fn: Callable) -> Callable:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return decorate


def training_run_options(config: type) -> Decorator:
    """The options pretrain and finetune share: the fields of `train.config.RunControl`, defaults from the
    command's config."""
    defaults = config_defaults(config)
    return apply(
        [
            click.option(
                "--micro-batch",
                type=BATCH,
                default=defaults["micro_batch"],
                help="Samples per forward pass and process (gradient accumulation makes up the rest) "
                "[default: the whole per-process batch].",
            ),
            click.option(
                "--keep-checkpoints",
                default=defaults["keep_checkpoints"],
                show_default=True,
                type=COUNT,
                help="Newest checkpoints kept (0: all).",
            ),
            click.option("--log-every", default=defaults["log_every"], show_default=True, type=POSITIVE),
            seed_option(defaults["seed"]),
            device_option(training=True, default=defaults["device"]),
            precision_option(training=True, default=defaults["precision"]),
            threads_option(defaults["threads"], "CPU threads per process."),
            click.option("--resume", is_flag=True, help="Continue the run in -o from its newest checkpoint."),
            click.option("-q", "--quiet", is_flag=True),
        ]
    )


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:K."""

    name = "device"
    _PATTERN = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")

    def convert(self, value, param, ctx):
        if isinstance(value, str) and self._PATTERN.match(value):
            return value
        self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:K", param, ctx)


DEVICE = Device()


def windows_and_run_options(output_help: str) -> Decorator:
    """The options `score` and `embed` share (input, model, output, windows, device and run control): declared
    once, so both commands take the same values with the same rules and help; each adds its own after them."""
    from vepcli.defaults import POOL_DEFAULT

    shared = [
        click.argument("variants", type=click.Path(exists=True, dir_okay=False)),
        fasta_option(),
        click.option(
            "-m", "--model", default=None, help="Model directory or Hugging Face id [default: bundled model]."
        ),
        click.option("-o", "--output", required=True, help=output_help),
        click.option(
            "-r",
            "--regions",
            default=None,
            help="chr, chr:pos, chr:beg-end, chr:beg- (comma-separated, no thousands separators) or a BED file.",
        ),
        click.option(
            "-R",
            "--regions-file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Regions from a BED file (.bed or .bed.gz; track/browser lines skipped), as bcftools -R.",
        ),
        click.option("--window", type=WINDOW, default=None, help="Window in bp [default: the model's trained length]."),
        click.option(
            "--pool",
            type=POOL,
            default=POOL_DEFAULT,
            show_default=True,
            help="Embedding pooling span in bp, centred on the variant.",
        ),
        click.option("--no-strand-average", is_flag=True, help="Forward strand only."),
        click.option(
            "--echo",
            is_flag=True,
            help="Causal models: pool echo embeddings, the states of the second copy of [window ; window], "
            "which see both sides of each position (recorded in the header; a probe needs the same).",
        ),
        click.option("--no-share-ref", is_flag=True, help="Compute the ref window again for every allele."),
        click.option("--ref-mismatch", type=click.Choice(["skip", "error"]), default="skip", show_default=True),
        click.option("--shard", default=None, help="I/N: only shard I of N (1-based)."),
        device_option(training=False),
        precision_option(training=False),
        click.option(
            "--batch-size", type=BATCH, default=None, help="Windows per forward pass [default: 8 on a GPU, 1 on a CPU]."
        ),
        threads_option(None, "CPU threads [default: all cores]."),
        click.option("--resume", is_flag=True, help="Continue a stopped run with the same inputs and settings."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
    ]
    return apply(shared)


def score_settings(
    *,
    no_strand_average: bool,
    no_share_ref: bool,
    shard: str | None,
    threads: int | None,
    regions_file: str | None = None,
    **values,
):
    """ScoreSettings from the shared options (and any of the command's own fields), threads applied."""
    from vepcli.errors import UserError
    from vepcli.pipeline import ScoreSettings  # torch loads here: `vepcli --help` and `vepcli merge` stay quick
    from vepcli.runtime import set_threads

    if regions_file is not None:
        if values.get("regions"):
            raise UserError("give -r or -R, not both")
        values["regions"] = regions_file
    set_threads(threads)

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
