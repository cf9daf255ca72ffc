"""The sLSTM of xLSTM (Beck et al. 2024, section 2.2) and its layer as DNA-xLSTM uses it, in pure PyTorch.

Per head, with head-wise recurrent weights R (memory mixing inside a head only), exponential input gate
and sigmoid forget gate, stabilised by m_t:

    [i~, f~, z~, o~]_t = W x_t + R y_{t-1} + b
    m_t = max(log sigma(f~_t) + m_{t-1}, i~_t)        (m_1 = i~_1: the state starts empty)
    c_t = exp(log sigma(f~_t) + m_{t-1} - m_t) c_{t-1} + exp(i~_t - m_t) tanh(z~_t)
    n_t = exp(log sigma(f~_t) + m_{t-1} - m_t) n_{t-1} + exp(i~_t - m_t)
    y_t = sigma(o~_t) c_t / n_t

The recurrence cannot be parallelised over time; `slstm_scan` keeps each step to one batched matmul
(all heads at once) and one chain of elementwise ops on (heads, batch, 4 head_dim), with nothing
proportional to the batch in Python. `slstm_reference` is the same recurrence written plainly (float64
yardstick).

Parameters: `recurrent_kernel` (heads, head_dim in, 4 gates, head_dim out) and `bias` (heads, 4, head_dim),
gates in the order i, f, z, o: the xLSTM package's backend-independent ("external") layout. Its CUDA
backend stores the kernel as (heads, head_dim, 4 head_dim) and the bias flat in the same order; its
PyTorch ("vanilla") backend as (heads, 4 head_dim, head_dim) and flat (gate, head, head_dim);
`nn/xlstm_published.py` converts either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vepcli.nn.mamba2 import upcast
from vepcli.nn.xlstm_parts import HeadwiseLinear, MultiHeadLayerNorm, causal_conv_silu, cell_precision

GATES = 4  # i, f, z, o


def slstm_scan(wx: torch.Tensor, R: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """wx (batch, L, 4, heads, head_dim) input pre-activations -> y (batch, L, heads, head_dim)."""
    pre = (wx.permute(1, 3, 0, 2, 4) + b[:, None]).flatten(-2)  # (L, heads, batch, 4 dh), bias added once
    R = R.flatten(-2)
    if torch.is_grad_enabled() and (pre.requires_grad or R.requires_grad):
        y = SLSTMRecurrence.apply(pre, R)
    else:  # inference: nothing to keep for a backward
        y = recurrence(pre, R, keep=False)[0]
    return y.permute(2, 0, 1, 3)


def recurrence(pre: torch.Tensor, R: torch.Tensor, keep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """y (L, heads, batch, head_dim) over pre-activations (L, heads, batch, 4 head_dim); with `keep`, also the
    per-step pre-activations, c, n and m the backward needs."""
    dh = R.shape[1]
    kept: list[list[torch.Tensor]] = [[], [], [], []]
    i, f, z, o = pre[0].split(dh, dim=-1)  # the first step: empty state, so m = i~ and y = sigma(o~) tanh(z~)
    raw, c, n, m = pre[0], torch.tanh(z), torch.ones_like(z), i
    y = torch.sigmoid(o) * c
    ys = []
    for t in range(pre.shape[0]):
        if t:
            raw = torch.baddbmm(pre[t], y, R)
            i, f, z, o = raw.split(dh, dim=-1)
            log_fm = F.logsigmoid(f) + m
            m_new = torch.maximum(i, log_fm)
            f_g, i_g = torch.exp(log_fm - m_new), torch.exp(i - m_new)
            c = f_g * c + i_g * torch.tanh(z)
            n = f_g * n + i_g
            m = m_new
            y = torch.sigmoid(o) * c / n
        ys.append(y)
        if keep:
            for store, value in zip(kept, (raw, c, n, m), strict=True):
                store.append(value)
    return torch.stack(ys), [torch.stack(store) for store in kept] if keep else []


class SLSTMRecurrence(torch.autograd.Function):
    """The recurrence over pre-activations (L, heads, batch, 4 head_dim) with R (heads, head_dim, 4 head_dim),
    with a hand-written backward: back-propagation through time over the saved states, one batched matmul and
    one chain of elementwise ops per step (autograd's graph of the same loop is several times slower).

    The stabiliser m is treated as a constant in the backward: c_t and n_t both carry the factor exp(-m_t),
    so y_t = sigma(o~_t) c_t / n_t does not depend on m, and the gradient is exact."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        y, (raw, c, n, m) = recurrence(pre, R, keep=True)
        ctx.save_for_backward(raw, c, n, m, y, R)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, c, n, m, y, R = ctx.saved_tensors
        i, f, z, o = raw.split(R.shape[1], dim=-1)
        m_prev = torch.cat([torch.full_like(m[:1], float("-inf")), m[:-1]])
        f_g = torch.exp(F.logsigmoid(f) + m_prev - m)
        i_g, z_t, o_g = torch.exp(i - m), torch.tanh(z), torch.sigmoid(o)
        d_gate = torch.cat([i_g, f_g * torch.sigmoid(-f), 1 - z_t * z_t, o_g * (1 - o_g)], dim=-1)  # d gate / d pre
        c_prev = torch.cat([torch.zeros_like(c[:1]), c[:-1]])
        n_prev = torch.cat([torch.zeros_like(n[:1]), n[:-1]])
        ratio, R_T = c / n, R.transpose(1, 2)
        d_raw = torch.empty_like(raw)
        d_y_rec, d_c, d_n = torch.zeros_like(y[0]), torch.zeros_like(c[0]), torch.zeros_like(n[0])
        for t in range(raw.shape[0] - 1, -1, -1):
            d_y = grad_y[t] + d_y_rec
            q = d_y / n[t]
            d_c = torch.addcmul(d_c, q, o_g[t])
            d_n = torch.addcmul(d_n, q, y[t], value=-1)
            d_f = torch.addcmul(d_c * c_prev[t], d_n, n_prev[t])
            d_i = torch.addcmul(d_n, d_c, z_t[t])
            torch.mul(torch.cat([d_i, d_f, d_c * i_g[t], d_y * ratio[t]], dim=-1), d_gate[t], out=d_raw[t])
            d_y_rec = torch.bmm(d_raw[t], R_T)
            d_c, d_n = d_c * f_g[t], d_n * f_g[t]
        y_prev = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
        return d_raw, torch.einsum("thbk,thbg->hkg", y_prev, d_raw)


def slstm_reference(wx: torch.Tensor, R: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same recurrence step by step and gate by gate (the float64 yardstick for tests)."""
    batch, length, _, heads, dh = wx.shape
    y = wx.new_zeros(batch, heads, dh)
    c, n = torch.zeros_like(y), torch.zeros_like(y)
    m = torch.full_like(y, float("-inf"))
    out = []
    for t in range(length):
        raw = wx[:, t] + torch.einsum("bhk,hkgj->bghj", y, R) + b.transpose(0, 1)  # (batch, 4, heads, dh)
        i, f, z, o = raw.unbind(1)
        m_new = torch.maximum(F.logsigmoid(f) + m, i)
        f_g = torch.exp(F.logsigmoid(f) + m - m_new)
        i_g = torch.exp(i - m_new)
        c = f_g * c + i_g * torch.tanh(z)
        n = f_g * n + i_g
        m = m_new
        y = torch.sigmoid(o) * c / n
        out.append(y)
    return torch.stack(out, dim=1)


class SLSTMCell(nn.Module):
    """The recurrent weights and gate biases of one sLSTM layer."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        dh = d_model // heads
        self.recurrent_kernel = nn.Parameter(torch.zeros(heads, dh, GATES, dh))
        self.bias = nn.Parameter(torch.zeros(heads, GATES, dh))


class SLSTMLayer(nn.Module):
    """The sLSTM layer (the paper's Figure 9): causal conv + SiLU feeding the input and forget gates, the
    block-diagonal gate projections, the cell, and per-head norm.

    As in the public code, the module named `fgate` makes the input gate's pre-activation and `igate`
    the forget gate's (a swap of names, not of function). `head_flip`: a (batch,) mask of the rows whose
    heads are reversed before the norm (the published PS deviation; see `nn/xlstm.py`)."""

    def __init__(self, d_model: int, heads: int, conv_kernel: int) -> None:
        super().__init__()
        self.heads = heads
        self.conv1d = nn.Conv1d(d_model, d_model, conv_kernel, groups=d_model) if conv_kernel else None
        self.fgate = HeadwiseLinear(d_model, heads, bias=False)
        self.igate = HeadwiseLinear(d_model, heads, bias=False)
        self.zgate = HeadwiseLinear(d_model, heads, bias=False)
        self.ogate = HeadwiseLinear(d_model, heads, bias=False)
        self.slstm_cell = SLSTMCell(d_model, heads)
        self.group_norm = MultiHeadLayerNorm(d_model)

    def forward(self, x: torch.Tensor, head_flip: torch.Tensor | None = None) -> torch.Tensor:
        x_c = x if self.conv1d is None else causal_conv_silu(self.conv1d, x)
        wx = torch.stack([self.fgate(x_c), self.igate(x_c), self.zgate(x), self.ogate(x)], dim=2)
        cell = self.slstm_cell
        with cell_precision(x):
            y = slstm_scan(upcast(wx.unflatten(-1, (self.heads, -1))), upcast(cell.recurrent_kernel), upcast(cell.bias))
        if head_flip is not None:
            y = torch.where(head_flip[:, None, None, None], y.flip(2), y)
        return self.group_norm(y)
