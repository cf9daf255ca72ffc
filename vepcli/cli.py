"""The `vepcli` command group. Each command lives in `vepcli/commands/` and only parses options."""

from __future__ import annotations

import os
import signal
import sys

import click

from vepcli import __version__
from vepcli.commands import embed, finetune, merge, model, pretrain, probe, score, tools
from vepcli.errors import Terminated, UserError
from vepcli.malloc import keep_freed_memory

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)
TERMINATED = 143  # ... and by SIGTERM (128 + 15)


def _resumable(ctx: click.Context) -> bool:
    """Whether the command being run has a --resume option (score, embed, pretrain, finetune)."""
    name = ctx.invoked_subcommand
    command = ctx.command.get_command(ctx, name) if name and isinstance(ctx.command, click.Group) else None
    return command is not None and any(p.name == "resume" for p in command.params)


class _Group(click.Group):
    """Turn a UserError anywhere below into one line on stderr and exit code 1, Ctrl-C
    (KeyboardInterrupt) or an end of input (EOFError) into one line and exit code 130, and SIGTERM
    (Terminated) into one line and exit code 143; never click's bare "Aborted!". A stopped score/embed
    run keeps its resume folder (`<output>.partial/`); every temporary file is removed on the way out
    (vepcli.atomic)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"vepcli: error: {err}", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, EOFError, Terminated) as err:
            if isinstance(err, Terminated):
                what, code = "terminated", TERMINATED
            elif isinstance(err, EOFError):
                what, code = "interrupted (end of input)", INTERRUPTED
            else:
                what, code = "interrupted", INTERRUPTED
            hint = "; rerun with --resume to continue" if _resumable(ctx) else ""
            click.echo(f"vepcli: {what}{hint}", err=True)
            sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vepcli")
def cli() -> None:
    """Score genetic variants with Caduceus DNA language models, and train such models."""


for command in (
    score.score,
    embed.embed,
    probe.probe,
    pretrain.pretrain,
    finetune.finetune,
    merge.merge,
    model.model,
    tools.tools,
):
    cli.add_command(command)


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread takes the core
    # another process needs, and --threads 2 ran 1.6x slower than 1 (docs/benchmarks.md). Set before
    # torch loads; a user's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # one that a parent set to be ignored stays so
        signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="vepcli")


def _terminate(signum: int, frame: object) -> None:
    raise Terminated
