"""`vepcli merge`, part 1: the parts and their headers (see vepcli/merge.py for the rules).

Each part's header is read (`read_part`), the parts are checked to belong together (`check_parts`: same
settings, input, reference and header; one complete shard set or disjoint region parts), and the merged
header is built (`merged_contigs`, `merged_header`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vepcli.errors import UserError
from vepcli.integrity import open_binary, reading
from vepcli.output import INFO_PREFIX
from vepcli.runheader import RunHeader, same_digest

FAMILY = {"vcf": "VCF", "vcf.gz": "VCF", "tsv": "TSV", "tsv.gz": "TSV", "parquet": "parquet"}
INDEX_KEY = f"{INFO_PREFIX}INDEX="
INDEX_COLUMN = "index"
_VARYING = ("##vepcli_command=", "##vepcli_shard=", "##contig=")
_CONTIG_ID = re.compile(r"^##contig=<ID=([^,>]+)")


@dataclass
class Part:
    path: Path
    fmt: str
    header: list[str]  # the ## lines (VCF) or the vepcli meta lines (TSV, parquet)
    columns: str = ""  # the #CHROM line (VCF) or the column header line (TSV)
    shard: tuple[int, int] | None = None
    settings_hash: str = ""
    contigs: list[str] = field(default_factory=list)  # the ##contig lines, in order
    rows: int = 0  # number of data rows (region parts: for renumbering)
    offset: int = 0  # added to every index of this part
    run: RunHeader = field(default_factory=RunHeader)  # the ##vepcli_* lines, parsed

    @property
    def name(self) -> str:
        return str(self.path)


def open_text(path: Path) -> io.TextIOWrapper:
    """Plain, gzip or bgzip text, by the first bytes (a BGZF file without its EOF marker is refused)."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")


# ---------------------------------------------------------------- reading headers


def read_part(path: Path, fmt: str) -> Part:
    try:
        with reading(path):
            return _read_part_unguarded(path, fmt)
    except (csv.Error, ValueError, TypeError) as err:  # json errors are ValueErrors
        raise UserError(f"{path} is not a readable vepcli output ({' '.join(str(err).split())[:200]})") from None


def _read_part_unguarded(path: Path, fmt: str) -> Part:
    part = _read_parquet_part(path, fmt) if fmt == "parquet" else _read_text_part(path, fmt)
    part.contigs = [h for h in part.header if h.startswith("##contig=")]
    part.run = RunHeader.from_lines(part.header, str(path))
    part.settings_hash = part.run.settings_hash or ""
    part.shard = part.run.shard
    if not part.settings_hash:
        raise UserError(f"{path} has no ##vepcli_settings_hash line; merge only outputs of 'vepcli score'")
    return part


def _read_parquet_part(path: Path, fmt: str) -> Part:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # noqa: BLE001 - any pyarrow error: not a parquet file
        raise UserError(f"{path} is not a readable parquet file ({err})") from None
    if b"vepcli" not in meta:
        raise UserError(f"{path} has no vepcli header (schema metadata 'vepcli'); is it a vepcli output?")
    header = json.loads(meta[b"vepcli"])
    if not isinstance(header, list) or not all(isinstance(h, str) for h in header):
        raise UserError(f"{path}: its vepcli header is not a list of lines; is it a vepcli output?")
    rows = pq.ParquetFile(path).metadata.num_rows
    return Part(path, fmt, header, columns="\t".join(pq.read_schema(path).names), rows=rows)


