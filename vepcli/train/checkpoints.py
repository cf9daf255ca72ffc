"""Training checkpoints: everything a resume needs to continue exactly where a run stopped.

`checkpoints/step-N/` holds `model/` (the published layout, so any checkpoint can be scored with),
`optimizer.pt` (AdamW moments), `trainer.pt` (scheduler, grad scaler, torch RNG states) and
`state.json` (step, settings, elapsed time, Python and NumPy RNG states), and any files of the task
(fine-tuning: `head.safetensors`). The data position is the
step: sampling is a function of (seed, step, sample index). A checkpoint is written into a
temporary folder and renamed, so a run killed while saving leaves the previous one intact.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vepcli.atomic import atomic_dir
from vepcli.errors import UserError
from vepcli.nn.checkpoint import load_into, read_state_dict, save_model

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    v, keys, gauss = state["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    state: dict[str, Any],
    extras: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoints/step-{step}/ atomically and return its path; `extras(folder)` adds a task's files."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    with atomic_dir(final) as tmp:
        save_model(model, tmp / "model")
        if extras is not None:
            extras(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        trainer = {
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),  # {} for a disabled (bf16, fp32) scaler
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(trainer, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": _rng_state()}, indent=1) + "\n")
    return final


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / "checkpoints"
    found = [
        (int(m[1]), p) for p in root.glob("step-*") if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()
    ]
    return sorted(found)


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps them all)."""
    if keep > 0:
        for _, path in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(path, ignore_errors=True)


def average_last(run_dir: Path, model: torch.nn.Module, last: int) -> list[int]:
    """Load into `model` the mean of the weights of the newest `last` checkpoints, and return their steps:
    checkpoint averaging (Vaswani et al. 2017), which smooths the noise of small-batch updates. The sums
    run in float64 and in step order, so the mean is the same on every machine."""
    found = list_checkpoints(run_dir)[-last:]
    weights = [read_state_dict(path / "model") for _, path in found]
    mean = {
        k: (sum(w[k].double() for w in weights) / len(weights)).to(v.dtype) if v.is_floating_point() else v
        for k, v in weights[-1].items()
    }
    steps = [step for step, _ in found]
    load_into(model, mean, f"the mean of the checkpoints of steps {steps} in {run_dir}")
    return steps


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text())


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, scaler and RNG states in place; return state.json."""
    path = Path(path)
    try:
        state = read_state(path)
        load_into(model, read_state_dict(path / "model"), str(path / "model"))
        device = next(model.parameters()).device
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
        trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise UserError(f"cannot resume from {path}: {err}") from None
    scheduler.load_state_dict(trainer["scheduler"])
    if trainer["scaler"]:
        scaler.load_state_dict(trainer["scaler"])
    torch.set_rng_state(trainer["torch_rng"])
    if trainer["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    _set_rng_state(state["rng"])
    return state
