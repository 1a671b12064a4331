"""Self-check of families_hybrid.py without transformers (torch and numpy only).

For every variant of cases-hybrid.json that families_hybrid builds, a fake Hugging Face
state dict with the names and shapes save_pretrained writes for the family is laid out,
quantized and written (in memory), and the float32 weights handed to the oracle are
compared with the originals: the same tensor names and shapes, and a relative error no
larger than quantization makes (a misplaced split, transpose or stack gives ~1.4).

    python3 tools/oracle/check_families_hybrid.py tools/oracle [CASE/VARIANT to list its tensors]
"""
import json, os, sys, tempfile, types
import torch
sys.path.insert(0, sys.argv[1])
# stubs for what the check doesn't need
if "safetensors" not in sys.modules:
    try:
        import safetensors  # noqa
    except ImportError:
        st = types.ModuleType("safetensors"); stt = types.ModuleType("safetensors.torch")
        SAVED = {}
        def save_file(t, p, metadata=None):
            SAVED[p] = {k: v.clone() for k, v in t.items()}
            open(p, "w").write("stub")
        stt.save_file = save_file; stt.SAVED = SAVED; st.safe_open = None; st.torch = stt
        sys.modules["safetensors"] = st; sys.modules["safetensors.torch"] = stt
tr = types.ModuleType("transformers"); tr.AutoConfig = tr.AutoModelForCausalLM = None
sys.modules.setdefault("transformers", tr)
import numpy as np
import make_fixtures as mf
import families_hybrid as fh
STORE = {}
def fake_write(dirpath, tensors, shards=1, mlx_style=False):
    os.makedirs(dirpath, exist_ok=True); STORE[dirpath] = tensors
    if mlx_style:  # the real MLX writer (needs every tensor dense, last stride 1)
        path = os.path.join(dirpath, "model.safetensors")
        mf.save_mlx_style(tensors, path)
        # read it back: every tensor's bytes in row-major order of its shape
        raw = open(path, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        npdt = {"F32": np.float32, "F16": np.float16, "BF16": np.int16, "U32": np.int32, "U8": np.uint8}
        for k, h in header.items():
            if k == "__metadata__":
                continue
            a, b = h["data_offsets"]
            got = np.frombuffer(raw[8 + n + a: 8 + n + b], dtype=npdt[h["dtype"]]).reshape(h["shape"])
            t = tensors[k]
            want = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).contiguous().numpy()
            assert list(t.shape) == h["shape"] and np.array_equal(got, want.reshape(got.shape)), k
mf.write_checkpoint = fake_write

