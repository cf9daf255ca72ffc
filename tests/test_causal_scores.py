"""Causal-LM scores and echo embeddings on a small hybrid Mamba-2/attention decoder (issue 15).

The model is a randomly initialised `HybridLM` (its embedding, tied to the LM head, scaled up so that its
predictions are far from uniform) saved with `save_model`. Expected numbers are computed here the slow,
obvious way: windows by `tests/naive_windows.py`, full-window log-likelihoods from `model(ids)` on each
strand, summed in float64; echo states from a `[x ; x]` pass written out by hand. Invariants: the reverse
complement of a window pair gives the same scores (Ph strand averaging), and the batch size never changes
a number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from naive_windows import naive_alt, naive_ref

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.infer import Engine, Request
from vepcli.nn.backbone import OBJECTIVES
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.hybrid import HybridLM, MambaLMConfig
from vepcli.nn.strand import echo, echo_states
from vepcli.output import read_scores
from vepcli.pipeline import ScoreSettings
from vepcli.runheader import RunHeader
from vepcli.scores import pool_span
from vepcli.scoring import POOLED, Reading, Score, ScoreInputs, get, objective_notes, register, unregister
from vepcli.scoring.plugins.embedding import emb_cos, emb_l2
from vepcli.scoring.registry import AVAILABLE
from vepcli.windows import strand_starts

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
CADUCEUS = ROOT / "fixtures" / "caduceus-hf" / "caduceus-ph-tiny"
W = 96
TOKEN = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}


def ids_of(s: str) -> torch.Tensor:
    return torch.tensor([TOKEN[c] for c in s.upper()], dtype=torch.long)


def rc_str(s: str) -> str:
    return s.upper().translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory) -> Path:
    torch.manual_seed(15)
    cfg = MambaLMConfig(
        d_model=32,
        n_layer=4,
        d_intermediate=0,
        vocab_size=12,
        max_length=1024,
        ssm_cfg={"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 1, "chunk_size": 32},
        attn_layer_idx=[3],
        attn_cfg={"num_heads": 4, "num_heads_kv": 2, "rotary_emb_dim": 8},
    )
    model = HybridLM(cfg)
    with torch.no_grad():
        model.backbone.embedding.weight.mul_(50.0)  # std 1: confident, position-dependent predictions
    return save_model(model, tmp_path_factory.mktemp("hybrid") / "model")


@pytest.fixture(scope="module")
def hybrid(hybrid_dir):
    return load_model(hybrid_dir).eval()


@pytest.fixture(scope="module")
def alleles(chr22_slice):
    """(id, normalised 1-based pos, ref, alt, ref window, alt window) of the ok alleles of the test VCF."""
    out = []
    for line in chr22_slice.vcf.read_text().splitlines():
        if line.startswith("#"):
            continue
        _, pos, vid, ref, alts = line.split("\t")[:5]
        for alt in alts.split(","):
            if alt.startswith("<") or "N" in ref.upper():
                continue
            p, r, a = trimmed(int(pos), ref.upper(), alt.upper())
            out.append((vid, p, r, a, naive_ref(chr22_slice.seq, p, W), naive_alt(chr22_slice.seq, p, r, a, W)))
    kinds = {vid for vid, *_ in out}
    assert {"snv1", "mnv", "ins", "del", "last_base"} <= kinds
    return out


def trimmed(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """The shared suffix, then the shared prefix, trimmed; an indel keeps its anchor (docs/input-rules.md)."""
    while min(len(ref), len(alt)) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while min(len(ref), len(alt)) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def window_loglik(model, seq: str) -> float:
    """sum over t >= 1 of log p(token t | tokens < t) of the whole window, from `model(ids)`, in float64."""
    ids = ids_of(seq)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[None])[0].double(), -1)
    return float(logp[:-1].gather(-1, ids[1:, None]).sum())


def naive_llr(model, ref_win: str, alt_win: str, strand_average: bool = True) -> float:
    fwd = window_loglik(model, alt_win) - window_loglik(model, ref_win)
    if not strand_average:
        return fwd
    return 0.5 * (fwd + window_loglik(model, rc_str(alt_win)) - window_loglik(model, rc_str(ref_win)))


def echo_pooled(model, seq: str, span: tuple[int, int]) -> torch.Tensor:
    """Pooled echo states written out: second half of a [x ; x] pass, both strands (RC span mirrored)."""
    s, e = span
    L = len(seq)
    both = []
    for x in (ids_of(seq), ids_of(rc_str(seq))):
        with torch.no_grad():
            h = model.hidden_states(torch.cat([x, x])[None])[0, L:].float()
        both.append(h)
    return 0.5 * (both[0][s:e].mean(0) + both[1][L - e : L - s].mean(0))


def plain_pooled(model, seq: str, span: tuple[int, int]) -> torch.Tensor:
    s, e = span
    L = len(seq)
    with torch.no_grad():
        h = model.hidden_states(torch.stack([ids_of(seq), ids_of(rc_str(seq))])).float()
    return 0.5 * (h[0, s:e].mean(0) + h[1, L - e : L - s].mean(0))


def cli_run(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def common(*extra) -> list:
    return ["--window", W, "--threads", 1, "--device", "cpu", "-q", *extra]


# ---------------------------------------------------------------- the causal llr against a naive computation


def test_strand_starts_are_the_first_differences_of_each_reading(alleles):
    for _, _, _, _, ref_win, alt_win in alleles:
        fwd = next(i for i in range(W) if ref_win[i] != alt_win[i])
        rr, ra = rc_str(ref_win), rc_str(alt_win)
        rc = next(i for i in range(W) if rr[i] != ra[i])
        assert strand_starts(ref_win, alt_win) == (fwd, rc)
    assert strand_starts("ACGT", "ACGT") == (4, 4)
    assert strand_starts("ACGT", "TCGA") == (0, 0)


@pytest.mark.parametrize("strand_average", [True, False])
def test_causal_llr_equals_full_window_loglik_difference(
    tmp_path, hybrid, hybrid_dir, chr22_slice, alleles, strand_average
):
    """SNV, MNV, insertion, deletion and an allele at the contig's end (N-padded window)."""
    out = tmp_path / "s.parquet"
    extra = [] if strand_average else ["--no-strand-average"]
    cli_run("score", chr22_slice.vcf, "-f", DATA / "chr22_slice.fa", "-m", hybrid_dir, "-o", out, *common(*extra))
    table = read_scores(out)
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(alleles)
    for (vid, _, ref, alt, ref_win, alt_win), (_, row) in zip(alleles, ok.iterrows(), strict=True):
        assert row["id"] == vid
        expected = naive_llr(hybrid, ref_win, alt_win, strand_average)
        assert row["llr"] == pytest.approx(expected, abs=1e-5), (vid, ref, alt)
    assert ok["llr"].abs().min() > 1e-3  # not vacuous: the model tells the alleles apart
    lines = json.loads(pq.read_schema(out).metadata[b"vepcli"])
    head = RunHeader.from_lines(lines)
    assert head.objective == "causal" and not head.echo
    assert head.score_notes == (("llr", get("llr").on("causal").description),)


