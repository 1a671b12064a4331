/*
 * cmd_inspect.c: `cellm inspect -m DIR`: what a checkpoint is and how it is stored.
 *
 * Loads the model as every other command does (so anything inspect shows, the engine
 * accepted) and prints, one fact per line: the family and dimensions, the attention
 * layout (heads, RoPE, sliding layers, soft-caps), the block structure, the storage of
 * each tensor group, parameters and bytes, the shard files and the load warnings.
 *
 * Storage is summarised rather than listed per tensor: each projection's storage is
 * collected over all layers (and experts), a projection whose layers differ lists each
 * variant with its layers, and projections with the same summary share one line, e.g.
 * "attention q, k, v, o  affine 4-bit g64 bf16".
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "engine/engine.h"

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

/* Prints projections with equal summaries on one line: "label a, b  summary". */
static void print_group(const char *label, const char *const *names, struct summary *s, int n)
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
        printf("  %-24s %s\n", line, s[i].text);
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

static const char *vec_fmt(const struct cellm_desc *d)
{
    return cellm_wfmt_name(d->final_norm.fmt);
}

static void print_model(const char *dir, const struct cellm_desc *d, const char *device)
{
    const struct cellm_config *c = &d->cfg;
    char buf[1024];
    printf("model        %s\n", dir);
    printf("family       %s\n", c->model_type);
    printf("dimensions   vocab %d, hidden %d, layers %d, ffn %d, max positions %d\n", c->vocab,
           c->dim, c->n_layers, c->ffn_dim, c->max_pos);
    printf("attention    heads %d, kv heads %d, head_dim %d, rotary dims %d, scale %.6g\n",
           c->n_heads, c->n_kv_heads, c->head_dim, c->rot_dims, c->attn_scale);
    rope_str(&c->rope, c->rot_dims, buf, sizeof buf);
    printf("rope         %s\n", buf);
    char layers[256];
    int n_sliding = layer_list(c->layer_sliding, c->n_layers, layers, sizeof layers);
    if (n_sliding) {
        printf("sliding      window %d on %d of %d layers (%s)\n", c->window, n_sliding,
               c->n_layers, layers);
        if (memcmp(&c->rope_local, &c->rope, sizeof c->rope)) {
            rope_str(&c->rope_local, c->rot_dims, buf, sizeof buf);
            printf("rope local   %s\n", buf);
        }
    } else {
        printf("sliding      none\n");
    }
    if (c->attn_sinks)
        printf("sinks        a learned logit per head joins each softmax row (self_attn.sinks)\n");
    if (c->attn_softcap || c->final_softcap)
        printf("soft-caps    attention %g, final %g\n", c->attn_softcap, c->final_softcap);
    else
        printf("soft-caps    none\n");
    printf("block        %s eps %g, %s%s%s%s%s%s%s%s\n", norm_name(c->norm), c->norm_eps,
           act_name(c->act), c->qkv_bias ? ", qkv bias" : "", c->o_bias ? ", o bias" : "",
           c->mlp_bias ? ", mlp bias" : "",
           c->qk_norm_per_head ? ", per-head q/k norm"
           : c->qk_norm        ? ", q/k norm"
                               : "",
           c->block == CELLM_BLOCK_SANDWICH ? ", sandwich norms" : "",
           c->block == CELLM_BLOCK_PARALLEL ? ", parallel residual" : "",
           c->embed_scale ? ", embeddings x sqrt(hidden)" : "");
    uint8_t *moe = c->layer_moe;
    int n_moe = layer_list(moe, c->n_layers, layers, sizeof layers);
    if (n_moe) {
        const char *layout = cellm_experts_name(d->experts);
        printf("experts      %d experts, %d per token, ffn %d, %s, on %d of %d layers (%s)%s\n",
               c->n_experts, c->n_experts_used, c->moe_ffn_dim, layout, n_moe, c->n_layers, layers,
               c->norm_topk_prob ? ", top-k renormalised" : "");
        if (c->router == CELLM_ROUTER_TOPK_SOFTMAX || c->expert_bias || c->swiglu_clamp) {
            printf("router       %s%s\n",
                   c->router == CELLM_ROUTER_TOPK_SOFTMAX ? "top-k of the logits, then softmax"
                                                          : "softmax, then top-k",
                   c->expert_bias ? ", biases on the router and the experts" : "");
            if (c->swiglu_clamp)
                printf("expert act   clamped SwiGLU: limit %g, alpha %g, (up + 1) * glu\n",
                       c->swiglu_limit, c->swiglu_alpha);
        }
    }
    printf("tokens       bos %d, eos", c->bos);
    for (int i = 0; i < c->n_eos; i++)
        printf("%s%d", i ? "," : " ", c->eos[i]);
    printf("%s\n", c->n_eos ? "" : " none");
    if (c->quant.bits && c->quant.mode == CELLM_QMODE_AFFINE)
        printf("quantization %d-bit, group %d (config.json), %d per-module override%s\n",
               c->quant.bits, c->quant.group, c->quant.n_overrides,
               c->quant.n_overrides == 1 ? "" : "s");
    else if (c->quant.bits)
        printf("quantization mode %s, %d-bit, group %d (config.json), %d per-module override%s\n",
               cellm_qmode_name(c->quant.mode), c->quant.bits, c->quant.group, c->quant.n_overrides,
               c->quant.n_overrides == 1 ? "" : "s");
    const struct cellm_hf_quant *hq = &c->quant.hf;
    if (hq->method == CELLM_HFQ_FP8)
        printf("quantization fp8 E4M3, weight_block_size [%d, %d] (quantization_config)\n",
               hq->block[0], hq->block[1]);
    else if (hq->method == CELLM_HFQ_GPTQ || hq->method == CELLM_HFQ_AWQ)
        printf("quantization %s %d-bit, group %d%s%s (quantization_config)\n",
               cellm_hfq_name(hq->method), hq->bits, hq->group ? hq->group : -1,
               hq->desc_act ? ", desc_act" : "",
               hq->method == CELLM_HFQ_GPTQ ? (hq->zero_one ? ", v1 zeros" : ", v2 zeros") : "");
    else if (hq->method == CELLM_HFQ_MXFP4)
        printf("quantization mxfp4 blocks (quantization_config)\n");

    /* storage */
    printf("storage\n");
    struct summary s[4];
    memset(s, 0, sizeof s);
    add(&s[0], &d->embed, 0);
    finish(&s[0]);
    printf("  %-24s %s [%lld, %lld]\n", "embedding", s[0].text, (long long)d->embed.rows,
           (long long)d->embed.cols);
    if (c->tie_embeddings) {
        printf("  %-24s tied to the embedding\n", "head");
    } else {
        memset(s, 0, sizeof s);
        add(&s[0], &d->head, 0);
        finish(&s[0]);
        printf("  %-24s %s [%lld, %lld]\n", "head", s[0].text, (long long)d->head.rows,
               (long long)d->head.cols);
    }
    /* the matrices of model.h's tensor table, a line per group of consecutive rows */
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
            names[n] = cellm_layer_tensors[id].label;
            for (int i = 0; i < c->n_layers; i++) {
                const struct cellm_layer *L = &d->layers[i];
                int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
                const struct cellm_weight *w = cellm_layer_tensors[id].kind == CELLM_TK_EXPERTS
                                                   ? cellm_layer_experts(L, (enum cellm_lt)id)
                                                   : cellm_layer_weight(L, (enum cellm_lt)id);
                for (int e = 0; w && e < parts; e++)
                    add(&s[n], &w[e], i);
            }
            finish(&s[n]);
        }
        char label[64];
        int fused = (!strcmp(t->group, "attention") && c->fused_qkv) ||
                    (!strcmp(t->group, "mlp") && c->fused_gate_up);
        snprintf(label, sizeof label, "%s%s", t->group,
                 !fused                                           ? ""
                 : c->fused_qkv && !strcmp(t->group, "attention") ? " (fused qkv)"
                                                                  : " (fused gate_up)");
        print_group(label, names, s, n);
    }
    printf("  %-24s %s\n", "norms", vec_fmt(d));

    uint64_t p = d->n_params, b = d->n_bytes;
    printf("parameters   %llu (%.3g M)\n", (unsigned long long)p, (double)p / 1e6);
    printf("bytes        %llu (%.3g MiB, %.2f bits per parameter)\n", (unsigned long long)b,
           (double)b / (1024.0 * 1024.0), p ? 8.0 * (double)b / (double)p : 0.0);
    printf("names        %s%s", *d->ckpt.scheme ? d->ckpt.scheme : "canonical",
           *d->ckpt.scheme ? "*" : "");
    if (d->ckpt.n_ignored) printf(" (%d tensors of other towers ignored)", d->ckpt.n_ignored);
    printf("\n");
    printf("shards       %d\n", d->ckpt.n_files);
    for (int i = 0; i < d->ckpt.n_files; i++)
        printf("  %-24s %zu bytes, %d tensors\n", cellm_ckpt_file_name(&d->ckpt, i),
               d->ckpt.files[i].map.size, d->ckpt.files[i].n);
    printf("device       %s\n", device);
    if (d->warnings[0]) {
        printf("warnings\n");
        const char *w = d->warnings;
        while (*w) {
            const char *e = strchr(w, '\n');
            int len = e ? (int)(e - w) : (int)strlen(w);
            printf("  %.*s\n", len, w);
            w += len + (e ? 1 : 0);
        }
    } else {
        printf("warnings     none\n");
    }
}

int cellm_cmd_inspect(int argc, char **argv)
{
    static const char *const flags[] = {
        "--help",         "-h",        "-m", "--model",       "--download",
        "--device",       "--threads", "-t", "--pjrt-plugin", "--exec-opt",
        "--exec-options", NULL};
    struct cli_opts o = {0};
    o.mp = cellm_model_params_default();
    o.mp.n_threads = 1; /* inspect computes nothing */
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cellm inspect -m MODEL [options]\n"
                   "  describes a checkpoint: family, dimensions, attention layout, storage of\n"
                   "  each tensor group, parameters, bytes, shards and warnings\n" CLI_COMMON_HELP
                   "  -h, --help           this text\n");
            return 0;
        }
        cli_unknown("inspect", argv[i], flags);
        return 2;
    }
    if (!cli_resolve(&o, "inspect")) return 2;
    struct cellm_model *m = cli_load_model(&o, "inspect");
    if (!m) return 1;
    print_model(o.model_dir, cellm_model_desc(m), cellm_model_device(m));
    cellm_model_free(m);
    return 0;
}
