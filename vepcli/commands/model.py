"""`vepcli model info` and `model convert`: what a checkpoint is, and the same model in vepcli's layout."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vepcli.errors import UserError


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


@model.command("convert")
@click.argument("path_or_id")
@click.option("-o", "--output", required=True, help="Folder to write config.json and model.safetensors in.")
def convert(path_or_id: str, output: str) -> None:
    """Write the model at PATH_OR_ID as vepcli's config.json + model.safetensors in OUTPUT: a published
    DNA-xLSTM folder (model_config.json + Lightning .ckpt), a mamba_ssm save_pretrained folder or any
    folder with pytorch_model.bin. The converted model gives the same numbers."""
    from vepcli.modelcheck import load_checked
    from vepcli.nn.checkpoint import CONFIG_NAME, save_model
    from vepcli.outpath import check_output_folder

    if (Path(output) / CONFIG_NAME).exists():
        raise UserError(f"{output} already holds a model; choose another -o")
    _, lm, _ = load_checked(path_or_id)  # before -o is created: a model that does not load leaves nothing
    click.echo(f"vepcli: wrote {save_model(lm, check_output_folder(output))}", err=True)
