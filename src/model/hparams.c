/*
 * hparams.c: config.json and generation_config.json into struct cellm_config.
 *
 * The text configuration is the top-level object, or "text_config" for Gemma 3
 * multimodal checkpoints (whose quantization, tie and eos keys stay at the top level).
 * Keys are read with type checks; absent keys take the family's class defaults.
 */
#include "hparams.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "family.h"
#include "hparams_l4.h"
#include "hybrid.h"
#include "gemma3n.h"
#include "gemma4.h"

void cellm_config_free(struct cellm_config *c)
{
    if (!c) return;
    cellm_free(c->layer_sliding);
    cellm_free(c->layer_moe);
    cellm_free(c->layer_nope);
    cellm_free(c->layer_chunked);
    cellm_free(c->layer_mixer);
    cellm_free(c->layer_sparsity);
    cellm_quant_free(&c->quant);
    memset(c, 0, sizeof *c);
}

/* An int in [1, max] at key, def when absent */
enum cellm_status cellm_config_int(const cJSON *o, const char *key, const char *what, int def,
                                   int max, int *out, struct cellm_error *err)
{
    const cJSON *j = cellm_json_get(o, key);
    if (!j) {
        *out = def;
        return CELLM_OK;
    }
    int64_t v;
    CELLM_TRY(cellm_json_as_int(j, key, what, 1, max, &v, err));
    *out = (int)v;
    return CELLM_OK;
}

static enum cellm_status get_pos_int(const cJSON *o, const char *key, const char *what, int def,
                                     int *out, struct cellm_error *err)
{
    return cellm_config_int(o, key, what, def, 1 << 30, out, err);
}

/* Far above any released model (the largest have under 200 layers); it keeps a config of a
 * few bytes from sizing per-layer arrays and loops by the billion. */
#define CONFIG_MAX_LAYERS 65536

static int in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, word, n)) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

const char *cellm_rope_kind_name(enum cellm_rope_kind k)
{
    switch (k) {
    case CELLM_ROPE_DEFAULT:
        return "default";
    case CELLM_ROPE_LINEAR:
        return "linear";
    case CELLM_ROPE_LLAMA3:
        return "llama3";
    case CELLM_ROPE_YARN:
        return "yarn";
    case CELLM_ROPE_LONGROPE:
        return "longrope";
    case CELLM_ROPE_PROPORTIONAL:
        return "proportional";
    }
    return "?";
}

/* A list of numbers at key, rounded to f32 as torch.tensor(list, dtype=float32) does. */
static enum cellm_status get_factors(const cJSON *o, const char *key, const char *what, float *out,
                                     int *n, struct cellm_error *err)
{
    const cJSON *a = cellm_json_get(o, key);
    if (!a)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: longrope RoPE needs \"%s\" (a list of numbers)", what, key);
    if (!cJSON_IsArray(a))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: RoPE \"%s\" is a %s, expected a list of numbers", what, key,
                          cellm_json_type(a));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: RoPE %s[%d] is %s, expected a positive number", what, key, i,
                              cJSON_IsNumber(e) ? "not positive and finite" : cellm_json_type(e));
        if (i == CELLM_ROPE_MAX_FACTORS)
            return cellm_errf(err, CELLM_ERR_RANGE, "%s: RoPE \"%s\" has more than %d entries",
                              what, key, CELLM_ROPE_MAX_FACTORS);
        out[i++] = (float)e->valuedouble;
    }
    *n = i;
    return CELLM_OK;
}

/* A positive number at key of the RoPE object, else at the same key of the text config
 * (Phi-3 keeps original_max_position_embeddings there), else def. */
static enum cellm_status get_pos_num2(const cJSON *o, const cJSON *t, const char *key,
                                      const char *what, double def, double *out,
                                      struct cellm_error *err)
{
    CELLM_TRY(cellm_json_num(t, key, what, def, out, err));
    CELLM_TRY(cellm_json_num(o, key, what, *out, out, err));
    if (!(*out > 0) || !isfinite(*out))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: RoPE \"%s\" is %g, expected a positive number", what, key, *out);
    return CELLM_OK;
}

static double yarn_mscale(double s, double m)
{
    return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0;
}

/* YaRN's keys as transformers 5 reads them (_compute_yarn_parameters); the frequencies
 * themselves are computed in model/bind.c. */
