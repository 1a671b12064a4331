#!/usr/bin/env python3
"""Build oracle fixtures: tiny checkpoints in Hugging Face / MLX layouts, with the
reference outputs of Hugging Face transformers run in float32 on the CPU.

Runs where torch, transformers and safetensors are installed (the GPU machine's
image has them). Usage:

    python3 make_fixtures.py --out DIR [--cases cases.json] [--only NAME ...]

Each case in the case list becomes DIR/<case>/<variant>/ holding a checkpoint
(config.json, weights) and the oracle (oracle.json, oracle.safetensors).
See README.md beside this file for the format.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import transformers
from transformers import AutoConfig, AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # formats.py, families_new.py, families_hybrid.py
import families_new  # noqa: E402  (hooks of the families of issue 27)
import families_hybrid  # noqa: E402  (gpt-oss and hybrid-family layouts, cases-hybrid.json)

# ---------------------------------------------------------------- dtypes

def round_to(t, dtype):
    """Round a float32 tensor to dtype and widen it back (exact)."""
    return t.to(dtype).to(torch.float32)


# ---------------------------------------------------------------- MLX affine quantization
# On disk (as written by mlx-lm): for a weight [out, in] quantized with `bits`
# and `group_size`:
#   NAME.weight  uint32 [out, in*bits/32]  row-major; each row is a little-endian
#                bit stream, element i of the row at bit offset i*bits (codes of
#                3, 5 and 6 bits straddle word boundaries)
#   NAME.scales  f16/bf16 [out, in/group_size]
#   NAME.biases  f16/bf16 [out, in/group_size]
#   dequantized  w[o, i] = scales[o, i/gs] * q[o, i] + biases[o, i/gs]
# The quantizer follows MLX (>= 0.12.2) as run on Apple GPUs: float32 math, the
# running max starts at 0, the edge of larger magnitude becomes the bias, and the
# scale is negative when that edge is the max. So scales may be negative and
# biases may be a group's max, as in real mlx-community checkpoints.

def mlx_quantize(w, bits, group_size, scale_dtype):
    """w: float32 [..., out, in]. Returns (packed uint32, scales, biases, dequantized f32)."""
    *lead, out_dim, in_dim = w.shape
    assert in_dim % group_size == 0, (in_dim, group_size)
    assert (in_dim * bits) % 32 == 0
    n_bins = float((1 << bits) - 1)
    g = w.reshape(*lead, out_dim, in_dim // group_size, group_size).to(torch.float32)
    w_min = g.min(dim=-1).values
    w_max = torch.clamp(g.max(dim=-1).values, min=0.0)
    s = torch.clamp((w_max - w_min) / n_bins, min=1e-7)
    use_min = w_min.abs() > w_max.abs()
    s = torch.where(use_min, s, -s)
    edge = torch.where(use_min, w_min, w_max)
    q0 = torch.round(edge / s)
    s = torch.where(q0 != 0, edge / torch.where(q0 != 0, q0, torch.ones_like(q0)), s)
    bias = torch.where(q0 != 0, edge, torch.zeros_like(edge))
    q = torch.clamp(torch.round((g - bias.unsqueeze(-1)) / s.unsqueeze(-1)), 0, n_bins).to(torch.int64)
    scale_s = s.to(scale_dtype)
    bias_s = bias.to(scale_dtype)
    # the reference value: stored scale and bias widened to f32, then an f32
    # multiply, rounded, and an f32 add, rounded (no fused multiply-add)
    s32 = scale_s.to(torch.float32).unsqueeze(-1)
    b32 = bias_s.to(torch.float32).unsqueeze(-1)
    deq = (q.to(torch.float32) * s32) + b32
    deq = deq.reshape(*lead, out_dim, in_dim)
    packed = pack_bits(q.reshape(*lead, out_dim, in_dim), bits)
    return packed, scale_s, bias_s, deq


def pack_bits(q, bits):
    """q: int64 [..., in] values < 2**bits -> uint32 [..., in*bits/32], little-endian bit stream."""
    *lead, n = q.shape
    qn = q.reshape(-1, n).numpy().astype(np.uint64)
    rows = qn.shape[0]
    nbits = n * bits
    words = np.zeros((rows, nbits // 32), dtype=np.uint64)
    for i in range(n):
        off = i * bits
        w, sh = divmod(off, 32)
        v = qn[:, i]
        words[:, w] |= (v << np.uint64(sh)) & np.uint64(0xFFFFFFFF)
        if sh + bits > 32:  # spills into the next word
            words[:, w + 1] |= v >> np.uint64(32 - sh)
    out = torch.from_numpy(words.astype(np.uint32).view(np.int32).copy())
    return out.reshape(*lead, nbits // 32)


# ---------------------------------------------------------------- weights

# routers get a wider spread so that routing is decisive (no near-ties)
ROUTER_SUFFIXES = ("mlp.gate.weight", "mlp.router.weight", "feed_forward.router.weight", "router.proj.weight")
# multiplicative scales that are ones in real checkpoints' initialisation (Gemma 4 router)
SCALE_SUFFIXES = ("router.scale", "router.per_expert_scale")
# persistent buffers that are checkpoint values, not derived (saved by save_pretrained)
BUFFER_STDS = {"e_score_correction_bias": (0.0, 0.2), "layer_scalar": (1.0, 0.15)}


def randomize(model, cfg, seed, init_std, overrides=None):
    """Give every parameter a non-trivial value: biases and norm weights too,
    so that a missing bias add or norm multiply changes the logits.
    overrides: {name suffix: std} from the case's "init_overrides"."""
    g = torch.Generator().manual_seed(seed)
    # Gemma 1-3 norms scale by (1 + weight); Gemma 3n and Gemma 4 norms multiply by weight
    gemma = cfg.model_type.startswith("gemma") and not cfg.model_type.startswith(("gemma3n", "gemma4"))
    overrides = overrides or {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            over = [std for suf, std in overrides.items() if name.endswith(suf)]
            if over:
                p.copy_(torch.randn(p.shape, generator=g) * over[0])
            elif name.endswith(SCALE_SUFFIXES):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.15)
            elif "norm" in name and p.dim() == 1:
                base = 0.0 if gemma else 1.0  # Gemma norms scale by (1 + weight)
                if name.endswith(".bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                else:
                    p.copy_(base + torch.randn(p.shape, generator=g) * 0.15)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith(ROUTER_SUFFIXES):  # MoE router: decisive routing
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
        for name, b in model.named_buffers():
            key = name.rsplit(".", 1)[-1]
            if key in BUFFER_STDS and b.is_floating_point():
                base, std = BUFFER_STDS[key]
                b.copy_(base + torch.randn(b.shape, generator=g) * std)


def read_tensors(path):
    out = {}
    with safe_open(path, "pt") as f:
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out


def is_quantizable(name, t, group_size):
    """mlx-lm quantizes Linear, Embedding and SwitchLinear (stacked experts, [E, out, in])
    weights whose input dim divides by the group size."""
    if not name.endswith(".weight") or "norm" in name:
        return False
    if t.dim() == 3 and ".switch_mlp." in name:
        return t.shape[-1] % group_size == 0
    if t.dim() != 2:
        return False
    return t.shape[-1] % group_size == 0


ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int32: "U32", torch.uint8: "U8"}


