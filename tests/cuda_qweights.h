/*
 * cuda_qweights.h: random weights in the stored forms of docs/formats.md (MXFP4, NVFP4,
 * MXFP8, FP8 blocks, GPTQ with and without g_idx, AWQ, and row views of them as fused
 * projections make them), with their values widened by cellm_weight_row, for the CUDA
 * tests: test_cuda_ops.c (every launcher on them), test_cuda_layout.c (their device
 * layout decoded on the host). Needs cuda_ops_util.h's random numbers first.
 */
#ifndef CELLM_TESTS_CUDA_QWEIGHTS_H
#define CELLM_TESTS_CUDA_QWEIGHTS_H

#include "base/half.h"
#include "exec/cuda/cuda_int.h"
#include "model/weight.h"

struct qw {
    struct cellm_weight h; /* the view */
    float *ref;            /* [rows][cols] widened by cellm_weight_row */
    float *mag;            /* |ref| */
    uint8_t *data, *sc, *zeros, *gidx;
    char name[48];
};

struct qspec {
    int fmt, bits, group;
    enum cellm_dtype sdt; /* FP8 blocks, GPTQ/AWQ scales */
    int block_rows;       /* FP8 blocks */
    int desc;             /* GPTQ g_idx: 0 none, 1 a permutation of i / group, 2 random groups */
    int zero_one;         /* GPTQ v1 */
    int64_t rows, cols;   /* the stored matrix */
    int64_t r0, nr;       /* the view: rows [r0, r0 + nr); nr 0 = all */
};

static inline uint8_t e4m3_code(void) /* any E4M3 code but NaN */
{
    uint8_t c;
    do
        c = (uint8_t)rnd();
    while ((c & 0x7f) == 0x7f);
    return c;
}

static inline void put_scale(uint8_t *p, enum cellm_dtype dt, float v)
{
    if (dt == CELLM_DT_F32) {
        memcpy(p, &v, 4);
    } else {
        uint16_t u = dt == CELLM_DT_BF16 ? cellm_f32_to_bf16(v) : cellm_f32_to_f16(v);
        memcpy(p, &u, 2);
    }
}

/* the stored host weight of q: t->h, its widened values t->ref and their magnitudes t->mag */
static inline void qw_make(struct qw *t, const struct qspec *q)
{
    memset(t, 0, sizeof *t);
    struct cellm_weight st = {0};
    const int64_t R = q->rows, C = q->cols;
    st.fmt = (enum cellm_wfmt)q->fmt;
    st.rows = R;
    st.cols = C;
    st.bits = q->bits;
    st.group = q->group;
    st.name = "test";
    const size_t es = q->sdt == CELLM_DT_F32 ? 4 : 2;
    switch (q->fmt) {
    case CU_W_MXFP4:
    case CU_W_NVFP4:
    case CU_W_MXFP8: {
        st.row_bytes = (size_t)C * (size_t)q->bits / 8;
        st.sdtype = CELLM_DT_U8;
        t->data = malloc((size_t)R * st.row_bytes);
        t->sc = malloc((size_t)(R * (C / q->group)));
        assert_true(t->data && t->sc);
        for (size_t i = 0; i < (size_t)R * st.row_bytes; i++)
            t->data[i] = q->fmt == CU_W_MXFP8 ? e4m3_code() : (uint8_t)rnd();
        for (int64_t g = 0; g < R * (C / q->group); g++)
            t->sc[g] = q->fmt == CU_W_NVFP4 ? (uint8_t)((0x20 + rnd() % 0x40) | (rnd() & 0x80))
                       : g % 97 == 5        ? 0 /* 2^-127, a float32 subnormal */
                                            : (uint8_t)(118 + rnd() % 13);
        st.scales = t->sc;
        snprintf(t->name, sizeof t->name, "%s",
                 q->fmt == CU_W_MXFP4   ? "mxfp4"
                 : q->fmt == CU_W_NVFP4 ? "nvfp4"
                                        : "mxfp8");
        break;
    }
    case CU_W_FP8BLK: {
        const int64_t sr = (R + q->block_rows - 1) / q->block_rows,
                      sc = (C + q->group - 1) / q->group;
        st.row_bytes = (size_t)C;
        st.sdtype = q->sdt;
        st.block_rows = q->block_rows;
        t->data = malloc((size_t)(R * C));
        t->sc = malloc((size_t)(sr * sc) * es);
        assert_true(t->data && t->sc);
        for (int64_t i = 0; i < R * C; i++)
            t->data[i] = e4m3_code();
        for (int64_t i = 0; i < sr * sc; i++) /* general f32 scales: the product rounds */
            put_scale(t->sc + (size_t)i * es, q->sdt, urand(0.0005f, 0.01f));
        st.scales = t->sc;
        snprintf(t->name, sizeof t->name, "fp8 b%dx%d %s", q->block_rows, q->group,
                 q->sdt == CELLM_DT_F32    ? "f32"
                 : q->sdt == CELLM_DT_BF16 ? "bf16"
                                           : "f16");
        break;
    }
    default: { /* GPTQ, AWQ */
        const int awq = q->fmt == CU_W_AWQ, pack = 32 / q->bits;
        const int64_t ng = C / q->group;
        const uint32_t mask = (1u << q->bits) - 1;
        st.sdtype = q->sdt;
        st.ld = R;
        st.ngroups = (int)ng;
        st.zero_one = q->zero_one;
        const size_t nq = (size_t)(R * C / pack), nz = (size_t)(ng * R / pack);
        t->data = malloc(nq * 4);
        t->zeros = malloc(nz * 4);
        t->sc = malloc((size_t)(ng * R) * es);
        assert_true(t->data && t->zeros && t->sc);
        for (size_t i = 0; i < nq; i++) {
            uint32_t v = rnd() ^ rnd() << 16;
            memcpy(t->data + 4 * i, &v, 4);
        }
        for (size_t i = 0; i < nz; i++) { /* any stored zero (v1: 2^bits - 1 means 2^bits) */
            uint32_t v = 0;
            for (int k = 0; k < pack; k++)
                v |= (rnd() & mask) << (q->bits * k);
            memcpy(t->zeros + 4 * i, &v, 4);
        }
        for (int64_t i = 0; i < ng * R; i++)
            put_scale(t->sc + (size_t)i * es, q->sdt, urand(0.002f, 0.03f));
        if (q->desc) {
            int32_t *g = malloc((size_t)C * 4);
            assert_non_null(g);
            for (int64_t i = 0; i < C; i++)
                g[i] = q->desc == 1 ? (int32_t)(i / q->group) : (int32_t)(rnd() % ng);
            for (int64_t i = C - 1; q->desc == 1 && i > 0; i--) { /* shuffled */
                int64_t j = rnd() % (i + 1);
                int32_t x = g[i];
                g[i] = g[j];
                g[j] = x;
            }
            t->gidx = (uint8_t *)g;
        }
        st.data = t->data;
        st.zeros = t->zeros;
        st.scales = t->sc;
        st.g_idx = t->gidx;
        snprintf(t->name, sizeof t->name, "%s%d g%d%s%s", awq ? "awq" : "gptq", q->bits, q->group,
                 q->desc == 1   ? " desc"
                 : q->desc == 2 ? " gidx"
                                : "",
                 q->zero_one ? " v1" : "");
        break;
    }
    }
    if (!st.data) st.data = t->data;
    t->h = q->nr ? cellm_weight_rows(&st, q->r0, q->nr) : st;
    if (q->nr) {
        size_t l = strlen(t->name);
        snprintf(t->name + l, sizeof t->name - l, " rows %lld+", (long long)q->r0);
    }
    const struct cellm_weight *h = &t->h;
    size_t n = (size_t)(h->rows * h->cols);
    t->ref = malloc(n * sizeof(float));
    t->mag = malloc(n * sizeof(float));
    assert_true(t->ref && t->mag);
    for (int64_t r = 0; r < h->rows; r++)
        cellm_weight_row(h, r, t->ref + r * h->cols);
    for (size_t i = 0; i < n; i++)
        t->mag[i] = fabsf(t->ref[i]); /* each weight is exact: the terms are w * x */
}