static enum cellm_status parse_yarn(const cJSON *o, const cJSON *t, const char *what, int max_pos,
                                    struct cellm_rope *r, struct cellm_error *err)
{
    r->kind = CELLM_ROPE_YARN;
    CELLM_TRY(get_pos_num2(o, t, "original_max_position_embeddings", what, max_pos,
                           &r->original_max_pos, err));
    /* an absent factor is the context extension (transformers 5; 4.5x overrode a given
     * factor with this ratio whenever original_max_position_embeddings was set) */
    CELLM_TRY(cellm_json_num(o, "factor", what, max_pos / r->original_max_pos, &r->factor, err));
    if (!(r->factor >= 1) || !isfinite(r->factor))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: yarn RoPE \"factor\" is %g, expected >= 1",
                          what, r->factor);
    /* `or 32` / `or 1` in transformers: 0 and null mean the default */
    CELLM_TRY(cellm_json_num(o, "beta_fast", what, 0, &r->beta_fast, err));
    CELLM_TRY(cellm_json_num(o, "beta_slow", what, 0, &r->beta_slow, err));
    if (r->beta_fast == 0) r->beta_fast = 32;
    if (r->beta_slow == 0) r->beta_slow = 1;
    if (!(r->beta_fast > 0) || !(r->beta_slow > 0) || !isfinite(r->beta_fast) ||
        !isfinite(r->beta_slow))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: yarn RoPE beta_fast %g and beta_slow %g must be positive", what,
                          r->beta_fast, r->beta_slow);
    CELLM_TRY(cellm_json_bool(o, "truncate", what, 1, &r->truncate, err));
    CELLM_TRY(cellm_json_num(o, "mscale", what, 0, &r->mscale, err));
    CELLM_TRY(cellm_json_num(o, "mscale_all_dim", what, 0, &r->mscale_all_dim, err));
    if (!isfinite(r->mscale) || !isfinite(r->mscale_all_dim))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: yarn RoPE mscale values must be finite",
                          what);
    double af;
    if (r->mscale != 0 && r->mscale_all_dim != 0)
        af = yarn_mscale(r->factor, r->mscale) / yarn_mscale(r->factor, r->mscale_all_dim);
    else
        af = yarn_mscale(r->factor, 1);
    CELLM_TRY(cellm_json_num(o, "attention_factor", what, af, &r->attn_factor, err));
    if (!(r->attn_factor > 0) || !isfinite(r->attn_factor))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: yarn RoPE \"attention_factor\" is %g, expected a positive number",
                          what, r->attn_factor);
    return CELLM_OK;
}

/* longrope as transformers 5 reads it (_compute_longrope_parameters); the list lengths are
 * checked against rot_dims by the caller, which knows partial_rotary_factor. */
static enum cellm_status parse_longrope(const cJSON *o, const cJSON *t, const char *what,
                                        int max_pos, struct cellm_rope *r, struct cellm_error *err)
{
    r->kind = CELLM_ROPE_LONGROPE;
    int ns, nl;
    CELLM_TRY(get_factors(o, "short_factor", what, r->short_factor, &ns, err));
    CELLM_TRY(get_factors(o, "long_factor", what, r->long_factor, &nl, err));
    if (ns != nl)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: RoPE short_factor has %d entries but long_factor %d; expected "
                          "one each per rotary frequency",
                          what, ns, nl);
    r->n_factors = ns;
    /* no default: without it the switch point between the lists is unknown */
    if (!cellm_json_get(o, "original_max_position_embeddings") &&
        !cellm_json_get(t, "original_max_position_embeddings"))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: longrope RoPE needs \"original_max_position_embeddings\" (in the "
                          "RoPE parameters or at the top level)",
                          what);
    CELLM_TRY(
        get_pos_num2(o, t, "original_max_position_embeddings", what, 0, &r->original_max_pos, err));
    CELLM_TRY(cellm_json_num(o, "factor", what, max_pos / r->original_max_pos, &r->factor, err));
    if (!(r->factor > 0) || !isfinite(r->factor))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: longrope RoPE \"factor\" is %g, expected a positive number", what,
                          r->factor);
    double af = r->factor <= 1 ? 1.0 : sqrt(1 + log(r->factor) / log(r->original_max_pos));
    CELLM_TRY(cellm_json_num(o, "attention_factor", what, af, &r->attn_factor, err));
    if (!(r->attn_factor > 0) || !isfinite(r->attn_factor))
        return cellm_errf(
            err, CELLM_ERR_FORMAT,
            "%s: longrope RoPE \"attention_factor\" is %g, expected a positive number", what,
            r->attn_factor);
    return CELLM_OK;
}

/* One RoPE parameter set: {rope_type|type, rope_theta?, factor, ...}; t is the text config
 * (top-level fallbacks), max_pos its max_position_embeddings. */
