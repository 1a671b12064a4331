/*
 * gemm.c: the driver of the CPU's matrix-matrix product (see gemm.h) and its portable
 * micro-kernel.
 *
 * Blocking, from the outside in, for one thread:
 *   row block of at most MB input rows
 *     k block of at most KC columns: x[rows][k block] packed into row tiles [kc][MR]
 *       panel of NR output features (the thread's share of all products of the call):
 *       its k block decoded row by row into tmp[NR][kc] by the exact row decoders of
 *       kernels.c, transposed into p[kc][NR]
 *         every row tile: an MR x NR block of y accumulated in registers over the k block
 * The packed panel (KC * NR floats, 32 KiB on AVX-512) stays in L1 while every row tile
 * passes over it; the packed x block (MB * KC floats) stays in L2 for all panels. y holds
 * the partial sums between k blocks. Threads split the panels of all products of the call
 * (q/k/v, gate/up together), so both cores work even on a narrow product, and each
 * decodes only its own weights. The k blocks start at multiples of KC, a multiple of every
 * MLX group size, so a block of an affine row is itself a valid affine row.
 */
#include "gemm.h"

#include <string.h>

#include "base/threadpool.h"

#define KC 256           /* k per block: a multiple of 128, the largest group */
#define MB 256           /* input rows per row block */
#define NR_MAX 32        /* widest panel of any ISA */
#define MR_MAX 12        /* tallest row tile of any ISA */
#define SMALL_WORK 32768 /* multiply-adds below which one thread does it all */

size_t cellm_cpu_scratch_floats(int64_t max_cols)
{
    size_t rows = (size_t)CELLM_CPU_ROW_BLOCK * (size_t)max_cols;
    /* panel + decoded rows + packed x block (row tiles padded to MR_MAX) */
    size_t gemm = (size_t)KC * (2 * NR_MAX + MB + MR_MAX);
    size_t f = rows > gemm ? rows : gemm;
    return (f + 15) & ~(size_t)15; /* 64-byte multiples keep each thread's buffer aligned */
}

/* ---- portable micro-kernel ------------------------------------------------------------ */

#define NR_P CELLM_GEMM_NR_PORTABLE
#define MR_P CELLM_GEMM_MR_PORTABLE

static void pack_portable(const float *tmp, int64_t kc, float *p)
{
    for (int r = 0; r < NR_P; r++)
        for (int64_t k = 0; k < kc; k++)
            p[k * NR_P + r] = tmp[r * kc + k];
}

static void tile_portable(int mr, const float *xp, const float *p, int64_t kc, float *y,
                          int64_t ldy, int ncols, int add)
{
    float acc[MR_P][NR_P];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++)
        for (int t = 0; t < mr; t++) {
            float xv = xp[k * MR_P + t];
            for (int c = 0; c < NR_P; c++)
                acc[t][c] += xv * p[k * NR_P + c];
        }
    for (int t = 0; t < mr; t++)
        for (int c = 0; c < ncols; c++)
            y[t * ldy + c] = add ? y[t * ldy + c] + acc[t][c] : acc[t][c];
}

/* ---- driver ------------------------------------------------------------------------- */

struct isa_ops {
    int nr, mr;
    cellm_gemm_pack_fn pack;
    cellm_gemm_tile_fn tile;
};

static struct isa_ops ops_for(enum cellm_isa isa)
{
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512)
        return (struct isa_ops){CELLM_GEMM_NR_AVX512, CELLM_GEMM_MR_AVX512, cellm_gemm_pack_avx512,
                                cellm_gemm_tile_avx512};
    if (isa == CELLM_ISA_AVX2)
        return (struct isa_ops){CELLM_GEMM_NR_AVX2, CELLM_GEMM_MR_AVX2, cellm_gemm_pack_avx2,
                                cellm_gemm_tile_avx2};
#endif
    (void)isa;
    return (struct isa_ops){NR_P, MR_P, pack_portable, tile_portable};
}

struct gemm_job {
    const struct cellm_cpu_mm *outs;
    int n_outs;
    enum cellm_isa isa;
    struct isa_ops ops;
    const float *x;
    int64_t ldx;
    int n;
    float *scratch;
    size_t stride; /* floats of scratch per thread */
    long panels;   /* over all products */
};

static int64_t panels_of(const struct cellm_weight *w, int nr)
{
    return (w->rows + nr - 1) / nr;
}

/* Row r of w, columns [k0, k0 + kc), decoded into out[kc]: a one-row view of that
 * stretch handed to the row decoders, which thereby give exactly their whole-row values. */
