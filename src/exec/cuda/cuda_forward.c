/*
 * cuda_forward.c: the forward pass of one step, which mirrors the CPU reference
 * (src/exec/cpu/cpu.c) block by block: attention (projections, q/k norms, RoPE, cache
 * write and the attention kernel the rows call for), norms, the MLP or MoE, the logits.
 * Decode steps of pre-norm models take forward_fused, where residual adds land in the
 * products' epilogues and norms in their prologues.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"
#include "model/hybrid.h"

/* From the q/k/v projections in c->q, c->k, c->v to the attention output in c->att:
 * biases, q/k norms, RoPE, cache write, attention. */
static enum cellm_status attn_core(struct cu_ctx *c, int l, int n, int max_keys,
                                   struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_layer *L = &c->m->layers[l];
    int hd = cfg->head_dim, H = cfg->n_heads, KVH = cfg->n_kv_heads;
    int half = cfg->rot_dims / 2;
    if (cfg->qk_norm_full) { /* OLMo 2: one norm over the whole projection, before the heads
                                (cu_model_new refuses q/k/v biases, which would come first) */
        struct cu_norm_args qn = {.x = c->q,
                                  .out = c->q,
                                  .w = L->q_norm_full,
                                  .n = n,
                                  .dim = H * hd,
                                  .kind = (int)cfg->norm,
                                  .eps = (float)cfg->norm_eps};
        K_TRY(cellm_cu_norm(&qn, c->st));
        qn.x = qn.out = c->k;
        qn.w = L->k_norm_full;
        qn.dim = KVH * hd;
        K_TRY(cellm_cu_norm(&qn, c->st));
    }
    const struct cellm_layer *DL = &c->d->layers[l];
    const float *cs = c->cs + (size_t)L->rope_table * c->rows_cap * (size_t)(half + 1) * 2;
    /* the per-row query scales follow the table's cos/sin rows (cu_run writes them, one per
     * row and table); NoPE layers (SmolLM3, Llama 4) skip the rotation and Llama 4's q/k
     * norm, as posenc.c does */
    const float *qs =
        cfg->qscale_beta != 0 || cfg->attn_temp ? cs + (size_t)c->rows_cap * half * 2 : NULL;
    struct cu_qkv_args qa = {.q = c->q,
                             .k = c->k,
                             .v = c->v,
                             .bq = L->bq,
                             .bk = L->bk,
                             .bv = L->bv,
                             .qn = L->q_norm,
                             .kn = L->k_norm,
                             .qn_heads = L->q_norm_heads,
                             .kn_heads = L->k_norm_heads,
                             .qk_kind = (int)cfg->norm,
                             .eps = (float)cfg->norm_eps,
                             .cs = cs,
                             .rows = c->rows,
                             .n = n,
                             .H = H,
                             .KVH = KVH,
                             .hd = hd,
                             .rot = cfg->rot_dims,
                             .layer = l,
                             .nope = DL->nope,
                             .pairs = cfg->rope_interleaved,
                             .l2norm = cfg->qk_l2norm,
                             .qs = qs};
    int window = L->attn == CELLM_ATTN_SLIDING && cfg->window > 0 ? cfg->window : 0;
    int chunk = L->attn == CELLM_ATTN_CHUNKED && cfg->attn_chunk > 0 ? cfg->attn_chunk : 0;
    int keys = window && window < max_keys ? window : max_keys;
    if (chunk && chunk < keys) keys = chunk; /* a row sees at most its chunk */
    int sk = c->split_keys, nsplit = 1;
    while (nsplit * sk < keys)
        nsplit *= 2;
    struct cu_attn_args aa = {.q = c->q,
                              .out = c->att,
                              .part = c->part,
                              .rows = c->rows,
                              .n = n,
                              .H = H,
                              .KVH = KVH,
                              .hd = hd,
                              .layer = l,
                              .window = window,
                              .nsplit = nsplit,
                              .split_keys = sk,
                              .scale = (float)cfg->attn_scale,
                              .softcap = (float)cfg->attn_softcap,
                              .sinks = L->sinks,
                              .chunk = chunk};
    /* Decode attention as clusters (cuda_attn_dec.cu): one per (row, q head), or one per
     * (row, kv head) whose blocks share each key tile among the kv head's q heads. Measured
     * (bench/cuda_notes.md, round 5): with two q heads per kv head (Qwen3-0.6B shape) the
     * grouped clusters beat the per-head ones by 8-10% in decode; with four (Llama-3.1-8B
     * shape) they match the single-launch fused kernel at ~550 keys (0 to -4% over three
     * machines; per-head clusters lose 5-8% there) and beat it by 12-14% at ~2100. So:
     * option attn_dec 1 (default) grouped clusters for 2..8 q heads per kv head,
     * per-head clusters for one, the fused kernel for more; 0 never clusters; 2 per-head
     * clusters; 3 grouped clusters (up to 8 q heads per kv head, else per-head). */
    const int G = H / KVH, mode = c->m->attn_dec;
    const int dec = mode >= 2 || (mode == 1 && G <= 8);
    const int grouped = (mode == 3 || (mode == 1 && G >= 2)) && G <= 8;
    if (c->m->fuse && n < c->m->gemm_rows && c->distinct && dec &&
        cellm_cu_attention_dec_supported(hd, cfg->rot_dims))
        K_TRY(cellm_cu_attention_dec(&qa, &aa, grouped, c->m->attn_pdl, c->m->sms, c->st));
    else if (c->m->fuse && n < c->m->gemm_rows && c->distinct)
        K_TRY(cellm_cu_attention_fused(&qa, &aa, c->att_cnt, c->st));
    else {
        K_TRY(cellm_cu_qkv_post(&qa, c->st));
        if (c->m->fuse && c->consecutive && n > 1)
            K_TRY(cellm_cu_attention_prefill(&aa, c->st));
        else
            K_TRY(cellm_cu_attention(&aa, c->st));
    }
    return CELLM_OK;
}

