/*
 * deltanet.c: the Gated DeltaNet operator of Qwen3-Next / Qwen3.5 on the CPU
 * (docs/forward/qwen3-next.md, "Linear-attention layers"), with each sequence's conv window
 * and recurrent states (seqstate.h).
 *
 * The delta rule runs as the per-token recurrence, for prefill as for decode: one value
 * head per task, every row of the batch in order, each row updating only its own
 * sequence's S. The reference's prefill uses the 64-token chunked form of the same
 * function; the two differ only by float32 rounding (the spec says why), and the
 * recurrence makes any split of a prompt into chunks give bitwise the same result.
 * Elementwise code rounds like the reference (the build has -ffp-contract=off).
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "seqstate.h"

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* torch.nn.functional.softplus with its threshold 20 */
static float softplusf(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));
}

/* x * rsqrt(sum(x^2) + 1e-6), the l2norm of transformers' delta-rule functions */
static void l2norm(float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)s + 1e-6f);
    for (int i = 0; i < n; i++)
        x[i] = x[i] * r;
}

struct gdn_job {
    const struct cellm_desc *d;
    int l, n;
    struct cellm_cpu_hyb *h;
};

/* Value heads [b, e) over all rows in order: decay, read, delta, write, read out. */
static void gdn_heads(void *arg, int ti, int tn)
{
    const struct gdn_job *j = arg;
    const struct cellm_config *c = &j->d->cfg;
    struct cellm_cpu_hyb *h = j->h;
    const int dk = c->lin_dk, dv = c->lin_dv, nv = c->lin_nv, r = nv / c->lin_nk;
    const int64_t kd = (int64_t)c->lin_nk * dk, ch = cellm_hybrid_channels(c);
    const int64_t vd = (int64_t)nv * dv;
    long b, e;
    cellm_split(nv, ti, tn, &b, &e);
    float mem[CELLM_CPU_GDN_MAX_DV];
    for (long v = b; v < e; v++) {
        const int kh = (int)(v / r);
        for (int i = 0; i < j->n; i++) {
            const float *u = h->proj + (size_t)i * ch; /* conv output: q, k, v */
            const float *q = u + (size_t)kh * dk, *k = u + kd + (size_t)kh * dk;
            const float *val = u + 2 * kd + (size_t)v * dv;
            float *S = h->row_st[i]->rec[j->l] + (size_t)v * dk * dv;
            const float decay = expf(h->a[(size_t)i * nv + v]);
            const float beta = h->b[(size_t)i * nv + v];
            float *o = h->core + (size_t)i * vd + (size_t)v * dv;
            for (int64_t x = 0; x < (int64_t)dk * dv; x++)
                S[x] = S[x] * decay;
            for (int y = 0; y < dv; y++)
                mem[y] = 0;
            for (int x = 0; x < dk; x++) {
                const float *Sx = S + (size_t)x * dv;
                for (int y = 0; y < dv; y++) {
                    float t = Sx[y] * k[x];
                    mem[y] = mem[y] + t;
                }
            }
            for (int y = 0; y < dv; y++)
                mem[y] = (val[y] - mem[y]) * beta; /* delta */
            for (int x = 0; x < dk; x++) {
                float *Sx = S + (size_t)x * dv;
                for (int y = 0; y < dv; y++) {
                    float t = k[x] * mem[y];
                    Sx[y] = Sx[y] + t;
                }
            }
            for (int y = 0; y < dv; y++)
                o[y] = 0;
            for (int x = 0; x < dk; x++) {
                const float *Sx = S + (size_t)x * dv;
                for (int y = 0; y < dv; y++) {
                    float t = Sx[y] * q[x];
                    o[y] = o[y] + t;
                }
            }
        }
    }
}

