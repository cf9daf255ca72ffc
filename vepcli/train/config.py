"""The settings of `vepcli pretrain`, importable without torch (the CLI reads their defaults at start-up)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from vepcli.errors import UserError


def jsonable(v: Any) -> Any:
    """Tuples as lists, so that settings compare equal after a JSON round trip (resume checks)."""
    return list(v) if isinstance(v, tuple) else v


ARCHS = {"caduceus-ps": True, "caduceus-ph": False}
# settings a resumed run must share with the run it continues (the others only change speed or logging)
_RUN_DEFINING = (
    "fasta",
    "intervals",
    "val_intervals",
    "val_regions",
    "val_fraction",
    "arch",
    "d_model",
    "n_layer",
    "d_state",
    "seq_len",
    "batch_size",
    "steps",
    "lr",
    "min_lr",
    "warmup_frac",
    "weight_decay",
    "betas",
    "grad_clip",
    "mask_prob",
    "min_base_fraction",
    "rc_aug",
    "seed",
    "val_windows",
)


@dataclass
class PretrainConfig:
    """Every setting of `vepcli pretrain`; the defaults are the published recipe scaled to one machine."""

    fasta: str
    output: str
    intervals: str | None = None
    val_intervals: str | None = None
    val_regions: tuple[str, ...] = ()
    val_fraction: float = 0.05
    arch: str = "caduceus-ps"
    d_model: int = 128
    n_layer: int = 4
    d_state: int = 16
    seq_len: int = 1024
    batch_size: int = 16
    micro_batch: int | None = None
    steps: int = 1000
    lr: float = 8e-3
    min_lr: float = 1e-4
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    min_base_fraction: float = 0.5
    rc_aug: bool | None = None  # default: on for Ph, off for PS (which is equivariant by construction)
    val_every: int = 100
    val_windows: int = 128
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int = 1
    resume: bool = False
    quiet: bool = False
    command: str = field(default_factory=lambda: " ".join(["vepcli", *sys.argv[1:]]))

    def __post_init__(self) -> None:
        self.val_regions = tuple(self.val_regions)
        self.betas = tuple(self.betas)
        if self.arch not in ARCHS:
            raise UserError(f"--arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.rc_aug is None:
            self.rc_aug = not ARCHS[self.arch]
        for name in (
            "d_model",
            "n_layer",
            "d_state",
            "seq_len",
            "batch_size",
            "steps",
            "val_every",
            "val_windows",
            "checkpoint_every",
            "log_every",
            "threads",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 < self.mask_prob < 1:
            raise UserError("--mask-prob must be between 0 and 1")

    def run_defining(self) -> dict[str, Any]:
        return {k: jsonable(getattr(self, k)) for k in _RUN_DEFINING}
