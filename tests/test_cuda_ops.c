/*
 * test_cuda_ops.c: every CUDA launcher (src/exec/cuda/cuda_int.h) against the CPU op on
 * random inputs, as llama.cpp's test-backend-ops does for its backends, within the numeric
 * contract (docs: design.md): products of every storage format (F32, F16, BF16, affine
 * 2/3/4/5/6/8-bit, 4-bit also step-ordered; MXFP4, NVFP4, MXFP8, FP8 blocks, GPTQ 4/8-bit
 * with and without desc_act, AWQ, and row views of FP8/GPTQ/AWQ weights as fused
 * projections make them) through every kernel that takes them (the first-generation
 * matvec, the fused decode products with and without the tensor cores, the norm prologue
 * and the add/GLU epilogues, the tensor-core GEMM, cuda_mvq.cu) at 1, 2, 3-31 and 32 or
 * more rows; dequantization, the bf16 split, the embedding; norms, GLU, soft-cap,
 * adds, argmax; gpt-oss's clamped SwiGLU and top-k-then-softmax router. Attention and the q/k/v
 * epilogue are in test_cuda_attn.c; the helpers both share (random inputs, the worst-error report)
 * in cuda_ops_util.h; the weights of docs/formats.md come from cuda_qweights.h (test_cuda_layout.c
 * checks their device layout on the host).
 *
 * The reference is the CPU's: weights widened by cellm_weight_row (the contract's
 * dequantization), elementwise ops by src/exec/cpu/ops.c, dot products in double. A dot
 * product of n terms may be summed in any order (the contract), so its bound is
 * (n + 8) * 2^-24 * sum |terms| (for affine weights the terms are s*q*x and b*x: the
 * tensor-core kernels sum those apart); elementwise results allow a few ulps (the GPU's
 * expf/tanhf are not glibc's). Every case prints one line: the op, the format, the shape,
 * the worst error and its share of the bound; a failure says FAIL on that line. Outputs
 * are poisoned (NaN) before each launch. Skipped where no CUDA device is present (CI).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cuda_runtime.h>

#include "base/half.h"
#include "cellm.h"
#include "exec/cpu/ops.h"
#include "exec/cuda/cuda_int.h"
#include "model/weight.h"

#include "cuda_ops_util.h"
#include "cuda_qweights.h"

/* ---- weights --------------------------------------------------------------------------- */

struct tw {                  /* one test weight */
    struct cellm_weight h;   /* host, for cellm_weight_row */
    struct cu_weight d;      /* device copy (row order) */
    struct cu_weight dt;     /* step-ordered copy (4-bit shapes that qualify), else fmt 0 */
    float *ref;              /* [rows][cols] widened by cellm_weight_row */
    float *mag;              /* [rows][cols] |s*q| + |b| (affine) or |w| */
    uint8_t *data, *sc, *bi; /* host storage */
    uint8_t *zeros, *gidx;   /* GPTQ/AWQ host storage */
    void *dev[4];
    void *qdev[CU_P_N]; /* the formats of docs/formats.md: their device layout's parts */
    char name[48];
};

static uint16_t f2h(float f, int bf16)
{
    return bf16 ? cellm_f32_to_bf16(f) : cellm_f32_to_f16(f);
}

static void tw_make(struct tw *t, int fmt, int bits, int group, int s_bf16, int64_t rows,
                    int64_t cols)
{
    memset(t, 0, sizeof *t);
    struct cellm_weight *h = &t->h;
    h->fmt = (enum cellm_wfmt)fmt;
    h->rows = rows;
    h->cols = cols;
    h->name = "test";
    size_t n = (size_t)(rows * cols);
    if (fmt == CU_W_F32 || fmt == CU_W_F16 || fmt == CU_W_BF16) {
        size_t es = fmt == CU_W_F32 ? 4 : 2;
        h->row_bytes = (size_t)cols * es;
        t->data = malloc(n * es);
        assert_non_null(t->data);
        for (size_t i = 0; i < n; i++) {
            float v = urand(-1, 1) * (float)(1 << (rnd() % 3));
            if (fmt == CU_W_F32)
                memcpy(t->data + 4 * i, &v, 4);
            else {
                uint16_t u = f2h(v, fmt == CU_W_BF16);
                memcpy(t->data + 2 * i, &u, 2);
            }
        }
        snprintf(t->name, sizeof t->name, "%s",
                 fmt == CU_W_F32   ? "f32"
                 : fmt == CU_W_F16 ? "f16"
                                   : "bf16");
    } else {
        h->bits = bits;
        h->group = group;
        h->sdtype = s_bf16 ? CELLM_DT_BF16 : CELLM_DT_F16;
        h->row_bytes = (size_t)cols * (size_t)bits / 8;
        t->data = calloc((size_t)rows, h->row_bytes);
        size_t ng = (size_t)rows * (size_t)(cols / group);
        t->sc = malloc(ng * 2);
        t->bi = malloc(ng * 2);
        assert_true(t->data && t->sc && t->bi);
        for (int64_t r = 0; r < rows; r++) /* codes: an LSB-first bit stream per row */
            for (int64_t c = 0; c < cols; c++) {
                uint32_t q = rnd() & ((1u << bits) - 1);
                int64_t bit = c * bits;
                for (int b = 0; b < bits; b++, bit++)
                    if (q >> b & 1)
                        t->data[r * (int64_t)h->row_bytes + bit / 8] |= (uint8_t)(1u << (bit % 8));
            }
        for (size_t g = 0; g < ng; g++) { /* scales of either sign, as MLX allows */
            uint16_t s = f2h(urand(0.004f, 0.05f) * (rnd() & 1 ? 1.f : -1.f), s_bf16);
            uint16_t b = f2h(urand(-0.5f, 0.5f), s_bf16);
            memcpy(t->sc + 2 * g, &s, 2);
            memcpy(t->bi + 2 * g, &b, 2);
        }
        h->scales = t->sc;
        h->biases = t->bi;
        snprintf(t->name, sizeof t->name, "q%d g%d %s", bits, group, s_bf16 ? "bf16" : "f16");
    }
    h->data = t->data;
    t->ref = malloc(n * sizeof(float));
    t->mag = malloc(n * sizeof(float));
    assert_true(t->ref && t->mag);
    for (int64_t r = 0; r < rows; r++)
        cellm_weight_row(h, r, t->ref + r * cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            size_t i = (size_t)(r * cols + c);
            if (fmt != CU_W_AFFINE) {
                t->mag[i] = fabsf(t->ref[i]);
                continue;
            }
            size_t g = (size_t)(r * (cols / group) + c / group);
            uint16_t su, bu;
            memcpy(&su, t->sc + 2 * g, 2);
            memcpy(&bu, t->bi + 2 * g, 2);
            float s = s_bf16 ? cellm_bf16_to_f32(su) : cellm_f16_to_f32(su);
            float b = s_bf16 ? cellm_bf16_to_f32(bu) : cellm_f16_to_f32(bu);
            uint32_t q = 0;
            for (int k = 0; k < bits; k++) {
                int64_t bit = c * bits + k;
                q |= (uint32_t)(t->data[r * (int64_t)h->row_bytes + bit / 8] >> (bit % 8) & 1) << k;
            }
            t->mag[i] = fabsf(s * (float)q) + fabsf(b);
        }
    struct cu_weight *d = &t->d;
    d->fmt = fmt;
    d->rows = rows;
    d->cols = cols;
    d->row_bytes = (int64_t)h->row_bytes;
    t->dev[0] = dput(t->data, (size_t)rows * h->row_bytes);
    d->data = t->dev[0];
    if (fmt == CU_W_AFFINE) {
        size_t ng = (size_t)rows * (size_t)(cols / group);
        d->bits = bits;
        d->group = group;
        d->s_bf16 = s_bf16;
        t->dev[1] = dput(t->sc, ng * 2);
        t->dev[2] = dput(t->bi, ng * 2);
        d->scales = t->dev[1];
        d->biases = t->dev[2];
        if (cellm_cu_tile_q4_ok(bits, group, rows, cols)) {
            t->dt = *d;
            t->dev[3] = dput(NULL, (size_t)rows * h->row_bytes);
            LAUNCH(cellm_cu_tile_q4(t->dev[0], t->dev[3], 0, rows, cols, group, NULL));
            t->dt.data = t->dev[3];
            t->dt.tiled = 1;
        }
    }
}

