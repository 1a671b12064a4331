#!/usr/bin/env python3
"""serve_gen_ckpt.py DIR [--bits 16|4]: a random checkpoint of Qwen2.5-0.5B's shape.

Writes config.json and model.safetensors (BF16, or MLX affine 4-bit with group size 64
and BF16 scales/biases) for the serving benchmark. Pure Python (no numpy): random bytes
are turned into BF16 values of magnitude in [2^-7, 2^-5) with a random sign by fixing
the high byte's exponent bits, so a 1 GB file takes a few seconds. The model computes
noise, at the real cost.
"""
import json
import os
import struct
import sys

CFG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 151643,
    "eos_token_id": 151645, "use_sliding_window": False,
}
BLOCK = os.urandom(1 << 24)  # reused: the values need not be independent, only plausible
HI_SMALL = bytes((b & 0x80) | 0x3C for b in range(256))  # sign + exponent 120/121


def rand_bf16(n):
    """n BF16 values, little-endian, in +-[2^-7, 2^-5)."""
    out = bytearray(2 * n)
    pos = 0
    while pos < 2 * n:
        k = min(len(BLOCK), 2 * n - pos)
        chunk = bytearray(BLOCK[:k])
        chunk[1::2] = chunk[1::2].translate(HI_SMALL)
        out[pos:pos + k] = chunk
        pos += k
    return bytes(out)


def const_bf16(v, n):
    return struct.pack("<f", v)[2:] * n


def tensors(bits):
    h, f, L = CFG["hidden_size"], CFG["intermediate_size"], CFG["num_hidden_layers"]
    hd = h // CFG["num_attention_heads"]
    kv = CFG["num_key_value_heads"] * hd

    def linear(name, rows, cols):
        if bits == 16:
            yield name + ".weight", "BF16", [rows, cols], lambda: rand_bf16(rows * cols)
        else:
            g = 64
            yield name + ".weight", "U32", [rows, cols // 8], lambda: (BLOCK * (rows * cols // 2 // len(BLOCK) + 1))[: rows * cols // 2]
            # w = scale * q + bias with q in [0, 15]: scale ~ 2^-9, bias ~ -8 * scale
            yield name + ".scales", "BF16", [rows, cols // g], lambda: const_bf16(2 ** -9, rows * cols // g)
            yield name + ".biases", "BF16", [rows, cols // g], lambda: const_bf16(-(2 ** -6), rows * cols // g)

    yield from linear("model.embed_tokens", CFG["vocab_size"], h)
    for i in range(L):
        p = f"model.layers.{i}"
        yield p + ".input_layernorm.weight", "BF16", [h], lambda: const_bf16(1.0, h)
        yield p + ".post_attention_layernorm.weight", "BF16", [h], lambda: const_bf16(1.0, h)
        for n, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            yield from linear(f"{p}.self_attn.{n}", rows, h)
            yield f"{p}.self_attn.{n}.bias", "BF16", [rows], (lambda r=rows: rand_bf16(r))
        yield from linear(f"{p}.self_attn.o_proj", h, h)
        yield from linear(f"{p}.mlp.gate_proj", f, h)
        yield from linear(f"{p}.mlp.up_proj", f, h)
        yield from linear(f"{p}.mlp.down_proj", h, f)
    yield "model.norm.weight", "BF16", [h], lambda: const_bf16(1.0, h)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: serve_gen_ckpt.py DIR [--bits 16|4]")
    out = sys.argv[1]
    bits = int(sys.argv[sys.argv.index("--bits") + 1]) if "--bits" in sys.argv else 16
    os.makedirs(out, exist_ok=True)
    cfg = dict(CFG)
    if bits == 4:
        cfg["quantization"] = {"group_size": 64, "bits": 4}
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=1)
    size = {"BF16": 2, "U32": 4}
    header, off, items = {}, 0, list(tensors(bits))
    for name, dt, shape, _ in items:
        n = size[dt]
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)) + hj)
        for name, dt, shape, gen in items:
            data = gen()
            assert len(data) == header[name]["data_offsets"][1] - header[name]["data_offsets"][0], name
            fh.write(data)
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    print(f"{out}: {off / 1e9:.2f} GB, {'BF16' if bits == 16 else 'MLX 4-bit'}")


if __name__ == "__main__":
    main()
