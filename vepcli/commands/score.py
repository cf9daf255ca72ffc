"""`vepcli score`: zero-shot scores for every ALT allele of a VCF or table."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.defaults import POOL_DEFAULT, SCORE_NAMES
from vepcli.errors import UserError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must look like I/N, e.g. 3/8") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard {text}: I must be between 1 and N")
    return i, n


@click.command()
@click.argument("variants", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-f",
    "--fasta",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Reference FASTA (bgzip with .fai/.gzi, or plain).",
)
@click.option("-m", "--model", default=None, help="Model directory or Hugging Face id [default: bundled model].")
@click.option("-o", "--output", required=True, help="Output: .vcf, .vcf.gz, .tsv, .tsv.gz or .parquet.")
@click.option("-O", "--output-type", default=None, help="v|z|t|p: VCF, bgzipped VCF, TSV, parquet.")
@click.option("-r", "--regions", default=None, help="chr:beg-end[,...] or a BED file.")
@click.option("--window", type=opt.WINDOW, default=None, help="Window in bp [default: the model's trained length].")
@click.option(
    "--pool",
    type=opt.POOL,
    default=POOL_DEFAULT,
    show_default=True,
    help="Embedding pooling span in bp, centred on the variant.",
)
@click.option("--scores", default=",".join(SCORE_NAMES), show_default=True, help="Scores to compute.")
@click.option(
    "--probe",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A probe.skops from 'vepcli probe train': adds its probability as the `probe` score.",
)
@click.option("--no-strand-average", is_flag=True, help="Forward strand only.")
@click.option("--no-share-ref", is_flag=True, help="Compute the ref window again for every allele.")
@click.option("--ref-mismatch", type=click.Choice(["skip", "error"]), default="skip", show_default=True)
@click.option("--max-indel-len", type=opt.MAX_INDEL, default=1000, show_default=True)
@click.option("--shard", default=None, help="I/N: score only shard I of N (1-based).")
@click.option("--device", type=opt.DEVICE, default="auto", show_default=True, help="auto, cpu or cuda[:k].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--batch-size", type=opt.BATCH, default=None, help="Windows per forward pass [default: 8 on a GPU, 1 on a CPU]."
)
@click.option("--threads", type=opt.THREADS, default=None, help="CPU threads for PyTorch.")
@click.option("--resume", is_flag=True, help="Continue a stopped run with the same inputs and settings.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def score(
    variants,
    fasta,
    model,
    output,
    output_type,
    regions,
    window,
    pool,
    scores,
    probe,
    no_strand_average,
    no_share_ref,
    ref_mismatch,
    max_indel_len,
    shard,
    device,
    precision,
    batch_size,
    threads,
    resume,
    quiet,
) -> None:
    """Score every ALT allele in VARIANTS (VCF/BCF or TSV/CSV/parquet with chrom,pos,ref,alt)."""
    if threads:
        import torch  # imported here: `vepcli --help` and `vepcli merge` stay quick

        torch.set_num_threads(threads)
    from vepcli.pipeline import ScoreSettings, score_file

    settings = ScoreSettings(
        model=model,
        window=window,
        pool=pool,
        scores=tuple(s.strip() for s in scores.split(",") if s.strip()),
        strand_average=not no_strand_average,
        share_ref=not no_share_ref,
        ref_mismatch=ref_mismatch,
        max_indel_len=max_indel_len,
        regions=regions,
        shard=parse_shard(shard),
        precision=precision,
        batch_size=batch_size,
        device=device,
        probe=probe,
    )
    out = score_file(variants, fasta, output, settings, output_type, resume=resume, quiet=quiet)
    if not quiet:
        click.echo(f"vepcli: wrote {out}", err=True)