def save_mlx_style(tensors, path):
    """Write safetensors the way MLX does: keys sorted, data packed back to back
    with no padding, so tensors may start at any byte offset (no alignment)."""
    header, blobs, off = {"__metadata__": {"format": "mlx"}}, [], 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        b = t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.uint8 else t.numpy().tobytes()
        header[k] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for b in blobs:
            f.write(b)


def write_checkpoint(dirpath, tensors, shards=1, mlx_style=False):
    os.makedirs(dirpath, exist_ok=True)
    save = (lambda t, p: save_mlx_style(t, p)) if mlx_style else \
        (lambda t, p: save_file(t, p, metadata={"format": "pt"}))
    if shards == 1:
        save(tensors, os.path.join(dirpath, "model.safetensors"))
        return
    names = list(tensors.keys())
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    target = total / shards
    groups, cur, acc = [], [], 0
    for n, s in zip(names, sizes):
        if cur and acc + s > target and len(groups) < shards - 1:
            groups.append(cur)
            cur, acc = [], 0
        cur.append(n)
        acc += s
    groups.append(cur)
    weight_map = {}
    for i, grp in enumerate(groups):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        save({n: tensors[n] for n in grp}, os.path.join(dirpath, fname))
        for n in grp:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


# ---------------------------------------------------------------- oracle

