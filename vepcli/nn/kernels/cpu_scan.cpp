/* The selective scan (S6) for CPUs, in C++ only for its vector conditionals (no C++ library is used): one compiled loop per (row, block of channels), forward and backward.
 *
 *   delta_t = softplus(delta_t + bias)     A-bar_t = exp(delta_t A)     B-bar_t x_t = delta_t B_t u_t
 *   h_t = A-bar_t h_{t-1} + B-bar_t x_t    y_t = (<C_t, h_t> + D u_t) * SiLU(z_t)
 *
 * Each work item keeps the (d_state, BLOCK) state of BLOCK adjacent channels in a small array that stays
 * in L1 and walks the whole sequence; the inner loops run over the BLOCK channels, which are contiguous
 * in memory, so the compiler turns them into vector code. exp, log1p and the sigmoid are written here as
 * plain arithmetic (exp2 by a rounded split and a polynomial) so that they vectorise without a vector
 * math library and give the same bits on every machine this file is compiled for. Nothing of size
 * (batch, L, d_inner, d_state) is ever written: the backward pass keeps the state at every CHUNK-th step
 * and recomputes the steps in between.
 *
 * Threads take work items from one atomic counter: one parallel region per call, no per-step barrier,
 * and a busy core only slows the items it holds. Every row is computed by the same code whatever its
 * batch-mates, so results are bitwise independent of the batch.
 *
 * Layout (all float32, C-contiguous): u, delta, z, y (batch, L, d_inner); B, C (batch, L, d_state);
 * A (d_inner, d_state) per row at row stride a_rs (0 when shared); D, bias (d_inner,) at row stride
 * p_rs (0 when shared). Called through ctypes, which releases the GIL.
 */
#include <pthread.h>
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
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* BLOCK lanes of float: GCC and Clang turn arithmetic on these into the machine's vector code. */
typedef float vf __attribute__((vector_size(BLOCK * 4)));
typedef int32_t vi __attribute__((vector_size(BLOCK * 4)));

static inline vf splat(float x) { return vf{} + x; }
static inline vf vmax(vf a, vf b) { return a < b ? b : a; } /* NaN in a stays NaN */
static inline vf vmin(vf a, vf b) { return a > b ? b : a; }
static inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }

/* 2^x for x clamped to [-126, 126]. x = k + f with k = round(x), taken from the low mantissa bits of
 * x + 1.5 2^23; 2^f for |f| <= 1/2 by its Taylor series (ln2)^i / i! to degree 6 (relative error
 * 1.2e-7, the rounding of a float); 2^k written straight into the exponent bits. */
static inline vf exp2_v(vf x) {
    x = vmin(vmax(x, splat(-126.0f)), splat(126.0f));
    vf t = x + 12582912.0f;
    vf f = x - (t - 12582912.0f);
    vf p = splat(1.5403530393381608e-4f);
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + LN2;
    p = p * f + 1.0f;
    vi bits = ((vi)t - (0x4B400000 - 127)) << 23;
    return p * (vf)bits;
}

static inline vf exp_v(vf x) { return exp2_v(x * LOG2E); }

static inline vf sigmoid_v(vf x) { return 1.0f / (1.0f + exp_v(-x)); }

/* log(m) for m in [1, 2] as 2 atanh(s), s = (m - 1) / (m + 1) <= 1/3: absolute error below 1e-7. */
static inline vf log_1to2_v(vf m) {
    vf s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
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
    vf l1p = d == 0.0f ? e : log_1to2_v(m) * (e / d);
    return vmax(x, splat(0.0f)) + l1p;
}

typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *z, *bias;
    float *y, *states;
    int64_t batch, L, dim, N, a_rs, p_rs;
    int softplus;
    /* backward */
    const float *dout;
    float *du, *ddelta, *dA, *dB_part, *dC_part, *dD, *dz, *dbias;
    int64_t groups, blocks_per_group;
    /* work sharing */
    int64_t items;
    int64_t next; /* atomic */
} Scan;

typedef void (*item_fn)(Scan *, int64_t);

