"""The hybrid Mamba-2/attention decoder (HybriDNA-style; arXiv 2502.10807): a causal DNA language model.

A stack of n_layer pre-norm blocks, each a mixer with a residual and, when d_intermediate > 0, a gated MLP
with its own residual. Mixer i is causal grouped-query attention when i is in `attn_layer_idx` (HybriDNA:
every eighth block), a Mamba-2 mixer otherwise. In mamba_ssm's "add, norm, mix" order:

    r_0 = e;  r_i = h_{i-1} + r_{i-1};  h_i = Mixer_i(Norm_i(r_i))
              with MLP:  r_i <- h_i + r_i;  h_i = MLP_i(Norm2_i(r_i))
    out = Norm_f(h_n + r_n);   logits = out W_head^T   (W_head = the embedding table when tie_embeddings)

Config keys (`MambaConfig`) and state-dict names (`MambaLMHeadModel`: backbone.embedding,
backbone.layers.i.{norm, mixer, norm2, mlp}, backbone.norm_f, lm_head) are mamba_ssm's, so a checkpoint in
that layout loads. The model reads one strand 5'->3': "ph" strand handling (the engine averages a second
pass on the reverse complement), and echo embeddings (`[x ; x]`, the second copy's states) for tasks that
need both sides of a position.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vepcli.errors import UserError
from vepcli.nn.attention import CausalSelfAttention
from vepcli.nn.backbone import NOTHING, Backbone, Family, register
from vepcli.nn.mamba2 import Mamba2
from vepcli.nn.mlp import GatedMLP
from vepcli.nn.norm import RMSNorm, apply_norm
from vepcli.nn.ssd import ssd_backend

MODEL_TYPE = "mamba_hybrid"  # vepcli's name for mamba_ssm's MambaLMHeadModel layout (its config has none)
MIXER_LAYERS = ("Mamba2",)  # ssm_cfg["layer"] values this family builds
# vepcli's own keys, written next to MambaConfig's (mamba_ssm's MambaConfig(**json) needs them dropped)
OWN_KEYS = ("model_type", "max_length", "norm_epsilon", "initializer_cfg")


@dataclass
class MambaLMConfig:
    """mamba_ssm's `MambaConfig`, field for field, plus the trained length and the norm epsilon."""

    d_model: int = 256
    d_intermediate: int = 0
    n_layer: int = 8
    vocab_size: int = 12
    ssm_cfg: dict[str, Any] = field(default_factory=lambda: {"layer": "Mamba2"})
    attn_layer_idx: list[int] = field(default_factory=list)
    attn_cfg: dict[str, Any] = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True  # a kernel choice in mamba_ssm; the same numbers either way here
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    norm_epsilon: float = 1e-5
    initializer_cfg: dict[str, Any] = field(default_factory=dict)
    max_length: int | None = None  # vepcli's own: trained sequence length, when known
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, written back unchanged

    def __post_init__(self) -> None:
        self.ssm_cfg = {"layer": "Mamba2", **(self.ssm_cfg or {})}
        self.attn_layer_idx = sorted(int(i) for i in self.attn_layer_idx or [])
        self.attn_cfg = dict(self.attn_cfg or {})

    @property
    def padded_vocab_size(self) -> int:
        """The embedding and head rows: vocab_size rounded up to pad_vocab_size_multiple (as mamba_ssm)."""
        m = self.pad_vocab_size_multiple
        return -(-self.vocab_size // m) * m

    @property
    def mamba2_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.ssm_cfg.items() if k != "layer"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MambaLMConfig:
        """Build from a MambaConfig JSON; refuse in one line what this family cannot honour."""
        d = copy.deepcopy(d)
        if d.get("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise UserError(f"model_type is {d.get('model_type')!r}, not {MODEL_TYPE!r}")
        layer = (d.get("ssm_cfg") or {}).get("layer", "Mamba1")
        if layer not in MIXER_LAYERS:
            raise UserError(
                f"ssm_cfg.layer is {layer!r}: vepcli's causal family runs Mamba-2 mixers only "
                '(set "layer": "Mamba2", or load a Caduceus model)'
            )
        n_layer = int(d.get("n_layer", 8))
        bad = [i for i in d.get("attn_layer_idx") or [] if not (isinstance(i, int) and 0 <= i < n_layer)]
        if bad:
            raise UserError(f"attn_layer_idx {bad} are not layer indices of a {n_layer}-layer model")
        _check_keys("ssm_cfg", d.get("ssm_cfg") or {}, Mamba2, {"layer"})
        _check_keys("attn_cfg", d.get("attn_cfg") or {}, CausalSelfAttention, set())
        if not 0 <= d.get("d_intermediate", 0) <= 1 << 16:
            raise UserError(f"d_intermediate {d['d_intermediate']} must be 0 (no MLP) to 65536")
        if d.get("vocab_size", 12) < 12:
            raise UserError(f"vocab_size {d['vocab_size']} is smaller than the 12 character tokens of DNA models")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known and k != "model_type"}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        if d["max_length"] is None:
            d.pop("max_length")
        return dict(sorted({**extra, **d, "model_type": MODEL_TYPE}.items()))


def _check_keys(name: str, cfg: Any, module: type, allowed: set[str]) -> None:
    """Refuse, in one line, a mixer config that is not an object or has keys the mixer does not take."""
    if not isinstance(cfg, dict):
        raise UserError(f"{name} must be a JSON object")
    params = set(inspect.signature(module.__init__).parameters) - {"self", "device", "dtype", "layer_idx"}
    unknown = sorted(set(cfg) - params - allowed)
    if unknown:
        raise UserError(f"{name} has keys {module.__name__} does not take: {unknown}")


def is_mamba_lm_config(d: dict[str, Any]) -> bool:
    """A mamba_ssm MambaConfig JSON (which names no model_type) rather than an early Caduceus upload."""
    caduceus_only = {"rcps", "bidirectional", "complement_map", "bidirectional_strategy"}
    return not caduceus_only & set(d) and bool({"d_intermediate", "attn_layer_idx", "tie_embeddings"} & set(d))


class Block(nn.Module):
    """One pre-norm block: (hidden, residual) -> (hidden, residual), mamba_ssm's `Block` unfused."""

    def __init__(self, config: MambaLMConfig, layer_idx: int) -> None:
        super().__init__()
        d = config.d_model
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = make_norm(config)
        if layer_idx in config.attn_layer_idx:
            self.mixer: nn.Module = CausalSelfAttention(d, layer_idx=layer_idx, **config.attn_cfg)
        else:
            self.mixer = Mamba2(d, layer_idx=layer_idx, **config.mamba2_kwargs)
        if config.d_intermediate > 0:
            self.norm2 = make_norm(config)
            self.mlp = GatedMLP(d, hidden_features=config.d_intermediate, out_features=d)
        else:
            self.mlp = None

    def _add_norm(self, norm: nn.Module, hidden: torch.Tensor, residual: torch.Tensor | None):
        residual = hidden if residual is None else hidden + residual
        normed = apply_norm(norm, residual).to(hidden.dtype)
        return normed, residual.float() if self.residual_in_fp32 else residual

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None):
        normed, residual = self._add_norm(self.norm, hidden, residual)
        hidden = self.mixer(normed)
        if self.mlp is not None:
            normed, residual = self._add_norm(self.norm2, hidden, residual)
            hidden = self.mlp(normed)
        return hidden, residual


