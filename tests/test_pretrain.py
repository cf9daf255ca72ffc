"""`vepcli pretrain`: data split and sampling, optimiser groups, schedule, a falling loss on real DNA,
exact resume, and a 2-process gloo run under torchrun; resume, the batch split and torchrun also for the
hybrid (its own tests: test_pretrain_hybrid.py)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.nn.checkpoint import load_model
from vepcli.nn.tokenizer import encode
from vepcli.regions import Interval, subtract
from vepcli.train.baseline import KmerTable, _codes, kmer_baseline
from vepcli.train.config import PretrainConfig
from vepcli.train.data import (
    WindowSampler,
    base_fraction,
    parse_region,
    split_intervals,
    tile_windows,
)
from vepcli.train.lmtask import build_model
from vepcli.train.masking import mask_window
from vepcli.train.optim import build_scheduler, param_groups
from vepcli.train.pretrain import pretrain
from vepcli.train.report import read_metrics

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
FASTA = ROOT / "tests" / "data" / "chr22_slice.fa.gz"  # 99.5 kb of real chr22, 27% N (tests/data/README.md)
TRAIN_BED = "22\t0\t99500\n"  # the whole slice
VAL_REGION = "22:80001-90000"  # carved out of it: 10 kb with no N


@pytest.fixture
def toy_fasta(tmp_path: Path) -> Path:
    """A small FASTA: contig `a` half N, contig `b` all N, contig `c` a repeat."""
    rng = np.random.default_rng(0)
    half = "".join(rng.choice(list("ACGT"), 3000)) + "N" * 3000
    path = tmp_path / "toy.fa"
    path.write_text(f">a\n{half}\n>b\n{'N' * 2000}\n>c\n{'ACGTTGCA' * 500}\n")
    return path


def tiny(tmp_path: Path, name: str, **kw) -> PretrainConfig:
    bed = tmp_path / "train.bed"
    bed.write_text(TRAIN_BED)
    settings = dict(
        fasta=str(FASTA),
        output=str(tmp_path / name),
        intervals=str(bed),
        val_regions=(VAL_REGION,),
        d_model=16,
        n_layer=2,
        seq_len=128,
        batch_size=4,
        steps=6,
        lr=4e-3,
        val_every=3,
        val_windows=8,
        log_every=1,
        checkpoint_every=3,
        keep_checkpoints=0,
        quiet=True,
    )
    settings.update(kw)
    return PretrainConfig(**settings)


# ------------------------------------------------------------------------------------- data
def test_regions_and_interval_arithmetic():
    assert parse_region("22:1001-2000") == Interval("22", 1000, 2000)
    with pytest.raises(UserError, match="thousands separators"):
        parse_region("22:1,001-2000")  # bcftools -r reads two regions there: refused, not guessed
    with pytest.raises(UserError):
        parse_region("22:5-1")
    got = subtract([Interval("a", 0, 100), Interval("b", 0, 50)], [Interval("a", 10, 20), Interval("a", 90, 200)])
    assert got == [Interval("a", 0, 10), Interval("a", 20, 90), Interval("b", 0, 50)]


def test_split_by_bed_folds_and_by_held_out_fraction(toy_fasta: Path, tmp_path: Path):
    genome = Genome(toy_fasta)
    bed = tmp_path / "folds.bed"
    bed.write_text("a\t0\t1000\ttrain\na\t1000\t2000\tvalid\na\t2000\t3000\ttest\nc\t0\t4000\ttrain\n")
    train, val = split_intervals(genome, str(bed))
    assert val == [Interval("a", 1000, 2000)]
    assert train == [Interval("a", 0, 1000), Interval("c", 0, 4000)], "test folds must not be trained on"
    train, val = split_intervals(genome, None, val_fraction=0.1)
    assert Interval("c", 3600, 4000) in val
    assert all(t.end <= v.start or t.start >= v.end for t in train for v in val if t.contig == v.contig)
    train, val = split_intervals(genome, None, val_regions=["c:1-800"])
    assert val == [Interval("c", 0, 800)] and Interval("c", 800, 4000) in train


def test_sampler_skips_mostly_n_windows(toy_fasta: Path):
    genome = Genome(toy_fasta)
    sampler = WindowSampler(genome, [Interval("a", 0, 6000)], 256)
    rng = np.random.default_rng(0)
    fractions = [base_fraction(sampler.draw(rng)[1]) for _ in range(200)]
    assert min(fractions) >= 0.5
    with pytest.raises(UserError, match="mostly N"):
        WindowSampler(genome, [Interval("b", 0, 2000)], 256).draw(rng)
    tiles = tile_windows(genome, [Interval("a", 0, 6000)], 500, 100)
    assert len(tiles) == 6 and all(base_fraction(ids) >= 0.5 for _, ids in tiles)


# ------------------------------------------------------------------------------------ optimiser
def test_param_groups_follow_the_recipe():
    model = build_model(PretrainConfig(fasta="-", output="-", d_model=16, n_layer=2))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    in_decay = {names[id(p)].split(".")[-2] + "." + names[id(p)].split(".")[-1] for p in decay["params"]}
    in_none = {names[id(p)] for p in no_decay["params"]}
    assert in_decay == {"in_proj.weight", "conv1d.weight", "x_proj.weight", "dt_proj.weight", "out_proj.weight"}
    assert all(n.endswith(("A_log", "D", "bias", "norm.weight", "norm_f.weight", "embedding.weight")) for n in in_none)
    assert any(n.endswith("A_log") for n in in_none) and any(n.endswith("embedding.weight") for n in in_none)
    listed = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(listed) == len(set(listed)) == len({id(p) for p in model.parameters()})
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_parameters()


def test_warmup_then_cosine_to_min_lr():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=8e-3)
    sched = build_scheduler(opt, total_steps=100, warmup_frac=0.1, lr=8e-3, min_lr=1e-4)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(8e-4) and lrs[9] == pytest.approx(8e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and opt.param_groups[0]["lr"] == pytest.approx(1e-4)


# ------------------------------------------------------------------------------------ baseline
def test_kmer_baseline_learns_a_periodic_sequence():
    seq = encode("ACGTTGCA" * 300)
    table = KmerTable(_codes([seq]), 2)
    pred, known = table.predict(_codes([seq]))
    assert known[2:-3].all() and (pred[2:-3] == _codes([seq])[2:-3]).all()
    val = [mask_window(encode("ACGTTGCA" * 32), np.random.default_rng(i)) for i in range(4)]
    res = kmer_baseline([seq], val, ks=(0, 1, 2))
    assert res[2]["acc_masked_true_flanks"] > 0.95 > res[0]["acc_masked_true_flanks"]
    assert res[2]["acc_masked"] <= res[2]["acc_masked_true_flanks"]


# ------------------------------------------------------------------------------------ training
def test_loss_falls_on_real_dna_and_the_model_loads(tmp_path: Path):
    cfg = tiny(tmp_path, "run", d_model=32, steps=30, batch_size=8, val_every=10, checkpoint_every=100)
    result = pretrain(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    losses = [r["train_loss"] for r in rows]
    assert len(rows) == 30 and math.isclose(losses[0], math.log(16), abs_tol=0.5)
    assert np.mean(losses[-5:]) < losses[0] - 0.8, losses
    vals = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    assert len(vals) == 3 and vals[-1] < vals[0] and vals[-1] < 1.6  # ln 16 = 2.77 at the start
    assert 0.25 < result["val_acc"] <= 1
    run = tmp_path / "run"
    model = load_model(run / "model")
    assert model.config.max_length == 128 and model.config.rcps and model.config.d_model == 32
    assert (run / "model" / "training.json").is_file() and (run / "curves.png").stat().st_size > 1000
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-30"]


HYBRID = {"arch": "hybrid", "headdim": 8}  # a 2-layer hybrid: Mamba-2, then attention
XLSTM = {"arch": "xlstm-ps", "slstm_layers": (1,), "d_model": 32}  # 2 DNA-xLSTM-PS blocks: mLSTM, sLSTM


@pytest.mark.parametrize("shape", [{"arch": "caduceus-ph"}, HYBRID, XLSTM], ids=["caduceus-ph", "hybrid", "xlstm-ps"])
def test_resumed_run_matches_uninterrupted_step_for_step(tmp_path: Path, shape: dict):
    full = pretrain(tiny(tmp_path, "full", **shape))  # Ph and the hybrid: the RC augmentation is drawn too
    a, b = tmp_path / "full", tmp_path / "resumed"
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-3", b / "checkpoints" / "step-3")
    shutil.copy(a / "metrics.csv", b / "metrics.csv")  # rows past step 3 must be dropped on resume
    with pytest.raises(UserError, match="already holds a run"):
        pretrain(tiny(tmp_path, "resumed", **shape))
    with pytest.raises(UserError, match="lr"):
        pretrain(tiny(tmp_path, "resumed", **shape, lr=1e-3, resume=True))
    resumed = pretrain(tiny(tmp_path, "resumed", **shape, resume=True))
    rows_a, rows_b = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("lr", "train_loss", "train_acc", "grad_norm", "val_loss", "val_acc"):
            assert ra[key] == rb[key], (ra["step"], key)  # bit for bit
    assert full["val_loss"] == resumed["val_loss"]
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_changed_shape_option_stops_a_resume(tmp_path: Path):
    """A hybrid's shape is part of its run identity."""
    pretrain(tiny(tmp_path, "run", steps=3, **HYBRID))
    with pytest.raises(UserError, match="attn_layers"):
        pretrain(tiny(tmp_path, "run", steps=6, **HYBRID, attn_layers=(0,), resume=True))


