"""Variant readers, normalisation and reference checks, on real files written to tmp dirs."""

import gzip
from pathlib import Path

import pandas as pd
import pysam
import pysam.bcftools
import pytest

from vepcli import variants as V
from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.regions import Interval, parse_regions
from vepcli.variants import (
    Variant,
    check_against_reference,
    normalise,
    read_table,
    read_variants,
    read_vcf,
    trim_alleles,
)

HEADER = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=22,length=99500>",
    '##INFO=<ID=END,Number=1,Type=Integer,Description="End">',
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
]


def vcf_text(records) -> str:
    """records: (chrom, pos, id, ref, alt) tuples, or raw strings written as they are."""
    body = [r if isinstance(r, str) else "\t".join(map(str, r)) + "\t.\tPASS\t." for r in records]
    return "\n".join(HEADER + body) + "\n"


def write_vcf(path: Path, records) -> Path:
    path.write_text(vcf_text(records))
    return path


def ref_at(seq: str, pos: int, n: int = 1) -> str:
    return seq[pos - 1 : pos - 1 + n].upper()


def covered(seq: str, start: int, n: int = 1, lower: bool | None = None) -> int:
    """First 1-based position >= start with n non-N bases (optionally all lower or upper case)."""
    for p in range(start, len(seq)):
        s = seq[p - 1 : p - 1 + n]
        if "N" not in s.upper() and (lower is None or (s.islower() if lower else s.isupper())):
            return p
    raise AssertionError("no such position")


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


def n_alts(records) -> int:
    return sum(len(r[4].split(",")) for r in records)


@pytest.fixture(scope="module")
def genome(chr22_slice):
    with Genome(chr22_slice.fa_gz) as g:
        yield g


@pytest.fixture
def mixed_records(chr22_slice):
    """One record of each kind at real slice positions (REF from the FASTA text)."""
    s = chr22_slice.seq
    p = [covered(s, x, 6) for x in (600, 1200, 1800, 2400, 4000, 4300, 4600, 4900, 5200, 5500)]
    return [
        ("22", p[0], "snv", ref_at(s, p[0]), other(ref_at(s, p[0]))),
        ("22", p[1], "mnv", ref_at(s, p[1], 3), "".join(other(b) for b in ref_at(s, p[1], 3))),
        ("22", p[2], "ins", ref_at(s, p[2]), ref_at(s, p[2]) + "GATTACA"),
        ("22", p[3], "del", ref_at(s, p[3], 5), ref_at(s, p[3])),
        ("22", p[4], "multi", ref_at(s, p[4]), f"{other(ref_at(s, p[4]))},{other(other(ref_at(s, p[4])))}"),
        ("22", p[5], "sym", ref_at(s, p[5]), "<DEL>,<*>"),
        ("22", p[6], "bnd", ref_at(s, p[6]), f"{ref_at(s, p[6])}]22:200]"),
        ("22", p[7], "star", ref_at(s, p[7]), f"*,{other(ref_at(s, p[7]))}"),
        ("22", p[8], "noalt", ref_at(s, p[8]), "."),
        ("22", p[9], ".", ref_at(s, p[9], 2), ref_at(s, p[9]) + "TT" + ref_at(s, p[9] + 1)),
    ]


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("ref", "alt", "expected"),
    [
        ("A", "G", (100, "A", "G")),
        ("ACGT", "ACCT", (102, "G", "C")),  # shared prefix and suffix trimmed to the SNV
        ("CA", "CAA", (100, "C", "CA")),  # suffix first: the anchor base stays
        ("CTCT", "CT", (100, "CTC", "C")),  # suffix trimmed, leftmost base kept as anchor
        ("GATC", "GTTC", (101, "A", "T")),
        ("AC", "TG", (100, "AC", "TG")),
        ("A", "AT", (100, "A", "AT")),
        ("AAAA", "AAA", (100, "AA", "A")),
        ("TCA", "GCA", (100, "T", "G")),
    ],
)
def test_trim_alleles(ref, alt, expected):
    assert trim_alleles(100, ref, alt) == expected


