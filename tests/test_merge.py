"""`vepcli merge`: shard and per-region outputs joined into exactly what one unsharded run writes.

The parts are scored in-process with the tiny PS fixture model (window 512; llr only, and embeddings
for parquet, to keep it fast) on a two-contig FASTA cut from the chr22 slice, with records that share
a position on consecutive lines (so they land in different shards), a multi-allelic record, indels, an
input alias (`chr22` for FASTA `22`) used by some shards only, and a contig missing from the FASTA.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest

from vepcli.errors import UserError
from vepcli.merge import merge_files
from vepcli.output import read_scores

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "caduceus-hf" / "caduceus-ps-tiny"
SLICE = ROOT / "tests" / "data" / "chr22_slice.fa"
N_SHARDS = 3


def _slice() -> str:
    return "".join(SLICE.read_text().split("\n", 1)[1].split())


def make_inputs(folder: Path, n_per_contig: int = 10, seed: int = 7) -> tuple[Path, Path]:
    """A FASTA with contigs 22 and X (real sequence from the slice) and a VCF over them."""
    seq = _slice()
    contigs = {"22": seq[:12000], "X": seq[60000:75000]}
    fasta = folder / "two.fa"
    fasta.write_text(
        "".join(
            f">{name}\n" + "\n".join(s[i : i + 60] for i in range(0, len(s), 60)) + "\n" for name, s in contigs.items()
        )
    )
    pysam.faidx(str(fasta))
    rng = random.Random(seed)
    lines = []
    for name, s in contigs.items():
        positions = sorted(rng.sample(range(600, len(s) - 600), n_per_contig))
        for k, pos in enumerate(positions):
            ref = s[pos - 1].upper()
            if ref == "N":
                continue
            alts = [b for b in "ACGT" if b != ref]
            if k == 2:  # the same site on three consecutive lines: three shards
                lines += [(name, pos, f"{name}_{k}_{a}", ref, a) for a in alts]
            elif k == 4:
                lines.append((name, pos, f"{name}_{k}_multi", ref, ",".join(alts[:2])))
            elif k == 6:
                lines.append((name, pos, f"{name}_{k}_del", s[pos - 1 : pos + 2].upper(), ref))
            elif k == 7:
                lines.append((name, pos, f"{name}_{k}_ins", ref, ref + "TG"))
            elif k == 8 and name == "22":  # input names that are not the FASTA's: an alias (some shards only)
                alias_alts = [b for b in "ACGT" if b != ref][:2]
                lines += [("chr22", pos, f"alias_{a}", ref, a) for a in alias_alts]
            else:
                lines.append((name, pos, f"{name}_{k}", ref, rng.choice(alts)))
    lines.append(("chrUn_x", 10, "missing", "A", "G"))  # and a contig missing from the FASTA
    vcf = folder / "vars.vcf"
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={n},length={len(s)}>" for n, s in contigs.items()),
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    vcf.write_text("\n".join(header + ["\t".join(map(str, r)) + "\t.\tPASS\t." for r in lines]) + "\n")
    return fasta, vcf


def _score(vcf: Path, fasta: Path, out: Path, shard=None, regions=None) -> Path:
    from vepcli.pipeline import ScoreSettings, score_file

    embed = out.suffix == ".parquet"  # parquet as `vepcli embed` writes it: with vector columns
    settings = ScoreSettings(
        model=str(MODEL), window=512, shard=shard, regions=regions, scores=() if embed else ("llr",), embeddings=embed
    )
    return score_file(str(vcf), str(fasta), str(out), settings, quiet=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For each format: one unsharded output and its N shards."""
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("merge")
    fasta, vcf = make_inputs(folder)
    out = {"fasta": fasta, "vcf_in": vcf, "dir": folder}
    for ext in ("vcf", "tsv", "parquet"):
        out[ext] = _score(vcf, fasta, folder / f"whole.{ext}")
        out[f"{ext}_shards"] = [
            _score(vcf, fasta, folder / f"s{i}.{ext}", shard=(i, N_SHARDS)) for i in range(1, N_SHARDS + 1)
        ]
    return out


def _text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return f.read()


def _without(text: str, *prefixes: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(prefixes))


def _meta(path: Path) -> list[str]:
    return json.loads(pq.read_schema(path).metadata[b"vepcli"])


# ---------------------------------------------------------------- merged == unsharded


def test_fixture_has_ties_across_shards(runs):
    """The test data really has a site split over several shards, and shards differ in ##contig lines."""
    sites = [
        {(r.split("\t")[0], r.split("\t")[1]) for r in _without(_text(s), "#").splitlines()} for s in runs["vcf_shards"]
    ]
    assert sites[0] & sites[1] & sites[2]
    contig_lines = [[x for x in _text(s).splitlines() if x.startswith("##contig")] for s in runs["vcf_shards"]]
    assert len({tuple(c) for c in contig_lines}) > 1


