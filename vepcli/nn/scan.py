"""The selective scan of Mamba (S6), in pure PyTorch, with dispatch to mamba_ssm's CUDA kernel.

For each channel d and state n, with a_t = exp(delta_t A) and b_t = delta_t B_t u_t:

    h_t = a_t * h_{t-1} + b_t            y_t = <C_t, h_t> + D u_t

Layout: u, delta (batch, L, D); B, C (batch, L, N); A (D, N) or (batch, D, N) when rows of the
batch carry different parameters (the two directions of BiMamba run as one scan).

The CPU path walks the sequence in chunks of `chunk` steps. For each chunk it builds a_t and b_t
for all steps at once (one vectorised exp), then runs the recurrence in place, one step per
`addcmul_` over a contiguous (batch, D, N) slab, and contracts with C in one batched matmul. The
state stays in fp32 and nothing of size (batch, L, D, N) is ever held: memory is linear in L.
The backward pass keeps only the state at each chunk start and recomputes the chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # the CUDA kernels, when the `gpu` extra is installed
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_selective_scan = None

DEFAULT_CHUNK = 64
CHUNK_ELEMENTS = 1 << 20  # keep a chunk's (T, batch, D, N) tensors near 4 MB, resident in cache


def chunk_length(batch: int, D: int, N: int, chunk: int = DEFAULT_CHUNK) -> int:
    """Steps per chunk: at most `chunk`, fewer for wide batches so the per-chunk tensors stay small."""
    return max(1, min(chunk, CHUNK_ELEMENTS // (batch * D * N)))


def has_cuda_kernel() -> bool:
    """True when mamba_ssm's selective-scan kernel is importable (the `gpu` extra)."""
    return _cuda_selective_scan is not None


def _chunk_inputs(u, delta, A, B, s, e):
    """a_t = exp(delta_t A) and b_t = delta_t u_t B_t for steps s..e, time-major: (T, batch, D, N)."""
    dt = delta[:, s:e].transpose(0, 1)  # (T, batch, D)
    a = (dt.unsqueeze(-1) * A).exp_()  # A broadcasts as (D, N) or (batch, D, N)
    b = (dt * u[:, s:e].transpose(0, 1)).unsqueeze(-1) * B[:, s:e].transpose(0, 1).unsqueeze(2)
    return a, b


def _run_chunk(a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor) -> None:
    """In place: h[t] <- a[t] * h[t-1] + h[t], with h[-1] = h0 (h holds b on entry)."""
    a, h = a.unbind(0), h.unbind(0)  # views made once: cheaper than indexing at every step
    h[0].addcmul_(a[0], h0)
    for t in range(1, len(h)):
        h[t].addcmul_(a[t], h[t - 1])