/* A block of n <= BLOCK channels from memory; lanes past n are 0. */
static inline vf load(const float *src, int64_t n) {
    vf v = {};
    if (n == BLOCK)
        memcpy(&v, src, sizeof v);
    else
        for (int64_t i = 0; i < n; i++) v[i] = src[i];
    return v;
}

static inline void store(float *dst, vf v, int64_t n) {
    if (n == BLOCK)
        memcpy(dst, &v, sizeof v);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = v[i];
}

/* The block's parameters: A scaled by log2(e) (A2) and as it is (At), one vector per state; D; bias. */
typedef struct {
    vf *A2, *At;
    vf D, bias;
    int64_t d0, n;
} Block;

static Block block_params(const Scan *s, int64_t b, int64_t c, vf *buf) {
    Block p;
    p.A2 = buf;
    p.At = buf + s->N;
    p.d0 = c * BLOCK;
    p.n = s->dim - c * BLOCK;
    if (p.n > BLOCK) p.n = BLOCK;
    const float *A = s->A + b * s->a_rs;
    for (int64_t k = 0; k < s->N; k++) {
        vf a = {};
        for (int64_t i = 0; i < p.n; i++) a[i] = A[(p.d0 + i) * s->N + k];
        p.At[k] = a;
        p.A2[k] = a * LOG2E;
    }
    p.D = s->D ? load(s->D + b * s->p_rs + p.d0, p.n) : splat(0.0f);
    p.bias = s->bias ? load(s->bias + b * s->p_rs + p.d0, p.n) : splat(0.0f);
    return p;
}

/* delta_t of one block: delta + bias, through softplus when asked; x keeps the pre-softplus value. */
static inline vf step_delta(const Scan *s, const Block *p, int64_t off, vf *x) {
    *x = load(s->delta + off, p->n) + p->bias;
    return s->softplus ? softplus_v(*x) : *x;
}

/* One step for a block: h <- A-bar h + B-bar x, returning <C, h>; keeps A-bar when abar is given. */
static inline vf recur_step(int64_t N, const vf *__restrict A2, vf dt, vf du, const float *__restrict Bt,
                            const float *__restrict Ct, vf *__restrict h, vf *__restrict abar) {
    vf acc = {};
    for (int64_t k = 0; k < N; k++) {
        vf a = exp2_v(dt * A2[k]);
        h[k] = a * h[k] + du * Bt[k];
        acc += h[k] * Ct[k];
        if (abar) abar[k] = a;
    }
    return acc;
}

static void forward_item(Scan *s, int64_t item) {
    int64_t nb = (s->dim + BLOCK - 1) / BLOCK, b = item / nb, N = s->N, L = s->L, dim = s->dim;
    vf *buf = (vf *)aligned_alloc(64, sizeof(vf) * 3 * N), *h = buf + 2 * N;
    Block p = block_params(s, b, item % nb, buf);
    memset(h, 0, sizeof(vf) * N);
    const float *Brow = s->B + b * L * N, *Crow = s->C + b * L * N;
    for (int64_t t = 0; t < L; t++) {
        int64_t off = (b * L + t) * dim + p.d0;
        if (s->states && t % CHUNK == 0) {
            float *st = s->states + ((b * ((L + CHUNK - 1) / CHUNK) + t / CHUNK) * N) * dim + p.d0;
            for (int64_t k = 0; k < N; k++) store(st + k * dim, h[k], p.n);
        }
        vf x, dt = step_delta(s, &p, off, &x), u = load(s->u + off, p.n);
        vf y = recur_step(N, p.A2, dt, dt * u, Brow + t * N, Crow + t * N, h, NULL) + p.D * u;
        if (s->z) {
            vf z = load(s->z + off, p.n);
            y *= z * sigmoid_v(z);
        }
        store(s->y + off, y, p.n);
    }
    free(buf);
}

/* The backward pass of one block of one row, chunk by chunk from the end. For each chunk the forward
 * steps are recomputed from the saved start state, keeping h_t and A-bar_t; then, going back in time,
 *   g_t = dyss_t C_t + A-bar_{t+1} g_{t+1}          (dL/dh_t)
 *   dL/d(delta_t) = sum_n g_t (h_{t-1} A-bar_t A + u_t B_t),   dL/dA += g_t h_{t-1} A-bar_t delta_t
 * and this block's part of dB_t = sum_d g_t delta_t u_t and dC_t = sum_d dyss_t h_t. */