def base_for(cfg):
    g = torch.Generator().manual_seed(0)
    R = lambda *s: torch.randn(*s, generator=g) * 0.1
    mt = cfg["model_type"]; H = cfg["hidden_size"]; L = cfg["num_hidden_layers"]; V = cfg["vocab_size"]
    b = {"model.embed_tokens.weight": R(V, H)}
    if not cfg.get("tie_word_embeddings"):
        b["lm_head.weight"] = R(V, H)
    for l in range(L):
        p = "model.layers.%d." % l
        if mt == "gpt_oss":
            nh, kv, hd, E, I = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["num_local_experts"], cfg["intermediate_size"]
            for n, o in (("q", nh*hd), ("k", kv*hd), ("v", kv*hd)):
                b[p+"self_attn.%s_proj.weight" % n] = R(o, H); b[p+"self_attn.%s_proj.bias" % n] = R(o)
            b[p+"self_attn.o_proj.weight"] = R(H, nh*hd); b[p+"self_attn.o_proj.bias"] = R(H)
            b[p+"self_attn.sinks"] = R(nh)
            b[p+"mlp.router.weight"] = R(E, H); b[p+"mlp.router.bias"] = R(E)
            b[p+"mlp.experts.gate_up_proj"] = R(E, H, 2*I); b[p+"mlp.experts.gate_up_proj_bias"] = R(E, 2*I)
            b[p+"mlp.experts.down_proj"] = R(E, I, H); b[p+"mlp.experts.down_proj_bias"] = R(E, H)
            b[p+"input_layernorm.weight"] = 1 + R(H); b[p+"post_attention_layernorm.weight"] = 1 + R(H)
        elif mt.startswith("qwen3"):
            kd = cfg["linear_key_head_dim"]*cfg["linear_num_key_heads"]; vd = cfg["linear_value_head_dim"]*cfg["linear_num_value_heads"]
            nv = cfg["linear_num_value_heads"]; hd = cfg["head_dim"]; nh = cfg["num_attention_heads"]; kvh = cfg["num_key_value_heads"]
            if cfg["layer_types"][l] == "linear_attention":
                a = p+"linear_attn."
                if mt == "qwen3_next":
                    b[a+"in_proj_qkvz.weight"] = R(2*kd+2*vd, H); b[a+"in_proj_ba.weight"] = R(2*nv, H)
                else:
                    b[a+"in_proj_qkv.weight"] = R(2*kd+vd, H); b[a+"in_proj_z.weight"] = R(vd, H)
                    b[a+"in_proj_b.weight"] = R(nv, H); b[a+"in_proj_a.weight"] = R(nv, H)
                b[a+"conv1d.weight"] = R(2*kd+vd, 1, cfg["linear_conv_kernel_dim"])
                b[a+"A_log"] = R(nv); b[a+"dt_bias"] = R(nv); b[a+"norm.weight"] = 1 + R(cfg["linear_value_head_dim"])
                b[a+"out_proj.weight"] = R(H, vd)
            else:
                a = p+"self_attn."
                b[a+"q_proj.weight"] = R(2*nh*hd, H); b[a+"k_proj.weight"] = R(kvh*hd, H); b[a+"v_proj.weight"] = R(kvh*hd, H)
                b[a+"o_proj.weight"] = R(H, nh*hd); b[a+"q_norm.weight"] = R(hd); b[a+"k_norm.weight"] = R(hd)
            if "num_experts" in cfg:
                E, I, S = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
                b[p+"mlp.gate.weight"] = R(E, H)
                if mt == "qwen3_next":
                    for e in range(E):
                        b[p+"mlp.experts.%d.gate_proj.weight" % e] = R(I, H); b[p+"mlp.experts.%d.up_proj.weight" % e] = R(I, H)
                        b[p+"mlp.experts.%d.down_proj.weight" % e] = R(H, I)
                else:
                    b[p+"mlp.experts.gate_up_proj"] = R(E, 2*I, H); b[p+"mlp.experts.down_proj"] = R(E, H, I)
                b[p+"mlp.shared_expert.gate_proj.weight"] = R(S, H); b[p+"mlp.shared_expert.up_proj.weight"] = R(S, H)
                b[p+"mlp.shared_expert.down_proj.weight"] = R(H, S); b[p+"mlp.shared_expert_gate.weight"] = R(1, H)
            else:
                I = cfg["intermediate_size"]
                b[p+"mlp.gate_proj.weight"] = R(I, H); b[p+"mlp.up_proj.weight"] = R(I, H); b[p+"mlp.down_proj.weight"] = R(H, I)
            b[p+"input_layernorm.weight"] = R(H); b[p+"post_attention_layernorm.weight"] = R(H)
        elif mt == "lfm2":
            if cfg["layer_types"][l] == "conv":
                b[p+"conv.in_proj.weight"] = R(3*H, H); b[p+"conv.conv.weight"] = R(H, 1, cfg["conv_L_cache"]); b[p+"conv.out_proj.weight"] = R(H, H)
            else:
                hd = H // cfg["num_attention_heads"]
                b[p+"self_attn.q_proj.weight"] = R(H, H); b[p+"self_attn.k_proj.weight"] = R(cfg["num_key_value_heads"]*hd, H)
                b[p+"self_attn.v_proj.weight"] = R(cfg["num_key_value_heads"]*hd, H); b[p+"self_attn.out_proj.weight"] = R(H, H)
                b[p+"self_attn.q_layernorm.weight"] = 1 + R(hd); b[p+"self_attn.k_layernorm.weight"] = 1 + R(hd)
            b[p+"feed_forward.w1.weight"] = R(128, H); b[p+"feed_forward.w3.weight"] = R(128, H); b[p+"feed_forward.w2.weight"] = R(H, 128)
            b[p+"operator_norm.weight"] = 1 + R(H); b[p+"ffn_norm.weight"] = 1 + R(H)
        elif mt == "deepseek_v3":
            nh = cfg["num_attention_heads"]; nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
            ql, kl = cfg["q_lora_rank"], cfg["kv_lora_rank"]
            a = p+"self_attn."
            b[a+"q_a_proj.weight"] = R(ql, H); b[a+"q_a_layernorm.weight"] = 1 + R(ql); b[a+"q_b_proj.weight"] = R(nh*(nope+rope), ql)
            b[a+"kv_a_proj_with_mqa.weight"] = R(kl+rope, H); b[a+"kv_a_layernorm.weight"] = 1 + R(kl)
            b[a+"kv_b_proj.weight"] = R(nh*(nope+vd), kl); b[a+"o_proj.weight"] = R(H, nh*vd)
            if l < cfg["first_k_dense_replace"]:
                I = cfg["intermediate_size"]
                b[p+"mlp.gate_proj.weight"] = R(I, H); b[p+"mlp.up_proj.weight"] = R(I, H); b[p+"mlp.down_proj.weight"] = R(H, I)
            else:
                E, I = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
                b[p+"mlp.gate.weight"] = R(E, H); b[p+"mlp.gate.e_score_correction_bias"] = R(E)
                for e in range(E):
                    b[p+"mlp.experts.%d.gate_proj.weight" % e] = R(I, H); b[p+"mlp.experts.%d.up_proj.weight" % e] = R(I, H)
                    b[p+"mlp.experts.%d.down_proj.weight" % e] = R(H, I)
                b[p+"mlp.shared_experts.gate_proj.weight"] = R(I, H); b[p+"mlp.shared_experts.up_proj.weight"] = R(I, H)
                b[p+"mlp.shared_experts.down_proj.weight"] = R(H, I)
            b[p+"input_layernorm.weight"] = 1 + R(H); b[p+"post_attention_layernorm.weight"] = 1 + R(H)
    b["model.embedding_norm.weight" if mt == "lfm2" else "model.norm.weight"] = (0 if mt.startswith("qwen3_") else 1) + R(H)
    return b

