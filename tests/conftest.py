"""Shared pytest fixtures."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# ---- input data layer fixtures (variants / genome / windows) ----

DATA_DIR = Path(__file__).resolve().parent / "data"
CHR22_SLICE_OFFSET = 17_470_299  # slice position i is GRCh37 22:(CHR22_SLICE_OFFSET + i); see data/README.md
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored; see its README.md
REQUIRED = [
    DATA_DIR / name
    for name in (
        "chr22_slice.fa",
        "chr22_slice.fa.fai",
        "chr22_slice.fa.gz",
        "chr22_slice.fa.gz.fai",
        "chr22_slice.fa.gz.gzi",
        "chr22_slice.vcf",
    )
]
REQUIRED += [
    FIXTURES_DIR / f"caduceus-{arch}-tiny" / name
    for arch in ("ps", "ph")
    for name in ("config.json", "model.safetensors", "expected.safetensors")
]


def pytest_sessionstart(session) -> None:
    """The suite carries its own data: a missing file stops the run with its name, it never skips tests."""
    missing = [str(path) for path in REQUIRED if not path.is_file()]
    if missing:
        raise pytest.UsageError("test data missing (it is part of the repository): " + ", ".join(missing))


def read_fasta_plain(path: Path) -> dict[str, str]:
    """Contig name -> sequence (case kept), parsed with plain Python, independent of pysam/pyfaidx."""
    seqs: dict[str, list[str]] = {}
    name = None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        elif name is not None:
            seqs[name].append(line.strip())
    return {k: "".join(v) for k, v in seqs.items()}


@dataclass(frozen=True)
class Chr22Slice:
    fa: Path  # plain FASTA (+ .fai)
    fa_gz: Path  # bgzip FASTA (+ .fai, .gzi)
    vcf: Path  # example VCF at slice positions
    seq: str  # contig `22`, case kept, read independently of vepcli
    offset: int = CHR22_SLICE_OFFSET


@pytest.fixture(scope="session")
def chr22_slice() -> Chr22Slice:
    """The 99,500 bp real chr22 slice in tests/data (contig `22`, from position 1)."""
    fa = DATA_DIR / "chr22_slice.fa"
    return Chr22Slice(fa, DATA_DIR / "chr22_slice.fa.gz", DATA_DIR / "chr22_slice.vcf", read_fasta_plain(fa)["22"])


@pytest.fixture
def chr22_slice_copy(tmp_path, chr22_slice) -> Path:
    """A plain-FASTA copy of the slice without an index, in a writable tmp dir."""
    dest = tmp_path / "ref.fa"
    shutil.copyfile(chr22_slice.fa, dest)
    return dest
