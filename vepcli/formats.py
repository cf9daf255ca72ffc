"""What kind of file a path is: variants as VCF/BCF or as a table (TSV/CSV/parquet), and which VCF flavour.

Inputs are told apart by name first (what the user chose to call them), then the VCF flavour by the
file's own bytes, since `.vcf.gz` files are often plain gzip that no index can serve. Every reader,
`finetune` and the Snakefile ask here, so a file is never one kind to one command and another to the next.
"""

from __future__ import annotations

import os
from pathlib import Path

from vepcli.errors import UserError
from vepcli.integrity import GZIP_MAGIC, head_bytes, is_bgzf, open_binary, reading

VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
TABLE_SUFFIXES = (".tsv", ".txt", ".csv", ".tsv.gz", ".txt.gz", ".csv.gz", ".parquet", ".pq")


def is_vcf_name(path: str | os.PathLike[str]) -> bool:
    """Is the file named as a VCF or BCF (else a table)?"""
    return Path(path).name.lower().endswith(VCF_SUFFIXES)


def variants_format(path: str | os.PathLike[str]) -> str:
    """'vcf' (VCF, VCF.gz or BCF) or 'table' (TSV/CSV, optionally gzip, or parquet), by the file name."""
    name = Path(path).name.lower()
    if name.endswith(VCF_SUFFIXES):
        return "vcf"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    known = ", ".join(VCF_SUFFIXES + TABLE_SUFFIXES)
    raise UserError(f"{path}: unknown variants file type; expected one of {known}")


def table_sep(path: str | os.PathLike[str]) -> str | None:
    """The column separator of a table by its name: tab, comma, or None for parquet."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".tsv", ".txt")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    if name.endswith((".parquet", ".pq")):
        return None
    raise UserError(f"{path}: unknown table type; use .tsv, .txt, .csv (optionally .gz) or .parquet")


def vcf_format(path: Path) -> str:
    """'bcf', 'vcf' (plain text), 'vcf.bgz' (bgzip) or 'vcf.gz' (plain gzip), from the file's bytes."""
    head = head_bytes(path)
    if head[:2] != GZIP_MAGIC:
        return "bcf" if head[:3] == b"BCF" else "vcf"
    with reading(path), open_binary(path) as fh:
        if fh.read(3) == b"BCF":
            return "bcf"
    return "vcf.bgz" if is_bgzf(path) else "vcf.gz"