cases = json.load(open(os.path.join(sys.argv[1], "cases-hybrid.json")))
work = tempfile.mkdtemp()
bad = 0
for case in cases:
    cfg = case["config"]
    for v in case["variants"]:
        spec = fh.parse_variant(case, v)
        if spec is None:
            continue
        base = base_for(cfg)
        out = os.path.join(work, case["name"], v)
        odir = fh.build_variant(case, base, spec, cfg, out, work)
        stored = STORE[out]
        eff = sys.modules["safetensors.torch"].SAVED[os.path.join(odir, "model.safetensors")] if hasattr(sys.modules["safetensors.torch"], "SAVED") else None
        if eff is None:
            from safetensors.torch import load_file
            eff = load_file(os.path.join(odir, "model.safetensors"))
        assert set(eff) == set(base), (case["name"], v, set(eff) ^ set(base))
        worst = 0.0
        for k in base:
            assert eff[k].shape == base[k].shape, (k, eff[k].shape, base[k].shape)
            rel = float((eff[k] - base[k]).norm() / base[k].norm())
            worst = max(worst, rel)
            if rel > 0.25:
                print("  BAD", case["name"], v, k, rel); bad += 1
        qc = json.load(open(os.path.join(out, "config.json")))
        print("%-12s %-18s stored %3d tensors, worst rel err %.3f; quant keys %s" % (case["name"], v, len(stored), worst,
              [k for k in qc.get("quantization", qc.get("quantization_config", {})) if "." in k][:3]))
print("bad", bad)
if bad:
    sys.exit(1)
if len(sys.argv) > 2:
    for out, st in STORE.items():
        if sys.argv[2] in out:  # list the stored tensors of layers 0-1
            for k in sorted(st):
                if ".layers.0." in k or ".layers." not in k or ".layers.1." in k:
                    print("  ", k, st[k].dtype, tuple(st[k].shape))
