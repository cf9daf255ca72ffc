/* Mamba's sequence kernels for CPUs: the selective scan (S6) and the depthwise conv + SiLU before it,
 * forward and backward. C++ only for its vector conditionals; no C++ library is used.
 *
 *   u_t = SiLU(b + sum_k w_k x_{t-K+1+k})                         (causal; anti-causal when reversed)
 *   delta_t = softplus(delta_t + bias)     A-bar_t = exp(delta_t A)     B-bar_t x_t = delta_t B_t u_t
 *   h_t = A-bar_t h_{t-1} + B-bar_t x_t    y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)
 *
 * A work item is one row and a block of BLOCK adjacent channels: it keeps their (d_state, BLOCK) state
 * in L1 and walks the whole sequence. Arithmetic runs on BLOCK-lane vectors (`vf`), which the compiler
 * maps to the machine's vector registers; exp, log1p and the sigmoid are written here as plain
 * arithmetic so that they vectorise with no math library and give the same bits on every machine of
 * one kind. Nothing of size (batch, L, d_inner, d_state) is ever written: training keeps the state at
 * every CHUNK-th step and the backward pass recomputes the steps in between.
 *
 * The rows of a batch form G equal groups that share parameters (A, D, bias; conv weights): BiMamba's
 * two directions are two groups, and a group may walk its rows from the end (`reverse`), which is the
 * reverse direction without flipping any tensor. Threads take items from one atomic counter: one
 * parallel region per call, no per-step barrier, and a busy core only slows the items it holds. Every
 * row is computed by the same code whatever its batch-mates, so results are bitwise independent of the
 * batch and of the thread count. Called through ctypes, which releases the GIL.
 */
#include <pthread.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Channels per work item: one vector register. Wider blocks spill registers and run 4x slower. */
#if defined(__AVX512F__)
#define BLOCK 16
#elif defined(__AVX__)
#define BLOCK 8
#else
#define BLOCK 4
#endif
#define CHUNK 64 /* steps between saved states in training */
/* Steps ahead that a walk asks the caches for. A walk strides by whole rows of (L, dim), which the
 * hardware prefetcher does not follow, so without it every step waits on memory (measured here: the
 * forward scan 1.9x, forward + backward 1.75x, the conv 1.2-1.3x faster with it; 4 to 32 are alike). */
#define PREFETCH 8
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

typedef float vf __attribute__((vector_size(BLOCK * 4)));
typedef int32_t vi __attribute__((vector_size(BLOCK * 4)));

static inline vf splat(float x) { return vf{} + x; }
#if defined(__AVX512F__)
/* MAXPS(b, a) is a < b ? b : a exactly (a NaN in a stays NaN), in one instruction, not compare + blend. */
static inline vf vmax(vf a, vf b) { return (vf)_mm512_max_ps((__m512)b, (__m512)a); }
static inline vf vmin(vf a, vf b) { return (vf)_mm512_min_ps((__m512)b, (__m512)a); }
#else
static inline vf vmax(vf a, vf b) { return a < b ? b : a; } /* NaN in a stays NaN */
static inline vf vmin(vf a, vf b) { return a > b ? b : a; }
#endif
static inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }

/* 2^x for x clamped to [-126, 126]: x = k + f with k = round(x) and |f| <= 1/2, 2^f by a degree-5
 * polynomial with constant term 1, fitted for least maximum relative error on [-1/2, 1/2] (9.1e-8 in exact
 * arithmetic, 2.0e-7 evaluated in fp32, against 2.4e-7 for the degree-6 Taylor series it replaced, one
 * FMA per exp fewer; exact at f = 0, so that a decay of exactly 1 stays 1 over long sequences), times 2^k. */
static inline vf exp2_poly(vf f) {
    vf p = splat(1.326472731307149e-3f);
    p = p * f + 9.671512991189957e-3f;
    p = p * f + 5.550733581185341e-2f;
    p = p * f + 2.4022242426872253e-1f;
    p = p * f + 6.931470036506653e-1f;
    return p * f + 1.0f;
}

