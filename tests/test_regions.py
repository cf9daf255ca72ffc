"""The genomics layer's shared pieces: one region grammar, BED, genome-order blocks, format sniffing and
atomic writes, as every command (score, pretrain, finetune, the Snakefile) uses them."""

import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vepcli.atomic import atomic_dir, atomic_file
from vepcli.errors import UserError
from vepcli.finetune.data import read_labelled_intervals
from vepcli.formats import table_sep, variants_format, vcf_format
from vepcli.genome import Genome
from vepcli.regions import (
    Interval,
    RegionSet,
    merge_regions,
    parse_region_list,
    parse_regions,
    read_bed,
    subtract,
)
from vepcli.splits import drop_near_test_rows, genome_blocks, genome_order, genome_tail
from vepcli.train.data import parse_region, split_intervals

# ---------------------------------------------------------------- grammar


@pytest.mark.parametrize("text", ["22:1,001-2000", "chr1:10,000,000-20,000,000", "1:5-9,000"])
def test_thousands_separators_are_refused_in_one_line(text):
    """bcftools -r reads `22:1,001-2000` as two regions; vepcli refuses it rather than guess either way."""
    with pytest.raises(UserError, match="thousands separators") as err:
        parse_regions(text)
    assert "\n" not in str(err.value)


def test_a_list_of_contigs_is_not_mistaken_for_thousands():
    assert parse_region_list("1:100-200,2,X") == [
        Interval("1", 99, 200),
        Interval("2", 0, None),
        Interval("X", 0, None),
    ]


def test_regions_merge_across_contig_aliases_in_first_seen_order():
    got = parse_regions("chr2:50-60,1:1-10,2:55-70,chr1:5-20")
    assert got == [Interval("chr2", 49, 70), Interval("1", 0, 20)]
    assert merge_regions([Interval("chr1", 0, 5), Interval("1", 3, 9)], str) == [
        Interval("chr1", 0, 5),
        Interval("1", 3, 9),
    ], "with exact names (contig_key=str) chr1 and 1 stay apart"


def test_interval_text_round_trips_through_the_grammar():
    for iv in (Interval("22", 999, 2000), Interval("chrX", 4, None)):
        assert parse_region_list(str(iv)) == [iv]


def test_region_set_overlaps_by_alias():
    rs = RegionSet([Interval("chr22", 100, 200), Interval("X", 10, None)])
    assert rs.overlaps("22", 199, 200) and not rs.overlaps("22", 200, 201)
    assert rs.overlaps("chrX", 10_000_000, 10_000_001) and not rs.overlaps("1", 150, 151)


def test_pretrain_and_score_read_one_grammar(tmp_path):
    """`--val-region 22:5-` and `-r 22:5-` mean the same; pretraining closes an open end at the contig end."""
    fasta = tmp_path / "g.fa"
    fasta.write_text(">22\n" + "ACGT" * 250 + "\n")
    with Genome(fasta) as genome:
        assert parse_region("chr22:5-", genome) == Interval("22", 4, 1000)
        assert parse_region("22:7", genome) == Interval("22", 6, 7)
        with pytest.raises(UserError, match="one region"):
            parse_region("22:1-5,22:9-20", genome)
        _, val = split_intervals(genome, None, val_regions=["22:901-"])
        assert val == [Interval("22", 900, 1000)]


# ---------------------------------------------------------------- BED


def test_bed_gz_skips_track_and_browser_lines_and_keeps_further_columns(tmp_path):
    bed = tmp_path / "r.bed.gz"
    with gzip.open(bed, "wt") as fh:
        fh.write('track name="x"\nbrowser position chr1:1-100\n# note\n\nchr1\t0\t10\tpos\t7\n1 20 30\n')
    assert read_bed(bed) == [(Interval("chr1", 0, 10), ["pos", "7"]), (Interval("1", 20, 30), [])]
    assert parse_regions(str(bed)) == [Interval("chr1", 0, 10), Interval("1", 20, 30)]  # one contig, apart


@pytest.mark.parametrize("line", ["chr1\t10\t5\n", "chr1\tten\t20\n", "chr1\t5\n"])
def test_bad_bed_lines_name_the_line(tmp_path, line):
    bed = tmp_path / "bad.bed"
    bed.write_text("chr1\t0\t1\n" + line)
    with pytest.raises(UserError, match="line 2"):
        read_bed(bed)


