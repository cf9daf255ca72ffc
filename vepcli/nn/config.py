"""CaduceusConfig: the published `config.json`, read and written field for field."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vepcli.errors import UserError
from vepcli.nn.tokenizer import COMPLEMENT

SSM_DEFAULTS: dict[str, Any] = {
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "dt_rank": "auto",
    "dt_min": 0.001,
    "dt_max": 0.1,
    "dt_init": "random",
    "dt_scale": 1.0,
    "dt_init_floor": 1e-4,
    "conv_bias": True,
    "bias": False,
    "use_fast_path": True,
}
AUTO_MAP = {
    "AutoConfig": "configuration_caduceus.CaduceusConfig",
    "AutoModel": "modeling_caduceus.Caduceus",
    "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_caduceus.CaduceusForSequenceClassification",
}


@dataclass
class CaduceusConfig:
    """Hyper-parameters of a Caduceus model; names and defaults follow the published config."""

    d_model: int = 256
    n_layer: int = 16
    vocab_size: int = 16
    pad_vocab_size_multiple: int = 8
    ssm_cfg: dict[str, Any] = field(default_factory=lambda: dict(SSM_DEFAULTS))
    rms_norm: bool = True
    residual_in_fp32: bool = False
    fused_add_norm: bool = True
    norm_epsilon: float = 1e-5
    initializer_cfg: dict[str, Any] = field(
        default_factory=lambda: {
            "initializer_range": 0.02,
            "n_residuals_per_layer": 1,
            "rescale_prenorm_residual": True,
        }
    )
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = True
    complement_map: dict[int, int] | None = None
    max_length: int | None = None  # vepcli's own: trained sequence length, when known
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, written back unchanged

    def __post_init__(self) -> None:
        self.ssm_cfg = {**SSM_DEFAULTS, **(self.ssm_cfg or {})}
        if self.vocab_size % self.pad_vocab_size_multiple:
            self.vocab_size += self.pad_vocab_size_multiple - self.vocab_size % self.pad_vocab_size_multiple
        if self.complement_map is None:
            self.complement_map = {i: int(COMPLEMENT[i]) if i < len(COMPLEMENT) else i for i in range(self.vocab_size)}
        self.complement_map = {int(k): int(v) for k, v in self.complement_map.items()}
        for i in range(len(self.complement_map), self.vocab_size):
            self.complement_map[i] = i

    # derived sizes ------------------------------------------------------------------------------
    @property
    def d_inner(self) -> int:
        return int(self.ssm_cfg["expand"] * self.d_model)

    @property
    def d_state(self) -> int:
        return int(self.ssm_cfg["d_state"])

    @property
    def dt_rank(self) -> int:
        r = self.ssm_cfg["dt_rank"]
        return math.ceil(self.d_model / 16) if r == "auto" else int(r)

    @property
    def state_width(self) -> int:
        """Channels of the last hidden state: 2*d_model for PS (both strands), d_model for Ph."""
        return 2 * self.d_model if self.rcps else self.d_model

    @property
    def arch(self) -> str:
        return "caduceus-ps" if self.rcps else "caduceus-ph"

    # published JSON -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaduceusConfig:
        """Build from a published config dict; refuse in one line what this code cannot honour."""
        d = copy.deepcopy(d)
        if d.get("model_type", "caduceus") != "caduceus":
            raise UserError(f"model_type is {d.get('model_type')!r}, not 'caduceus'; this is not a Caduceus config")
        strategy = d.get("bidirectional_strategy", "add")
        if d.get("bidirectional", True) and strategy not in ("add", "ew_multiply"):
            raise UserError(f"bidirectional_strategy {strategy!r} is not supported (use 'add' or 'ew_multiply')")
        ssm = d.get("ssm_cfg") or {}
        unknown = set(ssm) - set(SSM_DEFAULTS) - {"layer_idx"}
        if unknown:
            raise UserError(f"ssm_cfg has fields this Mamba (v1) mixer cannot honour: {sorted(unknown)}")
        if ssm.get("dt_init", "random") not in ("random", "constant"):
            raise UserError(f"ssm_cfg.dt_init {ssm['dt_init']!r} is not supported (use 'random' or 'constant')")
        if d.get("vocab_size", 16) < 12:
            raise UserError(f"vocab_size {d['vocab_size']} is smaller than the 12 Caduceus character tokens")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The published JSON layout (string keys in complement_map, auto_map, architectures)."""
        d = asdict(self)
        extra = d.pop("extra")
        if d["max_length"] is None:
            d.pop("max_length")
        d["complement_map"] = {str(k): v for k, v in self.complement_map.items()}
        out = {
            "architectures": ["CaduceusForMaskedLM"],
            "auto_map": dict(AUTO_MAP),
            **extra,
            **d,
            "model_type": "caduceus",
        }
        out.setdefault("torch_dtype", "float32")
        out.setdefault("transformers_version", "4.38.1")
        return dict(sorted(out.items()))