#if defined(__AVX512F__)
/* AVX-512 rounds and scales by 2^k in one instruction each (vrndscaleps, vscalefps). */
static inline vf exp2_v(vf x) {
    x = vmin(vmax(x, splat(-126.0f)), splat(126.0f));
    __m512 k = _mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (vf)_mm512_scalef_ps((__m512)exp2_poly(x - (vf)k), k);
}
#else
/* k from the low mantissa bits of x + 1.5 2^23, and 2^k written straight into the exponent bits. */
static inline vf exp2_v(vf x) {
    x = vmin(vmax(x, splat(-126.0f)), splat(126.0f));
    vf t = x + 12582912.0f;
    vi bits = ((vi)t - (0x4B400000 - 127)) << 23;
    return exp2_poly(x - (t - 12582912.0f)) * (vf)bits;
}
#endif

static inline vf exp_v(vf x) { return exp2_v(x * LOG2E); }

/* 2^x for a decay's exponent, delta A log2(e) <= 0 (Mamba's A is negative). vscalefps turns an overflow
 * into inf by itself, so only the lower clamp (which keeps x - k finite at x = -inf) is needed. */
static inline vf exp2_decay(vf x) {
#if defined(__AVX512F__)
    x = vmax(x, splat(-126.0f));
    __m512 k = _mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (vf)_mm512_scalef_ps((__m512)exp2_poly(x - (vf)k), k);
#else
    return exp2_v(x);
#endif
}

/* 1 / x from the hardware's estimate and one Newton step, r (2 - x r): the divider is slow and is needed
 * per step and channel (softplus, the gate); relative error 2^-24 from AVX's 12-bit estimate. */
static inline vf recip_v(vf x) {
#if defined(__AVX512F__)
    vf r = (vf)_mm512_rcp14_ps((__m512)x);
#elif defined(__AVX__)
    vf r = (vf)_mm256_rcp_ps((__m256)x);
#else
    return 1.0f / x;
#endif
#if defined(__AVX512F__) || defined(__AVX__)
    return r * (2.0f - x * r);
#endif
}

static inline vf sigmoid_v(vf x) { return recip_v(1.0f + exp_v(-x)); }

