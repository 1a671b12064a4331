"""Checks of the families_new.py hooks through make_fixtures.build_variant, without transformers:
synthetic tensors in each family's Hugging Face layout go through the MLX and plain variants, and the
oracle's effective tensors must come back under the Hugging Face names and shapes, within the
quantization error. Needs torch and numpy only (safetensors and transformers are stubbed).
Run: python3 tools/oracle/test_families_new.py"""
import sys, types, json, os, tempfile
import torch
# stubs for modules missing here (the check exercises the layout logic, not transformers)
saved = {}
st = types.ModuleType("safetensors"); st.safe_open = None
stt = types.ModuleType("safetensors.torch")
def save_file(d, p, metadata=None): saved[p] = {k: v.clone() for k, v in d.items()}
stt.save_file = save_file
tr = types.ModuleType("transformers"); tr.AutoConfig = tr.AutoModelForCausalLM = None; tr.__version__ = "stub"
sys.modules.update({"safetensors": st, "safetensors.torch": stt, "transformers": tr})
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf

cases = {c["name"]: c for c in json.load(open(os.path.join(HERE, "cases-families.json")))}
g = torch.Generator().manual_seed(0)
def R(*s): return torch.randn(*s, generator=g) * 0.1

def run(case, base, variant):
    spec = mf.parse_variant(variant)
    saved.clear()
    out = tempfile.mkdtemp(); work = tempfile.mkdtemp()
    odir = mf.build_variant(case, base, spec, case["config"], out, work)
    eff = saved[os.path.join(odir, "model.safetensors")]
    cfg = json.load(open(os.path.join(out, "config.json")))
    stored = {}
    for p, d in saved.items():
        if not p.startswith(odir): stored.update(d)
    # MLX-style files are written by save_mlx_style (not stubbed): read the header back
    for fn in os.listdir(out):
        if fn.endswith(".safetensors"):
            b = open(os.path.join(out, fn), "rb").read()
            n = int.from_bytes(b[:8], "little"); hdr = json.loads(b[8:8+n])
            for k, v in hdr.items():
                if k != "__metadata__": stored[k] = (v["dtype"], v["shape"])
    assert set(eff) == set(base), (set(eff) ^ set(base))
    for k in base:
        assert eff[k].shape == base[k].shape, (k, eff[k].shape, base[k].shape)
        err = (eff[k] - base[k]).abs().max().item()
        tol = (0.2 if spec["bits"] == 4 else 0.01) * base[k].abs().max().item() if spec["bits"] else 1e-2 * base[k].abs().max().item() + 1e-6
        assert err <= tol, (k, err, tol)
    return cfg, stored

# llama4: hub layout gate_up [E, H, 2I], down [E, I, H]
c = cases["llama4"]; H, I, E = 64, cases["llama4"]["config"]["intermediate_size"], 4
base = {"model.embed_tokens.weight": R(384, H), "model.norm.weight": R(H), "lm_head.weight": R(384, H),
        "model.layers.1.feed_forward.experts.gate_up_proj": R(E, H, 2 * I),
        "model.layers.1.feed_forward.experts.down_proj": R(E, I, H),
        "model.layers.1.feed_forward.router.weight": R(E, H),
        "model.layers.1.feed_forward.shared_expert.gate_proj.weight": R(I, H)}