static void decode_segment(enum cellm_isa isa, const struct cellm_weight *w, int64_t r, int64_t k0,
                           int64_t kc, float *out)
{
    struct cellm_weight s = *w;
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    s.rows = 1;
    s.cols = kc;
    switch (w->fmt) {
    case CELLM_W_F32:
        s.data = row + 4 * k0;
        break;
    case CELLM_W_F16:
    case CELLM_W_BF16:
        s.data = row + 2 * k0;
        break;
    case CELLM_W_AFFINE: {
        /* k0 is a multiple of the group, so its codes start on a byte */
        int64_t ng = w->cols / w->group;
        size_t g0 = (size_t)(r * ng + k0 / w->group) * 2;
        s.data = row + (size_t)(k0 * w->bits / 8);
        s.row_bytes = (size_t)(kc * w->bits / 8);
        s.scales = w->scales + g0;
        s.biases = w->biases + g0;
        break;
    }
    default:
        memset(out, 0, (size_t)kc * sizeof *out);
        return;
    }
    cellm_cpu_dequant_rows(isa, &s, 0, 1, out);
}

/* x[rows][kc] (row stride ldx) into row tiles [kc][mr], the rows past the end zero. */
static void pack_x(const float *x, int64_t ldx, int rows, int64_t kc, int mr, float *xp)
{
    for (int t0 = 0; t0 < rows; t0 += mr) {
        float *tile = xp + (size_t)t0 * (size_t)kc;
        for (int t = 0; t < mr; t++) {
            const float *src = x + (size_t)(t0 + t) * (size_t)ldx;
            if (t0 + t < rows)
                for (int64_t k = 0; k < kc; k++)
                    tile[k * mr + t] = src[k];
            else
                for (int64_t k = 0; k < kc; k++)
                    tile[k * mr + t] = 0;
        }
    }
}

static void gemm_part(void *arg, int ti, int tn)
{
    const struct gemm_job *j = arg;
    long g0, g1;
    cellm_split(j->panels, ti, tn, &g0, &g1);
    if (g0 >= g1) return;
    const int nr = j->ops.nr, mr = j->ops.mr;
    float *p = j->scratch + (size_t)ti * j->stride;
    float *tmp = p + (size_t)KC * NR_MAX, *xp = tmp + (size_t)KC * NR_MAX;
    int64_t K = j->outs[0].w->cols;
    for (int r0 = 0; r0 < j->n; r0 += MB) {
        int rows = j->n - r0 < MB ? j->n - r0 : MB;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            pack_x(j->x + (size_t)r0 * (size_t)j->ldx + k0, j->ldx, rows, kc, mr, xp);
            /* walk this thread's panels [g0, g1) across the products */
            long off = 0;
            for (int oi = 0; oi < j->n_outs; oi++) {
                const struct cellm_cpu_mm *o = &j->outs[oi];
                long np = (long)panels_of(o->w, nr);
                long lo = g0 > off ? g0 : off, hi = g1 < off + np ? g1 : off + np;
                for (long g = lo; g < hi; g++) {
                    int64_t f0 = (int64_t)(g - off) * nr;
                    int nf = o->w->rows - f0 < nr ? (int)(o->w->rows - f0) : nr;
                    for (int f = 0; f < nf; f++)
                        decode_segment(j->isa, o->w, f0 + f, k0, kc, tmp + (size_t)f * kc);
                    if (nf < nr) memset(tmp + (size_t)nf * kc, 0, (size_t)(nr - nf) * kc * 4);
                    j->ops.pack(tmp, kc, p);
                    float *y = o->y + (size_t)r0 * (size_t)o->ldy + f0;
                    for (int t0 = 0; t0 < rows; t0 += mr)
                        j->ops.tile(rows - t0 < mr ? rows - t0 : mr, xp + (size_t)t0 * kc, p, kc,
                                    y + (size_t)t0 * (size_t)o->ldy, o->ldy, nf, k0 > 0);
                }
                off += np;
            }
        }
    }
}

void cellm_cpu_gemm(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_cpu_mm *outs,
                    int n_outs, const float *x, int64_t ldx, int n, float *scratch,
                    int64_t scratch_cols)
{
    struct gemm_job j = {
        outs, n_outs, isa, ops_for(isa), x, ldx, n, scratch, cellm_cpu_scratch_floats(scratch_cols),
        0};
    int64_t work = 0;
    for (int k = 0; k < n_outs; k++) {
        j.panels += (long)panels_of(outs[k].w, j.ops.nr);
        work += (int64_t)n * outs[k].w->rows * outs[k].w->cols;
    }
    if (n <= 0 || j.panels == 0) return;
    if (outs[0].w->cols <= 0) { /* empty sums */
        for (int k = 0; k < n_outs; k++)
            for (int t = 0; t < n; t++)
                memset(outs[k].y + (size_t)t * (size_t)outs[k].ldy, 0,
                       (size_t)outs[k].w->rows * sizeof(float));
        return;
    }
    if (work < SMALL_WORK)
        gemm_part(&j, 0, 1);
    else
        cellm_pool_run(pool, gemm_part, &j);
}
