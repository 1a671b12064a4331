/*
 * qconfig.c: config.json's quantization blocks into struct cellm_quant (quant.h): mlx-lm's
 * "quantization" (global entry and per-module overrides) and Hugging Face's
 * "quantization_config".
 *
 * For the latter
 * cellm reads four methods (fp8 with block scales, gptq, awq gemm, gpt-oss mxfp4; their
 * arithmetic is in docs/formats.md). Every key of the block is either consumed, known to
 * describe only how the checkpoint was made (ignored), or refused by name: a key cellm
 * does not know may change the arithmetic, and guessing would give wrong numbers quietly.
 */
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "base/alloc.h"
#include "quant.h"

const char *cellm_hfq_name(int method)
{
    static const char *const names[] = {"none", "fp8", "gptq", "awq", "mxfp4"};
    return method >= 0 && method <= CELLM_HFQ_MXFP4 ? names[method] : "?";
}

static int in_list(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list)) return 1;
    return 0;
}

/* Keys that record how the quantizer ran, not how to dequantize. */
static const char *const provenance[] = {"quant_method",
                                         "modules_to_not_convert",
                                         "damp_percent",
                                         "damp_auto_increment",
                                         "true_sequential",
                                         "static_groups",
                                         "model_name_or_path",
                                         "model_file_base_name",
                                         "dataset",
                                         "tokenizer",
                                         "use_cuda_fp16",
                                         "use_exllama",
                                         "exllama_config",
                                         "max_input_length",
                                         "cache_block_outputs",
                                         "batch_size",
                                         "pad_token_id",
                                         "module_name_preceding_first_block",
                                         "block_name_to_quantize",
                                         "modules_in_block_to_quantize",
                                         "quantizer",
                                         "meta",
                                         "backend",
                                         "do_fuse",
                                         "fuse_max_seq_len",
                                         "modules_to_fuse",
                                         "lm_head",
                                         "mse",
                                         "dequantize",
                                         NULL};

static enum cellm_status check_keys(const cJSON *q, const char *what, const char *method,
                                    const char *const *consumed, struct cellm_error *err)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, q)
    {
        if (in_list(e->string, provenance) || in_list(e->string, consumed)) continue;
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: quantization_config.%s: key not supported for quant_method "
                          "\"%s\" (docs/formats.md lists what cellm reads)",
                          what, e->string, method);
    }
    const cJSON *skip = cellm_json_get(q, "modules_to_not_convert");
    if (skip && !cJSON_IsArray(skip))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: quantization_config.modules_to_not_convert is a %s, expected an "
                          "array",
                          what, cellm_json_type(skip));
    return CELLM_OK;
}

static enum cellm_status str_is(const cJSON *q, const char *key, const char *what, const char *def,
                                const char *const *allowed, const char **out,
                                struct cellm_error *err)
{
    CELLM_TRY(cellm_json_str(q, key, what, def, out, err));
    if (in_list(*out, allowed)) return CELLM_OK;
    char list[160] = "";
    for (const char *const *a = allowed; *a; a++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s\"%s\"", n ? " or " : "", *a);
    }
    return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                      "%s: quantization_config.%s is \"%s\"; cellm reads %s", what, key, *out,
                      list);
}

static enum cellm_status parse_fp8(const cJSON *q, const char *what, struct cellm_hf_quant *o,
                                   struct cellm_error *err)
{
    static const char *const keys[] = {"weight_block_size", "activation_scheme", "fmt", NULL};
    static const char *const dyn[] = {"dynamic", NULL}, *const e4m3[] = {"e4m3", NULL};
    CELLM_TRY(check_keys(q, what, "fp8", keys, err));
    const char *s;
    CELLM_TRY(str_is(q, "activation_scheme", what, "dynamic", dyn, &s, err));
    CELLM_TRY(str_is(q, "fmt", what, "e4m3", e4m3, &s, err));
    const cJSON *b = cellm_json_get(q, "weight_block_size");
    if (!b)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: quantization_config.weight_block_size is missing; cellm reads "
                          "FP8 with block scales only (per-tensor FP8 is not supported)",
                          what);
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: quantization_config.weight_block_size: expected an array of 2 "
                          "positive integers",
                          what);
    for (int i = 0; i < 2; i++) {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(cJSON_GetArrayItem(b, i), "weight_block_size", what, 1, 65536,
                                    &v, err));
        o->block[i] = (int)v;
    }
    o->method = CELLM_HFQ_FP8;
    return CELLM_OK;
}