@torch.no_grad()
def run_oracle(model_dir, vocab, seed, n_prompt, n_greedy, n_forced):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    g = torch.Generator().manual_seed(seed + 1000)
    prompt = torch.randint(3, vocab, (n_prompt,), generator=g)
    forced = torch.randint(3, vocab, (n_forced,), generator=g)
    # greedy: full recompute each step, no EOS stop
    ids = prompt.clone()
    greedy, greedy_logits, margins = [], [], []
    for _ in range(n_greedy):
        logits = model(ids.unsqueeze(0)).logits[0, -1].float()
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        nxt = int(top2.indices[0])
        greedy.append(nxt)
        greedy_logits.append(logits)
        ids = torch.cat([ids, torch.tensor([nxt])])
    forced_logits = model(forced.unsqueeze(0)).logits[0].float()
    fl_top2 = torch.topk(forced_logits, 2, dim=-1).values
    return {
        "prompt_ids": prompt.tolist(),
        "greedy_ids": greedy,
        "greedy_min_margin": min(margins),
        "forced_ids": forced.tolist(),
        "forced_min_margin": float((fl_top2[:, 0] - fl_top2[:, 1]).min()),
    }, {
        "prompt_ids": prompt.to(torch.int32),
        "greedy_ids": torch.tensor(greedy, dtype=torch.int32),
        "greedy_logits": torch.stack(greedy_logits).contiguous(),
        "forced_ids": forced.to(torch.int32),
        "forced_logits": forced_logits.contiguous(),
    }


# ---------------------------------------------------------------- variants

def parse_variant(v):
    """'f32' | 'bf16' | 'f16' | 'bf16-shard3' | 'q4-g64-f16' | 'q8-g32-bf16' ...
    and the formats of formats.py: 'mxfp4' | 'mxfp4-mixed' | 'mxfp8' | 'nvfp4' | 'blocks' |
    'fp8-b32' | 'gptq4-g32' | 'gptq4-g32-desc' | 'gptq8-g64' | 'awq4-g32'."""
    spec = {"name": v, "dtype": "f32", "shards": 1, "bits": None}
    parts = v.split("-")
    head = parts[0]
    if head in ("mxfp4", "mxfp8", "nvfp4", "blocks", "fp8") or head.startswith(("gptq", "awq")):
        spec["format"] = head.rstrip("0123456789") if head.startswith(("gptq", "awq")) else head
        if head.startswith(("gptq", "awq")):
            spec["bits"] = int(head[len(spec["format"]):])
        for part in parts[1:]:
            if part.startswith("g"):
                spec["group_size"] = int(part[1:])
            elif part.startswith("b"):
                spec["block"] = int(part[1:])
            elif part in ("mixed", "desc"):
                spec[part] = True
            else:
                raise ValueError("bad variant " + v)
        return spec
    for part in parts:
        if part in ("f32", "bf16", "f16"):
            if spec["bits"]:
                spec["scale_dtype"] = part
            else:
                spec["dtype"] = part
        elif part.startswith("shard"):
            spec["shards"] = int(part[5:])
        elif part.startswith("q"):
            spec["bits"] = int(part[1:])
        elif part.startswith("g"):
            spec["group_size"] = int(part[1:])
        elif part in ("stacked", "mixed", "vlm"):
            spec[part] = True
        else:
            raise ValueError("bad variant " + v)
    return spec


