/*
 * gemm.c: the driver of the CPU's matrix-matrix product (see gemm.h) and its portable
 * micro-kernel.
 *
 * Per row block of at most MB input rows, two parallel jobs:
 *   1. pack: x[rows][K] into row tiles [kc][MRS] per k block of KC columns, in one buffer
 *      all threads share (the k blocks split among the threads);
 *   2. multiply: each thread takes its share of the panels (NR output features) of all
 *      products of the call (q/k/v, gate/up together, so both cores work even on a
 *      narrow product), and for each panel, k block by k block:
 *        decode the block of its NR weight rows into p[kc][NR] (AVX-512: straight from
 *        the stored bytes with in-register transposes; otherwise the exact row decoders
 *        of kernels.c into tmp[NR][kc], then transposed), then for every row tile an
 *        MR x NR block of y accumulated in registers over the k block.
 * The panel (KC * NR floats) stays in L2 and is read by every row tile; a panel's block of
 * y (MB * NR floats) stays in L1/L2 across its k blocks; each weight row is read front to
 * back once per row block. k blocks start at multiples of KC, a multiple of every MLX
 * group size, so a block of an affine row is itself a valid affine row.
 */
#include "gemm.h"
#include "kernels_fp.h"

#include <string.h>

#include "base/threadpool.h"

#define KC 1024       /* k per panel block, a multiple of 128 (the largest group) */
#define DC 256        /* k decoded per step of the generic path, so its rows stay in L1 */
#define LDT (DC + 16) /* row stride of the decoded rows: off 4 KiB, against set conflicts */
#define MB 128        /* input rows per row block */
#define NR_MAX 32     /* widest panel of any ISA */
/* lanes of the packed x tiles of a row block, the most of any ISA: ceil(MB / MR) * MRS */
#define XP_ROWS 176
#define SMALL_WORK 32768 /* multiply-adds below which one thread does it all */
#define SMALL_PACK 65536 /* floats of x below which one thread packs them */

/* Floats of one thread's panel and decoded rows. */
static size_t per_thread(void)
{
    return ((size_t)KC * NR_MAX + (size_t)NR_MAX * LDT + 15) & ~(size_t)15;
}

size_t cellm_cpu_scratch_floats(int n_threads, int64_t max_cols)
{
    size_t rows = (size_t)n_threads * CELLM_CPU_ROW_BLOCK * (size_t)max_cols;
    /* the packed x of a row block, shared, then the threads' panels */
    size_t xp = ((size_t)XP_ROWS * (size_t)max_cols + 15) & ~(size_t)15;
    size_t gemm = xp + (size_t)n_threads * per_thread();
    return rows > gemm ? rows : gemm;
}

/* ---- portable micro-kernel ------------------------------------------------------------ */

#define NR_P CELLM_GEMM_NR_PORTABLE
#define MR_P CELLM_GEMM_MR_PORTABLE
_Static_assert(CELLM_GEMM_MRS_PORTABLE == MR_P, "the portable tiles are unpadded");
_Static_assert((MB + MR_P - 1) / MR_P * MR_P <= XP_ROWS, "x block fits");
#if defined(__x86_64__)
_Static_assert((MB + CELLM_GEMM_MR_AVX512 - 1) / CELLM_GEMM_MR_AVX512 * CELLM_GEMM_MRS_AVX512 <=
                   XP_ROWS,
               "x block fits");
_Static_assert((MB + CELLM_GEMM_MR_AVX2 - 1) / CELLM_GEMM_MR_AVX2 * CELLM_GEMM_MRS_AVX2 <= XP_ROWS,
               "x block fits");
#endif

static void packx_portable(const float *x, int64_t ldx, int rows, int64_t kc, float *xp)
{
    for (int t0 = 0; t0 < rows; t0 += MR_P) {
        float *tile = xp + (size_t)t0 * (size_t)kc;
        for (int t = 0; t < MR_P; t++) {
            const float *src = x + (size_t)(t0 + t) * (size_t)ldx;
            for (int64_t k = 0; k < kc; k++)
                tile[k * MR_P + t] = t0 + t < rows ? src[k] : 0;
        }
    }
}

