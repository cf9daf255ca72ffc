"""`vepcli finetune`: a strand-invariant head, exact resume, DDP = gradient accumulation, the model directory
and the probability `score` would add from it, sequence classification on real DNA, VCF labels, multi-class
labels with covariates on Ph, splits and one-line errors.

Real DNA throughout: the chr22 slice and the labelled SNV set of tests/data/make_probe_set.py (SNVs in
soft-masked repeats vs unique sequence). Models: the tiny random-weight fixtures (PS and Ph). Windows are
short (32-65 bp) so that the file runs in about 25 s of one core; the comparison with the frozen-embedding
probe at 256 bp is `python -m vepcli.finetune.compare` (figures in docs/finetuning.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.features import make_labels, one_hot
from vepcli.finetune import ScoreHead, head_probabilities, head_probability, load_finetuned
from vepcli.finetune.config import FinetuneConfig
from vepcli.finetune.data import split_examples
from vepcli.finetune.loop import finetune
from vepcli.finetune.model import FinetuneNet, Head
from vepcli.genome import Genome
from vepcli.infer import Engine, Request
from vepcli.nn.checkpoint import load_model
from vepcli.nn.tokenizer import batch_encode, reverse_complement
from vepcli.scores import pool_span
from vepcli.train.report import read_metrics
from vepcli.variants import check_against_reference, read_variants
from vepcli.windows import build_windows

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parent / "data"
FASTA = DATA / "chr22_slice.fa"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md
MODELS = {"ps": FIXTURES / "caduceus-ps-tiny", "ph": FIXTURES / "caduceus-ph-tiny"}


def _probe_set(n: int, seed: int = 0) -> pd.DataFrame:
    spec = importlib.util.spec_from_file_location("make_probe_set", DATA / "make_probe_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(FASTA, n=n, seed=seed, guard=512, margin=64)


@pytest.fixture(scope="module")
def snvs(tmp_path_factory) -> Path:
    """48 labelled SNVs on the real slice with a noise covariate (tissue) and a 3-class label."""
    d = tmp_path_factory.mktemp("ft")
    frame = _probe_set(48)
    frame["kind"] = np.where(
        frame["label"] == 1, "repeat", np.where(frame["distance_to_boundary"] > 500, "deep", "near")
    )
    frame.to_csv(d / "snvs.tsv", sep="\t", index=False)
    return d / "snvs.tsv"


def small(snvs: Path, out: Path, **kw) -> FinetuneConfig:
    settings = dict(
        train=str(snvs),
        fasta=str(FASTA),
        model=str(MODELS["ps"]),
        output=str(out),
        label="label",
        window=32,
        pool=32,
        epochs=2,
        batch_size=8,
        lr=3e-3,
        backbone_lr=1e-3,
        head_hidden=16,
        val_every=2,
        checkpoint_every=2,
        keep_checkpoints=0,
        log_every=1,
        patience=0,
        quiet=True,
    )
    settings.update(kw)
    return FinetuneConfig(**settings)


# ------------------------------------------------------------------ strand invariance


def _windows(n: int, width: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """Ref windows of real sequence and alt windows with a different base at width // 2."""
    seq = next(iter({k: v for k, v in _read(FASTA).items()}.values())).upper()
    rng = np.random.default_rng(seed)
    refs, alts = [], []
    while len(refs) < n:
        s = int(rng.integers(1000, len(seq) - width - 1000))
        ref = seq[s : s + width]
        if "N" in ref:
            continue
        c = width // 2
        alts.append(ref[:c] + "ACGT"[("ACGT".index(ref[c]) + 1) % 4] + ref[c + 1 :])
        refs.append(ref)
    return refs, alts


def _read(path: Path) -> dict[str, str]:
    out, name = {}, None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            out[name] = []
        else:
            out[name].append(line.strip())
    return {k: "".join(v) for k, v in out.items()}


