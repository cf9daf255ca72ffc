"""The training engine: one loop for pretraining and fine-tuning, on one process or several under torchrun.

A `Task` (masked-LM pretraining, a fine-tuned head) supplies the model, the batches of each step, the loss
and the validation; the engine does everything else, the same way for both:

- placement: device and precision (`vepcli.runtime`), DDP over NCCL on GPUs and gloo on CPU, the split of a
  step's B samples: rank r of W takes samples [r B/W, (r+1) B/W), in micro-batches that accumulate gradients;
- the optimizer step: forward under autocast, the loss summed and divided by the step's normaliser over all
  ranks and micro-batches (so the update depends on neither W nor the micro-batch size; the factor W undoes
  DDP's averaging), backward through the gradient scaler, then unscale, clip, step, schedule;
- one metrics log, atomic checkpoints, resume with the run-identity check, early stopping.

The data of step s is a pure function of (seed, s), so a resumed run takes exactly the steps of an
uninterrupted one. Only rank 0 writes files or prints.
"""

from __future__ import annotations

import contextlib
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vepcli import runtime
from vepcli.errors import UserError
from vepcli.train import checkpoints, distributed
from vepcli.train.config import run_identity
from vepcli.train.report import MetricsLog


@dataclass(frozen=True)
class Placement:
    """Where one process runs and its share of each step: `accum` micro-batches of `micro` samples."""

    d: distributed.Dist
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None for fp32
    micro: int
    accum: int

    def share(self) -> slice:
        """This rank's samples of a step's batch."""
        per_rank = self.micro * self.accum
        return slice(self.d.rank * per_rank, (self.d.rank + 1) * per_rank)

    def autocast(self) -> contextlib.AbstractContextManager:
        return runtime.autocast(self.device, self.amp)