static void tw_free(struct tw *t)
{
    for (int i = 0; i < 4; i++)
        if (t->dev[i]) cudaFree(t->dev[i]);
    for (int i = 0; i < CU_P_N; i++)
        if (t->qdev[i]) cudaFree(t->qdev[i]);
    free(t->data);
    free(t->sc);
    free(t->bi);
    free(t->zeros);
    free(t->gidx);
    free(t->ref);
    free(t->mag);
}

/* rowmaj: GPTQ/AWQ in the row layout where it applies (cellm_cu_layout); the name says
 * which layout a GPTQ/AWQ case got */
static void tw_make_q(struct tw *t, const struct qspec *q, int rowmaj)
{
    struct qw w;
    memset(t, 0, sizeof *t);
    qw_make(&w, q);
    t->h = w.h;
    t->ref = w.ref;
    t->mag = w.mag;
    t->data = w.data;
    t->sc = w.sc;
    t->zeros = w.zeros;
    t->gidx = w.gidx;
    memcpy(t->name, w.name, sizeof t->name);
    const struct cellm_weight *h = &t->h;
    struct cu_layout l;
    assert_int_equal(cellm_cu_layout(h, 0, rowmaj, &l), 0);
    for (int i = 0; i < CU_P_N; i++)
        t->qdev[i] = l.bytes[i] ? dput(l.part[i], l.bytes[i]) : NULL;
    cellm_cu_layout_point(&l, t->qdev, &t->d);
    cellm_cu_layout_free(&l);
    if (t->d.fmt == CU_W_GPTQ) {
        const size_t len = strlen(t->name);
        snprintf(t->name + len, sizeof t->name - len, "%s", t->d.rowmaj ? " rows" : " cols");
    }
}

/* y[t][r] = W x[t] + bias[r] in double, and the bound of each (see the file's comment). */
static void ref_product(const struct tw *t, const float *x, int n, const float *bias, double *y,
                        double *bound)
{
    const int64_t R = t->h.rows, C = t->h.cols;
    for (int i = 0; i < n; i++)
        for (int64_t r = 0; r < R; r++) {
            double s = bias ? bias[r] : 0, m = bias ? fabs(bias[r]) : 0;
            for (int64_t c = 0; c < C; c++) {
                s += (double)t->ref[r * C + c] * x[(int64_t)i * C + c];
                m += (double)t->mag[r * C + c] * fabs(x[(int64_t)i * C + c]);
            }
            y[(int64_t)i * R + r] = s;
            bound[(int64_t)i * R + r] = (double)(C + 8) * EPS32 * m + 1e-30;
        }
}

static void check_product(const char *op, const struct tw *t, const char *shape, const float *dy,
                          const double *ref, const double *bound, int64_t count)
{
    float *y = malloc((size_t)count * sizeof(float));
    assert_non_null(y);
    dget(y, dy, (size_t)count * sizeof(float));
    struct worst w;
    worst_init(&w);
    for (int64_t i = 0; i < count; i++)
        worst_add(&w, i, ref[i], y[i], bound[i]);
    report(op, t->name, shape, &w);
    free(y);
}

