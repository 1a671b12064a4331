#!/usr/bin/env python3
"""Write a real-size checkpoint with random weights, for benchmarks.

Standard library only (runs on machines without numpy). Shapes follow published
configurations; values are small random numbers, so generated text is meaningless but
every byte a real model would read is there.

  make_random_ckpt.py PRESET OUTDIR [--format FMT] [--shards N] [--seed S]

With --seed the bytes come from a seeded generator (the same checkpoint on every machine,
for tests that compare outputs); without, from os.urandom.

Presets: qwen2.5-0.5b, llama-3.2-1b, qwen3-0.6b, llama-3.1-8b, smollm3-3b, olmo2-1b,
gpt-oss-20b, and the hybrids qwen3.5-0.8b (Gated DeltaNet every 3 of 4 layers) and lfm2-1.2b
(short convolutions beside attention).
q4 writes MLX affine 4-bit, group 64, bf16 scales and biases (embeddings quantized too);
mxfp4, nvfp4, mxfp8 the MLX modes (embeddings too); fp8 (128x128 F32 block scales), gptq
(4-bit, group 128, v1 zeros) and awq (4-bit gemm, group 128) the Hugging Face layouts
(embeddings in bf16, as those tools leave them). See docs/formats.md.
"""
import argparse
import json
import os
import random
import struct
import sys

PRESETS = {
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896,
                         intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True,
                         max_position_embeddings=32768, rms_norm_eps=1e-6),
    "llama-3.2-1b": dict(model_type="llama", vocab_size=128256, hidden_size=2048,
                         intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
                         tie_word_embeddings=True, max_position_embeddings=131072,
                         rms_norm_eps=1e-5,
                         rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
    "qwen3-0.6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024,
                       intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, rope_theta=1000000.0,
                       tie_word_embeddings=True, max_position_embeddings=40960,
                       rms_norm_eps=1e-6),
    "llama-3.1-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, rope_theta=500000.0, tie_word_embeddings=False,
                         max_position_embeddings=131072, rms_norm_eps=1e-5,
                         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
    "smollm3-3b": dict(model_type="smollm3", vocab_size=128256, hidden_size=2048,
                       intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                       num_key_value_heads=4, rope_theta=5000000.0, tie_word_embeddings=True,
                       max_position_embeddings=65536, rms_norm_eps=1e-6,
                       no_rope_layer_interval=4),
    "olmo2-1b": dict(model_type="olmo2", vocab_size=100352, hidden_size=2048,
                     intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16,
                     num_key_value_heads=16, rope_theta=500000.0, tie_word_embeddings=False,
                     max_position_embeddings=4096, rms_norm_eps=1e-6),
    # Qwen/Qwen3.5-0.8B's text model: 3 Gated DeltaNet layers, then one gated full-attention
    # layer, six times
    "qwen3.5-0.8b": dict(model_type="qwen3_5_text", vocab_size=248320, hidden_size=1024,
                         intermediate_size=3584, num_hidden_layers=24, num_attention_heads=8,
                         num_key_value_heads=2, head_dim=256, attn_output_gate=True,
                         linear_num_key_heads=16, linear_num_value_heads=16,
                         linear_key_head_dim=128, linear_value_head_dim=128,
                         linear_conv_kernel_dim=4, full_attention_interval=4,
                         layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 6,
                         rope_parameters=dict(rope_type="default", rope_theta=10000000,
                                              partial_rotary_factor=0.25,
                                              mrope_section=[11, 11, 10],
                                              mrope_interleaved=True),
                         hidden_act="silu", rms_norm_eps=1e-6, max_position_embeddings=262144,
                         tie_word_embeddings=True),
    # LiquidAI/LFM2-1.2B: the feed-forward width 8192 is block_ff_dim 12288 auto-adjusted
    "lfm2-1.2b": dict(model_type="lfm2", vocab_size=65536, hidden_size=2048,
                      intermediate_size=12288, block_ff_dim=12288, block_auto_adjust_ff_dim=True,
                      block_ffn_dim_multiplier=1.0, block_multiple_of=256,
                      num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                      layer_types=["full_attention" if i in (2, 5, 8, 10, 12, 14) else "conv"
                                   for i in range(16)],
                      conv_L_cache=3, conv_bias=False, norm_eps=1e-5, rope_theta=1000000.0,
                      max_position_embeddings=128000, tie_word_embeddings=True),
    # Hugging Face's layout: attention and router in bf16, experts as mxfp4 _blocks/_scales
    # (--format bf16 writes exactly that; the experts are never bf16 in a published gpt-oss)
    "gpt-oss-20b": dict(model_type="gpt_oss", vocab_size=201088, hidden_size=2880,
                        intermediate_size=2880, num_hidden_layers=24, num_attention_heads=64,
                        num_key_value_heads=8, head_dim=64, num_local_experts=32,
                        num_experts_per_tok=4, experts_per_token=4, sliding_window=128,
                        layer_types=["sliding_attention", "full_attention"] * 12,
                        attention_bias=True, swiglu_limit=7.0, rope_theta=150000,
                        rope_scaling=dict(rope_type="yarn", factor=32.0, beta_fast=32.0,
                                          beta_slow=1.0, truncate=False,
                                          original_max_position_embeddings=4096),
                        initial_context_length=4096, max_position_embeddings=131072,
                        rms_norm_eps=1e-5, tie_word_embeddings=False,
                        quantization_config=dict(quant_method="mxfp4", modules_to_not_convert=[
                            "model.layers.*.self_attn", "model.layers.*.mlp.router",
                            "model.embed_tokens", "lm_head"])),
}

