"""Variants of the hybrid families (cases-hybrid.json) for make_fixtures.py: gpt-oss in its
Hugging Face mxfp4 layout and in the mlx-community layout, and the MLX affine layouts of
qwen3_next, qwen3_5(_text), qwen3_5_moe(_text), lfm2 and deepseek_v3 as mlx-lm's
`sanitize` lays them out (renamed, split, stacked, norms shifted, conv weights moved) and
then quantizes them.

Variant names handled here (make_fixtures.parse_variant handles the rest):
  blocks                  gpt_oss only: the experts' gate_up_proj / down_proj as
                          `_blocks` u8 [E, out, in/32, 16] + `_scales` u8 [E, out, in/32]
                          (the [out, in] orientation openai/gpt-oss ships; transformers
                          dequantizes and transposes to its [E, in, out] parameters),
                          every other tensor in BF16, quantization_config mxfp4
  mlx-mxfp4-q8-gG         gpt_oss only: the mlx-community layout: experts split into
                          gate_proj / up_proj / down_proj [E, out, in] in MLX mxfp4, every
                          other Linear and the embeddings 8-bit affine with group G
  mlx-qB-gG-DT            the other families: MLX affine B bits, group G, scales/biases
                          and float tensors in DT, in mlx-lm's layout for the family
  DT-vlm                  qwen3_5(_moe)_text only: the published Hugging Face layout of
                          Qwen3.5, a vision-language checkpoint (text model under
                          model.language_model., config under text_config), in DT

Each builder returns the stored tensors and, for every tensor of the Hugging Face
checkpoint (the names save_pretrained wrote), the float32 value the loader must
reconstruct: the oracle runs transformers on those.
"""
import json
import os
import re

import torch
from safetensors.torch import save_file

import formats

TDT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
HF_DTYPE_NAME = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}

# (1 + w) RMSNorms of the Qwen3-Next / Qwen3.5 families: mlx-lm stores w + 1 (its
# nn.RMSNorm multiplies by the weight)
QWEN_NORM_SUFFIXES = (".input_layernorm.weight", ".post_attention_layernorm.weight",
                      "model.norm.weight", ".q_norm.weight", ".k_norm.weight")
QWEN_HYBRID = ("qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text")


def parse_variant(case, v):
    """The spec of a variant this module builds, or None for make_fixtures' own."""
    mt = case["config"]["model_type"]
    if mt == "gpt_oss" and v == "blocks":
        return {"name": v, "hybrid": "gptoss-blocks"}
    if mt in ("qwen3_5_text", "qwen3_5_moe_text") and v.endswith("-vlm") and v.split("-")[0] in TDT:
        return {"name": v, "hybrid": "hfvlm", "dtype": v.split("-")[0]}
    if not v.startswith("mlx-"):
        return None
    parts = v.split("-")[1:]
    spec = {"name": v, "hybrid": "mlx", "scale_dtype": "bf16"}
    for p in parts:
        if p == "mxfp4":
            spec["experts_mode"] = "mxfp4"
        elif p.startswith("q"):
            spec["bits"] = int(p[1:])
        elif p.startswith("g"):
            spec["group_size"] = int(p[1:])
        elif p in TDT:
            spec["scale_dtype"] = p
        else:
            raise ValueError("bad variant " + v)
    if "bits" not in spec or "group_size" not in spec:
        raise ValueError("variant %s needs qB and gG" % v)
    if spec.get("experts_mode") and mt != "gpt_oss":
        raise ValueError("variant %s: mxfp4 experts are for gpt_oss only" % v)
    return spec


# ---------------------------------------------------------------- the layout graph
# A layout is {stored_name: Entry}. Entry.value is the float32 tensor to store (or to
# quantize); Entry.back(eff, hf) writes the float32 value the loader reconstructs from
# the stored tensor into the Hugging Face tensors `hf` (a dict of clones of the base).