@pytest.mark.parametrize(
    ("ref", "alt", "kind", "status"),
    [
        ("A", "G", "snv", "ok"),
        ("ac", "gt", "mnv", "ok"),
        ("A", "ATT", "ins", "ok"),
        ("ATT", "A", "del", "ok"),
        ("AT", "GCC", "complex", "ok"),
        ("A", "<DEL>", "symbolic", "symbolic_allele"),
        ("A", "<*>", "symbolic", "symbolic_allele"),
        ("A", "A[22:300[", "symbolic", "symbolic_allele"),
        ("A", ".A", "symbolic", "symbolic_allele"),
        ("A", "*", "star", "star_allele"),
        ("A", ".", "none", "no_alt"),
        ("R", "A", "none", "invalid_allele"),
        ("A", "a", "none", "invalid_allele"),
    ],
)
def test_normalise_kinds_and_statuses(ref, alt, kind, status):
    v = normalise(Variant("22", 10, ".", ref, alt, 0, 1))
    assert (v.kind, v.status) == (kind, status)
    assert v.kind in V.KINDS and v.status in V.STATUSES
    assert (v.status == "ok") == (v.reason == "")
    assert (v.ref, v.alt) == (ref, alt)  # the input alleles are kept as given


# ---------------------------------------------------------------- VCF


def test_vcf_one_variant_per_alt_in_order(tmp_path, mixed_records):
    path = write_vcf(tmp_path / "in.vcf", mixed_records)
    got = list(read_vcf(path))
    assert len(got) == n_alts(mixed_records)
    assert [v.index for v in got] == list(range(len(got)))
    expanded = [(r, alt) for r in mixed_records for alt in r[4].split(",")]
    for v, (rec, alt) in zip(got, expanded, strict=True):
        assert (v.chrom, v.pos, v.ref, v.alt) == (rec[0], rec[1], rec[3], alt)
        assert v.id == rec[2] and v.extra == {}
        assert v.line == len(HEADER) + 1 + mixed_records.index(rec)
    by_id = {v.id: v for v in got}
    assert (by_id["snv"].kind, by_id["mnv"].kind, by_id["ins"].kind, by_id["del"].kind) == (
        "snv",
        "mnv",
        "ins",
        "del",
    )
    assert [v.status for v in got if v.id == "sym"] == ["symbolic_allele"] * 2
    assert by_id["bnd"].status == "symbolic_allele"
    assert [v.status for v in got if v.id == "star"] == ["star_allele", "ok"]
    assert by_id["noalt"].status == "no_alt"
    assert [v.status for v in got if v.id == "multi"] == ["ok", "ok"]


def test_vcf_normalised_fields(tmp_path, mixed_records):
    rec = mixed_records[-1]  # REF xy, ALT xTTy: an insertion of TT written with a trailing base
    got = list(read_vcf(write_vcf(tmp_path / "in.vcf", [rec])))[0]
    ref, alt = rec[3], rec[4]
    # by hand: the shared last base y goes; x is then the shared first base and stays as the anchor
    assert (got.norm_pos, got.norm_ref, got.norm_alt, got.kind) == (rec[1], ref[0], ref[0] + "TT", "ins")
    assert (got.ref, got.alt) == (ref, alt)
    assert got.id == "."


def test_vcf_gz_bcf_and_plain_agree(tmp_path, mixed_records):
    plain = write_vcf(tmp_path / "in.vcf", mixed_records)
    gz = Path(pysam.tabix_index(str(write_vcf(tmp_path / "b.vcf", mixed_records)), preset="vcf", force=True))
    bcf = tmp_path / "in.bcf"
    pysam.bcftools.view("-O", "b", "-o", str(bcf), str(plain), catch_stdout=False)
    key = [(v.chrom, v.pos, v.id, v.ref, v.alt, v.status, v.norm_pos, v.norm_ref, v.norm_alt) for v in read_vcf(plain)]
    for other_path in (gz, bcf):
        assert [
            (v.chrom, v.pos, v.id, v.ref, v.alt, v.status, v.norm_pos, v.norm_ref, v.norm_alt)
            for v in read_vcf(other_path)
        ] == key


