"""Variant records (design step 1): VCF/BCF and table readers, normalisation and status reasons.

Every input ALT allele yields exactly one Variant, in input order; records that cannot be scored keep
a non-ok status and a reason instead of being dropped. The rules are written out in docs/input-rules.md.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vepcli.errors import UserError
from vepcli.genome import alias_key

if TYPE_CHECKING:
    import cyvcf2

    from vepcli.genome import Genome

log = logging.getLogger(__name__)

# Statuses, in the order they are assigned; a record keeps the first one it gets.
OK = "ok"
NO_ALT = "no_alt"
SYMBOLIC_ALLELE = "symbolic_allele"
STAR_ALLELE = "star_allele"
INVALID_ALLELE = "invalid_allele"
CONTIG_MISSING = "contig_missing"
OUTSIDE_CONTIG = "outside_contig"
REF_MISMATCH = "ref_mismatch"
REF_IS_N = "ref_is_N"
INDEL_TOO_LONG = "indel_too_long"
TOO_MANY_N = "too_many_N"

STATUSES: dict[str, str] = {
    OK: "scored",
    NO_ALT: "ALT is '.': the record has no alternate allele",
    SYMBOLIC_ALLELE: "ALT is symbolic (<DEL>, <*>, <NON_REF>) or a breakend; it has no sequence to score",
    STAR_ALLELE: "ALT is '*': an overlapping deletion, described by another record",
    INVALID_ALLELE: "REF or ALT has letters other than A, C, G, T, N, or ALT equals REF",
    CONTIG_MISSING: "the contig is not in the FASTA, even after aliasing (chr1 <-> 1, chrM <-> MT)",
    OUTSIDE_CONTIG: "REF reaches past the end of the contig",
    REF_MISMATCH: "REF differs from the FASTA (case-insensitive; FASTA N matches anything)",
    REF_IS_N: "the FASTA has N at one or more REF bases",
    INDEL_TOO_LONG: "the normalised REF or ALT is longer than the limit",
    TOO_MANY_N: "more than the allowed fraction of the ref window is N",
}

KINDS = ("snv", "mnv", "ins", "del", "complex", "symbolic", "star", "none")

_BASES = re.compile(r"[ACGTNacgtn]+")
_VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
_TABLE_SUFFIXES = (".tsv", ".txt", ".csv", ".tsv.gz", ".txt.gz", ".csv.gz", ".parquet", ".pq")
_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "chrom": ("chrom", "#chrom", "chromosome"),
    "pos": ("pos", "position"),
    "ref": ("ref",),
    "alt": ("alt",),
    "id": ("id",),
}


@dataclass(slots=True)
class Variant:
    """One ALT allele of one input record; `index` is its row in every output."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    index: int
    line: int
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = OK
    reason: str = ""
    norm_pos: int = 0
    norm_ref: str = ""
    norm_alt: str = ""
    kind: str = ""
    fasta_chrom: str = ""
    record: int = 0  # 0-based number of the input record (shared by its ALTs): the unit of --shard

    @property
    def ok(self) -> bool:
        return self.status == OK

    def fail(self, status: str, reason: str) -> None:
        """Give the record a non-ok status, unless an earlier step already did (first reason wins)."""
        if self.status == OK:
            self.status, self.reason = status, reason


# ---------------------------------------------------------------- normalisation


