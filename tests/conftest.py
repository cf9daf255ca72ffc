"""Shared pytest fixtures."""

import os
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


def pytest_configure(config) -> None:
    """Under `pytest -n` (the Makefile's test command) each worker process runs one torch thread and lets
    idle OpenMP threads sleep, so that workers share the cores instead of waiting on each other's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        torch.set_num_threads(1)


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


@dataclass(frozen=True)
class TrainedHybrid:
    run: Path  # the `vepcli pretrain -o` folder: metrics.csv, checkpoints/, model/
    model: Path  # run / "model": config.json, model.safetensors, training.json
    args: tuple[str, ...]  # the command's arguments after `vepcli`


HYBRID_VAL_REGION = "22:80001-90000"  # 10 kb of the slice with no N, held out


@pytest.fixture(scope="session")
def trained_hybrid(tmp_path_factory) -> TrainedHybrid:
    """A tiny hybrid Mamba-2/attention model (2 layers, the second attention, a gated MLP) pretrained by
    `vepcli pretrain --arch hybrid` on the chr22 slice for 40 steps (a few seconds of one core)."""
    from click.testing import CliRunner

    from vepcli.cli import cli

    run = tmp_path_factory.mktemp("hybrid") / "run"
    args = (
        "pretrain", "--arch", "hybrid", "--fasta", str(DATA_DIR / "chr22_slice.fa.gz"),
        "--val-region", HYBRID_VAL_REGION, "--d-model", "32", "--n-layer", "2", "--headdim", "16",
        "--attn-heads", "2", "--d-intermediate", "32", "--seq-len", "128", "--batch-size", "8", "--steps", "40",
        "--lr", "8e-3", "--val-every", "20", "--val-windows", "16", "--checkpoint-every", "20", "--log-every", "1",
        "-q", "-o", str(run),
    )  # fmt: skip
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return TrainedHybrid(run, run / "model", args)


@pytest.fixture(scope="session")
def labelled_snvs(tmp_path_factory) -> Path:
    """48 labelled SNVs on the real chr22 slice (tests/data/make_probe_set.py), as a TSV for the commands."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_probe_set", DATA_DIR / "make_probe_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path_factory.mktemp("labelled") / "snvs.tsv"
    module.build(DATA_DIR / "chr22_slice.fa", n=48, seed=0, guard=512, margin=64).to_csv(path, sep="\t", index=False)
    return path
