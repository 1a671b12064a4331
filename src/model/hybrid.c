/*
 * hybrid.c: config keys, storage probing and binding of the state layers (hybrid.h):
 * LFM2 (docs/forward/lfm2.md) and the Gated DeltaNet hybrids Qwen3-Next / Qwen3.5
 * (docs/forward/qwen3-next.md).
 */
#include "hybrid.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "model.h"

/* layer_types of a hybrid: `state` names the state layers, full_attention the others. */
static enum cellm_status parse_types(const cJSON *lt, const char *what, const char *state,
                                     enum cellm_mixer kind, struct cellm_config *c,
                                     struct cellm_error *err)
{
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"layer_types\" must be a list of %d strings",
                          what, c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt)
    {
        if (!cJSON_IsString(e) ||
            (strcmp(e->valuestring, state) && strcmp(e->valuestring, "full_attention")))
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: layer_types[%d] must be \"%s\" or \"full_attention\"", what, i,
                              state);
        c->layer_mixer[i++] = !strcmp(e->valuestring, state) ? (uint8_t)kind : CELLM_MIXER_ATTN;
    }
    return CELLM_OK;
}

/* LFM2: conv layers everywhere but full_attn_idxs when layer_types is absent; the MLP
 * width adjusted as Lfm2MLP does. */
static enum cellm_status parse_lfm2(const cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err)
{
    const cJSON *lt = cellm_json_get(t, "layer_types");
    if (lt) {
        CELLM_TRY(parse_types(lt, what, "conv", CELLM_MIXER_CONV, c, err));
    } else {
        const cJSON *idx = cellm_json_get(t, "full_attn_idxs");
        for (int i = 0; i < c->n_layers; i++)
            c->layer_mixer[i] = idx ? CELLM_MIXER_CONV : CELLM_MIXER_ATTN;
        const cJSON *e;
        if (idx && !cJSON_IsArray(idx))
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"full_attn_idxs\" must be a list", what);
        cJSON_ArrayForEach(e, idx)
        {
            int64_t v;
            CELLM_TRY(cellm_json_as_int(e, "full_attn_idxs", what, 0, c->n_layers - 1, &v, err));
            c->layer_mixer[v] = CELLM_MIXER_ATTN;
        }
    }
    CELLM_TRY(cellm_config_int(t, "conv_L_cache", what, 3, 1 << 20, &c->conv_kernel, err));
    int bias;
    CELLM_TRY(cellm_json_bool(t, "conv_bias", what, 0, &bias, err));
    if (bias)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: conv_bias true (biases on the LFM2 conv blocks) is not supported",
                          what);
    int ff = c->ffn_dim, adjust, mult_of;
    CELLM_TRY(cellm_config_int(t, "block_ff_dim", what, ff, 1 << 20, &ff, err));
    CELLM_TRY(cellm_json_bool(t, "block_auto_adjust_ff_dim", what, 1, &adjust, err));
    CELLM_TRY(cellm_config_int(t, "block_multiple_of", what, 256, 1 << 20, &mult_of, err));
    if (adjust) {
        ff = (int)(2 * ff / 3);
        const cJSON *m = cellm_json_get(t, "block_ffn_dim_multiplier");
        if (m && !cJSON_IsNull(m)) {
            double mult;
            CELLM_TRY(cellm_json_num(t, "block_ffn_dim_multiplier", what, 1, &mult, err));
            ff = (int)(mult * ff);
            ff = mult_of * ((ff + mult_of - 1) / mult_of);
        }
    }
    if (ff <= 0)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: the LFM2 MLP width comes out as %d", what,
                          ff);
    c->ffn_dim = ff;
    if (!cellm_json_get(t, "tie_word_embeddings"))
        CELLM_TRY(
            cellm_json_bool(t, "tie_embedding", what, c->tie_embeddings, &c->tie_embeddings, err));
    return CELLM_OK;
}