def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop the shared suffix, then the shared prefix, keeping at least one base in each allele."""
    n = min(len(ref), len(alt)) - 1
    suffix = 0
    while suffix < n and ref[-1 - suffix] == alt[-1 - suffix]:
        suffix += 1
    if suffix:
        ref, alt = ref[:-suffix], alt[:-suffix]
    n = min(len(ref), len(alt)) - 1
    prefix = 0
    while prefix < n and ref[prefix] == alt[prefix]:
        prefix += 1
    return pos + prefix, ref[prefix:], alt[prefix:]


def allele_kind(ref: str, alt: str) -> str:
    """Kind of a trimmed, upper-case sequence allele pair."""
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    if len(ref) == 1 and alt[0] == ref[0]:
        return "ins"
    if len(alt) == 1 and ref[0] == alt[0]:
        return "del"
    return "complex"


def _special_alt(alt: str) -> tuple[str, str, str] | None:
    """(kind, status, reason) for ALTs that carry no sequence, else None."""
    if alt in ("", "."):
        return "none", NO_ALT, "ALT is '.' (no alternate allele)"
    if alt == "*":
        return "star", STAR_ALLELE, "ALT '*' (overlapping deletion) has no sequence of its own"
    if alt.startswith("<") or "[" in alt or "]" in alt or (len(alt) > 1 and "." in (alt[0], alt[-1])):
        return "symbolic", SYMBOLIC_ALLELE, f"symbolic or breakend ALT {alt} has no sequence to score"
    return None


def normalise(v: Variant) -> Variant:
    """Fill norm_pos/norm_ref/norm_alt/kind (in place) and flag ALTs that cannot be scored."""
    v.norm_pos, v.norm_ref, v.norm_alt = v.pos, v.ref.upper(), v.alt.upper()
    special = _special_alt(v.alt)
    if special:
        v.kind, status, reason = special
        v.fail(status, reason)
        return v
    for name, allele in (("REF", v.ref), ("ALT", v.alt)):
        if not _BASES.fullmatch(allele):
            v.kind = "none"
            problem = "is empty" if not allele else "has letters other than A, C, G, T, N"
            v.fail(INVALID_ALLELE, f"{name} {allele!r} {problem}")
            return v
    if v.norm_ref == v.norm_alt:
        v.kind = "none"
        v.fail(INVALID_ALLELE, f"ALT {v.alt} equals REF")
        return v
    v.norm_pos, v.norm_ref, v.norm_alt = trim_alleles(v.pos, v.norm_ref, v.norm_alt)
    v.kind = allele_kind(v.norm_ref, v.norm_alt)
    return v


def _make_variants(
    chrom: str, pos: int, vid: str, ref: str, alts: list[str], line: int, extra: dict, counter: Iterator[int]
) -> Iterator[Variant]:
    for alt in alts or ["."]:
        yield normalise(Variant(chrom, pos, vid, ref, alt, next(counter), line, dict(extra)))


# ---------------------------------------------------------------- regions


@dataclass(frozen=True, slots=True)
class Region:
    """A genomic interval, 0-based half-open; end0 None means to the end of the contig."""

    chrom: str
    start0: int
    end0: int | None

    def htslib(self, name: str | None = None) -> str:
        """The region as an htslib query string (1-based, inclusive)."""
        end = "" if self.end0 is None else str(self.end0)
        return f"{name or self.chrom}:{self.start0 + 1}-{end}"


_REGION = re.compile(r"^(?P<chrom>[^:].*?)(?::(?P<beg>\d+)(?P<dash>-)?(?P<end>\d+)?)?$")


def _parse_region(text: str) -> Region:
    m = _REGION.match(text.strip())
    if not m or not m["chrom"]:
        raise UserError(f"bad region {text!r}: expected chr, chr:pos, chr:beg-end or chr:beg-")
    if m["beg"] is None:
        return Region(m["chrom"], 0, None)
    beg = int(m["beg"])
    end: int | None = int(m["end"]) if m["end"] else (None if m["dash"] else beg)
    if beg < 1 or (end is not None and end < beg):
        raise UserError(f"bad region {text!r}: positions are 1-based and the end must not be before the start")
    return Region(m["chrom"], beg - 1, end)


def _read_bed(path: Path) -> list[Region]:
    opener = gzip.open if path.name.endswith(".gz") else open
    regions = []
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) < 3 or not cols[1].isdigit() or not cols[2].isdigit():
                raise UserError(f"{path}, line {lineno}: a BED line needs chrom, start, end (tab-separated)")
            regions.append(Region(cols[0], int(cols[1]), int(cols[2])))
    return regions


def _merge(regions: list[Region]) -> list[Region]:
    """Sort and merge overlapping or touching regions per contig, contigs in first-seen order."""
    order: dict[str, int] = {}
    for r in regions:
        order.setdefault(alias_key(r.chrom), len(order))
    merged: list[Region] = []
    for r in sorted(regions, key=lambda r: (order[alias_key(r.chrom)], r.start0)):
        last = merged[-1] if merged else None
        last_end = math.inf if last is None or last.end0 is None else last.end0
        if last and alias_key(last.chrom) == alias_key(r.chrom) and r.start0 <= last_end:
            end = None if last.end0 is None or r.end0 is None else max(last.end0, r.end0)
            merged[-1] = Region(last.chrom, last.start0, end)
        else:
            merged.append(r)
    return merged


def parse_regions(spec: str) -> list[Region]:
    """Regions as bcftools -r takes them: `chr`, `chr:pos`, `chr:beg-end`, `chr:beg-`, comma-separated,
    or the path of a BED file (.bed or .bed.gz). Returned sorted and merged."""
    path = Path(spec)
    if path.name.endswith((".bed", ".bed.gz")) or path.is_file():
        if not path.is_file():
            raise UserError(f"regions file not found: {spec}")
        if not path.name.endswith((".bed", ".bed.gz")):
            raise UserError(f"regions file {spec} must be BED, named .bed or .bed.gz")
        regions = _read_bed(path)
    else:
        regions = [_parse_region(part) for part in spec.split(",") if part.strip()]
    if not regions:
        raise UserError(f"no regions in {spec!r}")
    return _merge(regions)


class RegionSet:
    """Fast overlap tests against merged regions, contig names compared by alias_key."""

    def __init__(self, regions: list[Region]):
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[float]] = {}
        for r in _merge(regions):
            key = alias_key(r.chrom)
            self._starts.setdefault(key, []).append(r.start0)
            self._ends.setdefault(key, []).append(math.inf if r.end0 is None else r.end0)

    def overlaps(self, chrom: str, start0: int, end0: int) -> bool:
        """Does [start0, end0) (at least one base) overlap a region?"""
        starts = self._starts.get(alias_key(chrom))
        if starts is None:
            return False
        i = bisect.bisect_right(starts, max(end0, start0 + 1) - 1) - 1
        return i >= 0 and self._ends[alias_key(chrom)][i] > start0


# ---------------------------------------------------------------- VCF / BCF


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"variants file not found: {p}")
    return p


def _vcf_format(path: Path) -> str:
    """'bcf', 'vcf' (plain text), 'vcf.bgz' (bgzip) or 'vcf.gz' (plain gzip), from the file's bytes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:2] != b"\x1f\x8b":
        return "bcf" if head[:3] == b"BCF" else "vcf"
    with gzip.open(path, "rb") as fh:
        if fh.read(3) == b"BCF":
            return "bcf"
    return "vcf.bgz" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "vcf.gz"