static enum cellm_status parse_gptq(const cJSON *q, const char *what, struct cellm_hf_quant *o,
                                    struct cellm_error *err)
{
    static const char *const keys[] = {"bits", "group_size",        "desc_act",
                                       "sym",  "checkpoint_format", NULL};
    static const char *const fmts[] = {"gptq", "gptq_v2", NULL};
    CELLM_TRY(check_keys(q, what, "gptq", keys, err));
    int64_t bits, group;
    CELLM_TRY(cellm_json_int(q, "bits", what, 4, &bits, err));
    CELLM_TRY(cellm_json_int(q, "group_size", what, 128, &group, err));
    if (bits != 4 && bits != 8)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: quantization_config.bits is %lld; cellm reads GPTQ with 4 or 8 "
                          "bits",
                          what, (long long)bits);
    if (group != -1 && (group < 1 || group > 1 << 20))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: quantization_config.group_size is %lld; expected -1 or a positive "
                          "group size",
                          what, (long long)group);
    CELLM_TRY(cellm_json_bool(q, "desc_act", what, 0, &o->desc_act, err));
    CELLM_TRY(cellm_json_bool(q, "sym", what, 1, &o->sym, err));
    const char *f;
    CELLM_TRY(str_is(q, "checkpoint_format", what, "gptq", fmts, &f, err));
    o->zero_one = !strcmp(f, "gptq");
    o->bits = (int)bits;
    o->group = group < 0 ? 0 : (int)group;
    o->method = CELLM_HFQ_GPTQ;
    return CELLM_OK;
}

static enum cellm_status parse_awq(const cJSON *q, const char *what, struct cellm_hf_quant *o,
                                   struct cellm_error *err)
{
    static const char *const keys[] = {"bits", "group_size", "zero_point", "version", NULL};
    static const char *const gemm[] = {"gemm", NULL};
    CELLM_TRY(check_keys(q, what, "awq", keys, err));
    int64_t bits, group;
    CELLM_TRY(cellm_json_int(q, "bits", what, 4, &bits, err));
    CELLM_TRY(cellm_json_int(q, "group_size", what, 128, &group, err));
    if (bits != 4)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: quantization_config.bits is %lld; AWQ (version gemm) packs 4-bit "
                          "codes",
                          what, (long long)bits);
    if (group < 1 || group > 1 << 20)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: quantization_config.group_size is %lld; expected a positive group "
                          "size",
                          what, (long long)group);
    int zp;
    CELLM_TRY(cellm_json_bool(q, "zero_point", what, 1, &zp, err));
    if (!zp)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: quantization_config.zero_point is false; cellm reads AWQ with zero "
                          "points only",
                          what);
    const char *v;
    /* AutoAWQ writes "GEMM"; transformers' AWQLinearVersion lower-cases it */
    CELLM_TRY(cellm_json_str(q, "version", what, "gemm", &v, err));
    if (strcmp(v, "gemm") && strcmp(v, "GEMM"))
        return str_is(q, "version", what, "gemm", gemm, &v, err);
    o->bits = 4;
    o->group = (int)group;
    o->method = CELLM_HFQ_AWQ;
    return CELLM_OK;
}

static enum cellm_status parse_hf(const cJSON *obj, const char *what, struct cellm_hf_quant *o,
                                  struct cellm_error *err)
{
    const cJSON *q = obj;
    memset(o, 0, sizeof *o);
    if (!cJSON_IsObject(q))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"quantization_config\" is a %s, expected an object", what,
                          cellm_json_type(q));
    const char *m;
    CELLM_TRY(cellm_json_str(q, "quant_method", what, "", &m, err));
    if (!strcmp(m, "fp8")) return parse_fp8(q, what, o, err);
    if (!strcmp(m, "gptq")) return parse_gptq(q, what, o, err);
    if (!strcmp(m, "awq")) return parse_awq(q, what, o, err);
    if (!strcmp(m, "mxfp4")) {
        CELLM_TRY(check_keys(q, what, "mxfp4", (const char *const[]){NULL}, err));
        o->method = CELLM_HFQ_MXFP4;
        return CELLM_OK;
    }
    return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                      "%s: quantization_config.quant_method \"%s\" is not supported (cellm reads "
                      "fp8, gptq, awq and mxfp4; docs/formats.md)",
                      what, m);
}

static const char *canonical_module(const char *m)
{
    if (!strncmp(m, "language_model.", 15)) return m + 15;
    return m;
}

const char *cellm_qmode_name(int mode)
{
    static const char *const names[] = {"affine", "mxfp4", "mxfp8", "nvfp4"};
    return mode >= 0 && mode <= CELLM_QMODE_NVFP4 ? names[mode] : "?";
}

static enum cellm_status check_qparams(int bits, int group, int mode, const char *what,
                                       const char *key, struct cellm_error *err)
{
    if (mode != CELLM_QMODE_AFFINE) {
        /* mlx fixes both per mode (mlx/ops.cpp) */
        int want_bits = mode == CELLM_QMODE_MXFP8 ? 8 : 4;
        int want_group = mode == CELLM_QMODE_NVFP4 ? 16 : 32;
        if (bits != want_bits)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: %s: mode \"%s\" has %d-bit codes; bits is %d", what, key,
                              cellm_qmode_name(mode), want_bits, bits);
        if (group != want_group)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: %s: mode \"%s\" has group size %d; group_size is %d", what, key,
                              cellm_qmode_name(mode), want_group, group);
        return CELLM_OK;
    }
    if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
        return cellm_errf(
            err, CELLM_ERR_UNSUPPORTED,
            "%s: %s: %d-bit quantization is not supported (MLX affine bits are 2, 3, 4, 5, 6 or 8)",
            what, key, bits);
    if (group != 32 && group != 64 && group != 128)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: %s: group size %d is not supported (32, 64 or 128)", what, key,
                          group);
    return CELLM_OK;
}