@pytest.mark.parametrize("arch", ["ps", "ph"])
def test_head_output_is_strand_invariant(arch: str):
    """The head's probability on a variant equals that on the reverse-complemented ref and alt windows,
    and pooled vectors from the scoring engine give the same probability through `head_probabilities`."""
    width, pool = 65, 20  # odd width: the pooled span is symmetric about the variant, so RC covers the same bases
    lm = load_model(MODELS[arch])
    torch.manual_seed(0)
    head = Head(3 * 24, 0, 2, hidden=16, dropout=0.0)
    span = pool_span(width, width // 2, pool)
    net = FinetuneNet(lm, head, "variants", "ref-alt-diff", span).eval()
    refs, alts = _windows(6, width)
    with torch.no_grad():
        feats = net.features(batch_encode(refs), batch_encode(alts))
        head.set_standardisation(feats)
        for layer in head.net:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.normal_(layer.weight, std=1.0)  # a head far from uniform, so differences show
        p = torch.softmax(net(batch_encode(refs), batch_encode(alts)), -1)[:, 1]
        rc = [reverse_complement(s) for s in refs], [reverse_complement(s) for s in alts]
        p_rc = torch.softmax(net(batch_encode(rc[0]), batch_encode(rc[1])), -1)[:, 1]
    assert p.std() > 0.05  # not a constant head
    assert torch.allclose(p, p_rc, atol=1e-5), (p - p_rc).abs().max()
    # what `vepcli score --model <finetuned>` computes: engine-pooled vectors -> head_probabilities
    engine = Engine(lm, device="cpu", batch_size=4)
    res = engine.run([Request(s, pool=span) for s in refs + alts])
    ref_vec = np.stack([r.pooled.numpy() for r in res[:6]])
    alt_vec = np.stack([r.pooled.numpy() for r in res[6:]])
    meta = {
        "mode": "variants",
        "base_model": {"d_model": 24},
        "features": {"layout": "ref-alt-diff"},
        "covariates": {},
        "head": {"n_classes": 2},
    }
    q = head_probabilities(head, meta, ref_vec, alt_vec)[:, 1]
    assert np.allclose(q, p.numpy(), atol=1e-5)


# ------------------------------------------------------------------ resume, checkpoints, output


@pytest.fixture(scope="module")
def full_run(snvs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    finetune(small(snvs, out, covariates=("tissue",)))
    return out


def test_resumed_run_matches_uninterrupted_step_for_step(snvs, full_run, tmp_path):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full_run / "checkpoints" / "step-2", resumed / "checkpoints" / "step-2")
    shutil.copy(full_run / "metrics.csv", resumed / "metrics.csv")  # rows past step 2 are dropped on resume
    with pytest.raises(UserError, match="already holds a run"):
        finetune(small(snvs, resumed, covariates=("tissue",)))
    with pytest.raises(UserError, match="backbone_lr"):
        finetune(small(snvs, resumed, covariates=("tissue",), backbone_lr=1e-4, resume=True))
    finetune(small(snvs, resumed, covariates=("tissue",), resume=True))
    a, b = read_metrics(full_run / "metrics.csv"), read_metrics(resumed / "metrics.csv")
    assert [r["step"] for r in b] == [r["step"] for r in a] == [1, 2, 3, 4, 5, 6, 7, 8]
    for ra, rb in zip(a, b, strict=True):
        for key in ("lr", "backbone_lr", "train_loss", "grad_norm", "val_loss", "val_auroc"):
            if ra[key] is None:
                assert rb[key] is None
            else:
                assert rb[key] == pytest.approx(ra[key], abs=1e-6), (ra["step"], key)
    fa, fb = load_finetuned(full_run), load_finetuned(resumed)
    for x, y in ((fa.model, fb.model), (fa.head, fb.head)):
        sa, sb = x.state_dict(), y.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_model_directory_records_and_loads(full_run, snvs):
    model_dir = full_run / "model"
    assert {p.name for p in model_dir.iterdir()} == {
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "finetune.json",
    }
    assert not (full_run / "best").exists()
    plain = load_model(model_dir)  # the published layout: any vepcli command loads the backbone alone
    assert plain.config.max_length == 32  # so `vepcli score --model` defaults to the fine-tuning window
    model, head, meta = load_finetuned(model_dir)
    base = meta["base_model"]
    assert base["path"] == str(MODELS["ps"]) and len(base["config_hash"]) == 16 and base["d_model"] == 24
    assert meta["window"] == 32 and meta["pool_span"] == [0, 32] and meta["strand_average"] is True
    assert meta["label"]["classes"] == ["0", "1"] and meta["label"]["positive"] == "1"
    assert meta["features"]["blocks"] == [["ref", 0, 24], ["alt", 24, 48], ["alt-ref", 48, 72]]
    assert meta["covariates"] == {"tissue": ["Adipose", "Lung", "Muscle", "Whole_Blood"]}
    assert meta["split"]["method"] == "genomic_block" and meta["split"]["buffer_bp"] == 32
    assert 0 <= meta["validation"]["auroc"] <= 1 and meta["validation"]["metric"] == "auroc"
    # the backbone really was fine-tuned, and the head's probability comes out per row
    base_sd, ft_sd = load_model(MODELS["ps"]).state_dict(), model.state_dict()
    assert any(not torch.equal(base_sd[k], ft_sd[k]) for k in base_sd)
    ref = np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)
    cov = pd.DataFrame({"tissue": ["Lung", "Liver", None, "Adipose", "Lung"]})  # unseen / missing: zeros
    p = head_probability(head, meta, ref, ref + 0.01, cov)
    assert p.shape == (5,) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    ref[2, 0] = np.nan
    assert np.isnan(head_probability(head, meta, ref, ref, cov)[2])
    with pytest.raises(UserError, match="covariate"):
        head_probability(head, meta, ref, ref)
    assert load_finetuned(MODELS["ps"]) is None  # a plain model directory is not a fine-tuned one
    assert ScoreHead.load(MODELS["ps"], 32, 32) is None


