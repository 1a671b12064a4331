/*
 * cuda_matvec.cu: products of stored weights with f32 activations.
 *
 * Decode (a few rows) for 2/3/5/6-bit affine weights, and for every format with
 * option fuse=0 (cuda_mv.cuh serves the others by default, with coalesced pieces and
 * fused neighbours): one fused kernel per storage format reads each weight byte once,
 * widens or dequantizes it in registers and multiplies it with up to 8 activation rows.
 * A warp owns R weight rows; each lane streams 16-byte pieces of them (8 bf16/f16 values,
 * 32 4-bit or 16 8-bit codes, or one 32-code unit of `bits` words for the other widths),
 * so that the R rows share each activation load. Partial sums are reduced across the
 * warp at the end (any summation order is allowed; every weight value is exact).
 *
 * Affine values: w = fl(fl(s*q) + b). Since s is a 16-bit float (<= 11 significant bits)
 * and q < 256, s*q is exact in f32, so fmaf(s, q, b) rounds once, exactly like the
 * reference's multiply-then-add; the code q becomes a float through the 2^23 trick
 * (OR into the mantissa of 2^23, subtract 2^23), which is exact too.
 *
 * Prefill (many rows) goes through cuBLAS in cuda_mm.c; this file gives it the dequantized
 * tiles (cellm_cu_dequant) and the exact three-way bf16 split of activations
 * (cellm_cu_split3) used with BF16 weights.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_dev.cuh"

#define MV_THREADS 128
#define MV_WARPS (MV_THREADS / 32)

static __device__ __forceinline__ float bf16_lo(uint32_t w)
{
    return __uint_as_float(w << 16);
}
static __device__ __forceinline__ float bf16_hi(uint32_t w)
{
    return __uint_as_float(w & 0xffff0000u);
}
struct mv_args {
    struct cu_weight w[3];
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    const float *x;
    int64_t ldx;
};

/* elements per lane step */
template <int FMT, int BITS> struct step {
    static constexpr int CE = FMT == CU_W_AFFINE ? (BITS == 8 ? 16 : 32) : 8;
};

template <int FMT, int BITS, int NT, int R>
static __global__ void __launch_bounds__(MV_THREADS)
    k_matvec(const struct mv_args a)
{
    /* blockIdx.y picks one of up to three weights of one format sharing the input */
    /* constant indices only, so that the parameters stay out of local memory */
    const unsigned wi = blockIdx.y;
    const struct cu_weight w = wi == 0 ? a.w[0] : wi == 1 ? a.w[1] : a.w[2];
    float *__restrict__ y = wi == 0 ? a.y[0] : wi == 1 ? a.y[1] : a.y[2];
    const float *__restrict__ bias = wi == 0 ? a.bias[0] : wi == 1 ? a.bias[1] : a.bias[2];
    const int64_t ldy = wi == 0 ? a.ldy[0] : wi == 1 ? a.ldy[1] : a.ldy[2];
    const float *__restrict__ x = a.x;
    const int64_t ldx = a.ldx;
    constexpr int CE = step<FMT, BITS>::CE;
    constexpr int NW = FMT == CU_W_F32 ? 8 : FMT == CU_W_AFFINE && BITS != 4 && BITS != 8 ? BITS : 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t row0 = ((int64_t)blockIdx.x * MV_WARPS + warp) * R;
    if (row0 >= w.rows)
        return;
    const int64_t ng = FMT == CU_W_AFFINE ? w.cols / w.group : 1;
    const char *base[R];
    int64_t rix[R]; /* the rows (tiled 4-bit weights are read word by word, cu_q4_load) */
    const uint16_t *sp[R], *bp[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        int64_t rr = row0 + r < w.rows ? row0 + r : w.rows - 1;
        rix[r] = rr;
        base[r] = (const char *)w.data + rr * w.row_bytes;
        if (FMT == CU_W_AFFINE) {
            sp[r] = w.scales + rr * ng;
            bp[r] = w.biases + rr * ng;
        }
    }
    /* the weights depend on no earlier kernel: start pulling this warp's rows into L2
     * (up to 2 KB of each) while the previous kernel finishes, then wait for it */
    if (!w.tiled)
#pragma unroll
        for (int r = 0; r < R; r++)
            prefetch_l2(base[r], w.row_bytes < 2048 ? w.row_bytes : 2048, lane);
    pdl_wait();
    float acc[NT][R];
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < R; r++)
            acc[t][r] = 0.f;

