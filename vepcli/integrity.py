"""Input integrity checks shared by every reader: compression, truncation, byte-order marks.

A file cut short must never read as a complete one, and no decompression error may reach the user as
a traceback (or as click's bare "Aborted!", which is what an EOFError turns into). The rules are in
docs/input-rules.md, section "Damaged and truncated files".
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from vepcli.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# the empty block every BGZF writer (bgzip, htslib, pysam) ends a file with (SAM spec, section 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
# what a damaged or cut-short compressed stream raises while it is read
READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def head_bytes(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def is_gzip(path: Path) -> bool:
    return head_bytes(path, 2) == GZIP_MAGIC


def is_bgzf(path: Path) -> bool:
    """gzip with the FEXTRA flag and a `BC` subfield (SAM spec, section 4.1)."""
    head = head_bytes(path)
    return len(head) >= 14 and head[:2] == GZIP_MAGIC and bool(head[3] & 4) and head[12:14] == b"BC"


def check_bgzf_eof(path: Path) -> None:
    """A BGZF file must end with the empty EOF block; without it the file was cut short (possibly exactly
    at a block boundary, where nothing else would notice) or not closed by its writer."""
    with open(path, "rb") as fh:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - len(BGZF_EOF)))
        tail = fh.read()
    if tail != BGZF_EOF:
        raise UserError(
            f"{path} is truncated: its BGZF end-of-file marker is missing (the file was cut short or "
            "its writer did not finish); copy or write it again"
        )


def truncated_message(path: Path, err: BaseException) -> str:
    """One line for a compressed stream that fails while it is read."""
    if isinstance(err, EOFError):
        return f"{path} is truncated: the compressed data ends before its end marker; copy or write it again"
    detail = " ".join(str(err).split()) or type(err).__name__
    return f"{path} is damaged: cannot decompress it ({detail}); copy or write it again"


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn decompression and decoding failures inside the block into a one-line UserError on `path`."""
    try:
        yield
    except READ_ERRORS as err:
        raise UserError(truncated_message(path, err)) from None
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at offset "
            f"{err.start} of a line); save it as UTF-8"
        ) from None


def check_compressed(path: Path) -> None:
    """Refuse a BGZF file without its EOF marker; plain gzip is checked while it is read (`reading`)."""
    if is_bgzf(path):
        check_bgzf_eof(path)


def open_binary(path: Path) -> IO[bytes]:
    """The decompressed bytes of a plain or gzip/bgzip file (by its first bytes), after the EOF check."""
    check_compressed(path)
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # the caller closes it


def first_bytes(path: Path, n: int = 3) -> bytes:
    """The first n decompressed bytes (for BOM and format checks)."""
    with reading(path), open_binary(path) as fh:
        return fh.read(n)


def refuse_bom(path: Path, what: str) -> None:
    if first_bytes(path) == UTF8_BOM:
        raise UserError(
            f"{path} starts with a UTF-8 byte-order mark (BOM), which {what} does not allow; save it "
            "as UTF-8 without BOM (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`)"
        )
