"""A score added as a plug-in, from this test module alone, reaches every output with its header lines.

The plug-in (`ref_gc_delta`, defined below and nowhere else) is registered through the public registry;
`vepcli score` then computes it from what it declares it needs and writes it to TSV, parquet and VCF,
typed and described as it declares. It also shows the engine is asked only for what the requested scores
need: `ref_gc_delta` needs the pooled vectors, and a run of it alone never makes a masked pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from vepcli import scoring
from vepcli.cli import cli
from vepcli.infer import Engine
from vepcli.output import read_scores

ROOT = Path(__file__).resolve().parent
MODEL = ROOT / "fixtures" / "caduceus-hf" / "caduceus-ps-tiny"
FASTA = ROOT / "data" / "chr22_slice.fa"
NAME = "ref_gc_delta"
DESCRIPTION = "Test-only: alt minus ref count of G and C bases in the allele, and the pooled vectors' sum"


def _gc_delta(x: scoring.ScoreInputs) -> float | scoring.Empty:
    """A value anyone can recompute: GC(alt) - GC(ref) (an integer), plus 0 when the vectors exist."""
    if len(x.ref) != len(x.alt):
        return scoring.Empty(f"{NAME} is for substitutions only")
    assert x.ref_pooled is not None and x.alt_pooled is not None  # it asked for them
    gc = sum(b in "GC" for b in x.alt) - sum(b in "GC" for b in x.ref)
    return float(gc)


@pytest.fixture
def plugin():
    score = scoring.register(
        scoring.Score(NAME, DESCRIPTION, frozenset({scoring.POOLED}), _gc_delta, default=False, order=60)
    )
    yield score
    scoring.unregister(NAME)


@pytest.fixture
def variants(tmp_path) -> Path:
    seq = "".join(FASTA.read_text().split("\n", 1)[1].split())
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=22>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos in (300, 420, 555):
        ref = seq[pos - 1].upper()
        alts = [b for b in "ACGT" if b != ref]
        lines.append(f"22\t{pos}\tsnv{pos}\t{ref}\t{','.join(alts)}\t.\t.\t.")
    lines.append(f"22\t700\tdel700\t{seq[699:702].upper()}\t{seq[699].upper()}\t.\t.\t.")  # a deletion: empty
    path = tmp_path / "in.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _score(variants: Path, out: Path, scores: str) -> None:
    args = ["score", str(variants), "-f", str(FASTA), "-m", str(MODEL), "--window", "64", "--scores", scores]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "-q", "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def _expected(table) -> list[float | None]:
    return [
        float(sum(b in "GC" for b in a) - sum(b in "GC" for b in r)) if len(r) == len(a) else None
        for r, a in zip(table["ref"], table["alt"], strict=True)
    ]


def test_a_registered_score_reaches_tsv_parquet_and_vcf(plugin, variants, tmp_path):
    outs = {fmt: tmp_path / f"out.{fmt}" for fmt in ("tsv", "parquet", "vcf")}
    for out in outs.values():
        _score(variants, out, f"llr,{NAME}")

    tsv = read_scores(outs["tsv"])
    assert list(tsv.columns[8:10]) == ["llr", NAME] and str(tsv[NAME].dtype) == "float64"
    got = [None if v != v else v for v in tsv[NAME]]
    assert got == _expected(tsv) and got.count(None) == 1
    deletion = tsv[tsv["id"] == "del700"].iloc[0]  # the first empty score's reason is the row's
    assert deletion["status"] == "ok" and deletion["reason"].startswith("llr is defined for SNVs and MNVs only")
    tsv_header = [line for line in outs["tsv"].read_text().splitlines() if line.startswith("##")]
    assert f"##vepcli_scores=llr,{NAME}" in tsv_header

    table = pq.read_table(outs["parquet"])
    assert str(table.schema.field(NAME).type) == "double"
    meta = json.loads(table.schema.metadata[b"vepcli"])
    assert f"##vepcli_scores=llr,{NAME}" in meta
    assert read_scores(outs["parquet"])[NAME].tolist()[:9] == got[:9]

    vcf = outs["vcf"].read_text().splitlines()
    info = f'##INFO=<ID=VEPCLI_{NAME.upper()},Number=1,Type=Float,Description="{DESCRIPTION}">'
    assert info in vcf and f"##vepcli_scores=llr,{NAME}" in vcf
    records = [line.split("\t") for line in vcf if not line.startswith("#")]
    values = {r[2] + r[4]: r[7] for r in records}
    for _, row in tsv.iterrows():
        field = f"VEPCLI_{NAME.upper()}="
        has = any(part.startswith(field) for part in values[row["id"] + row["alt"]].split(";"))
        assert has == (row[NAME] == row[NAME])


def test_unknown_until_registered(variants, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["score", str(variants), "-f", str(FASTA), "-m", str(MODEL), "--scores", NAME, "-o", str(tmp_path / "o.tsv")],
    )
    assert result.exit_code == 1 and f"unknown score(s) {NAME}" in result.stderr


def test_the_engine_is_asked_only_for_what_the_scores_need(plugin, variants, tmp_path, monkeypatch):
    asked = []
    run = Engine.run

    def counting_run(self, requests, progress=None):
        asked.extend(requests)
        return run(self, requests, progress)

    monkeypatch.setattr(Engine, "run", counting_run)
    _score(variants, tmp_path / "pooled.tsv", NAME)
    assert asked and all(r.pool is not None and not r.mask and not r.logp_at for r in asked)
    alone = read_scores(tmp_path / "pooled.tsv")
    assert alone[alone["id"] == "del700"]["reason"].tolist() == [f"{NAME} is for substitutions only"]
    asked.clear()
    _score(variants, tmp_path / "llr.tsv", "llr")
    assert asked and all(r.pool is None and r.mask for r in asked)
