"""Genome: FASTA access, contig aliases, N-padding, soft-masking. Checked against the FASTA read as text."""

import gzip
import os
import pickle
import shutil
from pathlib import Path

import pysam
import pytest

from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.regions import alias_key


def naive_fetch(seq: str, start0: int, end0: int) -> str:
    """Independent rule: upper-case bases, N outside the contig."""
    return "".join(seq[i].upper() if 0 <= i < len(seq) else "N" for i in range(start0, end0))


def write_fasta(path: Path, contigs: dict[str, str], width: int = 7) -> Path:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name} some description\n")
            fh.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
    return path


@pytest.fixture(params=["plain", "bgzip"])
def slice_genome(request, chr22_slice):
    path = chr22_slice.fa if request.param == "plain" else chr22_slice.fa_gz
    with Genome(path) as g:
        yield g


def test_contigs_and_length(slice_genome, chr22_slice):
    assert slice_genome.contigs == ("22",)
    assert slice_genome.length("22") == len(chr22_slice.seq) == 99_500


@pytest.mark.parametrize("start0", [0, 1, 59, 60, 61, 12_345, 27_000, 99_000])
def test_fetch_matches_text(slice_genome, chr22_slice, start0):
    assert slice_genome.fetch("22", start0, start0 + 500) == naive_fetch(chr22_slice.seq, start0, start0 + 500)


def test_soft_masking_is_removed(slice_genome, chr22_slice):
    seq = chr22_slice.seq
    lower = next(i for i, c in enumerate(seq) if c in "acgt")
    assert seq[lower : lower + 10] != seq[lower : lower + 10].upper()  # the data has soft-masking here
    got = slice_genome.fetch("22", lower, lower + 10)
    assert got == seq[lower : lower + 10].upper()
    assert got.isupper()


def test_n_run_is_kept(slice_genome, chr22_slice):
    start = chr22_slice.seq.index("N" * 1000)
    assert slice_genome.fetch("22", start - 3, start + 5) == naive_fetch(chr22_slice.seq, start - 3, start + 5)
    assert slice_genome.fetch("22", start, start + 1000) == "N" * 1000


@pytest.mark.parametrize(
    ("start0", "end0"),
    [
        (-10, 5),
        (-10, 0),
        (-10, -3),
        (99_490, 99_510),
        (99_500, 99_520),
        (99_600, 99_601),
        (-5, 99_505),
        (7, 7),
    ],
)
def test_fetch_pads_with_n_past_both_ends(slice_genome, chr22_slice, start0, end0):
    got = slice_genome.fetch("22", start0, end0)
    assert len(got) == end0 - start0
    assert got == naive_fetch(chr22_slice.seq, start0, end0)


def test_fetch_rejects_reversed_interval(slice_genome):
    with pytest.raises(ValueError):
        slice_genome.fetch("22", 10, 5)


def test_fetch_unknown_contig_is_user_error(slice_genome):
    with pytest.raises(UserError, match="chr9"):
        slice_genome.fetch("chr9", 0, 10)
    with pytest.raises(UserError, match="it has 22"):
        slice_genome.require("chr9")
    assert slice_genome.require("chr22") == "22"


def test_pickles_as_a_fresh_handle(slice_genome, chr22_slice):
    clone = pickle.loads(pickle.dumps(slice_genome))
    assert clone is not slice_genome and clone.path == slice_genome.path
    assert clone.fetch("22", 100, 200) == naive_fetch(chr22_slice.seq, 100, 200)
    clone.close()


def test_repeated_and_overlapping_fetches_stay_correct(tmp_path):
    """The last-region cache must never serve bases of another contig or place."""
    contigs = {"a": "ACGTACGTAC" * 5, "b": "ttttggggcc" * 5}
    with Genome(write_fasta(tmp_path / "two.fa", contigs)) as g:
        for contig, start, end in [
            ("a", 0, 40),
            ("a", 5, 10),
            ("b", 5, 10),
            ("a", 5, 10),
            ("b", -3, 60),
            ("b", 1, 4),
        ]:
            assert g.fetch(contig, start, end) == naive_fetch(contigs[contig], start, end)


@pytest.mark.parametrize(
    ("name", "key"),
    [("chr1", "1"), ("1", "1"), ("chrX", "X"), ("X", "X"), ("chrM", "MT"), ("MT", "MT"), ("M", "MT")]
    + [("chrMT", "MT"), ("CHR22", "22"), ("chr", "CHR"), ("GL000220.1", "GL000220.1")],
)
def test_alias_key(name, key):
    assert alias_key(name) == key


@pytest.mark.parametrize("names", [("chr1", "chrX", "chrM", "chr22"), ("1", "X", "MT", "22")], ids=["ucsc", "ensembl"])
def test_resolve_aliases_both_ways(tmp_path, names):
    seqs = ["ACGTAC", "GGGCCC", "TTTAAA", "CACACA"]
    with Genome(write_fasta(tmp_path / "g.fa", dict(zip(names, seqs, strict=True)))) as g:
        for asked, i in [("chr1", 0), ("1", 0), ("chrX", 1), ("X", 1), ("chrM", 2), ("MT", 2), ("M", 2)]:
            assert g.resolve(asked) == names[i]
            assert g.fetch(asked, 0, 6) == seqs[i]
            assert g.length(asked) == 6
        assert g.resolve("chr2") is None
        assert g.resolve("2") is None


def test_exact_name_wins_over_alias(tmp_path):
    with Genome(write_fasta(tmp_path / "g.fa", {"1": "AAAA", "chr1": "CCCC"})) as g:
        assert g.resolve("1") == "1"
        assert g.resolve("chr1") == "chr1"


def test_plain_fasta_without_index_is_indexed(chr22_slice_copy, chr22_slice):
    fai = Path(f"{chr22_slice_copy}.fai")
    assert not fai.exists()
    with Genome(chr22_slice_copy) as g:
        assert g.fetch("22", 1000, 1100) == naive_fetch(chr22_slice.seq, 1000, 1100)
    assert fai.is_file()


def test_bgzip_without_index_is_indexed(tmp_path, chr22_slice):
    dest = tmp_path / "ref.fa.gz"
    shutil.copyfile(chr22_slice.fa_gz, dest)
    with Genome(dest) as g:
        assert g.fetch("22", 50_000, 50_100) == naive_fetch(chr22_slice.seq, 50_000, 50_100)
    assert Path(f"{dest}.fai").is_file() and Path(f"{dest}.gzi").is_file()


def test_bgzip_fasta_written_by_pysam(tmp_path):
    seq = "ACGTNacgtn" * 30
    plain = write_fasta(tmp_path / "s.fa", {"chr5": seq}, width=60)
    pysam.tabix_compress(str(plain), str(tmp_path / "s.fa.gz"))
    with Genome(tmp_path / "s.fa.gz") as g:
        assert g.fetch("5", -2, 302) == naive_fetch(seq, -2, 302)


def test_plain_gzip_fasta_says_bgzip(tmp_path, chr22_slice):
    dest = tmp_path / "ref.fa.gz"
    with open(chr22_slice.fa, "rb") as src, gzip.open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    with pytest.raises(UserError, match="bgzip") as err:
        Genome(dest)
    assert "\n" not in str(err.value)


def test_missing_fasta(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Genome(tmp_path / "nope.fa")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unindexed_fasta_in_read_only_folder_says_samtools_faidx(tmp_path, chr22_slice):
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(chr22_slice.fa, folder / "ref.fa")
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="samtools faidx"):
            Genome(folder / "ref.fa")
    finally:
        folder.chmod(0o755)
