"""`vepcli model info`: what a checkpoint is, before you score with it."""

from __future__ import annotations

import json

import click


@click.group()
def model() -> None:
    """Inspect models."""


@model.command("info")
@click.argument("path_or_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(path_or_id: str | None, as_json: bool) -> None:
    """Family, objective (masked or causal LM), strand handling, sizes, parameter count and max length of
    PATH_OR_ID [default: the default model, $VEPCLI_MODEL or the one shipped with vepcli]."""
    from vepcli.modelinfo import model_info

    if path_or_id is None:
        from vepcli.nn.hub import default_model

        path_or_id = default_model()
    facts = model_info(path_or_id)
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            click.echo(f"{key:<{width}}  {value}")
