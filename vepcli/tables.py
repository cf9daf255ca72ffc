"""Table readers (TSV, CSV, optionally gzip; parquet) behind a validation layer (design step 1).

Every failure is a one-line UserError naming the file (and line): damaged or truncated gzip, text
that is not UTF-8, positions that are not whole numbers or lie past any genome, control characters
that would break an output line. Columns other than chrom, pos, id, ref and alt are carried to the
output; one whose name an output column already has (`llr`, `status`, `index`, ...) is carried
under `input_<name>`, so a carried value can never stand in for a computed one. The rules are in
docs/input-rules.md ("Tables") and docs/outputs.md ("Reserved column names").
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vepcli.errors import UserError
from vepcli.formats import table_sep
from vepcli.integrity import (
    READ_ERRORS,
    UTF8_BOM,
    check_compressed,
    first_bytes,
    open_binary,
    reading,
    truncated_message,
)
from vepcli.regions import RegionSet, parse_regions
from vepcli.variants import Variant, make_variants
from vepcli.vcftext import MAX_POS

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "chrom": ("chrom", "#chrom", "chromosome"),
    "pos": ("pos", "position"),
    "ref": ("ref",),
    "alt": ("alt",),
    "id": ("id",),
}
# the columns of every score or embed output besides the scores (vepcli.scoring registers those)
OUTPUT_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "status", "reason", "index", "ref_emb", "alt_emb")


def reserved_columns() -> frozenset[str]:
    """Every column name an output of score or embed may have, registered plug-in scores included:
    carried input columns never take these names."""
    from vepcli.scoring import numeric_columns

    return frozenset((*OUTPUT_COLUMNS, *numeric_columns()))


CARRIED_PREFIX = "input_"
_BAD_TEXT = ("\t", "\n", "\r", "\x00")


def carried_name(name: str, taken: set[str]) -> str:
    """The output name of a carried input column: `input_<name>` (repeated) while it names an output
    column (case-insensitively) or one already taken."""
    out = name
    reserved = reserved_columns()
    while out.lower() in reserved or out.lower() in taken:
        out = CARRIED_PREFIX + out
    return out


def _map_columns(columns: list[str], path: Path) -> dict[str, str]:
    """Our role (chrom, pos, ref, alt, id) -> the table's column name, matched case-insensitively."""
    lower = {c.lower(): c for c in reversed(columns)}
    found = {}
    for role, names in TABLE_COLUMNS.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None:
            found[role] = hit
    missing = [r for r in ("chrom", "pos", "ref", "alt") if r not in found]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; expected chrom (or chromosome), pos "
            f"(or position), ref, alt and optionally id; found {', '.join(c[:40] for c in columns[:20])}"
        )
    return found


def _check_names(columns: list[str], path: Path) -> None:
    bad = next((c for c in columns if any(ch in c for ch in _BAD_TEXT) or not c.strip()), None)
    if bad is not None:
        raise UserError(f"{path}: column name {bad[:40]!r} is empty or holds a tab or line break; rename it")
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise UserError(f"{path}: column {c[:40]!r} appears twice; give every column its own name")
        seen.add(c)


def _meta_lines(path: Path) -> int:
    """Leading `##` lines (a vepcli TSV output's header) are skipped, so an output can be scored again."""
    n = 0
    with reading(path), open_binary(path) as fh:  # decompressed when gzip: a .tsv.gz output has them too
        for raw in fh:
            if not raw.startswith(b"##"):
                break
            n += 1
    return n