@contextlib.contextmanager
def launch(cfg: Any) -> Iterator[Placement]:
    """Device, precision and threads from cfg, the batch split over processes, and the process group."""
    d = distributed.from_env()
    device = runtime.training_device(cfg.device, d.local_rank)
    amp = runtime.training_precision(cfg.precision, device)
    runtime.set_threads(cfg.threads)
    per_rank, rem = divmod(cfg.batch_size, d.world)
    micro = cfg.micro_batch or per_rank
    if rem or per_rank == 0 or per_rank % micro:
        raise UserError(
            f"--batch-size {cfg.batch_size} must split evenly into {d.world} process(es) "
            f"and then into micro-batches of {micro}"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed.init(d, device)
    try:
        yield Placement(d, device, amp, micro, per_rank // micro)
    finally:
        distributed.shutdown(d)


@dataclass
class Optimisation:
    """Optimizer, learning-rate schedule, gradient scaler (disabled unless fp16) and gradient clipping."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    params: list[torch.nn.Parameter]
    grad_clip: float

    def step(self) -> tuple[float, list[float]]:
        """Unscale, clip, step, schedule; returns the gradient norm before clipping and the step's rates."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return grad_norm, lrs


@dataclass
class Schedule:
    """The run's length and what happens every so many optimizer steps."""

    total: int
    val_every: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int

    def due(self, done: int, every: int) -> bool:
        return done % every == 0 or done == self.total


@dataclass
class EarlyStopping:
    """Stop after `patience` validations without a better `metric` (0: never); remembers the best step."""

    metric: str
    higher_is_better: bool
    patience: int
    best: float | None = None
    best_step: int | None = None
    bad: int = 0
    stopped_early: bool = False

    def observe(self, value: float, step: int) -> bool:
        """Record one validation; True if it is the best so far."""
        better = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        if better:
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        self.stopped_early = not better and self.patience > 0 and self.bad >= self.patience
        return better

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad, "stopped_early": self.stopped_early}

    def load(self, state: dict[str, Any]) -> None:
        for key in self.state():
            if key in state:
                setattr(self, key, state[key])


class Task(ABC):
    """What a kind of training supplies to the engine. Subclasses set the attributes in their __init__,
    implement the abstract methods, and override the hooks at the end (no-ops here) as they need."""

    model: torch.nn.Module  # checkpointed as model/ in the published layout
    net: torch.nn.Module  # what the step runs (the model, or a module that holds it); DDP wraps it
    optimisation: Optimisation
    schedule: Schedule
    log_columns: tuple[str, ...]
    rate_column: str  # throughput column of the log: tokens_per_s, examples_per_s
    per_step: int  # tokens or examples per optimizer step, for that column
    stopper: EarlyStopping | None = None
    tensorboard: bool = False

    @abstractmethod
    def batches(self, step: int) -> tuple[Iterable[Any], float]:
        """This rank's micro-batches of optimizer step `step`, and the step's loss normaliser (all ranks)."""

    @abstractmethod
    def forward(self, net: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The model's output on one micro-batch (the engine runs it under autocast)."""

    @abstractmethod
    def loss_sums(self, output: torch.Tensor, batch: Any) -> tuple[torch.Tensor, list[float]]:
        """The summed loss of a micro-batch, and other sums the step reports (e.g. correct predictions)."""

    @abstractmethod
    def step_figures(self, sums: list[float], norm: float, lrs: list[float], grad_norm: float, done: int) -> dict:
        """The log row of a step from its sums over all ranks (loss first, as loss_sums gave them)."""

    @abstractmethod
    def validate(self, net: torch.nn.Module, done: int) -> dict[str, float]:
        """Validation figures, named as in the log (val_...)."""

    @abstractmethod
    def describe(self) -> str:
        """The line printed when the run starts: data, model, processes, device."""

    @abstractmethod
    def progress(self, row: dict[str, Any]) -> str:
        """The line printed for a logged step."""

    @abstractmethod
    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """Write the final outputs (rank 0) and return the run's figures."""

    def start_fresh(self) -> None:
        """Set-up that a new run does and a resumed one restores from its checkpoint."""
        return

    def keep_best(self, done: int) -> None:
        """Called after a validation that is the best so far (when the task stops early)."""
        return

    def save_extras(self, folder: Path) -> None:
        """Files a checkpoint holds beside model/ (written into its staging folder)."""
        return

    def load_extras(self, folder: Path) -> None:
        """Read back what save_extras wrote."""
        return


def say(quiet: bool, d: distributed.Dist, msg: str) -> None:
    """A progress line on stderr, from rank 0 alone, unless --quiet."""
    if d.main and not quiet:
        print(msg, file=sys.stderr, flush=True)


def resume_point(cfg: Any, run_dir: Path, d: distributed.Dist) -> Path | None:
    """The checkpoint to continue from (None for a new run); refuses mixing runs in one folder."""
    found = checkpoints.list_checkpoints(run_dir)
    if not cfg.resume:
        if d.main and found:
            raise UserError(f"{run_dir} already holds a run; add --resume to continue it or choose a new -o")
        return None
    if not found:
        raise UserError(f"--resume: {run_dir}/checkpoints has no checkpoint to continue from")
    saved = checkpoints.read_state(found[-1][1])["settings"]
    differ = [k for k, v in run_identity(cfg).items() if saved.get(k) != v]
    if differ:
        raise UserError(
            f"--resume: these settings differ from the run in {run_dir}: {', '.join(differ)}; "
            "give the same ones, or a new -o"
        )
    return found[-1][1]


class Engine:
    """Runs a task's optimizer steps with validation, logging, checkpoints and early stopping."""

    def __init__(self, cfg: Any, place: Placement, task: Task, run_dir: Path) -> None:
        self.cfg, self.place, self.task, self.run_dir = cfg, place, task, run_dir
        self.opt = task.optimisation
        self.start, self.elapsed_before, self.cpu_before = 0, 0.0, 0.0  # where a resumed run starts
        self.t0 = self.t_logged = time.perf_counter()
        self.cpu0, self.step_logged = time.process_time(), 0
        self.last_val: dict[str, float] = {}
        self.metrics: MetricsLog | None = None  # rank 0's metrics.csv

    def say(self, msg: str) -> None:
        say(self.cfg.quiet, self.place.d, msg)

    def run(self, resume_from: Path | None) -> dict[str, Any]:
        """Train from the start or from `resume_from` to the end (or an early stop); the task's figures."""
        task, d, schedule = self.task, self.place.d, self.task.schedule
        if resume_from is not None:
            self.restore(resume_from)
        else:
            task.start_fresh()
        net = task.net
        if d.world > 1:
            device = self.place.device
            net = torch.nn.parallel.DistributedDataParallel(
                task.net, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.say(task.describe())
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            resume_step = self.start if resume_from is not None else None
            self.metrics = MetricsLog(self.run_dir, task.log_columns, resume_step, task.tensorboard)
        task.net.train()
        self.t0 = self.t_logged = time.perf_counter()
        self.cpu0, self.step_logged = time.process_time(), self.start
        for step in range(self.start, schedule.total):
            if self.one_step(net, step):
                break
        if self.metrics is not None:
            self.metrics.close()
        result = task.finish({"elapsed_s": self.elapsed(), "cpu_s": self.cpu(), "last_val": self.last_val})
        d.barrier()
        return result

    def restore(self, path: Path) -> None:
        opt = self.opt
        state = checkpoints.load_checkpoint(path, self.task.model, opt.optimizer, opt.scheduler, opt.scaler)
        self.task.load_extras(path)
        if self.task.stopper is not None:
            self.task.stopper.load(state)
        self.start, self.elapsed_before, self.cpu_before = state["step"], state["elapsed_s"], state.get("cpu_s", 0.0)
        if state.get("stopped_early") or self.start >= self.task.schedule.total:
            raise UserError(f"the run in {self.run_dir} has already finished ({self.start} steps)")
        self.say(f"resuming {self.run_dir} at step {self.start}")

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def cpu(self) -> float:
        return self.cpu_before + time.process_time() - self.cpu0

    def one_step(self, net: torch.nn.Module, step: int) -> bool:
        """Optimizer step `step`, then what is due after it; True when the run stops early."""
        task, schedule, done = self.task, self.task.schedule, step + 1
        row = self.optimizer_step(net, step)
        validated, stop = schedule.due(done, schedule.val_every), False
        if validated:
            self.last_val = task.validate(net, done)
            row.update(self.last_val)
            stop = self.observe(done)
        if validated or schedule.due(done, schedule.log_every):
            self.log(row, done)
        if self.place.d.main and (schedule.due(done, schedule.checkpoint_every) or stop):
            self.checkpoint(done)
        self.place.d.barrier()  # no rank runs ahead of a checkpoint being written
        if stop:
            s = task.stopper
            self.say(
                f"early stop at step {done}: no better validation {s.metric} in {s.patience} "
                f"evaluations (best {s.best:.4f} at step {s.best_step})"
            )
        return stop

    def optimizer_step(self, net: torch.nn.Module, step: int) -> dict[str, Any]:
        """Forward and backward over this rank's micro-batches, then one update; the step's figures."""
        task, place = self.task, self.place
        batches, norm = task.batches(step)
        scale = place.d.world / norm  # DDP averages over ranks: this makes the update the step's mean
        sums: list[float] = []
        for m, batch in enumerate(batches):
            last = place.d.world == 1 or m == place.accum - 1
            with contextlib.nullcontext() if last else net.no_sync():
                with place.autocast():
                    output = task.forward(net, batch)
                loss, stats = task.loss_sums(output, batch)
                self.opt.scaler.scale(loss * scale).backward()
            values = [float(loss.detach()), *stats]
            sums = [a + b for a, b in zip(sums, values, strict=True)] if sums else values
        grad_norm, lrs = self.opt.step()
        return task.step_figures(place.d.sum(sums, place.device), norm, lrs, grad_norm, step + 1)

    def observe(self, done: int) -> bool:
        """Early stopping on the validation just done; True to stop."""
        stopper = self.task.stopper
        if stopper is None:
            return False
        if stopper.observe(self.last_val[f"val_{stopper.metric}"], done):
            self.task.keep_best(done)
        return stopper.stopped_early

    def log(self, row: dict[str, Any], done: int) -> None:
        """A row of metrics.csv and a progress line, with the time and the throughput since the last one."""
        now = time.perf_counter()
        rate = (done - self.step_logged) * self.task.per_step / max(now - self.t_logged, 1e-9)
        elapsed = self.elapsed_before + now - self.t0
        row.update({"step": done, "elapsed_s": round(elapsed, 3), self.task.rate_column: round(rate, 1)})
        self.t_logged, self.step_logged = now, done
        if self.metrics is not None:
            self.metrics.log(row)
        self.say(self.task.progress(row))

    def checkpoint(self, done: int) -> None:
        state = {"settings": run_identity(self.cfg), "elapsed_s": self.elapsed(), "cpu_s": self.cpu()}
        if self.task.stopper is not None:
            state.update(self.task.stopper.state())
        opt = self.opt
        checkpoints.save_checkpoint(
            self.run_dir,
            done,
            self.task.model,
            opt.optimizer,
            opt.scheduler,
            opt.scaler,
            state,
            extras=self.task.save_extras,
        )
        checkpoints.prune(self.run_dir, self.task.schedule.keep_checkpoints)
