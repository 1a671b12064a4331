/*
 * info.c: a bound model described in words and numbers (struct cellm_model_info of
 * cellm.h), built once at load so that the CLI (`cellm inspect`, `cellm bench`) reads a
 * model through the public API only.
 *
 * Storage is summarised rather than listed per tensor: each projection's storage is
 * collected over all layers (and experts), a projection whose layers differ lists each
 * variant with its layers, and projections with the same summary share one line, e.g.
 * "attention q, k, v, o" / "affine 4-bit g64 bf16". The projections and their groups are
 * the rows of model.h's tensor table.
 */
#include "info.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

static void add_line(struct cellm_info_store *st, const char *key, const char *fmt, ...)
    CELLM_PRINTF(3, 4);
static void add_line(struct cellm_info_store *st, const char *key, const char *fmt, ...)
{
    int i = st->pub.n_storage;
    if (i == CELLM_INFO_LINES) return;
    snprintf(st->keys[i], sizeof st->keys[i], "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->vals[i], sizeof st->vals[i], fmt, ap);
    va_end(ap);
    st->lines[i].key = st->keys[i];
    st->lines[i].value = st->vals[i];
    st->pub.n_storage++;
}

static const char *sdt_name(enum cellm_dtype dt)
{
    return dt == CELLM_DT_BF16 ? "bf16" : dt == CELLM_DT_F32 ? "f32" : "f16";
}

/* Format, code and scale types, group and bits per weight (codes, scales and zeros). */
static void wdesc(const struct cellm_weight *w, char *buf, size_t n)
{
    double bpw = cellm_weight_bpw(w);
    switch (w->fmt) {
    case CELLM_W_AFFINE:
        snprintf(buf, n, "affine %d-bit g%d %s", w->bits, w->group, sdt_name(w->sdtype));
        break;
    case CELLM_W_MXFP4:
    case CELLM_W_NVFP4:
    case CELLM_W_MXFP8:
        snprintf(buf, n, "%s %s g%d %s scales, %.2f bpw", cellm_wfmt_name(w->fmt),
                 w->fmt == CELLM_W_MXFP8 ? "E4M3" : "E2M1", w->group,
                 w->fmt == CELLM_W_NVFP4 ? "e4m3" : "e8m0", bpw);
        break;
    case CELLM_W_FP8BLK:
        snprintf(buf, n, "fp8 E4M3 blocks %dx%d %s scales, %.2f bpw", w->block_rows, w->group,
                 sdt_name(w->sdtype), bpw);
        break;
    case CELLM_W_GPTQ:
    case CELLM_W_AWQ:
        snprintf(buf, n, "%s %d-bit g%d %s scales%s%s, %.2f bpw", cellm_wfmt_name(w->fmt), w->bits,
                 w->group, sdt_name(w->sdtype), w->g_idx ? ", g_idx" : "",
                 w->fmt == CELLM_W_GPTQ && !w->zero_one ? ", v2 zeros" : "", bpw);
        break;
    default:
        snprintf(buf, n, "%s", cellm_wfmt_name(w->fmt));
    }
}

/* A projection's storage over every layer (and expert) it exists in. */
#define MAX_VARIANTS 8
struct summary {
    int n;
    char desc[MAX_VARIANTS][80];
    char layers[MAX_VARIANTS][128];
    int count[MAX_VARIANTS];
    char text[512];
};

static void add(struct summary *s, const struct cellm_weight *w, int layer)
{
    char d[80];
    wdesc(w, d, sizeof d);
    int k = 0;
    while (k < s->n && strcmp(s->desc[k], d))
        k++;
    if (k == s->n) {
        if (s->n == MAX_VARIANTS) return;
        snprintf(s->desc[k], sizeof s->desc[k], "%s", d);
        s->layers[k][0] = 0;
        s->n++;
    }
    char num[16];
    snprintf(num, sizeof num, "%d", layer);
    size_t len = strlen(s->layers[k]);
    /* a layer appears once even when its experts repeat it */
    const char *last = strrchr(s->layers[k], ',');
    last = last ? last + 1 : s->layers[k];
    if (len && !strcmp(last, num)) return;
    if (len + strlen(num) + 2 < sizeof s->layers[k])
        snprintf(s->layers[k] + len, sizeof s->layers[k] - len, "%s%s", len ? "," : "", num);
    s->count[k]++;
}

static void finish(struct summary *s)
{
    s->text[0] = 0;
    for (int k = 0; k < s->n; k++) {
        size_t len = strlen(s->text);
        if (s->n == 1)
            snprintf(s->text + len, sizeof s->text - len, "%s", s->desc[k]);
        else
            snprintf(s->text + len, sizeof s->text - len, "%s%s (layers %s)", k ? "; " : "",
                     s->desc[k], s->layers[k]);
    }
}

/* Projections with equal summaries share one line: "label a, b" / summary. */
static void group_lines(struct cellm_info_store *st, const char *label, const char *const *names,
                        struct summary *s, int n)
{
    int done[8] = {0};
    for (int i = 0; i < n; i++) {
        if (done[i] || s[i].n == 0) continue;
        char line[128];
        size_t len = (size_t)snprintf(line, sizeof line, "%s %s", label, names[i]);
        for (int j = i + 1; j < n; j++)
            if (!done[j] && s[j].n && !strcmp(s[i].text, s[j].text)) {
                done[j] = 1;
                len += (size_t)snprintf(line + len, len < sizeof line ? sizeof line - len : 0,
                                        ", %s", names[j]);
            }
        add_line(st, line, "%s", s[i].text);
    }
}

static const char *norm_name(enum cellm_norm_kind k)
{
    switch (k) {
    case CELLM_NORM_RMS:
        return "RMSNorm";
    case CELLM_NORM_RMS_PLUS_ONE:
        return "RMSNorm (1 + w)";
    case CELLM_NORM_LAYER:
        return "LayerNorm";
    case CELLM_NORM_RMS_DIV:
        return "RMSNorm (x / root)";
    }
    return "?";
}

static const char *act_name(enum cellm_act a)
{
    switch (a) {
    case CELLM_ACT_SILU:
        return "silu";
    case CELLM_ACT_GELU_TANH:
        return "gelu_pytorch_tanh";
    case CELLM_ACT_GELU:
        return "gelu";
    }
    return "?";
}

/* "[a, b, c, ..., z] (n)" of a longrope factor list. */
static void factors_str(const float *f, int n, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && len < cap; i++) {
        if (i == 3 && n > 5) {
            len += (size_t)snprintf(buf + len, cap - len, ", ...");
            i = n - 2;
            continue;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%g", i ? ", " : "", f[i]);
    }
    if (len < cap) snprintf(buf + len, cap - len, "] (%d)", n);
}

static void rope_str(const struct cellm_rope *r, int rot, char *buf, size_t n)
{
    double lo, hi;
    char sf[160], lf[160];
    switch (r->kind) {
    case CELLM_ROPE_DEFAULT:
        snprintf(buf, n, "default, theta %g", r->theta);
        break;
    case CELLM_ROPE_LINEAR:
        snprintf(buf, n, "linear, theta %g, factor %g", r->theta, r->factor);
        break;
    case CELLM_ROPE_LLAMA3:
        snprintf(buf, n,
                 "llama3, theta %g, factor %g, low_freq_factor %g, high_freq_factor %g, "
                 "original_max_position_embeddings %g",
                 r->theta, r->factor, r->low_freq_factor, r->high_freq_factor, r->original_max_pos);
        break;
    case CELLM_ROPE_YARN:
        cellm_rope_yarn_range(r, rot, &lo, &hi);
        snprintf(buf, n,
                 "yarn, theta %g, factor %g, original_max_position_embeddings %g, beta_fast %g, "
                 "beta_slow %g, truncate %s, ramp over frequencies %g..%g, attention factor %.6g "
                 "(multiplies cos and sin)%s",
                 r->theta, r->factor, r->original_max_pos, r->beta_fast, r->beta_slow,
                 r->truncate ? "true" : "false", lo, hi, r->attn_factor,
                 r->mscale && r->mscale_all_dim ? " from mscale/mscale_all_dim" : "");
        break;
    case CELLM_ROPE_PROPORTIONAL:
        snprintf(buf, n,
                 "proportional, theta %g, factor %g, partial_rotary_factor %g: the first %d of "
                 "%d angles rotate (exponents over the whole head), the rest stay",
                 r->theta, r->factor, r->partial, (int)floor(r->partial * rot / 2), rot / 2);
        break;
    case CELLM_ROPE_LONGROPE:
        factors_str(r->short_factor, r->n_factors, sf, sizeof sf);
        factors_str(r->long_factor, r->n_factors, lf, sizeof lf);
        snprintf(buf, n,
                 "longrope, theta %g, factor %g, attention factor %.6g (multiplies cos and sin); "
                 "short_factor %s while a forward's sequence stays within "
                 "original_max_position_embeddings %g, long_factor %s beyond",
                 r->theta, r->factor, r->attn_factor, sf, r->original_max_pos, lf);
        break;
    }
}

/* "0,2,4" of layers where flag[i] is set (at most a line's worth). */
static int layer_list(const uint8_t *flag, int n, char *buf, size_t cap)
{
    int count = 0;
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!flag[i]) continue;
        count++;
        if (len + 16 < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%s%d", len ? "," : "", i);
        else if (len + 4 < cap && strcmp(buf + len - 3, "..."))
            len += (size_t)snprintf(buf + len, cap - len, "...");
    }
    return count;
}