/* One weight at n rows through every launcher that takes it. */
static void products_case(const struct tw *t, int n, int sms, int *counter)
{
    const int64_t R = t->h.rows, C = t->h.cols;
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lld, %d rows", (long long)R, (long long)C, n);
    float *x = malloc((size_t)(n * C) * sizeof(float)), *bias = malloc((size_t)R * sizeof(float));
    double *ref = malloc((size_t)(n * R) * sizeof(double)),
           *bd = malloc((size_t)(n * R) * sizeof(double));
    assert_true(x && bias && ref && bd);
    fill(x, n * C, -2, 2);
    fill(bias, R, -1, 1);
    ref_product(t, x, n, bias, ref, bd);
    float *dx = dput(x, (size_t)(n * C) * sizeof(float)),
          *db = dput(bias, (size_t)R * sizeof(float));
    float *dy = dpoison((size_t)(n * R));

    if (t->d.fmt > CU_W_AFFINE) {
        LAUNCH(cellm_cu_mvq(&t->d, dx, C, n, dy, R, db, NULL));
        check_product("mvq", t, shape, dy, ref, bd, n * R);
    } else {
        LAUNCH(cellm_cu_matvec(&t->d, dx, C, n, dy, R, db, NULL));
        check_product("matvec", t, shape, dy, ref, bd, n * R);
    }

    for (int tiled = 0; tiled < 2; tiled++) {
        const struct cu_weight *w = tiled ? &t->dt : &t->d;
        if (tiled && !t->dt.fmt) continue;
        for (int mma = 0; mma < 2; mma++) {
            if (!cellm_cu_mv_supported(w, n, 0)) break;
            if (mma && !(w->fmt == CU_W_AFFINE && w->bits == 4 && n <= 2) &&
                !(w->fmt >= CU_W_MXFP4 && w->fmt <= CU_W_FP8BLK))
                break;
            /* FP8/MX codes: the second pass (mma 1) takes the element-wise decoding of
             * option qdecode=0 instead of the tensor cores, which do not take them */
            const int qold = mma && w->fmt >= CU_W_MXFP4 && w->fmt <= CU_W_FP8BLK;
            struct cu_mv_op op = {.w = {w},
                                  .nw = 1,
                                  .x = dx,
                                  .ldx = C,
                                  .n = n,
                                  .y = {dy},
                                  .ldy = {R},
                                  .bias = {db},
                                  .epi = CU_EPI_STORE,
                                  .norm_kind = -1,
                                  .mma = mma && !qold,
                                  .counter = counter,
                                  .qold = qold};
            assert_int_equal(cudaMemset(dy, 0xff, (size_t)(n * R) * sizeof(float)), cudaSuccess);
            LAUNCH(cellm_cu_mv(&op, sms, NULL));
            check_product(qold  ? "mv qdecode=0"
                          : mma ? (tiled ? "mv mma tiled" : "mv mma")
                                : (tiled ? "mv tiled" : "mv"),
                          t, shape, dy, ref, bd, n * R);
        }
        if (cellm_cu_gemm_supported(w, C)) {
            int64_t cap =
                (int64_t)CU_GEMM_KS_MAX * (n < CU_GEMM_SPLIT_ROWS ? n : CU_GEMM_SPLIT_ROWS) * R;
            float *part = dpoison((size_t)cap);
            struct cu_gemm_op op = {.w = {w},
                                    .nw = 1,
                                    .x = dx,
                                    .ldx = C,
                                    .n = n,
                                    .y = {dy},
                                    .ldy = {R},
                                    .bias = {db},
                                    .part = part,
                                    .part_cap = cap,
                                    .sms = sms};
            assert_int_equal(cudaMemset(dy, 0xff, (size_t)(n * R) * sizeof(float)), cudaSuccess);
            LAUNCH(cellm_cu_gemm(&op, NULL));
            check_product(tiled ? "gemm tiled" : "gemm", t, shape, dy, ref, bd, n * R);
            cudaFree(part);
        }
    }

    /* the fused norm prologue (RMS): y = W norm(x) + bias, and, separately (cellm_cu_mv
     * takes one or the other, as the forward uses them: the prologue before q/k/v and
     * gate/up, the add after o and down), the residual epilogue: y0 += W x + bias */
    if (cellm_cu_mv_supported(&t->d, n, 1)) {
        float *nw = malloc((size_t)C * sizeof(float)),
              *xn = malloc((size_t)(n * C) * sizeof(float));
        float *y0 = malloc((size_t)(n * R) * sizeof(float));
        assert_true(nw && xn && y0);
        fill(nw, C, 0.5f, 1.5f);
        fill(y0, n * R, -4, 4);
        struct cellm_vec v = {CELLM_W_F32, C, (const uint8_t *)nw};
        for (int i = 0; i < n; i++)
            cellm_op_norm(CELLM_NORM_RMS, 1e-5f, &v, NULL, x + (int64_t)i * C, xn + (int64_t)i * C,
                          C);
        ref_product(t, xn, n, bias, ref, bd);
        /* the GPU forms the norm itself (statistics in double, a few roundings per
         * value): twice the product's bound covers it */
        for (int64_t i = 0; i < n * R; i++)
            bd[i] = 2 * bd[i];
        float *dnw = dput(nw, (size_t)C * sizeof(float));
        struct cu_mv_op op = {.w = {&t->d},
                              .nw = 1,
                              .x = dx,
                              .ldx = C,
                              .n = n,
                              .y = {dy},
                              .ldy = {R},
                              .bias = {db},
                              .epi = CU_EPI_STORE,
                              .norm_kind = 0,
                              .norm_w = dnw,
                              .norm_eps = 1e-5f,
                              .mma = 1,
                              .counter = counter};
        LAUNCH(cellm_cu_mv(&op, sms, NULL));
        check_product("mv norm", t, shape, dy, ref, bd, n * R);
        /* the add epilogue rounds once more */
        ref_product(t, x, n, bias, ref, bd);
        for (int64_t i = 0; i < n * R; i++) {
            ref[i] += y0[i];
            bd[i] += 2 * EPS32 * fabs(ref[i]);
        }
        assert_int_equal(
            cudaMemcpy(dy, y0, (size_t)(n * R) * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
        op.epi = CU_EPI_ADD;
        op.norm_kind = -1;
        op.norm_w = NULL;
        LAUNCH(cellm_cu_mv(&op, sms, NULL));
        check_product("mv add", t, shape, dy, ref, bd, n * R);
        cudaFree(dnw);
        free(nw);
        free(xn);
        free(y0);
    }
    cudaFree(dx);
    cudaFree(db);
    cudaFree(dy);
    free(x);
    free(bias);
    free(ref);
    free(bd);
}

/* Two weights sharing x: matvec_multi, and the fused GLU epilogue (silu(g+bg) * (u+bu)). */
static void products_pair(const struct tw *g, const struct tw *u, int n, int sms, int *counter)
{
    const int64_t R = g->h.rows, C = g->h.cols;
    char shape[64];
    snprintf(shape, sizeof shape, "2x %lldx%lld, %d rows", (long long)R, (long long)C, n);
    float *x = malloc((size_t)(n * C) * sizeof(float));
    double *rg = malloc((size_t)(n * R) * sizeof(double)),
           *ru = malloc((size_t)(n * R) * sizeof(double));
    double *bg = malloc((size_t)(n * R) * sizeof(double)),
           *bu = malloc((size_t)(n * R) * sizeof(double));
    assert_true(x && rg && ru && bg && bu);
    fill(x, n * C, -2, 2);
    ref_product(g, x, n, NULL, rg, bg);
    ref_product(u, x, n, NULL, ru, bu);
    float *dx = dput(x, (size_t)(n * C) * sizeof(float));
    float *dg = dpoison((size_t)(n * R)), *du = dpoison((size_t)(n * R));
    const struct cu_weight *ws[2] = {&g->d, &u->d};
    float *ys[2] = {dg, du};
    int64_t ld[2] = {R, R};
    if (g->d.fmt <= CU_W_AFFINE) {
        LAUNCH(cellm_cu_matvec_multi(ws, 2, dx, C, n, ys, ld, NULL, NULL));
        check_product("matvec multi[0]", g, shape, dg, rg, bg, n * R);
        check_product("matvec multi[1]", u, shape, du, ru, bu, n * R);
    }
    if (cellm_cu_mv_supported(&g->d, n, 0)) {
        struct cu_mv_op op = {.w = {&g->d, &u->d},
                              .nw = 2,
                              .x = dx,
                              .ldx = C,
                              .n = n,
                              .y = {dg},
                              .ldy = {R},
                              .epi = CU_EPI_GLU,
                              .act = 0,
                              .norm_kind = -1,
                              .mma = 1,
                              .counter = counter};
        assert_int_equal(cudaMemset(dg, 0xff, (size_t)(n * R) * sizeof(float)), cudaSuccess);
        LAUNCH(cellm_cu_mv(&op, sms, NULL));
        /* silu(g) * u: its error from g's and u's (|silu'| < 1.1) plus a few roundings */
        for (int64_t i = 0; i < n * R; i++) {
            double sg = rg[i] / (1 + exp(-rg[i]));
            double b = 1.1 * bg[i] * fabs(ru[i]) + fabs(sg) * bu[i] + 16 * EPS32 * fabs(sg * ru[i]);
            rg[i] = sg * ru[i];
            bg[i] = b + 1e-30;
        }
        check_product("mv glu", g, shape, dg, rg, bg, n * R);
    }
    cudaFree(dx);
    cudaFree(dg);
    cudaFree(du);
    free(x);
    free(rg);
    free(ru);
    free(bg);
    free(bu);
}

/* Dequantization and the embedding: exactly cellm_weight_row (times the scale, rounded). */
static void dequant_case(const struct tw *t)
{
    const int64_t R = t->h.rows, C = t->h.cols;
    float *d = dpoison((size_t)(R * C)), *y = malloc((size_t)(R * C) * sizeof(float));
    assert_non_null(y);
    struct worst w;
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)R, (long long)C);
    if (t->d.fmt != CU_W_F32) {
        LAUNCH(cellm_cu_dequant(&t->d, 0, R, d, NULL));
        dget(y, d, (size_t)(R * C) * sizeof(float));
        worst_init(&w);
        for (int64_t i = 0; i < R * C; i++)
            worst_add(&w, i, t->ref[i], y[i], 1e-300); /* exact */
        report("dequant", t->name, shape, &w);
    }
    struct cu_row rows[5];
    int32_t tok[5] = {0, (int32_t)R - 1, 3, 3, (int32_t)(R / 2)};
    for (int i = 0; i < 5; i++)
        rows[i] = (struct cu_row){.token = tok[i]};
    struct cu_row *dr = dput(rows, sizeof rows);
    const float scale = 2.6457513f;
    assert_int_equal(cudaMemset(d, 0xff, (size_t)(5 * C) * sizeof(float)), cudaSuccess);
    LAUNCH(cellm_cu_embed(&t->d, dr, 5, scale, d, NULL));
    dget(y, d, (size_t)(5 * C) * sizeof(float));
    worst_init(&w);
    for (int i = 0; i < 5; i++)
        for (int64_t c = 0; c < C; c++)
            worst_add(&w, i * C + c, t->ref[tok[i] * C + c] * scale, y[i * C + c], 1e-300);
    report("embed", t->name, shape, &w);
    cudaFree(dr);
    cudaFree(d);
    free(y);
}