static enum cellm_status parse_rope(const cJSON *o, const cJSON *t, int max_pos, const char *what,
                                    const char *allowed, double theta_def, struct cellm_rope *r,
                                    struct cellm_error *err)
{
    const char *type = "default", *old = NULL;
    r->kind = CELLM_ROPE_DEFAULT;
    r->theta = theta_def;
    r->attn_factor = 1;
    if (!o) return CELLM_OK;
    if (!cJSON_IsObject(o))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: RoPE parameters are a %s, expected an object",
                          what, cellm_json_type(o));
    CELLM_TRY(cellm_json_str(o, "type", what, NULL, &old, err));
    CELLM_TRY(cellm_json_str(o, "rope_type", what, old ? old : "default", &type, err));
    CELLM_TRY(cellm_json_num(o, "rope_theta", what, theta_def, &r->theta, err));
    /* Phi3Config renames the legacy "type" values su and yarn to longrope */
    if (type == old && in_list(allowed, "longrope") && !in_list(allowed, "yarn") &&
        (!strcmp(type, "su") || !strcmp(type, "yarn")))
        type = "longrope";
    if (!strcmp(type, "default")) return CELLM_OK;
    if (!in_list(allowed, type))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: RoPE type \"%s\" is not supported (supported: default%s%s)", what,
                          type, *allowed ? "," : "", allowed);
    if (!strcmp(type, "yarn")) return parse_yarn(o, t, what, max_pos, r, err);
    if (!strcmp(type, "longrope")) return parse_longrope(o, t, what, max_pos, r, err);
    if (!strcmp(type, "proportional")) return cellm_gemma4_rope(o, what, r, err);
    CELLM_TRY(cellm_json_num(o, "factor", what, NAN, &r->factor, err));
    if (!(r->factor > 0))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: RoPE type %s needs a positive \"factor\"",
                          what, type);
    if (!strcmp(type, "linear")) {
        r->kind = CELLM_ROPE_LINEAR;
        return CELLM_OK;
    }
    r->kind = CELLM_ROPE_LLAMA3;
    CELLM_TRY(cellm_json_num(o, "low_freq_factor", what, NAN, &r->low_freq_factor, err));
    CELLM_TRY(cellm_json_num(o, "high_freq_factor", what, NAN, &r->high_freq_factor, err));
    CELLM_TRY(cellm_json_num(o, "original_max_position_embeddings", what, NAN, &r->original_max_pos,
                             err));
    if (!(r->low_freq_factor > 0) || !(r->high_freq_factor > r->low_freq_factor))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: llama3 RoPE needs 0 < low_freq_factor < high_freq_factor", what);
    return CELLM_OK;
}

static enum cellm_status parse_eos(const cJSON *j, const char *what, struct cellm_config *c,
                                   struct cellm_error *err)
{
    c->n_eos = 0;
    if (cJSON_IsNumber(j)) {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(j, "eos_token_id", what, 0, INT32_MAX, &v, err));
        c->eos[c->n_eos++] = (int32_t)v;
        return CELLM_OK;
    }
    if (!cJSON_IsArray(j))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"eos_token_id\" is a %s, expected an integer or a list", what,
                          cellm_json_type(j));
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(e, "eos_token_id", what, 0, INT32_MAX, &v, err));
        if (c->n_eos == CELLM_MAX_EOS)
            return cellm_errf(err, CELLM_ERR_RANGE, "%s: more than %d eos_token_id values", what,
                              CELLM_MAX_EOS);
        c->eos[c->n_eos++] = (int32_t)v;
    }
    return CELLM_OK;
}

static enum cellm_status parse_act(const char *name, const char *what, enum cellm_act *act,
                                   struct cellm_error *err)
{
    if (!strcmp(name, "silu") || !strcmp(name, "swish"))
        *act = CELLM_ACT_SILU;
    else if (!strcmp(name, "gelu_pytorch_tanh"))
        *act = CELLM_ACT_GELU_TANH;
    else if (!strcmp(name, "gelu"))
        *act = CELLM_ACT_GELU;
    else
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: activation \"%s\" is not supported (silu, gelu, gelu_pytorch_tanh)",
                          what, name);
    return CELLM_OK;
}

/*
 * SmolLM3's NoPE layers: no_rope_layers (1 = RoPE, 0 = none; at least one entry per layer),
 * else every no_rope_layer_interval-th layer (i + 1 a multiple of it) is NoPE.
 */
static enum cellm_status parse_nope(const cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err)
{
    c->layer_nope = cellm_calloc((size_t)c->n_layers, 1);
    if (!c->layer_nope) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    const cJSON *nr = cellm_json_get(t, "no_rope_layers");
    if (nr) {
        if (!cJSON_IsArray(nr) || cJSON_GetArraySize(nr) < c->n_layers)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: \"no_rope_layers\" must be a list of at least %d entries (0 "
                              "or 1), one per layer",
                              what, c->n_layers);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, nr)
        {
            int64_t v;
            CELLM_TRY(cellm_json_as_int(e, "no_rope_layers", what, 0, 1, &v, err));
            if (i < c->n_layers) c->layer_nope[i] = v == 0;
            i++;
        }
        return CELLM_OK;
    }
    int interval;
    CELLM_TRY(get_pos_int(t, "no_rope_layer_interval", what, 4, &interval, err));
    for (int i = 0; i < c->n_layers; i++)
        c->layer_nope[i] = (i + 1) % interval == 0;
    return CELLM_OK;
}