def test_score_path_gives_the_trained_heads_probability(full_run, snvs):
    """What `vepcli score --model run/model` would add: windows -> engine-pooled vectors -> ScoreHead equals
    the fine-tuned network's own probability on those variants (covariates from the table's columns)."""
    model_dir = full_run / "model"
    scorer = ScoreHead.load(model_dir, 32, 1536)  # score's default pool: clamped to the window, as in training
    assert scorer.name == "finetune" and "label is 1" in scorer.description
    assert scorer.header_line().startswith(f"##vepcli_finetune=<path={model_dir},label=label,positive=1,")
    with pytest.raises(UserError, match="window 64 \\(head: 32\\)"):
        ScoreHead.load(model_dir, 64, 1536)
    genome = Genome(FASTA)
    variants = [check_against_reference(v, genome) for v in read_variants(snvs)][:12]
    windows = build_windows(variants, genome, 32)
    model, head, meta = load_finetuned(model_dir)
    span = pool_span(32, 16, 1536)
    res = Engine(load_model(model_dir), device="cpu", batch_size=8).run(
        [Request(s, pool=span) for s in windows.ref_seqs + windows.alt_seqs]
    )
    ref = np.stack([res[i].pooled.numpy() for i in windows.ref_index])
    alt = np.stack([r.pooled.numpy() for r in res[len(windows.ref_seqs) :]])
    p_score = scorer(ref, alt, [v.extra for v in windows.variants])
    cov = torch.from_numpy(one_hot(pd.DataFrame([v.extra for v in windows.variants]), meta["covariates"], 12))
    net = FinetuneNet(model, head, "variants", "ref-alt-diff", span).eval()
    with torch.no_grad():
        logits = net(batch_encode(windows.ref_seqs), batch_encode(windows.alt_seqs), cov)
    assert np.allclose(p_score, torch.softmax(logits, -1)[:, 1].numpy(), atol=1e-5)
    # a head never goes with other backbone weights
    tampered = full_run.parent / "tampered"
    shutil.copytree(model_dir, tampered)
    w = tampered / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UserError, match="is not the backbone the head was trained with"):
        load_finetuned(tampered)


# ------------------------------------------------------------------ other modes


