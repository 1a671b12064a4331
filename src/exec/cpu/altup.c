/*
 * altup.c: Gemma 3n's layer on the CPU (altup.h; the forward pass in
 * docs/forward/gemma3n.md). Every step rounds as transformers' float32 eager forward does,
 * one f32 operation at a time in its order; the tiny mixing products (n streams, n * n
 * coefficients) are computed here in f32 from the dequantized coefficient matrices.
 *
 * Layout: stream k of row i is X + (k * rows + i) * dim, rows the reserved capacity, so
 * that one stream of a chunk is one [n][dim] block for the products.
 */
#include "altup.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "model/gemma3n.h"
#include "ops.h"

struct cellm_cpu_g3n {
    int rows;
    float *X, *P;       /* [n][rows][dim] the streams; the predictions */
    float *h, *lau, *o; /* [rows][dim] normed active prediction, LAuReL, sub-block output */
    float *y, *t;       /* [rows][dim] the layer's activated output; scratch */
    float *lr;          /* [rows][laurel_rank] */
    float *gate, *up;   /* [rows][ffn] */
    float *pg;          /* [rows][ple_dim] */
    float *r, *v;       /* [rows][n] router outputs, [rows][n * n] coefficients */
    float *w;           /* [n * n * n] a dequantized coefficient matrix */
};

void cellm_cpu_g3n_free(struct cellm_cpu_g3n *g)
{
    if (!g) return;
    float *f[] = {g->X,  g->P,    g->h,  g->lau, g->o, g->y, g->t,
                  g->lr, g->gate, g->up, g->pg,  g->r, g->v, g->w};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        cellm_free(f[i]);
    cellm_free(g);
}

static int grow(float **p, size_t n)
{
    float *q = cellm_realloc(*p, (n ? n : 1) * sizeof(float));
    if (!q) return 0;
    *p = q;
    return 1;
}

enum cellm_status cellm_cpu_g3n_reserve(struct cellm_cpu_g3n **gp, const struct cellm_desc *d,
                                        int n, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    struct cellm_cpu_g3n *g = *gp;
    if (!g && !(g = *gp = cellm_calloc(1, sizeof *g)))
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    if (n <= g->rows) return CELLM_OK;
    size_t r = (size_t)n, dim = (size_t)c->dim, N = (size_t)c->altup_n;
    size_t ffn = (size_t)c->ffn_dim;
    int ok = grow(&g->X, N * r * dim) && grow(&g->P, N * r * dim) && grow(&g->h, r * dim) &&
             grow(&g->lau, r * dim) && grow(&g->o, r * dim) && grow(&g->y, r * dim) &&
             grow(&g->t, r * dim) && grow(&g->lr, r * (size_t)c->laurel_rank) &&
             grow(&g->gate, r * ffn) && grow(&g->up, r * ffn) &&
             grow(&g->pg, r * (size_t)c->ple_dim) && grow(&g->r, r * N) && grow(&g->v, r * N * N) &&
             grow(&g->w, N * N * N);
    if (!ok)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for Gemma 3n buffers of %d rows", n);
    g->rows = n;
    return CELLM_OK;
}

static float *stream(const struct cellm_cpu_g3n *g, const struct cellm_desc *d, float *base, int k)
{
    return base + (size_t)k * g->rows * d->cfg.dim;
}

/* fl(sqrt(mean(x^2))) over n, the mean's sum in double (any order is the contract's) */
static float root_mean_square(const float *x, int64_t n)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    return sqrtf((float)(ss / (double)n));
}

/* a = a * m / fl(sqrt(max(mean(a^2), 1e-5))): a projection brought to magnitude m */
static void match_magnitude(float *a, int64_t n, float m)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)a[i] * a[i];
    float mean = (float)(ss / (double)n), eps = 1e-5f;
    float s = sqrtf(mean > eps ? mean : eps);
    for (int64_t i = 0; i < n; i++) {
        float t = a[i] * m;
        a[i] = t / s;
    }
}

void cellm_cpu_g3n_embed(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                         const struct cellm_desc *d, const float *x, int n)
{
    const struct cellm_config *c = &d->cfg;
    int64_t dim = c->dim;
    memcpy(stream(g, d, g->X, 0), x, (size_t)n * dim * sizeof(float));
    for (int k = 1; k < c->altup_n; k++) {
        float *xk = stream(g, d, g->X, k);
        env->matmul(env->ctx, &d->altup_proj[k - 1], x, dim, n, xk, dim);
        for (int i = 0; i < n; i++)
            match_magnitude(xk + i * dim, dim, root_mean_square(x + i * dim, dim));
    }
}

