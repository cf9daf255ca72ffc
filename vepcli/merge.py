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

The work is in vepcli/merge_parts.py (headers, checks) and vepcli/merge_rows.py (rows, writing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vepcli.atomic import atomic_file
from vepcli.errors import UserError
from vepcli.integrity import READ_ERRORS, truncated_message
from vepcli.merge_parts import FAMILY, Part, check_parts, merged_contigs, merged_header, read_part
from vepcli.merge_rows import write_parquet, write_table, write_vcf
from vepcli.outpath import check_output_path
from vepcli.output import output_format


def merge_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    output_type: str | None = None,
    command: str | None = None,
) -> tuple[Path, int, str]:
    """Merge vepcli outputs `inputs` into `output`; returns (output, number of rows, 'shards' or 'regions').

    `command` goes into the ##vepcli_command line (default: `vepcli merge INPUTS -o OUTPUT`)."""
    if not inputs:
        raise UserError("give the files to merge: vepcli merge PART... -o OUTPUT")
    out = check_output_path(output, inputs)
    out_fmt = output_format(str(out), output_type)
    paths = _distinct_inputs(inputs, out)
    fmts = [output_format(str(p), None) for p in paths]
    family = _one_family(paths, fmts, out, out_fmt)
    parts = [read_part(p, f) for p, f in zip(paths, fmts, strict=True)]
    kind = check_parts(parts)
    renumber = kind == "regions"
    if renumber:
        offset = 0
        for p in parts:
            p.offset = offset
            offset += p.rows
    if command is None:
        command = " ".join(["vepcli", "merge", *map(str, inputs), "-o", str(output)])
    contigs = merged_contigs(parts) if family == "VCF" else []
    header = merged_header(parts, command, contigs)
    return out, _write(parts, family, out, out_fmt, header, renumber), kind


def _distinct_inputs(inputs: Sequence[str | os.PathLike[str]], out: Path) -> list[Path]:
    """The parts as paths: each an existing file, none given twice, none the output."""
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
    return paths


def _one_family(paths: list[Path], fmts: list[str], out: Path, out_fmt: str) -> str:
    """VCF, TSV or parquet: the one family of every part and of the output."""
    for p, f in zip(paths, fmts, strict=True):
        if f not in FAMILY:
            raise UserError(f"{p}: {f} files cannot be merged; merge VCF, TSV or parquet outputs")
    family = FAMILY[fmts[0]]
    for p, f in zip(paths, fmts, strict=True):
        if FAMILY[f] != family:
            raise UserError(f"mixed formats: {paths[0]} is {family} but {p} is {FAMILY[f]}; merge parts of one format")
    if FAMILY.get(out_fmt) != family:
        raise UserError(
            f"the parts are {family} but the output {out} would be {out_fmt}; name the output "
            f"{'.vcf.gz' if family == 'VCF' else '.tsv' if family == 'TSV' else '.parquet'}"
        )
    return family


def _write(parts: list[Part], family: str, out: Path, out_fmt: str, header: list[str], renumber: bool) -> int:
    """Write the merged rows to `out` all-or-nothing; the number of rows."""
    import pyarrow as pa

    try:
        with atomic_file(out) as tmp:
            if family == "VCF":
                return write_vcf(parts, out_fmt, tmp, header, renumber)
            if family == "TSV":
                return write_table(parts, out_fmt, tmp, header, renumber)
            return write_parquet(parts, tmp, header, renumber)
    except READ_ERRORS as err:
        raise UserError(truncated_message(Path(getattr(err, "filename", "") or "a part"), err)) from None
    except pa.ArrowException as err:
        raise UserError(
            f"cannot read the parquet parts ({' '.join(str(err).split())[:200]}); merge only vepcli outputs"
        ) from None
    except OSError as err:
        raise UserError(f"cannot write {out} ({err.strerror or err}); nothing was written") from None