def _repeat_intervals(n: int, width: int, seed: int = 0) -> pd.DataFrame:
    """Intervals of `width` bp wholly inside soft-masked repeats (label repeat) or wholly unique sequence."""
    seq = _read(FASTA)["22"]
    lower = np.frombuffer(seq.encode(), dtype=np.uint8) >= ord("a")
    is_n = np.isin(np.frombuffer(seq.encode(), dtype=np.uint8), [ord("N"), ord("n")])
    run_lower = np.concatenate([[0], np.cumsum(lower)])
    run_n = np.concatenate([[0], np.cumsum(is_n)])
    starts = np.arange(0, len(seq) - width, width)
    masked = (run_lower[starts + width] - run_lower[starts]) / width
    clean = run_n[starts + width] == run_n[starts]
    rng = np.random.default_rng(seed)
    pick = [rng.choice(starts[(masked == v) & clean], n // 2, replace=False) for v in (1.0, 0.0)]
    rows = [("22", s, s + width, name) for name, p in zip(("repeat", "unique"), pick, strict=True) for s in p]
    return pd.DataFrame(sorted(rows, key=lambda r: r[1]), columns=["chrom", "start", "end", "label"])


def test_sequence_classification_learns_repeats_on_held_out_block(tmp_path):
    """Intervals mode (a BED with the label in column 4): repeat vs unique 64-bp stretches of real DNA, the
    second half of the slice held out for validation. Fine-tuning the tiny random-weight PS model for 24 steps
    gives a held-out AUROC of 0.69 (0.66 and 0.66 with interval seeds 1 and 2; 100 validation intervals)."""
    bed = tmp_path / "repeats.bed"
    _repeat_intervals(200, 64).to_csv(bed, sep="\t", header=False, index=False)
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            str(bed),
            "-f",
            str(FASTA),
            "-m",
            str(MODELS["ps"]),
            "-o",
            str(tmp_path / "seq"),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "1e-2",
            "--backbone-lr",
            "1e-3",
            "--val-fraction",
            "0.5",
            "--positive",
            "repeat",
            "--patience",
            "0",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    _, _, meta = load_finetuned(tmp_path / "seq")
    assert meta["mode"] == "intervals" and meta["window"] == 64 and meta["features"]["layout"] == "seq"
    assert meta["label"]["classes"] == ["unique", "repeat"] and meta["split"]["n_val"] == 100
    assert meta["validation"]["auroc"] >= 0.62, meta["validation"]


def test_multiclass_frozen_backbone_with_covariate_on_ph(snvs, tmp_path):
    """Three classes (balanced class weights), a categorical covariate, the Ph model (two passes), a frozen
    backbone (its features cached)."""
    cfg = small(
        snvs,
        tmp_path / "mc",
        model=str(MODELS["ph"]),
        label="kind",
        covariates=("tissue",),
        freeze_backbone=True,
        metric="loss",
        epochs=3,
        class_weight="balanced",
    )
    finetune(cfg)
    model, head, meta = load_finetuned(tmp_path / "mc")
    assert meta["label"]["classes"] == ["deep", "near", "repeat"] and meta["label"]["positive"] is None
    assert meta["base_model"]["arch"] == "caduceus-ph" and meta["validation"]["metric"] == "loss"
    base_sd, ft_sd = load_model(MODELS["ph"]).state_dict(), model.state_dict()
    assert all(torch.equal(base_sd[k], ft_sd[k]) for k in base_sd)  # frozen means frozen
    ref = np.zeros((3, 24), dtype=np.float32)
    p = head_probabilities(head, meta, ref, ref, pd.DataFrame({"tissue": ["Lung"] * 3}))
    assert p.shape == (3, 3) and np.allclose(p.sum(1), 1)
    with pytest.raises(UserError, match="more than two classes"):
        head_probability(head, meta, ref, ref, pd.DataFrame({"tissue": ["Lung"] * 3}))


def test_labelled_vcf_with_info_label_and_split(snvs, tmp_path):
    """A VCF carries the label (and here the split) in INFO; rows that fail the reference check are left out."""
    frame = pd.read_csv(snvs, sep="\t").head(24)
    split = np.array(["train", "train", "train", "train", "valid", "test"] * 4)
    lines = [
        "##fileformat=VCFv4.2",
        '##INFO=<ID=LAB,Number=1,Type=Integer,Description="label">',
        '##INFO=<ID=SPLIT,Number=1,Type=String,Description="split">',
        "##contig=<ID=22>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    for i, r in enumerate(frame.itertuples()):
        ref = r.ref if i else {"A": "C", "C": "G", "G": "T", "T": "A"}[r.ref]  # row 0: a REF mismatch
        lines.append(f"22\t{r.position}\t.\t{ref}\t{r.alt}\t.\t.\tLAB={r.label};SPLIT={split[i]}")
    vcf = tmp_path / "labelled.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    result = finetune(
        small(vcf, tmp_path / "vcf", label="LAB", split_column="SPLIT", freeze_backbone=True, batch_size=4, epochs=1)
    )
    _, _, meta = load_finetuned(tmp_path / "vcf")
    assert meta["split"]["method"] == "column:SPLIT"
    assert (meta["split"]["n_train"], meta["split"]["n_val"], meta["split"]["n_test"]) == (15, 4, 4)
    assert meta["training"]["skipped_rows"] == {"ref_mismatch": 1}
    assert "test_auroc" in result and meta["test"]["n"] == 4


@pytest.mark.slow  # torchrun, 2 processes
def test_two_processes_under_torchrun_take_the_steps_of_one(snvs, tmp_path):
    """DDP (gloo, 2 processes of 4 rows) takes the same steps as one process accumulating 2 x 4 rows (without
    dropout, whose masks depend on how the batch is laid out)."""
    args = [
        "finetune",
        str(snvs),
        "-f",
        str(FASTA),
        "-m",
        str(MODELS["ps"]),
        "--label",
        "label",
        "--window",
        "32",
        "--pool",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--head-hidden",
        "16",
        "--backbone-lr",
        "1e-3",
        "--log-every",
        "1",
        "--patience",
        "0",
        "--dropout",
        "0",
        "-q",
    ]  # dropout masks differ by layout
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "vepcli", *args, "-o", str(tmp_path / "ddp")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "one"), "--micro-batch", "4"], catch_exceptions=False)
    ddp, one = read_metrics(tmp_path / "ddp" / "metrics.csv"), read_metrics(tmp_path / "one" / "metrics.csv")
    assert [r["step"] for r in ddp] == [r["step"] for r in one] == [1, 2, 3, 4]  # rank 0 alone writes
    for r, s in zip(ddp, one, strict=True):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
    assert ddp[-1]["val_auroc"] == pytest.approx(one[-1]["val_auroc"], abs=1e-6)