TDT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def stack_experts(base):
    """HF per-expert MoE tensors -> mlx-lm's stacked switch_mlp layout.
    Returns {stored_name: (tensor, [hf_names in expert order] or None)}."""
    import re
    pat = re.compile(r"^(.*\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
    groups, layout = {}, {}
    for k, t in base.items():
        m = pat.match(k)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = k
        else:
            layout[k] = (t, None)
    for (prefix, proj), experts in groups.items():
        names = [experts[e] for e in sorted(experts)]
        layout["%s.switch_mlp.%s.weight" % (prefix, proj)] = (torch.stack([base[n] for n in names]), names)
    return layout


def build_variant(case, base, spec, config, outdir, workdir):
    """Write the checkpoint for one variant; return a directory holding the
    float32 checkpoint (HF names) that the oracle must see: the exact values the
    loader should reconstruct."""
    if spec.get("hybrid"):
        return families_hybrid.build_variant(case, base, spec, config, outdir, workdir)
    mlx = spec["bits"] is not None and "format" not in spec
    fam = families_new.mlx_layout(config, base) if mlx else None
    restore = None
    if fam is not None:  # mlx-lm's sanitize renames or reshapes this family's tensors
        fam_layout, restore = fam
        layout = {k: (t, None) for k, t in fam_layout.items()}
    elif spec.get("stacked"):
        layout = stack_experts(base)
    else:
        layout = {k: (t, None) for k, t in base.items()}
    stored, effective = {}, {}
    cfg = dict(config)
    if "format" in spec:
        return build_format_variant(case, base, spec, config, outdir, workdir)
    bits = spec["bits"]
    if bits is None:
        dt = TDT[spec["dtype"]]
        cfg["torch_dtype"] = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[spec["dtype"]]
    else:
        gs = spec["group_size"]
        dt = TDT[spec.get("scale_dtype", "f16")]
        cfg["torch_dtype"] = {"f16": "float16", "bf16": "bfloat16"}[spec.get("scale_dtype", "f16")]
        qcfg = {"group_size": gs, "bits": bits}
    for k, (t, hf_names) in layout.items():
        fam_q = families_new.quantizable(config, k, t, gs) if bits is not None else None
        if bits is not None and (is_quantizable(k, t, gs) if fam_q is None else fam_q):
            stem = k[: -len(".weight")]
            b = bits
            if spec.get("mixed") and stem.endswith("down_proj"):
                b = 8  # mlx-lm mixed recipes: some layers at higher precision
                qcfg[stem] = {"group_size": gs, "bits": b}
            if config["model_type"] == "qwen3_moe" and stem.endswith("mlp.gate"):
                b = 8  # mlx-lm keeps Qwen3-MoE routers at 8 bits
                qcfg[stem] = {"group_size": gs, "bits": b}
            fam_bits = families_new.quant_bits(config, stem)
            if fam_bits is not None:  # a family's mlx-lm quant_predicate
                b = fam_bits
                qcfg[stem] = {"group_size": gs, "bits": b}
            packed, sc, bi, eff = mlx_quantize(t, b, gs, dt)
            stored[stem + ".weight"] = packed.contiguous()
            stored[stem + ".scales"] = sc.contiguous()
            stored[stem + ".biases"] = bi.contiguous()
        else:
            kdt = torch.float32 if families_new.keep_f32(config, k) else dt
            stored[k] = t.to(kdt).contiguous()
            eff = round_to(t, kdt)
        if hf_names is None:
            effective[k] = eff
        else:
            for e, n in enumerate(hf_names):
                effective[n] = eff[e].contiguous()
    if restore is not None:
        effective = restore(effective)
    if bits is not None:
        cfg["quantization"] = qcfg
        cfg["quantization_config"] = dict(qcfg)
        cfg, stored = families_new.mlx_wrap(config, cfg, stored)
    if spec.get("vlm"):
        # the text tower of a vision-language checkpoint (Gemma 3 4B-27B as
        # converted by mlx-vlm): tensors under "language_model.", the text config
        # nested, quantization kept at the top level
        stored = {"language_model." + k: v for k, v in stored.items()}
        text = {k: v for k, v in cfg.items() if k not in ("quantization", "quantization_config",
                                                          "architectures", "torch_dtype")}
        cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
               "text_config": text, "torch_dtype": cfg["torch_dtype"],
               "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152,
                                 "image_size": 896, "patch_size": 14, "num_hidden_layers": 27},
               "mm_tokens_per_image": 256, "boi_token_index": 255999, "eoi_token_index": 256000,
               "image_token_index": 262144,
               **({k: cfg[k] for k in ("quantization", "quantization_config") if k in cfg})}
    # quantized checkpoints come from MLX, which writes unaligned files
    write_checkpoint(outdir, stored, spec["shards"], mlx_style=bits is not None)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    odir = os.path.join(workdir, case["name"] + "-" + spec["name"])
    os.makedirs(odir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in effective.items()}, os.path.join(odir, "model.safetensors"))
    ocfg = cfg.get("text_config", cfg)
    ocfg = {k: v for k, v in ocfg.items() if k not in ("quantization", "quantization_config")}
    if "architectures" not in ocfg:
        ocfg["architectures"] = config["architectures"]
    ocfg["torch_dtype"] = "float32"
    with open(os.path.join(odir, "config.json"), "w") as f:
        json.dump(ocfg, f, indent=2)
    return odir


