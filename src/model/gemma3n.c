/*
 * gemma3n.c: Gemma 3n's config keys, AltUp projections and the sparsity quantile
 * (docs/forward/gemma3n.md; transformers' configuration_gemma3n.py and modeling_gemma3n.py,
 * mlx-lm's gemma3n.py).
 */
#include "gemma3n.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "gemma4.h"

static enum cellm_status get_int(const cJSON *t, const char *key, const char *what, int def, int lo,
                                 int hi, int *out, struct cellm_error *err)
{
    int64_t v;
    CELLM_TRY(cellm_json_int(t, key, what, def, &v, err));
    if (v < lo || v > hi)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"%s\" is %lld; expected an integer in [%d, %d]", what, key,
                          (long long)v, lo, hi);
    *out = (int)v;
    return CELLM_OK;
}

/* intermediate_size: an int, or one per layer (transformers broadcasts an int); cellm sizes
 * every layer alike, so a list must repeat one width. */
static enum cellm_status ffn_widths(const cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err)
{
    const cJSON *a = cellm_json_get(t, "intermediate_size");
    if (!a || !cJSON_IsArray(a)) return CELLM_OK; /* read by the generic parser */
    if (cJSON_GetArraySize(a) != c->n_layers)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"intermediate_size\" has %d entries; expected one per layer (%d)",
                          what, cJSON_GetArraySize(a), c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(e, "intermediate_size", what, 1, 1 << 30, &v, err));
        if (i == 0) c->ffn_dim = (int)v;
        if (v != c->ffn_dim)
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                              "%s: intermediate_size[%d] is %lld but layer 0's is %d; cellm runs "
                              "Gemma 3n with one MLP width for every layer",
                              what, i, (long long)v, c->ffn_dim);
        i++;
    }
    return CELLM_OK;
}

/* activation_sparsity_pattern: one fraction in [0, 1) per layer; absent or null = 0.95 on
 * the first 10 layers when there are more than 10 (Gemma3nTextConfig's default). */
static enum cellm_status sparsity(const cJSON *t, const char *what, struct cellm_config *c,
                                  struct cellm_error *err)
{
    c->layer_sparsity = cellm_calloc((size_t)c->n_layers, sizeof(float));
    if (!c->layer_sparsity) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    const cJSON *a = cellm_json_get(t, "activation_sparsity_pattern");
    if (!a) {
        for (int i = 0; i < c->n_layers && c->n_layers > 10; i++)
            c->layer_sparsity[i] = i < 10 ? 0.95f : 0.0f;
        return CELLM_OK;
    }
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != c->n_layers)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"activation_sparsity_pattern\" must be a list of %d numbers, one "
                          "per layer",
                          what, c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0) || !(e->valuedouble < 1))
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: activation_sparsity_pattern[%d] is not a number in [0, 1)", what,
                              i);
        c->layer_sparsity[i++] = (float)e->valuedouble; /* torch.tensor(p, float32) */
    }
    return CELLM_OK;
}

enum cellm_status cellm_gemma3n_keys(const cJSON *t, const char *what, struct cellm_config *c,
                                     struct cellm_error *err)
{
    c->gemma3n = 1;
    c->attn_scale = 1.0; /* Gemma3nTextAttention's scaling; query_pre_attn_scalar is unused */
    CELLM_TRY(ffn_widths(t, what, c, err));
    CELLM_TRY(get_int(t, "hidden_size_per_layer_input", what, 256, 1, 1 << 20, &c->ple_dim, err));
    CELLM_TRY(
        get_int(t, "vocab_size_per_layer_input", what, 262144, 1, 1 << 30, &c->ple_vocab, err));
    CELLM_TRY(
        get_int(t, "num_kv_shared_layers", what, 15, 0, c->n_layers - 1, &c->n_kv_shared, err));
    CELLM_TRY(get_int(t, "altup_num_inputs", what, 4, 1, 64, &c->altup_n, err));
    CELLM_TRY(get_int(t, "altup_active_idx", what, 0, 0, c->altup_n - 1, &c->altup_active, err));
    CELLM_TRY(cellm_json_bool(t, "altup_correct_scale", what, 1, &c->altup_correct_scale, err));
    CELLM_TRY(get_int(t, "laurel_rank", what, 64, 1, 1 << 20, &c->laurel_rank, err));
    /* altup_coef_clip: null is None (no clamp) */
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(t, "altup_coef_clip");
    c->altup_clip = 120.0;
    if (clip && cJSON_IsNull(clip))
        c->altup_clip = 0;
    else
        CELLM_TRY(cellm_json_num(t, "altup_coef_clip", what, 120.0, &c->altup_clip, err));
    if (!(c->altup_clip >= 0) || !isfinite(c->altup_clip))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: altup_coef_clip is %g; expected a positive number or null", what,
                          c->altup_clip);
    for (int i = 0; i < c->n_layers; i++)
        if (c->layer_sliding[i] && c->window <= 0)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: sliding layers need a sliding_window",
                              what);
    return sparsity(t, what, c, err);
}

enum cellm_status cellm_gemma3n_bind(struct cellm_desc *d, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    CELLM_TRY(cellm_gemma4_bind_ple(d, err));
    int m = c->altup_n - 1;
    if (m <= 0) return CELLM_OK;
    d->altup_proj = cellm_desc_own(d, 2 * (size_t)m * sizeof *d->altup_proj);
    if (!d->altup_proj) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    d->altup_unembed = d->altup_proj + m;
    for (int k = 0; k < m; k++) {
        char name[96];
        snprintf(name, sizeof name, "model.altup_projections.%d", k);
        CELLM_TRY(cellm_bind_matrix(d, name, 0, c->dim, c->dim, &d->altup_proj[k], err));
        snprintf(name, sizeof name, "model.altup_unembed_projections.%d", k);
        CELLM_TRY(cellm_bind_matrix(d, name, 0, c->dim, c->dim, &d->altup_unembed[k], err));
    }
    return CELLM_OK;
}

/* erfinv in double: Newton steps on erf from a start good to a few digits. */
static double erfinv_d(double y)
{
    if (y <= -1) return -INFINITY;
    if (y >= 1) return INFINITY;
    /* Winitzki's closed form as the start */
    const double a = 0.147, pi = 3.14159265358979323846;
    double l = log(1 - y * y), s = 2 / (pi * a) + l / 2;
    double x = copysign(sqrt(sqrt(s * s - l / a) - s), y);
    for (int i = 0; i < 6; i++)
        x -= (erf(x) - y) / (2 / sqrt(pi) * exp(-x * x));
    return x;
}

float cellm_gemma3n_std_multiplier(float p)
{
    float two_p = 2.0f * p;
    float y = two_p - 1.0f;
    float e = (float)erfinv_d((double)y);
    return e * (float)M_SQRT2;
}

const char *cellm_config_gemma3n_pieces(const struct cellm_config *c)
{
    if (!c->gemma3n) return NULL;
    return "Gemma 3n's layers (AltUp streams with their router, LAuReL, activation sparsity, "
           "norms that divide by the root, the weightless v norm, KV sharing and per-layer "
           "embeddings)";
}
