"""`vepcli pretrain --arch hybrid`: the next-token loss against a naive computation, a falling loss on real DNA
with a loadable causal model, the optimiser's groups, the hybrid's options,
the causal k-mer baseline on a hand-checkable sequence, and the model card of a causal model. Resume,
the batch split and torchrun are test_pretrain.py's tests, run on a hybrid too."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.nn.checkpoint import load_model
from vepcli.nn.hybrid import HybridLM
from vepcli.nn.tokenizer import PAD, encode
from vepcli.train.baseline import causal_kmer_baseline
from vepcli.train.causal import causal_lm_sums, causal_pair, next_token_targets
from vepcli.train.config import PretrainConfig, run_identity
from vepcli.train.data import split_intervals, tile_windows
from vepcli.train.distributed import Dist
from vepcli.train.engine import Placement
from vepcli.train.lmtask import build_model, evaluate
from vepcli.train.masking import IGNORE
from vepcli.train.optim import param_groups
from vepcli.train.report import read_metrics

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / "tests" / "data" / "chr22_slice.fa.gz"
VAL_REGION = "22:80001-90000"


# ------------------------------------------------------------------------------------- the loss
def test_causal_loss_equals_a_naive_computation():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 16, generator=gen, dtype=torch.float64)
    ids = encode("ACGTNACGTTGCANNACGTAACCGGTT")  # Ns: neither a target nor a real input
    pairs = [causal_pair(ids[i : i + 9]) for i in (0, 9, 18)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))
    y = torch.from_numpy(np.stack([p[1] for p in pairs]))
    assert ((x == PAD) == (y == IGNORE)).all() and (x[y != IGNORE] == y[y != IGNORE]).all()
    total, right, n = 0.0, 0, 0
    for b in range(3):
        for t in range(8):  # position t predicts the base at t + 1
            target = int(y[b, t + 1])
            if target == IGNORE:
                continue
            row = logits[b, t]
            total += float(torch.logsumexp(row, 0) - row[target])
            right += int(int(row.argmax()) == target)
            n += 1
    ce, correct, count = causal_lm_sums(logits, y)
    assert count == n == next_token_targets(y) == 24 - 3  # 27 - 3 window starts, minus 3 Ns after a start
    assert int(correct) == right and float(ce) == pytest.approx(total, rel=1e-6)


# ------------------------------------------------------------------------------------- training
def test_hybrid_pretrains_on_real_dna_and_loads(trained_hybrid):
    rows = read_metrics(trained_hybrid.run / "metrics.csv")
    losses = [r["train_loss"] for r in rows]
    assert len(rows) == 40 and math.isclose(losses[0], math.log(16), abs_tol=0.1)  # logits ~ 0 at the start
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses
    vals = [r for r in rows if r["val_loss"] is not None]
    assert [r["step"] for r in vals] == [20, 40] and "val_acc_masked" not in rows[0]
    model = load_model(trained_hybrid.model)
    assert isinstance(model, HybridLM) and model.objective == "causal" and model.trained_length == 128
    cfg = model.config
    assert cfg.attn_layer_idx == [1] and cfg.d_intermediate == 32 and cfg.ssm_cfg["headdim"] == 16
    record = json.loads((trained_hybrid.model / "training.json").read_text())
    assert record["arch"] == "hybrid" and record["settings"]["attn_layers"] == [1]
    assert record["parameters"] == model.num_parameters()
    # the loaded model scores the validation windows as the run did at its last step
    val = vals[-1]
    genome = Genome(str(FASTA))
    _, val_iv = split_intervals(genome, None, None, [VAL_REGION])
    data = [causal_pair(ids) for _, ids in tile_windows(genome, val_iv, 128, 16)]
    figures = evaluate(model, data, Placement(Dist(), torch.device("cpu"), None, 4, 1), "causal")
    assert figures["val_loss"] == pytest.approx(val["val_loss"], rel=1e-5)
    assert figures["val_acc"] == pytest.approx(val["val_acc"], abs=1e-9)
    assert 0.3 < figures["val_acc"] < 1 and figures["val_loss"] < 1.4


def test_param_groups_exempt_the_ssm_parameters_norms_biases_and_embeddings():
    model = build_model(PretrainConfig(fasta="-", output="-", arch="hybrid", d_model=16, n_layer=2, headdim=8))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}  # tied lm_head is the embedding: listed once
    in_decay = {names[id(p)].split(".", 3)[-1] for p in decay["params"]}
    in_none = {names[id(p)] for p in no_decay["params"]}
    assert in_decay == {"mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.out_proj.weight"}
    exempt = ("dt_bias", "A_log", ".D", "bias", "norm.weight", "norm_f.weight", "embedding.weight")
    assert all(n.endswith(exempt) for n in in_none)
    for name in ("dt_bias", "A_log", ".D", "mixer.norm.weight", "embedding.weight", "in_proj.bias"):
        assert any(n.endswith(name) for n in in_none), name
    listed = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(listed) == len(set(listed)) == len({id(p) for p in model.parameters()})


# ------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("n_layer", "attn"), [(1, (0,)), (4, (3,)), (8, (7,)), (12, (7, 11)), (16, (7, 15))])
def test_the_attention_layers_default_to_the_last_of_every_eight(n_layer, attn):
    cfg = PretrainConfig(fasta="-", output="-", arch="hybrid", n_layer=n_layer)
    assert cfg.attn_layers == attn and cfg.headdim == 64 and cfg.attn_heads == 2 and cfg.d_intermediate == 0
    model = build_model(cfg)
    kinds = [type(layer.mixer).__name__ for layer in model.backbone.layers]
    assert [i for i, k in enumerate(kinds) if k == "CausalSelfAttention"] == list(attn)


def test_hybrid_options_are_checked_and_absent_from_caduceus_runs():
    caduceus = PretrainConfig(fasta="-", output="-")
    assert not {"headdim", "attn_layers", "attn_heads", "d_intermediate"} & set(run_identity(caduceus))
    assert {"headdim", "attn_layers", "attn_heads", "d_intermediate"} <= set(
        run_identity(PretrainConfig(fasta="-", output="-", arch="hybrid"))
    )
    with pytest.raises(UserError, match="--headdim is an option of --arch hybrid only"):
        PretrainConfig(fasta="-", output="-", headdim=16)
    for bad, match in (
        ({"headdim": 48}, "--headdim 48 must divide"),
        ({"attn_layers": (4,)}, r"--attn-layers \[4\]"),
        ({"attn_heads": 3}, "--attn-heads 3 must divide"),
    ):
        with pytest.raises(UserError, match=match):
            PretrainConfig(fasta="-", output="-", arch="hybrid", d_model=64, n_layer=4, **bad)
    none = PretrainConfig(fasta="-", output="-", arch="hybrid", n_layer=2, attn_layers=())
    assert none.attn_layers == () and build_model(none).config.attn_layer_idx == []


# ------------------------------------------------------------------------------------- baseline
def test_causal_kmer_baseline_on_a_hand_checkable_sequence():
    """Training `ACGT` x 50: after A always C, and so on. Validation `ACGTACGTAC` and `TNCG`: 9 + 2 targets
    (not the windows' first bases, not the N); after the N the context is gone and the baseline backs off."""
    res = causal_kmer_baseline([encode("ACGT" * 50)], [encode("ACGTACGTAC"), encode("TNCG")], ks=(0, 1, 2))
    # k = 0: the most frequent training base, a tie broken to A; two of the 11 targets are A; p = 1/4
    assert res[0]["acc"] == pytest.approx(2 / 11) and res[0]["loss"] == pytest.approx(math.log(4))
    # k = 1: right everywhere but the C after the N (backed off to k = 0); add-one probabilities:
    # A->C, C->G, G->T seen 50 times (51/54), T->A 49 times (50/53)
    assert res[1]["acc"] == pytest.approx(10 / 11)
    expected = -(8 * math.log(51 / 54) + 2 * math.log(50 / 53) + math.log(1 / 4)) / 11
    assert res[1]["loss"] == pytest.approx(expected)
    assert res[2]["acc"] == pytest.approx(10 / 11)  # contexts cut by a window's start back off to k = 1


def test_kmer_baseline_and_model_card_of_a_causal_model(trained_hybrid, tmp_path: Path):
    args = ["--fasta", str(FASTA), "--val-region", VAL_REGION, "--seq-len", "128", "--val-windows", "16"]
    runner = CliRunner()
    out = runner.invoke(cli, ["tools", "kmer-baseline", *args, "--max-k", "8", "--model", str(trained_hybrid.model),
                              "-o", str(tmp_path / "kb.json")], catch_exceptions=False)  # fmt: skip
    assert out.exit_code == 0, out.output
    base = json.loads((tmp_path / "kb.json").read_text())
    assert base["objective"] == "causal" and sorted(map(int, base["by_k"])) == list(range(9))
    scored = next(iter(base["models"].values()))
    val = [r for r in read_metrics(trained_hybrid.run / "metrics.csv") if r["val_loss"] is not None][-1]
    assert scored["val_acc"] == pytest.approx(val["val_acc"]) and "val_acc_masked" not in scored
    flag = runner.invoke(cli, ["tools", "kmer-baseline", *args, "--max-k", "2", "--objective", "causal"])
    assert flag.exit_code == 0 and "next-base accuracy" in flag.output
    clash = runner.invoke(
        cli, ["tools", "kmer-baseline", *args, "--objective", "masked", "--model", str(trained_hybrid.model)]
    )
    assert clash.exit_code == 1 and "causal language model" in clash.output
    card = runner.invoke(cli, ["tools", "model-card", str(trained_hybrid.run), str(tmp_path / "kb.json"),
                               str(tmp_path / "card")], catch_exceptions=False)  # fmt: skip
    assert card.exit_code == 0, card.output
    text = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert "next-token accuracy vs the best causal k-mer baseline" in text and "[MASK] targets" not in text
    assert f"**{val['val_acc']:.4f}**" in text
    assert isinstance(load_model(tmp_path / "card"), HybridLM)
