"""DNA-xLSTM (Bio-xLSTM, Schmidinger et al. 2025): a stack of mLSTM and sLSTM blocks as a DNA language model.

Pre-norm residual blocks: an mLSTM block is x + mLSTM(LN(x)); an sLSTM block adds a gated FFN,
x + sLSTM(LN(x)) then x + FFN(LN(x)); the stack ends with a LayerNorm. Masked models (`bidirectional`) read
both directions with one set of weights (Caduceus-style weight tying): each block is
block(x) + flip_L(block(flip_L(x))), run as one doubled batch. Causal models read 5'->3' only.

Strands: PH reads one strand (the engine averages a pass on the reverse complement). PS is exactly
RC-equivariant: every piece of the network acts on the two strands with shared weights, so vepcli runs the
whole stack once on a doubled batch [x ; rc(x)] and stores the reverse strand's states flipped in length
and channels (`nn/rcps.py`'s layout: h(rc x) = flip_LC(h(x)) to float tolerance).

The public PS code deviates: its sLSTM layer reverses the head axis of the reverse strand's cell output
before the norm (it meant the time axis), which breaks equivariance (|h(rc x) - RC(h(x))| reaches 4-5
on random models). `ps_head_flip` reproduces that, and only the reader of published checkpoints sets it
(`nn/xlstm_published.py`); a model vepcli builds or trains never has it.

Names follow the public `xLSTMLMModel` (token_embedding, xlstm_block_stack.blocks.{i}.{xlstm_norm, xlstm,
ffn_norm, ffn}, post_blocks_norm, lm_head) except where `nn/xlstm_published.py` maps them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.backbone import Backbone, Family, register
from vepcli.nn.mlp import GatedMLP
from vepcli.nn.mlstm import MLSTMLayer
from vepcli.nn.rcps import RCPSEmbedding, RCPSLMHead, from_strand_rows
from vepcli.nn.slstm import SLSTMLayer
from vepcli.nn.tokenizer import VOCAB_SIZE
from vepcli.nn.xlstm_config import MODEL_TYPE, XLSTMConfig
from vepcli.nn.xlstm_parts import ResidualLayerNorm

PADDED_LOGIT = -1e9  # the logit of the padded vocabulary's ids 12..15, which no DNA window holds


class XLSTMBlock(nn.Module):
    """One pre-norm residual block: mLSTM, or sLSTM followed by a gated FFN."""

    def __init__(self, config: XLSTMConfig, slstm: bool) -> None:
        super().__init__()
        d = config.d_model
        self.xlstm_norm = ResidualLayerNorm(d)
        if slstm:
            self.xlstm: nn.Module = SLSTMLayer(d, config.s_num_heads, config.s_conv1d_kernel_size)
            self.ffn_norm = ResidualLayerNorm(d)
            self.ffn = GatedMLP(d, config.s_ffn_dim, activation=F.gelu, multiple_of=1)
        else:
            self.xlstm = MLSTMLayer(
                d,
                config.m_inner_dim,
                config.m_num_heads,
                config.m_qkv_proj_blocksize,
                config.m_conv1d_kernel_size,
                config.m_bias,
                config.m_position_embeddings,
                config.m0,
            )
            self.ffn_norm = self.ffn = None

    def forward(self, x: torch.Tensor, head_flip: torch.Tensor | None) -> torch.Tensor:
        normed = self.xlstm_norm(x)
        if isinstance(self.xlstm, SLSTMLayer):
            x = x + self.xlstm(normed, head_flip)
        else:
            x = x + self.xlstm(normed)
        return x if self.ffn is None else x + self.ffn(self.ffn_norm(x))


class XLSTMBlockStack(nn.Module):
    """The blocks (each bidirectional by weight tying when the model is masked) and the final norm."""

    def __init__(self, config: XLSTMConfig) -> None:
        super().__init__()
        self.bidirectional = config.bidirectional
        self.blocks = nn.ModuleList(XLSTMBlock(config, i in config.s_lstm_at) for i in range(config.n_layer))
        self.post_blocks_norm = ResidualLayerNorm(config.d_model)

    def forward(self, x: torch.Tensor, head_flip: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch, L, d_model); `head_flip` (batch,): rows that get the published PS deviation."""
        if not self.bidirectional:
            for block in self.blocks:
                x = block(x, head_flip)
            return self.post_blocks_norm(x)
        # both directions as one doubled batch: half the sequential steps of two calls, for the same numbers
        n, both_flip = x.shape[0], None if head_flip is None else torch.cat([head_flip, head_flip])
        for block in self.blocks:
            y = block(torch.cat([x, x.flip(1)]), both_flip)
            x = y[:n] + y[n:].flip(1)
        return self.post_blocks_norm(x)


