/*
 * gemma4.c: Gemma 4's blocks on the CPU (gemma4.h; the forward pass in
 * docs/forward/gemma4.md). Every step rounds as transformers' float32 eager forward does:
 * one f32 operation at a time, in its order.
 */
#include "gemma4.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "ops.h"

struct cellm_cpu_g4 {
    int rows;
    float *ple;  /* [rows][n_layers * ple_dim] the per-layer inputs of this forward */
    float *t;    /* [rows][n_layers * ple_dim] the model projection; the PLE gate */
    float *y;    /* [rows][dim] */
    float *nrm;  /* [rows][dim] the router's and the experts' inputs */
    float *acc;  /* [rows][dim] the experts' weighted sum */
    float *prob; /* [rows][n_experts] */
    int *idx;    /* [rows][k] */
    float *w;    /* [rows][k] */
    int *sel;    /* [rows] rows routed to one expert, and their rank */
    /* gathered rows: [rows][dim], [rows][moe], [rows][moe], [rows][dim] */
    float *ex, *eg, *eu, *ey;
};

void cellm_cpu_g4_free(struct cellm_cpu_g4 *g)
{
    if (!g) return;
    float *f[] = {g->ple, g->t, g->y, g->nrm, g->acc, g->prob, g->w, g->ex, g->eg, g->eu, g->ey};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        cellm_free(f[i]);
    cellm_free(g->idx);
    cellm_free(g->sel);
    cellm_free(g);
}

static int grow(void **p, size_t n)
{
    void *q = cellm_realloc(*p, n ? n : 1);
    if (!q) return 0;
    *p = q;
    return 1;
}

enum cellm_status cellm_cpu_g4_reserve(struct cellm_cpu_g4 **gp, const struct cellm_desc *d, int n,
                                       struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    struct cellm_cpu_g4 *g = *gp;
    if (!g && !(g = *gp = cellm_calloc(1, sizeof *g)))
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    if (n <= g->rows) return CELLM_OK;
    size_t r = (size_t)n, f = sizeof(float), lp = (size_t)c->n_layers * (size_t)c->ple_dim;
    size_t dim = (size_t)c->dim, k = (size_t)(c->n_experts_used > 0 ? c->n_experts_used : 1);
    size_t mi = (size_t)c->moe_ffn_dim, E = (size_t)c->n_experts;
    int ok = grow((void **)&g->ple, r * lp * f) && grow((void **)&g->t, r * lp * f) &&
             grow((void **)&g->y, r * dim * f) && grow((void **)&g->nrm, r * dim * f) &&
             grow((void **)&g->acc, r * dim * f) && grow((void **)&g->prob, r * E * f) &&
             grow((void **)&g->idx, r * k * sizeof(int)) && grow((void **)&g->w, r * k * f) &&
             grow((void **)&g->sel, r * sizeof(int)) && grow((void **)&g->ex, r * dim * f) &&
             grow((void **)&g->eg, r * mi * f) && grow((void **)&g->eu, r * mi * f) &&
             grow((void **)&g->ey, r * dim * f);
    if (!ok)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for Gemma 4 buffers of %d rows", n);
    g->rows = n;
    return CELLM_OK;
}

void cellm_cpu_g4_v_norm(float *x, int64_t n, float eps)
{
    /* the same rounding as cellm_op_norm's RMS norm, without the weight */
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] * r;
}

const float *cellm_cpu_g4_ple_inputs(const struct cellm_cpu_g4 *g)
{
    return g->ple;
}

void cellm_cpu_g4_ple(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                      const struct cellm_desc *d, const struct cellm_exec_row *rows, const float *x,
                      int n)
{
    const struct cellm_config *c = &d->cfg;
    int64_t P = c->ple_dim, LP = (int64_t)c->n_layers * P;
    float eps = (float)c->norm_eps;
    const float proj_scale = (float)(1.0 / sqrt((double)c->dim)); /* hidden_size ** -0.5 */
    const float in_scale = (float)(1.0 / sqrt(2.0));              /* 2.0 ** -0.5 */
    env->matmul(env->ctx, &d->ple_model, x, c->dim, n, g->t, LP);
    for (int i = 0; i < n; i++) {
        float *u = g->t + (size_t)i * LP, *p = g->ple + (size_t)i * LP;
        /* mlx-lm maps ids beyond the per-layer vocabulary to 0 (transformers would fail) */
        int tok = rows[i].token < c->ple_vocab ? rows[i].token : 0;
        cellm_cpu_dequant_rows(env->isa, &d->ple_embed, tok, 1, p);
        for (int64_t l = 0; l < c->n_layers; l++) {
            float *ul = u + l * P;
            for (int64_t k = 0; k < P; k++)
                ul[k] = ul[k] * proj_scale;
            cellm_op_norm(c->norm, eps, &d->ple_norm, NULL, ul, ul, P);
        }
        for (int64_t k = 0; k < LP; k++) {
            float tk = p[k] * d->ple_scale;
            p[k] = (u[k] + tk) * in_scale;
        }
    }
}