/* Which layers slide; layer_types wins over the family rule. */
static enum cellm_status parse_layers(const cJSON *t, const char *what,
                                      const struct cellm_family *f, struct cellm_config *c,
                                      struct cellm_error *err)
{
    c->layer_sliding = cellm_calloc((size_t)c->n_layers, 1);
    c->layer_moe = cellm_calloc((size_t)c->n_layers, 1);
    if (!c->layer_sliding || !c->layer_moe)
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    /* sliding_window: absent = family default, null = none */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(t, "sliding_window");
    int window = f->window_default;
    if (sw && cJSON_IsNull(sw))
        window = 0;
    else if (sw)
        CELLM_TRY(get_pos_int(t, "sliding_window", what, 0, &window, err));
    int use_sw = 1;
    if (f->sliding == CELLM_SLIDE_QWEN || f->sliding == CELLM_SLIDE_NOPE)
        CELLM_TRY(cellm_json_bool(t, "use_sliding_window", what, 0, &use_sw, err));
    if (f->sliding == CELLM_SLIDE_NONE || !use_sw) window = 0;
    c->window = window;
    const cJSON *lt = cellm_json_get(t, "layer_types");
    if (lt && window > 0) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: \"layer_types\" must be a list of %d strings", what,
                              c->n_layers);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lt)
        {
            if (!cJSON_IsString(e) || (strcmp(e->valuestring, "sliding_attention") &&
                                       strcmp(e->valuestring, "full_attention")))
                return cellm_errf(
                    err, CELLM_ERR_FORMAT,
                    "%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", what,
                    i);
            c->layer_sliding[i++] = !strcmp(e->valuestring, "sliding_attention");
        }
    } else if (window > 0) {
        int mwl = 0, pattern = f->pattern ? f->pattern : 6;
        if (f->sliding == CELLM_SLIDE_QWEN)
            CELLM_TRY(get_pos_int(t, "max_window_layers", what, 28, &mwl, err));
        if (f->sliding == CELLM_SLIDE_PATTERN)
            CELLM_TRY(get_pos_int(t, "sliding_window_pattern", what, pattern, &pattern, err));
        for (int i = 0; i < c->n_layers; i++) {
            switch (f->sliding) {
            case CELLM_SLIDE_ALL:
                c->layer_sliding[i] = 1;
                break;
            case CELLM_SLIDE_QWEN:
                c->layer_sliding[i] = i >= mwl;
                break;
            case CELLM_SLIDE_EVEN:
                c->layer_sliding[i] = i % 2 == 0;
                break;
            case CELLM_SLIDE_PATTERN:
                c->layer_sliding[i] = (i + 1) % pattern != 0;
                break;
            case CELLM_SLIDE_NOPE:
                c->layer_sliding[i] = c->layer_nope && c->layer_nope[i];
                break;
            case CELLM_SLIDE_NONE:
                break;
            }
        }
    }
    if (f->moe_grouped) { /* glm4_moe: layers i < first_k_dense_replace are dense */
        int64_t dense;
        CELLM_TRY(cellm_json_int(t, "first_k_dense_replace", what, 1, &dense, err));
        if (dense < 0)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: first_k_dense_replace is %lld; expected 0 or more", what,
                              (long long)dense);
        for (int i = 0; i < c->n_layers; i++)
            c->layer_moe[i] = c->n_experts > 0 && i >= dense;
    } else if (f->moe) {
        int step;
        CELLM_TRY(get_pos_int(t, "decoder_sparse_step", what, 1, &step, err));
        for (int i = 0; i < c->n_layers; i++)
            c->layer_moe[i] = c->n_experts > 0 && (i + 1) % step == 0;
        const cJSON *only = cellm_json_get(t, "mlp_only_layers");
        if (only) {
            if (!cJSON_IsArray(only))
                return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"mlp_only_layers\" must be a list",
                                  what);
            const cJSON *e;
            cJSON_ArrayForEach(e, only)
            {
                int64_t v;
                CELLM_TRY(
                    cellm_json_as_int(e, "mlp_only_layers", what, 0, c->n_layers - 1, &v, err));
                c->layer_moe[v] = 0;
            }
        }
    }
    return CELLM_OK;
}