def _vcf_line_problem(raw: bytes) -> str | None:
    """What is wrong with a VCF data line, or None; checks what htslib would crash or stop on."""
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        return "empty line (delete it)"
    cols = line.split(b"\t", 8)
    if len(cols) < 8:
        hint = "; columns must be separated by tabs" if b" " in line else ""
        return f"{len(cols)} column(s), a VCF record needs at least 8 (CHROM POS ID REF ALT QUAL FILTER INFO){hint}"
    chrom, pos, _vid, ref, alt = (c.decode(errors="replace") for c in cols[:5])
    if not chrom or chrom != chrom.strip():
        return f"bad CHROM {chrom!r}"
    if not pos.isdigit():
        return f"POS {pos!r} is not a whole number"
    if not ref:
        return "REF is empty"
    if not alt:
        return "ALT is empty"
    return None


def _open_text(path: Path):
    return gzip.open(path, "rb") if _vcf_format(path) != "vcf" else open(path, "rb")


def _scan_vcf_text(path: Path) -> int:
    """Validate every line of a text VCF before cyvcf2 sees it; return the number of header lines."""
    n_header, has_columns, in_body = 0, False, False
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.startswith(b"#"):
                if in_body:
                    raise UserError(f"{path}, line {lineno}: header line after the first record")
                n_header += 1
                has_columns = has_columns or raw.startswith(b"#CHROM")
                continue
            if not has_columns:
                raise UserError(f"{path}, line {lineno}: record before the #CHROM header line (is it a VCF?)")
            in_body = True
            problem = _vcf_line_problem(raw)
            if problem:
                raise UserError(f"{path}, line {lineno}: malformed VCF record: {problem}")
    if not has_columns:
        raise UserError(f"{path}: no #CHROM header line; is it a VCF file?")
    return n_header


