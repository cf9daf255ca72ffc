"""`vepcli merge`, part 2: the parts' rows, streamed, checked and written in one run's order (see
vepcli/merge.py for the rules). VCF and TSV parts are merged with a heap; parquet parts are read whole."""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import json
from array import array
from collections.abc import Iterator
from pathlib import Path

from vepcli.errors import UserError
from vepcli.integrity import reading
from vepcli.merge_parts import INDEX_COLUMN, INDEX_KEY, Part, contig_name, open_text
from vepcli.output import bgzip_and_index

# ---------------------------------------------------------------- rows


class _Contigs:
    """Region parts must not share a contig: a record in two parts would be scored and written twice."""

    def __init__(self, parts: list[Part], active: bool) -> None:
        self.parts, self.active, self.owner = parts, active, {}

    def add(self, chrom: str, k: int) -> None:
        if self.active and self.owner.setdefault(chrom, k) != k:
            raise UserError(
                f"contig {chrom} is in both {self.parts[self.owner[chrom]].name} and "
                f"{self.parts[k].name}: parts made with --regions must not share a contig (split one "
                "contig with --shard instead)"
            )


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
            raise UserError(
                f"the allele with index {index} is in both {other} and {self.parts[k].name}: the parts "
                "overlap (were they made from the same input, with other --shard/--regions?)"
            )
        self.owner[index] = k + 1

    def check(self, total: int) -> None:
        # `total` distinct indexes: any index >= total leaves a hole below total
        hole = next((i for i in range(total) if not self.owner[i]), None)
        if hole is not None:
            raise UserError(
                f"the parts do not cover the input: index {hole} is in none of them (a part of the "
                "split is missing or was cut short)"
            )


def _vcf_rows(part: Part, k: int, rank: dict[str, int], renumber: bool, contigs: _Contigs) -> Iterator[tuple]:
    n_rank = len(rank)
    prev = None
    chrom = None
    with open_text(part.path) as f:
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
                raise UserError(
                    f"{part.name} has records without INFO/{INDEX_KEY[:-1]}; rescore it with this version of vepcli"
                )
            index = _int(info[at][len(INDEX_KEY) :], part)
            if renumber:
                index = _renumbered(index, part)
                info[at] = f"{INDEX_KEY}{index}"
                cols[7] = ";".join(info)
                line = "\t".join(cols)
            if cols[0] != chrom:
                chrom = cols[0]
                contigs.add(chrom, k)
            key = (rank.get(cols[0], n_rank), cols[0], _int(cols[1], part), index)
            if prev is not None and key < prev:
                raise UserError(
                    f"{part.name} is not sorted at {cols[0]}:{cols[1]}; merge only files written by 'vepcli score'"
                )
            prev = key
            yield key, k, line


def _table_rows(part: Part, k: int, renumber: bool, contigs: _Contigs) -> Iterator[tuple]:
    with open_text(part.path) as f:
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
                raise UserError(
                    f"{part.name}: a row has {len(row)} columns, the header {len(columns)}; is it a vepcli output?"
                )
            index = _int(row[at], part)
            if at_chrom is not None and row[at_chrom] != chrom:
                chrom = row[at_chrom]
                contigs.add(chrom, k)
            if renumber:
                index = _renumbered(index, part)
                row[at] = str(index)
            if index <= prev:
                raise UserError(
                    f"{part.name} is not in input order (index {index} after {prev}); merge only "
                    "files written by 'vepcli score'"
                )
            prev = index
            yield index, k, row


def _renumbered(index: int, part: Part) -> int:
    """A per-region part's row index as the index of the whole run (its offset added)."""
    if not 0 <= index < part.rows:
        raise UserError(
            f"{part.name}: index {index} is outside 0..{part.rows - 1}; was it made with "
            "--shard? Then give all shards of the set instead"
        )
    return index + part.offset


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
        raise UserError(
            f"{part.name}: cannot read a row ({' '.join(str(err).split())[:200]}); merge only vepcli outputs"
        ) from None


# ---------------------------------------------------------------- writing


def _columns(parts: list[Part]) -> str:
    return next((p.columns for p in parts if p.rows), parts[0].columns)


def write_vcf(parts: list[Part], out_fmt: str, tmp: Path, header: list[str], renumber: bool) -> int:
    rank = {contig_name(line): i for i, line in enumerate(c for c in header if c.startswith("##contig="))}
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


def write_table(parts: list[Part], out_fmt: str, tmp: Path, header: list[str], renumber: bool) -> int:
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
                raise UserError(
                    f"the parts do not cover the input: index {total} is in none of them (a part of "
                    "the split is missing or was cut short)"
                    if index > total
                    else f"the allele with index {index} is in two parts: the parts overlap"
                )
            writer.writerow(row)
            total += 1
        text.flush()
        text.detach()
        if sink is not raw:
            sink.close()
    finally:
        raw.close()
    return total


def write_parquet(parts: list[Part], tmp: Path, header: list[str], renumber: bool) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    contigs = _Contigs(parts, renumber)
    for k, p in enumerate(parts):
        table = _parquet_part(p, k, renumber, contigs)
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
    _check_cover(index[order])
    merged = merged.take(pa.array(order))
    first_meta = pq.read_schema(parts[0].path).metadata or {}
    meta = {**first_meta, b"vepcli": json.dumps(list(header)).encode()}
    merged = merged.replace_schema_metadata(meta)
    pq.write_table(merged, tmp)
    return len(index)


def _parquet_part(p: Part, k: int, renumber: bool, contigs: _Contigs):
    """Part `k` as a table, its index renumbered for region parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(p.path)
    if renumber and "chrom" in table.column_names:
        for chrom in dict.fromkeys(table["chrom"].to_pylist()):
            contigs.add(chrom, k)
    if INDEX_COLUMN not in table.column_names:
        raise UserError(f"{p.name} has no '{INDEX_COLUMN}' column; rescore it with this version of vepcli")
    if not renumber:
        return table
    index = table[INDEX_COLUMN].to_numpy()
    if len(index) and (index.min() < 0 or index.max() >= p.rows):
        raise UserError(
            f"{p.name}: index outside 0..{p.rows - 1}; was it made with --shard? Then give all "
            "shards of the set instead"
        )
    at = table.column_names.index(INDEX_COLUMN)
    return table.set_column(at, INDEX_COLUMN, pa.array(index + p.offset, type=pa.int64()))


def _check_cover(sorted_index) -> None:
    """The merged indexes, sorted, must be 0..n-1 each once: no overlap, no hole."""
    import numpy as np

    repeated = np.flatnonzero(sorted_index[1:] == sorted_index[:-1])
    if len(repeated):
        raise UserError(
            f"the allele with index {sorted_index[repeated[0]]} is in two parts: the parts overlap "
            "(were they made from the same input, with other --shard/--regions?)"
        )
    holes = np.flatnonzero(sorted_index != np.arange(len(sorted_index)))
    if len(holes):
        raise UserError(
            f"the parts do not cover the input: index {holes[0]} is in none of them (a part of the "
            "split is missing or was cut short)"
        )
