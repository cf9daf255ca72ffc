"""The mLSTM of xLSTM (Beck et al. 2024, section 2.3) and its layer as DNA-xLSTM uses it.

The cell, per head, with exponential input gate i_t = exp(i~_t) and sigmoid forget gate f_t = sigma(f~_t),
stabilised by m_t (so no exp overflows; the output does not depend on m except through the lower bound
of the normaliser):

    m_t = max(log f_t + m_{t-1}, i~_t)
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(i~_t - m_t) k_t v_t^T        k_t scaled by 1/sqrt(d)
    n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(i~_t - m_t) k_t
    h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)

Three forms compute it: `mlstm_recurrent` (this loop, the float64 yardstick), `mlstm_parallel` (the
(L, L) decay matrix D[t, s] = sum_{s < r <= t} log f_r + i~_s, for short inputs) and `mlstm_chunkwise`
(parallel inside chunks, the recurrence between them: memory linear in L). `m0` is the stabiliser's
initial state: the public code's "parallel" backend starts it at -inf, its "chunkwise" backend at 0
(which only changes the normaliser's lower bound exp(-m_t)); a published model is read with the
convention it was trained with. The layer normalises each head's output right after the cell, which
divides out any per-step scale, so the convention shows in a model's outputs only through the eps terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vepcli.nn.mamba2 import upcast
from vepcli.nn.xlstm_parts import HeadwiseLinear, MultiHeadLayerNorm, causal_conv_silu, cell_precision

EPS = 1e-6
ROPE_THETA = 500000.0
# vepcli's chunk length: the forms compute the same function, so this is a speed and memory choice (on a CPU,
# L 1024: 64 is fastest, 32 and 128 within 25 %, one (L, L) block 11 times slower); a config's m_chunk_size
# (the public code trains with chunk = context length) is kept for the record only
CHUNK = 64


def rotary(x: torch.Tensor, theta: float = ROPE_THETA) -> torch.Tensor:
    """Rotary positions (RoFormer) on x (batch, heads, L, d), adjacent channel pairs rotated, positions 0..L-1."""
    d, length = x.shape[-1], x.shape[-2]
    freqs = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * freqs
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    re, im = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2)


def mlstm_recurrent(
    q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, m0: float = float("-inf"), eps: float = EPS
) -> Tensor:
    """The step-by-step recurrence: q, k, v (batch, heads, L, d), gate pre-activations (batch, heads, L)."""
    batch, heads, length, d = q.shape
    k = k / math.sqrt(d)
    log_f = F.logsigmoid(f_pre)
    C = q.new_zeros(batch, heads, d, d)
    n = q.new_zeros(batch, heads, d)
    m = torch.full((batch, heads), m0, dtype=q.dtype, device=q.device)
    out = []
    for t in range(length):
        m_new = torch.maximum(log_f[..., t] + m, i_pre[..., t])
        f_t = torch.exp(log_f[..., t] + m - m_new)[..., None]
        i_t = torch.exp(i_pre[..., t] - m_new)[..., None]
        C = f_t[..., None] * C + i_t[..., None] * k[..., t, :, None] * v[..., t, None, :]
        n = f_t * n + i_t * k[..., t, :]
        m = m_new
        num = torch.einsum("bhd,bhde->bhe", q[..., t, :], C)
        den = torch.maximum((q[..., t, :] * n).sum(-1).abs(), torch.exp(-m))[..., None] + eps
        out.append(num / den)
    return torch.stack(out, dim=-2)


def _normalise(
    C: Tensor, v: Tensor, m: Tensor, extra_num: Tensor | None = None, extra_den: Tensor | None = None, eps: float = EPS
) -> Tensor:
    """h = (C v + extra_num) / (max(|rowsum C + extra_den|, exp(-m)) + eps) for a stabilised weight matrix C."""
    num, den = C @ v, C.sum(-1, keepdim=True)
    if extra_num is not None:
        num, den = num + extra_num, den + extra_den
    return num / (torch.maximum(den.abs(), torch.exp(-m)) + eps)


def mlstm_parallel(
    q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, m0: float = float("-inf"), eps: float = EPS
) -> Tensor:
    """The parallel form: one (L, L) matrix per head; for inputs up to a chunk long."""
    length, d = q.shape[-2], q.shape[-1]
    log_f = F.logsigmoid(f_pre)
    cum = torch.cumsum(log_f, dim=-1)  # sum_{r <= t} log f_r
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    log_D = (cum[..., :, None] - cum[..., None, :] + i_pre[..., None, :]).masked_fill(~causal, float("-inf"))
    m = log_D.amax(-1, keepdim=True)
    if m0 != float("-inf"):  # an initial state m0 with C = n = 0 only raises the stabiliser
        m = torch.maximum(m, cum[..., None] + m0)
    C = (q @ k.transpose(-1, -2)) / math.sqrt(d) * torch.exp(log_D - m)
    return _normalise(C, v, m, eps=eps)


def mlstm_chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    chunk: int = 64,
    m0: float = float("-inf"),
    eps: float = EPS,
) -> Tensor:
    """The chunkwise form: the parallel form inside chunks of `chunk` steps, the recurrence over chunk
    boundaries (states (d, d) per chunk); memory linear in L."""
    batch, heads, length, d = q.shape
    pad = -length % chunk
    if pad:  # steps after the end cannot change earlier outputs
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        i_pre, f_pre = F.pad(i_pre, (0, pad)), F.pad(f_pre, (0, pad))
    n_chunks = (length + pad) // chunk
    q, k, v = (x.unflatten(-2, (n_chunks, chunk)) for x in (q, k, v))
    k = k / math.sqrt(d)
    i_pre = i_pre.unflatten(-1, (n_chunks, chunk))
    b = torch.cumsum(F.logsigmoid(f_pre).unflatten(-1, (n_chunks, chunk)), dim=-1)  # decay from chunk start
    g = b[..., -1]  # the whole chunk's decay
    w_log = g[..., None] - b + i_pre  # step s's weight at the chunk's end
    m_loc = w_log.amax(-1)
    w = torch.exp(w_log - m_loc[..., None])[..., None]
    kv, ksum = k.transpose(-1, -2) @ (v * w), (k * w).sum(-2)
    C_prev, n_prev = q.new_zeros(batch, heads, d, d), q.new_zeros(batch, heads, d)
    m_prev = torch.full((batch, heads), m0, dtype=q.dtype, device=q.device)
    starts = []
    for c in range(n_chunks):  # states at each chunk's start, stabilised by m_prev
        starts.append((C_prev, n_prev, m_prev))
        m_new = torch.maximum(g[..., c] + m_prev, m_loc[..., c])
        decay, scale = torch.exp(g[..., c] + m_prev - m_new), torch.exp(m_loc[..., c] - m_new)
        C_prev = decay[..., None, None] * C_prev + scale[..., None, None] * kv[:, :, c]
        n_prev = decay[..., None] * n_prev + scale[..., None] * ksum[:, :, c]
        m_prev = m_new
    C0, n0, m_start = (torch.stack(x, dim=2) for x in zip(*starts, strict=True))
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    log_D = (b[..., :, None] - b[..., None, :] + i_pre[..., None, :]).masked_fill(~causal, float("-inf"))
    inter_log = b + m_start[..., None]  # (batch, heads, chunks, chunk)
    m = torch.maximum(log_D.amax(-1), inter_log)[..., None]
    inter = torch.exp(inter_log[..., None] - m) * q
    W = (q @ k.transpose(-1, -2)) * torch.exp(log_D - m)
    h = _normalise(W, v, m, inter @ C0, (inter * n0[..., None, :]).sum(-1, keepdim=True), eps)
    return h.flatten(2, 3)[:, :, :length]


def mlstm_cell(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, chunk: int, m0: float) -> Tensor:
    """The parallel form up to one chunk, the chunkwise form beyond (the same function)."""
    if q.shape[-2] <= chunk:
        return mlstm_parallel(q, k, v, i_pre, f_pre, m0)
    return mlstm_chunkwise(q, k, v, i_pre, f_pre, chunk, m0)


class MLSTMCell(nn.Module):
    """Gates from [q, k, v] (one scalar per head), the cell, and the per-head norm of its output."""

    def __init__(self, inner: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.igate = nn.Linear(3 * inner, heads)
        self.fgate = nn.Linear(3 * inner, heads)
        self.outnorm = MultiHeadLayerNorm(inner)


class MLSTMLayer(nn.Module):
    """The mLSTM layer (the paper's Figure 10): up-projection to [x | z], causal conv + SiLU, block-diagonal
    q/k/v, the cell, per-head norm, learnable skip of the conv output, SiLU(z) output gate, down-projection."""

    def __init__(
        self,
        d_model: int,
        inner: int,
        heads: int,
        qkv_blocksize: int,
        conv_kernel: int,
        bias: bool,
        rotary: bool,
        m0: float,
    ) -> None:
        super().__init__()
        self.inner, self.use_rotary, self.chunk, self.m0 = inner, rotary, CHUNK, m0
        self.proj_up = nn.Linear(d_model, 2 * inner, bias=bias)
        blocks = inner // qkv_blocksize
        self.q_proj = HeadwiseLinear(inner, blocks, bias)
        self.k_proj = HeadwiseLinear(inner, blocks, bias)
        self.v_proj = HeadwiseLinear(inner, blocks, bias)
        self.conv1d = nn.Conv1d(inner, inner, conv_kernel, groups=inner)
        self.mlstm_cell = MLSTMCell(inner, heads)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_m, z = self.proj_up(x).split(self.inner, dim=-1)
        x_c = causal_conv_silu(self.conv1d, x_m)
        q, k, v = self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m)
        cell = self.mlstm_cell
        qkv = torch.cat([q, k, v], dim=-1)
        i_pre, f_pre = cell.igate(qkv).transpose(-1, -2), cell.fgate(qkv).transpose(-1, -2)  # (batch, heads, L)
        q, k, v = (upcast(t.unflatten(-1, (cell.heads, -1)).transpose(1, 2)) for t in (q, k, v))
        with cell_precision(x):
            if self.use_rotary:
                q, k = rotary(q), rotary(k)
            h = mlstm_cell(q, k, v, upcast(i_pre), upcast(f_pre), self.chunk, self.m0)
        h = cell.outnorm(h.transpose(1, 2)) + self.learnable_skip * x_c
        return self.proj_down(h * F.silu(z))
