/*
 * gemma4.c: Gemma 4's config keys, proportional RoPE, expert names and per-layer
 * embeddings (docs/forward/gemma4.md; transformers' configuration_gemma4.py and
 * modeling_gemma4.py, mlx-lm's gemma4_text.py).
 */
#include "gemma4.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"

static enum cellm_status get_int(const cJSON *t, const char *key, const char *what, int def, int lo,
                                 int *out, struct cellm_error *err)
{
    int64_t v;
    CELLM_TRY(cellm_json_int(t, key, what, def, &v, err));
    if (v < lo || v > (1 << 30))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is %lld; expected an integer >= %d",
                          what, key, (long long)v, lo);
    *out = (int)v;
    return CELLM_OK;
}

enum cellm_status cellm_gemma4_rope(const cJSON *o, const char *what, struct cellm_rope *r,
                                    struct cellm_error *err)
{
    r->kind = CELLM_ROPE_PROPORTIONAL;
    CELLM_TRY(cellm_json_num(o, "factor", what, 1.0, &r->factor, err));
    CELLM_TRY(cellm_json_num(o, "partial_rotary_factor", what, 1.0, &r->partial, err));
    if (!(r->factor > 0) || !(r->partial > 0) || r->partial > 1)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: proportional RoPE has factor %g and partial_rotary_factor %g; "
                          "expected a positive factor and a fraction in (0, 1]",
                          what, r->factor, r->partial);
    return CELLM_OK;
}

enum cellm_status cellm_gemma4_keys(const cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err)
{
    c->gemma4 = 1;
    c->attn_scale = 1.0; /* q and k are normed; Gemma4TextAttention's scaling is 1 */
    CELLM_TRY(get_int(t, "global_head_dim", what, 512, 2, &c->global_head_dim, err));
    CELLM_TRY(cellm_json_bool(t, "attention_k_eq_v", what, 0, &c->k_eq_v, err));
    CELLM_TRY(get_int(t, "num_global_key_value_heads", what, c->n_kv_heads, 1,
                      &c->n_global_kv_heads, err));
    if (!c->k_eq_v) c->n_global_kv_heads = c->n_kv_heads;
    if (c->global_head_dim % 2 || c->n_heads % c->n_global_kv_heads)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: global_head_dim %d must be even and num_attention_heads %d a "
                          "multiple of num_global_key_value_heads %d",
                          what, c->global_head_dim, c->n_heads, c->n_global_kv_heads);
    CELLM_TRY(get_int(t, "hidden_size_per_layer_input", what, 256, 0, &c->ple_dim, err));
    CELLM_TRY(get_int(t, "vocab_size_per_layer_input", what, 262144, 1, &c->ple_vocab, err));
    CELLM_TRY(get_int(t, "num_kv_shared_layers", what, 0, 0, &c->n_kv_shared, err));
    if (c->n_kv_shared >= c->n_layers)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: num_kv_shared_layers %d leaves no layer of the %d to compute keys",
                          what, c->n_kv_shared, c->n_layers);
    CELLM_TRY(cellm_json_bool(t, "use_double_wide_mlp", what, 0, &c->double_wide, err));
    const char *bidi = NULL;
    const cJSON *b = cellm_json_get(t, "use_bidirectional_attention");
    if (b && cJSON_IsString(b)) bidi = b->valuestring;
    if (bidi && !strcmp(bidi, "all"))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: use_bidirectional_attention \"all\" makes every layer non-causal; "
                          "cellm generates text causally",
                          what);
    /* transformers' Gemma4TextConfig makes the last layer a full-attention one */
    c->layer_sliding[c->n_layers - 1] = 0;
    if (c->rope.kind == CELLM_ROPE_DEFAULT) c->rope.partial = 1;
    for (int i = 0; i < c->n_layers; i++)
        if (c->layer_sliding[i] && c->window <= 0)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: sliding layers need a sliding_window",
                              what);
    CELLM_TRY(cellm_json_bool(t, "enable_moe_block", what, 0, &c->moe_parallel, err));
    if (!c->moe_parallel) return CELLM_OK;
    CELLM_TRY(get_int(t, "num_experts", what, 0, 1, &c->n_experts, err));
    CELLM_TRY(get_int(t, "top_k_experts", what, 0, 1, &c->n_experts_used, err));
    CELLM_TRY(get_int(t, "moe_intermediate_size", what, 0, 1, &c->moe_ffn_dim, err));
    if (c->n_experts_used > c->n_experts)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: top_k_experts %d exceeds num_experts %d",
                          what, c->n_experts_used, c->n_experts);
    c->norm_topk_prob = 1;
    for (int i = 0; i < c->n_layers; i++)
        c->layer_moe[i] = 1;
    return CELLM_OK;
}

enum cellm_experts cellm_gemma4_probe_experts(const struct cellm_desc *d)
{
    char n[128];
    snprintf(n, sizeof n, "model.layers.0.experts.switch_glu.gate_proj.weight");
    return cellm_ckpt_find(&d->ckpt, n) ? CELLM_EXPERTS_STACKED : CELLM_EXPERTS_FUSED_V5;
}