def _locate_line(path: Path, raw: bytes) -> int:
    """1-based number of the first line equal to raw (only called to word an error)."""
    want = raw.rstrip(b"\r\n")
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.rstrip(b"\r\n") == want:
                return lineno
    return 0


def _open_vcf(path: Path) -> cyvcf2.VCF:
    import cyvcf2

    try:
        return cyvcf2.VCF(str(path), lazy=True)
    except OSError as exc:
        raise UserError(f"cannot read {path} as VCF/BCF: {exc}") from exc


def _guarded(path: Path, records: Iterable[cyvcf2.Variant], what: str, first: int = 1) -> Iterator[cyvcf2.Variant]:
    """Turn htslib parse errors into a UserError that names the line or record (numbered from first)."""
    it = iter(records)
    for k in itertools.count(first):
        try:
            rec = next(it)
        except StopIteration:
            return
        except Exception as exc:  # cyvcf2 raises a bare Exception on parse errors
            detail = " ".join(str(exc).split())
            raise UserError(f"{path}, {what} {k}: cannot parse record: {detail}") from exc
        yield rec


def _rec_variants(rec: cyvcf2.Variant, line: int, counter: Iterator[int]) -> Iterator[Variant]:
    return _make_variants(rec.CHROM, rec.POS, rec.ID or ".", rec.REF, list(rec.ALT), line, {}, counter)


def _index_path(path: Path, fmt: str) -> Path:
    names = [f"{path}.csi"] if fmt == "bcf" else [f"{path}.tbi", f"{path}.csi"]
    for name in names:
        if Path(name).is_file():
            return Path(name)
    how = f"`bcftools index {path}`" if fmt == "bcf" else f"`tabix -p vcf {path}` (or `bcftools index -t {path}`)"
    raise UserError(f"--regions needs an index of {path}; make one with {how}")


def _query_name(vcf: cyvcf2.VCF, chrom: str) -> str | None:
    """The VCF's own name for a region's contig (aliases accepted)."""
    names = list(vcf.seqnames)
    if chrom in names:
        return chrom
    return next((n for n in names if alias_key(n) == alias_key(chrom)), None)


def _validate_region_lines(path: Path, index: Path, queries: list[tuple[Region, str]]) -> None:
    """Check the text lines an index query will return, so that htslib never parses a bad one."""
    import pysam

    with pysam.TabixFile(str(path), index=str(index)) as tbx:
        for region, name in queries:
            for text in tbx.fetch(name, region.start0, region.end0):
                raw = text.encode()
                problem = _vcf_line_problem(raw)
                if problem:
                    line = _locate_line(path, raw)
                    raise UserError(f"{path}, line {line}: malformed VCF record: {problem}")


def _read_vcf_indexed(path: Path, fmt: str, regions: list[Region]) -> Iterator[Variant]:
    vcf = _open_vcf(path)
    index = _index_path(path, fmt)
    vcf.set_index(str(index))
    queries = []
    for region in regions:
        name = _query_name(vcf, region.chrom)
        if name is None:
            log.warning("region contig %s is not in %s; it selects nothing", region.chrom, path)
        else:
            queries.append((region, name))
    if fmt != "bcf":
        _validate_region_lines(path, index, queries)
    return _query_variants(path, vcf, queries)


def _query_variants(path: Path, vcf: cyvcf2.VCF, queries: list[tuple[Region, str]]) -> Iterator[Variant]:
    counter = itertools.count()
    prev: tuple[str, int | None] | None = None
    for region, name in queries:
        for rec in _guarded(path, vcf(region.htslib(name)), f"region {region.htslib(name)} record"):
            # a record spanning two merged regions comes back from both queries: keep the first
            if prev and prev[0] == name and prev[1] is not None and rec.start < prev[1]:
                continue
            yield from _rec_variants(rec, 0, counter)
        prev = (name, region.end0)


