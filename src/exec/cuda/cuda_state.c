/*
 * cuda_state.c: per-sequence state of the CUDA executor beyond the KV cache, and the state
 * layers' blocks (docs/forward/sequence-state.md, lfm2.md): the mirror of the CPU's
 * src/exec/cpu/seqstate.h.
 *
 * Storage: one device buffer per sequence holding every state layer's conv window
 * ([(K-1)][channels], oldest first) and recurrent states, f32, zeroed when the sequence's
 * first row arrives and freed when the sequence is truncated to 0 or the context ends.
 * Each row carries its sequence's buffer in struct cu_row (staged to the device with the
 * rows), so a captured decode graph stays valid whatever sequences a later step holds, and
 * one launch serves the rows of many sequences. `st_len` counts the positions folded in: a
 * row must continue at exactly that position (a state cannot be rewound; the engine
 * refuses truncation to 0 < n < len by name before it reaches the executor).
 *
 * Blocks: LFM2's short gated convolution (in_proj, B * x~ through the causal depthwise conv,
 * times C, out_proj) and the Gated DeltaNet of Qwen3.5 (the delta rule as the per-token
 * recurrence in prefill as in decode, one launch per layer: a block per value head looping
 * over the rows, so any chunking of a prompt gives bitwise the same states, as on the CPU).
 * Their products run exact even in fast mode (c->exact), as the CPU's do. Qwen3-Next and
 * Qwen3.5-MoE (sparse MoE beside a sigmoid-gated shared expert) are refused at load; the
 * Qwen3-Next gather of grouped projections is here for them.
 */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"
#include "model/hybrid.h"
#include "model/model.h"

int cellm_cuda_state_family_ok(const struct cellm_config *cfg)
{
    return !cellm_config_has_state(cfg) || cfg->hybrid == CELLM_HYBRID_LFM2 ||
           (cfg->hybrid == CELLM_HYBRID_QWEN3_5 && !cfg->n_experts && !cfg->shared_ffn_dim);
}

enum cellm_status cellm_cuda_state_init(struct cu_model *m, struct cellm_error *err)
{
    const struct cellm_config *cfg = &m->d->cfg;
    m->st_floats = 0;
    if (!cellm_config_has_state(cfg)) return CELLM_OK;
    /* Qwen3-Next and Qwen3.5-MoE: their sparse MoE beside a sigmoid-gated shared expert is
     * not built here yet */
    if (!cellm_cuda_state_family_ok(cfg))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: model_type %s needs %s, which the CUDA executor does "
                          "not implement yet (it runs LFM2's short convolutions and dense "
                          "Qwen3.5's Gated DeltaNet, not the MoE with a shared expert); use "
                          "--device cpu",
                          cfg->model_type, cellm_config_state_pieces(cfg));
    if (cfg->hybrid != CELLM_HYBRID_LFM2 &&
        (cfg->lin_dv > 1024 || cfg->lin_nk <= 0 || cfg->lin_nv % cfg->lin_nk))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: linear attention with %d key heads, %d value heads of "
                          "%d: expected value heads a multiple of the key heads, of at most 1024",
                          cfg->lin_nk, cfg->lin_nv, cfg->lin_dv);
    if (cfg->conv_kernel < 1 || cfg->conv_kernel > CU_CONV_MAX_K)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: conv kernel length %d: expected 1 to %d",
                          cfg->conv_kernel, CU_CONV_MAX_K);
    m->st_conv = cellm_calloc((size_t)cfg->n_layers, sizeof *m->st_conv);
    m->st_rec = cellm_calloc((size_t)cfg->n_layers, sizeof *m->st_rec);
    if (!m->st_conv || !m->st_rec)
        return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    for (int l = 0; l < cfg->n_layers; l++) {
        int64_t nc = cellm_hybrid_conv_floats(cfg, l), nr = cellm_hybrid_rec_floats(cfg, l);
        m->st_conv[l] = nc ? m->st_floats : -1;
        m->st_floats += nc;
        m->st_rec[l] = nr ? m->st_floats : -1;
        m->st_floats += nr;
    }
    return CELLM_OK;
}

void cellm_cuda_state_model_free(struct cu_model *m)
{
    cellm_free(m->st_conv);
    cellm_free(m->st_rec);
    m->st_conv = m->st_rec = NULL;
}

static void dfree(void *p)
{
    if (p) cudaFree(p);
}

