/*
 * hparams_l4.c: Llama 4 text and Mistral 3 text config keys (docs/forward/llama4.md,
 * docs/forward/ministral3.md), with transformers' class defaults (Llama4TextConfig,
 * Ministral3Config).
 */
#include "hparams_l4.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

/* A list of n_layers integers 0/1 at key into out; absent leaves out as it is. */
static enum cellm_status layer_flags(const cJSON *t, const char *key, const char *what, int n,
                                     uint8_t *out, int *given, struct cellm_error *err)
{
    const cJSON *a = cellm_json_get(t, key);
    *given = 0;
    if (!a) return CELLM_OK;
    if (!cJSON_IsArray(a))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is a %s, expected a list", what, key,
                          cellm_json_type(a));
    if (cJSON_GetArraySize(a) == 0) return CELLM_OK; /* transformers: empty = the default */
    if (cJSON_GetArraySize(a) != n)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"%s\" has %d entries, expected one per layer (%d)", what, key,
                          cJSON_GetArraySize(a), n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(e, key, what, 0, 1, &v, err));
        out[i++] = (uint8_t)v;
    }
    *given = 1;
    return CELLM_OK;
}

/* moe_layers: a list of layer indices; without it every step-th layer (step - 1, 2 step - 1,
 * ...), transformers' range(step - 1, L, step). */
static enum cellm_status moe_layers(const cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err)
{
    int step;
    CELLM_TRY(cellm_config_int(t, "interleave_moe_layer_step", what, 1, 1 << 30, &step, err));
    const cJSON *a = cellm_json_get(t, "moe_layers");
    memset(c->layer_moe, 0, (size_t)c->n_layers);
    if (!a) {
        for (int i = step - 1; i < c->n_layers; i += step)
            c->layer_moe[i] = 1;
        return CELLM_OK;
    }
    if (!cJSON_IsArray(a))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"moe_layers\" is a %s, expected a list",
                          what, cellm_json_type(a));
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(e, "moe_layers", what, 0, c->n_layers - 1, &v, err));
        c->layer_moe[v] = 1;
    }
    return CELLM_OK;
}

/* layer_types of Llama 4: "chunked_attention" or "full_attention" per layer. */
static enum cellm_status chunk_types(const cJSON *t, const char *what, struct cellm_config *c,
                                     struct cellm_error *err)
{
    const cJSON *lt = cellm_json_get(t, "layer_types");
    if (!lt) {
        for (int i = 0; i < c->n_layers; i++)
            c->layer_chunked[i] = !c->layer_nope[i];
        return CELLM_OK;
    }
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"layer_types\" must be a list of %d strings",
                          what, c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt)
    {
        if (!cJSON_IsString(e) || (strcmp(e->valuestring, "chunked_attention") &&
                                   strcmp(e->valuestring, "full_attention")))
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: layer_types[%d] must be \"chunked_attention\" or "
                              "\"full_attention\"",
                              what, i);
        c->layer_chunked[i++] = !strcmp(e->valuestring, "chunked_attention");
    }
    return CELLM_OK;
}

