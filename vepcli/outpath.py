"""Output path safety: refuse an `-o` that would destroy an input or cannot be written, before any work.

Every output is written under a temporary name beside it and renamed into place (atomic.atomic_file),
so `-o` must name a regular file (or nothing yet) in a writable folder, and never an input or an
input's index. The rules are in docs/outputs.md ("Where outputs may go").
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from vepcli.errors import UserError

INDEX_SUFFIXES = (".tbi", ".csi", ".fai", ".gzi")
OUTPUT_SIDECARS = (".tbi", ".csi")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _input_files(inputs: Iterable[str | os.PathLike[str] | None]) -> list[Path]:
    """The inputs and the index files beside them (a model folder gives its files)."""
    out: list[Path] = []
    for item in inputs:
        if not item:
            continue
        p = Path(item)
        if p.is_dir():
            out.extend(f for f in p.iterdir() if f.is_file())
            continue
        out.append(p)
        out.extend(Path(f"{p}{s}") for s in INDEX_SUFFIXES if Path(f"{p}{s}").exists())
    return out


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_regular_or_absent(p: Path, option: str, text: str) -> None:
    """An output (or its index) is renamed over whatever is at `p`: only a regular file may be there."""
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise UserError(f"{option} {p}: cannot use it ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{option} {text}: {p} is {_kind(mode)}; an output is written under a temporary name "
            "and renamed over it, so give the name of a regular file"
        )


def check_output_path(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    option: str = "-o",
    sidecars: Iterable[str] = OUTPUT_SIDECARS,
) -> Path:
    """Refuse an output that is an input (or an input's index), a folder, a device or another
    non-regular file, or that lies in a missing or read-only folder. Returns it as a Path."""
    text = os.fspath(output)
    if text in ("", "-"):
        raise UserError(f"{option} {text or repr(text)}: give a file name (writing to stdout is not supported)")
    out = Path(text)
    if out.name in ("", ".", ".."):
        raise UserError(f"{option} {text} names a folder; give a file name")
    for p in [out, *(Path(f"{out}{s}") for s in sidecars)]:
        _check_regular_or_absent(p, option, text)
    for p in _input_files(inputs):
        if p.exists() and (_same(out, p) or any(_same(Path(f"{out}{s}"), p) for s in sidecars)):
            raise UserError(f"{option} {text} is also one of the inputs ({p}); write the output to a new file")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(f"the output folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".check", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write in the output folder {folder} ({err.strerror}); choose another -o") from None
    return out


def check_partial_path(partial: Path) -> None:
    """The resume folder beside an output must be a folder or absent."""
    if partial.exists() and not partial.is_dir():
        raise UserError(f"{partial} is in the way: vepcli keeps its resume folder there; move that file away")


def check_output_folder(output: str | os.PathLike[str], option: str = "-o") -> Path:
    """A run folder (pretrain, finetune): it may exist (a folder) or not (it is created, with its parents),
    but never be a file, a device or another non-folder, nor lie under one or in a folder vepcli cannot
    write in. Returns it as a Path."""
    text = os.fspath(output)
    if text in ("", "-"):
        raise UserError(f"{option} {text or repr(text)}: give a folder name")
    out = Path(text)
    here = out
    while True:
        try:
            mode = os.stat(here).st_mode
        except (FileNotFoundError, NotADirectoryError):  # not there, or under a file: look further up
            if here.parent == here:
                return out
            here = here.parent
            continue
        except OSError as err:
            raise UserError(f"{option} {text}: cannot use {here} ({err.strerror})") from None
        if not stat.S_ISDIR(mode):
            kind = "a file" if stat.S_ISREG(mode) else _kind(mode)
            where = "" if here == out else f": {here} is in its path and"
            raise UserError(f"{option} {text}{where} is {kind}, not a folder; give a folder (it is created if missing)")
        if not os.access(here, os.W_OK | os.X_OK):
            raise UserError(f"cannot write in {here}; choose another {option}")
        return out
