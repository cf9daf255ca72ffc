"""The float64 selective scan, step by step as the equations read: the yardstick for every kernel.

    delta_t = softplus(delta_t + delta_bias)        a_t = exp(delta_t A)     (A-bar)
    h_t = a_t * h_{t-1} + delta_t u_t B_t            (B-bar x)
    y_t = <C_t, h_t> + D u_t,  then  y_t * SiLU(z_t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True):
    """Plain sequential scan in float64. Layout as `selective_scan`; for tests and kernel checks only."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, L, Dn = u.shape
    A = A.expand(batch, *A.shape[-2:])
    h = u.new_zeros(batch, Dn, A.shape[-1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1)
    if D is not None:
        y = y + u * D.double()
    if z is not None:
        y = y * F.silu(z.double())
    return y
