/*
 * qconfig.c: a Hugging Face "quantization_config" into struct cellm_hf_quant.
 *
 * cellm reads four methods (fp8 with block scales, gptq, awq gemm, gpt-oss mxfp4; their
 * arithmetic is in docs/formats.md). Every key of the block is either consumed, known to
 * describe only how the checkpoint was made (ignored), or refused by name: a key cellm
 * does not know may change the arithmetic, and guessing would give wrong numbers quietly.
 */
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "config.h"

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

enum cellm_status cellm_config_parse_hfq(const void *obj, const char *what,
                                         struct cellm_hf_quant *o, struct cellm_error *err)
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
