"""Index queries (`--regions` on a bgzip VCF or a BCF): the index beside the file, the file's own contig
names for the regions (aliases accepted), and the records a tabix query returns, each checked like a line
of a scan (see vepcli/vcfio.py)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from vepcli.errors import UserError
from vepcli.integrity import truncated_message
from vepcli.regions import Interval, alias_key
from vepcli.variants import Variant
from vepcli.vcftext import Record, locate_line, parse_line, record_variants

log = logging.getLogger("vepcli.vcfio")

# ---------------------------------------------------------------- regions (index queries)


def index_path(path: Path, fmt: str) -> Path:
    names = [f"{path}.csi"] if fmt == "bcf" else [f"{path}.tbi", f"{path}.csi"]
    for name in names:
        if Path(name).is_file():
            return Path(name)
    how = f"`bcftools index {path}`" if fmt == "bcf" else f"`tabix -p vcf {path}` (or `bcftools index -t {path}`)"
    raise UserError(f"--regions needs an index of {path}; make one with {how}")


def _query_name(names: Iterable[str], chrom: str) -> str | None:
    """The file's own name for a region's contig (aliases accepted)."""
    names = list(names)
    if chrom in names:
        return chrom
    return next((n for n in names if alias_key(n) == alias_key(chrom)), None)


def index_queries(path: Path, names: Iterable[str], regions: list[Interval]) -> list[tuple[Interval, str]]:
    queries = []
    names = list(names)
    for region in regions:
        name = _query_name(names, region.contig)
        if name is None:
            log.warning("region contig %s is not in %s; it selects nothing", region.contig, path)
        else:
            queries.append((region, name))
    return queries


def read_text_indexed(path: Path, regions: list[Interval]) -> Iterator[Variant]:
    import pysam

    index = index_path(path, "vcf.bgz")
    try:
        tbx = pysam.TabixFile(str(path), index=str(index))
        contigs = list(tbx.contigs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} with its index {index.name}: {' '.join(str(err).split())}") from None
    queries = index_queries(path, contigs, regions)
    found: list[list[Record]] = []
    try:
        for region, name in queries:
            recs = []
            for text in tbx.fetch(name, region.start, region.end):
                raw = text.encode()
                try:
                    recs.append(parse_line(raw))
                except ValueError as err:
                    raise UserError(f"{path}, line {locate_line(path, raw)}: malformed VCF record: {err}") from None
            found.append(recs)
    except (OSError, ValueError) as err:
        raise UserError(truncated_message(path, err)) from None
    finally:
        tbx.close()
    return _indexed_variants(queries, found)


def _indexed_variants(queries: list[tuple[Interval, str]], found: list[list[Record]]) -> Iterator[Variant]:
    counter = itertools.count()
    prev: tuple[str, int | None] | None = None
    for (region, name), recs in zip(queries, found, strict=True):
        for rec in recs:
            if prev and prev[0] == name and prev[1] is not None and rec.pos - 1 < prev[1]:
                continue
            yield from record_variants(rec, 0, counter)
        prev = (name, region.end)
