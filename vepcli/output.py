"""Outputs (design step 7): VCF / VCF.gz (bgzip + tabix), TSV and parquet, written all-or-nothing.

Rows reach a *partial store* beside the output as whole blocks (JSON lines ending in a block mark,
flushed and fsynced), so a stopped run can `--resume`. When every block is in, the final file is
rendered to a temporary name and renamed into place; the partial store is then removed. A reader
never sees a half-written output.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vepcli.atomic import atomic_file
from vepcli.errors import UserError
from vepcli.scoring import get as get_score
from vepcli.scoring import numeric_columns

FORMATS = ("vcf", "vcf.gz", "tsv", "tsv.gz", "parquet", "npz")
BASE_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "status", "reason", "index")
INFO_PREFIX = "VEPCLI_"


def output_format(path: str, output_type: str | None) -> str:
    """The format from -O (v, z, t, p or a format name), else from the file name."""
    if output_type:
        short = {"v": "vcf", "z": "vcf.gz", "t": "tsv", "p": "parquet"}
        fmt = short.get(output_type, output_type)
        if fmt not in FORMATS:
            raise UserError(f"-O {output_type!r} is not one of v (vcf), z (vcf.gz), t (tsv), p (parquet)")
        return fmt
    name = path.lower()
    for suffix, fmt in (
        (".vcf.gz", "vcf.gz"),
        (".vcf.bgz", "vcf.gz"),
        (".vcf", "vcf"),
        (".tsv.gz", "tsv.gz"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".npz", "npz"),
    ):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".bcf"):
        raise UserError("BCF output is not supported; write .vcf.gz and convert with 'bcftools view -Ob'")
    if name.endswith((".csv", ".csv.gz")):
        raise UserError(f"{path}: CSV output is not written (the table is tab-separated); name it .tsv or .tsv.gz")
    if name.endswith((".gz", ".bgz", ".bz2", ".xz", ".zst")):
        raise UserError(f"{path}: unknown compressed output; name it .vcf.gz or .tsv.gz (or .vcf, .tsv, .parquet)")
    return "tsv"


# ---------------------------------------------------------------- partial store (resume)


class PartialStore:
    """Completed blocks of rows for one output, kept in `<output>.partial/` until the run ends."""

    def __init__(self, output: Path, meta: dict[str, Any], resume: bool) -> None:
        self.dir = output.with_name(output.name + ".partial")
        self.rows_path = self.dir / "rows.jsonl"
        meta_path = self.dir / "meta.json"
        self.rows: list[dict[str, Any]] = []
        self.blocks_done = 0
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"{self.dir} is in the way: vepcli keeps its resume folder there; move that file away")
        if self.dir.exists() and resume:
            old = _read_meta(meta_path)
            if old != meta:
                raise UserError(
                    f"{self.dir} was made with other inputs or settings ({describe_change(old, meta)}); "
                    "rerun without --resume to start over"
                )
            self._load()
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
        self._file = open(self.rows_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across blocks

    def _damaged(self, what: str) -> UserError:
        return UserError(f"the resume folder {self.dir} is damaged ({what}); rerun without --resume to start over")

    def _load(self) -> None:
        """Keep the rows of complete blocks; drop anything after the last block mark (a stopped write)."""
        pending: list[dict[str, Any]] = []
        good_bytes = 0
        if not self.rows_path.is_file():
            raise self._damaged("rows.jsonl is missing")
        with open(self.rows_path, "rb") as f:
            for raw in f:
                try:
                    item = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                if not isinstance(item, dict):
                    raise self._damaged(f"a line holds {type(item).__name__}, not a row")
                if "block_end" in item:
                    if item["block_end"] != self.blocks_done:
                        raise self._damaged(f"block {item['block_end']} follows block {self.blocks_done - 1}")
                    self.rows.extend(pending)
                    pending = []
                    self.blocks_done = item["block_end"] + 1
                    good_bytes = f.tell()
                elif not isinstance(item.get("index"), int) or not isinstance(item.get("chrom"), str):
                    raise self._damaged("a row has no index or chrom")
                else:
                    pending.append(item)
        with open(self.rows_path, "r+b") as f:
            f.truncate(good_bytes)

    def check_block(self, block: int, start: int, indexes: list[int]) -> None:
        """On resume: the stored rows of a block (from row `start`) must be those the input gives again."""
        stored = [r["index"] for r in self.rows[start : start + len(indexes)]]
        if stored != indexes:
            raise self._damaged(f"block {block} holds other rows than the input gives")

    def add_block(self, block: int, rows: Sequence[dict[str, Any]]) -> None:
        lines = [json.dumps(r, separators=(",", ":")) for r in rows] + [json.dumps({"block_end": block})]
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.extend(rows)
        self.blocks_done = block + 1

    def finish(self) -> None:
        self._file.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        self._file.close()


def _read_meta(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def describe_change(old: Any, new: dict[str, Any]) -> str:
    """What differs between a resume folder's record of a run and this run, in words."""
    if not isinstance(old, dict):
        return "its meta.json is missing or damaged"
    words = {
        "variants": "the variants file",
        "fasta": "the FASTA",
        "model": "the model",
        "window": "the window",
        "version": "the vepcli version",
        "format": "the output format",
        "probe": "the probe",
        "finetune": "the fine-tuned head",
    }
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "settings" and isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key in ("variants", "fasta") and isinstance(a, dict) and isinstance(b, dict):
            what = [k for k in ("path", "size", "mtime_ns", "sha256") if a.get(k) != b.get(k)]
            changed.append(f"{words[key]} {b.get('path')} changed ({', '.join(what)})")
        else:
            changed.append(f"{words.get(key, key)} changed")
    return "; ".join(changed[:4]) or "unknown difference"


