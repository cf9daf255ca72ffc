"""Reference genome access (design step 2): one open FASTA, contig aliases, N-padded upper-case fetches.

The rules are written out in docs/input-rules.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pysam

from vepcli.errors import UserError
from vepcli.integrity import UTF8_BOM, check_bgzf_eof, is_bgzf, is_gzip
from vepcli.regions import alias_key


def _index_hint(path: Path) -> str:
    return f"`samtools faidx {path}` (or run once where its folder is writable)"


def _check_fasta_file(path: Path) -> list[Path]:
    """Fail early with a message saying what to do; return the index files that must exist."""
    if not path.is_file():
        raise UserError(f"FASTA file not found: {path}")
    if is_gzip(path) and not is_bgzf(path):
        raise UserError(
            f"{path} is gzip-compressed but not with bgzip, so it cannot be indexed; recompress it: "
            f"`zcat {path} | bgzip > ref.fa.gz && samtools faidx ref.fa.gz` and use ref.fa.gz"
        )
    if is_bgzf(path):
        check_bgzf_eof(path)
    with open(path, "rb") as fh:
        bom = fh.read(3) == UTF8_BOM
    if bom:
        raise UserError(
            f"{path} starts with a UTF-8 byte-order mark (BOM), which FASTA does not allow; save it without BOM"
        )
    _check_fasta_start(path)
    needed = [Path(f"{path}.fai")]
    if is_bgzf(path):
        needed.append(Path(f"{path}.gzi"))
    missing = [p for p in needed if not p.is_file()]
    if missing and not is_gzip(path):
        _check_unique_names(path)
    if missing and not os.access(path.parent, os.W_OK):
        raise UserError(
            f"{path} has no index ({missing[0].name}) and its folder is not writable; run {_index_hint(path)}"
        )
    return missing


def _check_fasta_start(path: Path) -> None:
    """An empty file, or one whose first line is not a `>name` line, is not a FASTA: say so in one line
    (htslib's index builder would report a misleading open error)."""
    import gzip

    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4096).lstrip(b"\r\n")
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read FASTA {path} ({err}); check that it is complete") from None
    if not head:
        raise UserError(f"FASTA {path} is empty; pass a reference genome (a FASTA file with >name lines)")
    if not head.startswith(b">"):
        raise UserError(
            f"{path} is not a FASTA file: its first line does not start with '>' (a sequence name); "
            "pass a reference genome in FASTA format"
        )


def _check_unique_names(path: Path) -> None:
    """Refuse a plain FASTA that names a sequence twice (htslib would index the first and drop the second
    silently). Read once, when its index is built; bgzip files are checked by `samtools faidx` users."""
    names: set[bytes] = set()
    tail = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            text = tail + block
            start = 0
            while (i := text.find(b"\n>", start)) != -1:
                end = text.find(b"\n", i + 1)
                if end == -1:  # the name line continues in the next block
                    break
                name = text[i + 2 : end].split()[0] if text[i + 2 : end].strip() else b""
                if name in names:
                    raise UserError(
                        f"{path} names the sequence {name.decode(errors='replace')!r} twice; "
                        "each sequence name must be unique"
                    )
                names.add(name)
                start = end
            tail = text[start:] if start else text[-(1 << 16) :]


class Genome:
    """An open FASTA (plain or bgzip, through pysam) with contig-name aliasing and N-padded fetches.

    Opened once and kept open, because a window of ~131 kb is fetched per variant. The last fetched
    region is cached, so the ref and alt windows of one variant (and neighbouring variants sharing
    a window) cost one read. Not thread-safe, and a file handle inherited through fork shares its
    offset with the parent: give each worker process its own Genome (it pickles as its path).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        missing = _check_fasta_file(self.path)
        try:
            self._fa = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as exc:
            what = "build the index of" if missing else "open"
            raise UserError(f"cannot {what} FASTA {self.path}: {exc}; run {_index_hint(self.path)}") from exc
        self._lengths: dict[str, int] = dict(zip(self._fa.references, self._fa.lengths, strict=True))
        self._by_key: dict[str, str] = {}
        for name in self._fa.references:
            self._by_key.setdefault(alias_key(name), name)
        self._resolved: dict[str, str | None] = {}
        self._cache: tuple[str, int, int, str] = ("", 0, 0, "")

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self._lengths)} contigs)"

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fa.close()

    @property
    def contigs(self) -> tuple[str, ...]:
        """Contig names in FASTA order."""
        return tuple(self._lengths)

    def contigs_sha256(self) -> str:
        """sha256 of the FASTA's contig names and lengths in order (the first two columns of its .fai): the
        reference's identity in output headers (##vepcli_fasta_sha256). Not of the bases: a digest of a
        3 GB sequence would cost a minute per run; names and lengths tell assemblies and builds apart."""
        import hashlib

        text = "".join(f"{name}\t{length}\n" for name, length in self._lengths.items())
        return hashlib.sha256(text.encode()).hexdigest()

    def resolve(self, name: str) -> str | None:
        """The FASTA's name for contig `name` (exact match first, then by alias_key), or None."""
        if name in self._resolved:
            return self._resolved[name]
        found = name if name in self._lengths else self._by_key.get(alias_key(name))
        self._resolved[name] = found
        return found

    def __reduce__(self):
        """Pickle as the path, so a worker process (spawn) opens its own file handle."""
        return (Genome, (self.path,))

    def require(self, contig: str) -> str:
        """Like resolve, but a UserError naming some of the FASTA's contigs when there is no match."""
        found = self.resolve(contig)
        if found is None:
            shown = ", ".join(self.contigs[:5]) + (", ..." if len(self._lengths) > 5 else "")
            raise UserError(f"contig {contig!r} is not in FASTA {self.path} (it has {shown})")
        return found

    def length(self, contig: str) -> int:
        """Length of a contig (aliases accepted)."""
        return self._lengths[self.require(contig)]

    def fetch(self, contig: str, start0: int, end0: int) -> str:
        """Upper-case bases [start0, end0) (0-based, half-open) of a contig, N-padded past both ends.

        start0 may be negative and end0 may pass the contig's end; the result has end0 - start0 bases.
        """
        if end0 < start0:
            raise ValueError(f"fetch: end {end0} is before start {start0}")
        name = self.require(contig)
        n = self._lengths[name]
        lo, hi = max(start0, 0), min(end0, n)
        core = self._core(name, lo, hi) if lo < hi else ""
        left = max(0, min(end0, 0) - start0)
        right = max(0, end0 - max(start0, n))
        return "N" * left + core + "N" * right

    def _core(self, name: str, lo: int, hi: int) -> str:
        """Bases inside the contig, from the last-region cache when it covers them."""
        c_name, c_lo, c_hi, c_seq = self._cache
        if c_name == name and c_lo <= lo and hi <= c_hi:
            return c_seq[lo - c_lo : hi - c_lo]
        try:
            seq = self._fa.fetch(name, lo, hi).upper()
        except (OSError, ValueError) as err:
            raise UserError(
                f"cannot read {name}:{lo + 1}-{hi} from FASTA {self.path} ({' '.join(str(err).split())}); "
                f"the file is damaged or its index is stale: rebuild it with {_index_hint(self.path)}"
            ) from None
        if len(seq) != hi - lo:
            raise UserError(
                f"FASTA {self.path} gives {len(seq)} bases for {name}:{lo + 1}-{hi}, not {hi - lo}; "
                f"its index is stale or the file was cut short: rebuild the index with "
                f"{_index_hint(self.path)}"
            )
        self._cache = (name, lo, hi, seq)
        return seq
