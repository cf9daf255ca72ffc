"""`vepcli embed`: pooled ref and alt embeddings per variant, for probes."""

from __future__ import annotations

import click

from vepcli.commands import options as opt
from vepcli.commands.score import parse_shard
from vepcli.defaults import POOL_DEFAULT


@click.command()
@click.argument("variants", type=click.Path(exists=True, dir_okay=False))
@click.option("-f", "--fasta", required=True, type=click.Path(exists=True, dir_okay=False), help="Reference FASTA.")
@click.option("-m", "--model", default=None, help="Model directory or Hugging Face id [default: bundled model].")
@click.option("-o", "--output", required=True, help="Output .parquet (or .npz).")
@click.option("-r", "--regions", default=None, help="chr:beg-end[,...] or a BED file.")
@click.option("--window", type=opt.WINDOW, default=None, help="Window in bp [default: the model's trained length].")
@click.option("--pool", type=opt.POOL, default=POOL_DEFAULT, show_default=True, help="Pooling span in bp.")
@click.option("--no-strand-average", is_flag=True, help="Forward strand only.")
@click.option("--no-share-ref", is_flag=True, help="Compute the ref window again for every allele.")
@click.option("--ref-mismatch", type=click.Choice(["skip", "error"]), default="skip", show_default=True)
@click.option("--shard", default=None, help="I/N: only shard I of N (1-based).")
@click.option("--device", type=opt.DEVICE, default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--batch-size", type=opt.BATCH, default=None, help="Windows per forward pass [default: 8 on a GPU, 1 on a CPU]."
)
@click.option("--threads", type=opt.THREADS, default=None)
@click.option("--resume", is_flag=True, help="Continue a stopped run.")
@click.option("-q", "--quiet", is_flag=True)
def embed(
    variants,
    fasta,
    model,
    output,
    regions,
    window,
    pool,
    no_strand_average,
    no_share_ref,
    ref_mismatch,
    shard,
    device,
    precision,
    batch_size,
    threads,
    resume,
    quiet,
) -> None:
    """Write strand-averaged, pooled ref and alt embeddings of every ALT in VARIANTS, with its columns."""
    if threads:
        import torch  # imported here: `vepcli --help` and `vepcli merge` stay quick

        torch.set_num_threads(threads)
    from vepcli.pipeline import ScoreSettings, score_file

    settings = ScoreSettings(
        model=model,
        window=window,
        pool=pool,
        scores=(),
        strand_average=not no_strand_average,
        share_ref=not no_share_ref,
        ref_mismatch=ref_mismatch,
        regions=regions,
        shard=parse_shard(shard),
        precision=precision,
        embeddings=True,
        batch_size=batch_size,
        device=device,
    )
    out = score_file(variants, fasta, output, settings, resume=resume, quiet=quiet)
    if not quiet:
        click.echo(f"vepcli: wrote {out}", err=True)
