"""The selective scan of Mamba (S6) in pure PyTorch: the path that runs anywhere torch runs.

For each channel d and state n, with a_t = exp(delta_t A) and b_t = delta_t B_t u_t:

    h_t = a_t * h_{t-1} + b_t            y_t = <C_t, h_t> + D u_t

Layout: u, delta (batch, L, D); B, C (batch, L, N); A (D, N) or (batch, D, N) when rows of the
batch carry different parameters (the two directions of BiMamba run as one scan).

The CPU path walks the sequence in chunks of T steps. For each chunk it builds a_t and b_t for all
T steps at once (one vectorised exp2), runs the recurrence in place with one `addcmul_` per step
over a contiguous (batch, N, D) slab, and contracts with C in one pass. Choices that matter for
speed on a CPU, each measured:
- the state is laid out (N, D), channels innermost, so every op runs over D contiguous values;
- each chunk's inputs are copied to contiguous time-major slabs (strided broadcasts cost 4x);
- the chunk buffers are allocated once per call and written with `out=` (fresh multi-MB tensors
  per chunk cost page faults), and sized to stay in cache (CHUNK_ELEMENTS);
- exp(x) is computed as exp2(x log2 e): 2-3x faster than exp in PyTorch's CPU kernels.
The state stays in fp32 (fp64 when given fp64) and nothing of size (batch, L, D, N) is ever held:
memory is linear in L. The backward pass keeps only the state at each chunk start and recomputes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vepcli.nn.kernels.common import LOG2_E, needs_grad

DEFAULT_CHUNK = 64
CHUNK_ELEMENTS = 1 << 19  # a chunk's buffers stay near 2 MB for a batch of 4 rows: resident in cache


def chunk_length(batch: int, D: int, N: int, chunk: int = DEFAULT_CHUNK) -> int:
    """Steps per chunk: at most `chunk`, fewer for wide channels so the buffers stay in cache.

    It depends on D and N only, never on the batch, and is a multiple of 8: PyTorch's vector loops
    finish the last (size mod 32) elements of an op with scalar code that rounds differently, so
    chunk shapes that changed with the batch would make a window's numbers depend on its batch-mates.
    """
    del batch  # kept in the signature: the choice is per model, not per batch
    return max(8, min(chunk, CHUNK_ELEMENTS // (4 * D * N)) // 8 * 8)


def _steps(x: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """Steps s..e of a (batch, L, ...) tensor as a contiguous time-major (T, batch, ...) slab."""
    return x[:, s:e].transpose(0, 1).contiguous()


def _transpose_A(A: torch.Tensor) -> torch.Tensor:
    """A as (..., N, D), scaled by log2(e) so that exp(delta A) = exp2(delta At)."""
    return (A.transpose(-1, -2) * LOG2_E).contiguous()


def _discretise(dt, u, At, B, bufs=None):
    """a_t = exp(delta_t A) and b_t = delta_t u_t B_t for one chunk: (T, batch, N, D) each.

    dt, u (T, batch, D) and B (T, batch, N) are time-major. With `bufs`, writes into them.
    """
    dt = dt.unsqueeze(2)
    dtu = dt * u.unsqueeze(2)
    B = B.unsqueeze(-1)
    if bufs is None:
        return (dt * At).exp2_(), dtu * B
    T = dt.shape[0]
    return torch.mul(dt, At, out=bufs[0][:T]).exp2_(), torch.mul(dtu, B, out=bufs[1][:T])


def _recur(a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor) -> None:
    """In place: h[t] <- a[t] * h[t-1] + h[t], with h[-1] = h0 (h holds b on entry)."""
    a, h = a.unbind(0), h.unbind(0)  # views made once: cheaper than indexing at every step
    h[0].addcmul_(a[0], h0)
    for t in range(1, len(h)):
        h[t].addcmul_(a[t], h[t - 1])


def _contract_C(h: torch.Tensor, C: torch.Tensor, buf: torch.Tensor | None = None) -> torch.Tensor:
    """y[t, b, d] = sum_n h[t, b, n, d] C[t, b, n]."""
    if buf is None:
        return (h * C.unsqueeze(-1)).sum(2)
    return torch.mul(h, C.unsqueeze(-1), out=buf[: h.shape[0]]).sum(2)


def _scan_forward(u, delta: Callable[[int, int], torch.Tensor], A, B, C, chunk: int, keep_states: bool, epilogue=None):
    """Run the recurrence chunk by chunk. `delta(s, e)` gives the time-major delta of steps s..e;
    `epilogue(y_chunk, s, e)` may finish each chunk of y (batch, T, D). Returns y and chunk-start states."""
    batch, L, D = u.shape
    N = A.shape[-1]
    y = u.new_empty(batch, L, D)
    h = u.new_zeros(batch, N, D)
    At = _transpose_A(A)
    bufs = [u.new_empty(min(chunk, L), batch, N, D) for _ in range(3)]
    starts = []
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        if keep_states:
            starts.append(h)
        a, hs = _discretise(delta(s, e), _steps(u, s, e), At, _steps(B, s, e), bufs)
        _recur(a, hs, h)
        y_c = _contract_C(hs, _steps(C, s, e), bufs[2]).transpose(0, 1)
        y[:, s:e] = y_c if epilogue is None else epilogue(y_c, s, e)
        h = hs[-1].clone()  # the buffers are reused by the next chunk
    return y, starts


class _SelectiveScan(torch.autograd.Function):
    """y_t = <C_t, h_t> with a hand-written backward that recomputes each chunk from its start state."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):
        chunk = chunk_length(u.shape[0], u.shape[2], A.shape[-1], chunk)
        y, starts = _scan_forward(u, lambda s, e: _steps(delta, s, e), A, B, C, chunk, keep_states=True)
        ctx.save_for_backward(u, delta, A, B, C, *starts)
        ctx.chunk = chunk
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, *starts = ctx.saved_tensors
        chunk, L = ctx.chunk, u.shape[1]
        At = _transpose_A(A)
        du, ddelta, dB, dC = (torch.empty_like(t) for t in (u, delta, B, C))
        dAt = torch.zeros((u.shape[0], *At.shape[-2:]), dtype=A.dtype, device=A.device)
        carry = None  # a_{t+1} * g_{t+1} flowing from the next chunk
        for i in reversed(range(len(starts))):
            s, e = i * chunk, min((i + 1) * chunk, L)
            dt, u_c, B_c, C_c, dy_c = (_steps(t, s, e) for t in (delta, u, B, C, dy))
            a, hs = _discretise(dt, u_c, At, B_c)
            _recur(a, hs, starts[i])
            # g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1}
            g = dy_c.unsqueeze(2) * C_c.unsqueeze(-1)
            if carry is not None:
                g[-1].add_(carry)
            for t in range(g.shape[0] - 2, -1, -1):
                g[t].addcmul_(a[t + 1], g[t + 1])
            carry = a[0] * g[0]
            dC[:, s:e] = torch.einsum("tbnd,tbd->btn", hs, dy_c)
            # d loss / d(delta_t A) = g_t h_{t-1} a_t, with h_{t-1} the previous state of each step
            h_prev = torch.cat([starts[i].unsqueeze(0), hs[:-1]], 0)
            ddA = g * h_prev * a
            # b_t = delta_t u_t B_t
            g_dot_B = torch.einsum("tbnd,tbn->tbd", g, B_c)  # d loss / d(delta_t u_t)
            dB[:, s:e] = torch.einsum("tbnd,tbd->btn", g, dt * u_c)
            ddelta[:, s:e] = ((ddA * At).sum(2) / LOG2_E + g_dot_B * u_c).transpose(0, 1)
            du[:, s:e] = (g_dot_B * dt).transpose(0, 1)
            dAt += torch.einsum("tbnd,tbd->bnd", ddA, dt)
        dA = dAt.transpose(-1, -2)
        return du, ddelta, dA if A.dim() == 3 else dA.sum(0), dB, dC, None