def _dense(t):
    """A copy with standard strides. `.contiguous()` is not enough: a transposed view with
    a size-1 dim (the moved conv weight [C, W, 1]) counts as contiguous while its last
    stride is W, and the MLX writer's byte view needs a last stride of 1."""
    out = torch.empty(t.shape, dtype=t.dtype)
    out.copy_(t)
    return out


class Entry:
    def __init__(self, value, back, quant=True, keep_f32=False):
        self.value = value
        self.back = back
        self.quant = quant        # may be quantized (a Linear/Embedding/SwitchLinear weight)
        self.keep_f32 = keep_f32  # stays float32 in MLX checkpoints (A_log, correction bias)


def _copy_to(name):
    def back(eff, hf):
        hf[name] = eff.reshape(hf[name].shape).clone()
        hf.setdefault("__written__", set()).add(name)
    return back


def _shift_back(name, delta):
    """stored = w + delta; the reference w = stored - delta (exact in float32: both are
    bf16/f16 values within a few binades of 1)."""
    def back(eff, hf):
        hf[name] = (eff - delta).reshape(hf[name].shape).clone()
        hf.setdefault("__written__", set()).add(name)
    return back


def _stack_back(names):
    def back(eff, hf):
        for e, n in enumerate(names):
            hf[n] = eff[e].clone()
            hf.setdefault("__written__", set()).add(n)
    return back


def _identity_layout(base, prefix=""):
    return {prefix + k: Entry(t, _copy_to(k)) for k, t in base.items()}