def test_plain_gzip_vcf_reads(tmp_path, mixed_records):
    path = tmp_path / "in.vcf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(vcf_text(mixed_records))
    assert len(list(read_vcf(path))) == n_alts(mixed_records)
    with pytest.raises(UserError, match="bgzip"):
        read_vcf(path, regions="22:1-1000")


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("22\tabc\t.\tA\tG\t.\t.\t.", "POS 'abc'"),
        ("22\t500\t.\tA", "4 column"),
        ("22 500 . A G . . .", "tabs"),
        ("", "empty line"),
        ("22\t500\t.\t\tG\t.\t.\t.", "REF is empty"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_line_names_file_and_line(tmp_path, bad, what, compress):
    lines = [("22", 100, ".", "A", "G"), ("22", 200, ".", "C", "T"), bad, ("22", 300, ".", "G", "A")]
    path = write_vcf(tmp_path / "bad.vcf", lines)
    if compress:
        path = Path(pysam.tabix_compress(str(path), str(path) + ".gz") or str(path) + ".gz")
    with pytest.raises(UserError) as err:
        list(read_vcf(path))
    msg = str(err.value)
    assert f"line {len(HEADER) + 3}" in msg and path.name in msg and what in msg
    assert "\n" not in msg


def test_malformed_line_inside_indexed_region(tmp_path):
    lines = [("22", 100, ".", "A", "G"), "22\t200\t.\tA\tG\t.", ("22", 300, ".", "G", "A")]
    gz = Path(pysam.tabix_index(str(write_vcf(tmp_path / "bad.vcf", lines)), preset="vcf", force=True))
    with pytest.raises(UserError, match=f"line {len(HEADER) + 2}"):
        list(read_vcf(gz, regions="22:150-250"))
    assert [v.pos for v in read_vcf(gz, regions="22:250-400")] == [300]


def test_truncated_bcf_is_user_error(tmp_path):
    records = [("22", 100 + i, ".", "A", "G") for i in range(3000)]
    bcf = tmp_path / "full.bcf"
    pysam.bcftools.view("-O", "b", "-o", str(bcf), str(write_vcf(tmp_path / "in.vcf", records)), catch_stdout=False)
    data = bcf.read_bytes()
    cut = tmp_path / "cut.bcf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.bcf is truncated") as err:
        list(read_vcf(cut))
    assert "\n" not in str(err.value)


def test_missing_header_is_user_error(tmp_path):
    path = tmp_path / "nohead.vcf"
    path.write_text("22\t100\t.\tA\tG\t.\t.\t.\n")
    with pytest.raises(UserError, match="#CHROM"):
        read_vcf(path)


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_variants(tmp_path / "nope.vcf")


# ---------------------------------------------------------------- regions


def overlapping(records, chrom_key, intervals):
    """Independent overlap rule: record span [pos, pos+len(REF)-1] meets some 1-based [beg, end]."""
    out = []
    for r in records:
        first, last = r[1], r[1] + len(r[3]) - 1
        if r[0] == chrom_key and any(first <= end and last >= beg for beg, end in intervals):
            out.append(r[2])
    return out


@pytest.fixture
def region_records(chr22_slice):
    s = chr22_slice.seq
    positions = [covered(s, x, 4) for x in (700, 1500, 2500, 3590, 4200, 5300, 6100)]
    recs = [("22", p, f"r{p}", ref_at(s, p), other(ref_at(s, p))) for p in positions]
    d = positions[3]
    recs[3] = ("22", d, f"r{d}", ref_at(s, d, 4), ref_at(s, d))  # a deletion spanning d..d+3
    return recs


@pytest.fixture
def indexed_vcf(tmp_path, region_records):
    return Path(pysam.tabix_index(str(write_vcf(tmp_path / "r.vcf", region_records)), preset="vcf", force=True))


def region_cases(records):
    p = [r[1] for r in records]
    d = p[3]
    return [
        (f"22:{p[1]}-{p[4]}", [(p[1], p[4])]),
        (f"22:{p[0]},22:{p[5]}-{p[6]}", [(p[0], p[0]), (p[5], p[6])]),
        (f"22:{p[2]}-{p[3] + 1},22:{p[2] - 5}-{p[2] + 5}", [(p[2] - 5, p[3] + 1)]),  # overlapping: no duplicates
        (f"22:{d + 1}-{d + 1},22:{d + 3}-{d + 3}", [(d + 1, d + 1)]),  # the deletion meets both: listed once
        (f"22:{p[5]}-", [(p[5], 10**9)]),
        ("22", [(1, 10**9)]),
    ]