static enum cellm_status attention(struct cu_ctx *c, int l, int n, int max_keys, const float *hin,
                                   float *out, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_layer *L = &c->m->layers[l];
    int hd = cfg->head_dim, dim = cfg->dim;
    int64_t qd = (int64_t)cfg->n_heads * hd, kd = (int64_t)cfg->n_kv_heads * hd;
    const struct cu_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    const int gated = cfg->attn_out_gate; /* q_proj: each head's queries, then its gates */
    float *ys[3] = {gated ? c->hy_qg : c->q, c->k, c->v};
    int64_t ld[3] = {gated ? 2 * qd : qd, kd, kd};
    CELLM_TRY(cellm_cuda_mm_multi(c, ws, 3, hin, dim, n, ys, ld, err));
    if (gated) K_TRY(cellm_cu_attn_gate(c->hy_qg, c->q, n, cfg->n_heads, hd, 0, c->st));
    cellm_cuda_prof_mark(c, PH_QKV);
    CELLM_TRY(attn_core(c, l, n, max_keys, err));
    if (gated) K_TRY(cellm_cu_attn_gate(c->hy_qg, c->att, n, cfg->n_heads, hd, 1, c->st));
    cellm_cuda_prof_mark(c, PH_ATTN);
    CELLM_TRY(cellm_cuda_mm(c, &L->wo, c->att, qd, n, out, dim, L->bo, err));
    cellm_cuda_prof_mark(c, PH_O);
    return CELLM_OK;
}

static enum cellm_status norm(struct cu_ctx *c, float *x, const float *add, float *out,
                              const float *w, const float *b, int n, const struct cu_row *gather,
                              struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    struct cu_norm_args a = {.x = x,
                             .add = add,
                             .out = out,
                             .w = w,
                             .b = b,
                             .rows = gather,
                             .n = n,
                             .dim = cfg->dim,
                             .kind = (int)cfg->norm,
                             .eps = (float)cfg->norm_eps};
    K_TRY(cellm_cu_norm(&a, c->st));
    return CELLM_OK;
}

/* ys[i] = ws[i] norm(x) for the decode rows: the norm fused in front of the products when
 * the kernels take them, else the norm kernel into c->h and then the products. */