#pragma unroll 4
    for (int64_t c = (int64_t)lane * CE; c < w.cols; c += 32 * CE) {
        uint32_t raw[R][NW];
        float s[R], b[R], ss[R][BITS == 4 ? 5 : 1];
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (FMT == CU_W_AFFINE && BITS != 4 && BITS != 8) {
                const uint32_t *p = (const uint32_t *)(base[r] + c / 32 * BITS * 4);
#pragma unroll
                for (int k = 0; k < NW; k++)
                    raw[r][k] = __ldg(p + k);
            } else if (FMT == CU_W_AFFINE && BITS == 4 && w.tiled) {
#pragma unroll
                for (int k = 0; k < NW; k++)
                    raw[r][k] = cu_q4_load(w, rix[r], c / 8 + k);
            } else {
                const char *p = base[r] + (FMT == CU_W_F32 ? c * 4
                                          : FMT == CU_W_AFFINE ? c * BITS / 8
                                                               : c * 2);
#pragma unroll
                for (int k = 0; k < NW / 4; k++) {
                    uint4 v = __ldg((const uint4 *)p + k);
                    raw[r][4 * k] = v.x;
                    raw[r][4 * k + 1] = v.y;
                    raw[r][4 * k + 2] = v.z;
                    raw[r][4 * k + 3] = v.w;
                }
            }
            if (FMT == CU_W_AFFINE) {
                int64_t g = c / w.group;
                s[r] = half16(__ldg(sp[r] + g), w.s_bf16);
                b[r] = half16(__ldg(bp[r] + g), w.s_bf16);
                if (BITS == 4) {
#pragma unroll
                    for (int j = 0; j < 5; j++)
                        ss[r][j] = __fmul_rn(s[r], __uint_as_float((uint32_t)(127 - 4 * j) << 23));
                }
            }
        }
#pragma unroll
        for (int p = 0; p < CE / 8; p++) {
            float xv[NT][8];
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 *xp = (const float4 *)(x + t * ldx + c + p * 8);
                float4 a = __ldg(xp), bb = __ldg(xp + 1);
                xv[t][0] = a.x, xv[t][1] = a.y, xv[t][2] = a.z, xv[t][3] = a.w;
                xv[t][4] = bb.x, xv[t][5] = bb.y, xv[t][6] = bb.z, xv[t][7] = bb.w;
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float wv[8];
                if (FMT == CU_W_F32) {
#pragma unroll
                    for (int k = 0; k < 8; k++)
                        wv[k] = __uint_as_float(raw[r][k]);
                } else if (FMT == CU_W_BF16) {
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        wv[2 * k] = bf16_lo(raw[r][k]);
                        wv[2 * k + 1] = bf16_hi(raw[r][k]);
                    }
                } else if (FMT == CU_W_F16) {
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        __half2 h = *(const __half2 *)&raw[r][k];
                        float2 f = __half22float2(h);
                        wv[2 * k] = f.x;
                        wv[2 * k + 1] = f.y;
                    }
                } else if (BITS == 4) {
                    /* code k is masked in place: 2^23 + q*2^(4k) is exact for 4k + 4 <= 23,
                     * and fmaf(s*2^-4k, q*2^4k, b) == fmaf(s, q, b) since both scalings are
                     * exact (a 16-bit float's scale times 2^-16 stays exact in f32, down to
                     * its subnormals: their last bit lands on 2^-149). Codes 5..7 are
                     * shifted down by 12 first (to bit 8, 12, 16). */
                    const uint32_t w0 = raw[r][p], w1 = w0 >> 12;
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        const uint32_t word = k < 5 ? w0 : w1;
                        const int sh = k < 5 ? 4 * k : 4 * k - 12;
                        const float q = __fsub_rn(__uint_as_float(0x4B000000u | (word & (15u << sh))),
                                                  8388608.0f);
                        wv[k] = fmaf(ss[r][sh / 4], q, b[r]);
                    }
                } else if (BITS == 8) {
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        uint32_t word = raw[r][2 * p + k / 4];
                        wv[k] = fmaf(s[r], code_f((word >> (8 * (k % 4))) & 255u), b[r]);
                    }
                } else {
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        constexpr uint32_t mask = (1u << BITS) - 1;
                        const int bit = (p * 8 + k) * BITS, wi = bit / 32, sh = bit % 32;
                        uint32_t v = raw[r][wi] >> sh;
                        if (sh + BITS > 32)
                            v |= raw[r][wi + 1] << (32 - sh);
                        wv[k] = fmaf(s[r], code_f(v & mask), b[r]);
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++)
#pragma unroll
                    for (int k = 0; k < 8; k++)
                        acc[t][r] = fmaf(wv[k], xv[t][k], acc[t][r]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = warp_sum(acc[t][r]);
            if (lane == 0 && row0 + r < w.rows) {
                if (bias)
                    v = __fadd_rn(v, bias[row0 + r]);
                y[t * ldy + row0 + r] = v;
            }
        }
}