static void block_text(const struct cellm_config *c, char *buf, size_t n)
{
    size_t k =
        (size_t)snprintf(buf, n, "%s eps %g, %s%s%s%s%s%s%s%s", norm_name(c->norm), c->norm_eps,
                         act_name(c->act), c->qkv_bias ? ", qkv bias" : "",
                         c->o_bias ? ", o bias" : "", c->mlp_bias ? ", mlp bias" : "",
                         c->qk_norm_per_head ? ", per-head q/k norm"
                         : c->qk_norm        ? ", q/k norm"
                         : c->qk_norm_full   ? ", full-width q/k norm"
                                             : "",
                         c->block == CELLM_BLOCK_SANDWICH ? ", sandwich norms" : "",
                         c->block == CELLM_BLOCK_PARALLEL    ? ", parallel residual"
                         : c->block == CELLM_BLOCK_POST_NORM ? ", post-norm (norms after attention "
                                                               "and MLP, none before)"
                                                             : "",
                         c->embed_scale && !c->embed_mult ? ", embeddings x sqrt(hidden)" : "");
    if (k < n && (c->embed_mult || c->residual_mult != 1 || c->logits_div != 1))
        k += (size_t)snprintf(buf + k, n - k, ", embeddings x %g, residuals x %g, logits / %g",
                              c->embed_mult, c->residual_mult, c->logits_div);
    char nope[128];
    int n_nope = c->layer_nope ? layer_list(c->layer_nope, c->n_layers, nope, sizeof nope) : 0;
    if (k < n && n_nope)
        snprintf(buf + k, n - k, ", no RoPE on %d of %d layers (%s)", n_nope, c->n_layers, nope);
}