static enum cellm_status parse_gdn(const cJSON *t, const char *what, int hybrid,
                                   struct cellm_config *c, struct cellm_error *err)
{
    const cJSON *lt = cellm_json_get(t, "layer_types");
    if (lt) {
        CELLM_TRY(parse_types(lt, what, "linear_attention", CELLM_MIXER_GDN, c, err));
    } else {
        int every;
        CELLM_TRY(cellm_config_int(t, "full_attention_interval", what, 4, 1 << 20, &every, err));
        for (int i = 0; i < c->n_layers; i++)
            c->layer_mixer[i] = (i + 1) % every ? CELLM_MIXER_GDN : CELLM_MIXER_ATTN;
    }
    CELLM_TRY(
        cellm_config_int(t, "linear_conv_kernel_dim", what, 4, 1 << 20, &c->conv_kernel, err));
    CELLM_TRY(cellm_config_int(t, "linear_num_key_heads", what, 16, 1 << 20, &c->lin_nk, err));
    CELLM_TRY(cellm_config_int(t, "linear_num_value_heads", what, 32, 1 << 20, &c->lin_nv, err));
    CELLM_TRY(cellm_config_int(t, "linear_key_head_dim", what, 128, 1 << 20, &c->lin_dk, err));
    CELLM_TRY(cellm_config_int(t, "linear_value_head_dim", what, 128, 1 << 20, &c->lin_dv, err));
    if (c->lin_nv % c->lin_nk)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: linear_num_value_heads %d is not a multiple of "
                          "linear_num_key_heads %d",
                          what, c->lin_nv, c->lin_nk);
    /* the output gate of the attention layers (q_proj twice as wide); Qwen3.5's configs
     * name it, Qwen3-Next always has it */
    CELLM_TRY(cellm_json_bool(t, "attn_output_gate", what, 1, &c->attn_out_gate, err));
    if (c->n_experts) {
        CELLM_TRY(cellm_config_int(t, "shared_expert_intermediate_size", what, 512, 1 << 20,
                                   &c->shared_ffn_dim, err));
        /* Qwen3.5-MoE always renormalises (its config has no key); Qwen3-Next's default is
         * true */
        if (hybrid == CELLM_HYBRID_QWEN3_5)
            c->norm_topk_prob = 1;
        else
            CELLM_TRY(cellm_json_bool(t, "norm_topk_prob", what, 1, &c->norm_topk_prob, err));
    }
    return CELLM_OK;
}

enum cellm_status cellm_hybrid_parse(const void *tv, const char *what, int hybrid,
                                     struct cellm_config *c, struct cellm_error *err)
{
    const cJSON *t = tv;
    c->hybrid = hybrid;
    c->layer_mixer = cellm_calloc((size_t)c->n_layers, 1);
    if (!c->layer_mixer) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    if (hybrid == CELLM_HYBRID_LFM2) return parse_lfm2(t, what, c, err);
    return parse_gdn(t, what, hybrid, c, err);
}

int cellm_config_has_state(const struct cellm_config *c)
{
    return cellm_config_first_state_layer(c) >= 0;
}

int cellm_config_first_state_layer(const struct cellm_config *c)
{
    for (int l = 0; c->layer_mixer && l < c->n_layers; l++)
        if (c->layer_mixer[l] != CELLM_MIXER_ATTN) return l;
    return -1;
}

enum cellm_status cellm_state_row_check(const struct cellm_config *c,
                                        const struct cellm_exec_row *rows, int i, int held,
                                        struct cellm_error *err)
{
    int want = held;
    for (int j = i - 1; j >= 0; j--)
        if (rows[j].seq == rows[i].seq) {
            want = rows[j].pos + 1;
            break;
        }
    if (rows[i].pos == want) return CELLM_OK;
    return cellm_errf(err, CELLM_ERR_ARG,
                      "sequence %d: a row at position %d, but the conv/recurrent state of layer "
                      "%d holds positions [0, %d); a state cannot be rewound or skip positions "
                      "(truncate the sequence to 0 and evaluate it again)",
                      rows[i].seq, rows[i].pos, cellm_config_first_state_layer(c), want);
}

const char *cellm_config_state_pieces(const struct cellm_config *c)
{
    if (!cellm_config_has_state(c)) return NULL;
    if (c->hybrid == CELLM_HYBRID_LFM2)
        return "short gated convolution layers with per-sequence conv state (LFM2)";
    return "Gated DeltaNet linear-attention layers with per-sequence recurrent and conv state, "
           "gated attention and shared experts";
}

int64_t cellm_hybrid_channels(const struct cellm_config *c)
{
    if (c->hybrid == CELLM_HYBRID_LFM2) return c->dim;
    return 2 * (int64_t)c->lin_nk * c->lin_dk + (int64_t)c->lin_nv * c->lin_dv;
}