void cellm_cuda_state_rows_free(struct cu_ctx *c)
{
    float *b[] = {c->hy_proj, c->hy_proj2, c->hy_conv, c->hy_core,
                  c->hy_z,    c->hy_b,     c->hy_a,    c->hy_qg};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        dfree(b[i]);
    c->hy_proj = c->hy_proj2 = c->hy_conv = c->hy_core = NULL;
    c->hy_z = c->hy_b = c->hy_a = c->hy_qg = NULL;
}

static enum cellm_status dalloc(float **p, size_t floats, struct cellm_error *err)
{
    CU_TRY(cudaMalloc((void **)p, (floats ? floats : 4) * sizeof(float)));
    return CELLM_OK;
}

enum cellm_status cellm_cuda_state_rows(struct cu_ctx *c, size_t r, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim;
    if (cfg->attn_out_gate) CELLM_TRY(dalloc(&c->hy_qg, r * 2 * qd, err));
    if (!c->m->st_floats) return CELLM_OK;
    size_t H = (size_t)cfg->dim;
    size_t kd = (size_t)cfg->lin_nk * cfg->lin_dk, vd = (size_t)cfg->lin_nv * cfg->lin_dv;
    size_t ch = (size_t)cellm_hybrid_channels(cfg), nv = (size_t)cfg->lin_nv;
    size_t proj = cfg->hybrid == CELLM_HYBRID_LFM2 ? 3 * H : 2 * kd + 2 * vd;
    CELLM_TRY(dalloc(&c->hy_proj, r * proj, err));
    CELLM_TRY(dalloc(&c->hy_core, r * (vd > H ? vd : H), err));
    if (cfg->hybrid == CELLM_HYBRID_LFM2) return CELLM_OK;
    CELLM_TRY(dalloc(&c->hy_proj2, r * 2 * nv, err));
    CELLM_TRY(dalloc(&c->hy_conv, r * ch, err));
    CELLM_TRY(dalloc(&c->hy_z, r * vd, err));
    CELLM_TRY(dalloc(&c->hy_b, r * nv, err));
    CELLM_TRY(dalloc(&c->hy_a, r * nv, err));
    return CELLM_OK;
}

void cellm_cuda_state_clear(struct cu_ctx *c, struct cu_seq *s)
{
    (void)c;
    dfree(s->st);
    s->st = NULL;
    s->st_len = 0;
}

enum cellm_status cellm_cuda_state_begin(struct cu_ctx *c, const struct cellm_exec_row *rows, int n,
                                         struct cu_row *hr, struct cellm_error *err)
{
    const struct cu_model *m = c->m;
    for (int i = 0; i < n; i++) {
        hr[i].st = NULL;
        if (!m->st_floats) continue;
        struct cu_seq *s = &c->seqs[rows[i].seq];
        if (!s->st) {
            size_t bytes = (size_t)m->st_floats * sizeof(float);
            cudaError_t e = cudaMalloc((void **)&s->st, bytes);
            if (e == cudaSuccess) e = cudaMemsetAsync(s->st, 0, bytes, c->st);
            if (e != cudaSuccess) {
                dfree(s->st);
                s->st = NULL;
                return cellm_errf(err, CELLM_ERR_DEVICE,
                                  "cuda executor: cannot allocate the conv/recurrent state of "
                                  "sequence %d (%.1f MB): %s",
                                  rows[i].seq, (double)bytes / 1e6, cudaGetErrorString(e));
            }
            s->st_len = 0;
        }
        hr[i].st = s->st;
        CELLM_TRY(cellm_state_row_check(&c->d->cfg, rows, i, s->st_len, err));
    }
    return CELLM_OK;
}

void cellm_cuda_state_end(struct cu_ctx *c, const struct cellm_exec_row *rows, int n)
{
    if (!c->m->st_floats) return;
    for (int i = 0; i < n; i++)
        c->seqs[rows[i].seq].st_len = rows[i].pos + 1;
}

/* LFM2 (docs/forward/lfm2.md): BCx = in_proj(x) split into B, C, x~; the causal depthwise
 * conv of B * x~ over the window; times C; out_proj. */