static void t_products(void **state)
{
    (void)state;
    int sms = 0;
    if (!device_or_skip(&sms)) skip();
    int *counter = dput(NULL, 2 * sizeof(int));
    assert_int_equal(cudaMemset(counter, 0, 2 * sizeof(int)), cudaSuccess);
    static const int rows_n[] = {1, 2, 3, 8, 17, 31, 32, 40};
    struct {
        int fmt, bits, group, s_bf16;
    } fmts[] = {{CU_W_F32, 0, 0, 0},     {CU_W_F16, 0, 0, 0},      {CU_W_BF16, 0, 0, 0},
                {CU_W_AFFINE, 2, 64, 1}, {CU_W_AFFINE, 3, 64, 0},  {CU_W_AFFINE, 4, 64, 1},
                {CU_W_AFFINE, 4, 32, 0}, {CU_W_AFFINE, 4, 128, 1}, {CU_W_AFFINE, 5, 64, 1},
                {CU_W_AFFINE, 6, 64, 0}, {CU_W_AFFINE, 8, 64, 1},  {CU_W_AFFINE, 8, 32, 0}};
    int n_before = n_fail;
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        struct tw t;
        tw_make(&t, fmts[f].fmt, fmts[f].bits, fmts[f].group, fmts[f].s_bf16, 80, 512);
        for (size_t k = 0; k < sizeof rows_n / sizeof rows_n[0]; k++)
            products_case(&t, rows_n[k], sms, counter);
        dequant_case(&t);
        tw_free(&t);
    }
    /* 4-bit weights of CU_RING_COLS columns or more: the decode products read them from
     * registers, not through the cp.async ring */
    for (int s = 0; s < 2; s++) {
        struct tw t;
        tw_make(&t, CU_W_AFFINE, 4, 64, s, 32, CU_RING_COLS);
        for (int n = 1; n <= 3; n++)
            products_case(&t, n, sms, counter);
        tw_free(&t);
    }
    /* the formats of docs/formats.md; FP8 blocks that do not divide the matrix, narrower
     * than a piece of 16 columns, and row views (r_off) as fused projections make them */
    /* GPTQ/AWQ in both device layouts (the row one where it applies, and the input-major
     * one of option qdecode=0) */
    for (size_t f = 0; f < N_Q_CASES; f++) {
        int again = 1; /* the input-major layout too, where the row one was taken */
        for (int rowmaj = 1; rowmaj >= 0 && again; rowmaj--) {
            struct tw t;
            tw_make_q(&t, &q_cases[f], rowmaj);
            again = t.d.rowmaj;
            for (size_t k = 0; k < sizeof rows_n / sizeof rows_n[0]; k++)
                products_case(&t, rows_n[k], sms, counter);
            dequant_case(&t);
            tw_free(&t);
        }
    }
    /* GLU pairs: mxfp4, FP8 blocks, GPTQ 4-bit and 8-bit and AWQ in the row layout */
    static const int glu_q[] = {0, 3, 7, 10, 13};
    for (size_t f = 0; f < sizeof glu_q / sizeof glu_q[0]; f++) {
        struct tw g, u;
        tw_make_q(&g, &q_cases[glu_q[f]], 1);
        tw_make_q(&u, &q_cases[glu_q[f]], 1);
        for (int n = 1; n <= 8; n *= 2)
            products_pair(&g, &u, n, sms, counter);
        tw_free(&g);
        tw_free(&u);
    }
    for (int f = 0; f < 3; f++) { /* pairs: q4, q8, bf16 */
        struct tw g, u;
        int fmt = f == 2 ? CU_W_BF16 : CU_W_AFFINE, bits = f == 0 ? 4 : 8;
        tw_make(&g, fmt, bits, 64, 1, 48, 256);
        tw_make(&u, fmt, bits, 64, 1, 48, 256);
        for (int n = 1; n <= 8; n *= 2)
            products_pair(&g, &u, n, sms, counter);
        tw_free(&g);
        tw_free(&u);
    }
    cudaFree(counter);
    if (n_fail > n_before)
        fail_msg("%d of the product cases failed (lines with FAIL)", n_fail - n_before);
}