# ------------------------------------------------------------------ splits, labels, errors


def test_split_rules():
    table = pd.DataFrame(
        {
            "chrom": ["1"] * 6 + ["chr2"] * 4,
            "pos": [10, 20, 30, 1000, 1010, 5000, 1, 2, 3, 4],
            "fold": ["train"] * 5 + ["valid", "Test", "val", "train", "training"],
        }
    )
    by_col = split_examples(table, split_column="fold")
    assert by_col.method == "column:fold" and list(by_col.val) == [5, 7] and list(by_col.test) == [6]
    by_chrom = split_examples(table, val_chroms=("2",))  # alias: chr2 == 2
    assert list(by_chrom.val) == [6, 7, 8, 9] and len(by_chrom.test) == 0
    one = table[table.chrom == "1"].reset_index(drop=True)
    block = split_examples(one, val_fraction=0.34, buffer_bp=15)
    assert list(block.val) == [4, 5] and list(block.train) == [0, 1, 2] and block.dropped == 1  # 1000 is near 1010
    with pytest.raises(UserError, match="train, valid or test"):
        split_examples(table.assign(fold="x"), split_column="fold")
    with pytest.raises(UserError, match="both must be non-empty"):
        split_examples(table, val_chroms=("7",))
    labels, has = make_labels(pd.Series([1.0, 0.0, np.nan, 1.0]), "label")
    assert labels.classes == ["0", "1"] and list(has) == [True, True, False, True] and labels.y[0] == 1
    labels, _ = make_labels(pd.Series(["b", "a", "c"]), "label")
    assert labels.classes == ["a", "b", "c"] and labels.positive is None