/* Appends which layers reuse another layer's KV (Gemma 3n and 4: the last n_kv_shared);
 * returns the new length, which may pass n as snprintf's do. */
static size_t kv_sharing_note(const struct cellm_desc *d, char *buf, size_t n, size_t k)
{
    const struct cellm_config *c = &d->cfg;
    int first = c->n_layers - c->n_kv_shared;
    k += (size_t)snprintf(buf + k, n - k, "; layers %d..%d reuse the KV of layers", first,
                          c->n_layers - 1);
    for (int i = first; i < c->n_layers && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", i == first ? " " : ",", d->layers[i].kv_src);
    return k;
}

/* Gemma 4's layers in words (docs/forward/gemma4.md). */
static void gemma4_notes(const struct cellm_desc *d, char *buf, size_t n)
{
    const struct cellm_config *c = &d->cfg;
    size_t k = (size_t)snprintf(buf, n,
                                "full layers head_dim %d, kv heads %d%s; v norm without "
                                "weight; layer_scalar",
                                c->global_head_dim, c->n_global_kv_heads,
                                c->k_eq_v ? ", values = keys (k=v)" : "");
    if (k < n && c->n_kv_shared) {
        k = kv_sharing_note(d, buf, n, k);
        if (k < n && c->double_wide)
            k += (size_t)snprintf(buf + k, n - k, ", with a double-wide MLP (ffn %d)",
                                  2 * c->ffn_dim);
    }
    if (k < n && c->ple_dim)
        snprintf(buf + k, n - k, "; per-layer embeddings of %d (vocab %d)", c->ple_dim,
                 c->ple_vocab);
}

/* Gemma 3n's layers in words (docs/forward/gemma3n.md). */
static void gemma3n_notes(const struct cellm_desc *d, char *buf, size_t n)
{
    const struct cellm_config *c = &d->cfg;
    size_t k = (size_t)snprintf(buf, n, "AltUp %d streams (active %d", c->altup_n, c->altup_active);
    if (k < n && c->altup_clip > 0)
        k += (size_t)snprintf(buf + k, n - k, ", correction coefs clipped to %g", c->altup_clip);
    if (k < n)
        k += (size_t)snprintf(buf + k, n - k, "%s), LAuReL rank %d",
                              c->altup_correct_scale ? ", correct_output_scale" : "",
                              c->laurel_rank);
    for (int i = 0, first = 1; i < c->n_layers && k < n; i++) {
        if (!(c->layer_sparsity[i] > 0)) continue;
        k += (size_t)snprintf(buf + k, n - k, "%s%d (%g)",
                              first ? "; activation sparsity on layers " : ", ", i,
                              (double)c->layer_sparsity[i]);
        first = 0;
    }
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "; v norm without weight");
    if (k < n && c->n_kv_shared) k = kv_sharing_note(d, buf, n, k);
    if (k < n)
        snprintf(buf + k, n - k, "; per-layer embeddings of %d (vocab %d)", c->ple_dim,
                 c->ple_vocab);
}