static enum cellm_status conv_block(struct cu_ctx *c, int l, int n, const float *in, float *out,
                                    struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_hyb *w = &c->m->layers[l].hyb;
    int64_t H = cfg->dim;
    CELLM_TRY(cellm_cuda_mm(c, &w->in_proj, in, H, n, c->hy_proj, 3 * H, NULL, err));
    struct cu_conv_args a = {.x = c->hy_proj + 2 * H,
                             .pre = c->hy_proj,
                             .post = c->hy_proj + H,
                             .ldx = 3 * H,
                             .y = c->hy_core,
                             .ldy = H,
                             .w = w->conv,
                             .K = cfg->conv_kernel,
                             .C = H,
                             .rows = c->rows,
                             .n = n,
                             .off = c->m->st_conv[l]};
    K_TRY(cellm_cu_conv(&a, c->st));
    return cellm_cuda_mm(c, &w->out_proj, c->hy_core, H, n, out, H, NULL, err);
}

/* Gated DeltaNet (docs/forward/qwen3-next.md; the CPU's deltanet.c): the projections, the
 * conv with SiLU over the window, q/k normalised and the gates, the delta rule per value
 * head, the gated RMSNorm, out_proj. */
static enum cellm_status gdn_block(struct cu_ctx *c, int l, int n, const float *in, float *out,
                                   struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_hyb *w = &c->m->layers[l].hyb;
    const int dk = cfg->lin_dk, dv = cfg->lin_dv, nk = cfg->lin_nk, nv = cfg->lin_nv;
    const int64_t H = cfg->dim, kd = (int64_t)nk * dk, vd = (int64_t)nv * dv, ch = 2 * kd + vd;
    struct cu_gdn_args g = {.proj = c->hy_proj,
                            .proj2 = c->hy_proj2,
                            .conv_in = c->hy_conv,
                            .conv_out = c->hy_proj,
                            .z = c->hy_z,
                            .b = c->hy_b,
                            .a = c->hy_a,
                            .core = c->hy_core,
                            .a_log = w->a_log,
                            .dt_bias = w->dt_bias,
                            .norm = w->norm,
                            .rows = c->rows,
                            .n = n,
                            .nk = nk,
                            .nv = nv,
                            .dk = dk,
                            .dv = dv,
                            .off = c->m->st_rec[l],
                            .scale = (float)(1.0 / sqrt((double)dk)),
                            .eps = (float)cfg->norm_eps};
    if (cfg->hybrid == CELLM_HYBRID_QWEN3_NEXT) {
        CELLM_TRY(cellm_cuda_mm(c, &w->in_proj, in, H, n, c->hy_proj, 2 * kd + 2 * vd, NULL, err));
        CELLM_TRY(cellm_cuda_mm(c, &w->in_b, in, H, n, c->hy_proj2, 2 * nv, NULL, err));
        K_TRY(cellm_cu_gdn(&g, CU_GDN_GATHER, c->st));
    } else {
        CELLM_TRY(cellm_cuda_mm(c, &w->in_proj, in, H, n, c->hy_conv, ch, NULL, err));
        CELLM_TRY(cellm_cuda_mm(c, &w->in_z, in, H, n, c->hy_z, vd, NULL, err));
        CELLM_TRY(cellm_cuda_mm(c, &w->in_b, in, H, n, c->hy_b, nv, NULL, err));
        CELLM_TRY(cellm_cuda_mm(c, &w->in_a, in, H, n, c->hy_a, nv, NULL, err));
    }
    struct cu_conv_args a = {.x = c->hy_conv,
                             .ldx = ch,
                             .y = c->hy_proj,
                             .ldy = ch,
                             .w = w->conv,
                             .K = cfg->conv_kernel,
                             .C = ch,
                             .rows = c->rows,
                             .n = n,
                             .off = c->m->st_conv[l],
                             .silu = 1};
    K_TRY(cellm_cu_conv(&a, c->st));
    K_TRY(cellm_cu_gdn(&g, CU_GDN_QK, c->st));
    K_TRY(cellm_cu_gdn(&g, CU_GDN_REC, c->st));
    K_TRY(cellm_cu_gdn(&g, CU_GDN_NORM, c->st));
    return cellm_cuda_mm(c, &w->out_proj, c->hy_core, vd, n, out, H, NULL, err);
}

enum cellm_status cellm_cuda_state_mixer(struct cu_ctx *c, int l, int n, const float *in,
                                         float *out, struct cellm_error *err)
{
    enum cellm_status st = CELLM_OK;
    c->exact = 1;
    switch (c->m->layers[l].hyb.mixer) {
    case CELLM_MIXER_CONV:
        st = conv_block(c, l, n, in, out, err);
        break;
    case CELLM_MIXER_GDN:
        st = gdn_block(c, l, n, in, out, err);
        break;
    default:
        st = cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                        "cuda executor: layer %d: this token mixer is not implemented", l);
        break;
    }
    c->exact = 0;
    return st;
}