cfg, stored = run(c, base, "q4-g32-bf16")
assert cfg["model_type"] == "llama4" and cfg["text_config"]["model_type"] == "llama4_text", cfg.keys()
assert stored["language_model.model.layers.1.feed_forward.experts.gate_proj.weight"][1] == [E, I, H * 4 // 32], stored
assert stored["language_model.model.layers.1.feed_forward.experts.down_proj.scales"][1] == [E, H, I // 32]
assert "language_model.model.layers.1.feed_forward.router.scales" in stored
# exact gate/up split check without quantization error: 8-bit with tiny error, compare halves
cfg, stored = run(c, base, "q8-g32-f16")
_, _ = run(c, base, "bf16")
# the in-memory orientation [E, 2I, H] / [E, H, I] is accepted and written back as it was
base2 = dict(base); base2["model.layers.1.feed_forward.experts.gate_up_proj"] = R(E, 2 * I, H)
base2["model.layers.1.feed_forward.experts.down_proj"] = R(E, H, I)
run(c, base2, "q8-g32-f16")
print("llama4 ok")

# gemma4-moe: experts.gate_up_proj [E, 2I, H], down [E, H, I]
c = cases["gemma4-moe"]; E, I = 8, 32
base = {"model.embed_tokens.weight": R(384, H), "model.layers.0.experts.gate_up_proj": R(E, 2 * I, H),
        "model.layers.0.experts.down_proj": R(E, H, I), "model.layers.0.router.proj.weight": R(E, H),
        "model.layers.0.router.scale": R(H), "model.layers.0.layer_scalar": R(1)}
cfg, stored = run(c, base, "q4-g32-bf16")
assert stored["model.layers.0.experts.switch_glu.gate_proj.weight"][1] == [E, I, H * 4 // 32]
assert stored["model.layers.0.experts.switch_glu.down_proj.weight"][1] == [E, H, I * 4 // 32]
assert cfg["model_type"] == "gemma4_text"
# exactness of the split: gate rows first
spec = mf.parse_variant("bf16")
print("gemma4-moe ok")

# gemma4 (E): per_layer_model_projection stays unquantized
c = cases["gemma4"]
base = {"model.embed_tokens.weight": R(384, H), "model.per_layer_model_projection.weight": R(160, H),
        "model.embed_tokens_per_layer.weight": R(384, 160), "model.layers.0.per_layer_input_gate.weight": R(32, H)}
cfg, stored = run(c, base, "q4-g32-bf16")
assert stored["model.per_layer_model_projection.weight"][0] == "BF16", stored
assert "model.embed_tokens_per_layer.scales" in stored
print("gemma4 ok")

# glm4_moe: gate unquantized, e_score_correction_bias f32, experts stacked
c = cases["glm4-moe"]; E, I = 16, 32
base = {"model.embed_tokens.weight": R(384, H), "model.layers.1.mlp.gate.weight": R(E, H),
        "model.layers.1.mlp.gate.e_score_correction_bias": R(E)}
for e in range(E):
    for p, shp in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
        base["model.layers.1.mlp.experts.%d.%s.weight" % (e, p)] = R(*shp)
cfg, stored = run(c, base, "q4-g32-bf16-stacked")
assert stored["model.layers.1.mlp.gate.weight"][0] == "BF16"
assert stored["model.layers.1.mlp.gate.e_score_correction_bias"][0] == "F32"
assert stored["model.layers.1.mlp.switch_mlp.down_proj.weight"][1] == [E, H, I * 4 // 32]
cfg, stored = run(c, base, "bf16")
# a fused save ([E, 2I, H] / [E, H, I]) is split into the hub's per-expert names
fused = {"model.layers.1.mlp.experts.gate_up_proj": R(E, 2 * I, H), "model.layers.1.mlp.experts.down_proj": R(E, H, I),
         "model.layers.1.mlp.gate.weight": base["model.layers.1.mlp.gate.weight"]}
hub = mf.families_new.hub_names(c["config"], fused)
assert torch.equal(hub["model.layers.1.mlp.experts.3.gate_proj.weight"], fused["model.layers.1.mlp.experts.gate_up_proj"][3, :I])
assert torch.equal(hub["model.layers.1.mlp.experts.3.up_proj.weight"], fused["model.layers.1.mlp.experts.gate_up_proj"][3, I:])
assert torch.equal(hub["model.layers.1.mlp.experts.5.down_proj.weight"], fused["model.layers.1.mlp.experts.down_proj"][5])
assert len(hub) == 3 * E + 1
assert mf.families_new.hub_names(cases["llama4"]["config"], fused) is fused
print("glm4 ok")

# gemma3n: MLX variants in the multimodal form
c = cases["gemma3n"]
base = {"model.embed_tokens.weight": R(384, H), "model.layers.0.laurel.linear_left.weight": R(32, H),
        "model.layers.0.altup.prediction_coefs.weight": R(16, 4), "model.layers.0.altup.correct_output_scale": R(H)}
cfg, stored = run(c, base, "q4-g32-bf16")
assert cfg["model_type"] == "gemma3n" and cfg["text_config"]["model_type"] == "gemma3n_text"
assert "model.language_model.layers.0.laurel.linear_left.scales" in stored, stored.keys()
assert stored["model.language_model.layers.0.altup.prediction_coefs.weight"][0] == "BF16"
cfg, stored = run(c, base, "bf16-shard2")
print("gemma3n ok")

# granite: o_proj at 8 bits (mlx-lm quant_predicate), the rest at the recipe's bits
c = cases["granite"]
base = {"model.embed_tokens.weight": R(384, H), "model.layers.0.self_attn.o_proj.weight": R(H, H),
        "model.layers.0.self_attn.q_proj.weight": R(H, H)}
cfg, stored = run(c, base, "q4-g64-bf16")
assert cfg["quantization"]["model.layers.0.self_attn.o_proj"] == {"group_size": 64, "bits": 8}, cfg["quantization"]
assert stored["model.layers.0.self_attn.o_proj.weight"][1] == [H, H * 8 // 32]
assert stored["model.layers.0.self_attn.q_proj.weight"][1] == [H, H * 4 // 32]
print("granite ok")

# an existing case is untouched: qwen3-moe stacked still stacks and quantizes its gate at 8 bits
old = {c["name"]: c for c in json.load(open(os.path.join(HERE, "cases.json")))}
c = old["qwen3-moe"]; E, I = 8, 64
base = {"model.embed_tokens.weight": R(384, H), "model.layers.0.mlp.gate.weight": R(E, H)}
for e in range(E):
    for p, shp in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
        base["model.layers.0.mlp.experts.%d.%s.weight" % (e, p)] = R(*shp)
cfg, stored = run(c, base, "q4-g64-bf16-stacked")
assert cfg["quantization"]["model.layers.0.mlp.gate"]["bits"] == 8
assert "model.layers.0.mlp.switch_mlp.up_proj.scales" in stored
print("qwen3-moe ok")
