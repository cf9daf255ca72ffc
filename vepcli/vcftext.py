"""Text VCFs (plain, gzip, bgzip), parsed in Python and never by htslib (see vepcli/vcfio.py): the record
type, the line parser, the validating reader (`TextVCF`, every line checked before any record is returned),
the header checks and the typed INFO values of `vepcli finetune` labels. Rules: docs/input-rules.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vepcli.errors import UserError
from vepcli.integrity import UTF8_BOM, open_binary, reading
from vepcli.variants import Variant, make_variants

# The largest position accepted anywhere: past any real contig, and what a CSI index still holds.
MAX_POS = 2**35 - 1
FIXED_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")


@dataclass(slots=True)
class Record:
    chrom: str
    pos: int
    id: str
    ref: str
    alts: list[str]
    end: int  # 1-based, inclusive: INFO/END when given (and not before POS), else POS + len(REF) - 1


# ---------------------------------------------------------------- text lines


def _decode(col: bytes, name: str) -> str:
    try:
        return col.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text") from None


def _info_end(info: bytes) -> int | None:
    for item in info.split(b";"):
        if item.startswith(b"END="):
            value = item[4:]
            return int(value) if value.isdigit() and len(value) < 19 else None
    return None


def parse_line(raw: bytes) -> Record:
    """A VCF data line, or ValueError saying what is wrong with it."""
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        raise ValueError("empty line (delete it)")
    if b"\x00" in line:
        raise ValueError("the line holds a NUL byte (is it a text file?)")
    cols = line.split(b"\t", 8)
    if len(cols) < 8:
        hint = "; columns must be separated by tabs" if b" " in line else ""
        raise ValueError(
            f"{len(cols)} column(s), a VCF record needs at least 8 (CHROM POS ID REF ALT QUAL FILTER INFO){hint}"
        )
    chrom, pos, vid, ref, alt = (_decode(c, n) for c, n in zip(cols[:5], FIXED_COLUMNS, strict=False))
    if not chrom or not chrom.isprintable() or any(c.isspace() for c in chrom):
        raise ValueError(f"bad CHROM {chrom[:50]!r}")
    if not (pos.isascii() and pos.isdigit()):
        raise ValueError(f"POS {pos[:30]!r} is not a whole number")
    position = int(pos)
    if position > MAX_POS:
        raise ValueError(f"POS {pos[:30]} is past {MAX_POS:,}, beyond any genome")
    if not ref:
        raise ValueError("REF is empty")
    if not alt:
        raise ValueError("ALT is empty")
    end = position + len(ref) - 1
    info_end = _info_end(cols[7])
    if info_end is not None and position <= info_end <= MAX_POS:
        end = info_end
    return Record(chrom, position, vid or ".", ref, alt.split(","), end)


def record_variants(rec: Record, line: int, counter: Iterator[int]) -> Iterator[Variant]:
    return make_variants(rec.chrom, rec.pos, rec.id, rec.ref, rec.alts, line, {}, counter)


def _header_problem(lineno: int, raw: bytes, seen_format: bool) -> str | None:
    if lineno == 1 and raw.startswith(UTF8_BOM):
        return (
            "the file starts with a UTF-8 byte-order mark (BOM), which VCF does not allow; save it as UTF-8 without BOM"
        )
    if raw.startswith(b"#CHROM") or raw.startswith(b"#chrom"):
        if not seen_format:
            return (
                "no ##fileformat line before the #CHROM line; a VCF starts with one, e.g. "
                "##fileformat=VCFv4.2 (add it as the first line)"
            )
        names = raw.rstrip(b"\r\n")[1:].split(b"\t")
        if [n.upper() for n in names[:8]] != [n.encode() for n in FIXED_COLUMNS]:
            hint = " (tab-separated)" if b" " in raw else ""
            return "the #CHROM line must name the columns CHROM POS ID REF ALT QUAL FILTER INFO" + hint
    return None


class TextVCF:
    """A text VCF (plain, gzip or bgzip), validated line by line before any record is returned."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n_header = self._scan()

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        with reading(self.path), open_binary(self.path) as fh:
            yield from enumerate(fh, 1)

    def _scan(self) -> int:
        n_header, has_columns, in_body, seen_format = 0, False, False, False
        for lineno, raw in self._lines():
            if raw.startswith(b"#") or (lineno == 1 and raw.startswith(UTF8_BOM)):
                if in_body:
                    raise UserError(f"{self.path}, line {lineno}: header line after the first record")
                if has_columns:
                    raise UserError(
                        f"{self.path}, line {lineno}: a line starting with '#' after the #CHROM line; "
                        "only records may follow it (and a CHROM cannot start with '#')"
                    )
                problem = _header_problem(lineno, raw, seen_format)
                if problem:
                    raise UserError(f"{self.path}, line {lineno}: {problem}")
                seen_format = seen_format or (lineno == 1 and raw.startswith(b"##fileformat=VCF"))
                n_header += 1
                has_columns = has_columns or raw.upper().startswith(b"#CHROM")
                continue
            if not has_columns:
                raise UserError(f"{self.path}, line {lineno}: record before the #CHROM header line (is it a VCF?)")
            in_body = True
            try:
                parse_line(raw)
            except ValueError as err:
                raise UserError(f"{self.path}, line {lineno}: malformed VCF record: {err}") from None
        if not has_columns:
            raise UserError(f"{self.path}: no #CHROM header line; is it a VCF file?")
        return n_header

    def records(self) -> Iterator[tuple[int, Record]]:
        for lineno, raw in self._lines():
            if lineno > self.n_header:
                yield lineno, parse_line(raw)

    def info_rows(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The INFO values `names` of every record, in file order (None where a record lacks one)."""
        names = list(names)
        types: dict[str, tuple[str, str]] = {}
        rows = []
        for lineno, raw in self._lines():
            if lineno <= self.n_header:
                m = _INFO_HEADER.match(raw.decode("utf-8", errors="replace"))
                if m:
                    fields = dict(re.findall(r"(\w+)=([^,>]*)", m[1]))
                    types.setdefault(fields.get("ID", ""), (fields.get("Number", "."), fields.get("Type", "String")))
                continue
            info = raw.rstrip(b"\r\n").split(b"\t", 8)[7]
            rows.append({n: None for n in names} | parse_info(info, names, types))
        return rows


_INFO_HEADER = re.compile(r"^##INFO=<(.*)>\s*$")


def parse_info(info: bytes, names: Iterable[str], types: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The INFO fields `names` of one record, typed as the header declares them (as cyvcf2 gives them:
    Integer -> int, Float -> float, Flag -> True, several values -> a tuple, '.' -> None); a value that
    does not fit its declared type, or an undeclared field, stays text."""
    wanted = set(names)
    out: dict[str, Any] = {}
    if info in (b"", b"."):
        return out
    for item in info.split(b";"):
        key, eq, value = item.partition(b"=")
        name = key.decode("utf-8", errors="replace")
        if name not in wanted or name in out:
            continue
        kind = types.get(name, (".", "String"))[1]
        if not eq or kind == "Flag":
            out[name] = True
            continue
        values = [_typed(v, kind) for v in value.decode("utf-8", errors="replace").split(",")]
        out[name] = values[0] if len(values) == 1 else tuple(values)
    return out


def _typed(text: str, kind: str) -> Any:
    if text in ("", "."):
        return None
    try:
        return int(text) if kind == "Integer" else float(text) if kind == "Float" else text
    except ValueError:
        return text


def locate_line(path: Path, raw: bytes) -> int:
    """1-based number of the first line equal to raw (only called to word an error)."""
    want = raw.rstrip(b"\r\n")
    with reading(path), open_binary(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.rstrip(b"\r\n") == want:
                return lineno
    return 0


def check_text_header(path: Path) -> None:
    """The header checks of TextVCF without a scan of the body (index queries check what they return)."""
    with reading(path), open_binary(path) as fh:
        seen_format = False
        for lineno, raw in enumerate(fh, 1):
            if not raw.startswith(b"#") and not (lineno == 1 and raw.startswith(UTF8_BOM)):
                raise UserError(f"{path}, line {lineno}: record before the #CHROM header line (is it a VCF?)")
            problem = _header_problem(lineno, raw, seen_format)
            if problem:
                raise UserError(f"{path}, line {lineno}: {problem}")
            seen_format = seen_format or (lineno == 1 and raw.startswith(b"##fileformat=VCF"))
            if raw.upper().startswith(b"#CHROM"):
                return
    raise UserError(f"{path}: no #CHROM header line; is it a VCF file?")