/* RoPE of both layer kinds, from v5 rope_parameters or v4 rope_theta/rope_scaling. */
static enum cellm_status parse_ropes(const cJSON *t, const char *what, const struct cellm_family *f,
                                     struct cellm_config *c, double *partial,
                                     struct cellm_error *err)
{
    const cJSON *rp = cellm_json_get(t, "rope_parameters");
    double theta;
    CELLM_TRY(cellm_json_num(t, "rope_theta", what, f->rope_theta, &theta, err));
    CELLM_TRY(cellm_json_num(t, "partial_rotary_factor", what, f->partial_rotary, partial, err));
    /* per layer type: Gemma 3 (sliding layers default to base 10000, no scaling) and OLMo 3
     * (sliding layers default to rope_theta) */
    if (rp && (f->local_rope || f->rope_full_only) &&
        (cellm_json_get(rp, "full_attention") || cellm_json_get(rp, "sliding_attention"))) {
        CELLM_TRY(parse_rope(cellm_json_get(rp, "full_attention"), t, c->max_pos, what,
                             f->rope_types, theta, &c->rope, err));
        CELLM_TRY(parse_rope(cellm_json_get(rp, "sliding_attention"), t, c->max_pos, what, "",
                             f->local_rope ? 10000 : theta, &c->rope_local, err));
        return CELLM_OK;
    }
    if (rp) {
        CELLM_TRY(parse_rope(rp, t, c->max_pos, what, f->rope_types, theta, &c->rope, err));
        CELLM_TRY(cellm_json_num(rp, "partial_rotary_factor", what, *partial, partial, err));
    } else {
        CELLM_TRY(parse_rope(cellm_json_get(t, "rope_scaling"), t, c->max_pos, what, f->rope_types,
                             theta, &c->rope, err));
    }
    if (f->local_rope) {
        double local;
        CELLM_TRY(cellm_json_num(t, "rope_local_base_freq", what, 10000, &local, err));
        c->rope_local.kind = CELLM_ROPE_DEFAULT;
        c->rope_local.theta = local;
        c->rope_local.attn_factor = 1;
    } else if (f->rope_full_only) { /* OLMo 3: an old-format rope_scaling is for full layers */
        memset(&c->rope_local, 0, sizeof c->rope_local);
        c->rope_local.kind = CELLM_ROPE_DEFAULT;
        c->rope_local.theta = c->rope.theta;
        c->rope_local.attn_factor = 1;
    } else {
        c->rope_local = c->rope;
    }
    return CELLM_OK;
}

/*
 * gpt-oss (docs/forward/gpt-oss.md): 4 experts per token by default; the released configs also
 * carry experts_per_token (read when num_experts_per_tok is absent). The experts are
 * intermediate_size wide. alpha and limit are hard-coded 1.702 and 7.0 in older transformers, keys
 * in newer ones.
 */
static enum cellm_status gpt_oss_keys(const cJSON *t, const char *what, struct cellm_config *c,
                                      struct cellm_error *err)
{
    int k;
    CELLM_TRY(get_pos_int(t, "experts_per_token", what, 4, &k, err));
    CELLM_TRY(get_pos_int(t, "num_experts_per_tok", what, k, &c->n_experts_used, err));
    c->moe_ffn_dim = c->ffn_dim;
    c->router = CELLM_ROUTER_TOPK_SOFTMAX;
    c->expert_bias = 1;
    c->swiglu_clamp = 1;
    c->attn_sinks = 1;
    CELLM_TRY(cellm_json_num(t, "swiglu_limit", what, 7.0, &c->swiglu_limit, err));
    CELLM_TRY(cellm_json_num(t, "swiglu_alpha", what, 1.702, &c->swiglu_alpha, err));
    if (!(c->swiglu_limit > 0) || !isfinite(c->swiglu_limit) || !isfinite(c->swiglu_alpha))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: swiglu_limit %g / swiglu_alpha %g: expected a positive finite "
                          "limit and a finite alpha",
                          what, c->swiglu_limit, c->swiglu_alpha);
    return CELLM_OK;
}

/*
 * glm4_moe (docs/forward/glm4_moe.md): n_routed_experts (num_local_experts in transformers
 * 5's attribute map), the sigmoid router over n_group groups, routed_scaling_factor, and
 * n_shared_experts shared experts of moe_intermediate_size each. transformers scores a group
 * by its two best experts (topk(2)), so a group needs two experts or more.
 */
