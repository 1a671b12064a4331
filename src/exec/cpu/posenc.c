/*
 * posenc.c: see posenc.h. The formulas and their float32 order are in
 * docs/forward/llama4.md and docs/forward/ministral3.md.
 */
#include "posenc.h"

#include <math.h>

#include "ops.h"

int cellm_attn_first_key(const struct cellm_config *cfg, const struct cellm_layer *L, int pos)
{
    switch (L->attn) {
    case CELLM_ATTN_SLIDING:
        return cfg->window > 0 && pos - cfg->window + 1 > 0 ? pos - cfg->window + 1 : 0;
    case CELLM_ATTN_CHUNKED:
        return cfg->attn_chunk > 0 ? pos / cfg->attn_chunk * cfg->attn_chunk : 0;
    case CELLM_ATTN_FULL:
        break;
    }
    return 0;
}

float cellm_query_scale(const struct cellm_config *cfg, const struct cellm_layer *L, int32_t pos)
{
    if (cfg->qscale_beta != 0) {
        /* 1 + beta * log(1 + floor(p / L0)): p / L0 a float32 true division */
        float f = floorf((float)pos / (float)cfg->qscale_len);
        float l = logf(1.0f + f);
        return 1.0f + (float)cfg->qscale_beta * l;
    }
    if (cfg->attn_temp && L->nope) {
        /* log1p(floor((p + 1) / floor_scale)) * attn_scale + 1 */
        float f = floorf(((float)pos + 1.0f) / (float)cfg->temp_floor);
        float l = log1pf(f);
        return l * (float)cfg->temp_scale + 1.0f;
    }
    return 1.0f;
}

/* Llama 4: the head's dims as d/2 complex numbers (x[2j], x[2j+1]), each times
 * (cos + i sin)(angle_j) * attn; torch's complex product (ac - bd, ad + bc). */
static void rope_pairs(float *x, int rot, const float *inv_freq, float attn, int32_t pos)
{
    float p = (float)pos;
    for (int j = 0; j < rot / 2; j++) {
        float angle = inv_freq[j] * p;
        float c = cosf(angle) * attn, s = sinf(angle) * attn;
        float a = x[2 * j], b = x[2 * j + 1];
        float ac = a * c, bs = b * s, as = a * s, bc = b * c;
        x[2 * j] = ac - bs;
        x[2 * j + 1] = as + bc;
    }
}

/* x * rsqrt(mean(x^2) + eps), no weight (Llama4TextL2Norm), as ops.c's RMS norm sums */
static void l2norm(float *x, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < n; i++)
        x[i] = x[i] * r;
}

void cellm_op_head_pos(const struct cellm_config *cfg, const struct cellm_layer *L, float *x,
                       const float *inv_freq, int32_t pos, float qscale)
{
    if (!L->nope) {
        if (cfg->rope_interleaved)
            rope_pairs(x, L->rot_dims, inv_freq, L->rope_attn, pos);
        else
            cellm_op_rope_scaled(x, L->rot_dims, inv_freq, L->rope_attn, pos);
        if (cfg->qk_l2norm) l2norm(x, L->head_dim, (float)cfg->norm_eps);
    }
    if (qscale != 1.0f)
        for (int i = 0; i < L->head_dim; i++)
            x[i] = x[i] * qscale;
}
