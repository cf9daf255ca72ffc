"""Causal grouped-query self-attention (Vaswani et al. 2017; Ainslie et al. 2023) with rotary positions
(Su et al. 2021), the attention block of the hybrid Mamba-2/attention decoder (issue 15).

Parameter names and shapes are mamba_ssm's `MHA` (modules/mha.py), so the attention layers of a
checkpoint in `MambaLMHeadModel`'s hybrid layout load by name (`attn_cfg` holds this constructor's keys):

    q, k, v [, u, g] = in_proj(h)     (head_dim (n_heads + 2 n_heads_kv) [+ mlp_dim], d_model) [+ bias]
    q, k, v = depthwise causal conv1d  only when d_conv > 0: (qkv_dim, 1, d_conv) + bias, no activation
    q, k    = R_m q, R_m k             rotary: the first rotary_emb_dim dims of every head, position m
    o       = softmax(q k^T / sqrt(head_dim) + causal mask) v
    out     = out_proj([o ; u * SiLU(g)])   (d_model, n_heads head_dim [+ mlp_dim / 2]) [+ bias]

Each K/V head serves n_heads / n_heads_kv consecutive query heads (GQA; MQA when n_heads_kv = 1).
The product goes through `F.scaled_dot_product_attention(is_causal=True)`, whose fused kernels never
hold the (L, L) score matrix, so memory stays linear in L (on CPU, PyTorch 2.13, fp32, bf16 and float64
alike: batch 1, 4 heads, L 8192, about 11 MiB forward and 39 MiB forward + backward, where the scores
alone are 1 GiB). Only SDPA's "math" fallback builds them, and it is what a CUDA GPU falls back to when
`enable_gqa` meets a kernel that cannot broadcast K/V heads (anything but flash: fp32, head_dim > 256);
there K and V are repeated per query head instead, which keeps the memory-efficient kernel. Rotary
tables are recomputed per call from the positions, so nothing but the two projections (and the conv)
enters the state dict, as in mamba_ssm, whose rotary buffers are not persistent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.errors import UserError

# `enable_gqa` (PyTorch >= 2.5) lets a fused kernel read each K/V head for its whole group of query heads;
# where no fused kernel would take it, K and V are repeated per query head: more memory, the same result.
SDPA_GQA = torch.__version__ >= (2, 5)


def sdpa_takes_gqa(q: torch.Tensor) -> bool:
    """Whether a fused SDPA kernel broadcasts K/V heads itself: the CPU kernel does in every dtype; on CUDA
    only flash (fp16/bf16, head_dim <= 256) does, and elsewhere `enable_gqa` would select the math path."""
    if not SDPA_GQA:
        return False
    if q.device.type == "cpu":
        return True
    return q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256


class CausalSelfAttention(nn.Module):
    """Causal GQA self-attention, (batch, L, d_model) -> (batch, L, d_model)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_heads_kv: int | None = None,
        head_dim: int | None = None,
        mlp_dim: int = 0,
        qkv_proj_bias: bool = True,
        out_proj_bias: bool = True,
        softmax_scale: float | None = None,
        causal: bool = True,
        layer_idx: int | None = None,
        d_conv: int = 0,
        rotary_emb_dim: int = 0,
        rotary_emb_base: float = 10000.0,
        rotary_emb_interleaved: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_heads_kv = num_heads if num_heads_kv is None else num_heads_kv
        self.head_dim = embed_dim // num_heads if head_dim is None else head_dim
        check_attn_cfg(embed_dim, num_heads, self.num_heads_kv, head_dim, causal, rotary_emb_dim, self.head_dim)
        self.embed_dim, self.num_heads, self.layer_idx = embed_dim, num_heads, layer_idx
        self.softmax_scale, self.d_conv = softmax_scale, d_conv
        self.rotary_emb_dim, self.rotary_emb_base = rotary_emb_dim, float(rotary_emb_base)
        self.rotary_emb_interleaved = rotary_emb_interleaved
        self.mlp_dim = math.ceil(mlp_dim / 256) * 256  # mamba_ssm rounds the parallel MLP up to 256
        qkv_dim = self.head_dim * (num_heads + 2 * self.num_heads_kv)
        factory = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(embed_dim, qkv_dim + self.mlp_dim, bias=qkv_proj_bias, **factory)
        if d_conv > 0:
            self.conv1d = nn.Conv1d(qkv_dim, qkv_dim, d_conv, padding=d_conv - 1, groups=qkv_dim, **factory)
        out_dim = self.head_dim * num_heads + self.mlp_dim // 2
        self.out_proj = nn.Linear(out_dim, embed_dim, bias=out_proj_bias, **factory)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, L, _ = hidden.shape
        qkv = self.in_proj(hidden)
        if self.mlp_dim > 0:
            qkv, x_mlp = qkv.split([qkv.shape[-1] - self.mlp_dim, self.mlp_dim], dim=-1)
            u, g = x_mlp.chunk(2, dim=-1)
        if self.d_conv > 0:
            qkv = self.conv1d(qkv.transpose(1, 2))[..., :L].transpose(1, 2)
        h, h_kv, d = self.num_heads, self.num_heads_kv, self.head_dim
        q, k, v = qkv.split([h * d, h_kv * d, h_kv * d], dim=-1)
        q = q.view(batch, L, h, d).transpose(1, 2)  # (batch, heads, L, head_dim), SDPA's layout
        k = k.view(batch, L, h_kv, d).transpose(1, 2)
        v = v.view(batch, L, h_kv, d).transpose(1, 2)
        if self.rotary_emb_dim > 0:
            cos, sin = rotary_cos_sin(L, self.rotary_emb_dim, self.rotary_emb_base, q)
            q = apply_rotary(q, cos, sin, self.rotary_emb_interleaved)
            k = apply_rotary(k, cos, sin, self.rotary_emb_interleaved)
        o = grouped_causal_attention(q, k, v, self.softmax_scale)
        o = o.transpose(1, 2).reshape(batch, L, h * d)
        if self.mlp_dim > 0:
            o = torch.cat([o, u * F.silu(g)], dim=-1)
        return self.out_proj(o)


