"""Labelled examples for fine-tuning: variants (ref + alt windows) or intervals (one window), labels,
categorical covariates and the train / validation / test split.

Everything is read once, checked against the reference and tokenised up front (uint8 ids, W bytes a
window), so a training step is a pure function of (seed, step): no I/O inside the loop, and a resumed
run sees exactly the batches the stopped one would have seen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vepcli.errors import UserError
from vepcli.features import as_text
from vepcli.formats import is_vcf_name, table_sep
from vepcli.genome import Genome
from vepcli.nn.tokenizer import encode
from vepcli.regions import BED_SUFFIXES, bed_lines, same_contig
from vepcli.splits import drop_near_test_rows, genome_order, genome_tail
from vepcli.variants import OK, check_against_reference, read_variants
from vepcli.vcfio import read_info
from vepcli.windows import DEFAULT_MAX_N_FRACTION, build_windows, n_fraction

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "validation": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
}
INTERVAL_COLUMNS = {
    "chrom": ("chrom", "chromosome", "#chrom", "chr", "region"),
    "start": ("start",),
    "end": ("end", "stop"),
}


@dataclass
class Examples:
    """Tokenised windows with their labels, covariates and split; row i of every array is example i."""

    mode: str  # "variants" | "intervals"
    table: pd.DataFrame  # chrom, pos (1-based: variant position or interval start + 1), label text, covariates
    ids: np.ndarray  # (n, W) uint8: ref windows (variants) or the interval windows
    alt_ids: np.ndarray | None  # (n, W) uint8 alt windows (variants only)
    window: int
    skipped: dict[str, int] = field(default_factory=dict)  # status or reason -> rows left out

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> Examples:
        """The examples where `keep` (a boolean mask) is true, renumbered from 0."""
        return Examples(
            self.mode,
            self.table[keep].reset_index(drop=True),
            self.ids[keep],
            None if self.alt_ids is None else self.alt_ids[keep],
            self.window,
            dict(self.skipped),
        )


@dataclass
class Split:
    """Indexes of the training, validation and test examples, and how they were chosen."""

    method: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    description: str = ""
    buffer_bp: int = 0
    dropped: int = 0  # training rows dropped because their window overlaps a validation row

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "description": self.description,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "buffer_bp": self.buffer_bp,
            "dropped_near_validation": self.dropped,
        }


# ---------------------------------------------------------------- variants


def read_labelled_variants(
    path: str, genome: Genome, window: int, columns: Sequence[str], max_n_fraction: float = DEFAULT_MAX_N_FRACTION
) -> Examples:
    """Ref and alt windows (variant at W // 2) of every ok ALT of a VCF or table, with the named columns.

    Rows that cannot be windowed (ref_mismatch, contig_missing, too_many_N, ...) are left out and
    counted by status, as `vepcli score` would mark them. For a VCF the columns are INFO fields.
    """
    variants = list(read_variants(path))
    if not variants:
        raise UserError(f"{path} holds no variants")
    info = read_info(Path(path), columns) if is_vcf_name(path) else None  # labels live in INFO for a VCF
    for v in variants:
        check_against_reference(v, genome)
    batch = build_windows(variants, genome, window, share=False, max_n_fraction=max_n_fraction)
    skipped: dict[str, int] = {}
    for v in variants:
        if v.status != OK:
            skipped[v.status] = skipped.get(v.status, 0) + 1
    if not batch.variants:
        raise UserError(
            f"none of the {len(variants)} variants of {path} could be windowed "
            f"(statuses: {skipped}); check the FASTA and the contig names"
        )
    rows = []
    for v in batch.variants:
        extra = info[v.record] if info is not None else v.extra
        missing = [c for c in columns if c not in extra]
        if missing:
            where = "INFO fields" if info is not None else "columns"
            have = ", ".join(map(str, extra)) or "none"
            raise UserError(f"{path}: no {where} {', '.join(missing)} (it has: {have})")
        rows.append({"chrom": v.chrom, "pos": v.pos, "ref": v.ref, "alt": v.alt, **{c: extra[c] for c in columns}})
    ids = np.stack([encode(s).astype(np.uint8) for s in batch.ref_seqs])
    alt_ids = np.stack([encode(s).astype(np.uint8) for s in batch.alt_seqs])
    return Examples("variants", pd.DataFrame(rows), ids, alt_ids, window, skipped)


# ---------------------------------------------------------------- intervals


def _read_interval_table(path: str) -> pd.DataFrame:
    """(chrom, start, end, other columns) from a BED (4th column: `label`) or a table with a header."""
    name = Path(path).name.lower()
    if name.endswith(BED_SUFFIXES):
        text = "".join(line + "\n" for _, line in bed_lines(path))  # track/browser/# lines skipped
        if not text:
            raise UserError(f"{path} holds no intervals")
        frame = pd.read_csv(io.StringIO(text), sep="\t", header=None, comment="#", dtype={0: str})
        if frame.shape[1] < 4:
            raise UserError(f"{path}: a labelled BED needs a 4th column with the label")
        frame = frame.rename(columns={0: "chrom", 1: "start", 2: "end", 3: "label"})
        frame.columns = [str(c) for c in frame.columns]
        return frame
    sep = table_sep(path)
    try:
        frame = pd.read_parquet(path) if sep is None else pd.read_csv(path, sep=sep)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read intervals table {path}: {err}") from None
    lower = {str(c).lower(): c for c in frame.columns}
    renames = {}
    for role, names in INTERVAL_COLUMNS.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is None:
            raise UserError(f"{path}: no {role} column (expected one of {', '.join(names)})")
        renames[found] = role
    return frame.rename(columns=renames)


def read_labelled_intervals(
    path: str,
    genome: Genome,
    window: int | None,
    columns: Sequence[str],
    label: str,
    max_n_fraction: float = DEFAULT_MAX_N_FRACTION,
) -> Examples:
    """One window per interval: W bases centred on the interval (W defaults to the longest interval).

    Strand columns are not needed: the model is strand-conjoined, so a window and its reverse
    complement give the same prediction.
    """
    frame = _read_interval_table(path)
    frame["chrom"] = frame["chrom"].astype(str)
    start, end = frame["start"].to_numpy(np.int64), frame["end"].to_numpy(np.int64)
    if (end <= start).any():
        raise UserError(f"{path}: interval {int(np.argmax(end <= start)) + 1} is empty (end <= start)")
    width = int(window or (end - start).max())
    keep_cols = list(dict.fromkeys([label, *columns]))
    missing = [c for c in keep_cols if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: no column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")
    rows, seqs, skipped = [], [], {}
    for i in range(len(frame)):
        contig = genome.resolve(frame["chrom"].iat[i])
        if contig is None:
            skipped["contig_missing"] = skipped.get("contig_missing", 0) + 1
            continue
        lo = (int(start[i]) + int(end[i])) // 2 - width // 2
        seq = genome.fetch(contig, lo, lo + width)
        if n_fraction(seq) > max_n_fraction:
            skipped["too_many_N"] = skipped.get("too_many_N", 0) + 1
            continue
        seqs.append(encode(seq).astype(np.uint8))
        rows.append(
            {
                "chrom": frame["chrom"].iat[i],
                "pos": int(start[i]) + 1,
                "end": int(end[i]),
                **{c: frame[c].iat[i] for c in keep_cols},
            }
        )
    if not rows:
        raise UserError(f"none of the {len(frame)} intervals of {path} could be windowed ({skipped})")
    return Examples("intervals", pd.DataFrame(rows), np.stack(seqs), None, width, skipped)


# ---------------------------------------------------------------- split


def split_examples(
    table: pd.DataFrame,
    *,
    split_column: str | None = None,
    val_chroms: Sequence[str] = (),
    val_fraction: float = 0.2,
    buffer_bp: int = 0,
) -> Split:
    """Train / validation / test indexes, the first rule that applies:

    1. `split_column`: train / valid (val, validation, dev) / test per row;
    2. `val_chroms`: those chromosomes are validation (alias-aware: chr22 == 22);
    3. else the last `val_fraction` of the rows in genome order is validation, and training rows within
       `buffer_bp` (the window) of a validation row are dropped, so no training window overlaps one.
    """
    chrom = table["chrom"].astype(str).to_numpy()
    pos = table["pos"].to_numpy(np.int64)
    if split_column is not None:
        if split_column not in table.columns:
            raise UserError(f"--split-column {split_column} is not a column of the training file")
        raw = [as_text(v).lower() for v in table[split_column]]
        bad = sorted({r for r in raw if r not in SPLIT_NAMES})
        if bad:
            raise UserError(
                f"--split-column {split_column}: values must be train, valid or test; found {', '.join(bad[:5])}"
            )
        role = np.array([SPLIT_NAMES[r] for r in raw])
        split = Split(
            f"column:{split_column}",
            *(np.flatnonzero(role == r) for r in ("train", "val", "test")),
            description=f"rows by the value of {split_column}",
        )
    elif val_chroms:
        is_val = np.array([any(same_contig(c, v) for v in val_chroms) for c in chrom])
        split = Split(
            "chromosomes",
            np.flatnonzero(~is_val),
            np.flatnonzero(is_val),
            np.zeros(0, np.int64),
            description=f"validation chromosomes: {', '.join(val_chroms)}",
        )
    else:
        if not 0 < val_fraction < 1:
            raise UserError("--val-fraction must be between 0 and 1")
        order = genome_order(chrom, pos)
        train, val = genome_tail(order, val_fraction)
        kept = drop_near_test_rows(train, val, chrom, pos, buffer_bp)
        first = order[len(train)]
        split = Split(
            "genomic_block",
            kept,
            val,
            np.zeros(0, np.int64),
            description=f"the last {val_fraction:.0%} of rows in genome order, from {chrom[first]}:{pos[first]}",
            buffer_bp=buffer_bp,
            dropped=len(train) - len(kept),
        )
    if len(split.train) == 0 or len(split.val) == 0:
        raise UserError(
            f"the split ({split.method}) leaves {len(split.train)} training and {len(split.val)} "
            "validation rows; both must be non-empty"
        )
    return split
