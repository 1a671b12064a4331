/*
 * family.c: the table of supported model types with transformers' class defaults
 * (../shared/docs/reference/hf_transformers_forward.md, one section per family).
 */
#include "family.h"
#include "hybrid.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* one row per family, several fields a line: a table is read across */
/* clang-format off */
static const struct cellm_family families[] = {
    {.model_type = "llama", .title = "Llama (incl. Llama 3 RoPE scaling, tied and untied heads)", .vocab = 32000, .dim = 4096, .ffn_dim = 11008, .n_layers = 32,
     .n_heads = 32, .head_dim_from_config = 1, .max_pos = 2048, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 1, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .bos = 1, .eos = 2,
     .rope_types = "linear,llama3,yarn"},
    {.model_type = "mistral", .title = "Mistral", .vocab = 32000, .dim = 4096, .ffn_dim = 14336, .n_layers = 32,
     .n_heads = 32, .n_kv_heads = 8, .head_dim_from_config = 1, .max_pos = 131072,
     .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 1, .window_default = 4096,
     .sliding = CELLM_SLIDE_ALL, .bias = CELLM_BIAS_NONE, .norm = CELLM_NORM_RMS, .bos = 1,
     .eos = 2, .rope_types = "linear,llama3,yarn"},
    {.model_type = "qwen2", .title = "Qwen2/2.5", .vocab = 151936, .dim = 4096, .ffn_dim = 22016, .n_layers = 32,
     .n_heads = 32, .n_kv_heads = 32, .head_dim_from_config = 1, .max_pos = 32768,
     .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 1, .window_default = 4096,
     .sliding = CELLM_SLIDE_QWEN, .bias = CELLM_BIAS_QKV_ALWAYS, .norm = CELLM_NORM_RMS,
     .bos = -1, .eos = -1, .rope_types = "linear,yarn"},
    {.model_type = "qwen3", .title = "Qwen3", .vocab = 151936, .dim = 4096, .ffn_dim = 22016, .n_layers = 32,
     .n_heads = 32, .n_kv_heads = 32, .head_dim = 128, .head_dim_from_config = 1,
     .max_pos = 32768, .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 1, .window_default = 4096,
     .sliding = CELLM_SLIDE_QWEN, .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS,
     .qk_norm = 1, .bos = -1, .eos = -1, .rope_types = "linear,yarn"},
    {.model_type = "qwen3_moe", .title = "Qwen3-MoE", .vocab = 151936, .dim = 2048, .ffn_dim = 6144, .n_layers = 24,
     .n_heads = 32, .n_kv_heads = 4, .head_dim_from_config = 1, .max_pos = 32768,
     .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 1, .window_default = 4096,
     .sliding = CELLM_SLIDE_QWEN, .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS,
     .qk_norm = 1, .moe = 1, .bos = -1, .eos = -1, .rope_types = "linear,yarn"},
    {.model_type = "gemma2", .title = "Gemma 2", .vocab = 256000, .dim = 2304, .ffn_dim = 9216, .n_layers = 26,
     .n_heads = 8, .n_kv_heads = 4, .head_dim = 256, .head_dim_from_config = 1,
     .max_pos = 8192, .norm_eps = 1e-6, .eps_key = "rms_norm_eps",
     .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh", .rope_theta = 10000,
     .partial_rotary = 1, .window_default = 4096, .sliding = CELLM_SLIDE_EVEN,
     .bias = CELLM_BIAS_NONE, .norm = CELLM_NORM_RMS_PLUS_ONE, .block = CELLM_BLOCK_SANDWICH,
     .embed_scale = 1, .gemma_scale = 1, .attn_softcap = 50, .final_softcap = 30, .tie = 1,
     .bos = 2, .eos = 1, .rope_types = "linear"},
    {.model_type = "gemma3_text", .title = "Gemma 3 (text; also `gemma3`, the text model nested in multimodal checkpoints)", .wrapper = "gemma3", .vocab = 262208, .dim = 2304, .ffn_dim = 9216,
     .n_layers = 26, .n_heads = 8, .n_kv_heads = 4, .head_dim = 256,
     .head_dim_from_config = 1, .max_pos = 131072, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_activation",
     .act_default = "gelu_pytorch_tanh", .rope_theta = 1e6, .partial_rotary = 1,
     .window_default = 4096, .sliding = CELLM_SLIDE_PATTERN, .bias = CELLM_BIAS_NONE,
     .norm = CELLM_NORM_RMS_PLUS_ONE, .qk_norm = 1, .block = CELLM_BLOCK_SANDWICH, .embed_scale = 1,
     .gemma_scale = 1, .tie = 1, .bos = 2, .eos = 1, .local_rope = 1,
     .rope_types = "linear,llama3"},
    {.model_type = "stablelm", .title = "StableLM 2", .vocab = 50304, .dim = 2560, .ffn_dim = 6912, .n_layers = 32,
     .n_heads = 32, .n_kv_heads = 32, .max_pos = 4096, .norm_eps = 1e-5,
     .eps_key = "layer_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 0.25, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_USE_QKV_BIAS, .norm = CELLM_NORM_LAYER, .qk_norm = 2, .bos = 0,
     .eos = 0, .rope_types = "linear"},
    {.model_type = "phi3", .title = "Phi-3", .vocab = 32064, .dim = 3072, .ffn_dim = 8192, .n_layers = 32,
     .n_heads = 32, .head_dim_from_config = 1, .max_pos = 4096, .norm_eps = 1e-5,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 1, .sliding = CELLM_SLIDE_ALL,
     .bias = CELLM_BIAS_NONE, .norm = CELLM_NORM_RMS, .fused = 1, .bos = 1, .eos = 32000,
     .rope_types = "longrope"},
    {.model_type = "granite",
     .title = "Granite 3 dense (CPU only)",
     .vocab = 32000, .dim = 4096, .ffn_dim = 11008, .n_layers = 32, .n_heads = 32, .max_pos = 2048, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 1, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .multipliers = 1, .bos = 1,
     .eos = 2, .rope_types = "linear,llama3"},
    {.model_type = "gpt_oss", .title = "gpt-oss", .vocab = 201088, .dim = 2880, .ffn_dim = 2880, .n_layers = 36,
     .n_heads = 64, .n_kv_heads = 8, .head_dim = 64, .head_dim_from_config = 1,
     .max_pos = 131072, .norm_eps = 1e-5, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 150000, .partial_rotary = 1, .window_default = 128,
     .sliding = CELLM_SLIDE_EVEN, .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS,
     .moe = 1, .gpt_oss = 1, .bos = -1, .eos = -1, .rope_types = "linear,yarn"},
    {.model_type = "smollm3", .title = "SmolLM3 (NoPE layers)", .vocab = 128256, .dim = 2048, .ffn_dim = 11008, .n_layers = 36,
     .n_heads = 16, .n_kv_heads = 4, .head_dim_from_config = 1, .max_pos = 32768, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 2e6, .partial_rotary = 1, .sliding = CELLM_SLIDE_NOPE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .tie = 1, .bos = 128000,
     .eos = 128001, .rope_types = "linear,llama3,yarn", .nope = 1},
    {.model_type = "olmo2", .title = "OLMo 2 (norms after the sub-blocks, full-width q/k norms)", .vocab = 50304, .dim = 4096, .ffn_dim = 11008, .n_layers = 32,
     .n_heads = 32, .head_dim_from_config = 1, .max_pos = 2048, .norm_eps = 1e-5,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 1, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .qk_norm = 3,
     .block = CELLM_BLOCK_POST_NORM, .bos = -1, .eos = 50279, .rope_types = "linear,llama3,yarn"},
    {.model_type = "olmo3", .title = "OLMo 3 (OLMo 2 with sliding-window layers)", .vocab = 50304, .dim = 4096, .ffn_dim = 11008, .n_layers = 32,
     .n_heads = 32, .head_dim_from_config = 1, .max_pos = 2048, .norm_eps = 1e-5,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 500000, .partial_rotary = 1, .window_default = 4096,
     .sliding = CELLM_SLIDE_PATTERN, .pattern = 4, .bias = CELLM_BIAS_ATTENTION_BIAS,
     .norm = CELLM_NORM_RMS, .qk_norm = 3, .block = CELLM_BLOCK_POST_NORM, .bos = -1,
     .eos = 50279, .rope_types = "linear,llama3,yarn", .rope_full_only = 1},
    {.model_type = "glm4_moe", .title = "GLM-4.5/4.6 MoE (CPU, CUDA and XLA)", .vocab = 151552, .dim = 4096, .ffn_dim = 10944,
     .n_layers = 46, .n_heads = 96, .n_kv_heads = 8, .head_dim = 128, .head_dim_from_config = 1, .max_pos = 131072,
     .norm_eps = 1e-5, .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 0.5, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_QKV, .norm = CELLM_NORM_RMS, .qk_norm = 4, .moe = 1,
     .moe_grouped = 1, .bos = -1, .eos = -1, .rope_types = "linear,yarn"},
    {.model_type = "ministral3", .title = "Mistral 3 / Ministral 3 (text; also `mistral3`, the text model nested in multimodal checkpoints; CPU and XLA; CUDA with untested=1)", .wrapper = "mistral3",
     .vocab = 131072, .dim = 4096, .ffn_dim = 14336, .n_layers = 34, .n_heads = 32, .n_kv_heads = 8,
     .head_dim = 128, .head_dim_from_config = 1, .max_pos = 262144, .norm_eps = 1e-5,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu", .rope_theta = 1e6,
     .partial_rotary = 1, .sliding = CELLM_SLIDE_ALL, .bias = CELLM_BIAS_NONE,
     .norm = CELLM_NORM_RMS, .bos = 1, .eos = 2, .rope_types = "linear,llama3,yarn",
     .ministral3 = 1},
    {.model_type = "llama4_text", .title = "Llama 4 (text; also `llama4`, the text model nested in multimodal checkpoints; CPU and XLA; CUDA with untested=1)", .wrapper = "llama4",
     .vocab = 202048, .dim = 5120, .ffn_dim = 8192, .n_layers = 48, .n_heads = 40, .n_kv_heads = 8,
     .head_dim = 128, .head_dim_from_config = 1, .max_pos = 131072, .norm_eps = 1e-5,
     .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 500000, .partial_rotary = 1, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .bos = 1, .eos = 2,
     .rope_types = "linear,llama3", .llama4 = 1},
    {.model_type = "lfm2", .title = "LFM2 (short gated convolutions + attention; CPU and XLA; CUDA with untested=1)", .vocab = 65536, .dim = 2560, .ffn_dim = 12288, .n_layers = 32,
     .n_heads = 32, .n_kv_heads = 8, .max_pos = 128000, .norm_eps = 1e-5, .eps_key = "norm_eps",
     .act_key = "hidden_act", .act_default = "silu", .rope_theta = 1e6, .partial_rotary = 1,
     .sliding = CELLM_SLIDE_NONE, .bias = CELLM_BIAS_NONE, .norm = CELLM_NORM_RMS, .qk_norm = 1,
     .tie = 1, .bos = 1, .eos = 7, .rope_types = "", .hybrid = CELLM_HYBRID_LFM2},
    {.model_type = "qwen3_next", .title = "Qwen3-Next (Gated DeltaNet + gated attention, MoE; CPU and XLA)", .vocab = 151936, .dim = 2048, .ffn_dim = 5632, .n_layers = 48,
     .n_heads = 16, .n_kv_heads = 2, .head_dim = 256, .head_dim_from_config = 1, .max_pos = 32768,
     .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act", .act_default = "silu",
     .rope_theta = 10000, .partial_rotary = 0.25, .sliding = CELLM_SLIDE_NONE,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS_PLUS_ONE, .qk_norm = 1, .moe = 1,
     .bos = -1, .eos = -1, .rope_types = "linear,yarn", .hybrid = CELLM_HYBRID_QWEN3_NEXT},
    {.model_type = "qwen3_5_text", .title = "Qwen3.5 dense (Gated DeltaNet hybrid; also `qwen3_5`, the text model nested in its multimodal checkpoints; CPU and XLA; CUDA with untested=1)", .wrapper = "qwen3_5", .vocab = 248320, .dim = 4096, .ffn_dim = 12288,
     .n_layers = 32, .n_heads = 16, .n_kv_heads = 4, .head_dim = 256, .head_dim_from_config = 1,
     .max_pos = 32768, .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 0.25,
     .sliding = CELLM_SLIDE_NONE, .bias = CELLM_BIAS_ATTENTION_BIAS,
     .norm = CELLM_NORM_RMS_PLUS_ONE, .qk_norm = 1, .bos = -1, .eos = -1, .rope_types = "",
     .hybrid = CELLM_HYBRID_QWEN3_5},
    {.model_type = "qwen3_5_moe_text", .title = "Qwen3.5-MoE (Gated DeltaNet hybrid, MoE; also `qwen3_5_moe`, its multimodal wrapper; CPU and XLA)", .wrapper = "qwen3_5_moe", .vocab = 248320, .dim = 2048, .ffn_dim = 5632,
     .n_layers = 40, .n_heads = 16, .n_kv_heads = 2, .head_dim = 256, .head_dim_from_config = 1,
     .max_pos = 32768, .norm_eps = 1e-6, .eps_key = "rms_norm_eps", .act_key = "hidden_act",
     .act_default = "silu", .rope_theta = 10000, .partial_rotary = 0.25,
     .sliding = CELLM_SLIDE_NONE, .bias = CELLM_BIAS_ATTENTION_BIAS,
     .norm = CELLM_NORM_RMS_PLUS_ONE, .qk_norm = 1, .moe = 1, .bos = -1, .eos = -1,
     .rope_types = "", .hybrid = CELLM_HYBRID_QWEN3_5},
    {.model_type = "deepseek_v3", .title = "DeepSeek-V3 / Kimi K2 (latent attention, grouped sigmoid routing; CPU and XLA)", .vocab = 129280, .dim = 7168, .ffn_dim = 18432, .n_layers = 61,
     .n_heads = 128, .n_kv_heads = 128, .max_pos = 4096, .norm_eps = 1e-6, .eps_key = "rms_norm_eps",
     .act_key = "hidden_act", .act_default = "silu", .rope_theta = 10000, .partial_rotary = 1,
     .sliding = CELLM_SLIDE_NONE, .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS,
     .bos = 0, .eos = 1, .rope_types = "linear,yarn", .mla = 1},
    {.model_type = "gemma4_text", .title = "Gemma 4 (text, dense and MoE; also `gemma4`, the text model nested in multimodal checkpoints; CPU and XLA)", .wrapper = "gemma4",
     .vocab = 262144, .dim = 2304, .ffn_dim = 9216, .n_layers = 30, .n_heads = 8, .n_kv_heads = 4,
     .head_dim = 256, .head_dim_from_config = 1, .max_pos = 131072, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh",
     .rope_theta = 1e6, .partial_rotary = 1, .window_default = 512, .sliding = CELLM_SLIDE_PATTERN,
     .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS, .qk_norm = 1,
     .block = CELLM_BLOCK_SANDWICH, .embed_scale = 1, .tie = 1, .bos = 2, .eos = 1, .local_rope = 1,
     .rope_types = "proportional", .gemma4 = 1},
    {.model_type = "gemma3n_text", .title = "Gemma 3n (text; also `gemma3n`, the text model nested in multimodal checkpoints; CPU and XLA)", .wrapper = "gemma3n",
     .vocab = 262400, .dim = 2048, .ffn_dim = 16384, .n_layers = 35, .n_heads = 8, .n_kv_heads = 2,
     .head_dim = 256, .head_dim_from_config = 1, .max_pos = 32768, .norm_eps = 1e-6,
     .eps_key = "rms_norm_eps", .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh",
     .rope_theta = 1e6, .partial_rotary = 1, .window_default = 512, .sliding = CELLM_SLIDE_PATTERN,
     .pattern = 5, .bias = CELLM_BIAS_ATTENTION_BIAS, .norm = CELLM_NORM_RMS_DIV, .qk_norm = 1,
     .block = CELLM_BLOCK_SANDWICH, .embed_scale = 1, .final_softcap = 30, .tie = 1, .bos = 2,
     .eos = 1, .local_rope = 1, .rope_types = "linear", .gemma3n = 1},
};
/* clang-format on */

const struct cellm_family *cellm_family_find(const char *model_type, int *wrapped)
{
    *wrapped = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (!strcmp(families[i].model_type, model_type)) return &families[i];
        if (families[i].wrapper && !strcmp(families[i].wrapper, model_type)) {
            *wrapped = 1;
            return &families[i];
        }
    }
    return NULL;
}

#define N_FAMILIES (sizeof families / sizeof families[0])

static char list[1024];

static void build_list(void)
{
    size_t n = 0;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "",
                              families[i].model_type);
        if (families[i].wrapper)
            n += (size_t)snprintf(list + n, sizeof list - n, ", %s", families[i].wrapper);
    }
}

const char *cellm_family_list(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_list);
    return list;
}

const char *cellm_family_name(int i, const char **title)
{
    if (i < 0 || (size_t)i >= N_FAMILIES) return NULL;
    if (title) *title = families[i].title;
    return families[i].model_type;
}