/* log(m) for m in [1, 2] as 2 atanh(s), s = (m - 1) / (m + 1) <= 1/3: absolute error below 1e-7. */
static inline vf log_1to2_v(vf m) {
    vf s = (m - 1.0f) * recip_v(m + 1.0f), s2 = s * s;
    vf p = splat(1.0f / 11.0f);
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

/* softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|); log1p(e) = log(1 + e) e / ((1 + e) - 1) keeps small e exact. */
static inline vf softplus_v(vf x) {
    vf e = exp_v(-vabs(x));
    vf m = 1.0f + e, d = m - 1.0f;
    vf l1p = d == 0.0f ? e : log_1to2_v(m) * (e * recip_v(d));
    return vmax(x, splat(0.0f)) + l1p;
}

/* n <= BLOCK channels from memory; lanes past n are 0. */
static inline vf load(const float *src, int64_t n) {
    vf v = {};
    if (n == BLOCK)
        memcpy(&v, src, sizeof v);
    else
        for (int64_t i = 0; i < n; i++) v[i] = src[i];
    return v;
}

/* The sum of the lanes as a pairwise tree: independent adds, not BLOCK - 1 in a chain (the compiler may
 * not reorder float additions by itself). */
static inline float hsum(vf v) {
    for (int w = BLOCK / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) v[i] += v[i + w];
    return v[0];
}

static inline void store(float *dst, vf v, int64_t n) {
    if (n == BLOCK)
        memcpy(dst, &v, sizeof v);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = v[i];
}

/* ---- work sharing ---- */

typedef void (*item_fn)(const void *, int64_t);

typedef struct {
    const void *args;
    item_fn fn;
    int64_t items;
    int64_t next; /* atomic */
} Pool;

static void *worker(void *arg) {
    Pool *pool = (Pool *)arg;
    for (;;) {
        int64_t i = __atomic_fetch_add(&pool->next, 1, __ATOMIC_RELAXED);
        if (i >= pool->items) break;
        pool->fn(pool->args, i);
    }
    return NULL;
}

static void run(const void *args, item_fn fn, int64_t items, int threads) {
    Pool pool = {args, fn, items, 0};
    if (threads > items) threads = (int)items;
    pthread_t tid[256];
    int started = 0;
    for (; started < threads - 1 && started < 256; started++)
        if (pthread_create(&tid[started], NULL, worker, &pool) != 0) break;
    worker(&pool); /* the calling thread works too, and takes what a failed thread start left */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static inline int64_t blocks(int64_t dim) { return (dim + BLOCK - 1) / BLOCK; }

/* ---- selective scan ---- */

/* Mirrored by vepcli/nn/kernels/cpu.py (ScanArgs): keep the two in the same order. u, delta, y and the
 * gradients of shape (batch, L, dim) are contiguous; B, C and z have their own row and time strides (z
 * row b is z[b % z_rows]); A, D, bias have one entry per group (stride 0 when shared by all rows). */
typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *z, *bias;
    float *y, *states;
    const float *dout;
    float *du, *ddelta, *dA, *dB_part, *dC_part, *dD, *dz, *dbias;
    const int8_t *reverse;
    int64_t batch, L, dim, N, groups, a_gs, p_gs;
    int64_t B_rs, B_ts, C_rs, C_ts, z_rs, z_ts, z_rows;
    int64_t softplus, part_groups;
} ScanArgs;

/* One row and channel block: its parameters, where its steps are, and which way it walks. */
typedef struct {
    int64_t b, d0, n, rev;
    vf *A2, *At; /* A log2(e) and A, one vector per state */
    vf D, bias;
} Item;

static Item scan_item(const ScanArgs *s, int64_t b, int64_t c, vf *buf) {
    Item it;
    int64_t g = b / (s->batch / s->groups);
    it.b = b, it.d0 = c * BLOCK, it.n = s->dim - c * BLOCK;
    if (it.n > BLOCK) it.n = BLOCK;
    it.rev = s->reverse ? s->reverse[g] : 0;
    it.A2 = buf, it.At = buf + s->N;
    const float *A = s->A + g * s->a_gs;
    for (int64_t k = 0; k < s->N; k++) {
        vf a = {};
        for (int64_t i = 0; i < it.n; i++) a[i] = A[(it.d0 + i) * s->N + k];
        it.At[k] = a;
        it.A2[k] = a * LOG2E;
    }
    it.D = s->D ? load(s->D + g * s->p_gs + it.d0, it.n) : splat(0.0f);
    it.bias = s->bias ? load(s->bias + g * s->p_gs + it.d0, it.n) : splat(0.0f);
    return it;
}

/* The time index of walk step j. */
static inline int64_t step_t(const ScanArgs *s, const Item *it, int64_t j) { return it->rev ? s->L - 1 - j : j; }
static inline int64_t off_u(const ScanArgs *s, const Item *it, int64_t t) { return (it->b * s->L + t) * s->dim + it->d0; }
static inline const float *B_at(const ScanArgs *s, const Item *it, int64_t t) { return s->B + it->b * s->B_rs + t * s->B_ts; }
static inline const float *C_at(const ScanArgs *s, const Item *it, int64_t t) { return s->C + it->b * s->C_rs + t * s->C_ts; }
static inline const float *z_at(const ScanArgs *s, const Item *it, int64_t t) {
    return s->z + (it->b % s->z_rows) * s->z_rs + t * s->z_ts + it->d0;
}

/* Ask for the lines that walk step j reads (and writes): the forward pass's, or the backward pass's.
 * Always inlined: GCC takes a function of prefetches alone for one without effects and drops its calls. */
static inline __attribute__((always_inline)) void prefetch_step(const ScanArgs *s, const Item *it, int64_t j, bool backward) {
    int64_t t = step_t(s, it, j), off = off_u(s, it, t);
    __builtin_prefetch(s->delta + off);
    __builtin_prefetch(s->u + off);
    if (s->z) __builtin_prefetch(z_at(s, it, t));
    if (!backward) {
        __builtin_prefetch(s->y + off, 1);
        return;
    }
    __builtin_prefetch(s->dout + off);
    __builtin_prefetch(s->du + off, 1);
    __builtin_prefetch(s->ddelta + off, 1);
    if (s->z) __builtin_prefetch(s->dz + off, 1);
}

/* delta_t of the block: delta + bias, through softplus when asked; x keeps the value before softplus. */
static inline vf step_delta(const ScanArgs *s, const Item *it, int64_t off, vf *x) {
    *x = load(s->delta + off, it->n) + it->bias;
    return s->softplus ? softplus_v(*x) : *x;
}

/* One step: h <- A-bar h + B-bar x, returning <C, h>; keeps A-bar when abar is given. */
static inline __attribute__((always_inline)) vf recur_step(int64_t N, const vf *__restrict A2, vf dt, vf du, const float *__restrict Bt,
                            const float *__restrict Ct, vf *__restrict h, vf *__restrict abar) {
    vf acc = {};
    for (int64_t k = 0; k < N; k++) {
        vf a = exp2_decay(dt * A2[k]);
        h[k] = a * h[k] + du * Bt[k];
        acc += h[k] * Ct[k];
        if (abar) abar[k] = a;
    }
    return acc;
}

/* The forward walk of one item. NS > 0 is d_state fixed at compile time (16, the published value, and 4),
 * so that A and the state stay in registers (6-8% faster); NS = 0 reads s->N and keeps them in `buf`. */
template <int NS>
static void scan_fwd_walk(const ScanArgs *s, const Item *item, vf *buf) {
    const Item local = *item, *it = &local; /* a copy: stores to y cannot alias it, so it stays in registers */
    const int64_t N = NS ? NS : s->N, L = s->L;
    vf A2_reg[NS ? NS : 1], h_reg[NS ? NS : 1]; /* two arrays, not one: the compiler then keeps both in registers */
    const vf *A2 = NS ? A2_reg : it->A2;
    vf *h = NS ? h_reg : buf + 2 * N;
    for (int64_t k = 0; k < N; k++) {
        if (NS) A2_reg[k] = it->A2[k];
        h[k] = splat(0.0f);
    }
    for (int64_t j = 0; j < L; j++) {
        int64_t t = step_t(s, it, j), off = off_u(s, it, t);
        if (s->states && j % CHUNK == 0) {
            float *st = s->states + ((it->b * ((L + CHUNK - 1) / CHUNK) + j / CHUNK) * N) * s->dim + it->d0;
            for (int64_t k = 0; k < N; k++) store(st + k * s->dim, h[k], it->n);
        }
        if (j + PREFETCH < L) prefetch_step(s, it, j + PREFETCH, false);
        vf x, dt = step_delta(s, it, off, &x), u = load(s->u + off, it->n);
        vf y = recur_step(N, A2, dt, dt * u, B_at(s, it, t), C_at(s, it, t), h, NULL) + it->D * u;
        if (s->z) {
            vf z = load(z_at(s, it, t), it->n);
            y *= z * sigmoid_v(z);
        }
        store(s->y + off, y, it->n);
    }
}

static void scan_fwd_item(const void *args, int64_t item) {
    const ScanArgs *s = (const ScanArgs *)args;
    int64_t N = s->N, nb = blocks(s->dim);
    vf *buf = (vf *)aligned_alloc(sizeof(vf), sizeof(vf) * 3 * N);
    Item it = scan_item(s, item / nb, item % nb, buf);
    if (N == 16)
        scan_fwd_walk<16>(s, &it, buf);
    else if (N == 4)
        scan_fwd_walk<4>(s, &it, buf);
    else
        scan_fwd_walk<0>(s, &it, buf);
    free(buf);
}

/* What the backward pass of one block carries from chunk to chunk. */
typedef struct {
    Item it;
    vf *g, *dA; /* A-bar_{j+1} g_{j+1}, and dL/dA, one vector per state */
    vf dD, dbias;
} BlockGrad;

/* The backward pass of one chunk of one block of one row. The chunk's steps are recomputed from the
 * saved state, keeping h and A-bar; then, going back along the walk,
 *   g_j = dyss_j C_j + A-bar_{j+1} g_{j+1}          (dL/dh_j)
 *   dL/d(delta_j) = sum_n g_j (h_{j-1} A-bar_j A + u_j B_j),   dL/dA += g_j h_{j-1} A-bar_j delta_j
 * and the lanes of dB_j = sum_d g_j delta_j u_j and dC_j = sum_d dyss_j h_j are added to dBv, dCv
 * (one vector per step and state), which the caller sums across lanes once for all its blocks. */
static void scan_bwd_chunk(const ScanArgs *s, BlockGrad *bg, int64_t ch, vf *dBv, vf *dCv, vf *work) {
    const Item local = bg->it, *it = &local; /* a copy, as in scan_fwd_walk: 11% faster */
    int64_t N = s->N, L = s->L, nchunks = (L + CHUNK - 1) / CHUNK, b = it->b;
    int64_t j0 = ch * CHUNK, T = (L - j0) < CHUNK ? (L - j0) : CHUNK;
    vf *hs = work, *abar = hs + (CHUNK + 1) * N, *dts = abar + CHUNK * N, *xs = dts + CHUNK, *ys = xs + CHUNK;
    const float *st = s->states + ((b * nchunks + ch) * N) * s->dim + it->d0;
    for (int64_t k = 0; k < N; k++) hs[k] = load(st + k * s->dim, it->n);
    for (int64_t j = 0; j < T; j++) { /* recompute: hs[j + 1] is h after walk step j0 + j */
        int64_t t = step_t(s, it, j0 + j), off = off_u(s, it, t);
        if (j + PREFETCH < T) prefetch_step(s, it, j0 + j + PREFETCH, true); /* for the way back too */
        dts[j] = step_delta(s, it, off, &xs[j]);
        vf u = load(s->u + off, it->n);
        memcpy(hs + (j + 1) * N, hs + j * N, sizeof(vf) * N);
        ys[j] = recur_step(N, it->A2, dts[j], dts[j] * u, B_at(s, it, t), C_at(s, it, t), hs + (j + 1) * N,
                           abar + j * N) + it->D * u;
    }
    vf *g = bg->g, *dA = bg->dA;
    for (int64_t j = T - 1; j >= 0; j--) {
        int64_t t = step_t(s, it, j0 + j), off = off_u(s, it, t);
        const float *Bt = B_at(s, it, t), *Ct = C_at(s, it, t);
        const vf *hprev = hs + j * N, *hcur = hs + (j + 1) * N, *ab = abar + j * N;
        vf dt = dts[j], u = load(s->u + off, it->n), dyss = load(s->dout + off, it->n);
        if (s->z) {
            vf z = load(z_at(s, it, t), it->n), sg = sigmoid_v(z);
            store(s->dz + off, dyss * ys[j] * sg * (1.0f + z * (1.0f - sg)), it->n);
            dyss *= z * sg;
        }
        bg->dD += dyss * u;
        vf ddel = {}, gB = {}, dtu = dt * u;
        for (int64_t k = 0; k < N; k++) {
            vf gk = g[k] + dyss * Ct[k]; /* g[k] holds A-bar_{j+1} g_{j+1} */
            vf q = gk * hprev[k] * ab[k]; /* dL/d(delta_j A) */
            ddel += q * it->At[k];
            dA[k] += q * dt;
            gB += gk * Bt[k];
            dBv[j * N + k] += gk * dtu;
            dCv[j * N + k] += dyss * hcur[k];
            g[k] = gk * ab[k];
        }
        ddel += gB * u;
        if (s->softplus) ddel *= sigmoid_v(xs[j]);
        bg->dbias += ddel;
        store(s->du + off, dyss * it->D + gB * dt, it->n);
        store(s->ddelta + off, ddel, it->n);
    }
}

/* One row and a part of its channel blocks (part_groups parts per row, fixed by the sizes, so results do
 * not depend on the thread count): all blocks go back through one chunk before the next, and the lanes
 * of dB and dC are summed once per chunk for the whole part. */
static void scan_bwd_item(const void *args, int64_t item) {
    const ScanArgs *s = (const ScanArgs *)args;
    int64_t b = item / s->part_groups, part = item % s->part_groups, nb = blocks(s->dim), N = s->N, L = s->L;
    int64_t per = (nb + s->part_groups - 1) / s->part_groups, c0 = part * per;
    int64_t nblk = (nb - c0) < per ? (nb - c0) : per, nchunks = (L + CHUNK - 1) / CHUNK;
    if (nblk <= 0) return;
    BlockGrad *bgs = (BlockGrad *)aligned_alloc(sizeof(vf), sizeof(BlockGrad) * nblk); /* vf members: vector-aligned */
    vf *params = (vf *)aligned_alloc(sizeof(vf), sizeof(vf) * 4 * N * nblk);
    vf *work = (vf *)aligned_alloc(sizeof(vf), sizeof(vf) * ((2 * CHUNK + 1) * N + 3 * CHUNK + 2 * CHUNK * N));
    vf *dBv = work + (2 * CHUNK + 1) * N + 3 * CHUNK, *dCv = dBv + CHUNK * N;
    memset(params, 0, sizeof(vf) * 4 * N * nblk);
    for (int64_t c = 0; c < nblk; c++) {
        BlockGrad *bg = &bgs[c];
        bg->it = scan_item(s, b, c0 + c, params + 4 * N * c);
        bg->g = params + 4 * N * c + 2 * N, bg->dA = bg->g + N;
        bg->dD = splat(0.0f), bg->dbias = splat(0.0f);
    }
    float *dB_acc = s->dB_part + (b * s->part_groups + part) * L * N;
    float *dC_acc = s->dC_part + (b * s->part_groups + part) * L * N;
    for (int64_t ch = nchunks - 1; ch >= 0; ch--) {
        int64_t j0 = ch * CHUNK, T = (L - j0) < CHUNK ? (L - j0) : CHUNK;
        memset(dBv, 0, sizeof(vf) * 2 * CHUNK * N);
        for (int64_t c = 0; c < nblk; c++) scan_bwd_chunk(s, &bgs[c], ch, dBv, dCv, work);
        for (int64_t j = 0; j < T; j++) {
            int64_t t = step_t(s, &bgs[0].it, j0 + j);
            for (int64_t k = 0; k < N; k++) {
                dB_acc[t * N + k] = hsum(dBv[j * N + k]);
                dC_acc[t * N + k] = hsum(dCv[j * N + k]);
            }
        }
    }
    for (int64_t c = 0; c < nblk; c++) {
        const BlockGrad *bg = &bgs[c];
        for (int64_t i = 0; i < bg->it.n; i++) {
            int64_t d = b * s->dim + bg->it.d0 + i;
            for (int64_t k = 0; k < N; k++) s->dA[d * N + k] = bg->dA[k][i];
            s->dD[d] = bg->dD[i];
            s->dbias[d] = bg->dbias[i];
        }
    }
    free(work);
    free(params);
    free(bgs);
}

/* ---- depthwise conv + SiLU ---- */

/* out (G batch, L, dim) contiguous; x (batch, L, dim) at its own row and time strides; w (G, dim, K) and
 * bias (G, dim) contiguous. Group g's output rows are g batch .. g batch + batch - 1. Backward: dx is
 * (batch, L, dim) contiguous; dw_part (batch, G, dim, K) and dbias_part (batch, G, dim) per input row. */
typedef struct {
    const float *x, *w, *bias;
    float *out;
    const float *dout;
    float *dx, *dw_part, *dbias_part;
    const int8_t *reverse;
    int64_t batch, L, dim, K, groups, x_rs, x_ts;
} ConvArgs;

/* The conv walks each row in the direction of its group: tap k of walk step j reads the input of walk
 * step j - (K-1) + k, i.e. x[t - (K-1) + k] (causal), or x[t + (K-1) - k] when the group is reversed.
 * `win` holds the last K inputs of the walk (zeros before its start), so each x is loaded once. */
static inline vf conv_step(int64_t K, const vf *w, vf bias, vf *win, vf x) {
    vf pre = bias;
    for (int64_t k = 0; k < K - 1; k++) {
        win[k] = win[k + 1];
        pre += w[k] * win[k];
    }
    win[K - 1] = x;
    return pre + w[K - 1] * x;
}

static void conv_weights(const ConvArgs *s, int64_t g, int64_t d0, int64_t n, vf *w, vf *bias) {
    for (int64_t k = 0; k < s->K; k++) {
        vf v = {};
        for (int64_t i = 0; i < n; i++) v[i] = s->w[(g * s->dim + d0 + i) * s->K + k];
        w[k] = v;
    }
    *bias = s->bias ? load(s->bias + g * s->dim + d0, n) : splat(0.0f);
}

static void conv_fwd_item(const void *args, int64_t item) {
    const ConvArgs *s = (const ConvArgs *)args;
    int64_t nb = blocks(s->dim), b = item / nb, d0 = (item % nb) * BLOCK, n = s->dim - d0 < BLOCK ? s->dim - d0 : BLOCK;
    vf *w = (vf *)aligned_alloc(sizeof(vf), sizeof(vf) * 2 * s->K), *win = w + s->K, bias;
    const float *xrow = s->x + b * s->x_rs + d0;
    for (int64_t g = 0; g < s->groups; g++) {
        int64_t rev = s->reverse ? s->reverse[g] : 0;
        conv_weights(s, g, d0, n, w, &bias);
        memset(win, 0, sizeof(vf) * s->K);
        float *orow = s->out + (g * s->batch + b) * s->L * s->dim + d0;
        for (int64_t j = 0; j < s->L; j++) {
            int64_t t = rev ? s->L - 1 - j : j, tp = rev ? t - PREFETCH : t + PREFETCH;
            if (j + PREFETCH < s->L) {
                __builtin_prefetch(xrow + tp * s->x_ts);
                __builtin_prefetch(orow + tp * s->dim, 1);
            }
            vf pre = conv_step(s->K, w, bias, win, load(xrow + t * s->x_ts, n));
            store(orow + t * s->dim, pre * sigmoid_v(pre), n);
        }
    }
    free(w);
}

/* Backward along the same walk: with gp_j = dL/d(pre_j), dw_k += gp_j x_{j-(K-1)+k} (the window) and
 * dx at walk step i collects w_k gp_{i+(K-1)-k}; `gwin` holds the last K gp so that each dx is written once. */
static void conv_bwd_item(const void *args, int64_t item) {
    const ConvArgs *s = (const ConvArgs *)args;
    int64_t nb = blocks(s->dim), b = item / nb, d0 = (item % nb) * BLOCK, n = s->dim - d0 < BLOCK ? s->dim - d0 : BLOCK;
    int64_t K = s->K, L = s->L;
    vf *w = (vf *)aligned_alloc(sizeof(vf), sizeof(vf) * 4 * K), *dw = w + K, *win = dw + K, *gwin = win + K, bias;
    const float *xrow = s->x + b * s->x_rs + d0;
    float *dxrow = s->dx + b * L * s->dim + d0;
    for (int64_t g = 0; g < s->groups; g++) {
        int64_t rev = s->reverse ? s->reverse[g] : 0;
        conv_weights(s, g, d0, n, w, &bias);
        memset(dw, 0, sizeof(vf) * 3 * K); /* dw, win, gwin */
        vf dbias = {};
        const float *grow = s->dout + (g * s->batch + b) * L * s->dim + d0;
        for (int64_t j = 0; j < L + K - 1; j++) { /* K-1 steps past the end flush gwin */
            int64_t t = rev ? L - 1 - j : j, tp = rev ? t - PREFETCH : t + PREFETCH;
            if (j + PREFETCH < L) {
                __builtin_prefetch(xrow + tp * s->x_ts);
                __builtin_prefetch(grow + tp * s->dim);
                __builtin_prefetch(dxrow + tp * s->dim, 1);
            }
            vf gp = {};
            if (j < L) {
                vf pre = conv_step(K, w, bias, win, load(xrow + t * s->x_ts, n)), sg = sigmoid_v(pre);
                gp = load(grow + t * s->dim, n) * sg * (1.0f + pre * (1.0f - sg));
                dbias += gp;
                for (int64_t k = 0; k < K; k++) dw[k] += gp * win[k];
            }
            for (int64_t k = 0; k < K - 1; k++) gwin[k] = gwin[k + 1];
            gwin[K - 1] = gp;
            int64_t i = j - (K - 1); /* the walk step whose dx is now complete */
            if (i < 0) continue;
            vf dx = {};
            for (int64_t k = 0; k < K; k++) dx += w[k] * gwin[K - 1 - k];
            float *dst = dxrow + (rev ? L - 1 - i : i) * s->dim;
            store(dst, (g == 0 ? splat(0.0f) : load(dst, n)) + dx, n); /* group 0 writes, the others add */
        }
        for (int64_t i = 0; i < n; i++) {
            for (int64_t k = 0; k < K; k++) s->dw_part[((b * s->groups + g) * s->dim + d0 + i) * K + k] = dw[k][i];
            s->dbias_part[(b * s->groups + g) * s->dim + d0 + i] = dbias[i];
        }
    }
    free(w);
}

extern "C" {
int vepcli_block(void) { return BLOCK; }
int vepcli_blocks_per_part(void) { return 8; }
int vepcli_scan_chunk(void) { return CHUNK; }

/* states: (batch, ceil(L / CHUNK), N, dim) when training, else NULL. */
void vepcli_scan_fwd(const ScanArgs *s, int threads) { run(s, scan_fwd_item, s->batch * blocks(s->dim), threads); }

/* dA (batch, dim, N), dD and dbias (batch, dim), dz (batch, L, dim) per scan row; dB_part and dC_part
 * (batch, part_groups, L, N), each part a run of channel blocks (summed by the caller). */
void vepcli_scan_bwd(const ScanArgs *s, int threads) { run(s, scan_bwd_item, s->batch * s->part_groups, threads); }

void vepcli_conv_fwd(const ConvArgs *s, int threads) { run(s, conv_fwd_item, s->batch * blocks(s->dim), threads); }

void vepcli_conv_bwd(const ConvArgs *s, int threads) { run(s, conv_bwd_item, s->batch * blocks(s->dim), threads); }
}  // extern "C"