static enum cellm_status grouped_moe_keys(const cJSON *t, const char *what, struct cellm_config *c,
                                          struct cellm_error *err)
{
    CELLM_TRY(get_pos_int(t, "n_routed_experts", what, 128, &c->n_experts, err));
    CELLM_TRY(get_pos_int(t, "num_local_experts", what, c->n_experts, &c->n_experts, err));
    CELLM_TRY(get_pos_int(t, "moe_intermediate_size", what, 1408, &c->moe_ffn_dim, err));
    CELLM_TRY(cellm_json_bool(t, "norm_topk_prob", what, 1, &c->norm_topk_prob, err));
    CELLM_TRY(cellm_config_int(t, "n_group", what, 1, CELLM_MAX_EXPERT_GROUPS, &c->n_group, err));
    CELLM_TRY(get_pos_int(t, "topk_group", what, 1, &c->topk_group, err));
    CELLM_TRY(cellm_json_num(t, "routed_scaling_factor", what, 1.0, &c->routed_scale, err));
    int64_t shared;
    CELLM_TRY(cellm_json_int(t, "n_shared_experts", what, 1, &shared, err));
    c->router = CELLM_ROUTER_SIGMOID_GROUP;
    if (c->n_experts % c->n_group || c->n_experts / c->n_group < 2 || c->topk_group > c->n_group)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: n_routed_experts %d in n_group %d groups, topk_group %d: expected "
                          "groups of equal size, two experts or more each, and topk_group <= "
                          "n_group",
                          what, c->n_experts, c->n_group, c->topk_group);
    if (!isfinite(c->routed_scale) || shared < 0 || shared > 1024)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: routed_scaling_factor %g / n_shared_experts %lld: expected a "
                          "finite factor and 0 to 1024 shared experts",
                          what, c->routed_scale, (long long)shared);
    c->shared_ffn_dim = (int)shared * c->moe_ffn_dim;
    return CELLM_OK;
}