template <int FMT, int BITS, int NT>
static int launch_nt(struct mv_args a, int nw, int t0, cudaStream_t st)
{
    constexpr int R = NT <= 2 ? 2 : 1;
    int64_t rows = 0;
    a.x += (int64_t)t0 * a.ldx;
    for (int i = 0; i < nw; i++) {
        a.y[i] += (int64_t)t0 * a.ldy[i];
        rows = a.w[i].rows > rows ? a.w[i].rows : rows;
    }
    int64_t blocks = (rows + MV_WARPS * R - 1) / (MV_WARPS * R);
    return cu_launch(k_matvec<FMT, BITS, NT, R>, dim3((unsigned)blocks, (unsigned)nw), dim3(MV_THREADS),
                     0, st, a);
}

template <int FMT, int BITS>
static int launch_fmt(const struct mv_args &a, int nw, int n, cudaStream_t st)
{
    for (int t0 = 0; t0 < n;) {
        int left = n - t0, e;
        if (left >= 8)
            e = launch_nt<FMT, BITS, 8>(a, nw, t0, st), left = 8;
        else if (left >= 4)
            e = launch_nt<FMT, BITS, 4>(a, nw, t0, st), left = 4;
        else if (left >= 2)
            e = launch_nt<FMT, BITS, 2>(a, nw, t0, st), left = 2;
        else
            e = launch_nt<FMT, BITS, 1>(a, nw, t0, st), left = 1;
        if (e)
            return e;
        t0 += left;
    }
    return 0;
}

extern "C" int cellm_cu_matvec_multi(const struct cu_weight *const *ws, int nw, const float *x,
                                     int64_t ldx, int n, float *const *ys, const int64_t *ldys,
                                     const float *const *biases, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    struct mv_args a = {};
    if (nw < 1 || nw > 3 || ldx % 4)
        return (int)cudaErrorInvalidValue;
    const struct cu_weight *w = ws[0];
    for (int i = 0; i < nw; i++) {
        const struct cu_weight *wi = ws[i];
        if (wi->fmt != w->fmt || wi->cols != w->cols || wi->bits != w->bits ||
            (wi->fmt == CU_W_AFFINE && wi->cols % 32) || wi->cols % 8)
            return (int)cudaErrorInvalidValue;
        a.w[i] = *wi;
        a.y[i] = ys[i];
        a.ldy[i] = ldys[i];
        a.bias[i] = biases ? biases[i] : NULL;
    }
    a.x = x;
    a.ldx = ldx;
    switch (w->fmt) {
    case CU_W_F32: return launch_fmt<CU_W_F32, 0>(a, nw, n, st);
    case CU_W_F16: return launch_fmt<CU_W_F16, 0>(a, nw, n, st);
    case CU_W_BF16: return launch_fmt<CU_W_BF16, 0>(a, nw, n, st);
    case CU_W_AFFINE:
        switch (w->bits) {
        case 2: return launch_fmt<CU_W_AFFINE, 2>(a, nw, n, st);
        case 3: return launch_fmt<CU_W_AFFINE, 3>(a, nw, n, st);
        case 4: return launch_fmt<CU_W_AFFINE, 4>(a, nw, n, st);
        case 5: return launch_fmt<CU_W_AFFINE, 5>(a, nw, n, st);
        case 6: return launch_fmt<CU_W_AFFINE, 6>(a, nw, n, st);
        case 8: return launch_fmt<CU_W_AFFINE, 8>(a, nw, n, st);
        }
    }
    return (int)cudaErrorInvalidValue;
}

extern "C" int cellm_cu_matvec(const struct cu_weight *w, const float *x, int64_t ldx, int n,
                               float *y, int64_t ldy, const float *bias, void *stream)
{
    return cellm_cu_matvec_multi(&w, 1, x, ldx, n, &y, &ldy, &bias, stream);
}

/* ---- widening for the GEMM path ------------------------------------------------------- */

static __global__ void k_dequant(const struct cu_weight w, int64_t r0, int64_t nr, float *out)
{
    pdl_wait();
    int64_t total = nr * w.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / w.cols, c = i % w.cols;
        out[i] = wload(w, r0 + r, c);
    }
}