int64_t cellm_hybrid_conv_floats(const struct cellm_config *c, int l)
{
    if (!c->layer_mixer || c->layer_mixer[l] == CELLM_MIXER_ATTN) return 0;
    return (int64_t)(c->conv_kernel - 1) * cellm_hybrid_channels(c);
}

int64_t cellm_hybrid_rec_floats(const struct cellm_config *c, int l)
{
    if (!c->layer_mixer || c->layer_mixer[l] != CELLM_MIXER_GDN) return 0;
    return (int64_t)c->lin_nv * c->lin_dk * c->lin_dv;
}

int64_t cellm_hybrid_max_cols(const struct cellm_config *c)
{
    int64_t m = 0, vd = (int64_t)c->lin_nv * c->lin_dv;
    if (c->hybrid) m = c->dim;
    if (vd > m) m = vd;
    if (c->shared_ffn_dim > m) m = c->shared_ffn_dim;
    return m;
}

/* LFM2's names for the table's tensors. */
static const char *const lfm2_names[][2] = {
    {"input_layernorm.weight", "operator_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.o_proj", "self_attn.out_proj"},
    {"self_attn.q_norm.weight", "self_attn.q_layernorm.weight"},
    {"self_attn.k_norm.weight", "self_attn.k_layernorm.weight"},
    {"mlp.gate_proj", "feed_forward.w1"},
    {"mlp.up_proj", "feed_forward.w3"},
    {"mlp.down_proj", "feed_forward.w2"},
};

const char *cellm_hybrid_alias(const struct cellm_config *c, const char *name)
{
    if (c->hybrid != CELLM_HYBRID_LFM2) return name;
    for (size_t i = 0; i < sizeof lfm2_names / sizeof lfm2_names[0]; i++)
        if (!strcmp(lfm2_names[i][0], name)) return lfm2_names[i][1];
    return name;
}

const char *cellm_hybrid_final_norm(const struct cellm_config *c)
{
    return c->hybrid == CELLM_HYBRID_LFM2 ? "model.embedding_norm.weight" : "model.norm.weight";
}

static const char *conv_name(const struct cellm_config *c)
{
    return c->hybrid == CELLM_HYBRID_LFM2 ? "conv.conv.weight" : "linear_attn.conv1d.weight";
}

/*
 * The conv weight [C, 1, K] (Hugging Face) or [C, K, 1] (mlx-lm moved it): the same bytes
 * channel-major either way, so it binds as one vector of C * K. Whether it was moved says
 * whether mlx-lm also stored the zero-centred norms of Qwen3-Next / Qwen3.5 as w + 1 (its
 * sanitize does both at once): then they multiply by the stored weight (fl(1 + w) of the
 * reference equals the stored value exactly).
 */
static enum cellm_status bind_conv(struct cellm_desc *d, int l, struct cellm_vec *v, int *moved,
                                   struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, conv_name(c));
    const struct cellm_ckpt_entry *e = cellm_ckpt_find(&d->ckpt, name);
    if (!e) return cellm_ckpt_missing(&d->ckpt, name, err);
    const struct cellm_st_tensor *t = e->t;
    int64_t C = cellm_hybrid_channels(c), K = c->conv_kernel;
    int hf = t->ndim == 3 && t->shape[0] == C && t->shape[1] == 1 && t->shape[2] == K;
    int mlx = t->ndim == 3 && t->shape[0] == C && t->shape[1] == K && t->shape[2] == 1;
    if (!hf && !mlx)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s has %d dims; expected [%lld, 1, %lld] (Hugging Face) or "
                          "[%lld, %lld, 1] (mlx-lm)",
                          cellm_ckpt_file_name(&d->ckpt, e->file), name, t->ndim, (long long)C,
                          (long long)K, (long long)C, (long long)K);
    if (t->dtype != CELLM_DT_F32 && t->dtype != CELLM_DT_F16 && t->dtype != CELLM_DT_BF16)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s has dtype %s; expected F32, "
                          "F16 or BF16",
                          cellm_ckpt_file_name(&d->ckpt, e->file), name,
                          cellm_dtype_name(t->dtype));
    v->fmt = t->dtype == CELLM_DT_F32   ? CELLM_W_F32
             : t->dtype == CELLM_DT_F16 ? CELLM_W_F16
                                        : CELLM_W_BF16;
    v->n = C * K;
    v->data = t->data;
    d->n_params += (uint64_t)(C * K);
    d->n_bytes += t->nbytes;
    if (moved) *moved = mlx && K != 1;
    return CELLM_OK;
}