def test_cli_errors_are_one_line(snvs, tmp_path):
    base = [
        "finetune",
        str(snvs),
        "-f",
        str(FASTA),
        "-m",
        str(MODELS["ps"]),
        "-o",
        str(tmp_path / "x"),
        "--window",
        "32",
    ]
    for extra, words in (
        ([], "--label COLUMN is needed"),
        (["--label", "nope"], "no columns nope"),
        (["--label", "label", "--split-column", "tissue"], "values must be train, valid or test"),
        (["--label", "label", "--batch-size", "500"], "larger than the"),
    ):
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 1, (extra, result.output)
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


def test_score_with_a_finetuned_model_adds_its_probability(full_run, snvs, tmp_path):
    """`vepcli score --model run/model` adds a `finetune` column equal to the head's own probability."""
    from vepcli.output import read_scores
    from vepcli.pipeline import ScoreSettings, score_file
    from vepcli.supervised import loaders

    model_dir = full_run / "model"
    out = tmp_path / "scored.tsv"
    settings = ScoreSettings(model=str(model_dir), device="cpu")
    score_file(str(snvs), str(FASTA), str(out), settings, quiet=True, supervised=loaders(settings))
    got = read_scores(out)
    assert "finetune" in got.columns and got["finetune"].notna().sum() == (got["status"] == "ok").sum() > 0
    header = [line for line in out.read_text().splitlines() if line.startswith("##vepcli_finetune=")]
    assert len(header) == 1
    # the same numbers straight from the head, on the engine's pooled vectors
    genome = Genome(FASTA)
    variants = [check_against_reference(v, genome) for v in read_variants(snvs)]
    windows = build_windows(variants, genome, 32)
    span = pool_span(32, 16, 1536)
    res = Engine(load_model(model_dir), device="cpu", batch_size=8).run(
        [Request(s, pool=span) for s in windows.ref_seqs + windows.alt_seqs]
    )
    ref = np.stack([res[i].pooled.numpy() for i in windows.ref_index])
    alt = np.stack([r.pooled.numpy() for r in res[len(windows.ref_seqs) :]])
    want = ScoreHead.load(model_dir, 32, 1536)(ref, alt, [v.extra for v in windows.variants])
    ok = got[got["status"] == "ok"]
    assert np.allclose(ok["finetune"].to_numpy(), want, atol=1e-5)


def test_compare_finetune_tool_scores_probe_frozen_and_finetuned_on_the_same_fold(tmp_path):
    """`vepcli tools compare-finetune` (docs/finetuning.md), one small fold: every method scores the same test rows."""
    import json

    frame = _probe_set(60, seed=1)
    frame.to_csv(tmp_path / "set.tsv", sep="\t", index=False)
    result = CliRunner().invoke(
        cli,
        [
            "tools",
            "compare-finetune",
            "--set",
            str(tmp_path / "set.tsv"),
            "--fasta",
            str(FASTA),
            "--model",
            str(MODELS["ps"]),
            "-o",
            str(tmp_path / "cmp"),
            "--window",
            "32",
            "--pool",
            "32",
            "--folds",
            "3",
            "--only-fold",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--head-hidden",
            "8",
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved["settings"]["only_fold"] == [1] and saved["settings"]["window"] == 32
    (fold,) = saved["folds"]
    tested = fold["n"]["test"]
    assert fold["fold"] == 1 and tested > 0
    for kind in ("probe", "frozen_head", "finetuned"):
        assert len(fold[kind]["scores"]) == tested and 0 <= fold[kind]["auroc"] <= 1
    assert set(saved["mean_auroc"]) == {"probe", "frozen_head", "finetuned"}