def selective_scan_torch(
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
    """Selective scan y = S6(u); the state and the recurrence run in fp32 whatever the input dtype.

    `D` and `delta_bias` are (D,) or, for a batch whose rows carry different parameters, (batch, 1, D).
    """
    dtype = u.dtype
    work = torch.promote_types(dtype, torch.float32)  # fp32 state for half precision, fp64 stays fp64
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    grad = needs_grad(u, delta, A, B, C, D, z, delta_bias)
    if not grad:
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


ROW_GROUP = 4  # rows per inference scan: cache-sized buffers and shapes that do not depend on the batch


def _scan_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
    """The forward scan with softplus, the D skip and the SiLU(z) gate applied chunk by chunk, so
    that inference holds no extra full-length copy of delta or y. Wide batches run ROW_GROUP rows
    at a time: the rows are independent, and each group's buffers stay in cache."""
    rows = u.shape[0]
    if rows > ROW_GROUP:

        def part(t, i):
            return None if t is None else t[i : i + ROW_GROUP] if t.dim() == 3 else t

        return torch.cat(
            [
                _scan_inference(
                    u[i : i + ROW_GROUP],
                    delta[i : i + ROW_GROUP],
                    part(A, i),
                    B[i : i + ROW_GROUP],
                    C[i : i + ROW_GROUP],
                    part(D, i),
                    part(z, i),
                    part(delta_bias, i),
                    delta_softplus,
                    chunk,
                )
                for i in range(0, rows, ROW_GROUP)
            ]
        )
    work = u.dtype
    bias = None if delta_bias is None else delta_bias.to(work)
    bias = bias.transpose(0, 1) if bias is not None and bias.dim() == 3 else bias  # (1, batch, D)
    D = None if D is None else D.to(work)

    def delta_steps(s: int, e: int) -> torch.Tensor:
        d = _steps(delta, s, e)
        if bias is not None:
            d = d + bias
        return F.softplus(d) if delta_softplus else d

    def epilogue(y_c, s, e):
        if D is not None:
            y_c = y_c + u[:, s:e] * D
        if z is not None:
            y_c = y_c * F.silu(z[:, s:e].to(work))
        return y_c

    chunk = chunk_length(u.shape[0], u.shape[2], A.shape[-1], chunk)
    y, _ = _scan_forward(u, delta_steps, A, B, C, chunk, False, epilogue)
    return y