/* ---- row and elementwise ops -------------------------------------------------------------- */

static void t_elementwise(void **state)
{
    (void)state;
    int sms = 0;
    if (!device_or_skip(&sms)) skip();
    int n_before = n_fail;
    char shape[64];
    struct worst w;
    /* norms: RMS, RMS (1+w), LayerNorm with bias; with and without the residual add */
    for (int kind = 0; kind < 3; kind++)
        for (int add = 0; add < 2; add++) {
            const int n = 5, dim = 576;
            float *x = malloc(n * dim * sizeof(float)), *a = malloc(n * dim * sizeof(float));
            float *wt = malloc(dim * sizeof(float)), *b = malloc(dim * sizeof(float));
            float *ref = malloc(n * dim * sizeof(float)), *y = malloc(n * dim * sizeof(float));
            assert_true(x && a && wt && b && ref && y);
            fill(x, n * dim, -3, 3);
            fill(a, n * dim, -1, 1);
            fill(wt, dim, -1.5f, 1.5f);
            fill(b, dim, -0.5f, 0.5f);
            struct cellm_vec vw = {CELLM_W_F32, dim, (const uint8_t *)wt};
            struct cellm_vec vb = {CELLM_W_F32, dim, (const uint8_t *)b};
            float *xs = malloc(n * dim * sizeof(float));
            assert_non_null(xs);
            for (int i = 0; i < n * dim; i++)
                xs[i] = add ? x[i] + a[i] : x[i];
            for (int i = 0; i < n; i++)
                cellm_op_norm((enum cellm_norm_kind)kind, 1e-6f, &vw, kind == 2 ? &vb : NULL,
                              xs + i * dim, ref + i * dim, dim);
            float *dx = dput(x, n * dim * sizeof(float)), *da = dput(a, n * dim * sizeof(float));
            float *dw = dput(wt, dim * sizeof(float)), *dbb = dput(b, dim * sizeof(float));
            float *dout = dpoison(n * dim);
            struct cu_norm_args na = {.x = dx,
                                      .add = add ? da : NULL,
                                      .out = dout,
                                      .w = dw,
                                      .b = kind == 2 ? dbb : NULL,
                                      .n = n,
                                      .dim = dim,
                                      .kind = kind,
                                      .eps = 1e-6f};
            LAUNCH(cellm_cu_norm(&na, NULL));
            dget(y, dout, n * dim * sizeof(float));
            worst_init(&w);
            /* the statistics are summed in another order: dim terms of relative error */
            for (int i = 0; i < n * dim; i++)
                worst_add(&w, i, ref[i], y[i],
                          ((double)dim * EPS32 + 4 * EPS32) * fmax(1, fabs(ref[i])));
            snprintf(shape, sizeof shape, "%dx%d%s", n, dim, add ? ", residual add" : "");
            report("norm", kind == 0 ? "rms" : kind == 1 ? "rms(1+w)" : "layernorm", shape, &w);
            if (add) { /* x += add, written back */
                dget(y, dx, n * dim * sizeof(float));
                worst_init(&w);
                for (int i = 0; i < n * dim; i++)
                    worst_add(&w, i, xs[i], y[i], 1e-300);
                report("norm residual", "f32", shape, &w);
            }
            cudaFree(dx);
            cudaFree(da);
            cudaFree(dw);
            cudaFree(dbb);
            cudaFree(dout);
            free(x), free(a), free(wt), free(b), free(ref), free(y), free(xs);
        }
    /* GLU with biases, each activation; soft-cap; add; add_bias */
    {
        const int n = 3, m = 1000;
        float *g = malloc(n * m * sizeof(float)), *u = malloc(n * m * sizeof(float));
        float *bg = malloc(m * sizeof(float)), *bu = malloc(m * sizeof(float));
        float *ref = malloc(n * m * sizeof(float)), *y = malloc(n * m * sizeof(float));
        assert_true(g && u && bg && bu && ref && y);
        fill(bg, m, -1, 1);
        fill(bu, m, -1, 1);
        for (int act = 0; act < 3; act++) {
            fill(g, n * m, -8, 8);
            fill(u, n * m, -3, 3);
            float *dg = dput(g, n * m * sizeof(float)), *du = dput(u, n * m * sizeof(float));
            float *dbg = dput(bg, m * sizeof(float)), *dbu = dput(bu, m * sizeof(float));
            LAUNCH(cellm_cu_glu(dg, du, n, m, dbg, dbu, act, NULL));
            dget(y, dg, n * m * sizeof(float));
            float *uu = malloc(n * m * sizeof(float));
            assert_non_null(uu);
            for (int i = 0; i < n * m; i++) {
                ref[i] = g[i] + bg[i % m];
                uu[i] = u[i] + bu[i % m];
            }
            cellm_op_glu((enum cellm_act)act, ref, uu, n * m);
            worst_init(&w);
            /* libm against CUDA's erff/tanhf/expf: a few ulps of the terms. GELU's
             * 1 + erf(..) (or 1 + tanh(..)) cancels for negative gates: an ulp of erf there
             * is relative to g * u, not to the small result */
            for (int i = 0; i < n * m; i++)
                worst_add(
                    &w, i, ref[i], y[i],
                    16 * EPS32 *
                        fmax(fmax(fabs(ref[i]), fabs((double)(g[i] + bg[i % m]) * uu[i])), 1e-3));
            snprintf(shape, sizeof shape, "%dx%d, biases", n, m);
            report("glu", act == 0 ? "silu" : act == 1 ? "gelu-tanh" : "gelu-erf", shape, &w);
            cudaFree(dg), cudaFree(du), cudaFree(dbg), cudaFree(dbu);
            free(uu);
        }
        fill(g, n * m, -100, 100);
        float *dg = dput(g, n * m * sizeof(float));
        LAUNCH(cellm_cu_softcap(dg, (int64_t)n * m, 30.0f, NULL));
        dget(y, dg, n * m * sizeof(float));
        memcpy(ref, g, n * m * sizeof(float));
        cellm_op_softcap(ref, n * m, 30.0f);
        worst_init(&w);
        for (int i = 0; i < n * m; i++)
            worst_add(&w, i, ref[i], y[i], 16 * EPS32 * fmax(fabs(ref[i]), 1e-3));
        report("softcap", "f32", "3000, c=30", &w);
        fill(g, n * m, -5, 5);
        fill(u, n * m, -5, 5);
        assert_int_equal(cudaMemcpy(dg, g, n * m * sizeof(float), cudaMemcpyHostToDevice),
                         cudaSuccess);
        float *du = dput(u, n * m * sizeof(float)), *dbg = dput(bg, m * sizeof(float));
        LAUNCH(cellm_cu_add(dg, du, (int64_t)n * m, NULL));
        dget(y, dg, n * m * sizeof(float));
        worst_init(&w);
        for (int i = 0; i < n * m; i++)
            worst_add(&w, i, g[i] + u[i], y[i], 1e-300);
        report("add", "f32", "3000", &w);
        LAUNCH(cellm_cu_add_bias(du, m, n, m, dbg, NULL));
        dget(y, du, n * m * sizeof(float));
        worst_init(&w);
        for (int i = 0; i < n * m; i++)
            worst_add(&w, i, u[i] + bg[i % m], y[i], 1e-300);
        report("add_bias", "f32", "3x1000", &w);
        cudaFree(dg), cudaFree(du), cudaFree(dbg);
        free(g), free(u), free(bg), free(bu), free(ref), free(y);
    }
    /* bf16 split: hi + mid + lo == x exactly */
    {
        const int n = 4, cols = 1024;
        float *x = malloc(n * cols * sizeof(float));
        uint16_t *p = malloc(3 * n * cols * sizeof(uint16_t));
        assert_true(x && p);
        for (int i = 0; i < n * cols; i++)
            x[i] = urand(-1, 1) * ldexpf(1.0f, (int)(rnd() % 40) - 20);
        float *dx = dput(x, n * cols * sizeof(float));
        uint16_t *dp = dput(NULL, 3 * n * cols * sizeof(uint16_t));
        LAUNCH(cellm_cu_split3(dx, cols, n, cols, dp, dp + n * cols, dp + 2 * n * cols, NULL));
        dget(p, dp, 3 * n * cols * sizeof(uint16_t));
        worst_init(&w);
        for (int i = 0; i < n * cols; i++) {
            double s = (double)cellm_bf16_to_f32(p[i]) + cellm_bf16_to_f32(p[n * cols + i]) +
                       cellm_bf16_to_f32(p[2 * n * cols + i]);
            worst_add(&w, i, x[i], s, 1e-300);
        }
        report("split3", "bf16x3", "4x1024", &w);
        cudaFree(dx), cudaFree(dp);
        free(x), free(p);
    }
    /* argmax: cellm_argmax's pick, ties to the lowest id included */
    {
        const int rows = 6, vocab = 151936;
        float *x = malloc((size_t)rows * vocab * sizeof(float));
        assert_non_null(x);
        fill(x, (int64_t)rows * vocab, -20, 20);
        x[(size_t)1 * vocab + 77] = x[(size_t)1 * vocab + 150000] = 50; /* a tie */
        x[(size_t)2 * vocab + vocab - 1] = 60;                          /* the last id */
        x[(size_t)3 * vocab + 0] = 60;                                  /* the first id */
        float *dx = dput(x, (size_t)rows * vocab * sizeof(float));
        int sc = cellm_cu_argmax_scratch();
        float *pv = dput(NULL, (size_t)rows * sc * sizeof(float));
        int *pi = dput(NULL, (size_t)rows * sc * sizeof(int));
        int32_t *did = dput(NULL, rows * sizeof(int32_t)), ids[6];
        LAUNCH(cellm_cu_argmax(dx, rows, vocab, pv, pi, did, NULL));
        dget(ids, did, sizeof ids);
        worst_init(&w);
        for (int r = 0; r < rows; r++)
            worst_add(&w, r, cellm_argmax(x + (size_t)r * vocab, vocab), ids[r], 1e-300);
        report("argmax", "f32", "6x151936", &w);
        cudaFree(dx), cudaFree(pv), cudaFree(pi), cudaFree(did);
        free(x);
    }
    if (n_fail > n_before)
        fail_msg("%d of the elementwise cases failed (lines with FAIL)", n_fail - n_before);
}