enum cellm_status cellm_config_llama4(const cJSON *t, const char *what, struct cellm_config *c,
                                      struct cellm_error *err)
{
    /* intermediate_size is the experts' (and the shared expert's) width; dense layers use
     * intermediate_size_mlp */
    c->moe_ffn_dim = c->ffn_dim;
    CELLM_TRY(cellm_config_int(t, "intermediate_size_mlp", what, 16384, 1 << 30, &c->ffn_dim, err));
    CELLM_TRY(cellm_config_int(t, "num_local_experts", what, 16, 1 << 30, &c->n_experts, err));
    CELLM_TRY(
        cellm_config_int(t, "num_experts_per_tok", what, 1, 1 << 30, &c->n_experts_used, err));
    if (c->n_experts_used > c->n_experts)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: num_experts_per_tok %d exceeds num_local_experts %d", what,
                          c->n_experts_used, c->n_experts);
    c->router = CELLM_ROUTER_SIGMOID_INPUT;
    c->shared_expert = 1;
    c->shared_ffn_dim = c->moe_ffn_dim;
    c->feed_forward = 1;
    CELLM_TRY(moe_layers(t, what, c, err));

    c->rope_interleaved = 1;
    c->layer_nope = cellm_calloc((size_t)c->n_layers, 1);
    c->layer_chunked = cellm_calloc((size_t)c->n_layers, 1);
    if (!c->layer_nope || !c->layer_chunked)
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    /* no_rope_layers holds 1 for a RoPE layer; the default makes every interval-th a NoPE */
    uint8_t *rope = cellm_calloc((size_t)c->n_layers, 1);
    if (!rope) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    int interval, given;
    enum cellm_status st =
        cellm_config_int(t, "no_rope_layer_interval", what, 4, 1 << 30, &interval, err);
    if (!st) st = layer_flags(t, "no_rope_layers", what, c->n_layers, rope, &given, err);
    for (int i = 0; !st && i < c->n_layers; i++)
        c->layer_nope[i] = given ? !rope[i] : (i + 1) % interval == 0;
    cellm_free(rope);
    CELLM_TRY(st);

    const cJSON *cs = cellm_json_get(t, "attention_chunk_size");
    c->attn_chunk = 8192;
    if (cJSON_GetObjectItemCaseSensitive(t, "attention_chunk_size") && !cs)
        c->attn_chunk = 0; /* null: no chunking */
    else
        CELLM_TRY(
            cellm_config_int(t, "attention_chunk_size", what, 8192, 1 << 30, &c->attn_chunk, err));
    CELLM_TRY(chunk_types(t, what, c, err));
    if (!c->attn_chunk) memset(c->layer_chunked, 0, (size_t)c->n_layers);

    CELLM_TRY(cellm_json_bool(t, "use_qk_norm", what, 1, &c->qk_l2norm, err));
    /* a bool in transformers; mlx-lm reads an int and tests its truth */
    const cJSON *tt = cellm_json_get(t, "attn_temperature_tuning");
    c->attn_temp = 1;
    if (tt && cJSON_IsNumber(tt))
        c->attn_temp = tt->valuedouble != 0;
    else if (tt)
        CELLM_TRY(cellm_json_bool(t, "attn_temperature_tuning", what, 1, &c->attn_temp, err));
    CELLM_TRY(cellm_json_num(t, "floor_scale", what, 8192, &c->temp_floor, err));
    CELLM_TRY(cellm_json_num(t, "attn_scale", what, 0.1, &c->temp_scale, err));
    if (!(c->temp_floor > 0) || !isfinite(c->temp_floor) || !isfinite(c->temp_scale))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: floor_scale %g must be positive and attn_scale %g finite", what,
                          c->temp_floor, c->temp_scale);
    return CELLM_OK;
}

enum cellm_status cellm_config_ministral3(const cJSON *t, const char *what, struct cellm_config *c,
                                          struct cellm_error *err)
{
    const cJSON *rp = cellm_json_get(t, "rope_parameters");
    if (!rp) rp = cellm_json_get(t, "rope_scaling");
    if (!rp) {
        /* Ministral3Config's default rope_parameters: yarn, factor 16 over 16384 */
        struct cellm_rope *r = &c->rope;
        memset(r, 0, sizeof *r);
        r->kind = CELLM_ROPE_YARN;
        CELLM_TRY(cellm_json_num(t, "rope_theta", what, 1e6, &r->theta, err));
        r->factor = 16;
        r->original_max_pos = 16384;
        r->beta_fast = 32;
        r->beta_slow = 1;
        r->truncate = 1;
        r->mscale = r->mscale_all_dim = 1;
        r->attn_factor = 1; /* get_mscale(16, 1) / get_mscale(16, 1) */
        c->rope_local = c->rope;
        c->qscale_beta = 0.1;
        c->qscale_len = 16384;
        return CELLM_OK;
    }
    /* transformers reads both from rope_parameters and fails without them */
    if (!cellm_json_get(rp, "llama_4_scaling_beta") ||
        !cellm_json_get(rp, "original_max_position_embeddings"))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: ministral3 RoPE parameters need \"llama_4_scaling_beta\" and "
                          "\"original_max_position_embeddings\" (the query scale by position)",
                          what);
    CELLM_TRY(cellm_json_num(rp, "llama_4_scaling_beta", what, 0, &c->qscale_beta, err));
    CELLM_TRY(cellm_json_num(rp, "original_max_position_embeddings", what, 0, &c->qscale_len, err));
    if (!isfinite(c->qscale_beta) || !(c->qscale_len > 0) || !isfinite(c->qscale_len))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: llama_4_scaling_beta %g must be finite and "
                          "original_max_position_embeddings %g positive",
                          what, c->qscale_beta, c->qscale_len);
    return CELLM_OK;
}