def check_attn_cfg(
    embed_dim: int,
    num_heads: int,
    num_heads_kv: int,
    head_dim: int | None,
    causal: bool,
    rotary_emb_dim: int,
    resolved_head_dim: int,
) -> None:
    """Refuse, in one line naming the key, an attention config this decoder block cannot honour."""
    if not causal:
        raise UserError("attn_cfg.causal is false: the hybrid decoder's attention is causal only")
    if num_heads % num_heads_kv:
        raise UserError(f"attn_cfg.num_heads {num_heads} is not a multiple of num_heads_kv {num_heads_kv}")
    if head_dim is None and embed_dim % num_heads:
        raise UserError(f"attn_cfg.num_heads {num_heads} does not divide d_model {embed_dim}; set head_dim")
    if rotary_emb_dim % 2 or rotary_emb_dim > resolved_head_dim:
        raise UserError(
            f"attn_cfg.rotary_emb_dim {rotary_emb_dim} must be even and at most head_dim {resolved_head_dim}"
        )


def rotary_cos_sin(L: int, dim: int, base: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(m theta_i), sin(m theta_i) for positions m < L, theta_i = base^(-2i / dim): (L, dim / 2).

    Angles are computed in fp32 (as flash-attn's RotaryEmbedding) or in float64 for float64 inputs, never
    in bf16, whose 8-bit mantissa cannot hold m theta_i at long L; they are cast to the input's dtype."""
    ftype = torch.promote_types(like.dtype, torch.float32)
    theta = base ** -(torch.arange(0, dim, 2, device=like.device, dtype=ftype) / dim)
    angle = torch.outer(torch.arange(L, device=like.device, dtype=ftype), theta)
    return angle.cos().to(like.dtype), angle.sin().to(like.dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate the pairs (x_a, x_b) of x's first 2 cos.shape[-1] dims by the angles: x (..., L, head_dim).

    Non-interleaved (GPT-NeoX) pairs dim i with dim i + r/2; interleaved (GPT-J) pairs 2i with 2i + 1.
    The rotation gives <R_m q, R_n k> = <q, R_(n-m) k>: attention sees relative positions only."""
    r = 2 * cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    if interleaved:
        x_a, x_b = x_rot[..., 0::2], x_rot[..., 1::2]
    else:
        x_a, x_b = x_rot.chunk(2, dim=-1)
    y_a = x_a * cos - x_b * sin
    y_b = x_b * cos + x_a * sin
    y = torch.stack([y_a, y_b], dim=-1).flatten(-2) if interleaved else torch.cat([y_a, y_b], dim=-1)
    return torch.cat([y, x_pass], dim=-1)


def grouped_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale + causal mask) v with q (batch, h, L, d) and k, v (batch, h_kv, L, d).

    Query head j reads K/V head j // (h / h_kv), mamba_ssm's grouping (repeat_interleave on the head
    dimension), which is also what `enable_gqa` does."""
    group = q.shape[1] // k.shape[1]
    if group > 1 and sdpa_takes_gqa(q):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