class XLSTMLM(Backbone):
    """The language model: token ids (batch, L) -> logits (batch, L, 16) in float32 (`lm_logits`)."""

    model_type = MODEL_TYPE

    def __init__(self, config: XLSTMConfig) -> None:
        super().__init__()
        self.config = config
        d, vocab = config.d_model, config.vocab_size
        if config.rcps:
            self.token_embedding: nn.Module = RCPSEmbedding(vocab, d, config.complement_map)
            self.lm_head: nn.Module = RCPSLMHead(d, vocab, config.complement_map)
        else:
            self.token_embedding = nn.Embedding(vocab, d)
            self.lm_head = nn.Linear(d, vocab, bias=False)
        self.xlstm_block_stack = XLSTMBlockStack(config)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """xLSTM's recipe: small init (std sqrt(2 / 5d)) for what reads the residual stream, Wang init for what
        writes to it; forget gates start open, spread over heads (mLSTM) or channels, later blocks longer (sLSTM)."""
        d, blocks = self.config.d_model, self.config.n_layer
        small = ("embedding.weight", "lm_head.weight", "proj_up.weight", "fc1.weight", "_proj.weight", "gate.weight")
        for name, p in self.named_parameters():
            if name.endswith(("proj_down.weight", "fc2.weight")):
                nn.init.normal_(p, std=2 / blocks / math.sqrt(d))
            elif name.endswith(small):
                nn.init.normal_(p, std=math.sqrt(2 / (5 * d)))
        for index, block in enumerate(self.xlstm_block_stack.blocks):
            if isinstance(block.xlstm, MLSTMLayer):
                cell = block.xlstm.mlstm_cell
                nn.init.zeros_(cell.fgate.weight)
                cell.fgate.bias.copy_(torch.linspace(3.0, 6.0, cell.heads))
                nn.init.zeros_(cell.igate.weight)
                nn.init.normal_(cell.igate.bias, std=0.1)
            else:
                bias = block.xlstm.slstm_cell.bias
                depth = index / (blocks - 1) if blocks > 1 else 0.0
                spread = torch.arange(bias.shape[-1]) / max(bias.shape[-1] - 1, 1)
                bias[:, 1] = 5.0 - 12.0 * spread ** (0.3 + 1.3 * depth)

    # the backbone interface -----------------------------------------------------------------------
    @property
    def strands(self) -> str:
        return "ps" if self.config.rcps else "ph"

    @property
    def arch(self) -> str:
        return self.config.arch

    def scan_backend(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        """The recurrences run in PyTorch everywhere: the chunkwise mLSTM and the sLSTM loop."""
        return "xlstm-torch"

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        stack = self.xlstm_block_stack
        if not self.config.rcps:
            return stack(self.token_embedding(input_ids))
        batch = input_ids.shape[0]
        rc_rows = torch.arange(2 * batch, device=input_ids.device) >= batch
        h = stack(self.token_embedding.strand_rows(input_ids), rc_rows if self.config.ps_head_flip else None)
        return from_strand_rows(h)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over vepcli's padded vocabulary (16 ids, as Caduceus'): the published head has rows for the
        12 real tokens only, so ids 12..15 get a logit of -1e9 (probability 0, finite for any arithmetic)."""
        logits = self.lm_head(hidden).float()
        return F.pad(logits, (0, max(0, VOCAB_SIZE - logits.shape[-1])), value=PADDED_LOGIT)

    def describe(self) -> dict[str, Any]:
        c = self.config
        kinds = "".join("s" if i in c.s_lstm_at else "m" for i in range(c.n_layer))
        variant = "PS (RC-equivariant)" if c.rcps else "PH (strand-average at inference)"
        if c.ps_head_flip:
            variant = "PS with the published sLSTM head-flip deviation (not exactly RC-equivariant)"
        mlstm = f"inner {c.m_inner_dim}, {c.m_num_heads} heads, rotary {c.m_position_embeddings}"
        return {
            "architecture": "DNA-xLSTM",
            "variant": variant,
            "bidirectional": c.bidirectional,
            "d_model": c.d_model,
            "n_layer": c.n_layer,
            "blocks": kinds,
            "mLSTM": mlstm if "m" in kinds else "none",
            "sLSTM": f"{c.s_num_heads} heads, FFN {c.s_ffn_dim}" if "s" in kinds else "none",
            "vocab_size": c.vocab_size,
        }


class XLSTMMaskedLM(XLSTMLM):
    objective = "masked"


class XLSTMCausalLM(XLSTMLM):
    objective = "causal"


def build(config: XLSTMConfig) -> XLSTMLM:
    """The masked model when the config is bidirectional, the causal one otherwise."""
    return XLSTMMaskedLM(config) if config.bidirectional else XLSTMCausalLM(config)


# the embedding's and head's complement maps are rebuilt from the config, never read from the files
COMPLEMENT_BUFFERS = re.compile(r"^(token_embedding|lm_head)\.complement_map$")

register(
    Family(
        model_type=MODEL_TYPE,
        config_from_dict=XLSTMConfig.from_dict,
        model=build,
        tied=lambda _: COMPLEMENT_BUFFERS,
    )
)