static enum cellm_status proj_normed(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                     const float *nwt, const float *nb, int n, float *const *ys,
                                     const int64_t *ld, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    if (!cellm_cuda_mv_ok(c, ws, nw, n, 1)) {
        CELLM_TRY(norm(c, c->x, NULL, c->h, nwt, nb, n, NULL, err));
        return cellm_cuda_mm_multi(c, ws, nw, c->h, cfg->dim, n, ys, ld, err);
    }
    struct cu_mv_op op = {.nw = nw,
                          .x = c->x,
                          .ldx = cfg->dim,
                          .n = n,
                          .epi = CU_EPI_STORE,
                          .norm_kind = (int)cfg->norm,
                          .norm_w = nwt,
                          .norm_b = nb,
                          .norm_eps = (float)cfg->norm_eps};
    CELLM_TRY(cellm_cuda_mv_run(c, &op, ws, ys, ld, err));
    return CELLM_OK;
}

/* The residual: x += w in (+ bias), in the product's epilogue when possible. */
static enum cellm_status proj_add(struct cu_ctx *c, const struct cu_weight *w, const float *in,
                                  int64_t ldin, int n, const float *bias, struct cellm_error *err)
{
    int64_t dim = c->d->cfg.dim;
    if (!cellm_cuda_mv_ok(c, &w, 1, n, 0)) {
        CELLM_TRY(cellm_cuda_mm(c, w, in, ldin, n, c->o, dim, bias, err));
        K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
        return CELLM_OK;
    }
    struct cu_mv_op op = {.w = {w},
                          .nw = 1,
                          .x = in,
                          .ldx = ldin,
                          .n = n,
                          .y = {c->x},
                          .ldy = {dim},
                          .bias = {bias},
                          .epi = CU_EPI_ADD,
                          .norm_kind = -1};
    CELLM_TRY(cellm_cuda_mv_run(c, &op, NULL, NULL, NULL, err));
    return CELLM_OK;
}