@pytest.mark.parametrize("case", range(6))
def test_regions_indexed_and_scanned_agree(tmp_path, region_records, indexed_vcf, case):
    spec, intervals = region_cases(region_records)[case]
    expected = overlapping(region_records, "22", intervals)
    assert [v.id for v in read_vcf(indexed_vcf, regions=spec)] == expected
    plain = write_vcf(tmp_path / "plain.vcf", region_records)
    assert [v.id for v in read_vcf(plain, regions=spec)] == expected


def test_regions_from_bed_and_with_chr_alias(tmp_path, region_records, indexed_vcf):
    p = [r[1] for r in region_records]
    bed = tmp_path / "r.bed"
    bed.write_text(f"track name=x\nchr22\t{p[1] - 1}\t{p[1]}\n22\t{p[4] - 1}\t{p[5] - 1}\n")
    expected = overlapping(region_records, "22", [(p[1], p[1]), (p[4], p[5] - 1)])
    assert expected == [f"r{p[1]}", f"r{p[4]}"]
    assert [v.id for v in read_vcf(indexed_vcf, regions=str(bed))] == expected
    assert [v.id for v in read_vcf(indexed_vcf, regions=f"chr22:{p[2]}-{p[2]}")] == [f"r{p[2]}"]


def test_regions_with_csi_index_and_no_contig_header(tmp_path, region_records):
    path = tmp_path / "c.vcf"
    lines = [h for h in HEADER if not h.startswith("##contig")]
    lines += ["\t".join(map(str, ("chr22", *r[1:]))) + "\t.\t.\t." for r in region_records]
    path.write_text("\n".join(lines) + "\n")
    gz = pysam.tabix_index(str(path), preset="vcf", force=True, csi=True)
    assert Path(gz + ".csi").is_file() and not Path(gz + ".tbi").exists()
    p = [r[1] for r in region_records]
    got = list(read_vcf(gz, regions=f"22:{p[1]}-{p[2]}"))
    assert [(v.chrom, v.id, v.line) for v in got] == [("chr22", r[2], 0) for r in region_records[1:3]]


def test_bcf_regions(tmp_path, region_records):
    plain = write_vcf(tmp_path / "r.vcf", region_records)
    bcf = tmp_path / "r.bcf"
    pysam.bcftools.view("-O", "b", "-o", str(bcf), str(plain), catch_stdout=False)
    p = [r[1] for r in region_records]
    with pytest.raises(UserError, match="bcftools index"):
        read_vcf(bcf, regions=f"22:{p[0]}-{p[2]}")
    pysam.bcftools.index(str(bcf))
    assert [v.id for v in read_vcf(bcf, regions=f"22:{p[0]}-{p[2]}")] == [r[2] for r in region_records[:3]]
    assert [v.line for v in read_vcf(bcf)] == list(range(1, len(region_records) + 1))  # record numbers


def test_regions_without_index_says_tabix(tmp_path, region_records):
    gz = tmp_path / "r.vcf.gz"
    pysam.tabix_compress(str(write_vcf(tmp_path / "r.vcf", region_records)), str(gz))
    with pytest.raises(UserError, match="tabix -p vcf"):
        read_vcf(gz, regions="22:1-1000")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("22:5-10", [Interval("22", 4, 10)]),
        ("22:5", [Interval("22", 4, 5)]),
        ("22:5-", [Interval("22", 4, None)]),
        ("chrX", [Interval("chrX", 0, None)]),
        ("1:30-40,1:5-10,1:8-20,2:1-2", [Interval("1", 4, 20), Interval("1", 29, 40), Interval("2", 0, 2)]),
    ],
)
def test_parse_regions(spec, expected):
    assert parse_regions(spec) == expected


@pytest.mark.parametrize("spec", ["22:10-5", "22:0-5", "missing.bed", ":5-6"])
def test_parse_regions_errors(spec):
    with pytest.raises(UserError):
        parse_regions(spec)


# ---------------------------------------------------------------- tables


