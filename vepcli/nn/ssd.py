"""The SSD scan of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs"): a scalar A per head.

Per head, with the state h_t of shape (headdim, d_state):

    A_bar_t = exp(dt_t A)
    h_t = A_bar_t h_{t-1} + dt_t x_t B_t^T        y_t = h_t C_t + D x_t        (y_t * SiLU(z_t) when z is given)

Layout as mamba_ssm's `mamba_chunk_scan_combined`: x (batch, L, nheads, headdim), dt (batch, L, nheads),
already positive (softplus applied by the caller), A (nheads,), B and C (batch, L, ngroups, d_state) with
head i reading group i // (nheads // ngroups), D (nheads,) or (nheads, headdim), z like x, states
(batch, nheads, headdim, d_state).

Because A is a scalar per head, the scan over a chunk of Q steps is matrix products: the quadratic
"attention-like" form inside each chunk, masked by the decays exp(sum_{s<k<=l} dt_k A), and the states
handed from chunk to chunk by the recurrence. That suits a CPU (matmuls, no step loop) and holds
O(L Q) memory, never an (L, L) tensor. `ssd` uses mamba_ssm's Triton kernels on CUDA when installed and
`ssd_chunked` otherwise; `ssd_reference` is the float64 step-by-step yardstick of the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # mamba_ssm's fused Triton SSD, when the `gpu` extra is installed
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _mamba_chunk_scan_combined
except Exception:  # noqa: BLE001 - any import failure (missing, broken build) means: not available
    _mamba_chunk_scan_combined = None

__all__ = ["BLOCK_STEPS", "ssd", "ssd_backend", "ssd_chunked", "ssd_reference"]

# `ssd_chunked` walks the sequence in blocks of about this many steps (docs/benchmarks.md)
BLOCK_STEPS = 512


def ssd_backend(device: torch.device | str) -> str:
    """Which implementation `ssd` runs for tensors on `device`: "mamba_ssm" (Triton, CUDA) or "torch"."""
    usable = _mamba_chunk_scan_combined is not None and torch.device(device).type == "cuda"
    return "mamba_ssm" if usable else "torch"


def ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """y = SSD(x; dt, A, B, C) + D x, gated by SiLU(z), on the backend `ssd_backend` names."""
    if ssd_backend(x.device) == "mamba_ssm":
        return _mamba_chunk_scan_combined(
            x,
            dt,
            A,
            B,
            C,
            chunk_size,
            D=D,
            z=z,
            initial_states=initial_states,
            return_final_states=return_final_state,
        )
    return ssd_chunked(x, dt, A, B, C, chunk_size, D, z, initial_states, return_final_state)


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The chunked matrix form in pure PyTorch, fp32 (fp64 for fp64 inputs); any L, any chunk size.

    The sequence goes through in blocks of about BLOCK_STEPS steps (whole chunks), the state carried
    from block to block: the same arithmetic, on tensors that stay in cache."""
    batch, L, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2], B.shape[3]
    if nheads % ngroups:
        raise ValueError(f"{nheads} heads do not split into {ngroups} groups of B and C")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    state = (batch, ngroups, nheads // ngroups, headdim, d_state)
    h = x.new_zeros(state, dtype=acc) if initial_states is None else initial_states.to(acc).reshape(state)
    Q = int(chunk_size)
    T = Q * max(1, BLOCK_STEPS // Q)
    ys = []
    zs = [None] * len(range(0, L, T)) if z is None else z.split(T, dim=1)
    for x_s, dt_s, B_s, C_s, z_s in zip(*(t.split(T, dim=1) for t in (x, dt, B, C)), zs, strict=True):
        x_s, dt_s = x_s.to(acc), dt_s.to(acc)  # split, not sliced: the backward then joins the blocks once
        y, h = _ssd_block(x_s * dt_s[..., None], dt_s * A.to(acc), B_s.to(acc), C_s.to(acc), h, Q)
        ys.append(_epilogue(y, x_s, D, z_s))
    y = torch.cat(ys, dim=1).to(x.dtype)
    return (y, h.reshape(batch, nheads, headdim, d_state).to(x.dtype)) if return_final_state else y


def _ssd_block(x_bar: Tensor, a: Tensor, B: Tensor, C: Tensor, h: Tensor, Q: int) -> tuple[Tensor, Tensor]:
    """SSD over one block of whole chunks from state h (b, g, h/g, p, n): (y without D x, state after).

    The block is padded to whole chunks with a = 0, x_bar = 0 steps (A_bar = 1, no input), which change
    neither the outputs before them nor the state."""
    batch, L, nheads, headdim = x_bar.shape
    ngroups = B.shape[2]
    x_bar = _chunks(x_bar, Q)  # (b, c, Q, h, p)
    a = _chunks(a, Q).transpose(2, 3)  # (b, c, h, Q)
    B_, C_ = (_chunks(t, Q).transpose(2, 3) for t in (B, C))  # (b, c, g, Q, n)
    n_chunks = a.shape[1]
    # heads of one group side by side: (b, c, g, h/g, Q, p)
    x_bar = x_bar.transpose(2, 3).reshape(batch, n_chunks, ngroups, -1, Q, headdim)
    a_cumsum = torch.cumsum(a, dim=-1).reshape(batch, n_chunks, ngroups, -1, Q)

    # 1. inside each chunk: y_l = sum_{s<=l} (C_l . B_s) exp(a_cumsum_l - a_cumsum_s) dt_s x_s
    L_mask = torch.exp(_segsum(a_cumsum))  # (b, c, g, h/g, Q, Q)
    y = ((C_ @ B_.transpose(-1, -2)).unsqueeze(3) * L_mask) @ x_bar

    # 2. each chunk's own contribution to the state at its end, (b, c, g, h/g, p, n)
    decay_to_end = torch.exp(a_cumsum[..., -1:] - a_cumsum)
    chunk_states = (x_bar * decay_to_end[..., None]).transpose(-1, -2) @ B_.unsqueeze(3)

    # 3. states handed from chunk to chunk: h_c = exp(sum of chunk c-1's a) h_{c-1} + chunk c-1's states
    h_start, h = _pass_states(h, chunk_states, a_cumsum[..., -1])

    # 4. the state at each chunk's start, read out by C_l and decayed to step l
    y = y + (C_.unsqueeze(3) @ h_start.transpose(-1, -2)) * torch.exp(a_cumsum)[..., None]
    y = _ContiguousGrad.apply(y).reshape(batch, n_chunks, nheads, Q, headdim)
    return y.transpose(2, 3).reshape(batch, -1, nheads, headdim)[:, :L], h


def ssd_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The recurrence itself, one step at a time in float64: slow, exact, the tests' yardstick."""
    x, dt, A, B, C = (t.double() for t in (x, dt, A, B, C))
    batch, L, nheads, headdim = x.shape
    heads_per_group = nheads // B.shape[2]
    B, C = (t.repeat_interleave(heads_per_group, dim=2) for t in (B, C))  # (b, L, h, n)
    h = x.new_zeros(batch, nheads, headdim, B.shape[-1]) if initial_states is None else initial_states.double()
    ys = []
    for t in range(L):
        A_bar = torch.exp(dt[:, t] * A)[..., None, None]  # (b, h, 1, 1)
        h = A_bar * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((h * C[:, t, :, None, :]).sum(-1))
    y = _epilogue(torch.stack(ys, dim=1), x, D, z)
    return (y, h) if return_final_state else y


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous: the head-major -> time-major transpose hands
    back a strided gradient that CPU bmm would otherwise take one matrix at a time."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _chunks(t: Tensor, Q: int) -> Tensor:
    """(b, L, ...) -> (b, L / Q, Q, ...), zero-padded at the end to whole chunks."""
    pad = -t.shape[1] % Q
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    return t.view(t.shape[0], -1, Q, *t.shape[2:])


def _segsum(a_cumsum: Tensor) -> Tensor:
    """log L[l, s] = a_cumsum_l - a_cumsum_s = sum_{s<k<=l} a_k for s <= l, -inf above the diagonal."""
    Q = a_cumsum.shape[-1]
    causal = torch.ones(Q, Q, dtype=torch.bool, device=a_cumsum.device).tril()
    seg = a_cumsum[..., :, None] - a_cumsum[..., None, :]
    return seg.masked_fill(~causal, -torch.inf)


def _pass_states(h: Tensor, chunk_states: Tensor, chunk_sums: Tensor) -> tuple[Tensor, Tensor]:
    """The recurrence over chunks, h_c = exp(sum of chunk c-1's a) h_{c-1} + chunk c-1's states, unrolled
    into one product with the decays between chunks (the same segment sums as inside a chunk): the states
    at each chunk's start, (b, c, g, h/g, p, n), and after the last. (c + 1)^2 per block, no step loop."""
    batch, n_chunks, ngroups, heads, headdim, d_state = chunk_states.shape
    states = torch.cat([h[:, None], chunk_states], dim=1).permute(0, 2, 3, 1, 4, 5).flatten(-2)
    sums_cumsum = torch.cumsum(F.pad(chunk_sums, (0, 0, 0, 0, 1, 0)), dim=1).permute(0, 2, 3, 1)
    states = torch.exp(_segsum(sums_cumsum)) @ states  # (b, g, h/g, c + 1, p n)
    states = states.unflatten(-1, (headdim, d_state)).permute(0, 3, 1, 2, 4, 5)
    return states[:, :n_chunks], states[:, n_chunks]


def _epilogue(y: Tensor, x: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """+ D x (D per head, or per head and channel), then the optional gate SiLU(z)."""
    if D is not None:
        D = D.to(y.dtype)
        y = y + x * (D if D.dim() == 2 else D[:, None])
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y