def test_finetune_reads_a_bed_with_a_track_line(tmp_path, chr22_slice):
    """pandas read such a BED as data and failed on the `track` line; the shared BED reader skips it."""
    bed = tmp_path / "labelled.bed"
    bed.write_text('track name="labels"\nbrowser hide all\n22\t1000\t1064\trepeat\n22\t5000\t5064\tunique\n')
    with Genome(chr22_slice.fa_gz) as genome:
        ex = read_labelled_intervals(str(bed), genome, None, [], "label")
    assert ex.table["label"].tolist() == ["repeat", "unique"] and ex.ids.shape == (2, 64)


def test_subtract_cuts_validation_out_of_training():
    keep = [Interval("b", 0, 50), Interval("a", 0, 100)]
    got = subtract(keep, [Interval("a", 10, 20), Interval("a", 15, 30)])
    assert got == [Interval("a", 0, 10), Interval("a", 30, 100), Interval("b", 0, 50)]


# ---------------------------------------------------------------- genome-order blocks


def test_genome_order_keeps_contigs_in_first_appearance_order():
    chrom = np.array(["chr2", "chr10", "chr2", "chr10", "chr1"])
    pos = np.array([30, 5, 10, 1, 99])
    assert genome_order(chrom, pos).tolist() == [2, 0, 3, 1, 4]
    order, blocks = genome_blocks(chrom, pos, 2)
    assert blocks[order].tolist() == [0, 0, 0, 1, 1]
    head, tail = genome_tail(order, 0.4)
    assert tail.tolist() == [1, 4] and head.tolist() == [0, 2, 3]


def test_drop_near_test_rows_keeps_only_rows_a_window_away():
    chrom = np.array(["1", "1", "1", "2"])
    pos = np.array([100, 150, 400, 100])
    assert drop_near_test_rows(np.array([0, 2, 3]), np.array([1]), chrom, pos, 100).tolist() == [2, 3]


# ---------------------------------------------------------------- formats and atomic writes


def test_formats_by_name_and_by_bytes(tmp_path):
    assert variants_format("x.vcf.bgz") == "vcf" and variants_format("x.CSV.gz") == "table"
    assert table_sep("x.csv.gz") == "," and table_sep("x.txt") == "\t" and table_sep("x.pq") is None
    with pytest.raises(UserError, match="unknown variants file type"):
        variants_format("x.bed")
    plain = tmp_path / "a.vcf.gz"  # named .gz, but plain text
    plain.write_text("##fileformat=VCFv4.2\n")
    assert vcf_format(plain) == "vcf"
    gz = tmp_path / "b.vcf.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("##fileformat=VCFv4.2\n")
    assert vcf_format(gz) == "vcf.gz"


def test_atomic_file_leaves_nothing_on_failure_and_renames_on_success(tmp_path):
    target = tmp_path / "out.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("stopped")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]
    with atomic_file(target) as tmp:
        pd.DataFrame({"a": [1]}).to_csv(tmp, sep="\t", index=False)
    assert target.read_text() == "a\n1\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("stopped")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask, "the permissions mkdir would give"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no temporary or old folder left"


def test_score_regions_file_is_bcftools_R_and_equals_r(tmp_path, chr22_slice):
    """`score -R regions.bed.gz` (track line, gzip) keeps the same records as `-r` with the same region;
    giving both is one error line."""
    from click.testing import CliRunner

    from vepcli.cli import cli

    model = Path(__file__).parent / "fixtures" / "caduceus-hf" / "caduceus-ps-tiny"
    vcf = Path(__file__).parent / "data" / "chr22_slice.vcf"
    bed = tmp_path / "keep.bed.gz"
    with gzip.open(bed, "wt") as fh:
        fh.write("track name=keep\n22\t899\t4500\n")
    common = [str(vcf), "-f", str(chr22_slice.fa), "-m", str(model), "--window", "64", "--threads", "1", "-q"]
    runner = CliRunner()
    by_r = runner.invoke(cli, ["score", *common, "-r", "22:900-4500", "-o", str(tmp_path / "r.tsv")])
    by_big_r = runner.invoke(cli, ["score", *common, "-R", str(bed), "-o", str(tmp_path / "R.tsv")])
    assert by_r.exit_code == 0 and by_big_r.exit_code == 0, (by_r.output, by_big_r.output)
    rows = [
        [line for line in (tmp_path / name).read_text().splitlines() if not line.startswith("#")]
        for name in ("r.tsv", "R.tsv")
    ]
    assert rows[0] == rows[1] and len(rows[0]) > 1
    both = runner.invoke(cli, ["score", *common, "-r", "22", "-R", str(bed), "-o", str(tmp_path / "x.tsv")])
    assert both.exit_code == 1 and "give -r or -R, not both" in both.output
    assert not (tmp_path / "x.tsv").exists()
