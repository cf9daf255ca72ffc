"""The selective scan (S6) as Triton kernels, forward and backward: our GPU path.

With the names of the Mamba paper, for channel d and state n at step t:

    delta_t = softplus(delta_t + delta_bias)       A-bar_t = exp(delta_t A) = exp2(delta_t A log2 e)
    B-bar_t x_t = delta_t B_t u_t                   h_t = A-bar_t h_{t-1} + B-bar_t x_t
    y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)

and backward, with g_t = dLoss/dh_t and y'_t = dLoss/d<C_t, h_t> (the gate and skip undone):

    g_t = C_t y'_t + A-bar_{t+1} g_{t+1}           dC_t = sum_d h_t y'_t       dB_t = sum_d g_t delta_t u_t
    dA = sum_t g_t A-bar_t h_{t-1} delta_t          (A-bar_t h_{t-1} = h_t - B-bar_t x_t: no shifted state)

One program owns one batch row and BLOCK_D channels, keeps their (BLOCK_D, d_state) state in fp32
registers and walks the sequence in tiles of CHUNK steps: a tile's (A-bar, B-bar x) pairs are combined
by a parallel associative scan over time, seeded with the carried state. Nothing of size
(batch, L, d_inner, d_state) reaches memory. The forward pass saves the state at each tile start; the
backward pass walks the tiles in reverse, recomputes each tile's states from its saved start, and runs
the reverse recurrence for g as a reverse scan. Sums across channels (dB, dC) go to per-block partial
buffers, sums across rows (dA, dD, dbias of shared parameters) to per-row buffers, both summed by
torch afterwards: deterministic, no atomics, and a row's numbers never depend on its batch-mates.
"""

from __future__ import annotations

import os

import torch

from vepcli.nn.kernels.common import LOG2_E, needs_grad

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - missing or broken Triton both mean: not available
    triton = tl = None

# Tile sizes, powers of two, not yet tuned on a GPU: a (CHUNK, BLOCK_D, 16) tile is 4,096 fp32 values, 32 per
# thread at 4 warps. Backward memory beyond the inputs' gradients: the states at tile starts (d_inner d_state
# L / CHUNK) and the dB, dC partial sums (2 d_state L d_inner / BLOCK_D), fp32, per row: 0.13 and 1.1 GB at
# L 131,072, d_inner 512, d_state 16.
CHUNK = 32  # steps per tile: the span of one parallel scan, and of one saved state
BLOCK_D = 8  # channels per program
NUM_WARPS = 4


def _interpret_set() -> bool:
    try:
        return bool(triton.knobs.runtime.interpret)
    except Exception:  # noqa: BLE001 - an older Triton without knobs
        return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on")


# `triton.jit` picks the interpreter when this module is imported: CPU tensors work only then
_INTERPRETED = triton is not None and _interpret_set()


def available() -> bool:
    """Whether `selective_scan_triton` can run here: Triton imports, and CUDA or the interpreter is there."""
    try:
        return triton is not None and (_INTERPRETED or torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA set-up means: not available
        return False


def _jit(fn):
    """`triton.jit` where Triton imports; the bare function otherwise, so that this module always imports."""
    return fn if triton is None else triton.jit(fn)


@_jit
def _combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2) for h -> a h + b: the composition is (a1 a2, a2 b1 + b2)."""
    return a1 * a2, a2 * b1 + b2


@_jit
def _load(ptr, t, cols, L, width):
    """A (CHUNK, len(cols)) tile of a row-major (L, width) array, in fp32; zero outside."""
    mask = (t < L)[:, None] & (cols < width)[None, :]
    return tl.load(ptr + t[:, None] * width + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@_jit
def _store(ptr, value, t, cols, L, width):
    mask = (t < L)[:, None] & (cols < width)[None, :]
    tl.store(ptr + t[:, None] * width + cols[None, :], value.to(ptr.dtype.element_ty), mask=mask)


@_jit
def _delta(ptr, bias, t, d, L, d_inner, SOFTPLUS: tl.constexpr):
    """delta_t = softplus(delta_t + bias) as mamba_ssm (x above 20 passes through), and d delta_t / d input.

    Triton has no log1p: log1p(e) = log(w) e / (w - 1) with w = 1 + e keeps it exact for tiny e."""
    x = _load(ptr, t, d, L, d_inner) + bias[None, :]
    if SOFTPLUS:
        e = tl.exp(tl.minimum(x, 20.0))
        w = 1.0 + e
        log1p = tl.where(w == 1.0, e, tl.log(w) * e / tl.where(w == 1.0, 1.0, w - 1.0))
        dt, slope = tl.where(x <= 20.0, log1p, x), tl.where(x <= 20.0, e / w, 1.0)
    else:
        dt, slope = x, tl.full(x.shape, 1.0, tl.float32)
    return dt, slope


@_jit
def _params(A2, D, bias, row, d, n, d_inner, N, sA, sD, sbias):
    """This program's A log2(e) (BLOCK_D, BLOCK_N), D and delta_bias (BLOCK_D,); strides 0 when shared."""
    mask_d = d < d_inner
    A2r = tl.load(A2 + row * sA + d[:, None] * N + n[None, :], mask=mask_d[:, None] & (n < N)[None, :], other=0.0)
    return (
        A2r,
        tl.load(D + row * sD + d, mask=mask_d, other=0.0),
        tl.load(bias + row * sbias + d, mask=mask_d, other=0.0),
    )