@pytest.mark.parametrize("out_name", ["merged.vcf", "merged.vcf.gz"])
def test_vcf_merge_equals_unsharded(runs, tmp_path, out_name):
    shards = runs["vcf_shards"]
    out, rows, kind = merge_files([shards[2], shards[0], shards[1]], tmp_path / out_name)  # any order
    assert kind == "shards"
    whole = _text(runs["vcf"])
    assert rows == len(_without(whole, "#").splitlines())
    merged = _text(out)
    assert _without(merged, "##vepcli_command") == _without(whole, "##vepcli_command")
    assert merged.count("##vepcli_command=vepcli merge ") == 1
    if out_name.endswith(".gz"):
        assert Path(str(out) + ".tbi").exists()
        with pysam.TabixFile(str(out)) as tbx:
            assert len(list(tbx.fetch("X"))) == sum(1 for r in _without(whole, "#").splitlines() if r[:2] == "X\t")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_merge_is_deterministic(runs, tmp_path):
    shards = runs["vcf_shards"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        merge_files(shards, tmp_path / name / "m.vcf.gz", command="vepcli merge s1 s2 s3 -o m.vcf.gz")
        merge_files(runs["tsv_shards"], tmp_path / name / "m.tsv.gz", command="x")
    for out in ("m.vcf.gz", "m.vcf.gz.tbi", "m.tsv.gz"):
        assert (tmp_path / "a" / out).read_bytes() == (tmp_path / "b" / out).read_bytes()


def test_tsv_merge_equals_unsharded_byte_for_byte(runs, tmp_path):
    out, _, _ = merge_files(runs["tsv_shards"], tmp_path / "m.tsv")
    assert _without(out.read_text(), "##vepcli_command") == _without(runs["tsv"].read_text(), "##vepcli_command")
    pd.testing.assert_frame_equal(read_scores(out), read_scores(runs["tsv"]))


def test_parquet_merge_equals_unsharded(runs, tmp_path):
    out, _, _ = merge_files(runs["parquet_shards"], tmp_path / "m.parquet")
    merged, whole = pq.read_table(out), pq.read_table(runs["parquet"])
    assert merged.schema.field("ref_emb").type == whole.schema.field("ref_emb").type  # fixed-size vectors
    assert merged.drop_columns(["ref_emb", "alt_emb"]).equals(whole.drop_columns(["ref_emb", "alt_emb"]))
    for column in ("ref_emb", "alt_emb"):  # NaN rows for alleles not embedded: compare as arrays
        np.testing.assert_array_equal(
            np.array(merged[column].to_pylist(), dtype=float), np.array(whole[column].to_pylist(), dtype=float)
        )
    drop = ("##vepcli_command",)
    assert [m for m in _meta(out) if not m.startswith(drop)] == [
        m for m in _meta(runs["parquet"]) if not m.startswith(drop)
    ]


def test_region_parts_merge_into_the_unsharded_file(runs, tmp_path):
    """One run per contig (what `by: chromosome` does; region `22` also takes the `chr22` alias) merge, in
    input order, into the unsharded file: each part numbers its rows from 0, the merge renumbers them."""
    vcf, fasta = runs["vcf_in"], runs["fasta"]
    parts = [_score(vcf, fasta, tmp_path / f"{c}.vcf", regions=c) for c in ("22", "X", "chrUn_x")]
    assert "VEPCLI_INDEX=0;" in _text(parts[1])
    out, rows, kind = merge_files(parts, tmp_path / "m.vcf")
    assert kind == "regions"
    assert _without(_text(out), "##vepcli_command") == _without(_text(runs["vcf"]), "##vepcli_command")


# ---------------------------------------------------------------- refusals


def _copy(src: Path, dst: Path, replace: tuple[str, str] | None = None) -> Path:
    text = src.read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    dst.write_text(text)
    return dst


def test_refuses_missing_and_duplicated_shards(runs, tmp_path):
    s1, s2, s3 = runs["vcf_shards"]
    with pytest.raises(UserError, match=r"shard 2/3 is missing"):
        merge_files([s1, s3], tmp_path / "m.vcf")
    dup = shutil.copy(s2, tmp_path / "again.vcf")
    with pytest.raises(UserError, match=r"shard 2/3 is given twice: .*s2\.vcf and .*again\.vcf"):
        merge_files([s1, s2, dup, s3], tmp_path / "m.vcf")
    with pytest.raises(UserError, match=r"given twice"):
        merge_files([s1, s2, s2, s3], tmp_path / "m.vcf")
    other_n = _copy(s3, tmp_path / "n4.vcf", ("##vepcli_shard=3/3", "##vepcli_shard=3/4"))
    with pytest.raises(UserError, match=r"shard 3/4 but .* is shard 1/3"):
        merge_files([s1, s2, other_n], tmp_path / "m.vcf")
    assert not (tmp_path / "m.vcf").exists()


def test_refuses_other_settings(runs, tmp_path):
    s1, s2, s3 = runs["vcf_shards"]
    text = s3.read_text()
    old = next(x for x in text.splitlines() if x.startswith("##vepcli_settings_hash="))
    other = _copy(s3, tmp_path / "other.vcf", (old, "##vepcli_settings_hash=0123456789abcdef"))
    with pytest.raises(UserError, match=r"different model, window or settings"):
        merge_files([s1, s2, other], tmp_path / "m.vcf")
    window = _copy(s3, tmp_path / "w.vcf", ("##vepcli_window=512", "##vepcli_window=1024"))
    with pytest.raises(UserError, match=r"differ in the header line ##vepcli_window"):
        merge_files([s1, s2, window], tmp_path / "m.vcf")


def test_refuses_mixed_formats_and_bad_combinations(runs, tmp_path):
    s1, s2, _ = runs["vcf_shards"]
    t3 = runs["tsv_shards"][2]
    with pytest.raises(UserError, match=r"mixed formats: .*s1\.vcf is VCF but .*s3\.tsv is TSV"):
        merge_files([s1, s2, t3], tmp_path / "m.vcf")
    with pytest.raises(UserError, match=r"the parts are TSV but the output .* would be vcf"):
        merge_files(runs["tsv_shards"], tmp_path / "m.vcf")
    with pytest.raises(UserError, match=r"is not a shard .* merge either one complete shard set"):
        merge_files([runs["vcf"], s1], tmp_path / "m.vcf")
    with pytest.raises(UserError, match=r"also one of the inputs"):
        merge_files([runs["vcf"]], runs["vcf"])
    with pytest.raises(UserError, match=r"contig 22 is in both"):  # the same region part twice
        merge_files([runs["vcf"], shutil.copy(runs["vcf"], tmp_path / "copy.vcf")], tmp_path / "m.vcf")
    plain = tmp_path / "plain.vcf"
    plain.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    with pytest.raises(UserError, match=r"no ##vepcli_settings_hash line"):
        merge_files([plain], tmp_path / "m.vcf")


def test_refuses_shards_that_overlap_or_miss_rows(runs, tmp_path):
    s1, s2, s3 = runs["tsv_shards"]
    lines = s3.read_text().splitlines(keepends=True)
    cut = _copy(s3, tmp_path / "cut.tsv")
    cut.write_text("".join(lines[:-1]))  # the last row lost
    with pytest.raises(UserError, match=r"do not cover the input"):
        merge_files([s1, s2, cut], tmp_path / "m.tsv")
    vs1, vs2, vs3 = runs["vcf_shards"]
    body = [x for x in vs1.read_text().splitlines(keepends=True) if not x.startswith("#")]
    grown = _copy(vs3, tmp_path / "grown.vcf")
    head = [x for x in grown.read_text().splitlines(keepends=True) if x.startswith("#")]
    rest = [x for x in grown.read_text().splitlines(keepends=True) if not x.startswith("#")]
    rank = {x.split("ID=")[1].split(",")[0].rstrip(">\n"): i for i, x in enumerate(head) if x.startswith("##contig")}

    def key(record):  # the order vepcli writes: header contig order, position, index
        cols = record.split("\t")
        return rank.get(cols[0], len(rank)), cols[0], int(cols[1]), int(cols[7].split("VEPCLI_INDEX=")[1].split(";")[0])

    grown.write_text("".join(head + sorted(rest + body[:1], key=key)))  # one row of shard 1 in shard 3 too
    with pytest.raises(UserError, match=r"is in both .*s1\.vcf and .*grown\.vcf|is in both .*grown\.vcf and"):
        merge_files([vs1, vs2, grown], tmp_path / "m.vcf")


def test_cli_one_line_errors_and_success(runs, tmp_path):
    from click.testing import CliRunner

    from vepcli.cli import cli

    s1, s2, s3 = map(str, runs["tsv_shards"])
    out = str(tmp_path / "m.tsv")
    bad = CliRunner().invoke(cli, ["merge", s1, s3, "-o", out])
    assert bad.exit_code == 1
    assert bad.output.strip().count("\n") == 0 and "shard 2/3 is missing" in bad.output
    good = CliRunner().invoke(cli, ["merge", s1, s2, s3, "-o", out])
    assert good.exit_code == 0, good.output
    assert "merged 3 shards" in good.output
    assert f"##vepcli_command=vepcli merge {s1} {s2} {s3} -o {out}\n" in Path(out).read_text()
