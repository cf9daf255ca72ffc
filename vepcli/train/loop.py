"""The masked-LM pretraining loop (the Caduceus recipe), for one process or several under torchrun.

One optimizer step takes `batch_size` windows in all. Rank r of W takes samples
[r B/W, (r+1) B/W) of the step, in micro-batches of `micro_batch`, accumulating gradients. The loss
is the summed cross-entropy divided by the number of targets of the whole step (all micro-batches,
all ranks), so the update does not depend on W or on the micro-batch size, and DDP's averaging is
undone by the factor W. Only rank 0 writes files or prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vepcli import infer
from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.checkpoint import save_model
from vepcli.nn.tokenizer import MASK
from vepcli.train import checkpoints, distributed
from vepcli.train.config import ARCHS, PretrainConfig, jsonable  # noqa: F401 - re-exported
from vepcli.train.data import (
    WindowSampler,
    reverse_complement_np,
    sample_rng,
    split_intervals,
    validation_set,
)
from vepcli.train.masking import IGNORE, mask_window, masked_lm_sums
from vepcli.train.optim import build_optimizer, build_scheduler
from vepcli.train.report import MetricsLog, plot_curves


# ------------------------------------------------------------------------------------------- set-up
def pick_device(name: str, d: distributed.Dist) -> torch.device:
    """The engine's choice (auto, cpu, cuda; one error for a missing GPU); each rank takes its own GPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")
    device = infer.pick_device(name)
    return torch.device("cuda", d.local_rank) if device.type == "cuda" else device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. auto: bf16 on GPUs that have it, else fp16; fp32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise UserError(f"--precision must be auto, fp32, bf16 or fp16, not {name!r}")
    if table[name] is torch.float16 and device.type != "cuda":
        raise UserError("--precision fp16 needs a GPU; use bf16 or fp32 on CPU")
    return table[name]


def build_model(cfg: PretrainConfig) -> CaduceusForMaskedLM:
    config = CaduceusConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        rcps=ARCHS[cfg.arch],
        ssm_cfg={"d_state": cfg.d_state},
        max_length=cfg.seq_len,
    )
    return CaduceusForMaskedLM(config)