def table_frame(chr22_slice, lrb: bool = False) -> pd.DataFrame:
    s = chr22_slice.seq
    p = [covered(s, x, 3) for x in (800, 1600, 2600)]
    rows = {
        "chromosome" if lrb else "chrom": ["chr22", "22", "22"],
        "position" if lrb else "pos": p,
        "ref": [ref_at(s, p[0]), ref_at(s, p[1], 3), ref_at(s, p[2])],
        "alt": [other(ref_at(s, p[0])), ref_at(s, p[1]), f"{other(ref_at(s, p[2]))},<DEL>"],
        "label": [1, 0, 1],
        "tissue": ["Liver", "Lung", "Brain"],
    }
    if not lrb:
        rows["id"] = ["rs1", "rs2", None]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["tsv", "csv", "parquet", "tsv.gz", "txt"])
@pytest.mark.parametrize("lrb", [False, True], ids=["chrom_pos", "lrb_names"])
def test_table_inputs(tmp_path, chr22_slice, genome, fmt, lrb):
    df = table_frame(chr22_slice, lrb)
    path = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    got = [check_against_reference(v, genome) for v in read_variants(path)]
    assert len(got) == 4  # the last row has two ALT alleles
    assert [v.index for v in got] == [0, 1, 2, 3]
    first = 1 if fmt == "parquet" else 2
    assert [v.line for v in got] == [first, first + 1, first + 2, first + 2]
    assert [v.pos for v in got] == [df.iloc[i, 1] for i in (0, 1, 2, 2)]
    assert [v.extra for v in got] == [
        {"label": 1, "tissue": "Liver"},
        {"label": 0, "tissue": "Lung"},
        {"label": 1, "tissue": "Brain"},
        {"label": 1, "tissue": "Brain"},
    ]
    assert [v.id for v in got] == (["."] * 4 if lrb else ["rs1", "rs2", ".", "."])
    assert [v.kind for v in got] == ["snv", "del", "snv", "symbolic"]
    assert [v.status for v in got] == ["ok", "ok", "ok", "symbolic_allele"]
    assert got[0].fasta_chrom == "22"


def test_table_regions(tmp_path, chr22_slice):
    df = table_frame(chr22_slice)
    path = tmp_path / "in.tsv"
    df.to_csv(path, sep="\t", index=False)
    p = df["pos"].tolist()
    assert [v.pos for v in read_table(path, regions=f"22:{p[1] + 2}-{p[2]}")] == [p[1], p[2], p[2]]


@pytest.mark.parametrize("name", ["out.tsv", "out.tsv.gz"])
def test_table_header_lines_are_skipped_plain_and_gzip(tmp_path, name):
    """A vepcli TSV output (`##` lines, then the columns) can be scored again, also as .tsv.gz."""
    text = "##vepcli_version=x\n##vepcli_model=<path=m>\nchrom\tpos\tref\talt\n22\t5\tA\tG\n"
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    got = list(read_table(path))
    assert [(v.chrom, v.pos, v.ref, v.alt, v.line) for v in got] == [("22", 5, "A", "G", 4)]