static void quant_text(const struct cellm_config *c, char *buf, size_t n)
{
    const struct cellm_quant *q = &c->quant;
    const struct cellm_hf_quant *hq = &q->hf;
    buf[0] = 0;
    if (q->bits && q->mode == CELLM_QMODE_AFFINE)
        snprintf(buf, n, "%d-bit, group %d (config.json), %d per-module override%s", q->bits,
                 q->group, q->n_overrides, q->n_overrides == 1 ? "" : "s");
    else if (q->bits)
        snprintf(buf, n, "mode %s, %d-bit, group %d (config.json), %d per-module override%s",
                 cellm_qmode_name(q->mode), q->bits, q->group, q->n_overrides,
                 q->n_overrides == 1 ? "" : "s");
    if (hq->method == CELLM_HFQ_FP8)
        snprintf(buf, n, "fp8 E4M3, weight_block_size [%d, %d] (quantization_config)", hq->block[0],
                 hq->block[1]);
    else if (hq->method == CELLM_HFQ_GPTQ || hq->method == CELLM_HFQ_AWQ)
        snprintf(buf, n, "%s %d-bit, group %d%s%s (quantization_config)",
                 cellm_hfq_name(hq->method), hq->bits, hq->group ? hq->group : -1,
                 hq->desc_act ? ", desc_act" : "",
                 hq->method == CELLM_HFQ_GPTQ ? (hq->zero_one ? ", v1 zeros" : ", v2 zeros") : "");
    else if (hq->method == CELLM_HFQ_MXFP4)
        snprintf(buf, n, "mxfp4 blocks (quantization_config)");
}

