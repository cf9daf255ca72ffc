"""Atomic writes: a file or a folder is written under a temporary name beside its target and renamed into
place only when complete, so no reader (a resumed run, snakemake, a user) ever sees half of one, and a
stopped write leaves the previous version as it was.

Used for every output vepcli writes: score/embed/merge outputs and their indexes, probe files and plots,
model and checkpoint folders, caches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INDEX_SUFFIXES = (".tbi", ".csi")  # made beside a bgzipped VCF, renamed with it


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _temporary_name(path: Path) -> Path:
    """A fresh temporary file beside `path`, with the permissions a plain open() would give (umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside `path`; when the body succeeds, rename it (and the `.tbi` or `.csi`
    made beside it, if any) into place, removing an index of the other kind left from an earlier file.
    On failure nothing is left: no reader sees a half-written file, and the old output stays as it was."""
    path = Path(path)
    tmp = _temporary_name(path)
    indexes = {suffix: Path(f"{tmp}{suffix}") for suffix in INDEX_SUFFIXES}
    try:
        yield tmp
        os.replace(tmp, path)
        made = [suffix for suffix, p in indexes.items() if p.exists()]
        for suffix, p in indexes.items():
            if suffix in made:
                os.replace(p, f"{path}{suffix}")
            elif made:
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # stale: it indexes the old file
    finally:
        for leftover in (tmp, *indexes.values(), Path(str(tmp) + ".plain")):
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the body succeeds, it replaces `path` (an old
    folder there is moved aside first and removed after). On failure the temporary folder is removed and
    `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # as mkdir would make it (mkdtemp's is private to its owner)
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