void cellm_cpu_g4_layer_end(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                            const struct cellm_desc *d, int l, float *x, int n)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    int64_t dim = c->dim, P = c->ple_dim, LP = (int64_t)c->n_layers * P;
    float eps = (float)c->norm_eps;
    if (P > 0) {
        /* x + norm(proj(act(gate(x)) * ple[l])) */
        env->matmul(env->ctx, &L->ple_gate, x, dim, n, g->t, P);
        for (int i = 0; i < n; i++)
            cellm_op_glu(c->act, g->t + (size_t)i * P, g->ple + (size_t)i * LP + (size_t)l * P, P);
        env->matmul(env->ctx, &L->ple_proj, g->t, P, n, g->y, dim);
        for (int i = 0; i < n; i++) {
            float *y = g->y + (size_t)i * dim, *xi = x + (size_t)i * dim;
            cellm_op_norm(CELLM_NORM_RMS, eps, &L->ple_norm, NULL, y, y, dim);
            for (int64_t k = 0; k < dim; k++)
                xi[k] = xi[k] + y[k];
        }
    }
    const float s = cellm_vec_at(&L->layer_scalar, 0);
    for (int64_t k = 0; k < (int64_t)n * dim; k++)
        x[k] = x[k] * s;
}

/* The router of rows x: softmax over the experts, the top k, renormalised, times each
 * chosen expert's per_expert_scale. */
static void route(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                  const struct cellm_desc *d, const struct cellm_layer *L, const float *x, int n)
{
    const struct cellm_config *c = &d->cfg;
    int64_t dim = c->dim;
    int E = c->n_experts, K = c->n_experts_used;
    const float root = (float)(1.0 / sqrt((double)dim)); /* hidden_size ** -0.5 */
    for (int i = 0; i < n; i++) {
        float *r = g->nrm + (size_t)i * dim;
        memcpy(r, x + (size_t)i * dim, (size_t)dim * sizeof(float));
        cellm_cpu_g4_v_norm(r, dim, (float)c->norm_eps);
        for (int64_t k = 0; k < dim; k++)
            r[k] = (r[k] * cellm_vec_at(&L->router_scale, k)) * root;
    }
    /* exact in fast mode too, as cpu.c's router: a rounding that swaps two experts changes
     * the output by far more than the rounding itself */
    env->matmul_exact(env->ctx, &L->router, g->nrm, dim, n, g->prob, E);
    for (int i = 0; i < n; i++) {
        float *p = g->prob + (size_t)i * E, *w = g->w + (size_t)i * K;
        int *idx = g->idx + (size_t)i * K;
        cellm_op_softmax(p, E);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++)
                    taken |= idx[j] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            idx[k] = best;
            w[k] = p[best];
        }
        float sum = 0;
        for (int k = 0; k < K; k++)
            sum += w[k];
        for (int k = 0; k < K; k++) {
            float wk = w[k] / sum;
            w[k] = wk * cellm_vec_at(&L->expert_scale, idx[k]);
        }
    }
}

void cellm_cpu_g4_moe(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                      const struct cellm_desc *d, int l, const float *x, float *o, int n,
                      int32_t *routes)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    int64_t dim = c->dim, I = c->moe_ffn_dim;
    int E = c->n_experts, K = c->n_experts_used;
    float eps = (float)c->norm_eps;
    route(g, env, d, L, x, n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++)
            routes[((size_t)i * c->n_layers + l) * K + k] = g->idx[(size_t)i * K + k];
    /* the experts' input: pre_feedforward_layernorm_2 of the residual (reusing nrm) */
    for (int i = 0; i < n; i++)
        cellm_op_norm(CELLM_NORM_RMS, eps, &L->pre_ffn_norm2, NULL, x + (size_t)i * dim,
                      g->nrm + (size_t)i * dim, dim);
    memset(g->acc, 0, (size_t)n * dim * sizeof(float));
    /* expert by expert in index order, as transformers' index_add_ sums them */
    for (int e = 0; e < E; e++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++)
                if (g->idx[(size_t)i * K + k] == e) {
                    g->sel[m] = i * K + k;
                    memcpy(g->ex + (size_t)m * dim, g->nrm + (size_t)i * dim,
                           (size_t)dim * sizeof(float));
                    m++;
                }
        if (!m) continue;
        env->matmul(env->ctx, &L->e_gate[e], g->ex, dim, m, g->eg, I);
        env->matmul(env->ctx, &L->e_up[e], g->ex, dim, m, g->eu, I);
        for (int r = 0; r < m; r++) {
            float *gr = g->eg + (size_t)r * I, *ur = g->eu + (size_t)r * I;
            if (env->fast)
                cellm_fast_glu(env->fisa, c->act, gr, ur, I);
            else
                cellm_op_glu(c->act, gr, ur, I);
        }
        env->matmul(env->ctx, &L->e_down[e], g->eg, I, m, g->ey, dim);
        for (int r = 0; r < m; r++) {
            int i = g->sel[r] / K;
            float w = g->w[g->sel[r]];
            float *a = g->acc + (size_t)i * dim;
            const float *y = g->ey + (size_t)r * dim;
            for (int64_t k = 0; k < dim; k++) {
                float t = y[k] * w;
                a[k] = a[k] + t;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        float *oi = o + (size_t)i * dim, *a = g->acc + (size_t)i * dim;
        cellm_op_norm(CELLM_NORM_RMS, eps, &L->post_ffn_norm1, NULL, oi, oi, dim);
        cellm_op_norm(CELLM_NORM_RMS, eps, &L->post_ffn_norm2, NULL, a, a, dim);
        for (int64_t k = 0; k < dim; k++)
            oi[k] = oi[k] + a[k];
    }
}