@_jit
def _tile_states(u, delta, B, A2r, biasr, h0, t, d, n, L, d_inner, N, SOFTPLUS: tl.constexpr):
    """One tile: inputs and the states h_t for its CHUNK steps, from the state h0 before it."""
    x = _load(u, t, d, L, d_inner)
    dt, ddt_dx = _delta(delta, biasr, t, d, L, d_inner, SOFTPLUS)
    Bt = _load(B, t, n, L, N)
    a = tl.exp2(dt[:, :, None] * A2r[None, :, :])  # A-bar
    b = (dt * x)[:, :, None] * Bt[:, None, :]  # B-bar x
    a_cum, h = tl.associative_scan((a, b), 0, _combine)
    return x, dt, ddt_dx, Bt, b, h + a_cum * h0[None, :, :]


@_jit
def _row_at(tile, tt, i):
    """Row i of a (CHUNK, ...) register tile (Triton cannot index registers)."""
    return tl.sum(tl.where((tt == i)[:, None, None], tile, 0.0), 0)


@_jit
def _fwd_kernel(
    u,
    delta,
    A2,
    B,
    C,
    D,
    z,
    bias,
    y,
    states,
    L,
    d_inner,
    N,
    sA,
    sD,
    sbias,
    n_chunks,
    HAS_Z: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE: tl.constexpr,
    T: tl.constexpr,
    BD: tl.constexpr,
    BN: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    tt = tl.arange(0, T)
    A2r, Dr, biasr = _params(A2, D, bias, row, d, n, d_inner, N, sA, sD, sbias)
    seq, bc = row * L * d_inner, row * L * N  # this row's offsets
    h = tl.zeros((BD, BN), dtype=tl.float32)
    for c in range(0, n_chunks):
        if SAVE:
            tl.store(
                states + ((row * n_chunks + c) * d_inner + d[:, None]) * BN + n[None, :], h, mask=(d < d_inner)[:, None]
            )
        t = c * T + tt
        x, dt, _, Bt, b, hs = _tile_states(
            u + seq, delta + seq, B + bc, A2r, biasr, h, t, d, n, L, d_inner, N, SOFTPLUS
        )
        out = tl.sum(hs * _load(C + bc, t, n, L, N)[:, None, :], 2) + Dr[None, :] * x
        if HAS_Z:
            zt = _load(z + seq, t, d, L, d_inner)
            out = out * zt * tl.sigmoid(zt)
        _store(y + seq, out, t, d, L, d_inner)
        h = _row_at(hs, tt, T - 1)


@_jit
def _bwd_kernel(
    u,
    delta,
    A2,
    B,
    C,
    D,
    z,
    bias,
    dy,
    states,
    du,
    ddelta,
    dz,
    dB,
    dC,
    dA,
    dD,
    dbias,
    L,
    d_inner,
    N,
    sA,
    sD,
    sbias,
    n_chunks,
    HAS_Z: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    T: tl.constexpr,
    BD: tl.constexpr,
    BN: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    d = block * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    tt = tl.arange(0, T)
    A2r, Dr, biasr = _params(A2, D, bias, row, d, n, d_inner, N, sA, sD, sbias)
    seq, bc = row * L * d_inner, row * L * N
    part = (row * tl.num_programs(1) + block) * L * N  # this program's slab of the dB, dC partial sums
    mask_dn = (d < d_inner)[:, None] & (n < N)[None, :]
    g_next = tl.zeros((BD, BN), dtype=tl.float32)  # g at the first step of the tile after this one
    dA_acc = tl.zeros((BD, BN), dtype=tl.float32)
    dD_acc = tl.zeros((BD,), dtype=tl.float32)
    dbias_acc = tl.zeros((BD,), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        t = c * T + tt
        h0 = tl.load(states + ((row * n_chunks + c) * d_inner + d[:, None]) * BN + n[None, :], mask=mask_dn, other=0.0)
        x, dt, ddt_dx, Bt, b, hs = _tile_states(
            u + seq, delta + seq, B + bc, A2r, biasr, h0, t, d, n, L, d_inner, N, SOFTPLUS
        )
        Ct = _load(C + bc, t, n, L, N)
        dyt = _load(dy + seq, t, d, L, d_inner)  # zero past L, so g is zero there too
        if HAS_Z:
            zt = _load(z + seq, t, d, L, d_inner)
            sz = tl.sigmoid(zt)
            pre = tl.sum(hs * Ct[:, None, :], 2) + Dr[None, :] * x
            _store(dz + seq, dyt * pre * sz * (1.0 + zt * (1.0 - sz)), t, d, L, d_inner)
            dyt = dyt * zt * sz
        dD_acc += tl.sum(dyt * x, 0)
        # g_t = C_t y'_t + A-bar_{t+1} g_{t+1}: a reverse scan; A-bar_{t+1} comes from delta one step ahead
        dt_next, _ = _delta(delta + seq, biasr, t + 1, d, L, d_inner, SOFTPLUS)
        a_next = tl.exp2(dt_next[:, :, None] * A2r[None, :, :])
        gin = dyt[:, :, None] * Ct[:, None, :]
        gin += tl.where((tt == T - 1)[:, None, None], a_next * g_next[None, :, :], 0.0)
        _, g = tl.associative_scan((a_next, gin), 0, _combine, reverse=True)
        g_next = _row_at(g, tt, 0)
        _store(dC + part, tl.sum(hs * dyt[:, :, None], 1), t, n, L, N)
        _store(dB + part, tl.sum(g * (dt * x)[:, :, None], 1), t, n, L, N)
        g_bx = tl.sum(g * Bt[:, None, :], 2)  # dLoss / d(delta_t u_t)
        g_log_a = g * (hs - b)  # dLoss / d(delta_t A) = g_t A-bar_t h_{t-1}
        dA_acc += tl.sum(g_log_a * dt[:, :, None], 0)
        ddt = tl.sum(g_log_a * A2r[None, :, :], 2) * 0.6931471805599453 + g_bx * x  # A = A2 ln 2
        _store(du + seq, dyt * Dr[None, :] + g_bx * dt, t, d, L, d_inner)
        _store(ddelta + seq, ddt * ddt_dx, t, d, L, d_inner)
        dbias_acc += tl.sum(ddt * ddt_dx, 0)
    tl.store(dA + (row * d_inner + d[:, None]) * N + n[None, :], dA_acc, mask=mask_dn)
    tl.store(dD + row * d_inner + d, dD_acc, mask=d < d_inner)
    tl.store(dbias + row * d_inner + d, dbias_acc, mask=d < d_inner)


def _prepare(u, delta, A, B, C, D, z, delta_bias):
    """Contiguous tensors, A scaled by log2(e), D and delta_bias in fp32 (zeros when absent) and their row strides."""
    batch, L, d_inner = u.shape
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    z = None if z is None else z.contiguous()
    A2 = (A.float() * LOG2_E).contiguous()

    def vector(p):
        p = torch.zeros(d_inner, device=u.device) if p is None else p.float().contiguous()
        return p, d_inner if p.dim() == 3 else 0

    (D, sD), (bias, sbias) = vector(D), vector(delta_bias)
    return u, delta, A2, B, C, D, z, bias, (d_inner * A.shape[-1] if A.dim() == 3 else 0), sD, sbias


def _geometry(u, A, chunk, block_d):
    batch, L, d_inner = u.shape
    N = A.shape[-1]
    n_chunks = triton.cdiv(L, chunk)
    return batch, L, d_inner, N, triton.next_power_of_2(N), n_chunks, (batch, triton.cdiv(d_inner, block_d))


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, chunk, block_d, save):
    u, delta, A2, B, C, D, z, bias, sA, sD, sbias = _prepare(u, delta, A, B, C, D, z, delta_bias)
    batch, L, d_inner, N, BN, n_chunks, grid = _geometry(u, A, chunk, block_d)
    y = torch.empty_like(u)
    states = u.new_empty((batch, n_chunks, d_inner, BN), dtype=torch.float32) if save else None
    _fwd_kernel[grid](
        u,
        delta,
        A2,
        B,
        C,
        D,
        u if z is None else z,
        bias,
        y,
        y if states is None else states,
        L,
        d_inner,
        N,
        sA,
        sD,
        sbias,
        n_chunks,
        HAS_Z=z is not None,
        SOFTPLUS=softplus,
        SAVE=save,
        T=chunk,
        BD=block_d,
        BN=BN,
        num_warps=NUM_WARPS,
    )
    return y, states


class _SelectiveScanTriton(torch.autograd.Function):
    """The scan with its Triton backward; D, z and delta_bias may be None."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, chunk, block_d):
        y, states = _forward(u, delta, A, B, C, D, z, delta_bias, softplus, chunk, block_d, save=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.settings = softplus, chunk, block_d
        return y

    @staticmethod
    def backward(ctx, dy):
        u0, delta0, A0, B0, C0, D0, z0, bias0, states = ctx.saved_tensors
        softplus, chunk, block_d = ctx.settings
        u, delta, A2, B, C, D, z, bias, sA, sD, sbias = _prepare(u0, delta0, A0, B0, C0, D0, z0, bias0)
        batch, L, d_inner, N, BN, n_chunks, grid = _geometry(u, A0, chunk, block_d)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = None if z is None else torch.empty_like(z)
        f32 = {"dtype": torch.float32, "device": u.device}
        dB, dC = (torch.empty(batch, grid[1], L, N, **f32) for _ in range(2))
        dA = torch.empty(batch, d_inner, N, **f32)
        dD, dbias = (torch.empty(batch, d_inner, **f32) for _ in range(2))
        _bwd_kernel[grid](
            u,
            delta,
            A2,
            B,
            C,
            D,
            u if z is None else z,
            bias,
            dy.contiguous(),
            states,
            du,
            ddelta,
            du if dz is None else dz,
            dB,
            dC,
            dA,
            dD,
            dbias,
            L,
            d_inner,
            N,
            sA,
            sD,
            sbias,
            n_chunks,
            HAS_Z=z is not None,
            SOFTPLUS=softplus,
            T=chunk,
            BD=block_d,
            BN=BN,
            num_warps=NUM_WARPS,
        )

        def like(grad, p):  # a per-row gradient, summed over rows where the parameter is shared
            return None if p is None else (grad if p.dim() == 3 else grad.sum(0)).reshape(p.shape).to(p.dtype)

        return (
            du,
            ddelta,
            like(dA, A0),
            dB.sum(1).to(B0.dtype),
            dC.sum(1).to(C0.dtype),
            like(dD[:, None], D0),
            dz,
            like(dbias[:, None], bias0),
            None,
            None,
            None,
        )


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    *,
    chunk: int = CHUNK,
    block_d: int = BLOCK_D,
) -> torch.Tensor:
    """y = S6(u) as `selective_scan` (same layout), in fp32 inside whatever the input dtype; y has u's dtype.

    `chunk` and `block_d` (powers of two) set the tile: fewer steps or channels per program, for tests."""
    if triton is None:
        raise RuntimeError("selective_scan_triton needs Triton (pip install triton)")
    if u.device.type != "cuda" and not _INTERPRETED:
        raise RuntimeError("selective_scan_triton runs CPU tensors only under TRITON_INTERPRET=1 (set before import)")
    if u.numel() == 0:
        return torch.empty_like(u)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if needs_grad(*inputs):
        return _SelectiveScanTriton.apply(*inputs, delta_softplus, chunk, block_d)
    return _forward(*inputs, delta_softplus, chunk, block_d, save=False)[0]
