/*
 * test_cuda_state.c: the CUDA executor's sequence-state kernels (src/exec/cuda/cuda_state.cu)
 * against the CPU's (src/exec/cpu/conv_state.c) on random inputs: the causal depthwise
 * conv over each row's sequence window, for LFM2 (B * x~ in, times C out) and Gated
 * DeltaNet (SiLU out), with the rows of two sequences interleaved in one launch (batched
 * equals alone), a decode step of one row, and the windows left behind.
 *
 * Gated DeltaNet's stages (q/k l2 norms and gates, the delta-rule recurrence, the gated
 * RMSNorm) against the CPU's operations on random inputs, two sequences interleaved.
 *
 * The conv and its window are the CPU's operation for operation (products and sums
 * separately rounded, in the same order), so outputs and windows must match bit for bit;
 * only SiLU's expf may differ from glibc's, by a few ulps. Skipped where no CUDA device is
 * present (CI); tests/gpu/run.sh runs it on the GPU machine.
 */
#include "cuda_ops_util.h"

#include "exec/cpu/seqstate.h"
#include "exec/cuda/cuda_int.h"
#include "model/weight.h"

enum { MODE_PLAIN, MODE_LFM2, MODE_SILU };
static const char *mode_name[] = {"plain", "lfm2", "silu"};

