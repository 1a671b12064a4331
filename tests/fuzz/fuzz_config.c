/*
 * fuzz_config.c: libFuzzer target for the config.json parser.
 *
 * The input is config.json, optionally followed by a NUL byte and generation_config.json.
 * Neither is NUL-terminated in the fuzzer's buffer, so the parser's length handling is
 * exercised. An accepted config must be internally consistent (positive dimensions,
 * heads divisible by KV heads, rotary dims within the head, per-layer arrays readable,
 * quantization sizes each mode or method can have).
 */
#include <stdint.h>
#include <string.h>

#include "model/hparams.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    const char *gen = nul ? (const char *)nul + 1 : NULL;
    size_t gen_len = nul ? size - len - 1 : 0;
    struct cellm_config c;
    struct cellm_error err;
    if (cellm_config_parse(text, len, gen, gen_len, "config.json", &c, &err) != CELLM_OK) return 0;
    if (c.vocab <= 0 || c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
        c.n_heads % c.n_kv_heads || c.rot_dims <= 0 || c.rot_dims > c.head_dim ||
        c.n_eos > CELLM_MAX_EOS)
        __builtin_trap();
    int sliding = 0, moe = 0;
    for (int i = 0; i < c.n_layers; i++) {
        sliding += c.layer_sliding[i];
        moe += c.layer_moe[i];
    }
    if (sliding && c.window <= 0) __builtin_trap();
    if (moe && (c.n_experts <= 0 || c.n_experts_used > c.n_experts)) __builtin_trap();
    int bits, group, mode;
    for (int i = 0; i < c.quant.n_overrides; i++)
        if (cellm_quant_module(&c.quant, c.quant.overrides[i].module, &bits, &group, &mode) == 1) {
            /* each mode's sizes (docs/formats.md) */
            int ok = mode == CELLM_QMODE_AFFINE  ? bits >= 2 && bits <= 8 && group >= 32
                     : mode == CELLM_QMODE_MXFP8 ? bits == 8 && group == 32
                     : mode == CELLM_QMODE_NVFP4
                         ? bits == 4 && group == 16
                         : mode == CELLM_QMODE_MXFP4 && bits == 4 && group == 32;
            if (!ok) __builtin_trap();
        }
    cellm_quant_module(&c.quant, "model.embed_tokens", &bits, &group, NULL);
    const struct cellm_hf_quant *q = &c.quant.hf;
    if (q->method != CELLM_HFQ_NONE && c.quant.bits) __builtin_trap(); /* one scheme or the other */
    if (q->method == CELLM_HFQ_GPTQ && ((q->bits != 4 && q->bits != 8) || q->group < 0))
        __builtin_trap();
    if (q->method == CELLM_HFQ_AWQ && (q->bits != 4 || q->group <= 0)) __builtin_trap();
    if (q->method == CELLM_HFQ_FP8 && (q->block[0] <= 0 || q->block[1] <= 0)) __builtin_trap();
    cellm_config_free(&c);
    return 0;
}
