/*
 * cuda_ops_util.h: what the per-op CUDA tests (test_cuda_ops.c, test_cuda_attn.c) share:
 * random inputs, device buffers, and the worst-error report that names the op, the format,
 * the shape and the worst error against its bound.
 */
#ifndef CELLM_TESTS_CUDA_OPS_UTIL_H
#define CELLM_TESTS_CUDA_OPS_UTIL_H

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

#define EPS32 (1.0 / 16777216.0) /* 2^-24: half an f32 ulp at 1 */

static uint64_t rng = 0x243F6A8885A308D3ull;
static inline uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static inline float urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f;
}
static inline void fill(float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = urand(lo, hi);
}

static int n_fail, n_cases;

/* Worst error of a case against its bound: err / bound over every element. */
struct worst {
    double ratio, err, ref, got;
    int64_t at;
};
static inline void worst_init(struct worst *w)
{
    memset(w, 0, sizeof *w);
    w->at = -1;
}
static inline void worst_add(struct worst *w, int64_t i, double ref, double got, double bound)
{
    double e = fabs(got - ref);
    double r = e / (bound > 0 ? bound : 1e-300);
    if (got != got) r = INFINITY; /* NaN: never written, or computed NaN */
    if (r > w->ratio || w->at < 0) {
        w->ratio = r;
        w->err = e;
        w->ref = ref;
        w->got = got;
        w->at = i;
    }
}
/* Prints the case's line; counts a failure when the bound is exceeded. */
static inline void report(const char *op, const char *fmt, const char *shape, const struct worst *w)
{
    int ok = w->ratio <= 1.0;
    n_cases++;
    n_fail += !ok;
    printf("%s %-16s %-10s %-34s worst %.3g (%.3f of bound) at %lld: ref %.9g got %.9g\n",
           ok ? "ok  " : "FAIL", op, fmt, shape, w->err, w->ratio, (long long)w->at, w->ref,
           w->got);
}

/* ---- device helpers ------------------------------------------------------------------ */

static inline void *dput(const void *src, size_t n)
{
    void *p = NULL;
    assert_int_equal(cudaMalloc(&p, n ? n : 16), cudaSuccess);
    if (src) assert_int_equal(cudaMemcpy(p, src, n, cudaMemcpyHostToDevice), cudaSuccess);
    return p;
}
static inline float *dpoison(size_t n) /* n floats of NaN */
{
    float *p = dput(NULL, n * sizeof(float));
    assert_int_equal(cudaMemset(p, 0xff, n * sizeof(float)), cudaSuccess);
    return p;
}
static inline void dget(void *dst, const void *src, size_t n)
{
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), cudaSuccess);
}
#define LAUNCH(call)                                                                               \
    do {                                                                                           \
        int e_ = (call);                                                                           \
        if (e_) fail_msg("%s: %s", #call, cudaGetErrorString((cudaError_t)e_));                    \
    } while (0)

static inline int device_or_skip(int *sms)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return 0;
    struct cudaDeviceProp p;
    assert_int_equal(cudaGetDeviceProperties(&p, 0), cudaSuccess);
    *sms = p.multiProcessorCount;
    return 1;
}

#endif