/* One launch over the rows seqs[0..n) (0 or 1: which of two sequences), against the CPU. */
static void conv_case(int mode, int K, int64_t C, const int *seqs, int n, int steps)
{
    const int64_t off = 7; /* the layer's window does not start the state buffer */
    const int64_t win = (int64_t)(K - 1) * C, stf = off + win + 3;
    const int64_t ldx = mode == MODE_LFM2 ? 3 * C : C + 5, ldy = C + 1;
    float *w = malloc((size_t)(C * K) * sizeof(float));
    float *st[2], *cpu_win[2];
    float *x = malloc((size_t)(n * ldx) * sizeof(float));
    float *y = malloc((size_t)(n * ldy) * sizeof(float));
    float *ref = malloc((size_t)(n * ldy) * sizeof(float));
    float *in = malloc((size_t)C * sizeof(float));
    assert_non_null(w);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(ref);
    assert_non_null(in);
    fill(w, C * K, -1, 1);
    struct cellm_vec wv = {CELLM_W_F32, C * K, (const uint8_t *)w};
    float *dw = dput(w, (size_t)(C * K) * sizeof(float));
    float *dst[2];
    for (int s = 0; s < 2; s++) {
        st[s] = malloc((size_t)stf * sizeof(float));
        assert_non_null(st[s]);
        fill(st[s], stf, -2, 2); /* a state left by earlier tokens */
        cpu_win[s] = st[s] + off;
        dst[s] = dput(st[s], (size_t)stf * sizeof(float));
    }
    struct cu_row *hr = calloc((size_t)n, sizeof *hr);
    assert_non_null(hr);
    for (int i = 0; i < n; i++) {
        hr[i].seq = seqs[i];
        hr[i].st = dst[seqs[i]];
    }
    struct cu_row *drows = dput(hr, (size_t)n * sizeof *hr);
    float *dx = dput(NULL, (size_t)(n * ldx) * sizeof(float));
    float *dy = dpoison((size_t)(n * ldy));
    for (int step = 0; step < steps; step++) { /* the state carries from step to step */
        fill(x, n * ldx, -3, 3);
        assert_int_equal(
            cudaMemcpy(dx, x, (size_t)(n * ldx) * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
        struct cu_conv_args a = {.x = mode == MODE_LFM2 ? dx + 2 * C : dx,
                                 .pre = mode == MODE_LFM2 ? dx : NULL,
                                 .post = mode == MODE_LFM2 ? dx + C : NULL,
                                 .ldx = ldx,
                                 .y = dy,
                                 .ldy = ldy,
                                 .w = dw,
                                 .K = K,
                                 .C = C,
                                 .rows = drows,
                                 .n = n,
                                 .off = off,
                                 .silu = mode == MODE_SILU};
        LAUNCH(cellm_cu_conv(&a, NULL));
        dget(y, dy, (size_t)(n * ldy) * sizeof(float));
        for (int i = 0; i < n; i++) { /* the CPU: rows in order, each on its sequence */
            const float *xi = x + i * ldx;
            for (int64_t k = 0; k < C; k++)
                in[k] = mode == MODE_LFM2 ? xi[k] * xi[2 * C + k] : xi[k];
            float *r = ref + i * ldy;
            cellm_cpu_conv_step(&wv, K, C, cpu_win[seqs[i]], in, r);
            for (int64_t k = 0; k < C; k++)
                if (mode == MODE_LFM2)
                    r[k] = xi[C + k] * r[k];
                else if (mode == MODE_SILU)
                    r[k] = r[k] / (1.0f + expf(-r[k]));
        }
        struct worst wo;
        worst_init(&wo);
        for (int i = 0; i < n; i++)
            for (int64_t k = 0; k < C; k++) {
                double rv = ref[i * ldy + k];
                worst_add(&wo, i * ldy + k, rv, y[i * ldy + k],
                          mode == MODE_SILU ? 8 * EPS32 * fabs(rv) : 0);
            }
        char shape[64];
        snprintf(shape, sizeof shape, "K %d C %lld rows %d step %d", K, (long long)C, n, step);
        report("conv", mode_name[mode], shape, &wo);
    }
    /* the windows (and the floats around them, untouched) */
    float *got = malloc((size_t)stf * sizeof(float));
    assert_non_null(got);
    for (int s = 0; s < 2; s++) {
        struct worst ww;
        worst_init(&ww);
        dget(got, dst[s], (size_t)stf * sizeof(float));
        for (int64_t k = 0; k < stf; k++)
            worst_add(&ww, k, st[s][k], got[k], 0);
        char shape[64];
        snprintf(shape, sizeof shape, "K %d C %lld seq %d window", K, (long long)C, s);
        report("conv state", mode_name[mode], shape, &ww);
        cudaFree(dst[s]);
        free(st[s]);
    }
    free(got);
    cudaFree(dw);
    cudaFree(drows);
    cudaFree(dx);
    cudaFree(dy);
    free(hr);
    free(w);
    free(x);
    free(y);
    free(ref);
    free(in);
}

static void t_conv(void **state)
{
    (void)state;
    int sms;
    if (!device_or_skip(&sms)) skip();
    static const int batch[] = {0, 1, 0, 0, 1, 1, 0}; /* two sequences interleaved */
    static const int one[] = {1};
    static const int prefill[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int mode = 0; mode < 3; mode++)
        for (int K = 1; K <= 4; K++) {
            conv_case(mode, K, 200, batch, 7, 2);
            conv_case(mode, K, 130, one, 1, 3);
            conv_case(mode, K, 300, prefill, 12, 1);
        }
    assert_int_equal(n_fail, 0);
}

/* ---- Gated DeltaNet -------------------------------------------------------------------- */

static float sigm(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* The QK, REC and NORM stages on n rows of two sequences (seqs[i]), against the CPU's
 * operations (src/exec/cpu/deltanet.c, restated here since its helpers are private). REC is
 * checked from the GPU's own QK outputs, so that expf's last ulp (the GPU's is not glibc's)
 * in the gates is the only difference that the recurrence carries. */
static void gdn_case(int nk, int nv, int dk, int dv, const int *seqs, int n, int steps)
{
    const int64_t kd = (int64_t)nk * dk, vd = (int64_t)nv * dv, ch = 2 * kd + vd;
    const int64_t off = 5, rec = (int64_t)nv * dk * dv, stf = off + rec;
    const float scale = (float)(1.0 / sqrt((double)dk)), eps = 1e-6f;
    float *u = malloc((size_t)(n * ch) * sizeof(float)), *u0 = malloc((size_t)(n * ch) * 4);
    float *b = malloc((size_t)(n * nv) * 4), *a = malloc((size_t)(n * nv) * 4);
    float *b0 = malloc((size_t)(n * nv) * 4), *a0 = malloc((size_t)(n * nv) * 4);
    float *z = malloc((size_t)(n * vd) * 4), *core = malloc((size_t)(n * vd) * 4);
    float *ref = malloc((size_t)(n * vd) * 4);
    float *alog = malloc((size_t)nv * 4), *dtb = malloc((size_t)nv * 4),
          *nw = malloc((size_t)dv * 4);
    float *st[2], *dstp[2], *got = malloc((size_t)stf * 4);
    assert_true(u && u0 && b && a && b0 && a0 && z && core && ref && alog && dtb && nw && got);
    fill(alog, nv, -1, 1);
    fill(dtb, nv, -1, 1);
    fill(nw, dv, 0.5f, 1.5f);
    float *dalog = dput(alog, (size_t)nv * 4), *ddtb = dput(dtb, (size_t)nv * 4);
    float *dnw = dput(nw, (size_t)dv * 4);
    for (int s = 0; s < 2; s++) {
        st[s] = malloc((size_t)stf * 4);
        assert_non_null(st[s]);
        fill(st[s], stf, -0.5f, 0.5f);
        dstp[s] = dput(st[s], (size_t)stf * 4);
    }
    struct cu_row *hr = calloc((size_t)n, sizeof *hr);
    assert_non_null(hr);
    for (int i = 0; i < n; i++)
        hr[i].st = dstp[seqs[i]];
    struct cu_row *drows = dput(hr, (size_t)n * sizeof *hr);
    float *du = dput(NULL, (size_t)(n * ch) * 4), *db = dput(NULL, (size_t)(n * nv) * 4);
    float *da = dput(NULL, (size_t)(n * nv) * 4), *dz = dput(NULL, (size_t)(n * vd) * 4);
    float *dcore = dpoison((size_t)(n * vd));
    char shape[80];
    for (int step = 0; step < steps; step++) {
        fill(u0, n * ch, -2, 2);
        fill(b0, n * nv, -3, 3);
        fill(a0, n * nv, -3, 3);
        fill(z, n * vd, -3, 3);
        assert_int_equal(cudaMemcpy(du, u0, (size_t)(n * ch) * 4, cudaMemcpyHostToDevice), 0);
        assert_int_equal(cudaMemcpy(db, b0, (size_t)(n * nv) * 4, cudaMemcpyHostToDevice), 0);
        assert_int_equal(cudaMemcpy(da, a0, (size_t)(n * nv) * 4, cudaMemcpyHostToDevice), 0);
        assert_int_equal(cudaMemcpy(dz, z, (size_t)(n * vd) * 4, cudaMemcpyHostToDevice), 0);
        struct cu_gdn_args g = {.conv_out = du,
                                .z = dz,
                                .b = db,
                                .a = da,
                                .core = dcore,
                                .a_log = dalog,
                                .dt_bias = ddtb,
                                .norm = dnw,
                                .rows = drows,
                                .n = n,
                                .nk = nk,
                                .nv = nv,
                                .dk = dk,
                                .dv = dv,
                                .off = off,
                                .scale = scale,
                                .eps = eps};
        LAUNCH(cellm_cu_gdn(&g, CU_GDN_QK, NULL));
        dget(u, du, (size_t)(n * ch) * 4);
        dget(b, db, (size_t)(n * nv) * 4);
        dget(a, da, (size_t)(n * nv) * 4);
        /* QK and the gates against the CPU's */
        struct worst wq, wg;
        worst_init(&wq);
        worst_init(&wg);
        for (int i = 0; i < n; i++) {
            float *x = u0 + i * ch;
            for (int part = 0; part < 2; part++)
                for (int gh = 0; gh < nk; gh++) {
                    float *h = x + (part ? kd : 0) + (int64_t)gh * dk;
                    double ss = 0;
                    for (int t = 0; t < dk; t++)
                        ss += (double)h[t] * h[t];
                    float r = 1.0f / sqrtf((float)ss + 1e-6f);
                    for (int t = 0; t < dk; t++) {
                        h[t] = h[t] * r;
                        if (!part) h[t] = h[t] * scale;
                    }
                }
            for (int64_t k = 0; k < ch; k++)
                worst_add(&wq, i * ch + k, x[k], u[i * ch + k], 8 * EPS32 * fabs(x[k]));
            for (int v = 0; v < nv; v++) {
                float bb = sigm(b0[i * nv + v]);
                float na = -expf(alog[v]), xx = a0[i * nv + v] + dtb[v];
                float sp = xx > 20.0f ? xx : log1pf(expf(xx));
                worst_add(&wg, i * nv + v, bb, b[i * nv + v], 4 * EPS32 * fabs(bb));
                worst_add(&wg, n * nv + i * nv + v, na * sp, a[i * nv + v],
                          8 * EPS32 * fabs(na * sp));
            }
        }
        snprintf(shape, sizeof shape, "nk %d nv %d dk %d dv %d rows %d", nk, nv, dk, dv, n);
        report("gdn qk", "f32", shape, &wq);
        report("gdn gates", "f32", shape, &wg);
        LAUNCH(cellm_cu_gdn(&g, CU_GDN_REC, NULL));
        LAUNCH(cellm_cu_gdn(&g, CU_GDN_NORM, NULL));
        dget(core, dcore, (size_t)(n * vd) * 4);
        /* the CPU's recurrence and gated norm from the GPU's q, k, beta and log-decay */
        struct worst wr;
        worst_init(&wr);
        float *mem = malloc((size_t)dv * 4), *bound = malloc((size_t)dv * 4);
        assert_true(mem && bound);
        for (int i = 0; i < n; i++)
            for (int v = 0; v < nv; v++) {
                const int kh = v / (nv / nk);
                const float *q = u + i * ch + (int64_t)kh * dk, *k = u + i * ch + kd + kh * dk;
                const float *val = u + i * ch + 2 * kd + (int64_t)v * dv;
                float *S = st[seqs[i]] + off + (int64_t)v * dk * dv;
                const float decay = expf(a[i * nv + v]), beta = b[i * nv + v];
                float *o = ref + i * vd + (int64_t)v * dv;
                for (int64_t x = 0; x < (int64_t)dk * dv; x++)
                    S[x] = S[x] * decay;
                for (int y = 0; y < dv; y++) {
                    mem[y] = 0;
                    for (int x = 0; x < dk; x++)
                        mem[y] = mem[y] + S[(int64_t)x * dv + y] * k[x];
                    mem[y] = (val[y] - mem[y]) * beta;
                }
                for (int y = 0; y < dv; y++) {
                    o[y] = 0;
                    bound[y] = 0;
                    for (int x = 0; x < dk; x++) {
                        float *sx = S + (int64_t)x * dv + y;
                        *sx = *sx + k[x] * mem[y];
                        o[y] = o[y] + *sx * q[x];
                        bound[y] += fabsf(*sx * q[x]);
                    }
                }
                double ss = 0;
                for (int y = 0; y < dv; y++)
                    ss += (double)o[y] * o[y];
                float rs = 1.0f / sqrtf((float)(ss / dv) + eps);
                const float *zz = z + i * vd + (int64_t)v * dv;
                for (int y = 0; y < dv; y++) {
                    float sz = zz[y] / (1.0f + expf(-zz[y]));
                    float r = nw[y] * (o[y] * rs) * sz;
                    /* decay's ulp (GPU expf) carried through S, then the norm's scale */
                    float bnd = (float)((16 + dk) * EPS32 * (bound[y] + fabsf(o[y])) *
                                            fabsf(rs * nw[y] * sz) +
                                        8 * EPS32 * fabsf(r));
                    o[y] = r;
                    worst_add(&wr, i * vd + v * dv + y, r, core[i * vd + v * dv + y], bnd);
                }
            }
        free(mem);
        free(bound);
        report("gdn rec+norm", "f32", shape, &wr);
    }
    for (int s = 0; s < 2; s++) { /* the states left behind */
        struct worst ws;
        worst_init(&ws);
        dget(got, dstp[s], (size_t)stf * 4);
        for (int64_t k = 0; k < stf; k++)
            worst_add(&ws, k, st[s][k], got[k], k < off ? 0 : 64 * EPS32 * (fabs(st[s][k]) + 1.0));
        snprintf(shape, sizeof shape, "nk %d nv %d dk %d dv %d seq %d", nk, nv, dk, dv, s);
        report("gdn state", "f32", shape, &ws);
        cudaFree(dstp[s]);
        free(st[s]);
    }
    void *dp[] = {dalog, ddtb, dnw, drows, du, db, da, dz, dcore};
    for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
        cudaFree(dp[i]);
    void *hp[] = {u, u0, b, a, b0, a0, z, core, ref, alog, dtb, nw, got, hr};
    for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++)
        free(hp[i]);
}

static void t_gdn(void **state)
{
    (void)state;
    int sms;
    if (!device_or_skip(&sms)) skip();
    static const int batch[] = {0, 1, 0, 0, 1}, one[] = {1};
    static const int prefill[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    gdn_case(2, 4, 32, 32, batch, 5, 3);
    gdn_case(2, 4, 32, 32, one, 1, 4);
    gdn_case(1, 2, 64, 48, prefill, 10, 2);
    gdn_case(4, 8, 128, 128, batch, 5, 2); /* a real head size */
    assert_int_equal(n_fail, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_conv),
        cmocka_unit_test(t_gdn),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_cuda_state: %d cases, %d failed\n", n_cases, n_fail);
    return rc;
}