def build_format_variant(case, base, spec, config, outdir, workdir):
    """The formats of formats.py (docs/formats.md): the stored checkpoint as that format's
    tooling writes it, the oracle run on the exactly dequantized float32 weights."""
    import formats
    layout = {k: (t, None) for k, t in base.items()}
    stored, eff, qcfg = formats.quantize_format(spec, layout, config, case.get("seed", 0))
    cfg = dict(config)
    cfg["torch_dtype"] = "float32"
    cfg.update(qcfg)
    if "quantization" in qcfg:  # mlx-lm writes its block under both keys
        cfg["quantization_config"] = dict(qcfg["quantization"])
    mlx = spec["format"] in ("mxfp4", "mxfp8", "nvfp4")
    write_checkpoint(outdir, stored, 1, mlx_style=mlx)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    odir = os.path.join(workdir, case["name"] + "-" + spec["name"])
    os.makedirs(odir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in eff.items()}, os.path.join(odir, "model.safetensors"))
    ocfg = {k: v for k, v in config.items()}
    ocfg["torch_dtype"] = "float32"
    with open(os.path.join(odir, "config.json"), "w") as f:
        json.dump(ocfg, f, indent=2)
    return odir


def make_case(case, out_root, workdir):
    name = case["name"]
    config = case["config"]
    seed = case.get("seed", 0)
    torch.manual_seed(seed)
    cdir = os.path.join(workdir, name + "-config")
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump(config, f)
    cfg = AutoConfig.from_pretrained(cdir)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    randomize(model, cfg, seed, case.get("init_std", 0.08), case.get("init_overrides"))
    families_new.adjust_model(model, case)
    sdir = os.path.join(workdir, name + "-saved")
    model.save_pretrained(sdir)  # hub tensor names, whatever the in-memory layout
    base = {}
    for fn in sorted(os.listdir(sdir)):
        if fn.endswith(".safetensors"):
            base.update(read_tensors(os.path.join(sdir, fn)))
    base = families_new.hub_names(config, base)
    if config.get("tie_word_embeddings", True) is not False:
        base.pop("lm_head.weight", None)
    results = []
    for v in case["variants"]:
        spec = families_hybrid.parse_variant(case, v) or parse_variant(v)
        vdir = os.path.join(out_root, name, v)
        if os.path.exists(vdir):
            shutil.rmtree(vdir)
        odir = build_variant(case, base, spec, config, vdir, workdir)
        meta, tensors = run_oracle(odir, config["vocab_size"], seed, case.get("n_prompt", 7),
                                   case.get("n_greedy", 24), case.get("n_forced", 40))
        meta.update({
            "case": name,
            "variant": v,
            "model_type": config["model_type"],
            "reference": "transformers %s, torch %s, float32, CPU, eager attention" % (
                transformers.__version__, torch.__version__),
            "notes": case.get("notes", ""),
        })
        save_file(tensors, os.path.join(vdir, "oracle.safetensors"))
        with open(os.path.join(vdir, "oracle.json"), "w") as f:
            json.dump(meta, f, indent=1)
        results.append((name, v, meta["greedy_min_margin"], meta["forced_min_margin"], meta["greedy_ids"][:8]))
        print("%-28s %-16s margin greedy %.2e forced %.2e ids %s" % results[-1], flush=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=os.path.join(HERE, "cases.json"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--keep-going", action="store_true",
                    help="report a case that fails and go on with the next")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with open(args.cases) as f:
        cases = json.load(f)
    workdir = tempfile.mkdtemp(prefix="oracle-")
    failed = []
    for case in cases:
        if args.only and case["name"] not in args.only:
            continue
        if not args.keep_going:
            make_case(case, args.out, workdir)
            continue
        try:
            make_case(case, args.out, workdir)
        except Exception:  # noqa: BLE001  (reported, then the next case)
            import traceback
            traceback.print_exc()
            print("FAILED case %s" % case["name"], flush=True)
            failed.append(case["name"])
    shutil.rmtree(workdir)
    if failed:
        print("failed cases: %s" % " ".join(failed), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
