"""Device, precision and thread policy: one set of rules for scoring, embedding, pretraining and fine-tuning.

Scoring runs the model in the precision asked for (fp32 by default); training keeps fp32 weights and runs
the forward pass under autocast, with a gradient scaler only for fp16 (bf16 and fp32 need none). The
scaler is always there, disabled when not needed, so the training step has no `if scaler` branches.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from vepcli.errors import UserError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TRAIN_DEVICES = ("auto", "cpu", "cuda")  # each training process takes the GPU of its LOCAL_RANK


def pick_device(device: str) -> torch.device:
    """auto (a GPU if one is visible), cpu, cuda or cuda:K; one error for a missing GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(device)


def training_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of one training process: rank r of a torchrun launch takes GPU LOCAL_RANK."""
    if name not in TRAIN_DEVICES:
        raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")
    device = pick_device(name)
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


def training_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. auto: bf16 on GPUs that have it, else fp16; fp32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in PRECISIONS:
        raise UserError(f"--precision must be auto, fp32, bf16 or fp16, not {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a GPU; use bf16 or fp32 on CPU")
    return None if name == "fp32" else PRECISIONS[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed precision for the forward pass; fp32 (or None) runs as it is."""
    if dtype is None or dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16, whose gradients underflow; disabled (a pass-through) for bf16 and fp32."""
    return torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)


def default_batch_size(device: torch.device) -> int:
    """Windows per forward pass when none is asked for: 8 fill a GPU; on a CPU one window keeps a layer's
    tensors in cache, which made `embed` 1.7x faster than 8 (docs/benchmarks.md). Outputs do not depend on it."""
    return 8 if device.type == "cuda" else 1


def set_threads(threads: int | None) -> None:
    """CPU threads for torch (per process); None leaves torch's default (all cores)."""
    if threads:
        torch.set_num_threads(threads)