# ---------------------------------------------------------------- rendering


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "."
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def _info_escape(text: str) -> str:
    """VCF INFO values may not hold spaces, ';', '=' or ','; percent-encode them (VCF 4.3 style)."""
    for ch, code in (("%", "%25"), (" ", "%20"), (";", "%3B"), ("=", "%3D"), (",", "%2C"), ("\t", "%09")):
        text = text.replace(ch, code)
    return text


def vcf_header(
    meta_lines: Sequence[str], contigs: Sequence[tuple[str, int | None]], score_columns: Sequence[tuple[str, str]]
) -> str:
    lines = ["##fileformat=VCFv4.2"]
    for name, length in contigs:
        lines.append(f"##contig=<ID={name}" + (f",length={length}>" if length else ">"))
    lines.append(
        f'##INFO=<ID={INFO_PREFIX}STATUS,Number=1,Type=String,Description="vepcli status: ok, or why '
        'the allele was not scored (see docs/input-rules.md)">'
    )
    lines.append(
        f'##INFO=<ID={INFO_PREFIX}INDEX,Number=1,Type=Integer,Description="0-based number of this ALT '
        'allele in the input, in input order (a stable row id across shards)">'
    )
    lines.append(
        f'##INFO=<ID={INFO_PREFIX}REASON,Number=1,Type=String,Description="Why the allele was not '
        'scored, or a note on a score left empty (percent-encoded)">'
    )
    for column, description in score_columns:
        kind = get_score(column).info_type
        lines.append(f'##INFO=<ID={INFO_PREFIX}{column.upper()},Number=1,Type={kind},Description="{description}">')
    lines.extend(meta_lines)
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    return "\n".join(lines) + "\n"


def _vcf_record(row: dict[str, Any], scores: Sequence[str]) -> str:
    info = [f"{INFO_PREFIX}STATUS={row['status']}", f"{INFO_PREFIX}INDEX={row['index']}"]
    if row.get("reason"):
        info.append(f"{INFO_PREFIX}REASON={_info_escape(row['reason'])}")
    for column in scores:
        if row.get(column) is not None:
            info.append(f"{INFO_PREFIX}{column.upper()}={_fmt(row[column])}")
    return (
        "\t".join(
            [row["chrom"], str(row["pos"]), row["id"] or ".", row["ref"], row["alt"] or ".", ".", ".", ";".join(info)]
        )
        + "\n"
    )


def sort_for_vcf(rows: Iterable[dict[str, Any]], contig_order: Sequence[str]) -> list[dict[str, Any]]:
    """Contig order of the header, then position, then input order: what tabix needs, deterministic."""
    rank = {name: i for i, name in enumerate(contig_order)}
    return sorted(rows, key=lambda r: (rank.get(r["chrom"], len(rank)), r["chrom"], r["pos"], r["index"]))


TBI_MAX_END = (1 << 29) - 1  # a .tbi holds positions up to 2^29 - 1; past that a .csi is written


