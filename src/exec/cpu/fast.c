/*
 * fast.c: fast-mode products (see fast.h): ISA choice, the activation buffers, the scalar
 * reference of the quantization and of the products (also the portable path), the split
 * of a product call over the threads, and the f16 KV helpers.
 *
 * A product call quantizes its input rows once (in parallel over rows when there are
 * several), then splits the weight rows of all its products into tiles of four and hands
 * each thread a contiguous range of tiles; every tile runs against all input rows while
 * its weights are hot in L1.
 */
#include "fast.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/half.h"
#include "fast_int.h"
#include "ops.h"

/* Weight rows per work item of the split (the register tile's height). */
#define TILE_ROWS 4

struct cellm_fast {
    enum cellm_fast_isa isa;
    int max_rows;
    int64_t max_cols;
    int n_threads;
    struct cellm_fast_x fx;
    float *scratch; /* [n_threads][scratch_floats] */
    size_t scratch_floats;
};

enum cellm_fast_isa cellm_fast_isa(enum cellm_isa cap)
{
#if defined(__x86_64__)
    if (cap >= CELLM_ISA_AVX512 && cellm_fast_has_avx512()) return CELLM_FAST_AVX512;
    if (cap >= CELLM_ISA_AVX2) return CELLM_FAST_AVX2;
#endif
    (void)cap;
    return CELLM_FAST_PORTABLE;
}

const char *cellm_fast_isa_name(enum cellm_fast_isa isa)
{
    switch (isa) {
    case CELLM_FAST_AVX512:
        return "avx512 bf16+vnni";
    case CELLM_FAST_AVX2:
        return "avx2";
    default:
        return "portable";
    }
}

int cellm_fast_handles(const struct cellm_weight *w)
{
    if (w->fmt == CELLM_W_BF16) return 1;
    return w->fmt == CELLM_W_AFFINE && (w->bits == 4 || w->bits == 8) &&
           (w->group == 32 || w->group == 64 || w->group == 128) && w->cols % w->group == 0;
}

/* ---- quantization (the reference) ------------------------------------------------------ */

int32_t cellm_fast_quant_block(const float *x, int8_t *q, float *d)
{
    float amax = 0;
    for (int i = 0; i < 32; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) {
        float v = nearbyintf(x[i] * id);
        v = v == v ? v : 0; /* NaN */
        int iv = v > 127 ? 127 : v < -127 ? -127 : (int)v;
        q[i] = (int8_t)iv;
        sum += iv;
    }
    *d = dd;
    return sum;
}

void cellm_fast_quant_row_ref(const float *x, struct cellm_fast_x *fx, int t, int want_bf,
                              int want_q)
{
    int64_t K = fx->cols;
    if (want_bf) {
        if (fx->bf)
            for (int64_t i = 0; i < K; i++)
                fx->bf[t * fx->ld + i] = cellm_fast_bf16(x[i]);
        if (fx->xf) {
            float *o = fx->xf + t * fx->ld;
            int64_t i = 0;
            for (; i + 16 <= K; i += 16)
                for (int k = 0; k < 8; k++) {
                    o[i + k] = cellm_bf16_to_f32(cellm_fast_bf16(x[i + 2 * k]));
                    o[i + 8 + k] = cellm_bf16_to_f32(cellm_fast_bf16(x[i + 2 * k + 1]));
                }
            for (; i < K; i++)
                o[i] = cellm_bf16_to_f32(cellm_fast_bf16(x[i]));
        }
    }
    if (!want_q || K % 32) return;
    int8_t *q = fx->q + t * fx->ld;
    for (int64_t b = 0; b < K / 32; b++) {
        float d;
        int32_t s = cellm_fast_quant_block(x + 32 * b, q + 32 * b, &d);
        fx->d[t * fx->ldb + b] = d;
        fx->ds[t * fx->ldb + b] = d * (float)s;
        for (int j = 0; j < 4; j++) {
            fx->dl[t * 4 * fx->ldb + 4 * b + j] = d;
        }
    }
    if (!fx->qp) return;
    int W = fx->chunk;
    int8_t *p = fx->qp + t * fx->ld;
    int64_t full = W ? K / W * W : 0;
    for (int64_t c = 0; c < full; c += W)
        for (int j = 0; j < W / 32; j++)
            for (int i = 0; i < 16; i++) {
                p[c + 16 * j + i] = q[c + 32 * j + 2 * i];
                p[c + W / 2 + 16 * j + i] = q[c + 32 * j + 2 * i + 1];
            }
    memcpy(p + full, q + full, (size_t)(K - full));
}

