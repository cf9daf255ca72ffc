"""The `vepcli` command group. Each command lives in `vepcli/commands/` and only parses options."""

from __future__ import annotations

import os
import sys

import click

from vepcli import __version__
from vepcli.commands import embed, finetune, merge, model, pretrain, probe, score, tools
from vepcli.errors import UserError


class _Group(click.Group):
    """Turn a UserError anywhere below into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"vepcli: error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vepcli")
def cli() -> None:
    """Score genetic variants with Caduceus DNA language models, and train such models."""


for command in (score.score, embed.embed, probe.probe, pretrain.pretrain, finetune.finetune,
                merge.merge, model.model, tools.tools):
    cli.add_command(command)


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread takes the core
    # another process needs, and --threads 2 ran 1.6x slower than 1 (docs/benchmarks.md). Set before
    # torch loads; a user's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="vepcli")
