"""Variant records (design step 1): VCF/BCF and table readers, normalisation and status reasons.

Every input ALT allele yields exactly one Variant, in input order; records that cannot be scored keep
a non-ok status and a reason instead of being dropped. The rules are written out in docs/input-rules.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vepcli.errors import UserError
from vepcli.formats import variants_format

if TYPE_CHECKING:
    from vepcli.genome import Genome

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
            self.status = status
            self.reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


MAX_REASON = 300  # characters: a reason names alleles and sequences shortened by `short`, never 100 kb of them


def short(seq: str, keep: int = 20) -> str:
    """A sequence for a message: itself when short, else its start, '...' and its length."""
    return seq if len(seq) <= keep else f"{seq[:keep]}...({len(seq)} bp)"


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
        return "symbolic", SYMBOLIC_ALLELE, f"symbolic or breakend ALT {alt[:60]} has no sequence to score"
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
            v.fail(INVALID_ALLELE, f"{name} {short(allele)!r} {problem}")
            return v
    if v.norm_ref == v.norm_alt:
        v.kind = "none"
        v.fail(INVALID_ALLELE, f"ALT {short(v.alt)} equals REF")
        return v
    v.norm_pos, v.norm_ref, v.norm_alt = trim_alleles(v.pos, v.norm_ref, v.norm_alt)
    v.kind = allele_kind(v.norm_ref, v.norm_alt)
    return v


def make_variants(
    chrom: str, pos: int, vid: str, ref: str, alts: list[str], line: int, extra: dict, counter: Iterator[int]
) -> Iterator[Variant]:
    for alt in alts or ["."]:
        yield normalise(Variant(chrom, pos, vid, ref, alt, next(counter), line, dict(extra)))


# ---------------------------------------------------------------- VCF / BCF


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"variants file not found: {p}")
    return p


def read_vcf(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Variants of a VCF, VCF.gz or BCF file, one per ALT allele, in file order (see vepcli.vcfio).

    Text VCFs are checked line by line first and parsed without htslib, so a bad line raises
    UserError before any record is returned. `regions` (bcftools -r syntax or a BED path) uses the
    index for VCF.gz and BCF and a scan for plain VCF.
    """
    from vepcli.vcfio import read_vcf as _read

    return _read(_existing(path), regions)


# ---------------------------------------------------------------- tables


def read_table(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Variants of a TSV/CSV (optionally .gz) or parquet table with chrom, pos (1-based), ref, alt
    and optionally id columns (see vepcli.tables). Other columns are carried in `extra`, renamed
    `input_<name>` where an output column has the name."""
    from vepcli.tables import read_table as _read

    return _read(_existing(path), regions)


def read_variants(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Dispatch on the file name: VCF/BCF through read_vcf, tables through read_table."""
    if variants_format(path) == "vcf":
        return _number_records(read_vcf(path, regions))
    return _number_records(read_table(path, regions))


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
    if start0 < 0:
        variant.fail(
            OUTSIDE_CONTIG,
            f"POS {variant.pos} is before the contig start (position 0 is a telomere "
            "in VCF; bases are numbered from 1)",
        )
        return variant
    if end0 > length:
        variant.fail(OUTSIDE_CONTIG, f"REF at {variant.chrom}:{variant.pos} passes the contig end ({length} bp)")
        return variant
    found = genome.fetch(name, start0, end0)
    ref = variant.ref.upper()
    if any(f != r and f != "N" for f, r in zip(found, ref, strict=True)):
        where = f"{variant.chrom}:{variant.pos}" + (f"-{end0}" if end0 - start0 > 1 else "")
        variant.fail(REF_MISMATCH, f"REF {short(ref)} differs from the FASTA at {where}, which has {short(found)}")
    elif "N" in found:
        variant.fail(REF_IS_N, f"the FASTA has N within REF at {variant.chrom}:{variant.pos}: {short(found)}")
    elif max_indel_len is not None and max(len(variant.norm_ref), len(variant.norm_alt)) > max_indel_len:
        longest = max(len(variant.norm_ref), len(variant.norm_alt))
        variant.fail(INDEL_TOO_LONG, f"allele of {longest} bp after trimming is over the limit of {max_indel_len}")
    return variant


def check_all(variants: Iterable[Variant], genome: Genome, max_indel_len: int | None = None) -> Iterator[Variant]:
    """check_against_reference over a stream."""
    for v in variants:
        yield check_against_reference(v, genome, max_indel_len)
