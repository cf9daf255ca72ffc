"""`vepcli finetune` on a hybrid (causal) backbone: the Ph two-pass strand average makes the head's features
strand-invariant, plain and echo states alike; echo states see both sides of a base while plain ones do
not; an end-to-end run with and without --echo on the model `trained_hybrid` pretrained on the test DNA;
--echo refused for a masked model and a head trained on echo states refused without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.finetune import ScoreHead, load_finetuned
from vepcli.finetune.model import FinetuneNet, Head, pooled_strand_average
from vepcli.nn.checkpoint import load_model
from vepcli.nn.strand import read_states
from vepcli.nn.tokenizer import batch_encode, reverse_complement
from vepcli.scores import pool_span
from vepcli.train.report import read_metrics

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parent / "data"
FASTA = DATA / "chr22_slice.fa"
CADUCEUS_PH = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf" / "caduceus-ph-tiny"


@pytest.fixture
def snvs(labelled_snvs) -> Path:
    return labelled_snvs


def windows(n: int, width: int) -> list[str]:
    seq = "".join(line.strip() for line in FASTA.read_text().splitlines()[1:]).upper()
    rng = np.random.default_rng(3)
    out = []
    while len(out) < n:
        s = int(rng.integers(1000, len(seq) - width - 1000))
        if "N" not in seq[s : s + width]:
            out.append(seq[s : s + width])
    return out


@pytest.mark.parametrize("echo", [False, True])
def test_pooled_features_are_strand_invariant(trained_hybrid, echo):
    lm = load_model(trained_hybrid.model).eval()
    width = 41
    span = pool_span(width, width // 2, 11)  # symmetric about the centre: the RC pools the same bases
    seqs = windows(5, width)
    with torch.no_grad():
        fwd = pooled_strand_average(lm, batch_encode(seqs), span, echo)
        rev = pooled_strand_average(lm, batch_encode([reverse_complement(s) for s in seqs]), span, echo)
        one = pooled_strand_average(lm, batch_encode(seqs), (0, width), echo)
    assert torch.allclose(fwd, rev, atol=1e-5), (fwd - rev).abs().max()
    assert not torch.allclose(fwd, one, atol=1e-3)  # the span matters: not a trivially constant vector


def test_echo_states_see_both_sides_and_plain_states_one(trained_hybrid):
    lm = load_model(trained_hybrid.model).eval()
    (seq,) = windows(1, 40)
    changed = seq[:-1] + "ACGT"[("ACGT".index(seq[-1]) + 1) % 4]  # only the last base differs
    a, b = batch_encode([seq]), batch_encode([changed])
    with torch.no_grad():
        plain = read_states(lm, a, echo_pass=False), read_states(lm, b, echo_pass=False)
        echoed = read_states(lm, a, echo_pass=True), read_states(lm, b, echo_pass=True)
        full = lm.hidden_states(torch.cat([a, a], -1))
    assert echoed[0].shape == plain[0].shape == (1, 40, lm.hidden_width)
    assert torch.equal(echoed[0], full[:, 40:])  # the second copy's states, aligned to the input
    assert torch.equal(plain[0][:, :-1], plain[1][:, :-1])  # causal: nothing before the change moves
    assert (echoed[0][:, 0] - echoed[1][:, 0]).abs().max() > 1e-4  # echo: the first base sees the last


def run_finetune(snvs: Path, model: Path, out: Path, *extra: str):
    args = ["finetune", str(snvs), "-f", str(FASTA), "-m", str(model), "-o", str(out), "--label", "label",
            "--window", "32", "--pool", "32", "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--backbone-lr",
            "1e-3", "--head-hidden", "16", "--val-every", "2", "--log-every", "1", "-q", *extra]  # fmt: skip
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("echo", [False, True])
def test_finetune_runs_on_a_hybrid(trained_hybrid, snvs, tmp_path, echo):
    extra = ("--echo",) if echo else ()
    result = run_finetune(snvs, trained_hybrid.model, tmp_path / "run", *extra)
    assert result.exit_code == 0, result.output
    model, head, meta = load_finetuned(tmp_path / "run" / "model")
    assert meta["base_model"]["arch"] == "hybrid" and meta["base_model"]["d_model"] == 32
    assert meta.get("echo", False) is echo and ("echo" in meta["training"]["settings"]) is echo
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert rows[-1]["step"] == 8 and all(np.isfinite(r["train_loss"]) for r in rows)
    base_sd, ft_sd = load_model(trained_hybrid.model).state_dict(), model.state_dict()
    assert any(not torch.equal(base_sd[k], ft_sd[k]) for k in base_sd)  # the backbone was fine-tuned
    # the head on the fine-tuned backbone's pooled features gives the network's own probabilities
    net = FinetuneNet(model.eval(), head.eval(), "variants", "ref-alt-diff", (0, 32), echo=echo)
    seqs = windows(4, 32)
    alts = [s[:16] + "ACGT"[("ACGT".index(s[16]) + 1) % 4] + s[17:] for s in seqs]
    with torch.no_grad():
        logits = net(batch_encode(seqs), batch_encode(alts))
    assert torch.isfinite(logits).all()
    if echo:
        with pytest.raises(UserError, match="add --echo"):
            ScoreHead.load(tmp_path / "run" / "model", 32, 32)
        assert ScoreHead.load(tmp_path / "run" / "model", 32, 32, echo=True) is not None
        settings = json.loads((tmp_path / "run" / "model" / "finetune.json").read_text())["training"]["settings"]
        assert settings["echo"] is True
    else:
        with pytest.raises(UserError, match="echo states"):
            ScoreHead.load(tmp_path / "run" / "model", 32, 32, echo=True)


def test_echo_is_refused_for_a_masked_model(snvs, tmp_path):
    result = run_finetune(snvs, CADUCEUS_PH, tmp_path / "x", "--echo")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "--echo is for causal LMs" in result.stderr and not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="--echo is for causal LMs"):
        FinetuneNet(load_model(CADUCEUS_PH), Head(24, 0, 2), "variants", "ref", (0, 8), echo=True)


@pytest.mark.parametrize("echo", [False, True])
def test_finetuning_pools_what_the_scoring_engine_pools(trained_hybrid, echo):
    """The head is trained on the vectors `vepcli score`/`embed` give it later: plain and echo alike."""
    from vepcli.infer import Engine, Request

    lm = load_model(trained_hybrid.model).eval()
    seqs, span = windows(5, 48), (8, 40)
    with torch.no_grad():
        trained_on = pooled_strand_average(lm, batch_encode(seqs), span, echo)
    scored = Engine(lm, device="cpu", batch_size=2, echo=echo).run([Request(s, pool=span) for s in seqs])
    torch.testing.assert_close(torch.stack([r.pooled for r in scored]), trained_on, atol=1e-6, rtol=0)