static void backward_block(Scan *s, int64_t b, int64_t c, float *dB_acc, float *dC_acc, vf *work) {
    int64_t N = s->N, L = s->L, dim = s->dim, nchunks = (L + CHUNK - 1) / CHUNK;
    Block p = block_params(s, b, c, work);
    vf *g = work + 2 * N, *dA = g + N, *hs = dA + N, *abar = hs + (CHUNK + 1) * N;
    vf *dts = abar + CHUNK * N, *xs = dts + CHUNK, *ys = xs + CHUNK;
    vf dD = {}, dbias = {};
    memset(g, 0, sizeof(vf) * 2 * N); /* g and dA */
    const float *Brow = s->B + b * L * N, *Crow = s->C + b * L * N;
    for (int64_t ch = nchunks - 1; ch >= 0; ch--) {
        int64_t t0 = ch * CHUNK, T = (L - t0) < CHUNK ? (L - t0) : CHUNK;
        const float *st = s->states + ((b * nchunks + ch) * N) * dim + p.d0;
        for (int64_t k = 0; k < N; k++) hs[k] = load(st + k * dim, p.n);
        for (int64_t j = 0; j < T; j++) { /* recompute: hs[j + 1] is h after step t0 + j */
            int64_t off = (b * L + t0 + j) * dim + p.d0;
            dts[j] = step_delta(s, &p, off, &xs[j]);
            vf u = load(s->u + off, p.n);
            memcpy(hs + (j + 1) * N, hs + j * N, sizeof(vf) * N);
            ys[j] = recur_step(N, p.A2, dts[j], dts[j] * u, Brow + (t0 + j) * N, Crow + (t0 + j) * N,
                               hs + (j + 1) * N, abar + j * N) + p.D * u;
        }
        for (int64_t j = T - 1; j >= 0; j--) {
            int64_t t = t0 + j, off = (b * L + t) * dim + p.d0;
            const float *Bt = Brow + t * N, *Ct = Crow + t * N;
            const vf *hprev = hs + j * N, *hcur = hs + (j + 1) * N, *ab = abar + j * N;
            vf dt = dts[j], u = load(s->u + off, p.n), dyss = load(s->dout + off, p.n);
            if (s->z) {
                vf z = load(s->z + off, p.n), sg = sigmoid_v(z);
                store(s->dz + off, dyss * ys[j] * sg * (1.0f + z * (1.0f - sg)), p.n);
                dyss *= z * sg;
            }
            dD += dyss * u;
            vf ddel = {}, gB = {};
            for (int64_t k = 0; k < N; k++) {
                vf gk = g[k] + dyss * Ct[k]; /* g[k] holds A-bar_{t+1} g_{t+1} */
                vf q = gk * hprev[k] * ab[k]; /* dL/d(delta_t A) */
                ddel += q * p.At[k];
                dA[k] += q * dt;
                gB += gk * Bt[k];
                vf db = gk * dt * u, dc = dyss * hcur[k];
                float sb = 0.0f, sc = 0.0f;
                for (int64_t i = 0; i < BLOCK; i++) {
                    sb += db[i];
                    sc += dc[i];
                }
                dB_acc[t * N + k] += sb;
                dC_acc[t * N + k] += sc;
                g[k] = gk * ab[k];
            }
            ddel += gB * u;
            if (s->softplus) ddel *= sigmoid_v(xs[j]);
            dbias += ddel;
            store(s->du + off, dyss * p.D + gB * dt, p.n);
            store(s->ddelta + off, ddel, p.n);
        }
    }
    for (int64_t i = 0; i < p.n; i++) {
        for (int64_t k = 0; k < N; k++) s->dA[(b * dim + p.d0 + i) * N + k] = dA[k][i];
        s->dD[b * dim + p.d0 + i] = dD[i];
        s->dbias[b * dim + p.d0 + i] = dbias[i];
    }
}