static enum cellm_status parse_text(const cJSON *top, const cJSON *t, const char *what,
                                    const struct cellm_family *f, struct cellm_config *c,
                                    struct cellm_error *err)
{
    snprintf(c->model_type, sizeof c->model_type, "%s", f->model_type);
    CELLM_TRY(get_pos_int(t, "vocab_size", what, f->vocab, &c->vocab, err));
    CELLM_TRY(get_pos_int(t, "hidden_size", what, f->dim, &c->dim, err));
    if (f->gemma3n && cJSON_IsArray(cellm_json_get(t, "intermediate_size")))
        c->ffn_dim = f->ffn_dim; /* one width per layer: cellm_gemma3n_keys reads them */
    else
        CELLM_TRY(get_pos_int(t, "intermediate_size", what, f->ffn_dim, &c->ffn_dim, err));
    CELLM_TRY(cellm_config_int(t, "num_hidden_layers", what, f->n_layers, CONFIG_MAX_LAYERS,
                               &c->n_layers, err));
    CELLM_TRY(get_pos_int(t, "num_attention_heads", what, f->n_heads, &c->n_heads, err));
    CELLM_TRY(get_pos_int(t, "num_key_value_heads", what,
                          f->n_kv_heads ? f->n_kv_heads : c->n_heads, &c->n_kv_heads, err));
    CELLM_TRY(get_pos_int(t, "max_position_embeddings", what, f->max_pos, &c->max_pos, err));
    int hd = f->head_dim ? f->head_dim : c->dim / c->n_heads;
    if (f->head_dim_from_config) CELLM_TRY(get_pos_int(t, "head_dim", what, hd, &hd, err));
    c->head_dim = hd;
    if (c->n_heads % c->n_kv_heads)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                          what, c->n_heads, c->n_kv_heads);
    if (!f->head_dim && !f->head_dim_from_config && c->dim % c->n_heads)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: hidden_size %d is not a multiple of num_attention_heads %d", what,
                          c->dim, c->n_heads);
    CELLM_TRY(cellm_json_num(t, f->eps_key, what, f->norm_eps, &c->norm_eps, err));
    c->norm = f->norm;
    const char *act;
    CELLM_TRY(cellm_json_str(t, f->act_key, what, f->act_default, &act, err));
    CELLM_TRY(parse_act(act, what, &c->act, err));

    double partial;
    CELLM_TRY(parse_ropes(t, what, f, c, &partial, err));
    c->rot_dims = (int)(c->head_dim * partial);
    if (c->rot_dims <= 0 || c->rot_dims % 2 || c->rot_dims > c->head_dim)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: partial_rotary_factor %g gives %d rotary dims of head_dim %d; "
                          "expected an even count",
                          what, partial, c->rot_dims, c->head_dim);
    if (c->rope.kind == CELLM_ROPE_LONGROPE && c->rope.n_factors != c->rot_dims / 2)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: RoPE short_factor and long_factor have %d entries; expected %d "
                          "(rotary dims %d / 2)",
                          what, c->rope.n_factors, c->rot_dims / 2, c->rot_dims);

    int ab = 0;
    switch (f->bias) {
    case CELLM_BIAS_ATTENTION_BIAS:
        /* GptOssConfig defaults attention_bias to true, the others to false */
        CELLM_TRY(cellm_json_bool(t, "attention_bias", what, f->gpt_oss, &ab, err));
        c->qkv_bias = c->o_bias = ab;
        break;
    case CELLM_BIAS_QKV_ALWAYS:
        c->qkv_bias = 1;
        break;
    case CELLM_BIAS_USE_QKV_BIAS:
        CELLM_TRY(cellm_json_bool(t, "use_qkv_bias", what, 0, &c->qkv_bias, err));
        break;
    case CELLM_BIAS_NONE:
        break;
    case CELLM_BIAS_ATTENTION_QKV:
        CELLM_TRY(cellm_json_bool(t, "attention_bias", what, 0, &c->qkv_bias, err));
        break;
    }
    if (f->bias == CELLM_BIAS_ATTENTION_BIAS)
        CELLM_TRY(cellm_json_bool(t, "mlp_bias", what, 0, &c->mlp_bias, err));
    if (f->qk_norm == 1) c->qk_norm = 1;
    if (f->qk_norm == 3) c->qk_norm_full = 1;
    if (f->qk_norm == 4) CELLM_TRY(cellm_json_bool(t, "use_qk_norm", what, 0, &c->qk_norm, err));
    if (f->qk_norm == 2) {
        CELLM_TRY(cellm_json_bool(t, "qk_layernorm", what, 0, &c->qk_norm, err));
        c->qk_norm_per_head = c->qk_norm;
    }
    c->block = f->block;
    if (f->norm == CELLM_NORM_LAYER) {
        int parallel;
        CELLM_TRY(cellm_json_bool(t, "use_parallel_residual", what, 0, &parallel, err));
        if (parallel) c->block = CELLM_BLOCK_PARALLEL;
    }
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    if (f->gemma_scale) {
        double qpas;
        CELLM_TRY(cellm_json_num(t, "query_pre_attn_scalar", what, 256, &qpas, err));
        if (!(qpas > 0))
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: query_pre_attn_scalar must be positive",
                              what);
        c->attn_scale = pow(qpas, -0.5);
    }
    CELLM_TRY(
        cellm_json_num(t, "attn_logit_softcapping", what, f->attn_softcap, &c->attn_softcap, err));
    CELLM_TRY(cellm_json_num(t, "final_logit_softcapping", what, f->final_softcap,
                             &c->final_softcap, err));
    if (c->attn_softcap < 0 || c->final_softcap < 0)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: soft-capping values must be positive", what);
    c->embed_scale = f->embed_scale;
    c->residual_mult = c->logits_div = 1;
    if (f->multipliers) {
        double am;
        CELLM_TRY(cellm_json_num(t, "embedding_multiplier", what, 1, &c->embed_mult, err));
        CELLM_TRY(cellm_json_num(t, "attention_multiplier", what, 1, &am, err));
        CELLM_TRY(cellm_json_num(t, "residual_multiplier", what, 1, &c->residual_mult, err));
        CELLM_TRY(cellm_json_num(t, "logits_scaling", what, 1, &c->logits_div, err));
        if (!(c->logits_div > 0) || !isfinite(c->embed_mult) || c->embed_mult == 0 ||
            !isfinite(am) || !isfinite(c->residual_mult) || !isfinite(c->logits_div))
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: embedding_multiplier (non-zero), attention_multiplier and "
                              "residual_multiplier must be finite and logits_scaling positive",
                              what);
        c->attn_scale = am; /* transformers' GraniteAttention: scaling = attention_multiplier */
        c->embed_scale = 1;
    }
    c->fused_qkv = c->fused_gate_up = f->fused;
    /* Gemma 3 multimodal keeps tie_word_embeddings at the top level */
    CELLM_TRY(cellm_json_bool(t, "tie_word_embeddings", what, f->tie, &c->tie_embeddings, err));
    if (top != t)
        CELLM_TRY(cellm_json_bool(top, "tie_word_embeddings", what, c->tie_embeddings,
                                  &c->tie_embeddings, err));
    c->routed_scale = 1;
    if (f->moe_grouped) {
        CELLM_TRY(get_pos_int(t, "num_experts_per_tok", what, 8, &c->n_experts_used, err));
        CELLM_TRY(grouped_moe_keys(t, what, c, err));
        if (c->n_experts_used > c->n_experts)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: num_experts_per_tok %d exceeds n_routed_experts %d", what,
                              c->n_experts_used, c->n_experts);
    } else if (f->moe) {
        CELLM_TRY(get_pos_int(t, "num_experts", what, 128, &c->n_experts, err));
        CELLM_TRY(get_pos_int(t, "num_local_experts", what, c->n_experts, &c->n_experts, err));
        CELLM_TRY(get_pos_int(t, "num_experts_per_tok", what, 8, &c->n_experts_used, err));
        if (f->gpt_oss)
            CELLM_TRY(gpt_oss_keys(t, what, c, err));
        else {
            CELLM_TRY(get_pos_int(t, "moe_intermediate_size", what, 768, &c->moe_ffn_dim, err));
            CELLM_TRY(cellm_json_bool(t, "norm_topk_prob", what, 0, &c->norm_topk_prob, err));
        }
        if (c->n_experts_used > c->n_experts)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: num_experts_per_tok %d exceeds num_experts %d", what,
                              c->n_experts_used, c->n_experts);
    }
    if (f->nope) CELLM_TRY(parse_nope(t, what, c, err));
    CELLM_TRY(parse_layers(t, what, f, c, err));
    if (f->llama4) CELLM_TRY(cellm_config_llama4(t, what, c, err));
    if (f->ministral3) CELLM_TRY(cellm_config_ministral3(t, what, c, err));
    if (f->hybrid) CELLM_TRY(cellm_hybrid_parse(t, what, f->hybrid, c, err));
    if (f->mla) CELLM_TRY(cellm_config_parse_mla(t, what, c, err));
    if (f->gemma4) CELLM_TRY(cellm_gemma4_keys(t, what, c, err));
    if (f->gemma3n) CELLM_TRY(cellm_gemma3n_keys(t, what, c, err));

    int64_t bos;
    CELLM_TRY(cellm_json_int(t, "bos_token_id", what, f->bos, &bos, err));
    c->bos = (int)bos;
    const cJSON *eos = cellm_json_get(top, "eos_token_id");
    if (!eos) eos = cellm_json_get(t, "eos_token_id");
    if (eos)
        CELLM_TRY(parse_eos(eos, what, c, err));
    else if (f->eos >= 0)
        c->eos[c->n_eos++] = f->eos;
    return cellm_quant_parse(top, what, &c->quant, err);
}