/* Llama 4's and Mistral 3's position-dependent pieces in words; "" when none. */
static void positions_text(const struct cellm_config *c, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    if (c->qscale_beta != 0)
        k += (size_t)snprintf(buf + k, n - k, "queries x 1 + %g * ln(1 + floor(p / %g)); ",
                              c->qscale_beta, c->qscale_len);
    if (c->rope_interleaved && k < n) k += (size_t)snprintf(buf + k, n - k, "interleaved RoPE; ");
    char layers[256];
    int nn = c->layer_nope ? layer_list(c->layer_nope, c->n_layers, layers, sizeof layers) : 0;
    if (nn && k < n)
        k += (size_t)snprintf(buf + k, n - k, "NoPE on %d of %d layers (%s)", nn, c->n_layers,
                              layers);
    if (nn && c->attn_temp && k < n)
        k += (size_t)snprintf(buf + k, n - k,
                              " with query temperature (floor_scale %g, "
                              "attn_scale %g)",
                              c->temp_floor, c->temp_scale);
    if (nn && k < n) k += (size_t)snprintf(buf + k, n - k, "; ");
    int nc =
        c->layer_chunked ? layer_list(c->layer_chunked, c->n_layers, layers, sizeof layers) : 0;
    if (nc && k < n)
        k += (size_t)snprintf(buf + k, n - k, "chunked attention (%d) on %d of %d layers (%s); ",
                              c->attn_chunk, nc, c->n_layers, layers);
    if (c->qk_l2norm && k < n)
        k += (size_t)snprintf(buf + k, n - k, "weightless q/k norm after RoPE; ");
    if (k >= 2 && k < n) buf[k - 2] = 0; /* the last "; " */
}

/* The state layers' products and the shared expert (hybrid.h), outside the table. */
static void state_storage(const struct cellm_desc *d, struct cellm_info_store *st)
{
    const struct cellm_config *c = &d->cfg;
    if (!c->hybrid) return;
    struct summary s[4];
    static const char *const mix[] = {"in_proj", "out_proj"}, *const sh[] = {"gate", "up", "down",
                                                                             "gate weight"};
    memset(s, 0, sizeof s);
    int any_sh = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const struct cellm_hyb_layer *h = d->layers[i].hyb;
        if (!h) continue;
        if (d->layers[i].mixer != CELLM_MIXER_ATTN) {
            const struct cellm_weight *in[] = {&h->in_proj, &h->in_z, &h->in_b, &h->in_a};
            for (int k = 0; k < 4; k++)
                if (in[k]->fmt != CELLM_W_NONE) add(&s[0], in[k], i);
            add(&s[1], &h->out_proj, i);
        }
    }
    finish(&s[0]);
    finish(&s[1]);
    group_lines(st, c->hybrid == CELLM_HYBRID_LFM2 ? "conv" : "linear attention", mix, s, 2);
    memset(s, 0, sizeof s);
    for (int i = 0; i < c->n_layers; i++) {
        const struct cellm_hyb_layer *h = d->layers[i].hyb;
        if (!h || h->sh_gate.fmt == CELLM_W_NONE) continue;
        any_sh = 1;
        add(&s[0], &h->sh_gate, i);
        add(&s[1], &h->sh_up, i);
        add(&s[2], &h->sh_down, i);
        add(&s[3], &h->sh_gate_w, i);
    }
    for (int k = 0; any_sh && k < 4; k++)
        finish(&s[k]);
    if (any_sh) group_lines(st, "shared expert", sh, s, 4);
}

