/*
 * quant.h: how a checkpoint says its weights are quantized.
 *
 * Two sources, one per checkpoint: mlx-lm's "quantization" block (a global entry plus
 * per-module overrides, modes affine, mxfp4, mxfp8 and nvfp4) and Hugging Face's
 * "quantization_config" (quant_method fp8, gptq, awq or gpt-oss mxfp4). Both are storage
 * facts, read from config.json but knowing nothing of any model family: the model layer
 * (model/hparams.h) keeps one struct cellm_quant beside the hyper-parameters, and the
 * binder asks it how each module is stored. Keys that could change the arithmetic and
 * that cellm does not read are refused by name (qconfig.c).
 */
#ifndef CELLM_CHECKPOINT_QUANT_H
#define CELLM_CHECKPOINT_QUANT_H

#include "cellm.h"

/* MLX quantization modes (mlx >= 0.29): "mode" globally and per module. */
enum cellm_qmode {
    CELLM_QMODE_AFFINE, /* codes * scale + bias, 2-8 bits, group 32/64/128 */
    CELLM_QMODE_MXFP4,  /* E2M1, group 32, E8M0 scales */
    CELLM_QMODE_MXFP8,  /* E4M3, group 32, E8M0 scales */
    CELLM_QMODE_NVFP4,  /* E2M1, group 16, E4M3 scales */
};
const char *cellm_qmode_name(int mode);

/* Quantization of one module (a Linear or Embedding path without ".weight"). */
struct cellm_quant_override {
    char *module; /* canonical module path, e.g. "model.layers.3.mlp.down_proj" */
    int bits;     /* 0 = not quantized ("false" in config.json) */
    int group_size;
    int mode; /* enum cellm_qmode; an entry without "mode" is affine, as mlx's to_quantized */
};

/* Hugging Face "quantization_config" methods cellm reads (docs/formats.md). */
enum cellm_hfq {
    CELLM_HFQ_NONE,
    CELLM_HFQ_FP8,   /* quant_method "fp8": F8_E4M3 weights + weight_scale_inv blocks */
    CELLM_HFQ_GPTQ,  /* quant_method "gptq": qweight/qzeros/scales(/g_idx) */
    CELLM_HFQ_AWQ,   /* quant_method "awq", version "gemm" */
    CELLM_HFQ_MXFP4, /* quant_method "mxfp4" (gpt-oss): P_blocks + P_scales */
};
const char *cellm_hfq_name(int method);

struct cellm_hf_quant {
    int method;   /* enum cellm_hfq */
    int bits;     /* GPTQ 4 or 8, AWQ 4 */
    int group;    /* GPTQ/AWQ group_size; 0 = one group over all inputs (-1) */
    int block[2]; /* FP8 weight_block_size [rows, cols] */
    int desc_act; /* GPTQ: g_idx is a permutation of the groups */
    int sym;      /* GPTQ: informational (the stored zeros are read either way) */
    int zero_one; /* GPTQ checkpoint_format "gptq" (v1): stored zeros are zero - 1 */
};

struct cellm_quant {
    /* MLX: the global entry (bits 0 = no "quantization" block) and per-module overrides */
    int bits;
    int group;
    int mode; /* enum cellm_qmode of the global entry */
    int n_overrides;
    struct cellm_quant_override *overrides;
    /* Hugging Face quantization_config of a non-MLX checkpoint. Which modules it covers
     * is read from the tensors present (qweight, weight_scale_inv, P_blocks), so
     * modules_to_not_convert needs no bookkeeping. */
    struct cellm_hf_quant hf;
};

/* Reads "quantization" / "quantization_config" of the top-level config.json object
 * `top` (a cJSON object; mlx-lm writes its block under both keys, and a quant_method
 * marks Hugging Face's). what names the file in messages. */
enum cellm_status cellm_quant_parse(const void *top, const char *what, struct cellm_quant *q,
                                    struct cellm_error *err);
void cellm_quant_free(struct cellm_quant *q);

/* Quantization of a module: returns 1 and fills bits, group and (unless NULL) the MLX mode
 * if the config says how it is quantized (override or global), 0 if the config says it is
 * not ("false"), -1 if the config has no opinion (no quantization block). */
int cellm_quant_module(const struct cellm_quant *q, const char *module, int *bits, int *group,
                       int *mode);

#endif