def make_norm(config: MambaLMConfig) -> nn.Module:
    if config.rms_norm:
        return RMSNorm(config.d_model, eps=config.norm_epsilon)
    return nn.LayerNorm(config.d_model, eps=config.norm_epsilon)


class MixerModel(nn.Module):
    """Embedding, n_layer blocks, final add-norm: token ids -> (batch, L, d_model)."""

    def __init__(self, config: MambaLMConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm_f = make_norm(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embedding(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = hidden if residual is None else hidden + residual
        return apply_norm(self.norm_f, residual).to(hidden.dtype)


class HybridLM(Backbone):
    """The causal LM: token ids (batch, L) -> next-token logits (batch, L, vocab) in fp32; logits at t
    predict token t + 1 and depend on tokens <= t only."""

    model_type = MODEL_TYPE
    objective = "causal"

    def __init__(self, config: MambaLMConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = MixerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self.init_weights()
        self.tie_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """mamba_ssm's recipe as MambaLMHeadModel leaves it: embeddings N(0, 0.02^2), Linear biases 0, and
        each residual branch's output projection (out_proj, fc2) kaiming-uniform / sqrt(n_layer)."""
        cfg = {"initializer_range": 0.02, "rescale_prenorm_residual": True, **self.config.initializer_cfg}
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=cfg["initializer_range"])
            if cfg["rescale_prenorm_residual"] and name.rsplit(".", 1)[-1] in ("out_proj", "fc2"):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                module.weight /= math.sqrt(self.config.n_layer)

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    # the backbone interface -----------------------------------------------------------------------
    @property
    def strands(self) -> str:
        return "ph"

    @property
    def arch(self) -> str:
        return "hybrid"

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids)

    def scan_backend(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        """The Mamba-2 SSD scan: "ssd-mamba_ssm" (its Triton kernels, CUDA) or "ssd-torch" (chunked form)."""
        return f"ssd-{ssd_backend(device)}"

    def describe(self) -> dict[str, Any]:
        c = self.config
        ssm, attn = c.ssm_cfg, c.attn_cfg
        return {
            "architecture": "hybrid Mamba-2/attention decoder (mamba_ssm MambaLMHeadModel layout)",
            "d_model": c.d_model,
            "n_layer": c.n_layer,
            "attention layers": ", ".join(map(str, c.attn_layer_idx)) or "none",
            "mamba-2": f"d_state {ssm.get('d_state', 128)}, headdim {ssm.get('headdim', 64)}, "
            f"ngroups {ssm.get('ngroups', 1)}, expand {ssm.get('expand', 2)}",
            "attention": f"{attn.get('num_heads', '-')} heads, {attn.get('num_heads_kv', attn.get('num_heads', '-'))}"
            f" kv heads, rotary {attn.get('rotary_emb_dim', 0)} dims"
            if c.attn_layer_idx
            else "none",
            "d_intermediate": c.d_intermediate,
            "tie_embeddings": c.tie_embeddings,
            "vocab_size": c.padded_vocab_size,
        }


HEAD_IS_EMBEDDING = re.compile(r"^lm_head\.weight$")

register(
    Family(
        model_type=MODEL_TYPE,
        config_from_dict=MambaLMConfig.from_dict,
        model=HybridLM,
        tied=lambda config: HEAD_IS_EMBEDDING if config.tie_embeddings else NOTHING,
        sniff=is_mamba_lm_config,
    )
)