/* gpt-oss (docs/forward/gpt-oss.md): the clamped SwiGLU, interleaved (gate_up rows, stride 2,
 * into another buffer) and apart (in place), against cellm_op_swiglu_clamp; the router with
 * its bias, top-k then softmax over the k, against the CPU's selection and cellm_op_softmax
 * (the picks must be the same experts in the same order, ties to the lower index) */
static void t_gpt_oss(void **state)
{
    (void)state;
    int sms = 0;
    if (!device_or_skip(&sms)) skip();
    int n_before = n_fail;
    struct worst w;
    char shape[64];
    const float alpha = 1.702f, limit = 7.0f;
    for (int inter = 0; inter < 2; inter++) {
        const int n = 3, m = 1000, ld = inter ? 2 * m : m;
        float *g = malloc((size_t)n * ld * sizeof(float)),
              *u = malloc((size_t)n * ld * sizeof(float));
        float *ref = malloc((size_t)n * m * sizeof(float)),
              *y = malloc((size_t)n * m * sizeof(float));
        assert_true(g && u && ref && y);
        fill(g, (int64_t)n * ld, -12, 12); /* both clamps bite: |x| > 7 */
        fill(u, (int64_t)n * ld, -12, 12);
        float *dg = dput(g, (size_t)n * ld * sizeof(float)),
              *du = dput(u, (size_t)n * ld * sizeof(float));
        float *dout = inter ? dpoison((size_t)n * m) : dg;
        if (inter) { /* gate and up interleaved in one row: g's even and odd entries */
            LAUNCH(cellm_cu_swiglu_clamp(dg, dg + 1, ld, 2, dout, n, m, alpha, limit, NULL));
            for (int r = 0; r < n; r++)
                cellm_op_swiglu_clamp(g + (size_t)r * ld, g + (size_t)r * ld + 1, 2,
                                      ref + (size_t)r * m, m, alpha, limit);
        } else {
            LAUNCH(cellm_cu_swiglu_clamp(dg, du, ld, 1, dout, n, m, alpha, limit, NULL));
            cellm_op_swiglu_clamp(g, u, 1, ref, (int64_t)n * m, alpha, limit);
        }
        dget(y, dout, (size_t)n * m * sizeof(float));
        worst_init(&w);
        /* CUDA's expf against glibc's: a few ulps of the sigmoid */
        for (int i = 0; i < n * m; i++)
            worst_add(&w, i, ref[i], y[i], 16 * EPS32 * fmax(fabs(ref[i]), 1e-3));
        snprintf(shape, sizeof shape, "%dx%d, %s", n, m, inter ? "interleaved" : "apart, in place");
        report("swiglu_clamp", "f32", shape, &w);
        cudaFree(dg), cudaFree(du);
        if (inter) cudaFree(dout);
        free(g), free(u), free(ref), free(y);
    }
    {
        const int n = 7, E = 32, K = 4;
        float *x = malloc((size_t)n * E * sizeof(float)), *b = malloc(E * sizeof(float));
        float *wg = malloc((size_t)n * K * sizeof(float)),
              *wr = malloc((size_t)n * K * sizeof(float));
        int32_t *ig = malloc((size_t)n * K * sizeof(int32_t)),
                *ir = malloc((size_t)n * K * sizeof(int32_t));
        assert_true(x && b && wg && wr && ig && ir);
        fill(x, (int64_t)n * E, -4, 4);
        fill(b, E, -1, 1);
        b[5] = b[20] = 0.5f; /* row 2: a tie for the top pick between experts 5 and 20 */
        x[2 * E + 5] = x[2 * E + 20] = 9.0f;
        for (int i = 0; i < n; i++) {
            float p[32];
            for (int e = 0; e < E; e++)
                p[e] = x[i * E + e] + b[e];
            for (int k = 0; k < K; k++) {
                int best = -1;
                for (int e = 0; e < E; e++) {
                    int taken = 0;
                    for (int j = 0; j < k; j++)
                        taken |= ir[i * K + j] == e;
                    if (!taken && (best < 0 || p[e] > p[best])) best = e;
                }
                ir[i * K + k] = best;
                wr[i * K + k] = p[best];
            }
            cellm_op_softmax(wr + i * K, K);
        }
        float *dx = dput(x, (size_t)n * E * sizeof(float)), *db = dput(b, E * sizeof(float));
        float *dw = dpoison((size_t)n * K);
        int32_t *di = dput(NULL, (size_t)n * K * sizeof(int32_t));
        LAUNCH(cellm_cu_moe_route_topk(dx, db, n, E, K, 0, di, dw, NULL));
        dget(wg, dw, (size_t)n * K * sizeof(float));
        dget(ig, di, (size_t)n * K * sizeof(int32_t));
        worst_init(&w);
        for (int i = 0; i < n * K; i++)
            worst_add(&w, i, ir[i], ig[i], 1e-300);
        report("moe_route_topk", "experts", "7x32, top 4, bias, a tie", &w);
        worst_init(&w);
        for (int i = 0; i < n * K; i++)
            worst_add(&w, i, wr[i], wg[i], 16 * EPS32 * fmax(fabs(wr[i]), 1e-3));
        report("moe_route_topk", "weights", "7x32, top 4, bias, a tie", &w);
        cudaFree(dx), cudaFree(db), cudaFree(dw), cudaFree(di);
        free(x), free(b), free(wg), free(wr), free(ig), free(ir);
    }
    if (n_fail > n_before)
        fail_msg("%d of the gpt-oss cases failed (lines with FAIL)", n_fail - n_before);
}