static void pack_portable(const float *tmp, int64_t ldt, int64_t kc, float *p)
{
    for (int r = 0; r < NR_P; r++)
        for (int64_t k = 0; k < kc; k++)
            p[k * NR_P + r] = tmp[r * ldt + k];
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
    int nr, mr, mrs;
    cellm_gemm_packx_fn packx;
    cellm_gemm_pack_fn pack;
    cellm_gemm_tile_fn tile;
};

static struct isa_ops ops_for(enum cellm_isa isa)
{
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512)
        return (struct isa_ops){CELLM_GEMM_NR_AVX512,   CELLM_GEMM_MR_AVX512,
                                CELLM_GEMM_MRS_AVX512,  cellm_gemm_packx_avx512,
                                cellm_gemm_pack_avx512, cellm_gemm_tile_avx512};
    if (isa == CELLM_ISA_AVX2)
        return (struct isa_ops){CELLM_GEMM_NR_AVX2,    CELLM_GEMM_MR_AVX2,   CELLM_GEMM_MRS_AVX2,
                                cellm_gemm_packx_avx2, cellm_gemm_pack_avx2, cellm_gemm_tile_avx2};
#endif
    (void)isa;
    return (struct isa_ops){NR_P, MR_P, MR_P, packx_portable, pack_portable, tile_portable};
}

struct gemm_job {
    const struct cellm_cpu_mm *outs;
    int n_outs;
    enum cellm_isa isa;
    struct isa_ops ops;
    const float *x;
    int64_t ldx;
    int r0, rows;     /* the row block */
    float *scratch;   /* packed x of the row block, then the threads' panels */
    size_t xp_floats; /* room for the packed x */
    long panels;      /* over all products */
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
    case CELLM_W_NONE:
        memset(out, 0, (size_t)kc * sizeof *out);
        return;
    default: /* the formats of docs/formats.md: SIMD where kernels_fp.c has it */
        if (!cellm_cpu_fp_dequant(isa, w, r, k0, kc, out)) cellm_weight_row_seg(w, r, k0, kc, out);
        return;
    }
    cellm_cpu_dequant_rows(isa, &s, 0, 1, out);
}

/* The panel of w's rows [f0, f0 + nf) (zero past nf), columns [k0, k0 + kc), decoded and
 * packed into p[kc][nr], DC columns at a time. */
static void make_panel(const struct gemm_job *j, const struct cellm_weight *w, int64_t f0, int nf,
                       int64_t k0, int64_t kc, float *tmp, float *p)
{
    const int nr = j->ops.nr;
    int64_t d0 = 0;
#if defined(__x86_64__)
    if (j->isa == CELLM_ISA_AVX512 && cellm_gemm_panel_avx512_ok(w))
        d0 = cellm_gemm_panel_avx512(w, f0, nf, k0, kc, p);
#endif
    if (d0 == 0) d0 = cellm_cpu_fp_panel(j->isa, w, f0, nf, k0, kc, nr, p); /* GPTQ, AWQ */
    for (; d0 < kc; d0 += DC) {
        int64_t dc = kc - d0 < DC ? kc - d0 : DC;
        for (int f = 0; f < nf; f++)
            decode_segment(j->isa, w, f0 + f, k0 + d0, dc, tmp + (size_t)f * LDT);
        for (int f = nf; f < nr; f++)
            memset(tmp + (size_t)f * LDT, 0, (size_t)dc * sizeof *tmp);
        j->ops.pack(tmp, LDT, dc, p + (size_t)d0 * nr);
    }
}

/* Lanes of the packed tiles of the row block: the row count rounded up to tiles. */
static size_t tile_lanes(const struct gemm_job *j)
{
    return (size_t)((j->rows + j->ops.mr - 1) / j->ops.mr * j->ops.mrs);
}

