"""Genomic intervals and the one region grammar every command reads (bcftools conventions).

`score -r`, `pretrain --val-region/--intervals`, `finetune` BED inputs and the Snakefile all go through
here, so a region means the same thing everywhere:

- a list (`-r`): comma-separated `chr`, `chr:pos`, `chr:beg-end`, `chr:beg-`, 1-based and inclusive;
  commas separate regions, so a position is never written with thousands separators;
- a file (`-R`, or a `-r` value naming one): BED, plain or gzip, `track`/`browser`/`#` lines skipped;
- contigs compare by `alias_key` (`chr22` = `22`, `chrM` = `MT`), and overlapping or touching regions
  are merged, contigs kept in the order they first appear.

Nothing here opens a FASTA: the module is torch-, pandas- and pysam-free, for the Snakefile's sake.
"""

from __future__ import annotations

import bisect
import gzip
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from vepcli.errors import UserError

BED_SUFFIXES = (".bed", ".bed.gz")
BED_SKIP = ("#", "track", "browser")  # UCSC header lines, not intervals


def alias_key(name: str) -> str:
    """Canonical form of a contig name, so that `chr1`/`1`, `chrX`/`X` and `chrM`/`MT`/`M` compare equal.

    A leading `chr` (any case) is dropped, the rest upper-cased, and `M` becomes `MT`.
    """
    core = name[3:] if name[:3].lower() == "chr" and len(name) > 3 else name
    core = core.upper()
    return "MT" if core == "M" else core


def same_contig(a: str, b: str) -> bool:
    """Do two contig names mean the same sequence (exactly, or by alias_key)?"""
    return a == b or alias_key(a) == alias_key(b)


@dataclass(frozen=True, order=True, slots=True)
class Interval:
    """A stretch [start, end) of one contig, 0-based half-open as in BED; end None runs to the contig's end."""

    contig: str
    start: int
    end: int | None

    def __len__(self) -> int:
        if self.end is None:
            raise ValueError(f"{self} runs to the contig end: its length needs the FASTA")
        return self.end - self.start

    def __str__(self) -> str:
        """1-based inclusive, as samtools and htslib queries write it (`chr:beg-`, open-ended)."""
        return f"{self.contig}:{self.start + 1}-{'' if self.end is None else self.end}"

    def on(self, contig: str) -> Interval:
        """The same stretch under another name of its contig (a file's own spelling of it)."""
        return replace(self, contig=contig)


# ---------------------------------------------------------------- the -r grammar

_REGION = re.compile(r"^(?P<contig>[^:].*?)(?::(?P<beg>\d+)(?P<dash>-)?(?P<end>\d+)?)?$")
_THOUSANDS = re.compile(r"^\d{3}(?:-|$)")  # `001-2000` of `22:1,001-2000`


def parse_region(text: str) -> Interval:
    """One region: `chr`, `chr:pos`, `chr:beg-end` or `chr:beg-` (1-based, inclusive)."""
    m = _REGION.match(text.strip())
    if not m or not m["contig"]:
        raise UserError(f"bad region {text!r}: expected chr, chr:pos, chr:beg-end or chr:beg-")
    if m["beg"] is None:
        return Interval(m["contig"], 0, None)
    beg = int(m["beg"])
    end: int | None = int(m["end"]) if m["end"] else (None if m["dash"] else beg)
    if beg < 1 or (end is not None and end < beg):
        raise UserError(f"bad region {text!r}: positions are 1-based and the end must not be before the start")
    return Interval(m["contig"], beg - 1, end)


def parse_region_list(text: str) -> list[Interval]:
    """A bcftools `-r` list, in the order given (not merged).

    `22:1,001-2000` is refused in one line: bcftools reads it as `22:1` and a contig `001-2000`,
    which is never what was meant."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    for before, part in zip(parts, parts[1:], strict=False):
        if ":" in before and _THOUSANDS.match(part):
            raise UserError(
                f"bad region {text!r}: commas separate regions (bcftools -r), so positions take no "
                f"thousands separators; write {before}{part.replace(',', '')} without the comma"
            )
    return [parse_region(p) for p in parts]


# ---------------------------------------------------------------- BED


def bed_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a BED file's interval lines, plain or gzip; header and blank lines skipped."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip() and not line.startswith(BED_SKIP):
                    yield lineno, line.rstrip("\r\n")
    except OSError as err:
        raise UserError(f"cannot read BED file {path}: {err.strerror or err}") from None


def bed_fields(line: str) -> list[str]:
    """A BED line's columns: tab-separated, or whitespace-separated when it has no tab."""
    return line.split("\t") if "\t" in line else line.split()


