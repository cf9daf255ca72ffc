"""The float64 selective scan, step by step as the equations read: the yardstick for every kernel.

    delta_t = softplus(delta_t + delta_bias)        A-bar_t = exp(delta_t A)     B-bar_t x_t = delta_t B_t u_t
    h_t = A-bar_t h_{t-1} + B-bar_t x_t             y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)

Same contract as `vepcli.nn.kernels.selective_scan`: parameters shared or per group of rows, reversed
groups scanned from their end, z shared by rows b, b + z_rows, ...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True, reverse=None):
    """Plain sequential scan in float64. For tests and kernel checks only: it is slow."""
    batch, L, dim = u.shape
    G = max([1] + [t.shape[0] for t in (A, D, delta_bias) if t is not None and t.dim() == (3 if t is A else 2)])
    rows = batch // G

    def per_row(t):  # (G, ...) or shared -> (batch, ...)
        if t is None:
            return None
        grouped = t.dim() == (3 if t is A else 2)
        return t.double().repeat_interleave(rows, 0) if grouped else t.double().expand(batch, *t.shape)

    A, D, bias = per_row(A), per_row(D), per_row(delta_bias)
    u, delta, B, C = (t.double() for t in (u, delta, B, C))
    z = None if z is None else z.double().repeat(batch // z.shape[0], 1, 1)
    backwards = torch.tensor([bool(reverse and reverse[b // rows]) for b in range(batch)])
    if delta_bias is not None:
        delta = delta + bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(batch, dim, A.shape[-1])
    y = u.new_empty(batch, L, dim)
    for j in range(L):
        t = torch.where(backwards, L - 1 - j, j)  # the step each row takes now
        idx = torch.arange(batch)
        dt, ut = delta[idx, t], u[idx, t]
        A_bar = torch.exp(dt[..., None] * A)  # (batch, d_inner, d_state)
        B_bar_x = (dt * ut)[..., None] * B[idx, t][:, None, :]
        h = A_bar * h + B_bar_x
        y[idx, t] = (h * C[idx, t][:, None, :]).sum(-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y
