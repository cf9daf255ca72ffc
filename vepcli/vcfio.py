"""VCF, VCF.gz and BCF readers (design step 1), behind a validation layer.

Text VCFs (plain, gzip, bgzip) are parsed here, in Python, and never reach htslib: htslib crashes
the process (segfault) or stops with internal messages on some malformed headers and lines, and
wraps positions past 2^31. Only the five columns vepcli needs (and INFO/END, for --regions) are
read; positions are Python integers. BCF is binary and goes through cyvcf2, after its header and
its BGZF end-of-file marker are checked. The rules are in docs/input-rules.md.
"""

from __future__ import annotations

import itertools
import logging
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vepcli.errors import UserError
from vepcli.genome import alias_key
from vepcli.integrity import (
    UTF8_BOM,
    check_bgzf_eof,
    head_bytes,
    is_bgzf,
    is_gzip,
    open_binary,
    reading,
    truncated_message,
)
from vepcli.variants import Region, RegionSet, Variant, make_variants, parse_regions

if TYPE_CHECKING:
    import cyvcf2

log = logging.getLogger(__name__)

# The largest position accepted anywhere: past any real contig, and what a CSI index still holds.
MAX_POS = 2**35 - 1
FIXED_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")


@dataclass(slots=True)
class Record:
    chrom: str
    pos: int
    id: str
    ref: str
    alts: list[str]
    end: int  # 1-based, inclusive: INFO/END when given (and not before POS), else POS + len(REF) - 1


def vcf_format(path: Path) -> str:
    """'bcf', 'vcf' (plain text), 'vcf.bgz' (bgzip) or 'vcf.gz' (plain gzip), from the file's bytes."""
    head = head_bytes(path)
    if head[:2] != b"\x1f\x8b":
        return "bcf" if head[:3] == b"BCF" else "vcf"
    with reading(path), open_binary(path) as fh:
        if fh.read(3) == b"BCF":
            return "bcf"
    return "vcf.bgz" if is_bgzf(path) else "vcf.gz"


# ---------------------------------------------------------------- text lines


def _decode(col: bytes, name: str) -> str:
    try:
        return col.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text") from None


def _info_end(info: bytes) -> int | None:
    for item in info.split(b";"):
        if item.startswith(b"END="):
            value = item[4:]
            return int(value) if value.isdigit() and len(value) < 19 else None
    return None


def parse_line(raw: bytes) -> Record:
    """A VCF data line, or ValueError saying what is wrong with it."""
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        raise ValueError("empty line (delete it)")
    if b"\x00" in line:
        raise ValueError("the line holds a NUL byte (is it a text file?)")
    cols = line.split(b"\t", 8)
    if len(cols) < 8:
        hint = "; columns must be separated by tabs" if b" " in line else ""
        raise ValueError(f"{len(cols)} column(s), a VCF record needs at least 8 (CHROM POS ID REF ALT QUAL FILTER "
                         f"INFO){hint}")
    chrom, pos, vid, ref, alt = (_decode(c, n) for c, n in zip(cols[:5], FIXED_COLUMNS, strict=False))
    if not chrom or not chrom.isprintable() or any(c.isspace() for c in chrom):
        raise ValueError(f"bad CHROM {chrom[:50]!r}")
    if not (pos.isascii() and pos.isdigit()):
        raise ValueError(f"POS {pos[:30]!r} is not a whole number")
    position = int(pos)
    if position > MAX_POS:
        raise ValueError(f"POS {pos[:30]} is past {MAX_POS:,}, beyond any genome")
    if not ref:
        raise ValueError("REF is empty")
    if not alt:
        raise ValueError("ALT is empty")
    end = position + len(ref) - 1
    info_end = _info_end(cols[7])
    if info_end is not None and position <= info_end <= MAX_POS:
        end = info_end
    return Record(chrom, position, vid or ".", ref, alt.split(","), end)


def _record_variants(rec: Record, line: int, counter: Iterator[int]) -> Iterator[Variant]:
    return make_variants(rec.chrom, rec.pos, rec.id, rec.ref, rec.alts, line, {}, counter)


def _header_problem(lineno: int, raw: bytes, seen_format: bool) -> str | None:
    if lineno == 1 and raw.startswith(UTF8_BOM):
        return ("the file starts with a UTF-8 byte-order mark (BOM), which VCF does not allow; save it as UTF-8 "
                "without BOM")
    if raw.startswith(b"#CHROM") or raw.startswith(b"#chrom"):
        if not seen_format:
            return ("no ##fileformat line before the #CHROM line; a VCF starts with one, e.g. "
                    "##fileformat=VCFv4.2 (add it as the first line)")
        names = raw.rstrip(b"\r\n")[1:].split(b"\t")
        if [n.upper() for n in names[:8]] != [n.encode() for n in FIXED_COLUMNS]:
            hint = " (tab-separated)" if b" " in raw else ""
            return ("the #CHROM line must name the columns CHROM POS ID REF ALT QUAL FILTER INFO" + hint)
    return None


