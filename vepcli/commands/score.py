"""`vepcli score`: zero-shot scores for every ALT allele of a VCF or table."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.scoring import default_names


@click.command()
@opt.windows_and_run_options(output_help="Output: .vcf, .vcf.gz, .tsv, .tsv.gz or .parquet.")
@click.option("-O", "--output-type", default=None, help="v|z|t|p: VCF, bgzipped VCF, TSV, parquet.")
@click.option("--scores", default=",".join(default_names()), show_default=True, help="Scores to compute.")
@click.option(
    "--probe",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A probe.skops from 'vepcli probe train': adds its probability as the `probe` score.",
)
@click.option("--max-indel-len", type=opt.MAX_INDEL, default=1000, show_default=True)
def score(variants, fasta, output, output_type, scores, resume, quiet, **options) -> None:
    """Score every ALT allele in VARIANTS (VCF/BCF or TSV/CSV/parquet with chrom,pos,ref,alt)."""
    from vepcli.pipeline import score_file
    from vepcli.supervised import loaders

    settings = opt.score_settings(scores=tuple(s.strip() for s in scores.split(",") if s.strip()), **options)
    out = score_file(
        variants, fasta, output, settings, output_type, resume=resume, quiet=quiet, supervised=loaders(settings)
    )
    if not quiet:
        click.echo(f"vepcli: wrote {out}", err=True)