/* def_mode < 0: an override entry (no "mode" means affine, as mlx's to_quantized). */
static enum cellm_status parse_qentry(const cJSON *o, const char *what, const char *key,
                                      int def_bits, int def_group, int def_mode, int *bits,
                                      int *group, int *mode, struct cellm_error *err)
{
    const char *ms = "affine";
    CELLM_TRY(cellm_json_str(o, "mode", what, "affine", &ms, err));
    int m = -1;
    for (int k = CELLM_QMODE_AFFINE; k <= CELLM_QMODE_NVFP4; k++)
        if (!strcmp(ms, cellm_qmode_name(k))) m = k;
    if (m < 0)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: %s: quantization mode \"%s\" is not supported (affine, mxfp4, "
                          "mxfp8 or nvfp4)",
                          what, key, ms);
    (void)def_mode;
    if (m != CELLM_QMODE_AFFINE) { /* a non-affine mode's own sizes are the defaults */
        def_bits = m == CELLM_QMODE_MXFP8 ? 8 : 4;
        def_group = m == CELLM_QMODE_NVFP4 ? 16 : 32;
    }
    int64_t b, g;
    CELLM_TRY(cellm_json_int(o, "bits", what, def_bits, &b, err));
    CELLM_TRY(cellm_json_int(o, "group_size", what, def_group, &g, err));
    if (b < 0 || b > 64 || g < 0 || g > 1 << 20)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: %s: bits %lld / group_size %lld out of range",
                          what, key, (long long)b, (long long)g);
    *bits = (int)b;
    *group = (int)g;
    *mode = m;
    return check_qparams(*bits, *group, m, what, key, err);
}

static enum cellm_status parse_mlx(const cJSON *q, const char *what, struct cellm_quant *c,
                                   struct cellm_error *err)
{
    if (!q) return CELLM_OK;
    if (!cJSON_IsObject(q))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"quantization\" is a %s, expected an object",
                          what, cellm_json_type(q));
    CELLM_TRY(parse_qentry(q, what, "quantization", 4, 64, CELLM_QMODE_AFFINE, &c->bits, &c->group,
                           &c->mode, err));
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, q) n += cJSON_IsObject(e) || cJSON_IsBool(e);
    c->overrides = cellm_calloc((size_t)n + 1, sizeof *c->overrides);
    if (!c->overrides) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    cJSON_ArrayForEach(e, q)
    {
        if (!cJSON_IsObject(e) && !cJSON_IsBool(e)) continue;
        struct cellm_quant_override *o = &c->overrides[c->n_overrides];
        o->module = cellm_strdup(canonical_module(e->string));
        if (!o->module) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
        c->n_overrides++;
        if (cJSON_IsFalse(e)) {
            o->bits = 0;
        } else if (cJSON_IsTrue(e)) {
            o->bits = c->bits;
            o->group_size = c->group;
            o->mode = c->mode;
        } else {
            char key[300];
            snprintf(key, sizeof key, "quantization.%.250s", e->string);
            int defb = c->mode == CELLM_QMODE_AFFINE ? c->bits : 4;
            int defg = c->mode == CELLM_QMODE_AFFINE ? c->group : 64;
            CELLM_TRY(parse_qentry(e, what, key, defb, defg, -1, &o->bits, &o->group_size, &o->mode,
                                   err));
        }
    }
    return CELLM_OK;
}

int cellm_quant_module(const struct cellm_quant *q, const char *module, int *bits, int *group,
                       int *mode)
{
    int m;
    if (!mode) mode = &m;
    for (int i = 0; i < q->n_overrides; i++)
        if (!strcmp(q->overrides[i].module, module)) {
            if (q->overrides[i].bits == 0) return 0;
            *bits = q->overrides[i].bits;
            *group = q->overrides[i].group_size;
            *mode = q->overrides[i].mode;
            return 1;
        }
    if (q->bits == 0) return -1;
    *bits = q->bits;
    *group = q->group;
    *mode = q->mode;
    return 1;
}

enum cellm_status cellm_quant_parse(const void *top_obj, const char *what, struct cellm_quant *q,
                                    struct cellm_error *err)
{
    const cJSON *top = top_obj;
    const cJSON *mq = cellm_json_get(top, "quantization");
    const cJSON *hq = cellm_json_get(top, "quantization_config");
    /* mlx-lm writes its block under both keys; a quant_method marks Hugging Face's */
    if (!mq && cJSON_IsObject(hq) && !cellm_json_get(hq, "quant_method")) mq = hq;
    if (mq) return parse_mlx(mq, what, q, err);
    if (hq) return parse_hf(hq, what, &q->hf, err);
    return CELLM_OK;
}

void cellm_quant_free(struct cellm_quant *q)
{
    if (!q) return;
    for (int i = 0; i < q->n_overrides; i++)
        cellm_free(q->overrides[i].module);
    cellm_free(q->overrides);
    memset(q, 0, sizeof *q);
}
