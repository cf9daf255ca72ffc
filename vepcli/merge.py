"""`vepcli merge`: join the parts of a split `vepcli score` run into the file one run would have written.

Two kinds of parts (see docs/snakemake.md):

* a **shard set**: the outputs of `--shard 1/N .. N/N` of one input. Every part says
  `##vepcli_shard=I/N`; each I must be there exactly once. Rows keep their `index` (the allele's
  0-based number in the input), which is what orders them.
* **region parts**: runs with `--regions`, one per contig (what the workflow's `by: chromosome`
  does), given in the order of the input (the order their contigs first appear in it); no two may
  share a contig. Each part numbers its rows 0..n-1, so the merge renumbers them: part k's rows get
  the number of rows of parts 1..k-1 added. With an input grouped by contig (any sorted VCF) that is
  the index one run gives.

All parts must carry the same `##vepcli_settings_hash` (same model, weights, window and settings)
and, apart from `##vepcli_command`, `##vepcli_shard` and `##contig` lines, the same header. The
merged file is ordered like a single run's: VCF by the contig order of the header, then position,
then index; TSV and parquet by index (input order). Its `##vepcli_command` is the merge command and
it has no `##vepcli_shard` line, so it equals the file of one unsharded run except for that line.
Every index 0..n-1 must come exactly once (a part cut short or two overlapping parts are refused).
The same parts always give the same bytes. VCF and TSV parts are read as streams and merged with a
heap, so memory does not grow with the number of rows (beyond 4 bytes a row for the VCF overlap
check); parquet parts are read whole.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import json
import os
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vepcli.errors import UserError
from vepcli.integrity import READ_ERRORS, check_compressed, reading, truncated_message
from vepcli.outpath import check_output_path
from vepcli.output import INFO_PREFIX, atomic_output, bgzip_and_index, output_format

FAMILY = {"vcf": "VCF", "vcf.gz": "VCF", "tsv": "TSV", "tsv.gz": "TSV", "parquet": "parquet"}
INDEX_KEY = f"{INFO_PREFIX}INDEX="
INDEX_COLUMN = "index"
_VARYING = ("##vepcli_command=", "##vepcli_shard=", "##contig=")
_INPUT = "##vepcli_input_sha256="
_FASTA = "##vepcli_fasta_sha256="
_CONTIG_ID = re.compile(r"^##contig=<ID=([^,>]+)")
_SHARD = re.compile(r"^(\d+)/(\d+)$")


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

    @property
    def name(self) -> str:
        return str(self.path)


def _open_text(path: Path):
    """Plain, gzip or bgzip text, by the first bytes (a BGZF file without its EOF marker is refused)."""
    check_compressed(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - the caller closes it


# ---------------------------------------------------------------- reading headers


def _read_part(path: Path, fmt: str) -> Part:
    try:
        with reading(path):
            return _read_part_unguarded(path, fmt)
    except (csv.Error, ValueError, TypeError) as err:  # json errors are ValueErrors
        raise UserError(f"{path} is not a readable vepcli output ({' '.join(str(err).split())[:200]})") from None


def _read_part_unguarded(path: Path, fmt: str) -> Part:
    part = Part(path, fmt, [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
        except Exception as err:  # noqa: BLE001 - any pyarrow error: not a parquet file
            raise UserError(f"{path} is not a readable parquet file ({err})") from None
        if b"vepcli" not in meta:
            raise UserError(f"{path} has no vepcli header (schema metadata 'vepcli'); is it a vepcli output?")
        part.header = json.loads(meta[b"vepcli"])
        if not isinstance(part.header, list) or not all(isinstance(h, str) for h in part.header):
            raise UserError(f"{path}: its vepcli header is not a list of lines; is it a vepcli output?")
        part.rows = pq.ParquetFile(path).metadata.num_rows
        part.columns = "\t".join(pq.read_schema(path).names)
    else:
        with _open_text(path) as f:
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
    part.contigs = [h for h in part.header if h.startswith("##contig=")]
    for line in part.header:
        if line.startswith("##vepcli_settings_hash="):
            part.settings_hash = line.split("=", 1)[1]
        elif line.startswith("##vepcli_shard="):
            m = _SHARD.match(line.split("=", 1)[1])
            if not m:
                raise UserError(f"{path}: bad line {line!r}; expected ##vepcli_shard=I/N")
            part.shard = (int(m[1]), int(m[2]))
    if not part.settings_hash:
        raise UserError(f"{path} has no ##vepcli_settings_hash line; merge only outputs of 'vepcli score'")
    return part


def _check_parts(parts: list[Part]) -> str:
    """Refuse parts that do not belong together; return 'shards' or 'regions'."""
    first = parts[0]
    for p in parts[1:]:
        if p.settings_hash != first.settings_hash:
            raise UserError(f"{p.name} (settings {p.settings_hash}) and {first.name} (settings {first.settings_hash}) "
                            "were scored with a different model, window or settings; rescore them alike")
    _same_line(parts, _INPUT, "input sha256", "were scored from different input files; merge parts of one input")
    _same_line(parts, _FASTA, "FASTA contigs sha256", "were scored against different reference FASTAs; rescore "
               "them against one")
    for p in parts[1:]:
        mine = [h for h in p.header if not h.startswith(_VARYING)]
        theirs = [h for h in first.header if not h.startswith(_VARYING)]
        if mine != theirs:
            diff = next((a for a, b in zip(mine, theirs, strict=False) if a != b), None)
            if diff is None:
                diff = (mine[len(theirs):] or theirs[len(mine):])[0]
            raise UserError(f"{p.name} and {first.name} differ in the header line {diff.split('=', 1)[0]}; "
                            "merge only parts of one run")
    # a part without rows may lack the extra columns of a table input; the others must agree
    with_rows = [p for p in parts if p.rows]
    for p in with_rows[1:]:
        if p.columns != with_rows[0].columns:
            raise UserError(f"{p.name} and {with_rows[0].name} have different columns; merge only parts of one run")
    sharded = [p for p in parts if p.shard]
    if sharded and len(sharded) != len(parts):
        plain = next(p for p in parts if not p.shard)
        raise UserError(f"{plain.name} is not a shard (no ##vepcli_shard line) but {sharded[0].name} is; "
                        "merge either one complete shard set or unsharded parts")
    if not sharded:
        return "regions"
    n = first.shard[1]
    seen: dict[int, Part] = {}
    for p in parts:
        i, m = p.shard
        if m != n:
            raise UserError(f"{p.name} is shard {i}/{m} but {first.name} is shard {first.shard[0]}/{n}; "
                            "merge shards of one split")
        if i in seen:
            raise UserError(f"shard {i}/{n} is given twice: {seen[i].name} and {p.name}")
        seen[i] = p
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in seen]
    if missing:
        raise UserError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"{'are' if len(missing) > 1 else 'is'} missing; give all {n} shards of the set")
    return "shards"


def _same_line(parts: list[Part], prefix: str, what: str, why: str) -> None:
    """Every part must carry the same `prefix` header line (or all none): else one line naming two parts."""
    values = {p.name: next((h for h in p.header if h.startswith(prefix)), None) for p in parts}
    first = parts[0]

    def digest(name: str) -> str:
        return (values[name] or "=none (made by an older vepcli)").split("=", 1)[1]

    for p in parts[1:]:
        if values[p.name] != values[first.name]:
            raise UserError(f"{p.name} ({what} {digest(p.name)}) and {first.name} ({what} {digest(first.name)}) "
                            f"{why}")


def _merged_contigs(parts: list[Part]) -> list[str]:
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
            name = _contig_name(line)
            if name in rest and rest[name] != line:
                raise UserError(f"the parts disagree on contig {name}: {rest[name]} vs {line}")
            rest[name] = line
    return head + [rest[name] for name in sorted(rest)]


def _contig_name(line: str) -> str:
    m = _CONTIG_ID.match(line)
    if not m:
        raise UserError(f"bad header line {line!r}")
    return m[1]


def _merged_header(parts: list[Part], command: str, contigs: list[str]) -> list[str]:
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


# ---------------------------------------------------------------- rows


class _Contigs:
    """Region parts must not share a contig: a record in two parts would be scored and written twice."""

    def __init__(self, parts: list[Part], active: bool) -> None:
        self.parts, self.active, self.owner = parts, active, {}

    def add(self, chrom: str, k: int) -> None:
        if self.active and self.owner.setdefault(chrom, k) != k:
            raise UserError(f"contig {chrom} is in both {self.parts[self.owner[chrom]].name} and "
                            f"{self.parts[k].name}: parts made with --regions must not share a contig (split one "
                            "contig with --shard instead)")


class _Coverage:
    """Every merged index must occur once: 0..n-1 without a gap (one part or shard missing rows) or a
    repeat (overlapping parts). 4 bytes a row; the part that holds each index, for the message."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.owner = array("I")

    def add(self, index: int, k: int) -> None:
        if index < 0:
            raise UserError(f"{self.parts[k].name}: negative index {index}")
        if index >= len(self.owner):
            self.owner.extend([0] * (index + 1 - len(self.owner) + len(self.owner) // 2))
        if self.owner[index]:
            other = self.parts[self.owner[index] - 1].name
            raise UserError(f"the allele with index {index} is in both {other} and {self.parts[k].name}: the parts "
                            "overlap (were they made from the same input, with other --shard/--regions?)")
        self.owner[index] = k + 1

    def check(self, total: int) -> None:
        # `total` distinct indexes: any index >= total leaves a hole below total
        hole = next((i for i in range(total) if not self.owner[i]), None)
        if hole is not None:
            raise UserError(f"the parts do not cover the input: index {hole} is in none of them (a part of the "
                            "split is missing or was cut short)")


def _vcf_rows(part: Part, k: int, rank: dict[str, int], renumber: bool, contigs: _Contigs) -> Iterator[tuple]:
    n_rank = len(rank)
    prev = None
    chrom = None
    with _open_text(part.path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) < 8:
                raise UserError(f"{part.name}: a record has {len(cols)} columns, not 8; is it a vepcli VCF?")
            info = cols[7].split(";")
            at = next((j for j, item in enumerate(info) if item.startswith(INDEX_KEY)), None)
            if at is None:
                raise UserError(f"{part.name} has records without INFO/{INDEX_KEY[:-1]}; rescore it with this "
                                "version of vepcli")
            index = _int(info[at][len(INDEX_KEY):], part)
            if renumber:
                if not 0 <= index < part.rows:
                    raise UserError(f"{part.name}: index {index} is outside 0..{part.rows - 1}; was it made with "
                                    "--shard? Then give all shards of the set instead")
                index += part.offset
                info[at] = f"{INDEX_KEY}{index}"
                cols[7] = ";".join(info)
                line = "\t".join(cols)
            if cols[0] != chrom:
                chrom = cols[0]
                contigs.add(chrom, k)
            key = (rank.get(cols[0], n_rank), cols[0], _int(cols[1], part), index)
            if prev is not None and key < prev:
                raise UserError(f"{part.name} is not sorted at {cols[0]}:{cols[1]}; merge only files written by "
                                "'vepcli score'")
            prev = key
            yield key, k, line


def _table_rows(part: Part, k: int, renumber: bool, contigs: _Contigs) -> Iterator[tuple]:
    with _open_text(part.path) as f:
        for line in f:
            if not line.startswith("##"):
                break  # the column header line
        columns = next(csv.reader([part.columns], delimiter="\t"))
        if INDEX_COLUMN not in columns:
            raise UserError(f"{part.name} has no '{INDEX_COLUMN}' column; rescore it with this version of vepcli")
        at = columns.index(INDEX_COLUMN)
        at_chrom = columns.index("chrom") if "chrom" in columns else None
        prev = -1
        chrom = None
        for row in csv.reader(f, delimiter="\t"):
            if len(row) != len(columns):
                raise UserError(f"{part.name}: a row has {len(row)} columns, the header {len(columns)}; is it a "
                                "vepcli output?")
            index = _int(row[at], part)
            if at_chrom is not None and row[at_chrom] != chrom:
                chrom = row[at_chrom]
                contigs.add(chrom, k)
            if renumber:
                if not 0 <= index < part.rows:
                    raise UserError(f"{part.name}: index {index} is outside 0..{part.rows - 1}; was it made with "
                                    "--shard? Then give all shards of the set instead")
                index += part.offset
                row[at] = str(index)
            if index <= prev:
                raise UserError(f"{part.name} is not in input order (index {index} after {prev}); merge only "
                                "files written by 'vepcli score'")
            prev = index
            yield index, k, row


def _int(text: str, part: Part) -> int:
    if not (text.isascii() and text.isdigit()):
        raise UserError(f"{part.name}: index {text[:20]!r} is not a whole number; merge only vepcli outputs")
    return int(text)


def _guarded(part: Part, rows: Iterator[tuple]) -> Iterator[tuple]:
    """A part that is damaged while it is streamed: one line naming it, never a traceback."""
    try:
        with reading(part.path):
            yield from rows
    except (csv.Error, ValueError, IndexError) as err:
        raise UserError(f"{part.name}: cannot read a row ({' '.join(str(err).split())[:200]}); merge only vepcli "
                        "outputs") from None


# ---------------------------------------------------------------- writing


def _columns(parts: list[Part]) -> str:
    return next((p.columns for p in parts if p.rows), parts[0].columns)


def _write_vcf(parts: list[Part], out_fmt: str, tmp: Path, header: list[str], renumber: bool) -> int:
    rank = {_contig_name(line): i for i, line in enumerate(c for c in header if c.startswith("##contig="))}
    coverage = _Coverage(parts)
    total = 0
    text_path = Path(str(tmp) + ".plain") if out_fmt == "vcf.gz" else tmp
    contigs = _Contigs(parts, renumber)
    streams = [_guarded(p, _vcf_rows(p, k, rank, renumber, contigs)) for k, p in enumerate(parts)]
    max_end = 0
    with open(text_path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(f"{line}\n" for line in header))
        f.write(_columns(parts) + "\n")
        for key, k, line in heapq.merge(*streams, key=lambda item: item[0]):
            coverage.add(key[3], k)
            f.write(line + "\n")
            max_end = max(max_end, key[2] + len(line.split("\t", 4)[3]) - 1)
            total += 1
    coverage.check(total)
    if out_fmt == "vcf.gz":
        bgzip_and_index(text_path, tmp, max_end)
    return total


def _write_table(parts: list[Part], out_fmt: str, tmp: Path, header: list[str], renumber: bool) -> int:
    contigs = _Contigs(parts, renumber)
    streams = [_guarded(p, _table_rows(p, k, renumber, contigs)) for k, p in enumerate(parts)]
    total = 0
    raw = open(tmp, "wb")  # noqa: SIM115 - closed below
    try:
        # gzip: no file name and mtime 0 in the gzip header, so the same parts give the same bytes
        sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out_fmt == "tsv.gz" else raw
        text = io.TextIOWrapper(sink, encoding="utf-8", newline="")
        text.write("".join(f"{line}\n" for line in header))
        text.write(_columns(parts) + "\n")
        # the same dialect pandas' to_csv used to write the parts, so rows come out byte for byte
        writer = csv.writer(text, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        for index, _k, row in heapq.merge(*streams, key=lambda item: item[0]):
            if index != total:
                raise UserError(f"the parts do not cover the input: index {total} is in none of them (a part of "
                                "the split is missing or was cut short)" if index > total else
                                f"the allele with index {index} is in two parts: the parts overlap")
            writer.writerow(row)
            total += 1
        text.flush()
        text.detach()
        if sink is not raw:
            sink.close()
    finally:
        raw.close()
    return total


def _write_parquet(parts: list[Part], tmp: Path, header: list[str], renumber: bool) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    contigs = _Contigs(parts, renumber)
    for k, p in enumerate(parts):
        table = pq.read_table(p.path)
        if renumber and "chrom" in table.column_names:
            for chrom in dict.fromkeys(table["chrom"].to_pylist()):
                contigs.add(chrom, k)
        if INDEX_COLUMN not in table.column_names:
            raise UserError(f"{p.name} has no '{INDEX_COLUMN}' column; rescore it with this version of vepcli")
        if renumber:
            index = table[INDEX_COLUMN].to_numpy()
            if len(index) and (index.min() < 0 or index.max() >= p.rows):
                raise UserError(f"{p.name}: index outside 0..{p.rows - 1}; was it made with --shard? Then give all "
                                "shards of the set instead")
            at = table.column_names.index(INDEX_COLUMN)
            table = table.set_column(at, INDEX_COLUMN, pa.array(index + p.offset, type=pa.int64()))
        if p.rows or not tables:
            tables.append(table.replace_schema_metadata(None))
    if len(tables) > 1 and not tables[0].num_rows:
        tables.pop(0)
    try:
        merged = pa.concat_tables(tables, promote_options="default")  # all-null columns of one part: null type
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise UserError(f"the parts' columns do not match ({err}); merge only parts of one run") from None
    index = merged[INDEX_COLUMN].to_numpy()
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    repeated = np.flatnonzero(sorted_index[1:] == sorted_index[:-1])
    if len(repeated):
        raise UserError(f"the allele with index {sorted_index[repeated[0]]} is in two parts: the parts overlap "
                        "(were they made from the same input, with other --shard/--regions?)")
    holes = np.flatnonzero(sorted_index != np.arange(len(index)))
    if len(holes):
        raise UserError(f"the parts do not cover the input: index {holes[0]} is in none of them (a part of the "
                        "split is missing or was cut short)")
    merged = merged.take(pa.array(order))
    first_meta = pq.read_schema(parts[0].path).metadata or {}
    meta = {**first_meta, b"vepcli": json.dumps(list(header)).encode()}
    merged = merged.replace_schema_metadata(meta)
    pq.write_table(merged, tmp)
    return len(index)


# ---------------------------------------------------------------- entry point


def merge_files(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str],
                output_type: str | None = None, command: str | None = None) -> tuple[Path, int, str]:
    """Merge vepcli outputs `inputs` into `output`; returns (output, number of rows, 'shards' or 'regions').

    `command` goes into the ##vepcli_command line (default: `vepcli merge INPUTS -o OUTPUT`)."""
    if not inputs:
        raise UserError("give the files to merge: vepcli merge PART... -o OUTPUT")
    out = check_output_path(output, inputs)
    out_fmt = output_format(str(out), output_type)
    paths = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p} does not exist")
        real = p.resolve()
        if real in seen:
            raise UserError(f"{p} is given twice")
        seen[real] = p
    if out.resolve() in seen:
        raise UserError(f"the output {out} is also one of the inputs; write the merge to a new file")
    fmts = [output_format(str(p), None) for p in paths]
    for p, f in zip(paths, fmts, strict=True):
        if f not in FAMILY:
            raise UserError(f"{p}: {f} files cannot be merged; merge VCF, TSV or parquet outputs")
    family = FAMILY[fmts[0]]
    for p, f in zip(paths, fmts, strict=True):
        if FAMILY[f] != family:
            raise UserError(f"mixed formats: {paths[0]} is {family} but {p} is {FAMILY[f]}; merge parts of one format")
    if FAMILY.get(out_fmt) != family:
        raise UserError(f"the parts are {family} but the output {out} would be {out_fmt}; name the output "
                        f"{'.vcf.gz' if family == 'VCF' else '.tsv' if family == 'TSV' else '.parquet'}")
    parts = [_read_part(p, f) for p, f in zip(paths, fmts, strict=True)]
    kind = _check_parts(parts)
    renumber = kind == "regions"
    if renumber:
        offset = 0
        for p in parts:
            p.offset = offset
            offset += p.rows
    if command is None:
        command = " ".join(["vepcli", "merge", *map(str, inputs), "-o", str(output)])
    contigs = _merged_contigs(parts) if family == "VCF" else []
    header = _merged_header(parts, command, contigs)
    import pyarrow as pa

    try:
        with atomic_output(out) as tmp:
            if family == "VCF":
                total = _write_vcf(parts, out_fmt, tmp, header, renumber)
            elif family == "TSV":
                total = _write_table(parts, out_fmt, tmp, header, renumber)
            else:
                total = _write_parquet(parts, tmp, header, renumber)
    except READ_ERRORS as err:
        raise UserError(truncated_message(Path(getattr(err, "filename", "") or "a part"), err)) from None
    except pa.ArrowException as err:
        raise UserError(f"cannot read the parquet parts ({' '.join(str(err).split())[:200]}); merge only vepcli "
                        "outputs") from None
    except OSError as err:
        raise UserError(f"cannot write {out} ({err.strerror or err}); nothing was written") from None
    return out, total, kind