void cellm_cpu_g3n_unembed(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                           const struct cellm_desc *d, float *x, int n)
{
    const struct cellm_config *c = &d->cfg;
    int64_t dim = c->dim;
    const float *x0 = stream(g, d, g->X, 0);
    memcpy(x, x0, (size_t)n * dim * sizeof(float));
    for (int k = 1; k < c->altup_n; k++) {
        env->matmul(env->ctx, &d->altup_unembed[k - 1], stream(g, d, g->X, k), dim, n, g->t, dim);
        for (int i = 0; i < n; i++) {
            float *t = g->t + i * dim, *xi = x + i * dim;
            match_magnitude(t, dim, root_mean_square(x0 + i * dim, dim));
            for (int64_t j = 0; j < dim; j++) /* torch.mean over the stacked streams: the */
                xi[j] = xi[j] + t[j];         /* sum in stream order, then / n */
        }
    }
    const float N = (float)c->altup_n;
    for (int64_t j = 0; j < (int64_t)n * dim; j++)
        x[j] = x[j] / N;
}

/* tanh(modality_router(router_norm(x) * fl(1/dim))) of n rows into g->r [n][altup_n] */
static void route(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                  const struct cellm_desc *d, const struct cellm_layer *L, const float *x, int n)
{
    const struct cellm_config *c = &d->cfg;
    int64_t dim = c->dim;
    const float scale = (float)(1.0 / (double)dim); /* torch.tensor(hidden_size ** -1.0) */
    for (int i = 0; i < n; i++) {
        float *t = g->t + i * dim;
        cellm_op_norm(c->norm, (float)c->norm_eps, &L->altup_norm, NULL, x + i * dim, t, dim);
        for (int64_t j = 0; j < dim; j++)
            t[j] = t[j] * scale;
    }
    /* exact in fast mode too: a tiny product whose tanh mixes every stream */
    env->matmul_exact(env->ctx, &L->altup_router, g->t, dim, n, g->r, c->altup_n);
    for (int64_t j = 0; j < (int64_t)n * c->altup_n; j++)
        g->r[j] = tanhf(g->r[j]);
}

/* Coefficient matrix w [rows][cols] widened into g->w; |w| clipped to clip when clip > 0. */
static const float *coefs(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                          const struct cellm_weight *w, float clip)
{
    cellm_cpu_dequant_rows(env->isa, w, 0, w->rows, g->w);
    if (clip > 0)
        for (int64_t j = 0; j < w->rows * w->cols; j++)
            g->w[j] = g->w[j] > clip ? clip : g->w[j] < -clip ? -clip : g->w[j];
    return g->w;
}

/* P[y] = sum_x v[y*n + x] * X[x] + X[y], v = prediction_coefs(router(X[active])) */
static void predict(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                    const struct cellm_desc *d, const struct cellm_layer *L, int n)
{
    const struct cellm_config *c = &d->cfg;
    int N = c->altup_n, NN = N * N;
    int64_t dim = c->dim;
    route(g, env, d, L, stream(g, d, g->X, c->altup_active), n);
    const float *w = coefs(g, env, &L->altup_pred, 0); /* clipped only in training */
    for (int i = 0; i < n; i++) {
        const float *r = g->r + i * N;
        float *v = g->v + i * NN;
        for (int j = 0; j < NN; j++) {
            float s = 0;
            for (int k = 0; k < N; k++)
                s += w[j * N + k] * r[k];
            v[j] = s;
        }
        for (int y = 0; y < N; y++) {
            float *p = stream(g, d, g->P, y) + i * dim;
            for (int64_t h = 0; h < dim; h++) {
                float s = 0;
                for (int x = 0; x < N; x++)
                    s += v[y * N + x] * stream(g, d, g->X, x)[i * dim + h];
                p[h] = s + stream(g, d, g->X, y)[i * dim + h];
            }
        }
    }
}

/* X[k] = (y - P[active]) * (correction_coefs(router(y)) + 1)[k] + P[k] */
static void correct(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                    const struct cellm_desc *d, const struct cellm_layer *L, const float *act,
                    int n)
{
    const struct cellm_config *c = &d->cfg;
    int N = c->altup_n;
    int64_t dim = c->dim;
    route(g, env, d, L, act, n);
    const float *w = coefs(g, env, &L->altup_corr, (float)c->altup_clip);
    for (int i = 0; i < n; i++) {
        const float *r = g->r + i * N, *ai = act + i * dim;
        const float *pa = stream(g, d, g->P, c->altup_active) + i * dim;
        for (int k = 0; k < N; k++) {
            float s = 0;
            for (int j = 0; j < N; j++)
                s += w[k * N + j] * r[j];
            float ck = s + 1.0f;
            const float *pk = stream(g, d, g->P, k) + i * dim;
            float *xk = stream(g, d, g->X, k) + i * dim;
            for (int64_t h = 0; h < dim; h++) {
                float delta = ai[h] - pa[h];
                float t = delta * ck;
                xk[h] = t + pk[h];
            }
        }
    }
}

void cellm_cpu_g3n_sparsify(float *gate, int64_t n, float z)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += gate[i];
    double mean_d = s / (double)n, v = 0;
    for (int64_t i = 0; i < n; i++) {
        double dv = gate[i] - mean_d;
        v += dv * dv;
    }
    float mean = (float)mean_d, std = (float)sqrt(v / (double)n);
    float t = std * z, cut = mean + t;
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i] - cut;
        gate[i] = x > 0 ? x : 0.0f;
    }
}