def _load_table(path: Path) -> tuple[Any, dict[str, str], int]:
    """(DataFrame, column roles, line number of the first row)."""
    import pandas as pd

    sep = table_sep(path)
    try:
        if sep is None:
            import pyarrow as pa

            try:
                df = pd.read_parquet(path)
            except (pa.ArrowException, OSError, ValueError, TypeError) as err:
                raise UserError(f"{path} is not a readable parquet file ({' '.join(str(err).split())[:200]})") from None
            df.columns = [str(c) for c in df.columns]
            _check_names(list(df.columns), path)
            return df, _map_columns(list(df.columns), path), 1
        check_compressed(path)
        skip = _meta_lines(path)
        encoding = "utf-8-sig" if first_bytes(path) == UTF8_BOM else "utf-8"
        with reading(path):
            header = pd.read_csv(path, sep=sep, nrows=0, skiprows=skip, encoding=encoding).columns.tolist()
            header = [str(c) for c in header]
            _check_names(header, path)
            roles = _map_columns(header, path)
            as_text = {roles[r]: str for r in ("chrom", "ref", "alt", "id") if r in roles}
            df = pd.read_csv(path, sep=sep, dtype=as_text, skiprows=skip, encoding=encoding)
    except UserError:
        raise
    except READ_ERRORS as err:
        raise UserError(truncated_message(path, err)) from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise UserError(f"cannot read table {path}: {' '.join(str(err).split())[:300]}") from None
    df.columns = [str(c) for c in df.columns]
    return df, roles, 2 + skip


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_pos(value: Any, path: Path, line: int) -> int:
    pos: int | None = None
    if isinstance(value, str):
        text = value.strip()
        pos = int(text) if text.isascii() and text.isdigit() else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            pos = int(value) if float(value).is_integer() and value >= 0 else None
        except (OverflowError, ValueError):
            pos = None
    if pos is None:
        raise UserError(f"{path}, line {line}: position {str(value)[:30]!r} is not a whole number")
    if pos > MAX_POS:
        raise UserError(f"{path}, line {line}: position {str(pos)[:30]} is past {MAX_POS:,}, beyond any genome")
    return pos


def _text(value: Any, default: str, path: Path, line: int, what: str) -> str:
    if _is_missing(value):
        return default
    text = str(value).strip()
    if any(ch in text for ch in _BAD_TEXT):
        raise UserError(f"{path}, line {line}: {what} holds a tab, line break or NUL character")
    return text


def plain_value(value: Any) -> Any:
    """A carried cell as a JSON-able scalar: numpy scalars -> Python, NaN -> None, lists and other
    objects (parquet list or struct columns, timestamps, bytes) -> text."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _table_variants(
    path: Path, df: Any, roles: dict[str, str], first: int, wanted: RegionSet | None
) -> Iterator[Variant]:
    counter = itertools.count()
    extra_names = [c for c in df.columns if c not in roles.values()]
    # names no output column has stay as they are; the others become input_<name>, clear of those
    reserved = reserved_columns()
    taken = {n.lower() for n in extra_names if n.lower() not in reserved}
    out_names = []
    for name in extra_names:
        out_names.append(name if name.lower() in taken else carried_name(name, taken))
        taken.add(out_names[-1].lower())
    cols = [df[roles[r]].tolist() if r in roles else [None] * len(df) for r in ("chrom", "pos", "ref", "alt", "id")]
    extras = [df[c].tolist() for c in extra_names]
    for i, (chrom, pos, ref, alt, vid, *rest) in enumerate(zip(*cols, *extras, strict=True)):
        line = first + i
        chrom = _text(chrom, "", path, line, "chromosome")
        if not chrom or any(c.isspace() for c in chrom):
            raise UserError(f"{path}, line {line}: chromosome {chrom!r} is empty or holds a space")
        pos, ref = _as_pos(pos, path, line), _text(ref, "", path, line, "ref")
        if wanted is not None and not wanted.overlaps(chrom, pos - 1, pos - 1 + len(ref)):
            continue
        alts = _text(alt, ".", path, line, "alt").split(",")
        extra = {name: plain_value(value) for name, value in zip(out_names, rest, strict=True)}
        vid = _text(vid, ".", path, line, "id") or "."
        yield from make_variants(chrom, pos, vid, ref, alts, line, extra, counter)


def read_table(path: str | os.PathLike[str], regions: str | None = None) -> Iterator[Variant]:
    """Variants of a TSV/CSV (optionally .gz) or parquet table with chrom, pos (1-based), ref, alt
    and optionally id columns (or the Long Range Benchmark's chromosome/position). Other columns are
    carried in `extra` (renamed `input_<name>` where an output column has the name). A comma-separated
    alt gives one Variant per allele."""
    p = Path(path)
    df, roles, first = _load_table(p)
    wanted = RegionSet(parse_regions(regions)) if regions else None
    return _guard(p, _table_variants(p, df, roles, first, wanted))


def _guard(path: Path, variants: Iterator) -> Iterator:
    try:
        yield from variants
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(f"{path}: cannot read a row ({' '.join(str(err).split())[:200]})") from None