/* x += mlp(norm(x)) for a dense layer: norm, gate/up and the activation in one kernel. */
static enum cellm_status mlp_fused(struct cu_ctx *c, const struct cu_layer *L, int n,
                                   struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t I = L->w_gate.rows;
    const struct cu_weight *ws[2] = {&L->w_gate, &L->w_up};
    int pro = cellm_cuda_mv_ok(c, ws, 2, n, 1) && L->w_up.rows == I;
    if (!pro) CELLM_TRY(norm(c, c->x, NULL, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
    if (pro || (cellm_cuda_mv_ok(c, ws, 2, n, 0) && L->w_up.rows == I)) {
        struct cu_mv_op op = {.w = {ws[0], ws[1]},
                              .nw = 2,
                              .x = pro ? c->x : c->h,
                              .ldx = cfg->dim,
                              .n = n,
                              .y = {c->gate},
                              .ldy = {I},
                              .bias = {L->b_gate, L->b_up},
                              .epi = CU_EPI_GLU,
                              .act = (int)cfg->act,
                              .norm_kind = pro ? (int)cfg->norm : -1,
                              .norm_w = L->ffn_norm,
                              .norm_b = L->ffn_norm_b,
                              .norm_eps = (float)cfg->norm_eps};
        CELLM_TRY(cellm_cuda_mv_run(c, &op, NULL, NULL, NULL, err));
    } else {
        float *ys[2] = {c->gate, c->up};
        int64_t ld[2] = {I, I};
        CELLM_TRY(cellm_cuda_mm_multi(c, ws, 2, c->h, cfg->dim, n, ys, ld, err));
        K_TRY(cellm_cu_glu(c->gate, c->up, n, I, L->b_gate, L->b_up, (int)cfg->act, c->st));
    }
    cellm_cuda_prof_mark(c, PH_MLP);
    CELLM_TRY(proj_add(c, &L->w_down, c->gate, I, n, L->b_down, err));
    cellm_cuda_prof_mark(c, PH_DOWN);
    return CELLM_OK;
}

/* The final norm and the head for the rows that want logits, then the soft-cap. With
 * fuse_norm and every row wanting logits, the norm runs in the head's prologue; otherwise
 * the norm gathers the rows that want logits into c->h, in order. */
static enum cellm_status logits_out(struct cu_ctx *c, int n, int nw, int fuse_norm,
                                    struct cellm_error *err)
{
    const struct cu_model *m = c->m;
    const struct cellm_config *cfg = &c->d->cfg;
    if (!nw) return CELLM_OK;
    if (fuse_norm && nw == n) {
        float *ys[1] = {c->logits};
        int64_t ld[1] = {cfg->vocab};
        const struct cu_weight *hw[1] = {&m->head};
        CELLM_TRY(proj_normed(c, hw, 1, m->final_norm, m->final_norm_b, n, ys, ld, err));
    } else {
        CELLM_TRY(norm(c, c->x, NULL, c->h, m->final_norm, m->final_norm_b, n, c->rows, err));
        CELLM_TRY(cellm_cuda_mm(c, &m->head, c->h, cfg->dim, nw, c->logits, cfg->vocab, NULL, err));
    }
    if (cfg->final_softcap > 0)
        K_TRY(cellm_cu_softcap(c->logits, (int64_t)nw * cfg->vocab, (float)cfg->final_softcap,
                               c->st));
    cellm_cuda_prof_mark(c, PH_HEAD);
    return CELLM_OK;
}

/* Decode steps of pre-norm models, after the embedding: every residual add lands in a
 * product's epilogue and every norm in the next product's prologue (where the kernels take
 * the weights). */
static enum cellm_status forward_fused(struct cu_ctx *c, int n, int nw, int max_keys,
                                       struct cellm_error *err)
{
    struct cu_model *m = c->m;
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t dim = cfg->dim, hd = cfg->head_dim;
    int64_t qd = cfg->n_heads * hd, kd = cfg->n_kv_heads * hd;
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cu_layer *L = &m->layers[l];
        if (L->hyb.mixer != CELLM_MIXER_ATTN) { /* a state layer: unfused (cuda_state.c) */
            CELLM_TRY(norm(c, c->x, NULL, c->h, L->attn_norm, L->attn_norm_b, n, NULL, err));
            CELLM_TRY(cellm_cuda_state_mixer(c, l, n, c->h, c->o, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            cellm_cuda_prof_mark(c, PH_ATTN);
        } else {
            const struct cu_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
            const int gated = cfg->attn_out_gate; /* as in attention() */
            float *ys[3] = {gated ? c->hy_qg : c->q, c->k, c->v};
            int64_t ld[3] = {gated ? 2 * qd : qd, kd, kd};
            CELLM_TRY(proj_normed(c, ws, 3, L->attn_norm, L->attn_norm_b, n, ys, ld, err));
            if (gated)
                K_TRY(cellm_cu_attn_gate(c->hy_qg, c->q, n, cfg->n_heads, (int)hd, 0, c->st));
            cellm_cuda_prof_mark(c, PH_QKV);
            CELLM_TRY(attn_core(c, l, n, max_keys, err));
            if (gated)
                K_TRY(cellm_cu_attn_gate(c->hy_qg, c->att, n, cfg->n_heads, (int)hd, 1, c->st));
            cellm_cuda_prof_mark(c, PH_ATTN);
            CELLM_TRY(proj_add(c, &L->wo, c->att, qd, n, L->bo, err));
            cellm_cuda_prof_mark(c, PH_O);
        }
        if (L->moe) {
            CELLM_TRY(norm(c, c->x, NULL, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
            CELLM_TRY(cellm_cuda_moe(c, L, c->h, n, c->o, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            cellm_cuda_prof_mark(c, PH_MOE);
        } else
            CELLM_TRY(mlp_fused(c, L, n, err));
    }
    return logits_out(c, n, nw, 1, err);
}

/* The feed-forward sub-block of the layer-by-layer walk: x + o (the attention's output,
 * added here) normed into h, then the experts or the MLP into o. */
static enum cellm_status ffn(struct cu_ctx *c, const struct cu_layer *L, int n,
                             struct cellm_error *err)
{
    CELLM_TRY(norm(c, c->x, c->o, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
    cellm_cuda_prof_mark(c, PH_NORM);
    if (L->moe) {
        CELLM_TRY(cellm_cuda_moe(c, L, c->h, n, c->o, err));
        cellm_cuda_prof_mark(c, PH_MOE);
        return CELLM_OK;
    }
    return cellm_cuda_dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, L->b_gate, L->b_up, L->b_down,
                                c->h, n, c->gate, c->up, c->o, err);
}

/* Every kernel of one step, from the embedding to the logits (device); capturable. */
enum cellm_status cellm_cuda_forward(struct cu_ctx *c, int n, int nw, int max_keys,
                                     struct cellm_error *err)
{
    struct cu_model *m = c->m;
    const struct cellm_desc *d = c->d;
    const struct cellm_config *cfg = &d->cfg;
    int64_t dim = cfg->dim;
    K_TRY(cellm_cu_embed(&m->embed, c->rows, n, cfg->embed_scale ? d->embed_scale : 1.0f, c->x,
                         c->st));
    cellm_cuda_prof_mark(c, PH_EMBED);
    if (m->fuse && n < m->gemm_rows && cfg->block == CELLM_BLOCK_PRE_NORM)
        return forward_fused(c, n, nw, max_keys, err);
    const float *pending = NULL; /* residual still to be added to x */
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cu_layer *L = &m->layers[l];
        if (cfg->block == CELLM_BLOCK_POST_NORM) { /* x + norm(attn(x)), then x + norm(mlp(x)) */
            if (pending) K_TRY(cellm_cu_add(c->x, pending, (int64_t)n * dim, c->st));
            CELLM_TRY(attention(c, l, n, max_keys, c->x, c->o, err));
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_attn_norm, NULL, n, NULL, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            if (L->moe)
                CELLM_TRY(cellm_cuda_moe(c, L, c->x, n, c->o, err));
            else
                CELLM_TRY(cellm_cuda_dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, L->b_gate,
                                               L->b_up, L->b_down, c->x, n, c->gate, c->up, c->o,
                                               err));
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_ffn_norm, NULL, n, NULL, err));
            cellm_cuda_prof_mark(c, PH_NORM);
            pending = c->o;
            continue;
        }
        CELLM_TRY(norm(c, c->x, pending, c->h, L->attn_norm, L->attn_norm_b, n, NULL, err));
        cellm_cuda_prof_mark(c, PH_NORM);
        if (L->hyb.mixer != CELLM_MIXER_ATTN) /* a state layer (cuda_state.c) */
            CELLM_TRY(cellm_cuda_state_mixer(c, l, n, c->h, c->o, err));
        else
            CELLM_TRY(attention(c, l, n, max_keys, c->h, c->o, err));
        switch (cfg->block) {
        case CELLM_BLOCK_PARALLEL: /* x + attn(h) + mlp(h); mlp(h) is added with the next norm */
            CELLM_TRY(cellm_cuda_dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, NULL, NULL, NULL,
                                           c->h, n, c->gate, c->up, c->h, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            pending = c->h;
            break;
        case CELLM_BLOCK_SANDWICH: /* x + norm(attn(h)), then x + norm(mlp(norm(x))) */
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_attn_norm, NULL, n, NULL, err));
            CELLM_TRY(ffn(c, L, n, err));
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_ffn_norm, NULL, n, NULL, err));
            cellm_cuda_prof_mark(c, PH_NORM);
            pending = c->o;
            break;
        case CELLM_BLOCK_PRE_NORM: /* x + attn(h), then x + mlp(norm(x)) */
            CELLM_TRY(ffn(c, L, n, err));
            cellm_cuda_prof_mark(c, PH_NORM);
            pending = c->o;
            break;
        case CELLM_BLOCK_POST_NORM: /* above */
            break;
        }
    }
    if (pending) K_TRY(cellm_cu_add(c->x, pending, (int64_t)n * dim, c->st));
    return logits_out(c, n, nw, 0, err);
}
