"""Family hooks of make_fixtures.py for the families of issue 27 (cases-families.json).

The maker's defaults (Hugging Face names, mlx-lm's quantization rule, qwen3-moe stacking)
fit most families. What differs is kept here, each rule named after the mlx-lm or
transformers behaviour it copies:

- buffer_init (a case key): {buffer name: [mean, std]} redraws saved buffers after
  randomize(); glm4-moe draws e_score_correction_bias around +0.5 so that
  sigmoid + bias stays positive and a group masked to 0.0 is never chosen (the masked
  zeros would otherwise tie, and a tie has no defined winner).
- keep_f32: tensors stored in float32 in every variant (glm4_moe e_score_correction_bias:
  transformers keeps it float32 and mlx-lm's cast_predicate leaves it uncast).
- quant_bits: modules a family's mlx-lm quant_predicate keeps at 8 bits (granite o_proj).
- quantizable: where mlx-lm does not quantize a 2-D weight (glm4_moe MoEGate.weight and
  gemma4_text per_layer_model_projection are bare arrays, not nn.Linear), and the 3-D
  expert weights of mlx-lm's SwitchGLU under names other than switch_mlp.
- mlx_layout: the tensors as mlx-lm's sanitize leaves them (llama4: experts.gate_up_proj
  split into gate/up and every expert matrix turned to [E, out, in]; gemma4 MoE:
  experts.gate_up_proj split into switch_glu gate/up), with the inverse that gives the
  oracle the Hugging Face tensors back.
- mlx_wrap: families whose mlx-lm port reads only the multimodal checkpoint (llama4,
  gemma3n) get its config (text_config nested) and its tensor prefix.
"""
import torch

HF_EXPERT_3D = ("feed_forward.experts.gate_proj.weight", "feed_forward.experts.up_proj.weight",
                "feed_forward.experts.down_proj.weight", "experts.switch_glu.gate_proj.weight",
                "experts.switch_glu.up_proj.weight", "experts.switch_glu.down_proj.weight")


def adjust_model(model, case):
    """Apply the case's buffer_init after randomize() (own generator: the draws of
    randomize() and so every other tensor stay as they were)."""
    spec = case.get("buffer_init")
    if not spec:
        return
    g = torch.Generator().manual_seed(case.get("seed", 0) + 7919)
    with torch.no_grad():
        for name, b in model.named_buffers():
            key = name.rsplit(".", 1)[-1]
            if key in spec and b.is_floating_point():
                mean, std = spec[key]
                b.copy_(mean + torch.randn(b.shape, generator=g) * std)


def hub_names(config, base):
    """The tensors as published checkpoints name them. transformers 5 keeps glm4_moe experts
    fused in memory ([E, 2I, H] gate_up_proj, [E, H, I] down_proj) and is expected to write the
    hub's per-expert names back on save; should a release write the fused form, it is split here
    so that every variant (and mlx-lm's stacking) sees the hub layout."""
    if config["model_type"] != "glm4_moe":
        return base
    inter = config["moe_intermediate_size"]
    out = {}
    for k, t in base.items():
        if k.endswith(".mlp.experts.gate_up_proj"):
            stem = k[: -len("gate_up_proj")]
            assert t.shape[1] == 2 * inter, (k, tuple(t.shape))
            for e in range(t.shape[0]):
                out["%s%d.gate_proj.weight" % (stem, e)] = t[e, :inter].contiguous()
                out["%s%d.up_proj.weight" % (stem, e)] = t[e, inter:].contiguous()
        elif k.endswith(".mlp.experts.down_proj"):
            stem = k[: -len("down_proj")]
            for e in range(t.shape[0]):
                out["%s%d.down_proj.weight" % (stem, e)] = t[e].contiguous()
        else:
            out[k] = t
    return out


def keep_f32(config, name):
    return config["model_type"] == "glm4_moe" and name.endswith("e_score_correction_bias")


def quantizable(config, name, t, group_size):
    """True/False where the family's mlx-lm port departs from the maker's rule, else None."""
    mt = config["model_type"]
    if mt == "glm4_moe" and name.endswith("mlp.gate.weight"):
        return False  # MoEGate.weight: a bare array, nn.quantize skips it
    if mt == "gemma4_text" and name.endswith("per_layer_model_projection.weight"):
        return False  # ScaledLinear in mlx-lm's gemma4_text: a bare array
    if t.dim() == 3 and name.endswith(HF_EXPERT_3D):
        return t.shape[-1] % group_size == 0  # SwitchLinear, as switch_mlp
    return None


def quant_bits(config, stem):
    """Bits of a module that the family's mlx-lm quant_predicate keeps at another width, else
    None (granite: self_attn.o_proj at 8 bits, group size 64, whatever the recipe)."""
    if config["model_type"] == "granite" and stem.endswith("self_attn.o_proj"):
        return 8
    return None


def mlx_layout(config, base):
    """(layout, restore) for MLX variants of families whose mlx-lm sanitize renames or
    reshapes tensors, else None. layout: {stored name: tensor}; restore(effective) maps
    the dequantized stored tensors back to the Hugging Face names and shapes."""
    mt = config["model_type"]
    if mt == "llama4_text":
        return _llama4_layout(config, base)
    if mt == "gemma4_text" and config.get("enable_moe_block"):
        return _gemma4_moe_layout(config, base)
    return None