static inline void qw_free(struct qw *t)
{
    free(t->data);
    free(t->sc);
    free(t->zeros);
    free(t->gidx);
    free(t->ref);
    free(t->mag);
}

/* the cases both tests run: FP8 blocks that do not divide the matrix, narrower than a
 * piece of 16 columns, and row views (r_off) among them */
static const struct qspec q_cases[] = {
    {CU_W_MXFP4, 4, 32, CELLM_DT_U8, 0, 0, 0, 80, 512, 0, 0},
    {CU_W_NVFP4, 4, 16, CELLM_DT_U8, 0, 0, 0, 80, 512, 0, 0},
    {CU_W_MXFP8, 8, 32, CELLM_DT_U8, 0, 0, 0, 80, 512, 0, 0},
    {CU_W_FP8BLK, 8, 48, CELLM_DT_BF16, 32, 0, 0, 80, 512, 0, 0},
    {CU_W_FP8BLK, 8, 128, CELLM_DT_F32, 128, 0, 0, 80, 200, 0, 0},
    {CU_W_FP8BLK, 8, 40, CELLM_DT_F16, 16, 0, 0, 80, 512, 0, 0},
    {CU_W_FP8BLK, 8, 64, CELLM_DT_F32, 32, 0, 0, 96, 512, 20, 50},
    {CU_W_GPTQ, 4, 32, CELLM_DT_F16, 0, 0, 1, 80, 512, 0, 0},
    {CU_W_GPTQ, 4, 32, CELLM_DT_F16, 0, 1, 1, 80, 512, 0, 0},
    {CU_W_GPTQ, 4, 64, CELLM_DT_F16, 0, 2, 0, 80, 512, 0, 0},
    {CU_W_GPTQ, 8, 64, CELLM_DT_F16, 0, 0, 0, 80, 512, 0, 0},
    {CU_W_GPTQ, 8, 32, CELLM_DT_BF16, 0, 1, 1, 80, 256, 0, 0},
    {CU_W_GPTQ, 4, 128, CELLM_DT_F32, 0, 1, 1, 96, 512, 16, 48},
    {CU_W_AWQ, 4, 32, CELLM_DT_F16, 0, 0, 0, 80, 512, 0, 0},
    {CU_W_AWQ, 4, 64, CELLM_DT_F16, 0, 0, 0, 80, 256, 8, 48},
    /* F32 scales, no permutation: input-major (the fused kernels' bias would round) */
    {CU_W_GPTQ, 4, 64, CELLM_DT_F32, 0, 0, 0, 64, 256, 0, 0},
};
#define N_Q_CASES (sizeof q_cases / sizeof q_cases[0])

#endif