/* ---- portable products (the scalar model, summed in f32) ------------------------------- */

static float half_of(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h);
}

static void rows_portable(const struct cellm_weight *w, int64_t r0, int64_t r1,
                          const struct cellm_fast_x *fx, float *y, int64_t ldy)
{
    int64_t K = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        for (int t = 0; t < fx->n; t++) {
            float acc = 0;
            if (w->fmt == CELLM_W_BF16) {
                const uint16_t *xb = fx->bf + t * fx->ld;
                for (int64_t i = 0; i < K; i++)
                    acc +=
                        cellm_bf16_to_f32(cellm_load_u16(row + 2 * i)) * cellm_bf16_to_f32(xb[i]);
            } else {
                int64_t ng = K / w->group, bpg = w->group / 32;
                const uint8_t *s = w->scales + (size_t)r * ng * 2;
                const uint8_t *bi = w->biases + (size_t)r * ng * 2;
                const int8_t *q = fx->q + t * fx->ld;
                float bsum = 0;
                for (int64_t b = 0; b < K / 32; b++) {
                    int32_t I = 0;
                    for (int i = 0; i < 32; i++)
                        I += (int32_t)cellm_affine_code(row, w->bits, 32 * b + i) * q[32 * b + i];
                    float sd = half_of(w->sdtype, s + 2 * (b / bpg)) * fx->d[t * fx->ldb + b];
                    acc += sd * (float)I;
                    bsum += half_of(w->sdtype, bi + 2 * (b / bpg)) * fx->ds[t * fx->ldb + b];
                }
                acc += bsum;
            }
            y[t * ldy + r] = acc;
        }
    }
}

/* ---- context --------------------------------------------------------------------------- */

enum cellm_status cellm_fast_new(enum cellm_fast_isa isa, int n_threads, int max_rows,
                                 int64_t max_cols, struct cellm_fast **out, struct cellm_error *err)
{
    struct cellm_fast *f = cellm_calloc(1, sizeof *f);
    if (!f) return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    f->isa = isa;
    f->max_rows = max_rows;
    f->max_cols = max_cols;
    f->n_threads = n_threads;
    struct cellm_fast_x *fx = &f->fx;
    fx->chunk = isa == CELLM_FAST_AVX512 ? 128 : isa == CELLM_FAST_AVX2 ? 64 : 0;
    fx->ld = (max_cols + 127) / 128 * 128;
    fx->ldb = fx->ld / 32;
    size_t n = (size_t)max_rows, ld = (size_t)fx->ld, lb = (size_t)fx->ldb;
    int ok = 1;
    if (isa == CELLM_FAST_AVX2)
        ok &= !!(fx->xf = cellm_malloc(n * ld * sizeof(float)));
    else
        ok &= !!(fx->bf = cellm_malloc(n * ld * sizeof(uint16_t)));
    if (fx->chunk) ok &= !!(fx->qp = cellm_malloc(n * ld));
    ok &= !!(fx->q = cellm_malloc(n * ld)) && !!(fx->d = cellm_malloc(n * lb * sizeof(float))) &&
          !!(fx->dl = cellm_malloc(n * 4 * lb * sizeof(float))) &&
          !!(fx->ds = cellm_malloc(n * lb * sizeof(float))) &&
          !!(fx->ds64 = cellm_malloc(n * lb * sizeof(float))) &&
          !!(fx->ds128 = cellm_malloc(n * lb * sizeof(float))) && 1;
    /* per thread: decode's widened biases (4 rows, 4 * ldb), or prefill's repacked panel
     * of 16 rows (16 * ld code bytes, scales and biases 2 * 16 * ldb floats) */
    f->scratch_floats = 4 * ld + 32 * lb;
    ok &= !!(f->scratch = cellm_malloc((size_t)n_threads * f->scratch_floats * sizeof(float)));
    if (!ok) {
        cellm_fast_free(f);
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for fast-mode buffers (%d rows of %lld)",
                          max_rows, (long long)max_cols);
    }
    *out = f;
    return CELLM_OK;
}