static void norm_rows(const struct cellm_desc *d, const struct cellm_vec *w, const float *x,
                      float *out, int n)
{
    const struct cellm_config *c = &d->cfg;
    for (int i = 0; i < n; i++)
        cellm_op_norm(c->norm, (float)c->norm_eps, w, NULL, x + (size_t)i * c->dim,
                      out + (size_t)i * c->dim, c->dim);
}

/* o = down(act(cut(gate(h))) * up(h)) */
static void mlp(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                const struct cellm_desc *d, int l, int n)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    int64_t dim = c->dim, I = L->ffn_dim;
    float p = c->layer_sparsity ? c->layer_sparsity[l] : 0;
    /* fast mode keeps a sparse layer's gate and up products exact: the cut keeps only the
     * tail beyond mean + 1.64 std, whose remainders g - cut are small differences of large
     * values, so activation rounding there is magnified (the q4 fixture's greedy logits left
     * fast mode's tolerance by 2.3x without this) */
    cellm_cpu_g4_mm gu = p > 0 ? env->matmul_exact : env->matmul;
    gu(env->ctx, &L->w_gate, g->h, dim, n, g->gate, I);
    gu(env->ctx, &L->w_up, g->h, dim, n, g->up, I);
    float z = p > 0 ? cellm_gemma3n_std_multiplier(p) : 0;
    for (int i = 0; i < n; i++) {
        float *gi = g->gate + i * I, *ui = g->up + i * I;
        if (p > 0) cellm_cpu_g3n_sparsify(gi, I, z);
        if (env->fast)
            cellm_fast_glu(env->fisa, c->act, gi, ui, I);
        else
            cellm_op_glu(c->act, gi, ui, I);
    }
    env->matmul(env->ctx, &L->w_down, g->gate, I, n, g->o, dim);
}

/* the per-layer input: every stream but the first gets
 * norm(proj(act(gate(X[active] * correct_output_scale)) * ple[l])) */
static void per_layer_input(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                            const struct cellm_desc *d, int l, const float *ple, int n)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    int64_t dim = c->dim, P = c->ple_dim, LP = (int64_t)c->n_layers * P;
    const float *xa = stream(g, d, g->X, c->altup_active);
    for (int64_t j = 0; j < (int64_t)n * dim; j++)
        g->t[j] = c->altup_correct_scale ? xa[j] * cellm_vec_at(&L->altup_scale, j % dim) : xa[j];
    env->matmul(env->ctx, &L->ple_gate, g->t, dim, n, g->pg, P);
    for (int i = 0; i < n; i++)
        cellm_op_glu(c->act, g->pg + i * P, ple + i * LP + l * P, P);
    env->matmul(env->ctx, &L->ple_proj, g->pg, P, n, g->t, dim);
    norm_rows(d, &L->ple_norm, g->t, g->t, n);
    for (int k = 1; k < c->altup_n; k++) {
        float *xk = stream(g, d, g->X, k);
        for (int64_t j = 0; j < (int64_t)n * dim; j++)
            xk[j] = xk[j] + g->t[j];
    }
}

enum cellm_status cellm_cpu_g3n_layer(struct cellm_cpu_g3n *g, const struct cellm_cpu_g3n_env *env,
                                      const struct cellm_desc *d, int l,
                                      const struct cellm_exec_row *rows, int n, const float *ple,
                                      struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    const struct cellm_cpu_g4_env *mm = &env->mm;
    int64_t dim = c->dim, nd = (int64_t)n * dim, R = c->laurel_rank;
    predict(g, mm, d, L, n);
    const float *z = stream(g, d, g->P, c->altup_active);
    norm_rows(d, &L->attn_norm, z, g->h, n);
    /* LAuReL: h + norm(right(left(h))); exact in fast mode too, as Gemma 4's q, k and v: the
     * norm right after the low-rank products blows their activation rounding up to full size */
    mm->matmul_exact(mm->ctx, &L->laurel_l, g->h, dim, n, g->lr, R);
    mm->matmul_exact(mm->ctx, &L->laurel_r, g->lr, R, n, g->lau, dim);
    norm_rows(d, &L->laurel_norm, g->lau, g->lau, n);
    for (int64_t j = 0; j < nd; j++)
        g->lau[j] = g->h[j] + g->lau[j];
    CELLM_TRY(env->attention(mm->ctx, l, rows, n, g->h, g->o, err));
    norm_rows(d, &L->post_attn_norm, g->o, g->o, n);
    const float root2 = (float)M_SQRT2; /* (z + attn + laurel) / math.sqrt(2), in f32 */
    for (int64_t j = 0; j < nd; j++) {
        float s = z[j] + g->o[j];
        s = s + g->lau[j];
        g->y[j] = s / root2;
    }
    norm_rows(d, &L->ffn_norm, g->y, g->h, n);
    mlp(g, mm, d, l, n);
    norm_rows(d, &L->post_ffn_norm, g->o, g->o, n);
    for (int64_t j = 0; j < nd; j++)
        g->y[j] = g->y[j] + g->o[j];
    correct(g, mm, d, L, g->y, n);
    per_layer_input(g, mm, d, l, ple, n);
    return CELLM_OK;
}
