"""DNA-xLSTM in every command (issue 16): `vepcli pretrain --arch xlstm-ph|xlstm-ps|xlstm-causal` trains one on the
repository's own DNA, and `score`, `embed`, `probe` and `finetune` run on what it wrote, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.nn.checkpoint import load_model
from vepcli.nn.tokenizer import batch_encode, reverse_complement
from vepcli.nn.xlstm import XLSTMLM
from vepcli.output import read_scores

DATA = Path(__file__).resolve().parent / "data"
FASTA = DATA / "chr22_slice.fa"
VAL_REGION = "22:80001-90000"  # held out, as the hybrid's fixture (conftest)


def cli_run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def pretrain(tmp_path_factory, arch: str) -> Path:
    run = tmp_path_factory.mktemp(arch) / "run"
    cli_run(
        "pretrain", "--arch", arch, "--fasta", DATA / "chr22_slice.fa.gz", "--val-region", VAL_REGION,
        "--d-model", 32, "--n-layer", 2, "--slstm-layers", 1, "--seq-len", 128, "--batch-size", 8, "--steps", 20,
        "--lr", 4e-3, "--val-every", 10, "--val-windows", 8, "--checkpoint-every", 10, "-q", "-o", run,
    )  # fmt: skip
    return run / "model"


@pytest.fixture(scope="module")
def xlstm_ph(tmp_path_factory) -> Path:
    return pretrain(tmp_path_factory, "xlstm-ph")


@pytest.fixture(scope="module")
def xlstm_causal(tmp_path_factory) -> Path:
    return pretrain(tmp_path_factory, "xlstm-causal")


def test_pretrain_writes_a_model_of_the_arch_it_was_asked_for(xlstm_ph, xlstm_causal) -> None:
    ph, causal = load_model(xlstm_ph), load_model(xlstm_causal)
    assert isinstance(ph, XLSTMLM) and (ph.arch, ph.objective, ph.strands) == ("xlstm-ph", "masked", "ph")
    assert (causal.objective, causal.trained_length) == ("causal", 128)
    assert ph.scan_backend("cpu") == "xlstm-torch"
    assert "".join(ph.describe()["blocks"]) == "ms"  # --slstm-layers 1: mLSTM, then sLSTM


def test_score_embed_probe_on_a_masked_xlstm(tmp_path, xlstm_ph, labelled_snvs) -> None:
    common = ["-f", FASTA, "-m", xlstm_ph, "--window", 128, "--pool", 32, "--threads", 1, "-q"]
    emb = tmp_path / "emb.parquet"
    cli_run("embed", labelled_snvs, *common, "-o", emb)
    assert all(len(v) == 32 for v in pq.read_table(emb).column("ref_emb").to_pylist())
    probe = tmp_path / "p.skops"
    cli_run("probe", "train", emb, "--label", "label", "-o", probe, "--kind", "logistic", "--folds", 3, "-q")
    scored = tmp_path / "scored.tsv"
    cli_run("score", labelled_snvs, *common, "--probe", probe, "-o", scored)
    got = read_scores(scored)
    assert len(got) == 48 and got["llr"].notna().all() and got["probe"].between(0, 1).all()
    assert (got["emb_l2"] > 0).all()


def test_score_on_a_causal_xlstm_reads_window_likelihoods(tmp_path, xlstm_causal) -> None:
    out = tmp_path / "scored.tsv"
    cli_run("score", DATA / "chr22_slice.vcf", "-f", DATA / "chr22_slice.fa.gz", "-m", xlstm_causal, "--window", 128,
            "--threads", 1, "-q", "-o", out)  # fmt: skip
    assert "##vepcli_objective=causal" in out.read_text()
    got = read_scores(out)
    indels = got[(got["ref"].str.len() != got["alt"].str.len()) & got["alt"].str.fullmatch("[ACGT]+")]
    assert len(indels) and indels["llr"].notna().all()  # the causal llr scores indels too


def test_finetune_a_masked_xlstm(tmp_path, xlstm_ph, labelled_snvs) -> None:
    args = ["finetune", labelled_snvs, "-f", FASTA, "-m", xlstm_ph, "-o", tmp_path / "ft", "--label", "label",
            "--window", 64, "--pool", 32, "--epochs", 2, "--batch-size", 8, "--lr", 3e-3, "--backbone-lr", 1e-3,
            "--head-hidden", 16, "--val-every", 2, "--log-every", 1, "-q"]  # fmt: skip
    cli_run(*args)
    tuned = load_model(tmp_path / "ft" / "model")
    assert isinstance(tuned, XLSTMLM) and tuned.arch == "xlstm-ph"
    scored = tmp_path / "scored.tsv"
    cli_run("score", labelled_snvs, "-f", FASTA, "-m", tmp_path / "ft" / "model", "--window", 64, "--pool", 32, "-q",
            "--threads", 1, "-o", scored)  # fmt: skip
    assert read_scores(scored)["finetune"].between(0, 1).all()


def test_ps_xlstm_from_pretrain_is_exactly_strand_equivariant(tmp_path_factory) -> None:
    model = load_model(pretrain(tmp_path_factory, "xlstm-ps")).eval()
    seq = "ACGTTGCAAGGCTTAACGTAGGCATTACGA" * 2
    with torch.no_grad():
        h = model.hidden_states(batch_encode([seq]))
        h_rc = model.hidden_states(batch_encode([reverse_complement(seq)]))
    torch.testing.assert_close(h_rc, h.flip(1).flip(-1), atol=1e-5, rtol=0)
