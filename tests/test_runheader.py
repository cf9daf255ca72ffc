"""The run header: written and read by one type, digests compared in full or by the prefix a file shows."""

from __future__ import annotations

import pytest

from vepcli.errors import UserError
from vepcli.runheader import ModelRecord, Record, RunHeader, same_digest

FULL = "ab" * 32  # a sha256 in hex


def header(**kw) -> RunHeader:
    base = dict(
        version="1.2.3",
        command="vepcli score in.vcf -o out.vcf",
        model=ModelRecord("/m/dir,with comma", "caduceus", 128, 4, "cafe0123", FULL),
        window=512,
        scan="cpu",
        pool=1536,
        strand_average=True,
        scores=("llr", "emb_l2"),
        settings_hash="0123456789abcdef",
        input_sha256=FULL,
        fasta_sha256="cd" * 32,
    )
    return RunHeader(**{**base, **kw})


def test_lines_are_the_ones_vepcli_writes():
    lines = header(shard=(2, 3), embedding=True, supervised=(Record("probe", {"path": "p.skops", "sha256": "ef" * 8}),))
    assert lines.to_lines() == [
        "##vepcli_version=1.2.3",
        "##vepcli_command=vepcli score in.vcf -o out.vcf",
        "##vepcli_model=<path=/m/dir,with comma,arch=caduceus,d_model=128,n_layer=4,config_hash=cafe0123,"
        f"weights_sha256={FULL[:16]}>",
        "##vepcli_window=512",
        "##vepcli_scan=cpu",
        "##vepcli_pool=1536",
        "##vepcli_strand_average=true",
        "##vepcli_scores=llr,emb_l2",
        "##vepcli_settings_hash=0123456789abcdef",
        f"##vepcli_input_sha256={FULL[:16]}",
        f"##vepcli_fasta_sha256={'cd' * 8}",
        "##vepcli_shard=2/3",
        "##vepcli_embedding=<d_model=128,pool=1536,config_hash=cafe0123,window=512>",
        f"##vepcli_probe=<path=p.skops,sha256={'ef' * 8}>",
    ]


def test_read_back_is_the_header_with_shown_digests():
    made = header(shard=(1, 2), scores=())
    read = RunHeader.from_lines(["##fileformat=VCFv4.2", "##contig=<ID=22>", *made.to_lines()])
    assert read.to_lines() == made.to_lines()
    assert read.model.path == "/m/dir,with comma" and read.scores == () and read.shard == (1, 2)
    assert read.model.weights_sha256 == FULL[:16] and same_digest(read.model.weights_sha256, FULL)


def test_digests_compare_in_full_or_by_the_shown_prefix():
    assert same_digest(FULL, FULL) and same_digest(FULL[:16], FULL) and same_digest(FULL, FULL.upper())
    assert not same_digest(FULL[:16], "ab" * 7 + "00" + "ab" * 24)
    assert not same_digest(FULL[:8], FULL)  # too short to name anything
    assert not same_digest("", FULL)


def test_missing_lines_read_as_none_and_a_bad_shard_is_refused():
    assert RunHeader.from_lines(["##vepcli_window=64"]) == RunHeader(window=64)
    with pytest.raises(UserError, match=r"part.tsv: bad line '##vepcli_shard=x/2'; expected"):
        RunHeader.from_lines(["##vepcli_shard=x/2"], "part.tsv")