def bgzip_and_index(text_path: Path, tmp: Path, max_end: int) -> None:
    """bgzip a sorted VCF and index it: tabix (.tbi) where it can hold the positions, else CSI."""
    import pysam

    pysam.tabix_compress(str(text_path), str(tmp), force=True)
    try:
        pysam.tabix_index(str(tmp), preset="vcf", force=True, csi=max_end > TBI_MAX_END)
    except OSError as err:
        raise UserError(f"cannot index the output ({err}); write .vcf or .tsv instead") from None


def write_output(
    path: Path,
    fmt: str,
    rows: list[dict[str, Any]],
    scores: Sequence[str],
    score_descriptions: dict[str, str],
    meta_lines: Sequence[str],
    contigs: Sequence[tuple[str, int | None]],
    extra_columns: Sequence[str],
    vectors: Sequence[str] = (),
) -> None:
    """Render all rows to a temporary file beside `path`, then rename it (and its index) into place."""
    with atomic_file(path) as tmp:
        if fmt in ("vcf", "vcf.gz"):
            _write_vcf(tmp, fmt, rows, scores, score_descriptions, meta_lines, contigs)
        elif fmt == "npz":
            _write_npz(tmp, rows, scores, meta_lines, extra_columns, vectors)
        else:
            _write_table(tmp, fmt, rows, scores, meta_lines, extra_columns, vectors)


def _write_vcf(tmp: Path, fmt: str, rows, scores, score_descriptions, meta_lines, contigs) -> None:
    text_path = Path(str(tmp) + ".plain") if fmt == "vcf.gz" else tmp
    ordered = sort_for_vcf(rows, [c for c, _ in contigs])
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(vcf_header(meta_lines, contigs, [(s, score_descriptions[s]) for s in scores]))
        for row in ordered:
            f.write(_vcf_record(row, scores))
    if fmt == "vcf.gz":
        bgzip_and_index(text_path, tmp, max((r["pos"] + len(r["ref"]) - 1 for r in rows), default=0))


def _frame(rows, scores, extra_columns) -> pd.DataFrame:
    columns = [*BASE_COLUMNS, *scores, *extra_columns]
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    frame["pos"] = frame["pos"].astype("int64")
    frame["index"] = frame["index"].astype("int64")
    for s in scores:
        frame[s] = frame[s].astype(get_score(s).dtype)
    return frame


def _vector_array(rows, column: str) -> np.ndarray:
    """(n, d) float32 with NaN rows for alleles that were not embedded."""
    d = next((len(r[column]) for r in rows if r.get(column) is not None), 0)
    out = np.full((len(rows), d), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        if r.get(column) is not None:
            out[i] = r[column]
    return out


def _write_npz(tmp: Path, rows, scores, meta_lines, extra_columns, vectors) -> None:
    frame = _frame(rows, scores, extra_columns)
    arrays = {c: frame[c].to_numpy() for c in frame.columns}
    arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    arrays.update({c: _vector_array(rows, c) for c in vectors})
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.array(list(meta_lines)), **arrays)


def _write_table(tmp: Path, fmt: str, rows, scores, meta_lines, extra_columns, vectors=()) -> None:
    frame = _frame(rows, scores, extra_columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        for c in vectors:
            arr = _vector_array(rows, c)
            flat = pa.array(arr.reshape(-1), type=pa.float32())
            table = table.append_column(c, pa.FixedSizeListArray.from_arrays(flat, arr.shape[1]))
        meta = {**(table.schema.metadata or {}), b"vepcli": json.dumps(list(meta_lines)).encode()}
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        return
    text = "".join(f"{line}\n" for line in meta_lines)
    text += frame.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g")
    if fmt == "tsv.gz":
        import gzip

        # no name and mtime 0 in the gzip header: the same inputs give the same bytes
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(text.encode())
    else:
        Path(tmp).write_text(text, encoding="utf-8")


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a vepcli TSV (skipping its ## lines) or parquet output back into a DataFrame."""
    path = Path(path)
    if path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        skip = 0
        for line in f:
            if not line.startswith("##"):
                break
            skip += 1
    numeric = numeric_columns()
    return pd.read_csv(
        path,
        sep="\t",
        skiprows=skip,
        dtype={"chrom": str, "id": str, "ref": str, "alt": str},
        keep_default_na=False,
        na_values={c: [""] for c in numeric},
    )