def make_sample(sampler: WindowSampler, cfg: PretrainConfig, step: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample `index` of step `step`: a window, reverse-complemented half the time for Ph, masked."""
    rng = sample_rng(cfg.seed, step, index)
    _, ids = sampler.draw(rng)
    if cfg.rc_aug and rng.random() < 0.5:
        ids = reverse_complement_np(ids)
    return mask_window(ids, rng, cfg.mask_prob)


def stack(pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
    y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
    return x, y


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: list[tuple[np.ndarray, np.ndarray]],
    micro: int,
    device: torch.device,
    amp: torch.dtype | None,
    d: distributed.Dist,
) -> dict[str, float]:
    """Validation loss and masked-token accuracy over all targets and over the [MASK]ed ones alone."""
    was_training = model.training
    model.eval()
    mine = data[d.rank :: d.world]
    sums = [0.0] * 5
    for i in range(0, len(mine), micro):
        x, y = stack(mine[i : i + micro], device)
        with _autocast(device, amp):
            logits = model(x)
        ce, correct, n = masked_lm_sums(logits, y)
        at_mask = (x == MASK) & (y != IGNORE)
        correct_mask = (logits.argmax(-1)[at_mask] == y[at_mask]).sum()
        for j, v in enumerate((ce, correct, n, correct_mask, at_mask.sum())):
            sums[j] += float(v)
    ce, correct, n, correct_mask, n_mask = d.sum(sums, device)
    model.train(was_training)
    return {"val_loss": ce / max(n, 1), "val_acc": correct / max(n, 1), "val_acc_masked": correct_mask / max(n_mask, 1)}


def _autocast(device: torch.device, amp: torch.dtype | None):
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp)


def _say(cfg: PretrainConfig, d: distributed.Dist, msg: str) -> None:
    if d.main and not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- loop
def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) a pretraining run into cfg.output; return the final validation figures."""
    d = distributed.from_env()
    device = pick_device(cfg.device, d)
    amp = pick_precision(cfg.precision, device)
    torch.set_num_threads(cfg.threads)
    per_rank, rem = divmod(cfg.batch_size, d.world)
    micro = cfg.micro_batch or per_rank
    if rem or per_rank == 0 or per_rank % micro:
        raise UserError(
            f"--batch-size {cfg.batch_size} must split evenly into {d.world} process(es) "
            f"and then into micro-batches of {micro}"
        )
    accum = per_rank // micro
    run_dir = Path(cfg.output)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed.init(d, device)
    try:
        return _train(cfg, d, device, amp, micro, accum, run_dir)
    finally:
        distributed.shutdown(d)


def _train(cfg, d, device, amp, micro, accum, run_dir: Path) -> dict[str, Any]:
    resume_from = None
    if cfg.resume:
        found = checkpoints.list_checkpoints(run_dir)
        if not found:
            raise UserError(f"--resume: {run_dir}/checkpoints has no checkpoint to continue from")
        resume_from = found[-1][1]
        saved = checkpoints.read_state(resume_from)["settings"]
        differ = [k for k, v in cfg.run_defining().items() if saved.get(k) != v]
        if differ:
            raise UserError(
                f"--resume: these settings differ from the run in {run_dir}: {', '.join(differ)}; "
                "give the same ones, or a new -o"
            )
    elif d.main and (run_dir / "checkpoints").is_dir() and checkpoints.list_checkpoints(run_dir):
        raise UserError(f"{run_dir} already holds a run; add --resume to continue it or choose a new -o")

    genome = Genome(cfg.fasta)
    train_iv, val_iv = split_intervals(genome, cfg.intervals, cfg.val_intervals, cfg.val_regions, cfg.val_fraction)
    sampler = WindowSampler(genome, train_iv, cfg.seq_len, cfg.min_base_fraction)
    val_data = validation_set(
        genome, val_iv, cfg.seq_len, cfg.val_windows, cfg.seed, cfg.mask_prob, cfg.min_base_fraction
    )

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP checks nothing, it broadcasts)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.warmup_frac, cfg.lr, cfg.min_lr)
    scaler = torch.amp.GradScaler("cuda") if amp is torch.float16 else None
    start, elapsed_before, cpu_before = 0, 0.0, 0.0
    if resume_from is not None:
        state = checkpoints.load_checkpoint(resume_from, model, optimizer, scheduler, scaler)
        start, elapsed_before, cpu_before = state["step"], state["elapsed_s"], state.get("cpu_s", 0.0)
        _say(cfg, d, f"resuming {run_dir} at step {start}")
    if start >= cfg.steps:
        raise UserError(f"the run in {run_dir} has already done its {cfg.steps} steps")

    train_tokens = sum(len(iv) for iv in train_iv)
    _say(
        cfg,
        d,
        f"{cfg.arch} d_model {cfg.d_model} n_layer {cfg.n_layer}: {model.num_parameters():,} parameters; "
        f"{len(train_iv)} training intervals ({train_tokens:,} bp), {len(val_data)} validation windows; "
        f"{d.world} process(es) x {accum} micro-batch(es) of {micro} on {device}",
    )
    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(run_dir, resume_step=start if resume_from is not None else None)
    params = list(model.parameters())
    model.train()
    t0, tokens_since, t_since, cpu0 = time.perf_counter(), 0, time.perf_counter(), time.process_time()
    last_val: dict[str, float] = {}
    for step in range(start, cfg.steps):
        first = d.rank * micro * accum
        batches = [
            stack([make_sample(sampler, cfg, step, first + m * micro + i) for i in range(micro)], device)
            for m in range(accum)
        ]
        n_step = d.sum([float(sum(int((y != IGNORE).sum()) for _, y in batches))], device)[0]
        ce_sum = correct = 0.0
        for m, (x, y) in enumerate(batches):
            sync = contextlib.nullcontext() if d.world == 1 or m == accum - 1 else net.no_sync()
            with sync:
                with _autocast(device, amp):
                    logits = net(x)
                ce, right, _ = masked_lm_sums(logits, y)
                loss = ce * (d.world / max(n_step, 1.0))
                (scaler.scale(loss) if scaler else loss).backward()
            ce_sum += float(ce.detach())
            correct += float(right)
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        lr = optimizer.param_groups[0]["lr"]
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        ce_all, correct_all = d.sum([ce_sum, correct], device)
        done = step + 1
        tokens_since += cfg.batch_size * cfg.seq_len
        is_last = done == cfg.steps
        row: dict[str, Any] = {}
        if done % cfg.val_every == 0 or is_last:
            last_val = evaluate(model, val_data, micro, device, amp, d)
            row.update(last_val)
        if done % cfg.log_every == 0 or is_last or row:
            now = time.perf_counter()
            row.update(
                step=done,
                lr=lr,
                train_loss=ce_all / max(n_step, 1),
                train_acc=correct_all / max(n_step, 1),
                grad_norm=grad_norm,
                tokens=done * cfg.batch_size * cfg.seq_len,
                elapsed_s=round(elapsed_before + now - t0, 3),
                tokens_per_s=round(tokens_since / max(now - t_since, 1e-9), 1),
            )
            tokens_since, t_since = 0, now
            if d.main:
                log.log(row)
            val = (
                (f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} [MASK] acc {row['val_acc_masked']:.4f}")
                if "val_loss" in row
                else ""
            )
            _say(
                cfg,
                d,
                f"step {done}/{cfg.steps} loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} "
                f"lr {lr:.2e} {row['tokens_per_s']:.0f} tok/s{val}",
            )
        if d.main and (done % cfg.checkpoint_every == 0 or is_last):
            checkpoints.save_checkpoint(
                run_dir,
                done,
                model,
                optimizer,
                scheduler,
                scaler,
                {
                    "settings": cfg.run_defining(),
                    "elapsed_s": elapsed_before + time.perf_counter() - t0,
                    "cpu_s": cpu_before + time.process_time() - cpu0,
                },
            )
            checkpoints.prune(run_dir, cfg.keep_checkpoints)
        d.barrier()  # no rank runs ahead of a checkpoint being written
    elapsed = elapsed_before + time.perf_counter() - t0
    cpu = cpu_before + time.process_time() - cpu0
    if d.main:
        log.close()
        _finish(cfg, model, run_dir, elapsed, cpu, last_val, d)
    d.barrier()
    return {"steps": cfg.steps, "elapsed_s": elapsed, **last_val}


def _finish(
    cfg: PretrainConfig,
    model: CaduceusForMaskedLM,
    run_dir: Path,
    elapsed: float,
    cpu: float,
    last_val: dict[str, float],
    d: distributed.Dist,
) -> None:
    """The final model in the published layout, its training record, and the curves."""
    out = save_model(model, run_dir / "model")
    record = {
        "command": cfg.command,
        "arch": cfg.arch,
        "parameters": model.num_parameters(),
        "steps": cfg.steps,
        "seq_len": cfg.seq_len,
        "batch_size": cfg.batch_size,
        "tokens": cfg.steps * cfg.batch_size * cfg.seq_len,
        "processes": d.world,
        "elapsed_s": round(elapsed, 1),
        "cpu_s_rank0": round(cpu, 1),
        "final_validation": last_val,
        "settings": {k: jsonable(v) for k, v in dataclasses.asdict(cfg).items() if k != "command"},
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    _say(cfg, d, f"model written to {out} ({elapsed:.0f} s); curves in {run_dir / 'curves.png'}")