/* Part ti of tn: its share of the k blocks of x rows [r0, r0 + rows), packed into the
 * shared buffer k block by k block (block k0 at k0 * tile_lanes, its tiles one after the
 * other), so that a panel's pass over all of x reads it front to back. */
static void pack_part(void *arg, int ti, int tn)
{
    const struct gemm_job *j = arg;
    int64_t K = j->outs[0].w->cols;
    long a, b;
    cellm_split((long)((K + KC - 1) / KC), ti, tn, &a, &b);
    for (long kb = a; kb < b; kb++) {
        int64_t k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
        j->ops.packx(j->x + (size_t)j->r0 * (size_t)j->ldx + k0, j->ldx, j->rows, kc,
                     j->scratch + (size_t)k0 * tile_lanes(j));
    }
}

/* Part ti of tn: its share of the panels of all products, each against every row tile of
 * the packed row block, one k block at a time (the block of y stays in cache between
 * them, and each weight row is read front to back). */
static void gemm_part(void *arg, int ti, int tn)
{
    const struct gemm_job *j = arg;
    const int nr = j->ops.nr, mr = j->ops.mr, mrs = j->ops.mrs, rows = j->rows;
    long g0, g1;
    cellm_split(j->panels, ti, tn, &g0, &g1);
    if (g0 >= g1) return;
    int64_t K = j->outs[0].w->cols;
    const float *xp = j->scratch;
    float *p = j->scratch + j->xp_floats + (size_t)ti * per_thread();
    float *tmp = p + (size_t)KC * NR_MAX;
    long off = 0;
    for (int oi = 0; oi < j->n_outs && off < g1; oi++) {
        const struct cellm_cpu_mm *o = &j->outs[oi];
        long np = (long)panels_of(o->w, nr);
        long lo = g0 > off ? g0 : off, hi = g1 < off + np ? g1 : off + np;
        for (long g = lo; g < hi; g++) {
            int64_t f0 = (int64_t)(g - off) * nr;
            int nf = o->w->rows - f0 < nr ? (int)(o->w->rows - f0) : nr;
            float *y = o->y + (size_t)j->r0 * (size_t)o->ldy + f0;
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                int64_t kc = K - k0 < KC ? K - k0 : KC;
                make_panel(j, o->w, f0, nf, k0, kc, tmp, p);
                const float *xk = xp + (size_t)k0 * tile_lanes(j);
                for (int t0 = 0; t0 < rows; t0 += mr)
                    j->ops.tile(rows - t0 < mr ? rows - t0 : mr,
                                xk + (size_t)(t0 / mr * mrs) * (size_t)kc, p, kc,
                                y + (size_t)t0 * (size_t)o->ldy, o->ldy, nf, k0 > 0);
            }
        }
        off += np;
    }
}

void cellm_cpu_gemm(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_cpu_mm *outs,
                    int n_outs, const float *x, int64_t ldx, int n, float *scratch,
                    int64_t scratch_cols)
{
    struct gemm_job j = {.outs = outs,
                         .n_outs = n_outs,
                         .isa = isa,
                         .ops = ops_for(isa),
                         .x = x,
                         .ldx = ldx,
                         .scratch = scratch,
                         .xp_floats = ((size_t)XP_ROWS * (size_t)scratch_cols + 15) & ~(size_t)15};
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
    for (j.r0 = 0; j.r0 < n; j.r0 += MB) {
        j.rows = n - j.r0 < MB ? n - j.r0 : MB;
        /* a small block of x is packed by the caller: one synchronisation, not two */
        if (work < SMALL_WORK || (int64_t)j.rows * outs[0].w->cols < SMALL_PACK)
            pack_part(&j, 0, 1);
        else
            cellm_pool_run(pool, pack_part, &j);
        if (work < SMALL_WORK)
            gemm_part(&j, 0, 1);
        else
            cellm_pool_run(pool, gemm_part, &j);
    }
}
