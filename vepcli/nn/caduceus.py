"""Caduceus (Schiff et al. 2024): a stack of BiMamba mixers, optionally reverse-complement equivariant.

Ph (rcps false), pre-norm "add, norm, mix" with no MLP:

    r_0 = e;  r_i = h_{i-1} + r_{i-1};  h_i = BiMamba_i(Norm_i(r_i));  out = Norm_f(h_n + r_n)

PS (rcps true) returns both strands in 2*d_model channels and is built from the RC-equivariant pieces
of `vepcli.nn.rcps`: inside the stack the strands are the rows of one doubled batch, so every layer is
Ph's layer. With `fused_add_norm` (all released checkpoints) the published code feeds the halves to each
layer's add-norm in swapped order; we reproduce it (`swap_strand_rows`).
Module and parameter names follow the published checkpoints so their state dicts load as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from vepcli.nn.backbone import Backbone, Family, register
from vepcli.nn.config import CaduceusConfig
from vepcli.nn.kernels import scan_backend
from vepcli.nn.mamba import BiMamba, Mamba
from vepcli.nn.norm import RMSNorm, apply_norm
from vepcli.nn.rcps import RCPSEmbedding, RCPSLMHead, RCPSWrapper, from_strand_rows, swap_strand_rows


class CaduceusBlock(nn.Module):
    """One layer: residual add, norm, BiMamba mixer. Returns (mixer output, residual); PS: on strand rows."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.swap_halves = config.rcps and config.fused_add_norm  # the published fused path's order
        self.residual_in_fp32 = config.residual_in_fp32
        mixer = BiMamba(
            config.d_model,
            config.bidirectional,
            config.bidirectional_strategy,
            config.bidirectional_weight_tie,
            **config.ssm_cfg,
        )
        self.mixer = RCPSWrapper(mixer) if config.rcps else mixer
        self.norm = make_norm(config)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None):
        residual = hidden if residual is None else hidden + residual
        if self.residual_in_fp32:
            residual = residual.float()
        if self.swap_halves:
            residual = swap_strand_rows(residual)
        return self.mixer(apply_norm(self.norm, residual).to(hidden.dtype)), residual


def make_norm(config: CaduceusConfig) -> nn.Module:
    if config.rms_norm:
        return RMSNorm(config.d_model, eps=config.norm_epsilon)
    return nn.LayerNorm(config.d_model, eps=config.norm_epsilon)


class CaduceusEmbeddings(nn.Module):
    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        if config.rcps:
            self.word_embeddings = RCPSEmbedding(config.vocab_size, config.d_model, config.complement_map)
        else:
            self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, L, d_model); PS: the strand rows (2 batch, L, d_model)."""
        if isinstance(self.word_embeddings, RCPSEmbedding):
            return self.word_embeddings.strand_rows(input_ids)
        return self.word_embeddings(input_ids)


class CaduceusMixerModel(nn.Module):
    """Embeddings, n_layer blocks, final add-norm."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.rcps = config.rcps
        self.embeddings = CaduceusEmbeddings(config)
        self.layers = nn.ModuleList(CaduceusBlock(config) for _ in range(config.n_layer))
        self.norm_f = make_norm(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embeddings(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = hidden if residual is None else hidden + residual
        normed = apply_norm(self.norm_f, residual).to(hidden.dtype)
        return from_strand_rows(normed) if self.rcps else normed


class CaduceusPreTrained(nn.Module):
    """Weight initialisation shared by the base and masked-LM models (the published recipe)."""

    config: CaduceusConfig

    @torch.no_grad()
    def init_weights(self) -> None:
        cfg = self.config.initializer_cfg or {}
        std = cfg.get("initializer_range", 0.02)
        n_res = cfg.get("n_residuals_per_layer", 1)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, Mamba) and cfg.get("rescale_prenorm_residual", True):
                # GPT-2 scheme: residual branch outputs scaled by 1/sqrt(n_layer)
                nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
                module.out_proj.weight /= math.sqrt(n_res * self.config.n_layer)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class Caduceus(CaduceusPreTrained):
    """The base model: token ids (batch, L) -> last hidden state (batch, L, state_width)."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = CaduceusMixerModel(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids)


class CaduceusForMaskedLM(CaduceusPreTrained, Backbone):
    """Caduceus with the tied masked-LM head: ids -> logits (batch, L, vocab_size) in fp32."""

    model_type = "caduceus"
    objective = "masked"

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.config = config
        self.caduceus = Caduceus(config)
        if config.rcps:
            self.lm_head = RCPSLMHead(config.d_model, config.vocab_size, config.complement_map)
        else:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """The LM head IS the input embedding table, and mamba_rev's projections ARE mamba_fwd's."""
        emb = self.caduceus.backbone.embeddings.word_embeddings
        head = self.lm_head.lm_head if self.config.rcps else self.lm_head
        head.weight = emb.weight
        for layer in self.caduceus.backbone.layers:
            mixer = layer.mixer.submodule if self.config.rcps else layer.mixer
            if mixer.tied:
                mixer.tie_weights()

    # the backbone interface -----------------------------------------------------------------------
    @property
    def strands(self) -> str:
        return "ps" if self.config.rcps else "ph"

    @property
    def arch(self) -> str:
        return self.config.arch

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.caduceus(input_ids)

    def scan_backend(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        """The selective-scan backend (`vepcli.nn.kernels`): cpu, triton, mamba_ssm or torch."""
        return scan_backend(device, dtype)

    def forward(self, input_ids: torch.Tensor, return_hidden: bool = False):
        hidden = self.caduceus(input_ids)
        logits = self.lm_logits(hidden)
        return (logits, hidden) if return_hidden else logits

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "architecture": "Caduceus",
            "variant": "PS (RC-equivariant)" if c.rcps else "Ph (strand-average at inference)",
            "d_model": c.d_model,
            "n_layer": c.n_layer,
            "state_width": c.state_width,
            "d_state": c.d_state,
            "d_inner": c.d_inner,
            "dt_rank": c.dt_rank,
            "bidirectional": f"{c.bidirectional} ({c.bidirectional_strategy}, weight tie {c.bidirectional_weight_tie})",
            "vocab_size": c.vocab_size,
        }


def published_state(state: dict[str, torch.Tensor], with_head: bool) -> dict[str, torch.Tensor]:
    """A published state dict in our keys: base-model uploads lack the `caduceus.` prefix."""
    if with_head:
        if not any(k.startswith("caduceus.") for k in state):
            return {f"caduceus.{k}": v for k, v in state.items()}
        return state
    return {k.removeprefix("caduceus."): v for k, v in state.items() if not k.startswith("lm_head.")}


# the published files leave these out: mamba_rev's projections and the LM head are tied
TIED = re.compile(r"(mamba_rev\.(in_proj|out_proj)\.(weight|bias)|^lm_head\.weight|^lm_head\.lm_head\.weight)$")

register(
    Family(
        model_type="caduceus",
        config_from_dict=CaduceusConfig.from_dict,
        model=CaduceusForMaskedLM,
        tied=lambda _: TIED,
        adapt_state=published_state,
        base=Caduceus,
    )
)