/* Sequence state in words: which layers, their shapes, the floats per sequence. */
static void state_text(const struct cellm_config *c, char *buf, size_t n)
{
    uint8_t flag[4096];
    char layers[200];
    int nl = c->n_layers < 4096 ? c->n_layers : 4096, count = 0;
    int64_t floats = 0;
    for (int i = 0; i < nl; i++) {
        flag[i] = c->layer_mixer[i] != CELLM_MIXER_ATTN;
        floats += cellm_hybrid_conv_floats(c, i) + cellm_hybrid_rec_floats(c, i);
    }
    count = layer_list(flag, nl, layers, sizeof layers);
    if (c->hybrid == CELLM_HYBRID_LFM2)
        snprintf(buf, n,
                 "short gated conv on %d of %d layers (%s), kernel %d; %lld f32 per sequence",
                 count, c->n_layers, layers, c->conv_kernel, (long long)floats);
    else
        snprintf(buf, n,
                 "Gated DeltaNet on %d of %d layers (%s), %d key / %d value heads, dk %d, dv %d, "
                 "conv kernel %d; %lld f32 per sequence; attention output gate%s",
                 count, c->n_layers, layers, c->lin_nk, c->lin_nv, c->lin_dk, c->lin_dv,
                 c->conv_kernel, (long long)floats, c->shared_ffn_dim ? ", shared expert" : "");
}

/* The storage lines: embedding, head, the table's matrix groups, norms. */
static void storage_lines(const struct cellm_desc *d, struct cellm_info_store *st)
{
    const struct cellm_config *c = &d->cfg;
    struct summary s[4];
    memset(s, 0, sizeof s);
    add(&s[0], &d->embed, 0);
    finish(&s[0]);
    add_line(st, "embedding", "%s [%lld, %lld]", s[0].text, (long long)d->embed.rows,
             (long long)d->embed.cols);
    if (c->tie_embeddings) {
        add_line(st, "head", "tied to the embedding");
    } else {
        memset(s, 0, sizeof s);
        add(&s[0], &d->head, 0);
        finish(&s[0]);
        add_line(st, "head", "%s [%lld, %lld]", s[0].text, (long long)d->head.rows,
                 (long long)d->head.cols);
    }
    /* a line per group of consecutive matrix rows of the table */
    for (int id = 0; id < CELLM_LT_N;) {
        const struct cellm_tensor_spec *t = &cellm_layer_tensors[id];
        if (t->kind != CELLM_TK_MAT && t->kind != CELLM_TK_EXPERTS) {
            id++;
            continue;
        }
        int n = 0;
        const char *names[4];
        memset(s, 0, sizeof s);
        for (; id < CELLM_LT_N && n < 4 && !strcmp(cellm_layer_tensors[id].group, t->group);
             id++, n++) {
            const struct cellm_tensor_spec *r = &cellm_layer_tensors[id];
            names[n] = r->label;
            for (int i = 0; i < c->n_layers; i++) {
                const struct cellm_layer *L = &d->layers[i];
                int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
                const struct cellm_weight *w = r->kind == CELLM_TK_EXPERTS
                                                   ? cellm_layer_experts(L, (enum cellm_lt)id)
                                                   : cellm_layer_weight(L, (enum cellm_lt)id);
                for (int e = 0; w && e < parts; e++)
                    add(&s[n], &w[e], i);
            }
            finish(&s[n]);
        }
        const char *fused = !strcmp(t->group, "attention") && c->fused_qkv ? " (fused qkv)"
                            : !strcmp(t->group, "mlp") && c->fused_gate_up ? " (fused gate_up)"
                                                                           : "";
        char label[64];
        snprintf(label, sizeof label, "%s%s", t->group, fused);
        group_lines(st, label, names, s, n);
    }
    state_storage(d, st);
    add_line(st, "norms", "%s", cellm_wfmt_name(d->final_norm.fmt));
}

/* Bytes of the routed experts' matrices, of which a decode step reads n_experts_used of
 * n_experts (more when batched rows pick different ones: the figure is for one stream). */
