"""`vepcli merge`: join shard (or per-region) outputs of `vepcli score` into one sorted file."""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, help="Merged output: .vcf, .vcf.gz (+ .tbi), .tsv, .tsv.gz, .parquet.")
@click.option("-O", "--output-type", default=None, help="v|z|t|p: VCF, bgzipped VCF, TSV, parquet.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def merge(parts: tuple[str, ...], output: str, output_type: str | None, quiet: bool) -> None:
    """Merge PARTS, the outputs of `vepcli score --shard 1/N .. N/N` (all N of them) or of runs on
    disjoint --regions (in input order), into one file like a single run's: same rows, same order,
    same header but for ##vepcli_command. Refuses parts with other settings, a shard missing or given
    twice, overlapping parts, or mixed formats. Written to a temporary name, then renamed."""
    from vepcli.merge import merge_files  # light: no torch

    command = " ".join(["vepcli", *sys.argv[1:]]) if sys.argv and sys.argv[1:2] == ["merge"] else None
    out, rows, kind = merge_files(parts, output, output_type, command=command)
    if not quiet:
        what = (
            f"{len(parts)} shard{'s' if len(parts) != 1 else ''}"
            if kind == "shards"
            else f"{len(parts)} part{'s' if len(parts) != 1 else ''}"
        )
        click.echo(f"vepcli: merged {what} ({rows} rows) into {out}", err=True)