def test_engine_loglik_sums_from_each_start(hybrid, alleles):
    """A request's sums, per (forward, RC) start pair, equal the naive partial sums of each strand."""
    _, _, _, _, ref_win, alt_win = alleles[0]
    starts = ((0, 0), (1, 5), (W // 2, W // 2 - 1), (W - 1, 3), (W, W))
    (res,) = Engine(hybrid, "cpu").run([Request(ref_win, loglik_from=starts)])
    per_pos = []
    for seq in (ref_win, rc_str(ref_win)):
        ids = ids_of(seq)
        with torch.no_grad():
            logp = torch.log_softmax(hybrid(ids[None])[0].double(), -1)
        per_pos.append(torch.cat([torch.zeros(1, dtype=torch.float64), logp[:-1].gather(-1, ids[1:, None])[:, 0]]))
    for (f, r), got in zip(starts, res.loglik, strict=True):
        want = 0.5 * (float(per_pos[0][f:].sum()) + float(per_pos[1][r:].sum()))
        assert got == pytest.approx(want, abs=1e-4)
    assert res.loglik[-1] == 0.0 and res.loglik[0] == pytest.approx(res.loglik[1] + 0.5 * float(per_pos[1][1:5].sum()))


# ---------------------------------------------------------------- echo embeddings


def test_echo_shapes_and_indices():
    ids = torch.randint(7, 11, (3, 17))
    doubled = echo(ids)
    assert doubled.shape == (3, 34)
    assert torch.equal(doubled[:, :17], ids) and torch.equal(doubled[:, 17:], ids)
    hidden = torch.arange(3 * 34 * 5, dtype=torch.float32).reshape(3, 34, 5)
    assert torch.equal(echo_states(hidden, 17), hidden[:, 17:])
    with pytest.raises(ValueError, match="34 positions"):
        echo_states(hidden[:, :33], 17)


def test_echo_pooled_vector_is_the_second_copy_pooled(hybrid, alleles):
    span = pool_span(W, W // 2, 40)
    seqs = [a[4] for a in alleles[:3]] + [a[5] for a in alleles[:3]]
    engine = Engine(hybrid, "cpu", batch_size=4, echo=True)
    got = engine.run([Request(s, pool=span) for s in seqs])
    for seq, res in zip(seqs, got, strict=True):
        torch.testing.assert_close(res.pooled, echo_pooled(hybrid, seq, span), atol=1e-5, rtol=1e-5)
        assert (res.pooled - plain_pooled(hybrid, seq, span)).abs().max() > 1e-3  # echo is not the plain vector
    (plain,) = Engine(hybrid, "cpu").run([Request(seqs[0], pool=span)])
    torch.testing.assert_close(plain.pooled, plain_pooled(hybrid, seqs[0], span), atol=1e-5, rtol=1e-5)


def test_one_echo_pass_gives_echo_vectors_and_plain_logliks(hybrid, alleles):
    """A request for both reads its log-likelihoods off the echo pass's first copy: the plain numbers."""
    _, _, _, _, ref_win, alt_win = alleles[3]
    span, starts = (10, 80), ((5, 7), (W // 2, 3))
    both = Request(ref_win, pool=span, loglik_from=starts)
    echoed = Engine(hybrid, "cpu", echo=True).run([both, Request(alt_win, loglik_from=starts)])
    plain = Engine(hybrid, "cpu").run([Request(ref_win, loglik_from=starts), Request(alt_win, loglik_from=starts)])
    torch.testing.assert_close(echoed[0].pooled, echo_pooled(hybrid, ref_win, span), atol=1e-5, rtol=1e-5)
    for a, b in zip(echoed, plain, strict=True):
        np.testing.assert_allclose(a.loglik, b.loglik, atol=1e-4)


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("use_echo", [False, True])
def test_every_score_is_strand_invariant(hybrid, alleles, use_echo):
    """The reverse complement of each ref/alt window pair (starts swapped, pooling span mirrored) gives the
    same llr, emb_l2 and emb_cos: Ph strand averaging on a causal model, plain or echo."""
    engine = Engine(hybrid, "cpu", batch_size=8, echo=use_echo)
    span = (30, 71)
    mirrored = (W - span[1], W - span[0])
    scores = ("llr", "emb_l2", "emb_cos")
    for vid, _, ref, alt, ref_win, alt_win in alleles:
        f, r = strand_starts(ref_win, alt_win)
        assert strand_starts(rc_str(ref_win), rc_str(alt_win)) == (r, f)
        fwd = engine.run([Request(ref_win, span, loglik_from=((f, r),)), Request(alt_win, span, loglik_from=((f, r),))])
        rev = engine.run(
            [
                Request(rc_str(ref_win), mirrored, loglik_from=((r, f),)),
                Request(rc_str(alt_win), mirrored, loglik_from=((r, f),)),
            ]
        )
        values = []
        for res in (fwd, rev):
            x = ScoreInputs("x", ref, alt, res[0].pooled, res[1].pooled, None, res[0].loglik[0], res[1].loglik[0])
            values.append([get(s).on("causal").compute(x) for s in scores])
        np.testing.assert_allclose(values[0], values[1], rtol=1e-4, atol=2e-4, err_msg=vid)
        torch.testing.assert_close(fwd[0].pooled, rev[0].pooled, atol=1e-5, rtol=1e-5)
    one = Engine(hybrid, "cpu", strand_average=False).run([Request(ref_win, span), Request(rc_str(ref_win), mirrored)])
    assert (one[0].pooled - one[1].pooled).abs().max() > 1e-3  # one strand alone is not symmetric


@pytest.mark.parametrize("use_echo", [False, True])
def test_snvs_score_the_same_on_the_reverse_complemented_genome(tmp_path, hybrid_dir, chr22_slice, use_echo):
    """`vepcli score` of the slice's SNVs, and of the same SNVs on the reverse-complemented slice (odd window
    and pooling span, so that each window is the other's mirror image): every score agrees."""
    G = len(chr22_slice.seq)
    (tmp_path / "rc.fa").write_text(">22\n" + rc_str(chr22_slice.seq) + "\n")
    head = "##fileformat=VCFv4.2\n##contig=<ID=22>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    fwd, rev = [], []
    for line in chr22_slice.vcf.read_text().splitlines():
        f = line.split("\t")
        if line.startswith("#") or len(f[3]) != 1 or f[4].startswith("<") or f[3] == "N":
            continue
        for alt in (a for a in f[4].split(",") if len(a) == 1):
            fwd.append(f"22\t{f[1]}\t{f[2]}\t{f[3]}\t{alt}\t.\t.\t.")
            rev.append(f"22\t{G + 1 - int(f[1])}\t{f[2]}\t{rc_str(f[3])}\t{rc_str(alt)}\t.\t.\t.")
    tables = []
    for name, rows, fasta in (("f", fwd, chr22_slice.fa), ("r", rev, tmp_path / "rc.fa")):
        (tmp_path / f"{name}.vcf").write_text(head + "\n".join(rows) + "\n")
        out = tmp_path / f"{name}.parquet"
        extra = ["--window", 97, "--pool", 40, "--threads", 1, "--device", "cpu", "-q"] + (
            ["--echo"] if use_echo else []
        )
        cli_run("score", tmp_path / f"{name}.vcf", "-f", fasta, "-m", hybrid_dir, "-o", out, *extra)
        tables.append(read_scores(out).sort_values(["id", "ref"]).reset_index(drop=True))
    assert len(tables[0]) == len(fwd) >= 4 and (tables[0]["status"] == "ok").all()
    assert tables[0]["id"].tolist() == tables[1]["id"].tolist()
    for name in ("llr", "emb_l2", "emb_cos"):
        np.testing.assert_allclose(tables[1][name], tables[0][name], rtol=1e-4, atol=1e-5, err_msg=name)


def mixed_requests(alleles) -> list[Request]:
    out = []
    for k, (_, _, _, _, ref_win, alt_win) in enumerate(alleles):
        starts = strand_starts(ref_win, alt_win)
        out += [
            Request(ref_win, pool=(20, 76), loglik_from=(starts, (1, 1))),
            Request(alt_win, loglik_from=(starts,)),
            Request(alt_win, pool=(0, W) if k % 2 else (40, 41)),
        ]
    return out


@pytest.mark.parametrize("use_echo", [False, True])
def test_batch_size_invariance(hybrid, alleles, use_echo):
    reqs = mixed_requests(alleles[:4])
    base = Engine(hybrid, "cpu", batch_size=1, echo=use_echo).run(reqs)
    for bs in (2, 5, 16):
        got = Engine(hybrid, "cpu", batch_size=bs, echo=use_echo).run(reqs)
        for a, b in zip(base, got, strict=True):
            assert (a.pooled is None) == (b.pooled is None) and len(a.loglik) == len(b.loglik)
            if a.pooled is not None:
                torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(b.loglik, a.loglik, atol=1e-4)


def test_score_output_does_not_depend_on_the_batch_size(tmp_path, hybrid_dir, chr22_slice):
    outs = []
    for bs in (1, 4):
        out = tmp_path / f"b{bs}.parquet"
        args = ["score", chr22_slice.vcf, "-f", DATA / "chr22_slice.fa", "-m", hybrid_dir, "-o", out]
        cli_run(*args, *common("--batch-size", bs, "--echo"))
        outs.append(read_scores(out))
    for name in ("llr", "emb_l2", "emb_cos"):
        np.testing.assert_allclose(outs[0][name], outs[1][name], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the commands end to end


def test_embed_echo_then_probe_then_score_with_the_probe(tmp_path, trained_hybrid):
    """`vepcli embed --echo`, `probe train` on those vectors, `score --echo --probe`, with a hybrid pretrained by
    `vepcli pretrain --arch hybrid` on the repository's DNA (conftest); plain vectors refused."""
    hybrid_dir = trained_hybrid.model
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_probe_set", DATA / "make_probe_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.build(DATA / "chr22_slice.fa", n=60, seed=0, guard=256, margin=32)
    table = tmp_path / "set.tsv"
    frame.to_csv(table, sep="\t", index=False)
    fasta = ["-f", DATA / "chr22_slice.fa", "-m", hybrid_dir, "--pool", 32]
    emb = tmp_path / "echo.parquet"
    cli_run("embed", table, *fasta, "-o", emb, "--echo", *common())
    lines = json.loads(pq.read_schema(emb).metadata[b"vepcli"])
    assert "##vepcli_echo=true" in lines and "##vepcli_objective=causal" in lines
    vectors = pq.read_table(emb).column("ref_emb").to_pylist()
    assert len(vectors) == 60 and all(len(v) == 32 for v in vectors)

    probe = tmp_path / "p.skops"
    cli_run("probe", "train", emb, "--label", "label", "-o", probe, "--kind", "logistic", "--folds", 3, "-q")
    info = json.loads(cli_run("probe", "info", probe).stdout)
    assert info["embedding"]["echo"] is True and info["embedding"]["arch"] == "hybrid"

    scored = tmp_path / "scored.tsv"
    cli_run("score", table, *fasta, "-o", scored, "--echo", "--probe", probe, *common())
    got = read_scores(scored)
    assert list(got.columns[8:12]) == ["llr", "emb_l2", "emb_cos", "probe"]
    assert got["probe"].between(0, 1).all() and got["llr"].notna().all()

    plain = tmp_path / "plain.parquet"
    cli_run("embed", table, *fasta, "-o", plain, *common())
    for argv in (
        ["score", table, *fasta, "-o", tmp_path / "x.tsv", "--probe", probe, *common()],
        ["probe", "eval", probe, plain, "--bootstrap", 0, "-q"],
    ):
        result = cli_run(*argv, ok=False)
        message = [x for x in result.stderr.splitlines() if x.strip()]
        assert result.exit_code == 1 and len(message) == 1, result.output
        assert "this run has plain embeddings (probe: echo)" in message[0] and "--pool 32 --echo," in message[0]


def test_model_info_of_a_hybrid_folder(hybrid_dir):
    facts = json.loads(cli_run("model", "info", hybrid_dir, "--json").stdout)
    assert (facts["family"], facts["objective"], facts["strands"].split()[0]) == ("mamba_hybrid", "causal LM", "ph")


# ---------------------------------------------------------------- refusals and the registry


def one_line_error(result) -> str:
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_refusals(tmp_path, hybrid, chr22_slice):
    masked = load_model(CADUCEUS).eval()
    with pytest.raises(UserError, match="--echo is for causal LMs"):
        Engine(masked, "cpu", echo=True)
    with pytest.raises(UserError, match="window log-likelihoods need a causal LM"):
        Engine(masked, "cpu").run([Request("ACGT" * 8, loglik_from=((1, 1),))])
    for req in (Request("ACGT" * 8, logp_at=(3,), mask=(3,)), Request("ACGT" * 8, pool=(0, 4), mask=(3,))):
        with pytest.raises(UserError, match="masked-LM log-probabilities need a masked LM"):
            Engine(hybrid, "cpu").run([req])
    args = ["score", chr22_slice.vcf, "-f", DATA / "chr22_slice.fa", "-m", CADUCEUS, "-o", tmp_path / "o.tsv"]
    assert "--echo is for causal LMs" in one_line_error(cli_run(*args, *common("--echo"), ok=False))
    assert not (tmp_path / "o.tsv").exists()


def test_a_score_without_a_causal_reading_is_refused_on_a_causal_model(tmp_path, hybrid_dir, chr22_slice):
    register(Score("masked_only", "test-only", frozenset({"masked_logp"}), lambda x: 0.0, default=False))
    try:
        args = ["score", chr22_slice.vcf, "-f", DATA / "chr22_slice.fa", "-m", hybrid_dir, "-o", tmp_path / "o.tsv"]
        line = one_line_error(cli_run(*args, "--scores", "llr,masked_only", *common(), ok=False))
        assert "--scores masked_only: a causal LM cannot give masked_logp" in line
    finally:
        unregister("masked_only")


def test_the_registry_reads_a_score_per_objective():
    assert set(AVAILABLE) == set(OBJECTIVES)
    llr = get("llr")
    assert llr.on("masked").description == llr.description and llr.on("masked").compute is llr.compute
    assert "Causal log-likelihood ratio" in llr.on("causal").description
    assert objective_notes(["llr", "emb_l2"], "causal") == {"llr": llr.on("causal").description}
    assert objective_notes(["llr", "emb_l2"], "masked") == {}
    assert get("emb_l2").on("causal").compute(ScoreInputs("snv", "A", "C", torch.zeros(2), torch.ones(2))) == (
        pytest.approx(emb_l2(torch.zeros(2), torch.ones(2)))
    )
    assert emb_cos(torch.ones(2), torch.ones(2)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="objectives are"):
        register(Score("x", "x", frozenset({POOLED}), lambda x: 0.0, objectives={"casual": Reading("x", frozenset())}))


def test_header_lines_round_trip_and_stay_out_for_masked_plain_runs():
    made = RunHeader(window=64, scores=("llr",), objective="causal", echo=True, score_notes=(("llr", "a, b (c)"),))
    lines = made.to_lines()
    assert lines == [
        "##vepcli_window=64",
        "##vepcli_objective=causal",
        "##vepcli_echo=true",
        "##vepcli_scores=llr",
        '##vepcli_score=<ID=llr,objective=causal,Description="a, b (c)">',
    ]
    assert RunHeader.from_lines(lines) == made
    assert RunHeader(window=64, scores=("llr",)).to_lines() == ["##vepcli_window=64", "##vepcli_scores=llr"]


def test_a_masked_plain_run_writes_none_of_the_new_lines(tmp_path, chr22_slice):
    """Caduceus outputs keep their bytes: no objective, echo or score-meaning line, no echo key in the settings."""
    out = tmp_path / "c.tsv"
    cli_run("score", chr22_slice.vcf, "-f", DATA / "chr22_slice.fa", "-m", CADUCEUS, "-o", out, *common())
    head = [x for x in out.read_text().splitlines() if x.startswith("##vepcli_")]
    assert not [x for x in head if x.split("=")[0] in ("##vepcli_objective", "##vepcli_echo", "##vepcli_score")]
    assert "##vepcli_scores=llr,emb_l2,emb_cos" in head
    read = RunHeader.from_lines(head)
    assert (read.objective, read.echo, read.score_notes) == ("masked", False, ())
    assert "echo" not in ScoreSettings().identity() and ScoreSettings(echo=True).identity()["echo"] is True
