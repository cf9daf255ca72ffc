"""`vepcli merge` (not implemented yet)."""

import click

from vepcli.errors import UserError


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def merge(args: tuple[str, ...]) -> None:
    """(coming) See docs/ for the plan."""
    raise UserError("'vepcli merge' is not available in this version yet")