static uint64_t routed_expert_bytes(const struct cellm_desc *d)
{
    static const enum cellm_lt ids[] = {CELLM_LT_E_GATE, CELLM_LT_E_UP, CELLM_LT_E_DOWN,
                                        CELLM_LT_E_GATE_UP};
    uint64_t b = 0;
    for (int i = 0; i < d->cfg.n_layers; i++)
        for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
            const struct cellm_layer *L = &d->layers[i];
            const struct cellm_weight *w = cellm_layer_experts(L, ids[k]);
            int parts = cellm_layer_parts(d, L, ids[k]);
            for (int e = 0; w && e < parts; e++)
                b += cellm_weight_bytes(&w[e]);
        }
    return b;
}

enum cellm_status cellm_info_build(const struct cellm_desc *d, const char *device,
                                   struct cellm_info_store *st, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    struct cellm_model_info *o = &st->pub;
    memset(st, 0, sizeof *st);
    o->family = c->model_type;
    o->vocab = c->vocab;
    o->dim = c->dim;
    o->n_layers = c->n_layers;
    o->ffn_dim = c->ffn_dim;
    o->max_pos = c->max_pos;
    o->n_heads = c->n_heads;
    o->n_kv_heads = c->n_kv_heads;
    o->head_dim = c->head_dim;
    o->rot_dims = c->rot_dims;
    o->attn_scale = c->attn_scale;
    rope_str(&c->rope, c->gemma4 ? c->global_head_dim : c->rot_dims, st->rope, sizeof st->rope);
    o->rope = st->rope;
    o->rope_long_after = c->rope.kind == CELLM_ROPE_LONGROPE ? (int)c->rope.original_max_pos : 0;
    o->n_sliding = layer_list(c->layer_sliding, c->n_layers, st->sliding, sizeof st->sliding);
    o->sliding_layers = st->sliding;
    o->window = o->n_sliding ? c->window : 0;
    if (o->n_sliding && memcmp(&c->rope_local, &c->rope, sizeof c->rope)) {
        rope_str(&c->rope_local, c->rot_dims, st->rope_local, sizeof st->rope_local);
        o->rope_local = st->rope_local;
    }
    o->attn_softcap = c->attn_softcap;
    o->final_softcap = c->final_softcap;
    block_text(c, st->block, sizeof st->block);
    o->block = st->block;
    o->n_moe_layers = layer_list(c->layer_moe, c->n_layers, st->moe_layers, sizeof st->moe_layers);
    o->moe_layers = st->moe_layers;
    o->experts_layout = cellm_experts_name(d->experts);
    if (o->n_moe_layers) {
        o->n_experts = c->n_experts;
        o->n_experts_used = c->n_experts_used;
        o->moe_ffn_dim = c->moe_ffn_dim;
        o->norm_topk_prob = c->norm_topk_prob;
        if (c->router == CELLM_ROUTER_TOPK_SOFTMAX || c->expert_bias || c->swiglu_clamp) {
            snprintf(st->router, sizeof st->router, "%s%s",
                     c->router == CELLM_ROUTER_TOPK_SOFTMAX ? "top-k of the logits, then softmax"
                                                            : "softmax, then top-k",
                     c->expert_bias ? ", biases on the router and the experts" : "");
            o->router = st->router;
        }
        if (c->router == CELLM_ROUTER_SIGMOID_GROUP) {
            snprintf(st->router, sizeof st->router,
                     "sigmoid; chosen with e_score_correction_bias among the best %d of %d "
                     "groups; weights x %g",
                     c->topk_group, c->n_group, c->routed_scale);
            o->router = st->router;
        }
        if (c->shared_ffn_dim) {
            snprintf(st->shared, sizeof st->shared, "ffn %d, added to every MoE layer's output",
                     c->shared_ffn_dim);
            o->shared_experts = st->shared;
        }
        if (c->router == CELLM_ROUTER_SIGMOID_INPUT)
            o->router = "top-k of the logits; sigmoid scores scale the experts' input";
        if (c->shared_expert) o->expert_act = "silu gated, plus a shared expert (same width)";
        if (c->swiglu_clamp) {
            snprintf(st->expert_act, sizeof st->expert_act,
                     "clamped SwiGLU: limit %g, alpha %g, (up + 1) * glu", c->swiglu_limit,
                     c->swiglu_alpha);
            o->expert_act = st->expert_act;
        }
    }
    positions_text(c, st->positions, sizeof st->positions);
    o->positions = st->positions[0] ? st->positions : NULL;
    if (cellm_config_has_state(c)) {
        state_text(c, st->state, sizeof st->state);
        o->state = st->state;
    }
    if (c->mla) {
        snprintf(st->mla, sizeof st->mla,
                 "q_lora_rank %d, kv_lora_rank %d, qk_nope %d + qk_rope %d%s, v_head_dim %d; "
                 "cache %d floats per position and layer (latent + rope key)",
                 c->q_lora_rank, c->kv_lora_rank, c->qk_nope_dim, c->qk_rope_dim,
                 c->rope_interleave ? " (interleaved)" : "", c->v_head_dim,
                 c->kv_lora_rank + c->qk_rope_dim);
        o->mla = st->mla;
    }
    if (o->n_moe_layers && c->mla && c->router == CELLM_ROUTER_SIGMOID_GROUP) {
        snprintf(st->router, sizeof st->router,
                 "sigmoid, correction bias for the choice, best %d of %d groups, weights x %g; "
                 "%d shared expert%s",
                 c->topk_group, c->n_group, c->routed_scale, c->n_shared_experts,
                 c->n_shared_experts == 1 ? "" : "s");
        o->router = st->router;
    }
    if (c->gemma4) {
        gemma4_notes(d, st->layer_notes, sizeof st->layer_notes);
        o->layer_notes = st->layer_notes;
        if (c->moe_parallel) {
            snprintf(st->router, sizeof st->router,
                     "softmax, then top-k, renormalised, x router.per_expert_scale; beside the "
                     "dense MLP");
            o->router = st->router;
        }
    }
    if (c->gemma3n) {
        gemma3n_notes(d, st->layer_notes, sizeof st->layer_notes);
        o->layer_notes = st->layer_notes;
    }
    if (c->attn_sinks)
        o->sinks = "a learned logit per head joins each softmax row (self_attn.sinks)";
    o->bos = c->bos;
    o->n_eos = c->n_eos;
    o->eos = c->eos;
    quant_text(c, st->quant, sizeof st->quant);
    o->quantization = st->quant[0] ? st->quant : NULL;
    storage_lines(d, st);
    o->storage = st->lines;
    o->n_params = d->n_params;
    o->n_bytes = d->n_bytes;
    o->step_bytes = d->n_bytes;
    if (!c->tie_embeddings) o->step_bytes -= cellm_weight_bytes(&d->embed);
    if (c->n_experts > 0 && c->n_experts_used < c->n_experts) {
        uint64_t eb = routed_expert_bytes(d);
        o->step_bytes -= eb - eb / (uint64_t)c->n_experts * (uint64_t)c->n_experts_used;
    }
    snprintf(st->names, sizeof st->names, "%s%s", *d->ckpt.scheme ? d->ckpt.scheme : "canonical",
             *d->ckpt.scheme ? "*" : "");
    o->names = st->names;
    o->n_ignored = d->ckpt.n_ignored;
    st->shards = cellm_calloc((size_t)d->ckpt.n_files + 1, sizeof *st->shards);
    if (!st->shards) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < d->ckpt.n_files; i++) {
        st->shards[i].file = cellm_ckpt_file_name(&d->ckpt, i);
        st->shards[i].bytes = d->ckpt.files[i].map.size;
        st->shards[i].n_tensors = d->ckpt.files[i].n;
    }
    o->n_shards = d->ckpt.n_files;
    o->shards = st->shards;
    o->device = device;
    o->warnings = d->warnings;
    return CELLM_OK;
}

void cellm_info_free(struct cellm_info_store *st)
{
    if (!st) return;
    cellm_free(st->shards);
    st->shards = NULL;
}
