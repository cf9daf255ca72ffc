"""`vepcli embed`: pooled ref and alt embeddings per variant, for probes."""

from __future__ import annotations

import click

from vepcli.commands import options as opt


@click.command()
@opt.windows_and_run_options(output_help="Output .parquet (or .npz).")
def embed(variants, fasta, output, resume, quiet, **options) -> None:
    """Write strand-averaged, pooled ref and alt embeddings of every ALT in VARIANTS, with its columns."""
    from vepcli.pipeline import score_file
    from vepcli.supervised import loaders

    settings = opt.score_settings(scores=(), embeddings=True, **options)
    out = score_file(variants, fasta, output, settings, resume=resume, quiet=quiet, supervised=loaders(settings))
    if not quiet:
        click.echo(f"vepcli: wrote {out}", err=True)