/* Llama 4's MoE steps (cuda_l4.cu): each chosen expert's input is the token times its score
 * (one rounded product), and the experts' outputs are summed in ascending expert id (not rank
 * order) onto the shared expert's output, as the CPU's moe_sum_shared: both exact */
static void t_llama4_moe(void **state)
{
    (void)state;
    int sms = 0;
    if (!device_or_skip(&sms)) skip();
    int n_before = n_fail;
    struct worst w;
    const int n = 5, K = 3, dim = 300, m = 7; /* m of the n * K (token, rank) entries */
    static const int32_t map[7] = {0, 4, 5, 7, 9, 13, 14};
    static const int32_t idx[15] = {3, 1, 7, 0, 2, 5, 6, 4, 1, 2, 9, 8, 7, 3, 0};
    float *x = malloc((size_t)n * dim * sizeof(float)), *sw = malloc((size_t)n * K * sizeof(float));
    float *y = malloc((size_t)n * K * dim * sizeof(float)),
          *sh = malloc((size_t)n * dim * sizeof(float));
    float *got = malloc((size_t)n * K * dim * sizeof(float));
    assert_true(x && sw && y && sh && got);
    fill(x, (int64_t)n * dim, -3, 3);
    fill(sw, (int64_t)n * K, 0, 1);
    fill(y, (int64_t)n * K * dim, -2, 2);
    fill(sh, (int64_t)n * dim, -2, 2);
    float *dx = dput(x, (size_t)n * dim * sizeof(float)), *dsw = dput(sw, (size_t)n * K * 4);
    int32_t *dmap = dput(map, sizeof map), *didx = dput(idx, sizeof idx);
    float *dg = dpoison((size_t)m * dim);
    LAUNCH(cellm_cu_gather_rows_scaled(dx, dmap, dsw, K, m, dim, dg, NULL));
    dget(got, dg, (size_t)m * dim * sizeof(float));
    worst_init(&w);
    for (int j = 0; j < m; j++)
        for (int c = 0; c < dim; c++) {
            float ref = x[(size_t)(map[j] / K) * dim + c] * sw[map[j]];
            worst_add(&w, (int64_t)j * dim + c, ref, got[(size_t)j * dim + c], 1e-300);
        }
    report("gather_rows_scaled", "f32", "7 of 5x3 rows of 300", &w);
    float *dy = dput(y, (size_t)n * K * dim * sizeof(float)),
          *dsh = dput(sh, (size_t)n * dim * sizeof(float));
    LAUNCH(cellm_cu_moe_sum_shared(dy, didx, n, K, dim, dsh, NULL));
    dget(got, dsh, (size_t)n * dim * sizeof(float));
    worst_init(&w);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < dim; c++) {
            float acc = 0;
            int first = 1;
            for (int e = 0; e < 10; e++)
                for (int k = 0; k < K; k++)
                    if (idx[i * K + k] == e) {
                        float v = y[((size_t)i * K + k) * dim + c];
                        acc = first ? v : acc + v;
                        first = 0;
                    }
            float ref = sh[(size_t)i * dim + c] + acc;
            worst_add(&w, (int64_t)i * dim + c, ref, got[(size_t)i * dim + c], 1e-300);
        }
    report("moe_sum_shared", "f32", "5 rows, top 3 of 10, 300", &w);
    cudaFree(dx), cudaFree(dsw), cudaFree(dmap), cudaFree(didx), cudaFree(dg), cudaFree(dy);
    cudaFree(dsh);
    free(x), free(sw), free(y), free(sh), free(got);
    if (n_fail > n_before)
        fail_msg("%d of the Llama 4 MoE cases failed (lines with FAIL)", n_fail - n_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_products),
        cmocka_unit_test(t_elementwise),
        cmocka_unit_test(t_gpt_oss),
        cmocka_unit_test(t_llama4_moe),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_cuda_ops: %d cases, %d failed\n", n_cases, n_fail);
    return rc;
}