enum cellm_status cellm_config_parse(const char *json, size_t len, const char *gen_json,
                                     size_t gen_len, const char *what, struct cellm_config *out,
                                     struct cellm_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL, *gen = NULL;
    CELLM_TRY(cellm_json_parse(json, len, what, &root, err));
    enum cellm_status st = CELLM_OK;
    const char *mt = NULL;
    if (!cJSON_IsObject(root)) {
        st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: expected a JSON object", what);
        goto out;
    }
    if ((st = cellm_json_str(root, "model_type", what, NULL, &mt, err))) goto out;
    if (!mt) {
        st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"model_type\" is missing", what);
        goto out;
    }
    const cJSON *text = root;
    int wrapped;
    const struct cellm_family *f = cellm_family_find(mt, &wrapped);
    if (!f) {
        st = cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                        "%s: model_type \"%s\" is not supported (supported: %s)", what, mt,
                        cellm_family_list());
        goto out;
    }
    if (wrapped) {
        text = cellm_json_get(root, "text_config");
        if (!text || !cJSON_IsObject(text)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT,
                            "%s: model_type %s needs a \"text_config\" object", what, mt);
            goto out;
        }
    }
    if ((st = parse_text(root, text, what, f, out, err))) goto out;
    if (gen_json) {
        if ((st = cellm_json_parse(gen_json, gen_len, "generation_config.json", &gen, err)))
            goto out;
        const cJSON *eos = cellm_json_get(gen, "eos_token_id");
        if (eos && (st = parse_eos(eos, "generation_config.json", out, err))) goto out;
    }
out:
    cJSON_Delete(root);
    cJSON_Delete(gen);
    if (st) cellm_config_free(out);
    return st;
}

enum cellm_status cellm_config_load(const char *dir, struct cellm_config *out,
                                    struct cellm_error *err)
{
    char *p = cellm_path_join(dir, "config.json");
    char *g = cellm_path_join(dir, "generation_config.json");
    char *text = NULL, *gtext = NULL;
    size_t len = 0, glen = 0;
    enum cellm_status st;
    memset(out, 0, sizeof *out);
    if (!p || !g) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    if ((st = cellm_read_file(p, &text, &len, err))) goto out;
    if (cellm_file_exists(g) && (st = cellm_read_file(g, &gtext, &glen, err))) goto out;
    st = cellm_config_parse(text, len, gtext, glen, p, out, err);
out:
    cellm_free(p);
    cellm_free(g);
    cellm_free(text);
    cellm_free(gtext);
    return st;
}