# bf16 high bytes: sign and exponent of values around 2^-6 .. 2^-4
_HI = bytes([0x3C + (i & 1) if i < 128 else 0xBC + (i & 1) for i in range(256)])
_NORM_HI = bytes([0x3F] * 256)  # around 1.0 for norm weights


_random_bytes = os.urandom  # replaced by a seeded generator's randbytes with --seed


def rand_bf16(n, hi=_HI):
    b = bytearray(_random_bytes(2 * n))
    b[1::2] = bytes(b[1::2]).translate(hi)
    return bytes(b)


def _bytes_of(n, pick):
    """n bytes, each through pick (a 256-entry table) from a random byte."""
    return bytes(_random_bytes(n)).translate(pick)


# E8M0 scales 2^-9 .. 2^-6; E4M3 codes without NaN (0x7f, 0xff); positive E4M3 nvfp4
# scales around 2^-7; F16 GPTQ/AWQ scales around 2^-9
_E8M0 = bytes([118 + (i & 3) for i in range(256)])
_E4M3 = bytes([i if (i & 0x7F) != 0x7F else i - 1 for i in range(256)])
_E4M3_SCALE = bytes([0x20 + (i & 7) for i in range(256)])
_F16_HI = bytes([0x18 + (i & 1) for i in range(256)])