def _read_text_part(path: Path, fmt: str) -> Part:
    part = Part(path, fmt, [])
    with open_text(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("##"):
                part.header.append(line)
                continue
            part.columns = line
            break
        if fmt in ("tsv", "tsv.gz"):
            part.rows = sum(1 for _ in csv.reader(f, delimiter="\t"))
        else:
            part.rows = sum(1 for line in f if line.strip())
    if not part.columns:
        raise UserError(f"{path} has no column header line; is it a vepcli {FAMILY[fmt]} output?")
    return part


def check_parts(parts: list[Part]) -> str:
    """Refuse parts that do not belong together; return 'shards' or 'regions'."""
    first = parts[0]
    for p in parts[1:]:
        if p.settings_hash != first.settings_hash:
            raise UserError(
                f"{p.name} (settings {p.settings_hash}) and {first.name} (settings {first.settings_hash}) "
                "were scored with a different model, window or settings; rescore them alike"
            )
    _same_digest(
        parts, "input_sha256", "input sha256", "were scored from different input files; merge parts of one input"
    )
    _same_digest(
        parts,
        "fasta_sha256",
        "FASTA contigs sha256",
        "were scored against different reference FASTAs; rescore them against one",
    )
    _same_header(parts)
    sharded = [p for p in parts if p.shard]
    if sharded and len(sharded) != len(parts):
        plain = next(p for p in parts if not p.shard)
        raise UserError(
            f"{plain.name} is not a shard (no ##vepcli_shard line) but {sharded[0].name} is; "
            "merge either one complete shard set or unsharded parts"
        )
    if not sharded:
        return "regions"
    _one_shard_set(parts)
    return "shards"


def _same_header(parts: list[Part]) -> None:
    """The same header lines (but command, shard and contigs) and, among parts with rows, the same columns."""
    first = parts[0]
    theirs = [h for h in first.header if not h.startswith(_VARYING)]
    for p in parts[1:]:
        mine = [h for h in p.header if not h.startswith(_VARYING)]
        if mine != theirs:
            diff = next((a for a, b in zip(mine, theirs, strict=False) if a != b), None)
            if diff is None:
                diff = (mine[len(theirs) :] or theirs[len(mine) :])[0]
            raise UserError(
                f"{p.name} and {first.name} differ in the header line {diff.split('=', 1)[0]}; "
                "merge only parts of one run"
            )
    # a part without rows may lack the extra columns of a table input; the others must agree
    with_rows = [p for p in parts if p.rows]
    for p in with_rows[1:]:
        if p.columns != with_rows[0].columns:
            raise UserError(f"{p.name} and {with_rows[0].name} have different columns; merge only parts of one run")


def _one_shard_set(parts: list[Part]) -> None:
    """Shards 1/N .. N/N, each exactly once."""
    first = parts[0]
    n = first.shard[1]
    seen: dict[int, Part] = {}
    for p in parts:
        i, m = p.shard
        if m != n:
            raise UserError(
                f"{p.name} is shard {i}/{m} but {first.name} is shard {first.shard[0]}/{n}; merge shards of one split"
            )
        if i in seen:
            raise UserError(f"shard {i}/{n} is given twice: {seen[i].name} and {p.name}")
        seen[i] = p
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in seen]
    if missing:
        raise UserError(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} missing; give all {n} shards of the set"
        )


def _same_digest(parts: list[Part], field_name: str, what: str, why: str) -> None:
    """Every part must record the same digest (or all none): else one line naming two parts."""
    values = {p.name: getattr(p.run, field_name) for p in parts}
    first = parts[0]

    def digest(name: str) -> str:
        return values[name] or "none (made by an older vepcli)"

    def same(a: str | None, b: str | None) -> bool:
        return a == b if a is None or b is None else same_digest(a, b)

    for p in parts[1:]:
        if not same(values[p.name], values[first.name]):
            raise UserError(f"{p.name} ({what} {digest(p.name)}) and {first.name} ({what} {digest(first.name)}) {why}")


def merged_contigs(parts: list[Part]) -> list[str]:
    """The ##contig lines one run would write: the FASTA's (shared by all parts), then the sorted union of
    the input's own names (aliases, missing contigs) that each part adds after them for its own rows.
    The longest prefix shared by all parts holds the FASTA's contigs and any extra names every part
    has; as those extra names sort first in every part, the rest only needs sorting after them."""
    lists = [p.contigs for p in parts]
    common = 0
    while all(common < len(c) for c in lists) and len({c[common] for c in lists}) == 1:
        common += 1
    head = lists[0][:common]
    rest: dict[str, str] = {}
    for c in lists:
        for line in c[common:]:
            name = contig_name(line)
            if name in rest and rest[name] != line:
                raise UserError(f"the parts disagree on contig {name}: {rest[name]} vs {line}")
            rest[name] = line
    return head + [rest[name] for name in sorted(rest)]


def contig_name(line: str) -> str:
    m = _CONTIG_ID.match(line)
    if not m:
        raise UserError(f"bad header line {line!r}")
    return m[1]


def merged_header(parts: list[Part], command: str, contigs: list[str]) -> list[str]:
    out: list[str] = []
    contigs_done = False
    for line in parts[0].header:
        if line.startswith("##contig="):
            if not contigs_done:
                out.extend(contigs)
                contigs_done = True
        elif line.startswith("##vepcli_shard="):
            continue
        elif line.startswith("##vepcli_command="):
            out.append(f"##vepcli_command={command}")
        else:
            out.append(line)
    if not contigs_done and contigs:
        out[1:1] = contigs
    return out
