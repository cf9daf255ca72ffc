"""VCF, VCF.gz and BCF readers (design step 1), behind a validation layer.

Text VCFs (plain, gzip, bgzip) are parsed by vepcli, in Python, and never reach htslib: htslib crashes
the process (segfault) or stops with internal messages on some malformed headers and lines, and
wraps positions past 2^31. Only the five columns vepcli needs (and INFO/END, for --regions) are
read; positions are Python integers. BCF is binary and goes through cyvcf2, after its header and
its BGZF end-of-file marker are checked. The rules are in docs/input-rules.md.

Text lines: vepcli/vcftext.py; index queries: vepcli/vcfregions.py; BCF and the entry points: here.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vepcli.errors import UserError
from vepcli.formats import vcf_format
from vepcli.integrity import check_bgzf_eof, is_gzip, open_binary, reading
from vepcli.regions import Interval, RegionSet, parse_regions
from vepcli.variants import Variant
from vepcli.vcfregions import index_path, index_queries, read_text_indexed
from vepcli.vcftext import FIXED_COLUMNS, Record, TextVCF, check_text_header, record_variants

if TYPE_CHECKING:
    import cyvcf2


# ---------------------------------------------------------------- BCF (through cyvcf2)


_STRUCTURED = re.compile(r"^##(\w+)=<(.*)>$")


def _bcf_header_text(path: Path) -> str:
    with reading(path), open_binary(path) as fh:
        magic = fh.read(5)
        if magic[:3] != b"BCF":
            raise UserError(f"{path} is not a BCF file")
        size = fh.read(4)
        if len(size) < 4:
            raise UserError(f"{path} is truncated: it ends inside the BCF header")
        (length,) = struct.unpack("<I", size)
        text = fh.read(length)
        if len(text) < length:
            raise UserError(f"{path} is truncated: it ends inside the BCF header")
    return text.rstrip(b"\x00").decode("utf-8", errors="replace")


def check_bcf_header(path: Path, text: str) -> None:
    """Refuse what htslib cannot parse or crashes on, before cyvcf2 opens the file."""
    lines = text.split("\n")
    if "\x00" in text:
        raise UserError(f"{path}: the BCF header holds a NUL byte; the file is damaged")
    if not lines[0].startswith("##fileformat=VCF"):
        raise UserError(f"{path}: the BCF header does not start with ##fileformat=VCF...; the file is damaged")
    for k, line in enumerate(lines, 1):
        if line and not line.startswith("#CHROM"):
            _check_bcf_meta_line(path, k, line)
    columns = [ln for ln in lines if ln.startswith("#CHROM")]
    if len(columns) != 1:
        raise UserError(f"{path}: the BCF header has {len(columns)} #CHROM lines, not 1; the file is damaged")
    names = columns[0][1:].split("\t")
    if names[:8] != list(FIXED_COLUMNS) or (len(names) > 8 and names[8] != "FORMAT"):
        raise UserError(f"{path}: the BCF header's #CHROM line is malformed; the file is damaged")
    samples = names[9:]
    if len(set(samples)) != len(samples):
        raise UserError(f"{path}: the BCF header names a sample twice; the file is damaged")


def _check_bcf_meta_line(path: Path, k: int, line: str) -> None:
    """One `##` line of a BCF header: structured lines well formed, IDs present, IDX a small number."""
    m = _STRUCTURED.match(line)
    if line.startswith("##") and "=<" in line and not m:
        raise UserError(f"{path}: BCF header line {k} is not ##KEY=<...>: {line[:80]!r}")
    if m and m[1] in ("INFO", "FORMAT", "FILTER", "contig") and not re.search(r"(^|,)ID=[^,>]+", m[2]):
        raise UserError(f"{path}: BCF header line {k} ({m[1]}) has no ID")
    idx = re.search(r"(^|,)IDX=([^,>]*)", m[2]) if m else None
    if idx and not (idx[2].isdigit() and int(idx[2]) < 2**20):
        raise UserError(f"{path}: BCF header line {k} has a bad IDX={idx[2][:20]}; the file is damaged")


def _open_bcf(path: Path) -> cyvcf2.VCF:
    import cyvcf2

    if is_gzip(path):
        check_bgzf_eof(path)
    check_bcf_header(path, _bcf_header_text(path))
    try:
        return cyvcf2.VCF(str(path), lazy=True)
    except Exception as exc:  # noqa: BLE001 - OSError, or a bare Exception from cyvcf2
        raise UserError(f"cannot read {path} as BCF: {' '.join(str(exc).split())}") from None


def _guarded(path: Path, records: Iterable[cyvcf2.Variant], what: str, first: int = 1) -> Iterator[cyvcf2.Variant]:
    """Turn htslib parse errors into a UserError that names the record (numbered from first)."""
    it = iter(records)
    for k in itertools.count(first):
        try:
            rec = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - cyvcf2 raises a bare Exception on parse errors
            detail = " ".join(str(exc).split())
            raise UserError(f"{path}, {what} {k}: cannot parse record: {detail}") from None
        yield rec


def _bcf_record(rec: cyvcf2.Variant) -> Record:
    return Record(rec.CHROM, rec.POS, rec.ID or ".", rec.REF, list(rec.ALT), rec.end)


def _read_bcf(path: Path, regions: list[Interval] | None) -> Iterator[Variant]:
    vcf = _open_bcf(path)
    counter = itertools.count()
    if regions is None:
        return (
            v
            for k, rec in enumerate(_guarded(path, vcf, "record"), 1)
            for v in record_variants(_bcf_record(rec), k, counter)
        )
    vcf.set_index(str(index_path(path, "bcf")))
    queries = index_queries(path, vcf.seqnames, regions)
    return _bcf_queries(path, vcf, queries, counter)


def _bcf_queries(
    path: Path, vcf: cyvcf2.VCF, queries: list[tuple[Interval, str]], counter: Iterator[int]
) -> Iterator[Variant]:
    prev: tuple[str, int | None] | None = None
    for region, name in queries:
        for rec in _guarded(path, vcf(str(region.on(name))), f"region {region.on(name)} record"):
            if prev and prev[0] == name and prev[1] is not None and rec.start < prev[1]:
                continue
            yield from record_variants(_bcf_record(rec), 0, counter)
        prev = (name, region.end)


# ---------------------------------------------------------------- entry point


def _scan_text(path: Path, regions: list[Interval] | None) -> Iterator[Variant]:
    return _text_variants(TextVCF(path), RegionSet(regions) if regions else None)


def _text_variants(vcf: TextVCF, wanted: RegionSet | None) -> Iterator[Variant]:
    counter = itertools.count()
    for lineno, rec in vcf.records():
        if wanted is None or wanted.overlaps(rec.chrom, rec.pos - 1, rec.end):
            yield from record_variants(rec, lineno, counter)


def read_vcf(path: Path, regions: str | None = None) -> Iterator[Variant]:
    """Variants of a VCF, VCF.gz or BCF file, one per ALT allele, in file order.

    A text VCF is checked line by line first, so a bad line raises UserError before any record is
    returned. `regions` (bcftools -r syntax or a BED path) uses the index for VCF.gz and BCF and a
    scan for plain VCF.
    """
    fmt = vcf_format(path)
    if fmt == "vcf.bgz":
        check_bgzf_eof(path)
    wanted = parse_regions(regions) if regions else None
    if fmt == "bcf":
        return _read_bcf(path, wanted)
    if wanted is not None and fmt == "vcf.bgz":
        check_text_header(path)
        return read_text_indexed(path, wanted)
    if wanted is not None and fmt == "vcf.gz":
        raise UserError(f"--regions needs {path} compressed with bgzip (not gzip) and indexed with `tabix -p vcf`")
    return _scan_text(path, wanted)


def read_info(path: Path, names: Iterable[str]) -> list[dict[str, Any]]:
    """INFO values named `names`, one dict per record in file order (None where a record has none): the
    labels of `vepcli finetune` on a VCF. Text VCFs are read here (checked like read_vcf, never by
    htslib); BCF through cyvcf2 behind the same checks as read_vcf."""
    names = list(names)
    fmt = vcf_format(path)
    if fmt == "bcf":
        vcf = _open_bcf(path)
        return [{n: rec.INFO.get(n) for n in names} for rec in _guarded(path, vcf, "record")]
    if fmt == "vcf.bgz":
        check_bgzf_eof(path)
    return TextVCF(path).info_rows(names)