/* 4-bit affine: one thread per word of 8 codes (row order or tiled), two float4 stores;
 * the same fl(fl(s*q)+b) per element as wload */
static __global__ void k_dequant_q4(const struct cu_weight w, int64_t r0, int64_t nr, float *out)
{
    pdl_wait();
    const int64_t rw = w.cols / 8, total = nr * rw, ng = w.cols / w.group;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = r0 + i / rw, wi = i % rw, g = r * ng + wi * 8 / w.group;
        const uint32_t word = cu_q4_load(w, r, wi);
        const float sc = half16(w.scales[g], w.s_bf16), bi = half16(w.biases[g], w.s_bf16);
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[k] = fmaf(sc, code_f((word >> (4 * k)) & 15u), bi);
        float4 *o = (float4 *)(out + i * 8);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
}

extern "C" int cellm_cu_dequant(const struct cu_weight *w, int64_t r0, int64_t nr, float *out,
                                void *stream)
{
    if (w->fmt == CU_W_AFFINE && w->bits == 4 && w->cols % 8 == 0 && w->row_bytes % 4 == 0 &&
        (uintptr_t)out % 16 == 0) {
        const int64_t words = nr * (w->cols / 8);
        int64_t blocks = (words + 255) / 256;
        if (blocks > 65536) blocks = 65536;
        return cu_launch(k_dequant_q4, dim3((unsigned)blocks), dim3(256), 0, (cudaStream_t)stream,
                         *w, r0, nr, out);
    }
    int64_t total = nr * w->cols;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65536)
        blocks = 65536;
    return cu_launch(k_dequant, dim3((unsigned)blocks), dim3(256), 0, (cudaStream_t)stream, *w, r0, nr, out);
}

static __device__ __forceinline__ uint16_t to_bf16(float f)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

static __global__ void k_split3(const float *x, int64_t ldx, int n, int64_t cols, uint16_t *hi,
                         uint16_t *mid, uint16_t *lo)
{
    pdl_wait();
    int64_t total = (int64_t)n * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / cols, c = i % cols;
        float v = x[t * ldx + c];
        uint16_t h = to_bf16(v);
        float r1 = __fsub_rn(v, __uint_as_float((uint32_t)h << 16));
        uint16_t m = to_bf16(r1);
        float r2 = __fsub_rn(r1, __uint_as_float((uint32_t)m << 16));
        hi[i] = h;
        mid[i] = m;
        lo[i] = to_bf16(r2);
    }
}

extern "C" int cellm_cu_split3(const float *x, int64_t ldx, int n, int64_t cols, uint16_t *hi,
                               uint16_t *mid, uint16_t *lo, void *stream)
{
    int64_t total = (int64_t)n * cols;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65536)
        blocks = 65536;
    return cu_launch(k_split3, dim3((unsigned)blocks), dim3(256), 0, (cudaStream_t)stream, x, ldx, n, cols, hi, mid, lo);
}

static __global__ void k_sum3(const float *p, int64_t rows, int n, float *y, int64_t ldy)
{
    pdl_wait();
    int64_t total = (int64_t)n * rows, part = total;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / rows, r = i % rows;
        y[t * ldy + r] = __fadd_rn(__fadd_rn(p[i], p[part + i]), p[2 * part + i]);
    }
}

extern "C" int cellm_cu_sum3(const float *p, int64_t rows, int n, float *y, int64_t ldy, void *stream)
{
    int64_t total = (int64_t)n * rows;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65536)
        blocks = 65536;
    return cu_launch(k_sum3, dim3((unsigned)blocks), dim3(256), 0, (cudaStream_t)stream, p, rows, n, y, ldy);
}

static __global__ void k_add_bias(float *y, int64_t ldy, int n, int64_t m, const float *bias)
{
    pdl_wait();
    int64_t total = (int64_t)n * m;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / m, r = i % m;
        y[t * ldy + r] = __fadd_rn(y[t * ldy + r], bias[r]);
    }
}

extern "C" int cellm_cu_add_bias(float *y, int64_t ldy, int n, int64_t m, const float *bias,
                                 void *stream)
{
    int64_t blocks = ((int64_t)n * m + 255) / 256;
    if (blocks > 65536)
        blocks = 65536;
    return cu_launch(k_add_bias, dim3((unsigned)blocks), dim3(256), 0, (cudaStream_t)stream, y, ldy, n, m, bias);
}