/* Row i's projections into the conv input [q | k | v], z, b and a (raw). */
static void gather(const struct cellm_config *c, struct cellm_cpu_hyb *h, int i)
{
    const int dk = c->lin_dk, dv = c->lin_dv, nk = c->lin_nk, nv = c->lin_nv, r = nv / nk;
    const int64_t kd = (int64_t)nk * dk, vd = (int64_t)nv * dv, ch = 2 * kd + vd;
    float *cin = h->conv + (size_t)i * ch, *z = h->z + (size_t)i * vd;
    float *bb = h->b + (size_t)i * nv, *aa = h->a + (size_t)i * nv;
    if (c->hybrid == CELLM_HYBRID_QWEN3_5) { /* plain concatenations */
        memcpy(cin, h->proj + (size_t)i * ch, (size_t)ch * sizeof(float));
        return; /* z, b, a were written by their own products */
    }
    /* Qwen3-Next: per key head g, [q_g, k_g, v (r heads), z (r heads)] and [b (r), a (r)] */
    const int64_t grp = 2 * dk + 2 * (int64_t)r * dv;
    const float *p = h->proj + (size_t)i * (2 * kd + 2 * vd);
    const float *ba = h->proj2 + (size_t)i * 2 * nv;
    for (int g = 0; g < nk; g++) {
        const float *pg = p + g * grp;
        memcpy(cin + (size_t)g * dk, pg, (size_t)dk * sizeof(float));
        memcpy(cin + kd + (size_t)g * dk, pg + dk, (size_t)dk * sizeof(float));
        memcpy(cin + 2 * kd + (size_t)g * r * dv, pg + 2 * dk, (size_t)r * dv * sizeof(float));
        memcpy(z + (size_t)g * r * dv, pg + 2 * dk + (size_t)r * dv,
               (size_t)r * dv * sizeof(float));
        memcpy(bb + (size_t)g * r, ba + (size_t)g * 2 * r, (size_t)r * sizeof(float));
        memcpy(aa + (size_t)g * r, ba + (size_t)g * 2 * r + r, (size_t)r * sizeof(float));
    }
}

void cellm_cpu_gdn_block(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                         struct cellm_cpu_hyb *h, const float *x, int n, float *out)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_hyb_layer *w = d->layers[l].hyb;
    const int dk = c->lin_dk, dv = c->lin_dv, nk = c->lin_nk, nv = c->lin_nv;
    const int64_t H = c->dim, kd = (int64_t)nk * dk, vd = (int64_t)nv * dv, ch = 2 * kd + vd;
    const float eps = (float)c->norm_eps, scale = (float)(1.0 / sqrt((double)dk));
    if (c->hybrid == CELLM_HYBRID_QWEN3_NEXT) {
        e->matmul_exact(e->ctx, &w->in_proj, x, H, n, h->proj, 2 * kd + 2 * vd);
        e->matmul_exact(e->ctx, &w->in_b, x, H, n, h->proj2, 2 * nv);
    } else {
        e->matmul_exact(e->ctx, &w->in_proj, x, H, n, h->proj, ch);
        e->matmul_exact(e->ctx, &w->in_z, x, H, n, h->z, vd);
        e->matmul_exact(e->ctx, &w->in_b, x, H, n, h->b, nv);
        e->matmul_exact(e->ctx, &w->in_a, x, H, n, h->a, nv);
    }
    for (int i = 0; i < n; i++)
        gather(c, h, i);
    /* rows in order: the conv window of each row's sequence, then silu; the gates; q and k
     * normalised; h->proj now holds the conv outputs [n][ch] and h->a the log-decays */
    for (int i = 0; i < n; i++) {
        float *u = h->proj + (size_t)i * ch;
        cellm_cpu_conv_step(&w->conv, c->conv_kernel, ch, h->row_st[i]->conv[l],
                            h->conv + (size_t)i * ch, u);
        for (int64_t k = 0; k < ch; k++)
            u[k] = u[k] / (1.0f + expf(-u[k]));
        for (int g = 0; g < nk; g++) {
            float *q = u + (size_t)g * dk, *k = u + kd + (size_t)g * dk;
            l2norm(q, dk);
            l2norm(k, dk);
            for (int t = 0; t < dk; t++)
                q[t] = q[t] * scale;
        }
        float *bb = h->b + (size_t)i * nv, *aa = h->a + (size_t)i * nv;
        for (int v = 0; v < nv; v++) {
            bb[v] = sigmoidf(bb[v]);
            float na = -expf(cellm_vec_at(&w->a_log, v));
            float sp = softplusf(aa[v] + cellm_vec_at(&w->dt_bias, v));
            aa[v] = na * sp;
        }
    }
    struct gdn_job j = {d, l, n, h};
    cellm_pool_run(e->pool, gdn_heads, &j);
    /* the gated RMSNorm per value head: (w * (o * rsqrt(mean(o^2) + eps))) * silu(z) */
    for (int i = 0; i < n; i++)
        for (int v = 0; v < nv; v++) {
            float *o = h->core + (size_t)i * vd + (size_t)v * dv;
            const float *z = h->z + (size_t)i * vd + (size_t)v * dv;
            double ss = 0;
            for (int y = 0; y < dv; y++)
                ss += (double)o[y] * o[y];
            float rs = 1.0f / sqrtf((float)(ss / dv) + eps);
            for (int y = 0; y < dv; y++) {
                float nrm = cellm_vec_at(&w->norm, y) * (o[y] * rs);
                float sz = z[y] / (1.0f + expf(-z[y]));
                o[y] = nrm * sz;
            }
        }
    e->matmul_exact(e->ctx, &w->out_proj, h->core, vd, n, out, H);
}