class TextVCF:
    """A text VCF (plain, gzip or bgzip), validated line by line before any record is returned."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n_header = self._scan()

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        with reading(self.path), open_binary(self.path) as fh:
            yield from enumerate(fh, 1)

    def _scan(self) -> int:
        n_header, has_columns, in_body, seen_format = 0, False, False, False
        for lineno, raw in self._lines():
            if raw.startswith(b"#") or (lineno == 1 and raw.startswith(UTF8_BOM)):
                if in_body:
                    raise UserError(f"{self.path}, line {lineno}: header line after the first record")
                if has_columns:
                    raise UserError(f"{self.path}, line {lineno}: a line starting with '#' after the #CHROM line; "
                                    "only records may follow it (and a CHROM cannot start with '#')")
                problem = _header_problem(lineno, raw, seen_format)
                if problem:
                    raise UserError(f"{self.path}, line {lineno}: {problem}")
                seen_format = seen_format or (lineno == 1 and raw.startswith(b"##fileformat=VCF"))
                n_header += 1
                has_columns = has_columns or raw.upper().startswith(b"#CHROM")
                continue
            if not has_columns:
                raise UserError(f"{self.path}, line {lineno}: record before the #CHROM header line (is it a VCF?)")
            in_body = True
            try:
                parse_line(raw)
            except ValueError as err:
                raise UserError(f"{self.path}, line {lineno}: malformed VCF record: {err}") from None
        if not has_columns:
            raise UserError(f"{self.path}: no #CHROM header line; is it a VCF file?")
        return n_header

    def records(self) -> Iterator[tuple[int, Record]]:
        for lineno, raw in self._lines():
            if lineno > self.n_header:
                yield lineno, parse_line(raw)

    def info_rows(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The INFO values `names` of every record, in file order (None where a record lacks one)."""
        names = list(names)
        types: dict[str, tuple[str, str]] = {}
        rows = []
        for lineno, raw in self._lines():
            if lineno <= self.n_header:
                m = _INFO_HEADER.match(raw.decode("utf-8", errors="replace"))
                if m:
                    fields = dict(re.findall(r"(\w+)=([^,>]*)", m[1]))
                    types.setdefault(fields.get("ID", ""), (fields.get("Number", "."), fields.get("Type", "String")))
                continue
            info = raw.rstrip(b"\r\n").split(b"\t", 8)[7]
            rows.append({n: None for n in names} | parse_info(info, names, types))
        return rows


_INFO_HEADER = re.compile(r"^##INFO=<(.*)>\s*$")