enum cellm_status cellm_hybrid_probe(struct cellm_desc *d, struct cellm_error *err)
{
    struct cellm_config *c = &d->cfg;
    int l = cellm_config_first_state_layer(c);
    if (l < 0 || c->hybrid == CELLM_HYBRID_LFM2) return CELLM_OK;
    struct cellm_vec v;
    int moved;
    uint64_t np = d->n_params, nb = d->n_bytes;
    CELLM_TRY(bind_conv(d, l, &v, &moved, err));
    d->n_params = np; /* counted when the layer is bound */
    d->n_bytes = nb;
    c->norm = moved ? CELLM_NORM_RMS : CELLM_NORM_RMS_PLUS_ONE;
    return CELLM_OK;
}

static enum cellm_status mat(struct cellm_desc *d, const char *p, const char *name, int64_t rows,
                             int64_t cols, struct cellm_weight *w, struct cellm_error *err)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", p, name);
    return cellm_bind_matrix(d, full, 0, rows, cols, w, err);
}

static enum cellm_status vec(struct cellm_desc *d, const char *p, const char *name, int64_t n,
                             struct cellm_vec *v, struct cellm_error *err)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", p, name);
    return cellm_bind_vec(d, full, n, 1, v, err);
}

enum cellm_status cellm_hybrid_bind_layer(struct cellm_desc *d, int i, struct cellm_layer *L,
                                          struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    int need_shared = L->moe && c->shared_ffn_dim > 0;
    if (L->mixer == CELLM_MIXER_ATTN && !need_shared) return CELLM_OK;
    struct cellm_hyb_layer *h = cellm_calloc(1, sizeof *h);
    if (!h) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    L->hyb = h;
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d.", i);
    int64_t H = c->dim;
    if (L->mixer == CELLM_MIXER_CONV) {
        CELLM_TRY(mat(d, p, "conv.in_proj", 3 * H, H, &h->in_proj, err));
        CELLM_TRY(mat(d, p, "conv.out_proj", H, H, &h->out_proj, err));
        CELLM_TRY(bind_conv(d, i, &h->conv, NULL, err));
    } else if (L->mixer == CELLM_MIXER_GDN) {
        int64_t nv = c->lin_nv, kd = (int64_t)c->lin_nk * c->lin_dk, vd = nv * c->lin_dv;
        if (c->hybrid == CELLM_HYBRID_QWEN3_NEXT) {
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_qkvz", 2 * kd + 2 * vd, H, &h->in_proj, err));
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_ba", 2 * nv, H, &h->in_b, err));
        } else {
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_qkv", 2 * kd + vd, H, &h->in_proj, err));
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_z", vd, H, &h->in_z, err));
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_b", nv, H, &h->in_b, err));
            CELLM_TRY(mat(d, p, "linear_attn.in_proj_a", nv, H, &h->in_a, err));
        }
        CELLM_TRY(mat(d, p, "linear_attn.out_proj", H, vd, &h->out_proj, err));
        CELLM_TRY(bind_conv(d, i, &h->conv, NULL, err));
        CELLM_TRY(vec(d, p, "linear_attn.A_log", nv, &h->a_log, err));
        CELLM_TRY(vec(d, p, "linear_attn.dt_bias", nv, &h->dt_bias, err));
        CELLM_TRY(vec(d, p, "linear_attn.norm.weight", c->lin_dv, &h->norm, err));
    }
    if (need_shared) {
        int64_t S = c->shared_ffn_dim;
        CELLM_TRY(mat(d, p, "mlp.shared_expert.gate_proj", S, H, &h->sh_gate, err));
        CELLM_TRY(mat(d, p, "mlp.shared_expert.up_proj", S, H, &h->sh_up, err));
        CELLM_TRY(mat(d, p, "mlp.shared_expert.down_proj", H, S, &h->sh_down, err));
        CELLM_TRY(mat(d, p, "mlp.shared_expert_gate", 1, H, &h->sh_gate_w, err));
    }
    return CELLM_OK;
}