def _read_vcf_scan(path: Path, fmt: str, regions: list[Region] | None) -> Iterator[Variant]:
    n_header = 0 if fmt == "bcf" else _scan_vcf_text(path)
    vcf = _open_vcf(path)
    wanted = RegionSet(regions) if regions else None
    return _scan_variants(path, vcf, n_header, wanted, "record" if fmt == "bcf" else "line")


def _scan_variants(
    path: Path, vcf: cyvcf2.VCF, n_header: int, wanted: RegionSet | None, what: str
) -> Iterator[Variant]:
    counter = itertools.count()
    for k, rec in enumerate(_guarded(path, vcf, what, n_header + 1), 1):
        if wanted is None or wanted.overlaps(rec.CHROM, rec.start, rec.end):
            yield from _rec_variants(rec, n_header + k, counter)


def read_vcf(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Variants of a VCF, VCF.gz or BCF file, one per ALT allele, in file order.

    Text VCFs are checked line by line first (htslib crashes on some malformed lines), so a bad
    line raises UserError before any record is returned. `regions` (bcftools -r syntax or a BED
    path) uses the index for VCF.gz and BCF and a scan for plain VCF.
    """
    p = _existing(path)
    fmt = _vcf_format(p)
    wanted = parse_regions(regions) if regions else None
    if wanted is not None and fmt in ("vcf.bgz", "bcf"):
        return _read_vcf_indexed(p, fmt, wanted)
    if wanted is not None and fmt == "vcf.gz":
        raise UserError(f"--regions needs {p} compressed with bgzip (not gzip) and indexed with `tabix -p vcf`")
    return _read_vcf_scan(p, fmt, wanted)


# ---------------------------------------------------------------- tables


def _table_sep(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".tsv", ".txt")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    if name.endswith((".parquet", ".pq")):
        return None
    raise UserError(f"{path}: unknown table type; use .tsv, .txt, .csv (optionally .gz) or .parquet")


def _map_columns(columns: list[str], path: Path) -> dict[str, str]:
    """Our role (chrom, pos, ref, alt, id) -> the table's column name, matched case-insensitively."""
    lower = {c.lower(): c for c in reversed(columns)}
    found = {}
    for role, names in _TABLE_COLUMNS.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None:
            found[role] = hit
    missing = [r for r in ("chrom", "pos", "ref", "alt") if r not in found]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; expected chrom (or chromosome), pos "
            f"(or position), ref, alt and optionally id; found {', '.join(map(str, columns))}"
        )
    return found


def _load_table(path: Path) -> tuple[Any, dict[str, str], int]:
    """(DataFrame, column roles, line number of the first row)."""
    import pandas as pd

    sep = _table_sep(path)
    try:
        if sep is None:
            df = pd.read_parquet(path)
            return df, _map_columns([str(c) for c in df.columns], path), 1
        header = pd.read_csv(path, sep=sep, nrows=0).columns.tolist()
        roles = _map_columns(header, path)
        as_text = {roles[r]: str for r in ("chrom", "ref", "alt", "id") if r in roles}
        df = pd.read_csv(path, sep=sep, dtype=as_text)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read table {path}: {exc}") from exc
    return df, roles, 2


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_pos(value: Any, path: Path, line: int) -> int:
    try:
        pos = int(value)
        if pos != float(value) or pos < 0:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}, line {line}: position {value!r} is not a whole number") from None
    return pos


def _text(value: Any, default: str) -> str:
    return default if _is_missing(value) else str(value).strip()


def _table_variants(path: Path, df: Any, roles: dict[str, str], first: int, wanted: RegionSet | None):
    counter = itertools.count()
    extra_names = [c for c in df.columns if c not in roles.values()]
    cols = [df[roles[r]].tolist() if r in roles else [None] * len(df) for r in ("chrom", "pos", "ref", "alt", "id")]
    extras = [df[c].tolist() for c in extra_names]
    for i, (chrom, pos, ref, alt, vid, *rest) in enumerate(zip(*cols, *extras, strict=True)):
        line = first + i
        if _is_missing(chrom) or not str(chrom).strip():
            raise UserError(f"{path}, line {line}: chromosome is empty")
        chrom, pos, ref = str(chrom).strip(), _as_pos(pos, path, line), _text(ref, "")
        if wanted is not None and not wanted.overlaps(chrom, pos - 1, pos - 1 + len(ref)):
            continue
        alts = _text(alt, ".").split(",")
        extra = dict(zip(extra_names, rest, strict=True))
        yield from _make_variants(chrom, pos, _text(vid, ".") or ".", ref, alts, line, extra, counter)