def _stack_experts(base, lay, prefix=""):
    """HF per-expert `mlp.experts.E.{gate,up,down}_proj.weight` or fused
    `mlp.experts.gate_up_proj` [E, 2I, H] / `mlp.experts.down_proj` [E, H, I] ->
    mlx-lm's `mlp.switch_mlp.{gate,up,down}_proj.weight` [E, out, in]."""
    pat = re.compile(r"^(.*\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
    groups = {}
    for k in list(base):
        m = pat.match(k)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = k
    for (mlp, proj), experts in groups.items():
        names = [experts[e] for e in sorted(experts)]
        for n in names:
            lay.pop(prefix + n)
        lay["%s%s.switch_mlp.%s.weight" % (prefix, mlp, proj)] = Entry(
            torch.stack([base[n] for n in names]), _stack_back(names))
    for k in list(base):
        if k.endswith(".mlp.experts.gate_up_proj"):
            mlp = k[: -len(".experts.gate_up_proj")]
            t = base[k]  # [E, 2I, H]: gate rows first, then up rows
            mid = t.shape[-2] // 2
            lay.pop(prefix + k)

            def make_back(k, lo, hi):
                def back(eff, hf):
                    if k not in hf.get("__partial__", {}):
                        hf.setdefault("__partial__", {})[k] = hf[k].clone()
                    hf["__partial__"][k][..., lo:hi, :] = eff
                    hf[k] = hf["__partial__"][k]
                    hf.setdefault("__written__", set()).add(k)
                return back
            lay["%s%s.switch_mlp.gate_proj.weight" % (prefix, mlp)] = Entry(
                t[..., :mid, :].contiguous(), make_back(k, 0, mid))
            lay["%s%s.switch_mlp.up_proj.weight" % (prefix, mlp)] = Entry(
                t[..., mid:, :].contiguous(), make_back(k, mid, 2 * mid))
            dk = mlp + ".experts.down_proj"
            lay.pop(prefix + dk)
            lay["%s%s.switch_mlp.down_proj.weight" % (prefix, mlp)] = Entry(base[dk], _copy_to(dk))


def _move_conv(lay, suffix):
    """HF depthwise Conv1d weight [C, 1, K] -> MLX [C, K, 1] (mlx-lm moves the axis)."""
    for k in list(lay):
        if k.endswith(suffix) and lay[k].value.dim() == 3 and lay[k].value.shape[-1] != 1:
            src = lay[k]

            def back(eff, hf, src=src):
                src.back(eff.transpose(1, 2).contiguous(), hf)
            lay[k] = Entry(src.value.transpose(1, 2).contiguous(), back, quant=False)


# ---------------------------------------------------------------- families

def layout_qwen_hybrid(base, config):
    mt = config["model_type"]
    vlm = mt in ("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text")
    # mlx-community converts the Qwen3.5 VLM repos: the text model under "language_model."
    prefix = "language_model." if vlm else ""
    lay = _identity_layout(base, prefix)
    _stack_experts(base, lay, prefix)
    _move_conv(lay, "conv1d.weight")
    for k in list(lay):
        if any(k.endswith(s) for s in QWEN_NORM_SUFFIXES) and lay[k].value.dim() == 1:
            src = lay[k]
            hf_name = k[len(prefix):]
            lay[k] = Entry(src.value + 1.0, _shift_back(hf_name, 1.0), quant=False)
        elif k.endswith("A_log"):
            lay[k].keep_f32 = True  # mlx-lm's cast_predicate leaves A_log alone
    return lay


def layout_lfm2(base, config):
    lay = _identity_layout(base)
    _move_conv(lay, "conv.weight")
    return lay


def layout_deepseek_v3(base, config):
    lay = _identity_layout(base)
    _stack_experts(base, lay)
    H = config["num_attention_heads"]
    nope, vd, r = config["qk_nope_head_dim"], config["v_head_dim"], config["kv_lora_rank"]
    for k in list(base):
        if k.endswith("self_attn.kv_b_proj.weight"):
            pre = k[: -len("kv_b_proj.weight")]
            w = base[k].reshape(H, nope + vd, r)
            lay.pop(k)
            st = {}

            def make_back(part, k=k, st=st):
                def back(eff, hf):
                    st[part] = eff
                    if len(st) == 2:  # both halves known: rebuild kv_b_proj [H*(nope+v), r]
                        wk = st["k"].transpose(1, 2)  # [H, nope, r]
                        full = torch.cat([wk, st["v"]], dim=1).reshape(H * (nope + vd), r)
                        hf[k] = full.contiguous()
                        hf.setdefault("__written__", set()).add(k)
                return back
            # embed_q [H, kv_lora_rank, qk_nope]: applied to q_nope at decode;
            # unembed_out [H, v_head_dim, kv_lora_rank]
            lay[pre + "embed_q.weight"] = Entry(w[:, :nope, :].transpose(1, 2).contiguous(), make_back("k"))
            lay[pre + "unembed_out.weight"] = Entry(w[:, nope:, :].contiguous(), make_back("v"))
        elif k.endswith("mlp.gate.weight"):
            lay[k].quant = False  # MoEGate holds a raw matrix, not a Linear: never quantized
        elif k.endswith("e_score_correction_bias"):
            lay[k].keep_f32 = True  # mlx-lm's cast_predicate
    return lay


LAYOUTS = {
    "qwen3_next": layout_qwen_hybrid, "qwen3_5": layout_qwen_hybrid,
    "qwen3_5_text": layout_qwen_hybrid, "qwen3_5_moe": layout_qwen_hybrid,
    "qwen3_5_moe_text": layout_qwen_hybrid, "lfm2": layout_lfm2,
    "deepseek_v3": layout_deepseek_v3,
}


def mlx_quant_override(name, config):
    """mlx-lm's quant_predicate: MoE routers and shared-expert gates at 8 bits, group 64."""
    mt = config["model_type"]
    if mt in ("qwen3_next", "qwen3_5_moe", "qwen3_5_moe_text"):
        stem = name[: -len(".weight")]
        if stem.endswith("mlp.gate") or stem.endswith("shared_expert_gate"):
            return {"group_size": 64, "bits": 8}
    return None


def quantizable(name, t, group_size):
    """mlx-lm quantizes what has to_quantized (Linear, Embedding, SwitchLinear,
    MultiLinear) when the last dim divides by the group size; never norms or convs."""
    if not name.endswith(".weight") or "norm" in name:
        return False
    if t.dim() not in (2, 3):
        return False
    return t.shape[-1] % group_size == 0


def _finish_effective(hf, base):
    written = hf.pop("__written__", set())
    hf.pop("__partial__", None)
    missing = sorted(set(base) - written)
    if missing:
        raise RuntimeError("layout left HF tensors unwritten: %s" % missing[:5])
    return {k: _dense(hf[k].to(torch.float32)) for k in base}


def _write_oracle_dir(case, spec, config, eff, workdir):
    odir = os.path.join(workdir, case["name"] + "-" + spec["name"])
    os.makedirs(odir, exist_ok=True)
    save_file({k: _dense(v) for k, v in eff.items()}, os.path.join(odir, "model.safetensors"))
    ocfg = dict(config)
    ocfg["torch_dtype"] = "float32"
    with open(os.path.join(odir, "config.json"), "w") as f:
        json.dump(ocfg, f, indent=2)
    return odir


def _qwen35_vlm_config(cfg, config):
    """The config of a Qwen3.5 vision-language checkpoint (as published, and as
    mlx-community keeps it): the text model's config under text_config."""
    mt = config["model_type"]
    outer = "qwen3_5" if mt == "qwen3_5_text" else "qwen3_5_moe"
    arch = "Qwen3_5ForConditionalGeneration" if outer == "qwen3_5" else "Qwen3_5MoeForConditionalGeneration"
    text = {k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")}
    return {"architectures": [arch], "model_type": outer, "text_config": text,
            "vision_config": {"model_type": outer + "_vision", "depth": 27, "hidden_size": 1152,
                              "num_heads": 16, "out_hidden_size": config["hidden_size"]},
            "tie_word_embeddings": config.get("tie_word_embeddings", False),
            "image_token_id": 248056, "video_token_id": 248057,
            "torch_dtype": cfg["torch_dtype"]}


def build_hf_vlm(case, base, spec, config, outdir, workdir):
    """A Qwen3.5 checkpoint as Qwen publishes it: the text model under
    `model.language_model.`, `lm_head` at the top, vision tensors under `model.visual.`
    (two small stand-ins here, which a text-only loader must skip), config nested."""
    from make_fixtures import write_checkpoint
    dt = TDT[spec["dtype"]]
    stored, hf = {}, {}
    for k, t in base.items():
        name = "model.language_model." + k[len("model."):] if k.startswith("model.") else k
        stored[name] = t.to(dt).contiguous()
        hf[k] = t.to(dt).to(torch.float32)
    g = torch.Generator().manual_seed(case.get("seed", 0) + 77)
    stored["model.visual.merger.linear_fc2.weight"] = (torch.randn(config["hidden_size"], 32, generator=g) * 0.05).to(dt)
    stored["model.visual.merger.linear_fc2.bias"] = torch.zeros(config["hidden_size"]).to(dt)
    cfg = dict(config)
    cfg["torch_dtype"] = HF_DTYPE_NAME[spec["dtype"]]
    cfg = _qwen35_vlm_config(cfg, config)
    write_checkpoint(outdir, {k: _dense(v) for k, v in stored.items()}, 1)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return _write_oracle_dir(case, spec, config, hf, workdir)


def build_mlx(case, base, spec, config, outdir, workdir):
    from make_fixtures import mlx_quantize, write_checkpoint
    mt = config["model_type"]
    if mt == "gpt_oss":
        lay = layout_gpt_oss_mlx(base, config)
    else:
        lay = LAYOUTS[mt](base, config)
        if (config.get("num_experts") or config.get("n_routed_experts")) and \
                not any(".switch_mlp." in k for k in lay):
            raise RuntimeError("%s: no experts found to stack into switch_mlp among %s"
                               % (mt, sorted(k for k in base if ".mlp." in k)[:8]))
    bits, gs, sdt = spec["bits"], spec["group_size"], TDT[spec["scale_dtype"]]
    # mlx-lm (>= 0.27) writes the mode into the global entry; quant_predicate overrides
    # carry only group_size and bits
    qcfg = {"group_size": gs, "bits": bits, "mode": "affine"}
    stored, hf = {}, {k: v.clone() for k, v in base.items()}
    for k in sorted(lay):
        ent = lay[k]
        t = ent.value
        stem = k[: -len(".weight")] if k.endswith(".weight") else k
        if ent.quant and spec.get("experts_mode") and ".mlp.experts." in k and k.endswith(".weight"):
            s, e = formats.mx_store(stem, t, "mxfp4")
            stored.update(s)
            qcfg[stem] = {"group_size": 32, "bits": 4, "mode": "mxfp4"}
        elif ent.quant and quantizable(k, t, gs):
            over = mlx_quant_override(k, config)
            b, g = (over["bits"], over["group_size"]) if over else (bits, gs)
            if over:
                qcfg[stem] = dict(over)
            packed, sc, bi, e = mlx_quantize(t, b, g, sdt)
            stored[stem + ".weight"] = packed.contiguous()
            stored[stem + ".scales"] = sc.contiguous()
            stored[stem + ".biases"] = bi.contiguous()
        elif ent.keep_f32:
            stored[k] = t.to(torch.float32).contiguous()
            e = t.to(torch.float32)
        else:
            stored[k] = t.to(sdt).contiguous()
            e = t.to(sdt).to(torch.float32)
        ent.back(e, hf)
    eff = _finish_effective(hf, base)
    cfg = dict(config)
    cfg["torch_dtype"] = HF_DTYPE_NAME[spec["scale_dtype"]]
    if mt in ("qwen3_5_text", "qwen3_5_moe_text"):
        cfg = _qwen35_vlm_config(cfg, config)
    cfg["quantization"] = qcfg
    cfg["quantization_config"] = dict(qcfg)
    write_checkpoint(outdir, {k: _dense(v) for k, v in stored.items()}, 1, mlx_style=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return _write_oracle_dir(case, spec, config, eff, workdir)


# ---------------------------------------------------------------- gpt-oss

def _gptoss_expert_names(base):
    names = sorted(k for k in base if re.search(r"\.mlp\.experts\.(gate_up_proj|down_proj)$", k))
    if not names:  # save_pretrained wrote another layout: say so rather than store nothing as blocks
        raise RuntimeError("gpt_oss: no mlp.experts.gate_up_proj/down_proj among the saved tensors: %s"
                           % sorted(k for k in base if ".layers.0.mlp." in k))
    return names


def _gptoss_transposed(k, t, config):
    """Whether the HF tensor is stored [E, in, out] (transformers' GptOssExperts parameters,
    as save_pretrained writes them: gate_up_proj [E, H, 2I], down_proj [E, I, H]) rather
    than [E, out, in]. The case keeps I != H so that the shape tells."""
    H, I = config["hidden_size"], config["intermediate_size"]
    assert H != I, "gpt-oss cases need intermediate_size != hidden_size"
    want_in = H if k.endswith("gate_up_proj") else I
    if t.shape[1] == want_in:
        return True
    assert t.shape[2] == want_in, (k, tuple(t.shape))
    return False


def _gptoss_out_in(k, t, config):
    return t.transpose(1, 2).contiguous() if _gptoss_transposed(k, t, config) else t


def _gptoss_from_out_in(k, w, base, config):
    return w.transpose(1, 2).contiguous() if _gptoss_transposed(k, base[k], config) else w


def layout_gpt_oss_mlx(base, config):
    """mlx-lm gpt_oss.sanitize applied to the HF tensors: gate_up_proj [E, H, 2I] (rows of
    the [E, 2I, H] matrix interleaved gate, up) -> experts.gate_proj.weight / up_proj.weight
    [E, I, H]; down_proj [E, I, H] -> experts.down_proj.weight [E, H, I]; biases split
    alike."""
    lay = _identity_layout(base)
    for k in _gptoss_expert_names(base):
        t = base[k]
        lay.pop(k)
        if k.endswith("gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            wt = _gptoss_out_in(k, t, config)  # [E, 2I, H]
            st = {}

            def make_back(which, k=k, st=st):
                def back(eff, hf):
                    st[which] = eff
                    if len(st) == 2:
                        full = torch.empty(eff.shape[0], 2 * eff.shape[1], eff.shape[2])
                        full[:, 0::2, :] = st["g"]
                        full[:, 1::2, :] = st["u"]
                        hf[k] = _gptoss_from_out_in(k, full, base, config)
                        hf.setdefault("__written__", set()).add(k)
                return back
            lay[pre + "gate_proj.weight"] = Entry(wt[:, 0::2, :].contiguous(), make_back("g"))
            lay[pre + "up_proj.weight"] = Entry(wt[:, 1::2, :].contiguous(), make_back("u"))
            bk = k + "_bias"
            lay.pop(bk)
            sb = {}

            def make_bias_back(which, bk=bk, sb=sb):
                def back(eff, hf):
                    sb[which] = eff
                    if len(sb) == 2:
                        full = torch.empty(eff.shape[0], 2 * eff.shape[1])
                        full[:, 0::2] = sb["g"]
                        full[:, 1::2] = sb["u"]
                        hf[bk] = full
                        hf.setdefault("__written__", set()).add(bk)
                return back
            lay[pre + "gate_proj.bias"] = Entry(base[bk][:, 0::2].contiguous(), make_bias_back("g"), quant=False)
            lay[pre + "up_proj.bias"] = Entry(base[bk][:, 1::2].contiguous(), make_bias_back("u"), quant=False)
        else:
            pre = k[: -len("down_proj")]

            def back_down(eff, hf, k=k):
                hf[k] = _gptoss_from_out_in(k, eff, base, config)
                hf.setdefault("__written__", set()).add(k)
            lay[pre + "down_proj.weight"] = Entry(_gptoss_out_in(k, t, config), back_down)
            bk = k + "_bias"
            lay.pop(bk)
            lay[pre + "down_proj.bias"] = Entry(base[bk], _copy_to(bk), quant=False)
    return lay


def build_gptoss_blocks(case, base, spec, config, outdir, workdir):
    """openai/gpt-oss layout: expert weights as mxfp4 `_blocks`/`_scales` in [E, out, in]
    orientation, biases and everything else in BF16."""
    from make_fixtures import write_checkpoint
    stored, hf = {}, {k: v.clone() for k, v in base.items()}
    experts = set(_gptoss_expert_names(base))
    for k, t in base.items():
        if k in experts:
            s, e = formats.blocks_store(k, _gptoss_out_in(k, t, config))
            stored.update(s)
            hf[k] = _gptoss_from_out_in(k, e, base, config)
        else:
            stored[k] = t.to(torch.bfloat16).contiguous()
            hf[k] = t.to(torch.bfloat16).to(torch.float32)
        hf.setdefault("__written__", set()).add(k)
    eff = _finish_effective(hf, base)
    cfg = dict(config)
    cfg["torch_dtype"] = "bfloat16"
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"]}
    write_checkpoint(outdir, {k: _dense(v) for k, v in stored.items()}, 1)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return _write_oracle_dir(case, spec, config, eff, workdir)


def build_variant(case, base, spec, config, outdir, workdir):
    if spec["hybrid"] == "gptoss-blocks":
        return build_gptoss_blocks(case, base, spec, config, outdir, workdir)
    if spec["hybrid"] == "hfvlm":
        return build_hf_vlm(case, base, spec, config, outdir, workdir)
    return build_mlx(case, base, spec, config, outdir, workdir)
