"""The training engine's parts that both tasks share: the device/precision policy, run identity from the
config dataclasses, early stopping, the metrics log, and the commands' options declared once."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import click
import pytest
import torch

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.finetune.config import FinetuneConfig
from vepcli.runtime import autocast, grad_scaler, training_device, training_precision
from vepcli.train.config import PretrainConfig, run_identity
from vepcli.train.engine import EarlyStopping
from vepcli.train.report import MetricsLog, read_metrics

# what a resume must match, as the commands had it listed by hand before it was derived from the dataclasses
PRETRAIN_IDENTITY = {
    "fasta", "intervals", "val_intervals", "val_regions", "val_fraction", "arch", "d_model", "n_layer", "d_state",
    "seq_len", "batch_size", "steps", "lr", "min_lr", "warmup_frac", "weight_decay", "betas", "grad_clip",
    "mask_prob", "min_base_fraction", "rc_aug", "seed", "val_windows",
}  # fmt: skip
FINETUNE_IDENTITY = {
    "train", "fasta", "model", "label", "intervals", "covariates", "positive", "split_column", "val_chroms",
    "val_fraction", "window", "pool", "layout", "head_hidden", "dropout", "epochs", "batch_size", "lr",
    "backbone_lr", "weight_decay", "warmup_frac", "min_lr_ratio", "grad_clip", "freeze_backbone", "class_weight",
    "metric", "val_every", "patience", "max_n_fraction", "seed",
}  # fmt: skip


def test_run_identity_is_every_setting_not_declared_operational():
    pre = PretrainConfig(fasta="g.fa", output="run")
    fine = FinetuneConfig(train="t.tsv", fasta="g.fa", output="run", label="y")
    assert set(run_identity(pre)) == PRETRAIN_IDENTITY
    assert set(run_identity(fine)) == FINETUNE_IDENTITY
    assert run_identity(pre)["betas"] == [0.9, 0.95]  # as JSON gives it back from a checkpoint

    @dataclass
    class WithANewSetting(PretrainConfig):
        new_knob: int = 3

    assert run_identity(WithANewSetting(fasta="g.fa", output="run"))["new_knob"] == 3  # defines the run by default


def test_device_and_precision_policy():
    cpu = torch.device("cpu")
    assert training_device("cpu") == cpu
    with pytest.raises(UserError, match="--device must be auto, cpu or cuda"):
        training_device("cuda:1")  # a training process takes the GPU of its rank
    assert training_precision("auto", cpu) is None and training_precision("fp32", cpu) is None
    assert training_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        training_precision("fp16", cpu)
    x = torch.ones(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(cpu, None):
        assert (x @ x).dtype == torch.float32


def test_the_scaler_is_a_pass_through_unless_fp16():
    """bf16 and fp32 get a disabled GradScaler: the step calls it unconditionally and nothing changes."""
    for dtype in (None, torch.bfloat16):
        scaler = grad_scaler(dtype)
        assert not scaler.is_enabled() and scaler.state_dict() == {}
        w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        opt = torch.optim.SGD([w], lr=0.5)
        loss = (w * w).sum()
        assert scaler.scale(loss) is loss
        loss.backward()
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
        assert torch.equal(w.detach(), torch.tensor([0.0, 0.0]))


def test_early_stopping_counts_validations_without_improvement():
    stop = EarlyStopping("loss", higher_is_better=False, patience=2)
    assert stop.observe(1.0, 10) and not stop.stopped_early
    assert not stop.observe(1.0, 20) and not stop.stopped_early  # equal is not better
    assert stop.observe(0.5, 30) and stop.bad == 0
    assert not stop.observe(0.6, 40) and not stop.observe(0.7, 50) and stop.stopped_early
    assert (stop.best, stop.best_step) == (0.5, 30)
    again = EarlyStopping("loss", higher_is_better=False, patience=2)
    again.load(stop.state())
    assert again == stop
    never = EarlyStopping("auroc", higher_is_better=True, patience=0)
    for step, value in enumerate((0.9, 0.8, 0.7, 0.6)):
        never.observe(value, step)
    assert not never.stopped_early and never.best == 0.9


def test_metrics_log_keeps_the_rows_before_a_resume_byte_for_byte(tmp_path: Path):
    columns = ("step", "tokens", "loss", "val_loss")
    log = MetricsLog(tmp_path, columns)
    for step in (1, 2, 3):
        log.log({"step": step, "tokens": 128 * step, "loss": 1 / 3 / step, "val_loss": 0.1 if step == 2 else None})
    log.close()
    written = (tmp_path / "metrics.csv").read_text()
    MetricsLog(tmp_path, columns, resume_step=2).close()
    assert (tmp_path / "metrics.csv").read_text() == "".join(written.splitlines(keepends=True)[:3])
    assert [r["val_loss"] for r in read_metrics(tmp_path / "metrics.csv")] == [None, 0.1]


def _command(*path: str) -> click.Command:
    command = cli
    ctx = click.Context(cli)
    for name in path:
        command = command.get_command(ctx, name)
    return command


@pytest.mark.parametrize(("path", "config"), [(("pretrain",), PretrainConfig), (("finetune",), FinetuneConfig)])
def test_training_commands_take_their_defaults_from_the_config(path, config):
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}
    command = _command(*path)
    given = command.make_context(path[-1], [], resilient_parsing=True).params  # what each option gives unset
    compared = [p.name for p in command.params if p.name in defaults and not p.multiple]
    assert len(compared) >= 25
    for name in compared:
        assert given[name] == defaults[name], name


def test_shared_options_are_declared_once():
    """--fasta, --device, --precision and --threads take the same form in every command that has them."""
    commands = [("score",), ("embed",), ("pretrain",), ("finetune",), ("tools", "kmer-baseline")]
    commands += [("tools", "compare-finetune"), ("probe", "train"), ("probe", "eval")]
    seen = {"fasta": set(), "device": set(), "precision": set(), "threads": set()}
    for path in commands:
        for p in _command(*path).params:
            if p.name in seen:
                choices = tuple(getattr(p.type, "choices", ()))
                seen[p.name].add((tuple(p.opts), type(p.type).__name__, choices, p.required))
    assert seen["fasta"] == {(("-f", "--fasta"), "Path", (), True)}
    assert seen["device"] == {
        (("--device",), "Device", (), False),
        (("--device",), "Choice", ("auto", "cpu", "cuda"), False),
    }
    assert {c for *_, c, _ in seen["precision"]} == {("fp32", "bf16", "fp16"), ("auto", "fp32", "bf16", "fp16")}
    assert {(o, t) for o, t, *_ in seen["threads"]} == {(("--threads",), "IntRange")}


def test_commands_do_not_import_torch_for_their_defaults():
    """The configs the commands read are torch-free (the CLI's start-up stays quick)."""
    code = "import sys, vepcli.finetune.config, vepcli.train.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