def _contract_C(h: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """y[t, b, d] = sum_n h[t, b, d, n] C[t, b, n] (a multiply and a sum beat bmm here: N is small)."""
    return (h * C.unsqueeze(2)).sum(-1)


def _scan_forward(u, delta, A, B, C, chunk, keep_states, epilogue=None):
    """Run the recurrence chunk by chunk; `epilogue(y_chunk, s, e)` may finish each chunk in place."""
    batch, L, D = u.shape
    y = u.new_empty(batch, L, D)
    h = u.new_zeros(batch, D, A.shape[-1])
    chunk = chunk_length(batch, D, A.shape[-1], chunk)
    starts = []
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        if keep_states:
            starts.append(h)
        a, hs = _chunk_inputs(u, delta, A, B, s, e)
        _run_chunk(a, hs, h)
        y_c = _contract_C(hs, C[:, s:e].transpose(0, 1)).transpose(0, 1)
        y[:, s:e] = y_c if epilogue is None else epilogue(y_c, s, e)
        h = hs[-1].clone()
    return y, starts


class _LazyDelta:
    """delta = softplus(delta_raw + bias), computed per chunk so inference holds no extra (B, L, D) copy."""

    def __init__(self, raw, bias, softplus):
        self.raw, self.bias, self.softplus = raw, bias, softplus

    def __getitem__(self, index):
        d = self.raw[index]
        if self.bias is not None:
            d = d + self.bias
        return F.softplus(d) if self.softplus else d


class _SelectiveScan(torch.autograd.Function):
    """y_t = <C_t, h_t> with a hand-written backward that recomputes each chunk from its start state."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):
        chunk = chunk_length(u.shape[0], u.shape[2], A.shape[-1], chunk)  # the same chunks in backward
        y, starts = _scan_forward(u, delta, A, B, C, chunk, keep_states=True)
        ctx.save_for_backward(u, delta, A, B, C, *starts)
        ctx.chunk = chunk
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, *starts = ctx.saved_tensors
        chunk = ctx.chunk
        L = u.shape[1]
        du, ddelta, dB, dC = (torch.empty_like(t) for t in (u, delta, B, C))
        dA = torch.zeros(A.shape if A.dim() == 3 else (u.shape[0], *A.shape), dtype=A.dtype, device=A.device)
        carry = None  # a_{t+1} * g_{t+1} flowing from the next chunk
        for i in reversed(range(len(starts))):
            s = i * chunk
            e = min(s + chunk, L)
            a, hs = _chunk_inputs(u, delta, A, B, s, e)
            _run_chunk(a, hs, starts[i])
            dy_c = dy[:, s:e].transpose(0, 1)  # (T, batch, D)
            C_c = C[:, s:e].transpose(0, 1)  # (T, batch, N)
            # g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1}
            g = dy_c.unsqueeze(-1) * C_c.unsqueeze(2)
            if carry is not None:
                g[-1].add_(carry)
            for t in range(g.shape[0] - 2, -1, -1):
                g[t].addcmul_(a[t + 1], g[t + 1])
            carry = a[0] * g[0]
            dC[:, s:e] = torch.einsum("tbdn,tbd->btn", hs, dy_c)
            # h_{t-1} for each step of the chunk, then da_t = g_t h_{t-1} and d(delta A)_t = da_t a_t
            h_prev = torch.cat([starts[i].unsqueeze(0), hs[:-1]], 0)
            ddA = g * h_prev * a  # d loss / d(delta_t A), (T, batch, D, N)
            dt = delta[:, s:e].transpose(0, 1)
            u_c = u[:, s:e].transpose(0, 1)
            B_c = B[:, s:e].transpose(0, 1)
            # b_t = delta_t u_t B_t
            g_dot_B = torch.einsum("tbdn,tbn->tbd", g, B_c)  # d loss / d(delta_t u_t)
            dB[:, s:e] = torch.einsum("tbdn,tbd->btn", g, dt * u_c)
            ddelta[:, s:e] = ((ddA * A).sum(-1) + g_dot_B * u_c).transpose(0, 1)
            du[:, s:e] = (g_dot_B * dt).transpose(0, 1)
            dA += torch.einsum("tbdn,tbd->bdn", ddA, dt)
        dA = dA if A.dim() == 3 else dA.sum(0)
        return du, ddelta, dA, dB, dC, None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Selective scan y = S6(u); the state and the recurrence run in fp32 whatever the input dtype."""
    dtype = u.dtype
    if _cuda_selective_scan is not None and u.is_cuda and A.dim() == 2:
        y = _cuda_selective_scan(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                                 C.transpose(1, 2), D, None if z is None else z.transpose(1, 2),
                                 delta_bias, delta_softplus)
        return y.transpose(1, 2)
    work = torch.promote_types(dtype, torch.float32)  # fp32 state for half precision, fp64 stays fp64
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias))
    if not needs_grad:
        return _scan_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk).to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)
    if delta_softplus:
        delta = F.softplus(delta)
    y = _SelectiveScan.apply(u, delta, A, B, C, chunk)
    if D is not None:
        y = y + u * D.to(work)
    if z is not None:
        y = y * F.silu(z.to(work))
    return y.to(dtype)


def _scan_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
    """The forward scan with softplus, the D skip and the SiLU(z) gate applied chunk by chunk."""
    work = u.dtype
    bias = None if delta_bias is None else delta_bias.to(work)
    D = None if D is None else D.to(work)

    def epilogue(y_c, s, e):
        if D is not None:
            y_c = y_c + u[:, s:e] * D  # D is (D,) or (batch, 1, D)
        if z is not None:
            y_c = y_c * F.silu(z[:, s:e].to(work))
        return y_c

    y, _ = _scan_forward(u, _LazyDelta(delta, bias, delta_softplus), A, B, C, chunk, False, epilogue)
    return y


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True):
    """Plain sequential scan in float64, step by step as the equations read. For tests only."""
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