def test_table_missing_column_names_found_and_expected(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("chrom,start,ref,alt\n22,5,A,G\n")
    with pytest.raises(UserError) as err:
        read_table(path)
    msg = str(err.value)
    assert "pos" in msg and "position" in msg and "start" in msg and "chrom, start, ref, alt" in msg


def test_table_bad_position_names_line(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("chrom\tpos\tref\talt\n22\t5\tA\tG\n22\tfive\tA\tG\n")
    with pytest.raises(UserError, match="line 3"):
        list(read_table(path))


def test_unknown_extension(tmp_path):
    path = tmp_path / "in.xlsx"
    path.write_text("x")
    with pytest.raises(UserError, match="unknown"):
        read_variants(path)


# ---------------------------------------------------------------- reference checks


def checked(tmp_path, genome, records, max_indel_len=None):
    path = write_vcf(tmp_path / "c.vcf", records)
    return [check_against_reference(v, genome, max_indel_len) for v in read_vcf(path)]


def test_reference_statuses(tmp_path, chr22_slice, genome):
    s = chr22_slice.seq
    up, low = covered(s, 700, 3, lower=False), covered(s, 700, 3, lower=True)
    n_pos = s.index("N" * 1000) + 100
    edge = covered(s, n_pos - 1100, 1)
    while s[edge] != "N":  # last real base before the N run
        edge += 1
    bad = other(ref_at(s, up))
    records = [
        ("22", up, "ok", ref_at(s, up), other(ref_at(s, up))),
        ("chr22", up, "alias", ref_at(s, up), other(ref_at(s, up))),
        ("22", low, "lower_fasta", ref_at(s, low, 3), ref_at(s, low)),
        ("22", low, "lower_vcf", s[low - 1].lower(), other(s[low - 1]).lower()),
        ("chrUn", up, "missing", ref_at(s, up), other(ref_at(s, up))),
        ("22", up, "mismatch", bad, ref_at(s, up)),
        ("22", n_pos, "in_n", "N", "A"),
        ("22", n_pos, "in_n_acgt", "A", "C"),
        ("22", edge, "into_n", ref_at(s, edge) + "A", ref_at(s, edge)),
        ("22", len(s), "last", ref_at(s, len(s)), other(ref_at(s, len(s)))),
        ("22", len(s), "past_end", ref_at(s, len(s)) + "A", ref_at(s, len(s))),
        ("22", len(s) + 10, "after_end", "A", "C"),
    ]
    got = {v.id: v for v in checked(tmp_path, genome, records)}
    assert s[low - 1 : low + 2].islower() and s[up - 1 : up + 2].isupper()
    assert {k: v.status for k, v in got.items()} == {
        "ok": "ok",
        "alias": "ok",
        "lower_fasta": "ok",
        "lower_vcf": "ok",
        "missing": "contig_missing",
        "mismatch": "ref_mismatch",
        "in_n": "ref_is_N",
        "in_n_acgt": "ref_is_N",
        "into_n": "ref_is_N",
        "last": "ok",
        "past_end": "outside_contig",
        "after_end": "outside_contig",
    }
    assert got["alias"].fasta_chrom == "22" and got["alias"].chrom == "chr22"
    assert f"REF {bad}" in got["mismatch"].reason and ref_at(s, up) in got["mismatch"].reason
    assert "chrUn" in got["missing"].reason
    assert all(v.reason for v in got.values() if v.status != "ok")
    assert all(v.status in V.STATUSES for v in got.values())


def test_status_order_and_indel_limit(tmp_path, chr22_slice, genome):
    s = chr22_slice.seq
    p = covered(s, 900, 12)
    long_del = ref_at(s, p, 12)
    wrong_long = "".join(other(b) for b in long_del)
    records = [
        ("22", p, "long_del", long_del, long_del[0]),
        ("22", p, "long_ins", long_del[0], long_del[0] + "ACGTACGTACGT"),
        ("22", p, "short", long_del[:3], long_del[0]),
        ("22", p, "long_wrong", wrong_long, wrong_long[0]),
        ("chrUn", p, "long_missing", long_del, long_del[0]),
        ("22", p, "long_symbolic", long_del, "<DEL>"),
        # long alleles that trim to an SNV are not long indels
        ("22", p, "trims", long_del, long_del[:5] + other(long_del[5]) + long_del[6:]),
    ]
    got = {v.id: v.status for v in checked(tmp_path, genome, records, max_indel_len=10)}
    assert got == {
        "long_del": "indel_too_long",
        "long_ins": "indel_too_long",
        "short": "ok",
        "long_wrong": "ref_mismatch",
        "long_missing": "contig_missing",
        "long_symbolic": "symbolic_allele",
        "trims": "ok",
    }
    assert {v.id: v.status for v in checked(tmp_path, genome, records)}["long_del"] == "ok"


def test_every_alt_yields_exactly_one_variant(tmp_path, mixed_records, genome):
    records = mixed_records + [("chrUn", 10, "x", "A", "G,T"), ("22", 99_999, "y", "A", "C")]
    got = checked(tmp_path, genome, records)
    assert len(got) == n_alts(records)
    assert sorted(v.index for v in got) == list(range(len(got)))


def test_example_vcf_in_test_data(chr22_slice, genome):
    """The committed example VCF agrees with the committed FASTA."""
    got = [check_against_reference(v, genome) for v in read_vcf(chr22_slice.vcf)]
    status = {(v.id, v.alt): v.status for v in got}
    assert status.pop(("in_N", "A")) == "ref_is_N"
    assert status.pop(("sym", "<DEL>")) == "symbolic_allele"
    assert set(status.values()) == {"ok"}