def parse_info(info: bytes, names: Iterable[str], types: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The INFO fields `names` of one record, typed as the header declares them (as cyvcf2 gives them:
    Integer -> int, Float -> float, Flag -> True, several values -> a tuple, '.' -> None); a value that
    does not fit its declared type, or an undeclared field, stays text."""
    wanted = set(names)
    out: dict[str, Any] = {}
    if info in (b"", b"."):
        return out
    for item in info.split(b";"):
        key, eq, value = item.partition(b"=")
        name = key.decode("utf-8", errors="replace")
        if name not in wanted or name in out:
            continue
        kind = types.get(name, (".", "String"))[1]
        if not eq or kind == "Flag":
            out[name] = True
            continue
        values = [_typed(v, kind) for v in value.decode("utf-8", errors="replace").split(",")]
        out[name] = values[0] if len(values) == 1 else tuple(values)
    return out


def _typed(text: str, kind: str) -> Any:
    if text in ("", "."):
        return None
    try:
        return int(text) if kind == "Integer" else float(text) if kind == "Float" else text
    except ValueError:
        return text


def _locate_line(path: Path, raw: bytes) -> int:
    """1-based number of the first line equal to raw (only called to word an error)."""
    want = raw.rstrip(b"\r\n")
    with reading(path), open_binary(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.rstrip(b"\r\n") == want:
                return lineno
    return 0


# ---------------------------------------------------------------- regions (index queries)


def _index_path(path: Path, fmt: str) -> Path:
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


def _queries(path: Path, names: Iterable[str], regions: list[Region]) -> list[tuple[Region, str]]:
    queries = []
    names = list(names)
    for region in regions:
        name = _query_name(names, region.chrom)
        if name is None:
            log.warning("region contig %s is not in %s; it selects nothing", region.chrom, path)
        else:
            queries.append((region, name))
    return queries


def _read_text_indexed(path: Path, regions: list[Region]) -> Iterator[Variant]:
    import pysam

    index = _index_path(path, "vcf.bgz")
    try:
        tbx = pysam.TabixFile(str(path), index=str(index))
        contigs = list(tbx.contigs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} with its index {index.name}: {' '.join(str(err).split())}") from None
    queries = _queries(path, contigs, regions)
    found: list[list[Record]] = []
    try:
        for region, name in queries:
            recs = []
            for text in tbx.fetch(name, region.start0, region.end0):
                raw = text.encode()
                try:
                    recs.append(parse_line(raw))
                except ValueError as err:
                    raise UserError(f"{path}, line {_locate_line(path, raw)}: malformed VCF record: {err}") from None
            found.append(recs)
    except (OSError, ValueError) as err:
        raise UserError(truncated_message(path, err)) from None
    finally:
        tbx.close()
    return _indexed_variants(queries, found)


def _indexed_variants(queries, found) -> Iterator[Variant]:
    counter = itertools.count()
    prev: tuple[str, int | None] | None = None
    for (region, name), recs in zip(queries, found, strict=True):
        for rec in recs:
            if prev and prev[0] == name and prev[1] is not None and rec.pos - 1 < prev[1]:
                continue
            yield from _record_variants(rec, 0, counter)
        prev = (name, region.end0)


def _check_text_header(path: Path) -> None:
    """The header checks of TextVCF without a scan of the body (index queries check what they return)."""
    with reading(path), open_binary(path) as fh:
        seen_format = False
        for lineno, raw in enumerate(fh, 1):
            if not raw.startswith(b"#") and not (lineno == 1 and raw.startswith(UTF8_BOM)):
                raise UserError(f"{path}, line {lineno}: record before the #CHROM header line (is it a VCF?)")
            problem = _header_problem(lineno, raw, seen_format)
            if problem:
                raise UserError(f"{path}, line {lineno}: {problem}")
            seen_format = seen_format or (lineno == 1 and raw.startswith(b"##fileformat=VCF"))
            if raw.upper().startswith(b"#CHROM"):
                return
    raise UserError(f"{path}: no #CHROM header line; is it a VCF file?")


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
        if not line or line.startswith("#CHROM"):
            continue
        m = _STRUCTURED.match(line)
        if line.startswith("##") and "=<" in line and not m:
            raise UserError(f"{path}: BCF header line {k} is not ##KEY=<...>: {line[:80]!r}")
        if m and m[1] in ("INFO", "FORMAT", "FILTER", "contig") and not re.search(r"(^|,)ID=[^,>]+", m[2]):
            raise UserError(f"{path}: BCF header line {k} ({m[1]}) has no ID")
        idx = re.search(r"(^|,)IDX=([^,>]*)", m[2]) if m else None
        if idx and not (idx[2].isdigit() and int(idx[2]) < 2**20):
            raise UserError(f"{path}: BCF header line {k} has a bad IDX={idx[2][:20]}; the file is damaged")
    columns = [ln for ln in lines if ln.startswith("#CHROM")]
    if len(columns) != 1:
        raise UserError(f"{path}: the BCF header has {len(columns)} #CHROM lines, not 1; the file is damaged")
    names = columns[0][1:].split("\t")
    if names[:8] != list(FIXED_COLUMNS) or (len(names) > 8 and names[8] != "FORMAT"):
        raise UserError(f"{path}: the BCF header's #CHROM line is malformed; the file is damaged")
    samples = names[9:]
    if len(set(samples)) != len(samples):
        raise UserError(f"{path}: the BCF header names a sample twice; the file is damaged")


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


def _read_bcf(path: Path, regions: list[Region] | None) -> Iterator[Variant]:
    vcf = _open_bcf(path)
    counter = itertools.count()
    if regions is None:
        return (v for k, rec in enumerate(_guarded(path, vcf, "record"), 1)
                for v in _record_variants(_bcf_record(rec), k, counter))
    vcf.set_index(str(_index_path(path, "bcf")))
    queries = _queries(path, vcf.seqnames, regions)
    return _bcf_queries(path, vcf, queries, counter)


def _bcf_queries(path: Path, vcf, queries, counter) -> Iterator[Variant]:
    prev: tuple[str, int | None] | None = None
    for region, name in queries:
        for rec in _guarded(path, vcf(region.htslib(name)), f"region {region.htslib(name)} record"):
            if prev and prev[0] == name and prev[1] is not None and rec.start < prev[1]:
                continue
            yield from _record_variants(_bcf_record(rec), 0, counter)
        prev = (name, region.end0)


# ---------------------------------------------------------------- entry point


def _scan_text(path: Path, regions: list[Region] | None) -> Iterator[Variant]:
    return _text_variants(TextVCF(path), RegionSet(regions) if regions else None)


def _text_variants(vcf: TextVCF, wanted: RegionSet | None) -> Iterator[Variant]:
    counter = itertools.count()
    for lineno, rec in vcf.records():
        if wanted is None or wanted.overlaps(rec.chrom, rec.pos - 1, rec.end):
            yield from _record_variants(rec, lineno, counter)


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
        _check_text_header(path)
        return _read_text_indexed(path, wanted)
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