/* transformers' bare parameter [E, rows, cols] ([out, in] per expert) in F32/F16/BF16. */
static enum cellm_status bind_bare(struct cellm_desc *d, const char *name, int64_t E, int64_t rows,
                                   int64_t cols, struct cellm_weight *w, struct cellm_error *err)
{
    const struct cellm_ckpt_entry *e = cellm_ckpt_find(&d->ckpt, name);
    if (!e) return cellm_ckpt_missing(&d->ckpt, name, err);
    const struct cellm_st_tensor *t = e->t;
    enum cellm_wfmt fmt = t->dtype == CELLM_DT_F32    ? CELLM_W_F32
                          : t->dtype == CELLM_DT_F16  ? CELLM_W_F16
                          : t->dtype == CELLM_DT_BF16 ? CELLM_W_BF16
                                                      : CELLM_W_NONE;
    const char *file = cellm_ckpt_file_name(&d->ckpt, e->file);
    if (fmt == CELLM_W_NONE)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s has dtype %s; expected F32, F16 or BF16", file, name,
                          cellm_dtype_name(t->dtype));
    if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != rows || t->shape[2] != cols)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: the config implies shape [%lld, %lld, %lld]", file, name,
                          (long long)E, (long long)rows, (long long)cols);
    struct cellm_weight all;
    memset(&all, 0, sizeof all);
    all.fmt = fmt;
    all.rows = E * rows;
    all.cols = cols;
    all.data = t->data;
    all.name = e->name;
    all.row_bytes = (size_t)cols * (fmt == CELLM_W_F32 ? 4 : 2);
    for (int64_t x = 0; x < E; x++)
        w[x] = cellm_weight_rows(&all, x * rows, rows);
    d->n_params += (uint64_t)(E * rows * cols);
    d->n_bytes += t->nbytes;
    return CELLM_OK;
}

enum cellm_status cellm_gemma4_bind_experts(struct cellm_desc *d, const char *p,
                                            struct cellm_layer *L, enum cellm_lt id,
                                            struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    int64_t E = c->n_experts, I = c->moe_ffn_dim, H = c->dim;
    char full[256];
    if (d->experts == CELLM_EXPERTS_STACKED) { /* mlx-lm: gate_up_proj split on its rows */
        const char *part = id == CELLM_LT_E_GATE ? "gate_proj"
                           : id == CELLM_LT_E_UP ? "up_proj"
                                                 : "down_proj";
        snprintf(full, sizeof full, "%sexperts.switch_glu.%s", p, part);
        struct cellm_weight *w = (struct cellm_weight *)cellm_layer_experts(L, id);
        int down = id == CELLM_LT_E_DOWN;
        return cellm_bind_matrix(d, full, E, down ? H : I, down ? I : H, w, err);
    }
    if (id == CELLM_LT_E_UP) return CELLM_OK; /* filled with the gate's rows */
    if (id == CELLM_LT_E_DOWN) {
        snprintf(full, sizeof full, "%sexperts.down_proj", p);
        return bind_bare(d, full, E, H, I, L->e_down, err);
    }
    /* gate_up_proj [E, 2I, H]: the first I rows of each expert are the gate */
    struct cellm_weight *gu = cellm_calloc((size_t)E, sizeof *gu);
    if (!gu) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    snprintf(full, sizeof full, "%sexperts.gate_up_proj", p);
    enum cellm_status st = bind_bare(d, full, E, 2 * I, H, gu, err);
    for (int64_t x = 0; st == CELLM_OK && x < E; x++) {
        L->e_gate[x] = cellm_weight_rows(&gu[x], 0, I);
        L->e_up[x] = cellm_weight_rows(&gu[x], I, I);
    }
    cellm_free(gu);
    return st;
}

void cellm_gemma4_inv_freq(const struct cellm_rope *r, int head_dim, float *out)
{
    /* rope_angles = int(partial * head_dim // 2); exponents over the whole head; the
     * remaining angles have frequency 0 and leave their pairs unrotated */
    int angles = (int)floor(r->partial * head_dim / 2);
    float factor = r->kind == CELLM_ROPE_PROPORTIONAL ? (float)r->factor : 1.0f;
    for (int i = 0; i < head_dim / 2; i++) {
        float inv = 0;
        if (i < angles) {
            float e = (float)(2 * i) / (float)head_dim;
            inv = 1.0f / powf((float)r->theta, e);
        }
        out[i] = inv / factor;
    }
}

enum cellm_status cellm_gemma4_bind(struct cellm_desc *d, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    int D = c->global_head_dim;
    d->inv_freq_prop = cellm_desc_own(d, (size_t)(D / 2 + 1) * sizeof(float));
    if (!d->inv_freq_prop) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    cellm_gemma4_inv_freq(&c->rope, D, d->inv_freq_prop);
    for (int i = 0; i < c->n_layers; i++) {
        struct cellm_layer *L = &d->layers[i];
        if (L->attn != CELLM_ATTN_FULL) continue;
        L->inv_freq = d->inv_freq_prop;
        L->inv_freq_long = NULL;
        L->rope_attn = 1;
    }
    return cellm_gemma4_bind_ple(d, err);
}

enum cellm_status cellm_gemma4_bind_ple(struct cellm_desc *d, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    if (c->ple_dim <= 0) return CELLM_OK;
    int64_t LP = (int64_t)c->n_layers * c->ple_dim;
    d->ple_scale = (float)sqrt((double)c->ple_dim);
    CELLM_TRY(cellm_bind_matrix(d, "model.embed_tokens_per_layer", 0, c->ple_vocab, LP,
                                &d->ple_embed, err));
    CELLM_TRY(cellm_bind_matrix(d, "model.per_layer_model_projection", 0, LP, c->dim, &d->ple_model,
                                err));
    return cellm_bind_vec(d, "model.per_layer_projection_norm.weight", c->ple_dim, 1, &d->ple_norm,
                          err);
}

const char *cellm_config_gemma4_pieces(const struct cellm_config *c)
{
    if (!c->gemma4) return NULL;
    return "Gemma 4's layers (per-layer head sizes and KV heads, proportional RoPE, k=v "
           "attention, the weightless v norm, KV sharing, per-layer embeddings, layer_scalar "
           "and the MoE block beside the dense MLP)";
}