def test_micro_batches_take_the_same_steps_as_one_batch(tmp_path: Path):
    """The hybrid's next-token loss is divided by the step's target count, not per micro-batch: the split
    changes nothing."""
    pretrain(tiny(tmp_path, "one", steps=3, checkpoint_every=100, **HYBRID))
    pretrain(tiny(tmp_path, "two", steps=3, micro_batch=1, checkpoint_every=100, **HYBRID))
    one, two = read_metrics(tmp_path / "one" / "metrics.csv"), read_metrics(tmp_path / "two" / "metrics.csv")
    for r, s in zip(one, two, strict=True):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
        assert r["train_acc"] == s["train_acc"]
    wa, wb = (load_file(tmp_path / n / "model" / "model.safetensors") for n in ("one", "two"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_resume_may_change_the_settings_that_only_change_logging_and_checkpoints(tmp_path: Path):
    """Run identity is every setting not declared operational: these may differ, and the steps are the same."""
    pretrain(tiny(tmp_path, "full", steps=4, val_every=2, checkpoint_every=2))
    a, b = tmp_path / "full", tmp_path / "resumed"
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-2", b / "checkpoints" / "step-2")
    changed = dict(val_every=1, checkpoint_every=1, log_every=2, keep_checkpoints=1)
    pretrain(tiny(tmp_path, "resumed", steps=4, resume=True, **changed))
    assert [p.name for p in (b / "checkpoints").iterdir()] == ["step-4"]
    assert [r["step"] for r in read_metrics(b / "metrics.csv")] == [3, 4]
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_average_last_writes_the_mean_of_the_last_checkpoints_and_its_own_validation(tmp_path: Path):
    """--average-last 3: the model is the mean of the last 3 checkpoints' weights (kept though
    --keep-checkpoints is 1), and the recorded final validation is that model's, as kmer-baseline scores it."""
    import json

    from click.testing import CliRunner

    from vepcli.cli import cli

    result = pretrain(
        tiny(tmp_path, "avg", steps=8, val_every=4, checkpoint_every=2, keep_checkpoints=1, average_last=3)
    )
    run = tmp_path / "avg"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4", "step-6", "step-8"]
    saved = [load_file(run / "checkpoints" / f"step-{s}" / "model" / "model.safetensors") for s in (4, 6, 8)]
    got = load_file(run / "model" / "model.safetensors")
    assert got.keys() == saved[-1].keys()
    for k, v in got.items():
        mean = np.mean([w[k].double().numpy() for w in saved], axis=0)
        np.testing.assert_allclose(v.double().numpy(), mean, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(got[k], saved[-1][k]) for k in got)  # not the last step's weights
    record = json.loads((run / "model" / "training.json").read_text())
    assert record["averaged_steps"] == [4, 6, 8] and record["final_validation"]["val_loss"] == result["val_loss"]
    last_row = read_metrics(run / "metrics.csv")[-1]
    assert last_row["step"] == 8 and last_row["val_loss"] != result["val_loss"]  # step 8's own weights
    data = ["--fasta", str(FASTA), "--intervals", str(tmp_path / "train.bed"), "--val-region", VAL_REGION]
    data += ["--seq-len", "128", "--val-windows", "8", "--seed", "0", "--max-k", "1"]
    out = tmp_path / "b.json"
    base = CliRunner().invoke(cli, ["tools", "kmer-baseline", *data, "--model", str(run / "model"), "-o", str(out)])
    assert base.exit_code == 0, base.output
    scored = json.loads(out.read_text())["models"][str(run / "model")]
    assert scored["val_acc_masked"] == result["val_acc_masked"]
    assert scored["val_loss"] == pytest.approx(result["val_loss"], rel=1e-6)
    with pytest.raises(UserError, match="--average-last 5 is more than the 4 checkpoints"):
        tiny(tmp_path, "no", steps=8, checkpoint_every=2, average_last=5)


def _cli(tmp_path: Path, out: str, *extra: str) -> list[str]:
    bed = tmp_path / "train.bed"
    bed.write_text(TRAIN_BED)
    return [
        "pretrain",
        "--fasta",
        str(FASTA),
        "-o",
        str(tmp_path / out),
        "--intervals",
        str(bed),
        "--val-region",
        VAL_REGION,
        "--d-model",
        "16",
        "--n-layer",
        "2",
        "--seq-len",
        "128",
        "--steps",
        "3",
        "--lr",
        "4e-3",
        "--val-every",
        "3",
        "--val-windows",
        "8",
        "--log-every",
        "1",
        "-q",
        *extra,
    ]


@pytest.mark.slow  # torchrun, 2 processes
@pytest.mark.parametrize("shape", [{}, HYBRID], ids=["caduceus-ps", "hybrid"])
def test_two_processes_under_torchrun_share_the_work(tmp_path: Path, shape: dict):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
    torchrun = (
        [str(VENV_BIN / "torchrun")]
        if (VENV_BIN / "torchrun").exists()
        else [sys.executable, "-m", "torch.distributed.run"]
    )
    cmd = [
        *torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "vepcli",
        *_cli(tmp_path, "ddp", "--batch-size", "4", *flags),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = read_metrics(tmp_path / "ddp" / "metrics.csv")
    assert [r["step"] for r in ddp] == [1, 2, 3], "rank 0 alone writes: each step once"
    written = {p.name for p in (tmp_path / "ddp").iterdir()} - {"tensorboard"}
    assert written == {"checkpoints", "curves.png", "metrics.csv", "model"}
    # one process doing both halves of the batch by gradient accumulation takes the same steps...
    same = pretrain(tiny(tmp_path, "accum", steps=3, batch_size=4, micro_batch=2, checkpoint_every=100, **shape))
    acc = read_metrics(tmp_path / "accum" / "metrics.csv")
    for r, s in zip(ddp, acc, strict=True):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
    assert same["val_loss"] == pytest.approx(ddp[-1]["val_loss"], rel=1e-4)
    # ...while rank 0's half of the batch alone trains another model: rank 1 saw other windows
    pretrain(tiny(tmp_path, "half", steps=3, batch_size=2, checkpoint_every=100, **shape))
    w = {name: load_file(tmp_path / name / "model" / "model.safetensors") for name in ("ddp", "accum", "half")}

    def dist(a: str, b: str) -> float:
        return sum(float((w[a][k] - w[b][k]).pow(2).sum()) for k in w[a]) ** 0.5

    assert dist("ddp", "half") > 1e-3
    assert dist("ddp", "accum") < 0.01 * dist("ddp", "half")


@pytest.mark.slow  # a subprocess
def test_cli_errors_are_one_line(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "vepcli", *_cli(tmp_path, "bad", "--batch-size", "3", "--micro-batch", "2")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--batch-size 3" in proc.stderr


def test_bf16_autocast_path_trains(tmp_path: Path):
    """The autocast path GPUs take (bf16 here on CPU; fp16 needs CUDA and is refused on CPU)."""
    result = pretrain(tiny(tmp_path, "bf16", steps=2, precision="bf16", checkpoint_every=100))
    assert math.isfinite(result["val_loss"]) and result["val_loss"] < math.log(16) + 0.5
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        pretrain(tiny(tmp_path, "fp16", steps=2, precision="fp16", device="cpu"))


def test_kmer_baseline_and_model_card_tools_package_a_run(tmp_path: Path):
    """`vepcli tools kmer-baseline` and `model-card`, as `make pretrain-default` runs them after training."""
    import json

    from click.testing import CliRunner

    from vepcli.cli import cli

    pretrain(tiny(tmp_path, "run", steps=2, val_every=2, checkpoint_every=100))
    bed = tmp_path / "train.bed"
    data = [
        "--fasta",
        str(FASTA),
        "--intervals",
        str(bed),
        "--val-region",
        VAL_REGION,
        "--seq-len",
        "128",
        "--val-windows",
        "8",
        "--seed",
        "0",
    ]
    base = CliRunner().invoke(cli, ["tools", "kmer-baseline", *data, "--max-k", "2", "-o", str(tmp_path / "b.json")])
    assert base.exit_code == 0, base.output
    assert "best acc_masked:" in base.output
    figures = json.loads((tmp_path / "b.json").read_text())
    assert sorted(figures["by_k"]) == ["0", "1", "2"] and figures["val_windows"] == 8
    card = CliRunner().invoke(
        cli, ["tools", "model-card", str(tmp_path / "run"), str(tmp_path / "b.json"), str(tmp_path / "shipped")]
    )
    assert card.exit_code == 0, card.output
    text = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    assert "best k-mer, like for like" in text and "chr22_slice.fa.gz" in text
    assert load_model(tmp_path / "shipped").config.d_model == 16


def test_kmer_baseline_scores_other_models_on_the_runs_own_targets(tmp_path: Path):
    """`kmer-baseline --model` scores a model on the run's validation windows and masks: for the run's own
    model it gives the run's final validation figures, and the card puts it beside the new model."""
    import json

    from click.testing import CliRunner

    from vepcli.cli import cli

    pretrain(tiny(tmp_path, "run", steps=2, val_every=2, checkpoint_every=100))
    final = json.loads((tmp_path / "run" / "model" / "training.json").read_text())["final_validation"]
    data = ["--fasta", str(FASTA), "--intervals", str(tmp_path / "train.bed"), "--val-region", VAL_REGION]
    data += ["--seq-len", "128", "--val-windows", "8", "--seed", "0", "--max-k", "1"]
    model = str(tmp_path / "run" / "model")
    base = CliRunner().invoke(cli, ["tools", "kmer-baseline", *data, "--model", model, "-o", str(tmp_path / "b.json")])
    assert base.exit_code == 0, base.output
    scored = json.loads((tmp_path / "b.json").read_text())["models"][model]
    assert (scored["val_acc"], scored["val_acc_masked"]) == (final["val_acc"], final["val_acc_masked"])
    assert scored["val_loss"] == pytest.approx(final["val_loss"], rel=1e-6)  # batched 1 here, 4 in the run
    assert len(scored["sha256"]) == 64 and scored["parameters"] > 0
    card = CliRunner().invoke(
        cli, ["tools", "model-card", str(tmp_path / "run"), str(tmp_path / "b.json"), str(tmp_path / "shipped")]
    )
    assert card.exit_code == 0, card.output
    text = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    assert f"| model ({scored['architecture']}" in text and "+0.00 points of [MASK] accuracy" in text


def test_kmer_baseline_refuses_a_damaged_model_folder_before_counting(tmp_path: Path):
    """A --model folder that cannot load is one error line, and no figures file is written."""
    from click.testing import CliRunner

    from vepcli.cli import cli

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    out = tmp_path / "b.json"
    data = ["--fasta", str(FASTA), "--val-region", VAL_REGION, "--seq-len", "128", "--val-windows", "2"]
    data += ["--max-k", "1", "--model", str(bad), "-o", str(out)]
    result = CliRunner().invoke(cli, ["tools", "kmer-baseline", *data])
    assert result.exit_code == 1 and "is not valid JSON" in result.output, result.output
    assert not out.exists()