static void backward_item(Scan *s, int64_t item) {
    int64_t b = item / s->groups, grp = item % s->groups, nb = (s->dim + BLOCK - 1) / BLOCK, N = s->N;
    vf *work = (vf *)aligned_alloc(64, sizeof(vf) * (4 * N + (2 * CHUNK + 1) * N + 3 * CHUNK));
    float *dB_acc = s->dB_part + (b * s->groups + grp) * s->L * N;
    float *dC_acc = s->dC_part + (b * s->groups + grp) * s->L * N;
    for (int64_t c = grp * s->blocks_per_group; c < nb && c < (grp + 1) * s->blocks_per_group; c++)
        backward_block(s, b, c, dB_acc, dC_acc, work);
    free(work);
}

typedef struct {
    Scan *s;
    item_fn fn;
} Job;

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    for (;;) {
        int64_t i = __atomic_fetch_add(&job->s->next, 1, __ATOMIC_RELAXED);
        if (i >= job->s->items) break;
        job->fn(job->s, i);
    }
    return NULL;
}

static void run(Scan *s, item_fn fn, int threads) {
    Job job = {s, fn};
    s->next = 0;
    if (threads > s->items) threads = (int)s->items;
    pthread_t tid[256];
    int started = 0;
    for (; started < threads - 1 && started < 256; started++)
        if (pthread_create(&tid[started], NULL, worker, &job) != 0) break;
    worker(&job); /* the calling thread works too; items left by a failed thread start are taken here */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static void set_inputs(Scan *s, const float *u, const float *delta, const float *A, const float *B, const float *C,
                       const float *D, const float *z, const float *bias, int64_t batch, int64_t L, int64_t dim,
                       int64_t N, int64_t a_rs, int64_t p_rs, int softplus) {
    s->u = u, s->delta = delta, s->A = A, s->B = B, s->C = C, s->D = D, s->z = z, s->bias = bias;
    s->batch = batch, s->L = L, s->dim = dim, s->N = N, s->a_rs = a_rs, s->p_rs = p_rs, s->softplus = softplus;
}

extern "C" {
int vepcli_scan_block(void) { return BLOCK; }
int vepcli_scan_chunk(void) { return CHUNK; }

void vepcli_scan_fwd(const float *u, const float *delta, const float *A, const float *B, const float *C,
                     const float *D, const float *z, const float *bias, float *y, float *states, int64_t batch,
                     int64_t L, int64_t dim, int64_t N, int64_t a_rs, int64_t p_rs, int softplus, int threads) {
    Scan s = {};
    set_inputs(&s, u, delta, A, B, C, D, z, bias, batch, L, dim, N, a_rs, p_rs, softplus);
    s.y = y;
    s.states = states;
    s.items = batch * ((dim + BLOCK - 1) / BLOCK);
    run(&s, forward_item, threads);
}

/* dA, dD, dbias are per row: (batch, dim, N), (batch, dim), (batch, dim); dB_part, dC_part are
 * (batch, groups, L, N) zero-filled, each group a run of blocks_per_group channel blocks. */
void vepcli_scan_bwd(const float *u, const float *delta, const float *A, const float *B, const float *C,
                     const float *D, const float *z, const float *bias, const float *states, const float *dout,
                     float *du, float *ddelta, float *dA, float *dB_part, float *dC_part, float *dD, float *dz,
                     float *dbias, int64_t batch, int64_t L, int64_t dim, int64_t N, int64_t a_rs, int64_t p_rs,
                     int softplus, int64_t groups, int threads) {
    int64_t nb = (dim + BLOCK - 1) / BLOCK;
    Scan s = {};
    set_inputs(&s, u, delta, A, B, C, D, z, bias, batch, L, dim, N, a_rs, p_rs, softplus);
    s.states = (float *)states;
    s.dout = dout;
    s.du = du, s.ddelta = ddelta, s.dA = dA, s.dB_part = dB_part, s.dC_part = dC_part;
    s.dD = dD, s.dz = dz, s.dbias = dbias;
    s.groups = groups;
    s.blocks_per_group = (nb + groups - 1) / groups;
    s.items = batch * groups;
    run(&s, backward_item, threads);
}
}  // extern "C"