def read_table(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Variants of a TSV/CSV (optionally .gz) or parquet table with chrom, pos (1-based), ref, alt
    and optionally id columns (or the Long Range Benchmark's chromosome/position). Other columns are
    carried in `extra`. A comma-separated alt gives one Variant per allele."""
    p = _existing(path)
    df, roles, first = _load_table(p)
    wanted = RegionSet(parse_regions(regions)) if regions else None
    return _table_variants(p, df, roles, first, wanted)


def read_variants(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Dispatch on the file name: VCF/BCF through read_vcf, tables through read_table."""
    name = Path(path).name.lower()
    if name.endswith(_VCF_SUFFIXES):
        return _number_records(read_vcf(path, regions))
    if name.endswith(_TABLE_SUFFIXES):
        return _number_records(read_table(path, regions))
    known = ", ".join(_VCF_SUFFIXES + _TABLE_SUFFIXES)
    raise UserError(f"{path}: unknown variants file type; expected one of {known}")


def _number_records(variants: Iterator[Variant]) -> Iterator[Variant]:
    """Set Variant.record: the ALTs of one input record come together and share one number (index
    queries give no line numbers, so records are told apart by line, site, REF and ID)."""
    record, last = -1, None
    for v in variants:
        key = (v.line, v.chrom, v.pos, v.ref, v.id)
        if key != last:
            record, last = record + 1, key
        v.record = record
        yield v


# ---------------------------------------------------------------- reference checks


def check_against_reference(variant: Variant, genome: Genome, max_indel_len: int | None = None) -> Variant:
    """Assign contig_missing, outside_contig, ref_mismatch, ref_is_N, indel_too_long (first that
    applies, in that order) to a still-ok variant, and set fasta_chrom. Modifies and returns it."""
    if not variant.ok:
        return variant
    name = genome.resolve(variant.chrom)
    if name is None:
        shown = ", ".join(genome.contigs[:5]) + (", ..." if len(genome.contigs) > 5 else "")
        variant.fail(CONTIG_MISSING, f"contig {variant.chrom} is not in the FASTA (it has {shown})")
        return variant
    variant.fasta_chrom = name
    start0, end0 = variant.pos - 1, variant.pos - 1 + len(variant.ref)
    length = genome.length(name)
    if start0 < 0 or end0 > length:
        variant.fail(OUTSIDE_CONTIG, f"REF at {variant.chrom}:{variant.pos} passes the contig end ({length} bp)")
        return variant
    found = genome.fetch(name, start0, end0)
    ref = variant.ref.upper()
    if any(f != r and f != "N" for f, r in zip(found, ref, strict=True)):
        where = f"{variant.chrom}:{variant.pos}" + (f"-{end0}" if end0 - start0 > 1 else "")
        variant.fail(REF_MISMATCH, f"REF {ref} differs from the FASTA at {where}, which has {found}")
    elif "N" in found:
        variant.fail(REF_IS_N, f"the FASTA has N within REF at {variant.chrom}:{variant.pos}: {found}")
    elif max_indel_len is not None and max(len(variant.norm_ref), len(variant.norm_alt)) > max_indel_len:
        longest = max(len(variant.norm_ref), len(variant.norm_alt))
        variant.fail(INDEL_TOO_LONG, f"allele of {longest} bp after trimming is over the limit of {max_indel_len}")
    return variant


def check_all(variants: Iterable[Variant], genome: Genome, max_indel_len: int | None = None) -> Iterator[Variant]:
    """check_against_reference over a stream."""
    for v in variants:
        yield check_against_reference(v, genome, max_indel_len)