def _llama4_layout(config, base):
    """mlx-lm llama4 sanitize: gate_up_proj [E, H, 2I] split on the last axis into gate and
    up, each swapped to [E, I, H]; down_proj [E, I, H] swapped to [E, H, I]."""
    hidden = config["hidden_size"]
    inter = config["intermediate_size"]
    layout, fused = {}, {}
    for k, t in base.items():
        if k.endswith("feed_forward.experts.gate_up_proj"):
            # the hub layout is [E, H, 2I]; a transformers release that saved [E, 2I, H]
            # (its in-memory layout) is turned to the hub layout first
            if t.shape[1] == 2 * inter and t.shape[2] == hidden:
                t = t.transpose(1, 2)
                fused[k] = True
            assert t.shape[1:] == (hidden, 2 * inter), (k, tuple(t.shape))
            stem = k[: -len("gate_up_proj")]
            layout[stem + "gate_proj.weight"] = t[..., :inter].transpose(1, 2).contiguous()
            layout[stem + "up_proj.weight"] = t[..., inter:].transpose(1, 2).contiguous()
        elif k.endswith("feed_forward.experts.down_proj"):
            if t.shape[1] == hidden and t.shape[2] == inter:
                t = t.transpose(1, 2)
                fused[k] = True
            assert t.shape[1:] == (inter, hidden), (k, tuple(t.shape))
            layout[k[: -len("down_proj")] + "down_proj.weight"] = t.transpose(1, 2).contiguous()
        else:
            layout[k] = t

    def restore(eff):
        out = {}
        for k, t in eff.items():
            if k.endswith("feed_forward.experts.gate_proj.weight"):
                stem = k[: -len("gate_proj.weight")]
                up = eff[stem + "up_proj.weight"]
                hub = torch.cat([t.transpose(1, 2), up.transpose(1, 2)], dim=-1)
                name = stem + "gate_up_proj"
                out[name] = (hub.transpose(1, 2) if fused.get(name) else hub).contiguous()
            elif k.endswith("feed_forward.experts.up_proj.weight"):
                continue
            elif k.endswith("feed_forward.experts.down_proj.weight"):
                name = k[: -len("down_proj.weight")] + "down_proj"
                hub = t.transpose(1, 2)
                out[name] = (hub.transpose(1, 2) if fused.get(name) else hub).contiguous()
            else:
                out[k] = t
        return out

    return layout, restore


def _gemma4_moe_layout(config, base):
    """Gemma 4 experts.gate_up_proj [E, 2I, H] (gate rows first, as the module chunks its
    output) -> experts.switch_glu.gate_proj/up_proj [E, I, H]; down_proj [E, H, I] ->
    experts.switch_glu.down_proj.weight."""
    inter = config["moe_intermediate_size"]
    layout = {}
    for k, t in base.items():
        if k.endswith(".experts.gate_up_proj"):
            assert t.shape[1] == 2 * inter, (k, tuple(t.shape))
            stem = k[: -len("gate_up_proj")] + "switch_glu."
            layout[stem + "gate_proj.weight"] = t[:, :inter].contiguous()
            layout[stem + "up_proj.weight"] = t[:, inter:].contiguous()
        elif k.endswith(".experts.down_proj"):
            layout[k[: -len("down_proj")] + "switch_glu.down_proj.weight"] = t
        else:
            layout[k] = t

    def restore(eff):
        out = {}
        for k, t in eff.items():
            if k.endswith(".switch_glu.gate_proj.weight"):
                stem = k[: -len("switch_glu.gate_proj.weight")]
                up = eff[stem + "switch_glu.up_proj.weight"]
                out[stem + "gate_up_proj"] = torch.cat([t, up], dim=1).contiguous()
            elif k.endswith(".switch_glu.up_proj.weight"):
                continue
            elif k.endswith(".switch_glu.down_proj.weight"):
                out[k[: -len("switch_glu.down_proj.weight")] + "down_proj"] = t
            else:
                out[k] = t
        return out

    return layout, restore


def mlx_wrap(config, cfg, stored):
    """(cfg, stored) as mlx-lm reads the family, for the MLX variants: llama4 and gemma3n
    are read by mlx-lm only in their multimodal form."""
    mt = config["model_type"]
    if mt not in ("llama4_text", "gemma3n_text"):
        return cfg, stored
    text = {k: v for k, v in cfg.items()
            if k not in ("quantization", "quantization_config", "architectures", "torch_dtype")}
    quant = {k: cfg[k] for k in ("quantization", "quantization_config") if k in cfg}
    if mt == "llama4_text":
        stored = {"language_model." + k: v for k, v in stored.items()}
        out = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
               "text_config": text, "torch_dtype": cfg["torch_dtype"],
               "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 1408,
                                 "image_size": 336, "patch_size": 14, "num_hidden_layers": 34},
               "boi_token_index": 200080, "eoi_token_index": 200081, "image_token_index": 200092,
               "tie_word_embeddings": cfg.get("tie_word_embeddings", False), **quant}
        return out, stored
    renamed = {}
    for k, v in stored.items():
        assert k.startswith("model."), k  # tied: no lm_head
        renamed["model.language_model." + k[len("model."):]] = v
    out = {"architectures": ["Gemma3nForConditionalGeneration"], "model_type": "gemma3n",
           "text_config": text, "torch_dtype": cfg["torch_dtype"],
           "vision_config": {"model_type": "gemma3n_vision", "hidden_size": 2048},
           "audio_config": {"model_type": "gemma3n_audio", "hidden_size": 1536},
           "audio_soft_tokens_per_image": 188, "vision_soft_tokens_per_image": 256,
           "boi_token_id": 255999, "eoi_token_id": 262144, "image_token_id": 262145,
           "boa_token_id": 256000, "eoa_token_id": 262272, "audio_token_id": 262273,
           "tie_word_embeddings": True, **quant}
    return out, renamed