def _mlx(mode, bits, group):
    def make(name, rows, cols):
        nb, ng = rows * cols * bits // 8, rows * cols // group
        codes = (lambda k=nb: _bytes_of(k, _E4M3)) if bits == 8 else (lambda k=nb: _random_bytes(k))
        sc = _E4M3_SCALE if mode == "nvfp4" else _E8M0
        return [(name + ".weight", "U32", [rows, cols * bits // 32], nb, codes),
                (name + ".scales", "U8", [rows, cols // group], ng, lambda k=ng: _bytes_of(k, sc))]
    return make


def _f16(n):
    b = bytearray(_random_bytes(2 * n))
    b[1::2] = bytes(b[1::2]).translate(_F16_HI)
    return bytes(b)


def _fp8(name, rows, cols):
    sr, sc = -(-rows // 128), -(-cols // 128)
    return [(name + ".weight", "F8_E4M3", [rows, cols], rows * cols,
             lambda k=rows * cols: _bytes_of(k, _E4M3)),
            (name + ".weight_scale_inv", "F32", [sr, sc], 4 * sr * sc,
             lambda k=sr * sc: struct.pack("<%df" % k, *([2.0 ** -6] * k)))]


def _packed(awq):
    def make(name, rows, cols):
        ng = cols // 128
        qshape = [cols, rows // 8] if awq else [cols // 8, rows]
        return [(name + ".qweight", "I32", qshape, rows * cols // 2,
                 lambda k=rows * cols // 2: _random_bytes(k)),
                (name + ".qzeros", "I32", [ng, rows // 8], ng * rows // 2,
                 lambda k=ng * rows // 2: _random_bytes(k)),
                (name + ".scales", "F16", [ng, rows], 2 * ng * rows, lambda k=ng * rows: _f16(k))]
    return make


QFORMATS = {"mxfp4": _mlx("mxfp4", 4, 32), "nvfp4": _mlx("nvfp4", 4, 16),
            "mxfp8": _mlx("mxfp8", 8, 32), "fp8": _fp8, "gptq": _packed(False),
            "awq": _packed(True)}
HF_FORMATS = ("fp8", "gptq", "awq")  # Hugging Face methods leave the embeddings in bf16
QCONFIG = {
    "mxfp4": ("quantization", {"group_size": 32, "bits": 4, "mode": "mxfp4"}),
    "nvfp4": ("quantization", {"group_size": 16, "bits": 4, "mode": "nvfp4"}),
    "mxfp8": ("quantization", {"group_size": 32, "bits": 8, "mode": "mxfp8"}),
    "fp8": ("quantization_config", {"quant_method": "fp8", "weight_block_size": [128, 128],
                                    "activation_scheme": "dynamic"}),
    "gptq": ("quantization_config", {"quant_method": "gptq", "bits": 4, "group_size": 128,
                                     "desc_act": False, "sym": True}),
    "awq": ("quantization_config", {"quant_method": "awq", "bits": 4, "group_size": 128,
                                    "zero_point": True, "version": "gemm"}),
}


def tensors(cfg, fmt):
    """(name, dtype, shape, nbytes, maker) for every tensor."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", H // nh)
    out = []

    def vec(name, n):
        out.append((name, "BF16", [n], 2 * n, lambda n=n: rand_bf16(n, _NORM_HI)))

    def lin(name, rows, cols):
        if fmt in QFORMATS and not (name == "model.embed_tokens" and fmt in HF_FORMATS):
            out.extend(QFORMATS[fmt](name, rows, cols))
        elif fmt == "q4":
            g = cols // 64
            out.append((name + ".weight", "U32", [rows, cols // 8], rows * cols // 2,
                        lambda k=rows * cols // 2: _random_bytes(k)))
            out.append((name + ".scales", "BF16", [rows, g], 2 * rows * g,
                        lambda k=rows * g: rand_bf16(k)))
            out.append((name + ".biases", "BF16", [rows, g], 2 * rows * g,
                        lambda k=rows * g: rand_bf16(k)))
        else:
            out.append((name + ".weight", "BF16", [rows, cols], 2 * rows * cols,
                        lambda k=rows * cols: rand_bf16(k)))

    def blocks(name, E, rows, cols):  # gpt-oss mxfp4: [E, rows, cols/32, 16] codes, e8m0 scales
        nb, ng = E * rows * cols // 2, E * rows * cols // 32
        out.append((name + "_blocks", "U8", [E, rows, cols // 32, 16], nb,
                    lambda k=nb: _random_bytes(k)))
        out.append((name + "_scales", "U8", [E, rows, cols // 32], ng,
                    lambda k=ng: _bytes_of(k, _E8M0)))

    def bias(name, n):
        out.append((name, "BF16", [n], 2 * n, lambda n=n: rand_bf16(n)))

    def conv(name, channels, width):  # depthwise: [C, 1, K] (MLX: [C, K, 1])
        shape = [channels, width, 1] if fmt in ("q4",) + tuple(QFORMATS) else [channels, 1, width]
        if fmt in HF_FORMATS:
            shape = [channels, 1, width]
        out.append((name, "BF16", shape, 2 * channels * width,
                    lambda k=channels * width: rand_bf16(k)))

    mt = cfg["model_type"]
    lin("model.embed_tokens", V, H)
    if mt in ("qwen3_5_text", "lfm2"):
        _hybrid_layers(cfg, lin, vec, conv)
        if not cfg["tie_word_embeddings"]:
            lin("lm_head", V, H)
        return out
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if mt != "olmo2":  # OLMo 2 norms after the sub-blocks
            vec(p + "input_layernorm.weight", H)
        vec(p + "post_attention_layernorm.weight", H)
        if mt == "olmo2":
            vec(p + "post_feedforward_layernorm.weight", H)
            vec(p + "self_attn.q_norm.weight", nh * hd)
            vec(p + "self_attn.k_norm.weight", nkv * hd)
        if mt == "gpt_oss":
            E = cfg["num_local_experts"]
            for n, rows in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
                lin(p + "self_attn." + n, rows, H)
                bias(p + "self_attn." + n + ".bias", rows)
            lin(p + "self_attn.o_proj", H, nh * hd)
            bias(p + "self_attn.o_proj.bias", H)
            bias(p + "self_attn.sinks", nh)
            lin(p + "mlp.router", E, H)
            bias(p + "mlp.router.bias", E)
            blocks(p + "mlp.experts.gate_up_proj", E, 2 * I, H)
            out.append((p + "mlp.experts.gate_up_proj_bias", "BF16", [E, 2 * I], 4 * E * I,
                        lambda k=2 * E * I: rand_bf16(k)))
            blocks(p + "mlp.experts.down_proj", E, H, I)
            out.append((p + "mlp.experts.down_proj_bias", "BF16", [E, H], 2 * E * H,
                        lambda k=E * H: rand_bf16(k)))
            continue
        lin(p + "self_attn.q_proj", nh * hd, H)
        lin(p + "self_attn.k_proj", nkv * hd, H)
        lin(p + "self_attn.v_proj", nkv * hd, H)
        lin(p + "self_attn.o_proj", H, nh * hd)
        if cfg["model_type"] == "qwen2":
            vec(p + "self_attn.q_proj.bias", nh * hd)
            vec(p + "self_attn.k_proj.bias", nkv * hd)
            vec(p + "self_attn.v_proj.bias", nkv * hd)
        if cfg["model_type"] == "qwen3":
            vec(p + "self_attn.q_norm.weight", hd)
            vec(p + "self_attn.k_norm.weight", hd)
        lin(p + "mlp.gate_proj", I, H)
        lin(p + "mlp.up_proj", I, H)
        lin(p + "mlp.down_proj", H, I)
    vec("model.norm.weight", H)
    if not cfg["tie_word_embeddings"]:
        lin("lm_head", V, H)
    return out


def _hybrid_layers(cfg, lin, vec, conv):
    """The layers of the hybrid presets, in Hugging Face's names."""
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", H // nh)
    if cfg["model_type"] == "lfm2":
        ff = int(2 * cfg["block_ff_dim"] / 3 * cfg["block_ffn_dim_multiplier"])
        m = cfg["block_multiple_of"]
        ff = m * ((ff + m - 1) // m)
        for i, kind in enumerate(cfg["layer_types"]):
            p = f"model.layers.{i}."
            vec(p + "operator_norm.weight", H)
            vec(p + "ffn_norm.weight", H)
            if kind == "conv":
                conv(p + "conv.conv.weight", H, cfg["conv_L_cache"])
                lin(p + "conv.in_proj", 3 * H, H)
                lin(p + "conv.out_proj", H, H)
            else:
                lin(p + "self_attn.q_proj", nh * hd, H)
                lin(p + "self_attn.k_proj", nkv * hd, H)
                lin(p + "self_attn.v_proj", nkv * hd, H)
                lin(p + "self_attn.out_proj", H, nh * hd)
                vec(p + "self_attn.q_layernorm.weight", hd)
                vec(p + "self_attn.k_layernorm.weight", hd)
            lin(p + "feed_forward.w1", ff, H)
            lin(p + "feed_forward.w3", ff, H)
            lin(p + "feed_forward.w2", H, ff)
        vec("model.embedding_norm.weight", H)
        return
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
    for i, kind in enumerate(cfg["layer_types"]):
        p = f"model.layers.{i}."
        vec(p + "input_layernorm.weight", H)
        vec(p + "post_attention_layernorm.weight", H)
        if kind == "linear_attention":
            a = p + "linear_attn."
            lin(a + "in_proj_qkv", 2 * nk * dk + nv * dv, H)
            lin(a + "in_proj_z", nv * dv, H)
            lin(a + "in_proj_b", nv, H)
            lin(a + "in_proj_a", nv, H)
            conv(a + "conv1d.weight", 2 * nk * dk + nv * dv, cfg["linear_conv_kernel_dim"])
            vec(a + "dt_bias", nv)
            vec(a + "A_log", nv)
            vec(a + "norm.weight", dv)
            lin(a + "out_proj", H, nv * dv)
        else:
            lin(p + "self_attn.q_proj", 2 * nh * hd, H)  # the query and its output gate
            lin(p + "self_attn.k_proj", nkv * hd, H)
            lin(p + "self_attn.v_proj", nkv * hd, H)
            lin(p + "self_attn.o_proj", H, nh * hd)
            vec(p + "self_attn.q_norm.weight", hd)
            vec(p + "self_attn.k_norm.weight", hd)
        lin(p + "mlp.gate_proj", I, H)
        lin(p + "mlp.up_proj", I, H)
        lin(p + "mlp.down_proj", H, I)
    vec("model.norm.weight", H)


def write_file(path, items):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, nbytes, _ in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, _, make in items:
            f.write(make())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("outdir")
    ap.add_argument("--format", choices=["bf16", "q4"] + sorted(QFORMATS), default="bf16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if a.seed is not None:
        global _random_bytes
        rng, piece = random.Random(a.seed), 1 << 24  # randbytes takes at most 2^28 bytes

        def _random_bytes(n):
            return b"".join(rng.randbytes(min(piece, n - i)) for i in range(0, n, piece))
    cfg = dict(PRESETS[a.preset])
    cfg["torch_dtype"] = "bfloat16"
    cfg["architectures"] = ["LlamaForCausalLM" if cfg["model_type"] == "llama" else "X"]
    if a.format == "q4":
        cfg["quantization"] = {"group_size": 64, "bits": 4}
    if a.format in QCONFIG:
        key, val = QCONFIG[a.format]
        cfg[key] = val
    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    items = tensors(cfg, a.format)
    if a.shards <= 1:
        write_file(os.path.join(a.outdir, "model.safetensors"), items)
        return
    total = sum(t[3] for t in items)
    per, shards, cur, size = total / a.shards, [], [], 0
    for t in items:
        if cur and size + t[3] > per and len(shards) < a.shards - 1:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += t[3]
    shards.append(cur)
    wm = {}
    for k, sh in enumerate(shards):
        fn = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_file(os.path.join(a.outdir, fn), sh)
        for t in sh:
            wm[t[0]] = fn
    with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
