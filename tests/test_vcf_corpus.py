"""Real-world VCF styles (tests/data/vcf-corpus: GATK HaplotypeCaller 4.2, bcftools 4.3 with breakends,
VCF 4.0 with odd meta lines, multi-value INFO and gVCF blocks, freebayes 4.1 with CRLF line ends): each
scores with one row per ALT, or would be refused in one line; symbolic, breakend and `*` alleles get
their statuses. Expected counts come from a plain split of the files, not from vepcli."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_score import MODELS

from vepcli.cli import cli
from vepcli.output import read_scores
from vepcli.variants import read_variants

CORPUS = Path(__file__).resolve().parent / "data" / "vcf-corpus"
FASTA = Path(__file__).resolve().parent / "data" / "chr22_slice.fa"
FILES = sorted(CORPUS.glob("*.vcf"))


def alts_of(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            cols = line.split("\t")
            out += [(cols[2], alt) for alt in cols[4].split(",")]
    return out


def test_corpus_is_there():
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_reads_every_alt(path):
    got = list(read_variants(path))
    assert [(v.id, v.alt) for v in got] == alts_of(path)
    for v in got:
        if "[" in v.alt or "]" in v.alt or v.alt.startswith("<") or v.alt.startswith(".") and len(v.alt) > 1:
            assert v.status == "symbolic_allele", v
        elif v.alt == "*":
            assert v.status == "star_allele"
        elif v.alt == ".":
            assert v.status == "no_alt"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("output", ["out.tsv", "out.vcf.gz"])
def test_scores_every_alt(tmp_path, path, output):
    out = tmp_path / output
    result = CliRunner().invoke(
        cli,
        [
            "score",
            str(path),
            "-f",
            str(FASTA),
            "-m",
            str(MODELS["ps"]),
            "--window",
            "64",
            "-q",
            "--threads",
            "1",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stderr
    if output == "out.tsv":
        got = read_scores(out)
        assert len(got) == len(alts_of(path))
        assert (got["status"] == "ok").any()
    else:
        assert len(list(read_variants(out))) == len(alts_of(path))
