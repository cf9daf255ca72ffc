"""Window rule: checked against an independent string-slicing version on the real chr22 slice."""

from pathlib import Path

import pytest
from naive_windows import alt_window, naive, naive_alt, naive_ref, ref_window

from vepcli.genome import Genome
from vepcli.variants import Variant, check_against_reference, read_vcf
from vepcli.windows import build_windows, changed_positions, window_start


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


@pytest.fixture(scope="module")
def genome(chr22_slice):
    with Genome(chr22_slice.fa_gz) as g:
        yield g


@pytest.fixture(scope="module")
def seq(chr22_slice):
    return chr22_slice.seq


def first_real(seq: str, start: int, n: int = 1) -> int:
    return next(p for p in range(start, len(seq)) if "N" not in seq[p - 1 : p - 1 + n].upper())


def make_variants(tmp_path: Path, genome: Genome, records) -> list[Variant]:
    header = (
        "##fileformat=VCFv4.2\n##contig=<ID=22>\n##contig=<ID=chr22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    )
    path = tmp_path / "w.vcf"
    path.write_text(header + "".join(f"{c}\t{p}\t{i}\t{r}\t{a}\t.\t.\t.\n" for c, p, i, r, a in records))
    return [check_against_reference(v, genome) for v in read_vcf(path)]


@pytest.fixture
def records(seq):
    """(chrom, pos, id, ref, alt): SNV, MNV, insertion, deletion, complex, a multi-allelic site,
    lower-case reference, and both contig ends."""
    p = [first_real(seq, x, 40) for x in (3000, 3100, 3200, 3300, 3400, 3500)]
    low = next(i + 1 for i in range(600, len(seq)) if seq[i : i + 30].islower() and "n" not in seq[i : i + 30])

    def r(pos, n=1):
        return seq[pos - 1 : pos - 1 + n].upper()

    return [
        ("22", p[0], "snv", r(p[0]), other(r(p[0]))),
        ("22", p[1], "mnv", r(p[1], 3), "".join(other(b) for b in r(p[1], 3))),
        ("22", p[2], "ins", r(p[2]), r(p[2]) + "GATTACAGATTACA"),
        ("22", p[3], "del", r(p[3], 25), r(p[3])),
        ("22", p[4], "complex", r(p[4], 3), "TTTTTTT"),
        ("22", p[5], "multi", r(p[5]), f"{other(r(p[5]))},{other(other(r(p[5])))},{r(p[5])}AC"),
        ("chr22", low, "lower", r(low, 2), r(low)),
        ("22", 1, "first", r(1), other(r(1))),
        ("22", len(seq), "last", r(len(seq)), other(r(len(seq)))),
        ("22", len(seq) - 2, "del_at_end", r(len(seq) - 2, 3), r(len(seq) - 2)),
    ]


@pytest.mark.parametrize("w", [1, 2, 101, 1000, 4096])
def test_windows_match_the_rule(tmp_path, genome, seq, records, w):
    variants = make_variants(tmp_path, genome, records)
    assert all(v.ok for v in variants)
    batch = build_windows(variants, genome, w, max_n_fraction=1.0)
    assert batch.variants == variants
    for i, v in enumerate(variants):
        ref_w, alt_w = batch.ref_seqs[batch.ref_index[i]], batch.alt_seqs[i]
        assert len(ref_w) == len(alt_w) == w
        assert ref_w == naive_ref(seq, v.norm_pos, w) == ref_window(genome, "22", v.norm_pos, w)
        assert alt_w == naive_alt(seq, v.norm_pos, v.norm_ref, v.norm_alt, w)
        assert alt_w == alt_window(genome, v.fasta_chrom, v.norm_pos, v.norm_ref, v.norm_alt, w)
        assert batch.ref_keys[batch.ref_index[i]] == ("22", v.norm_pos - 1 - w // 2)


def test_variant_sits_at_the_centre(tmp_path, genome, seq, records):
    w = 1001
    c = w // 2
    for v in build_windows(make_variants(tmp_path, genome, records), genome, w, max_n_fraction=1.0).variants:
        i = v.index
        batch = build_windows([v], genome, w, max_n_fraction=1.0)
        ref_w, alt_w = batch.ref_seqs[0], batch.alt_seqs[0]
        assert ref_w[c : c + len(v.norm_ref)] == seq[v.norm_pos - 1 : v.norm_pos - 1 + len(v.norm_ref)].upper(), i
        assert alt_w[c : c + len(v.norm_alt)] == v.norm_alt
        assert alt_w[:c] == ref_w[:c]  # the left flank never moves


def test_snv_and_mnv_differ_only_at_changed_positions(tmp_path, genome, records):
    w = 500
    batch = build_windows(make_variants(tmp_path, genome, records), genome, w)
    seen = set()
    for i, v in enumerate(batch.variants):
        ref_w, alt_w = batch.ref_seqs[batch.ref_index[i]], batch.alt_seqs[i]
        differ = [j for j in range(w) if ref_w[j] != alt_w[j]]
        if v.kind in ("snv", "mnv"):
            seen.add(v.kind)
            assert differ == list(batch.changed[i]) == list(range(w // 2, w // 2 + len(v.norm_ref)))
        else:
            assert batch.changed[i] == range(0)
    assert seen == {"snv", "mnv"}


def test_deletion_extends_right_and_insertion_drops_right(tmp_path, genome, seq, records):
    w, c = 300, 150
    variants = {v.id: v for v in make_variants(tmp_path, genome, records) if v.alt != "."}
    dele, ins = variants["del"], variants["ins"]
    assert (dele.kind, ins.kind) == ("del", "ins")
    d_ref, d_alt = (
        ref_window(genome, "22", dele.norm_pos, w),
        alt_window(genome, "22", dele.norm_pos, dele.norm_ref, dele.norm_alt, w),
    )
    gone = len(dele.norm_ref) - 1
    # after the anchor base, the alt window continues with the bases after the deleted ones,
    # reaching `gone` bases past the ref window's right end
    end0 = dele.norm_pos - 1 - c + w
    assert d_alt[c + 1 :] == naive(seq, dele.norm_pos + gone, end0 + gone)
    assert d_alt[-gone:] == naive(seq, end0, end0 + gone) != d_ref[-gone:]
    i_ref, i_alt = (
        ref_window(genome, "22", ins.norm_pos, w),
        alt_window(genome, "22", ins.norm_pos, ins.norm_ref, ins.norm_alt, w),
    )
    added = len(ins.norm_alt) - 1
    assert i_alt[c + 1 + added :] == i_ref[c + 1 : w - added]


def test_contig_edges_are_n_padded(tmp_path, genome, seq, records):
    w = 1000
    variants = {v.id: v for v in make_variants(tmp_path, genome, records)}
    first, last = variants["first"], variants["last"]
    batch = build_windows([first, last], genome, w)
    assert batch.ref_seqs[0] == "N" * (w // 2) + seq[: w - w // 2].upper()
    assert batch.alt_seqs[0] == "N" * (w // 2) + first.alt + seq[1 : w - w // 2].upper()
    assert batch.ref_seqs[1] == seq[len(seq) - 1 - w // 2 :].upper() + "N" * (w - w // 2 - 1)
    assert batch.alt_seqs[1][w // 2] == last.alt and batch.alt_seqs[1][w // 2 + 1 :] == "N" * (w - w // 2 - 1)
    assert window_start(1, w) == -(w // 2)


def test_lower_case_reference_is_upper_in_windows(tmp_path, genome, seq, records):
    v = next(v for v in make_variants(tmp_path, genome, records) if v.id == "lower")
    assert v.ok and v.fasta_chrom == "22"
    assert seq[v.pos - 1 : v.pos + 20].islower()
    batch = build_windows([v], genome, 41)
    assert batch.ref_seqs[0][20:41] == seq[v.pos - 1 : v.pos + 20].upper()
    assert batch.ref_seqs[0].isupper() and batch.alt_seqs[0].isupper()


def test_sharing_gives_the_same_windows(tmp_path, genome, records):
    w = 777
    variants = make_variants(tmp_path, genome, records)
    shared = build_windows(variants, genome, w)
    alone = build_windows(variants, genome, w, share=False)
    assert alone.ref_index == list(range(len(variants)))
    assert len(alone.ref_seqs) == len(variants)
    starts = {(v.fasta_chrom, v.norm_pos - 1 - w // 2) for v in variants}
    assert len(shared.ref_seqs) == len(starts) < len(variants)  # the multi-allelic site shares
    for i in range(len(variants)):
        assert shared.ref_seqs[shared.ref_index[i]] == alone.ref_seqs[alone.ref_index[i]]
        assert shared.alt_seqs[i] == alone.alt_seqs[i]
    multi = [i for i, v in enumerate(variants) if v.id == "multi" and v.kind == "snv"]
    assert len(multi) == 2 and shared.ref_index[multi[0]] == shared.ref_index[multi[1]]


def test_non_ok_variants_are_skipped(tmp_path, genome, records):
    variants = make_variants(tmp_path, genome, records + [("chrUn", 5, "gone", "A", "C")])
    batch = build_windows(variants, genome, 64)
    assert variants[-1].status == "contig_missing"
    assert batch.variants == variants[:-1]


def test_too_many_n(tmp_path, genome, seq):
    run = seq.index("N" * 6000)  # 0-based start of the longest N run
    pos = run  # 1-based: the last real base before the run
    assert seq[pos - 1] != "N"
    w = 1000
    edge = ("22", pos, "edge", seq[pos - 1].upper(), other(seq[pos - 1]))
    variants = make_variants(tmp_path, genome, [edge])
    frac = naive_ref(seq, pos, w).count("N") / w
    assert 0.4 < frac <= 0.5  # the right half of the window is in the run
    assert build_windows(variants, genome, w).variants == variants  # default limit 0.5
    assert variants[0].ok
    batch = build_windows(variants, genome, w, max_n_fraction=0.4)
    assert batch.variants == [] and batch.ref_seqs == []
    assert variants[0].status == "too_many_N" and "N" in variants[0].reason


def test_windows_built_in_blocks_match_one_pass(tmp_path, genome, records):
    """score builds windows block by block: the blocks' windows are the one-pass windows, in order."""
    variants = make_variants(tmp_path, genome, records + [("chrUn", 5, "gone", "A", "C")])
    w = 200
    whole = build_windows(variants, genome, w)
    chunks = [(variants[i : i + 4], build_windows(variants[i : i + 4], genome, w)) for i in range(0, len(variants), 4)]
    assert [len(c) for c, _ in chunks] == [4, 4, 4, 1]
    assert [v for c, _ in chunks for v in c] == variants
    alts = [a for _, b in chunks for a in b.alt_seqs]
    refs = [b.ref_seqs[j] for _, b in chunks for j in b.ref_index]
    assert alts == whole.alt_seqs
    assert refs == [whole.ref_seqs[j] for j in whole.ref_index]


def test_changed_positions():
    assert changed_positions("snv", "A", 10) == range(5, 6)
    assert changed_positions("mnv", "ACG", 10) == range(5, 8)
    assert changed_positions("mnv", "ACGTAC", 8) == range(4, 8)  # clipped to the window
    assert changed_positions("ins", "A", 10) == range(0)
    assert changed_positions("del", "AC", 10) == range(0)