def read_bed(path: str | Path) -> list[tuple[Interval, list[str]]]:
    """Every interval of a BED file with its further columns (name, score, ...), in file order."""
    out = []
    for lineno, line in bed_lines(path):
        cols = bed_fields(line)
        if len(cols) < 3 or not cols[1].isdigit() or not cols[2].isdigit():
            raise UserError(f"{path}, line {lineno}: a BED line needs chrom, start, end (tab-separated): {line[:60]!r}")
        start, end = int(cols[1]), int(cols[2])
        if end < start:
            raise UserError(f"{path}, line {lineno}: end {end} is before start {start}")
        out.append((Interval(cols[0], start, end), [c.strip() for c in cols[3:]]))
    return out


# ---------------------------------------------------------------- sets of regions


def merge_regions(regions: Iterable[Interval], contig_key: Callable[[str], str] = alias_key) -> list[Interval]:
    """Overlapping and touching regions joined, by position within a contig, contigs in first-seen order.

    Contigs compare by `contig_key` (alias_key: user-given names; `str`: names already the FASTA's)."""
    regions = list(regions)
    order: dict[str, int] = {}
    for r in regions:
        order.setdefault(contig_key(r.contig), len(order))
    merged: list[Interval] = []
    for r in sorted(regions, key=lambda r: (order[contig_key(r.contig)], r.start)):
        last = merged[-1] if merged else None
        last_end = math.inf if last is None or last.end is None else last.end
        if last and contig_key(last.contig) == contig_key(r.contig) and r.start <= last_end:
            end = None if last.end is None or r.end is None else max(last.end, r.end)
            merged[-1] = Interval(last.contig, last.start, end)
        else:
            merged.append(r)
    return merged


def parse_regions(spec: str) -> list[Interval]:
    """`-r`/`-R` as bcftools takes them: a region list, or the path of a BED file (.bed or .bed.gz).
    Returned merged (see merge_regions)."""
    path = Path(spec)
    if path.name.endswith(BED_SUFFIXES) or path.is_file():
        if not path.is_file():
            raise UserError(f"regions file not found: {spec}")
        if not path.name.endswith(BED_SUFFIXES):
            raise UserError(f"regions file {spec} must be BED, named .bed or .bed.gz")
        regions = [iv for iv, _ in read_bed(path)]
    else:
        regions = parse_region_list(spec)
    if not regions:
        raise UserError(f"no regions in {spec!r}")
    return merge_regions(regions)


def subtract(keep: Iterable[Interval], remove: Iterable[Interval]) -> list[Interval]:
    """The parts of `keep` that overlap nothing in `remove` (closed intervals on FASTA contig names)."""
    by_contig: dict[str, list[Interval]] = defaultdict(list)
    for r in merge_regions(sorted(remove), str):
        by_contig[r.contig].append(r)
    out = []
    for iv in merge_regions(sorted(keep), str):
        start = iv.start
        for r in by_contig.get(iv.contig, ()):
            if r.end <= start or r.start >= iv.end:
                continue
            if r.start > start:
                out.append(Interval(iv.contig, start, r.start))
            start = max(start, r.end)
        if start < iv.end:
            out.append(Interval(iv.contig, start, iv.end))
    return out


class RegionSet:
    """Fast overlap tests against merged regions, contig names compared by alias_key."""

    def __init__(self, regions: Iterable[Interval]):
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[float]] = {}
        for r in merge_regions(regions):
            key = alias_key(r.contig)
            self._starts.setdefault(key, []).append(r.start)
            self._ends.setdefault(key, []).append(math.inf if r.end is None else r.end)

    def overlaps(self, contig: str, start: int, end: int) -> bool:
        """Does [start, end) (at least one base) overlap a region?"""
        starts = self._starts.get(alias_key(contig))
        if starts is None:
            return False
        i = bisect.bisect_right(starts, max(end, start + 1) - 1) - 1
        return i >= 0 and self._ends[alias_key(contig)][i] > start
