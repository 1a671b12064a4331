#!/usr/bin/env python3
"""Hugging Face transformers as the peer of `cellm bench --device cuda`, on the same
checkpoint (same random weights): pp tok/s of one prefill and decode tok/s at batch 1
with a static KV cache, torch bf16. MLX affine 4-bit checkpoints are dequantized to bf16
exactly as cellm reads them (w = s*q + b), since transformers cannot load them.

  gpu_peer.py DIR [-p 512] [-n 128]
  gpu_peer.py DIR --greedy PROMPT_IDS --check CUDA_IDS [--check CPU_IDS]
      float32 (TF32 off) greedy ids over len(CHECK) tokens; for each cellm trajectory,
      the first differing step and the reference's top-2 margin there.
"""
import argparse, glob, json, os, sys, time
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM


def load(d, dtype):
    cfg = AutoConfig.from_pretrained(d)
    q = json.load(open(os.path.join(d, "config.json"))).get("quantization")
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    sd = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        t = load_file(f, device="cuda")
        for k in list(t):
            if k.endswith(".scales") or k.endswith(".biases"):
                continue
            v = t[k]
            if q and k.endswith(".weight") and k[:-7] + ".scales" in t:
                base = k[:-7]
                g, bits = q["group_size"], q["bits"]
                w = v.view(torch.int32)
                per = 32 // bits
                codes = torch.stack([(w >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], -1)
                codes = codes.reshape(w.shape[0], -1).float()
                s = t[base + ".scales"].float().repeat_interleave(g, -1)
                b = t[base + ".biases"].float().repeat_interleave(g, -1)
                v = s * codes + b
            sd[k] = v.to(dtype)
        del t
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "lm_head" not in m or not cfg.tie_word_embeddings]
    if missing or unexpected:
        print("peer: missing", missing[:5], "unexpected", unexpected[:5], file=sys.stderr)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    del sd
    model.eval()
    return model


def sync_time(fn):
    torch.cuda.synchronize()
    a = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - a, r


@torch.inference_mode()
def bench(d, P, N):
    model = load(d, torch.bfloat16)
    V = model.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, V, (1, P), device="cuda", generator=g)
    model(ids)
    tp = min(sync_time(lambda: model(ids))[0] for _ in range(3))
    from transformers import StaticCache
    try:
        cache = StaticCache(config=model.config, max_cache_len=P + N + 1)
    except TypeError:
        cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=P + N + 1,
                            device="cuda", dtype=torch.bfloat16)

    def gen():
        cache.reset()
        out = model(ids, past_key_values=cache, use_cache=True,
                    cache_position=torch.arange(P, device="cuda"))
        tok = out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        a = time.perf_counter()
        for i in range(N):
            out = model(tok, past_key_values=cache, use_cache=True,
                        cache_position=torch.tensor([P + i], device="cuda"))
            tok = out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        return time.perf_counter() - a

    gen()
    dec = N / min(gen(), gen())
    print(f"peer: transformers {__import__('transformers').__version__} torch {torch.__version__} bf16 eager, StaticCache, greedy loop")
    print(f"peer prefill: {P} tokens, {P / tp:.1f} tok/s")
    print(f"peer decode: {N} tokens, {dec:.2f} tok/s")


@torch.inference_mode()
def greedy(d, prompt, checks):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = load(d, torch.float32)
    n = max(len(c) for c in checks)
    ids = torch.tensor([prompt], device="cuda")
    out, margins = [], []
    for _ in range(n):
        logits = model(ids).logits[0, -1].double()
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        ids = torch.cat([ids, top.indices[:1].view(1, 1)], 1)
    print("reference f32 ids:", ",".join(map(str, out)))
    ok = True
    for name, c in checks.items() if isinstance(checks, dict) else []:
        pass
    for k, c in enumerate(checks):
        diff = next((i for i, (a, b) in enumerate(zip(out, c)) if a != b), None)
        if diff is None and len(c) == len(out):
            print(f"check {k}: {len(c)} greedy ids identical to transformers float32")
        else:
            ok = False
            print(f"check {k}: first difference at step {diff}: cellm {c[diff] if diff is not None else '-'}, "
                  f"reference {out[diff] if diff is not None else '-'}, reference top-2 margin there "
                  f"{margins[diff] if diff is not None else float('nan'):.4g}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--greedy")
    ap.add_argument("--check", action="append", default=[])
    a = ap.parse_args()
    if a.greedy:
        prompt = [int(x) for x in a.greedy.split(",")]
        checks = [[int(x) for x in c.replace(" ", ",").split(",") if x] for c in a.check]
        return greedy(a.dir, prompt, checks)
    bench(a.dir, a.p, a.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