void cellm_fast_free(struct cellm_fast *f)
{
    if (!f) return;
    struct cellm_fast_x *fx = &f->fx;
    void *bufs[] = {fx->bf, fx->xf, fx->q,    fx->qp,    fx->d,
                    fx->dl, fx->ds, fx->ds64, fx->ds128, f->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        cellm_free(bufs[i]);
    cellm_free(f);
}

const struct cellm_fast_x *cellm_fast_last_x(const struct cellm_fast *f)
{
    return &f->fx;
}

/* ---- one product call ------------------------------------------------------------------ */

struct fast_job {
    struct cellm_fast *f;
    const struct cellm_cpu_mm *outs;
    int n_outs;
    const float *x;
    int64_t ldx;
    int want_bf, want_q;
};

/* Per-group sums of ds for groups of 64 and 128. */
static void group_sums(struct cellm_fast_x *fx, int t)
{
    const float *ds = fx->ds + t * fx->ldb;
    float *d64 = fx->ds64 + t * fx->ldb, *d128 = fx->ds128 + t * fx->ldb;
    int64_t nb = fx->cols / 32;
    for (int64_t g = 0; g < nb / 2; g++)
        d64[g] = ds[2 * g] + ds[2 * g + 1];
    for (int64_t g = 0; g < nb / 4; g++)
        d128[g] = d64[2 * g] + d64[2 * g + 1];
}

static void quant_part(void *arg, int ti, int tn)
{
    const struct fast_job *j = arg;
    long b, e;
    cellm_split(j->f->fx.n, ti, tn, &b, &e);
    for (long t = b; t < e; t++) {
#if defined(__x86_64__)
        if (j->f->isa == CELLM_FAST_AVX512)
            cellm_fast_quant_row_avx512(j->x + t * j->ldx, &j->f->fx, (int)t, j->want_bf,
                                        j->want_q);
        else
#endif
            cellm_fast_quant_row_ref(j->x + t * j->ldx, &j->f->fx, (int)t, j->want_bf, j->want_q);
        if (j->want_q && j->f->fx.cols % 32 == 0) group_sums(&j->f->fx, (int)t);
    }
}

static int64_t tiles_of(const struct cellm_weight *w)
{
    return (w->rows + TILE_ROWS - 1) / TILE_ROWS;
}

static void rows_isa(const struct cellm_fast *f, const struct cellm_weight *w, int64_t r0,
                     int64_t r1, float *y, int64_t ldy, float *scratch)
{
#if defined(__x86_64__)
    if (f->isa == CELLM_FAST_AVX512) {
        cellm_fast_rows_avx512(w, r0, r1, &f->fx, y, ldy, scratch);
        return;
    }
    if (f->isa == CELLM_FAST_AVX2) {
        cellm_fast_rows_avx2(w, r0, r1, &f->fx, y, ldy, scratch);
        return;
    }
#endif
    (void)scratch;
    rows_portable(w, r0, r1, &f->fx, y, ldy);
}

static void mm_part(void *arg, int ti, int tn)
{
    const struct fast_job *j = arg;
    float *scratch = j->f->scratch + (size_t)ti * j->f->scratch_floats;
    int64_t total = 0;
    for (int k = 0; k < j->n_outs; k++)
        total += tiles_of(j->outs[k].w);
    long g0, g1;
    cellm_split((long)total, ti, tn, &g0, &g1);
    int64_t off = 0;
    for (int k = 0; k < j->n_outs; k++) {
        const struct cellm_weight *w = j->outs[k].w;
        int64_t nt = tiles_of(w);
        int64_t lo = g0 > off ? g0 : off, hi = g1 < off + nt ? g1 : off + nt;
        if (lo < hi) {
            int64_t r0 = (lo - off) * TILE_ROWS, r1 = (hi - off) * TILE_ROWS;
            rows_isa(j->f, w, r0, r1 < w->rows ? r1 : w->rows, j->outs[k].y, j->outs[k].ldy,
                     scratch);
        }
        off += nt;
    }
}

void cellm_fast_matmul_multi(struct cellm_fast *f, struct cellm_pool *pool,
                             const struct cellm_cpu_mm *outs, int n_outs, const float *x,
                             int64_t ldx, int n)
{
    struct fast_job j = {f, outs, n_outs, x, ldx, 0, 0};
    int64_t work = 0;
    for (int k = 0; k < n_outs; k++) {
        j.want_bf |= outs[k].w->fmt == CELLM_W_BF16;
        j.want_q |= outs[k].w->fmt == CELLM_W_AFFINE;
        work += (int64_t)n * outs[k].w->rows * outs[k].w->cols;
    }
    f->fx.n = n;
    f->fx.cols = outs[0].w->cols;
    if (n >= 4)
        cellm_pool_run(pool, quant_part, &j);
    else
        quant_part(&j, 0, 1);
    /* small products are not worth waking the workers */
    if (work < 32768)
        mm_part(&j, 0, 1);
    else
        cellm_pool_run(pool, mm_part, &j);
}

void cellm_fast_glu(enum cellm_fast_isa isa, enum cellm_act act, float *gate, const float *up,
                    int64_t n)
{
#if defined(__x86_64__)
    if (act == CELLM_ACT_SILU && isa == CELLM_FAST_AVX512) {
        cellm_fast_silu_mul_avx512(gate, up, n);
        return;
    }
    if (act == CELLM_ACT_SILU && isa == CELLM_FAST_AVX2) {
        cellm_fast_silu_mul_avx2(gate, up, n);
        return;
    }
#endif
    (void)isa;
    cellm_op_glu(act, gate, up, n);
}

/* ---- f16 KV cache ---------------------------------------------------------------------- */

void cellm_fast_to_f16(enum cellm_fast_isa isa, const float *x, uint16_t *out, int64_t n)
{
#if defined(__x86_64__)
    if (isa != CELLM_FAST_PORTABLE) {
        cellm_fast_to_f16_x86(x, out, n);
        return;
    }
#endif
    (void)isa;
    for (int64_t i = 0; i < n; i++)
        out[i] = cellm_f32_to_f16(x[i]);
}

float cellm_fast_dot_f16(enum cellm_fast_isa isa, const float *q, const uint16_t *k, int64_t n)
{
#if defined(__x86_64__)
    if (isa != CELLM_FAST_PORTABLE)
        return cellm_fast_dot_f16_x86(isa == CELLM_FAST_AVX512, q, k, n);
#endif
    (void)isa;
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += q[i] * cellm_f16_to_f32(k[i]);
    return s;
}

void cellm_fast_axpy_f16(enum cellm_fast_isa isa, float *y, float a, const uint16_t *v, int64_t n)
{
#if defined(__x86_64__)
    if (isa != CELLM_FAST_PORTABLE) {
        cellm_fast_axpy_f16_x86(y, a, v, n);
        return;
    }
#endif
    (void)isa;
    for (int64_t i = 0; i < n; i++)
        y[i] += a * cellm_f16_to_f32(v[i]);
}
