"""XLSTMConfig: DNA-xLSTM's hyper-parameters, in the public `xLSTMConfig`'s names (m_* mLSTM, s_* sLSTM).

vepcli writes it as config.json with model_type "dna_xlstm"; `nn/xlstm_published.py` builds it from a
published model_config.json. Options the public code has but no published model uses, and that vepcli
does not implement, are refused in one line rather than ignored.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vepcli.errors import UserError
from vepcli.nn.tokenizer import COMPLEMENT

MODEL_TYPE = "dna_xlstm"
M_BACKENDS = ("parallel", "chunkwise")
# public options vepcli refuses when set away from these values (no published model sets them)
# (smallest, largest) of each size field: beyond these a config describes no DNA-xLSTM and only exhausts memory
INT_RANGES = {
    "d_model": (1, 1 << 14),
    "n_layer": (1, 1 << 10),
    "vocab_size": (12, 1 << 12),
    "m_conv1d_kernel_size": (1, 64),
    "m_qkv_proj_blocksize": (1, 1 << 10),
    "m_num_heads": (1, 1 << 10),
    "m_chunk_size": (1, 1 << 24),
    "s_num_heads": (1, 1 << 10),
    "s_conv1d_kernel_size": (0, 64),
    "s_round_proj_up_to_multiple_of": (1, 1 << 12),
}
FLAGS = ("bidirectional", "rcps", "m_position_embeddings", "m_bias", "s_round_proj_up_dim_up", "ps_head_flip")
UNSUPPORTED = {
    "m_conv1d_causal": True,
    "s_conv1d_causal": True,
    "s_position_embeddings": False,
    "bidirectional_alternating": False,
    "m_backend_bidirectional": False,
}


@dataclass
class XLSTMConfig:
    """Hyper-parameters of a DNA-xLSTM model; names and defaults follow the public xLSTMConfig."""

    d_model: int = 128
    n_layer: int = 4
    vocab_size: int = 12
    s_lstm_at: list[int] = field(default_factory=list)  # blocks that are sLSTM; the others are mLSTM
    bidirectional: bool = True  # masked LM (weight-tied both directions) when true, causal LM when false
    rcps: bool = False  # PS (RC-equivariant) when true, PH otherwise
    complement_map: dict[int, int] | None = None
    m_conv1d_kernel_size: int = 4
    m_qkv_proj_blocksize: int = 4
    m_num_heads: int = 4
    m_proj_factor: float = 2.0
    m_backend: str = "chunkwise"  # which public backend's stabiliser convention (m_0 = 0 or -inf): nn/mlstm.py
    m_chunk_size: int = 64  # the public code's chunk; vepcli computes with its own (nn/mlstm.py CHUNK)
    m_position_embeddings: bool = False  # rotary positions on q and k
    m_bias: bool = False
    s_num_heads: int = 4
    s_conv1d_kernel_size: int = 4
    s_proj_factor: float = 1.3
    s_round_proj_up_dim_up: bool = True
    s_round_proj_up_to_multiple_of: int = 64
    ps_head_flip: bool = False  # the published PS deviation (nn/xlstm.py); only published checkpoints set it
    max_length: int | None = None  # trained sequence length, when known

    def __post_init__(self) -> None:
        if not isinstance(self.s_lstm_at, list) or not all(isinstance(i, int) for i in self.s_lstm_at):
            raise UserError(f"DNA-xLSTM config: s_lstm_at must be a list of block indices, not {self.s_lstm_at!r}")
        self.s_lstm_at = sorted(set(self.s_lstm_at))
        self.check()
        cmap = self.complement_map or {
            i: int(COMPLEMENT[i]) if i < len(COMPLEMENT) else i for i in range(self.vocab_size)
        }
        ids = [str(i) for i in range(self.vocab_size)]
        if (
            not isinstance(cmap, dict)
            or sorted(map(str, cmap), key=int) != ids
            or not all(isinstance(v, int) and 0 <= v < self.vocab_size for v in cmap.values())
        ):
            raise UserError(f"DNA-xLSTM config: complement_map must map each token id 0..{self.vocab_size - 1} to one")
        self.complement_map = {int(k): int(v) for k, v in cmap.items()}

    # derived sizes ------------------------------------------------------------------------------
    @property
    def m_inner_dim(self) -> int:
        """The mLSTM up-projection: m_proj_factor * d_model rounded down to a multiple of 64 (as published)."""
        return int(math.floor(self.m_proj_factor * self.d_model / 64) * 64)

    @property
    def s_ffn_dim(self) -> int:
        m = self.s_round_proj_up_to_multiple_of
        rounded = math.ceil if self.s_round_proj_up_dim_up else math.floor
        return int(rounded(self.s_proj_factor * self.d_model / m) * m)

    @property
    def m0(self) -> float:
        return 0.0 if self.m_backend == "chunkwise" else float("-inf")

    @property
    def arch(self) -> str:
        """xlstm-ph / xlstm-ps (masked), xlstm-causal / xlstm-causal-ps."""
        if self.bidirectional:
            return "xlstm-ps" if self.rcps else "xlstm-ph"
        return "xlstm-causal-ps" if self.rcps else "xlstm-causal"

    # JSON ---------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> XLSTMConfig:
        """Build from a config dict; refuse in one line what this code cannot honour."""
        d = copy.deepcopy(d)
        if d.pop("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise UserError(f"model_type is not {MODEL_TYPE!r}; this is not a DNA-xLSTM config")
        for key, value in UNSUPPORTED.items():
            if d.pop(key, value) != value:
                raise UserError(
                    f"DNA-xLSTM option {key}={not value} is not supported by vepcli (no published model uses it)"
                )
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(f"DNA-xLSTM config has fields vepcli does not know: {unknown}")
        return cls(**d)

    def check(self) -> None:
        """One line for field types and sizes the blocks cannot be built with."""
        self.check_types()
        self.check_sizes()

    def check_types(self) -> None:
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"DNA-xLSTM config: {name} must be a whole number from {low} to {high}, not {value!r}")
        for name in FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"DNA-xLSTM config: {name} must be true or false, not {getattr(self, name)!r}")
        if self.max_length is not None and (
            not isinstance(self.max_length, int) or not 1 <= self.max_length <= 1 << 24
        ):
            raise UserError(f"DNA-xLSTM config: max_length must be a whole number from 1 to {1 << 24}")
        for name in ("m_proj_factor", "s_proj_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 16:
                raise UserError(f"DNA-xLSTM config: {name} must be a number above 0 and at most 16, not {value!r}")

    def check_sizes(self) -> None:
        bad = [i for i in self.s_lstm_at if not 0 <= i < self.n_layer]
        if bad:
            raise UserError(f"s_lstm_at {bad} are not block indices of a {self.n_layer}-block model")
        if self.m_backend not in M_BACKENDS:
            raise UserError(f"m_backend {self.m_backend!r} is not one of {', '.join(M_BACKENDS)}")
        if len(self.s_lstm_at) < self.n_layer:
            inner = self.m_inner_dim
            if inner <= 0 or inner % self.m_num_heads or inner % self.m_qkv_proj_blocksize:
                raise UserError(
                    f"mLSTM inner width {inner} (d_model {self.d_model} x m_proj_factor {self.m_proj_factor}, "
                    f"rounded down to 64) must be positive and split into {self.m_num_heads} heads and "
                    f"blocks of {self.m_qkv_proj_blocksize}"
                )
            if self.m_position_embeddings and inner // self.m_num_heads % 2:
                raise UserError(f"rotary positions need an even mLSTM head width, not {inner // self.m_num_heads}")
        if self.s_lstm_at and (self.d_model % self.s_num_heads or self.s_ffn_dim <= 0):
            raise UserError(
                f"d_model {self.d_model} must split into {self.s_num_heads} sLSTM heads and give an FFN width "
                f"above 0 (s_proj_factor {self.s_proj_factor}, multiple of {self.s_round_proj_up_to_multiple_of})"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["max_length"] is None:
            d.pop("max_length")
        d["complement_map"] = {str(k): v for k, v in self.complement_map.items()}
        return dict(sorted({**d, "model_type": MODEL_TYPE}.items()))


# the archs a training run can ask for: (bidirectional, rcps); blocks are mLSTM unless s_lstm_at says otherwise
ARCHS = {"xlstm-ph": (True, False), "xlstm-ps": (True, True), "xlstm-causal": (False, False)}
# the public training script's mLSTM/sLSTM settings (scripts_pretrain/run_pretrain_xlstm.sh)
TRAINING_DEFAULTS = dict(
    m_position_embeddings=True,
    m_bias=True,
    s_proj_factor=1.1,
    s_round_proj_up_dim_up=False,
    s_round_proj_up_to_multiple_of=8,
)


def config_for_arch(
    arch: str, d_model: int, n_layer: int, max_length: int, s_lstm_at: list[int] | None = None
) -> XLSTMConfig:
    """A new model's config for `--arch` (masked PH or PS, or causal), with the public training settings."""
    if arch not in ARCHS:
        raise UserError(f"DNA-xLSTM arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    bidirectional, rcps = ARCHS[arch]
    return XLSTMConfig(
        d_model=d_model,
        n_layer=n_layer,
        s_lstm_at=list(s_lstm_at or []),
        bidirectional=bidirectional,
        rcps=rcps,
        max_length=max_length,
        **TRAINING_DEFAULTS,
    )
