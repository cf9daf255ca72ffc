"""The settings of `vepcli pretrain`, importable without torch (the CLI reads their defaults at start-up).

A training config is a dataclass whose fields are the command's options. Fields made with `operational`
change only speed, logging or where files go; every other field defines the run, so that `run_identity`
(what a resume must match, and what the outputs record) follows from the dataclass itself.
"""

from __future__ import annotations

import math
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, NamedTuple

from vepcli.defaults import added_setting, recorded
from vepcli.errors import UserError


class Arch(NamedTuple):
    """What `--arch` trains: whether the model is reverse-complement equivariant by construction (then it
    needs no RC augmentation) and its objective ("masked": [MASK]ed tokens; "causal": the next token)."""

    equivariant: bool
    objective: str


ARCHS = {
    "caduceus-ps": Arch(True, "masked"),
    "caduceus-ph": Arch(False, "masked"),
    "hybrid": Arch(False, "causal"),
    "xlstm-ps": Arch(True, "masked"),
    "xlstm-ph": Arch(False, "masked"),
    "xlstm-causal": Arch(False, "causal"),
}
_OPERATIONAL = {"defines_run": False}


def operational(default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A field that a resumed run may change (device, threads, logging and checkpoint cadence, ...)."""
    return field(default=default, default_factory=factory, metadata=_OPERATIONAL)


def run_identity(cfg: Any) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues: every field not `operational`."""
    return {
        f.name: jsonable(getattr(cfg, f.name))
        for f in fields(cfg)
        if f.metadata.get("defines_run", True) and recorded(cfg, f)
    }


def settings(cfg: Any) -> dict[str, Any]:
    """Every setting of the run (operational ones too) as JSON values, for its training record."""
    return {f.name: jsonable(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "command" and recorded(cfg, f)}


def jsonable(v: Any) -> Any:
    """Tuples as lists, so that settings compare equal after a JSON round trip (resume checks)."""
    return list(v) if isinstance(v, tuple) else v


def command_line() -> str:
    """The command as typed, recorded in the run's outputs."""
    return " ".join(["vepcli", *sys.argv[1:]])


def require_at_least_one(cfg: Any, names: tuple[str, ...]) -> None:
    """One line naming the option, for settings that count something (steps, epochs, threads, ...)."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")


@dataclass(kw_only=True)
class RunControl:
    """The settings every training command has that change only how a run goes, not what it learns
    (the options of `commands.options.training_run_options`, and --micro-batch)."""

    micro_batch: int | None = operational(None)  # default: the whole per-process batch in one pass
    keep_checkpoints: int = operational(2)  # 0: all
    log_every: int = operational(10)
    device: str = operational("auto")
    precision: str = operational("auto")
    threads: int = operational(1)
    resume: bool = operational(False)
    quiet: bool = operational(False)
    command: str = operational(factory=command_line)


_HYBRID_SHAPE = ("headdim", "attn_layers", "attn_heads", "d_intermediate")
_COUNTS = (
    "d_model",
    "n_layer",
    "d_state",
    "seq_len",
    "batch_size",
    "steps",
    "val_every",
    "val_windows",
    "checkpoint_every",
    "average_last",
    "log_every",
    "threads",
)


@dataclass
class PretrainConfig(RunControl):
    """Every setting of `vepcli pretrain`; the defaults are the published recipe scaled to one machine."""

    fasta: str
    output: str = operational()
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
    val_every: int = operational(100)
    val_windows: int = 128
    checkpoint_every: int = operational(500)
    average_last: int = operational(1)  # the model written: the mean of the last N checkpoints' weights
    seed: int = 0
    # the hybrid's shape (mamba_ssm MambaConfig names); None: the default below, or not a hybrid run
    headdim: int | None = added_setting()  # Mamba-2 channels per head; default 64 (or 2 d_model if smaller)
    attn_layers: tuple[int, ...] | None = added_setting()  # attn_layer_idx; default: the last of every 8
    attn_heads: int | None = added_setting()  # attention heads (as many key/value heads); default d_model / 64
    d_intermediate: int | None = added_setting()  # gated-MLP width; 0 (default): no MLP
    # DNA-xLSTM's block layout: the indices of its sLSTM blocks (the rest mLSTM); None: all mLSTM
    slstm_layers: tuple[int, ...] | None = added_setting()

    def __post_init__(self) -> None:
        self.val_regions = tuple(self.val_regions)
        self.betas = tuple(self.betas)
        if self.arch not in ARCHS:
            raise UserError(f"--arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.rc_aug is None:
            self.rc_aug = not ARCHS[self.arch].equivariant
        require_at_least_one(self, _COUNTS)
        saved = math.ceil(self.steps / self.checkpoint_every)  # every checkpoint_every steps, and the last
        if self.average_last > saved:
            raise UserError(
                f"--average-last {self.average_last} is more than the {saved} checkpoints of {self.steps} steps "
                f"at --checkpoint-every {self.checkpoint_every}"
            )
        if not 0 < self.mask_prob < 1:
            raise UserError("--mask-prob must be between 0 and 1")
        if self.arch == "hybrid":
            self._hybrid_shape()
        else:
            given = [name for name in _HYBRID_SHAPE if getattr(self, name) is not None]
            if given:
                raise UserError(f"--{given[0].replace('_', '-')} is an option of --arch hybrid only")
        self._xlstm_shape()

    @property
    def objective(self) -> str:
        """ "masked" (Caduceus: [MASK]ed-token prediction) or "causal" (the hybrid: next-token prediction)."""
        return ARCHS[self.arch].objective

    def _xlstm_shape(self) -> None:
        """DNA-xLSTM's --slstm-layers: indices of the stack, for --arch xlstm-* only."""
        if self.slstm_layers is None:
            return
        if not self.arch.startswith("xlstm-"):
            raise UserError("--slstm-layers is an option of --arch xlstm-ps, xlstm-ph and xlstm-causal only")
        self.slstm_layers = tuple(sorted(set(int(i) for i in self.slstm_layers)))
        bad = [i for i in self.slstm_layers if not 0 <= i < self.n_layer]
        if bad:
            raise UserError(f"--slstm-layers {bad} are not layer indices 0..{self.n_layer - 1}")

    def _hybrid_shape(self) -> None:
        """Fill the hybrid's defaults and refuse, in one line each, a shape the model cannot take."""
        d_inner = 2 * self.d_model  # Mamba-2's expand 2
        if self.headdim is None:
            self.headdim = min(64, d_inner)
        if self.attn_layers is None:
            self.attn_layers = tuple(i for i in range(self.n_layer) if i % 8 == 7 or i == self.n_layer - 1)
        self.attn_layers = tuple(sorted(set(int(i) for i in self.attn_layers)))
        if self.attn_heads is None:
            self.attn_heads = max(1, self.d_model // 64)
        if self.d_intermediate is None:
            self.d_intermediate = 0
        if self.headdim < 1 or d_inner % self.headdim:
            raise UserError(f"--headdim {self.headdim} must divide 2 x --d-model = {d_inner} (Mamba-2's inner width)")
        bad = [i for i in self.attn_layers if not 0 <= i < self.n_layer]
        if bad:
            raise UserError(f"--attn-layers {bad} are not layer indices 0..{self.n_layer - 1}")
        if self.attn_heads < 1 or self.d_model % self.attn_heads:
            raise UserError(f"--attn-heads {self.attn_heads} must divide --d-model {self.d_model}")
        if (self.d_model // self.attn_heads) % 2:
            raise UserError(f"--attn-heads {self.attn_heads}: the head width d_model / heads must be even (rotary)")
        if self.d_intermediate < 0:
            raise UserError("--d-intermediate must be 0 (no MLP) or more")
