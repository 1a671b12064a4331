"""Quantizers for the storage formats of docs/formats.md, for make_fixtures.py.

Each writes what the format's own tooling writes (MLX mxfp4/mxfp8/nvfp4 with `mode`,
gpt-oss `_blocks`/`_scales`, FP8 E4M3 with `weight_scale_inv` blocks, GPTQ v1 with or
without `g_idx`, AWQ gemm) and returns the float32 weights the reference formula
reconstructs (exactly: each is a product of exactly representable values, except the FP8
block product, which is one float32 multiplication, as transformers computes it). The
oracle then runs transformers on those dequantized weights, as for MLX affine.

Variant names (parsed by make_fixtures.parse_variant):
  mxfp4, mxfp8, nvfp4          MLX modes, every Linear/Embedding of the layers
  mxfp4-mixed                  mxfp4 with down_proj as 8-bit affine g64 (no "mode" key)
  blocks                       gpt-oss mxfp4 (_blocks/_scales) for Linear layers' weights
  fp8-b32                      FP8 E4M3, weight_block_size [32, 32]
  gptq4-g32 / gptq4-g32-desc / gptq8-g64 / awq4-g32
"""
import numpy as np
import torch

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)


def e2m1_encode(x):
    """Nearest E2M1 code of each value (ties to the smaller magnitude), x within +-6."""
    mags = E2M1[:8]
    d = (x.abs().unsqueeze(-1) - mags).abs()
    code = d.argmin(dim=-1)  # first minimum: ties go to the smaller magnitude
    code = torch.where(x < 0, code + 8, code)
    return code.to(torch.uint8)


def pack_u32_lsb(codes, bits):
    """[..., n] codes -> [..., n*bits/32] uint32 words, least significant first (MLX)."""
    c = codes.to(torch.int64).reshape(*codes.shape[:-1], -1, 32 // bits)
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    words = (c << shifts).sum(dim=-1)
    return words.to(torch.int64).numpy().astype(np.uint32)


def mx_quantize(w, mode):
    """w float32 [..., out, in]. Returns (codes u8 [..., out, in], scales u8 [.., out, G],
    effective f32)."""
    group = 16 if mode == "nvfp4" else 32
    g = w.reshape(*w.shape[:-1], w.shape[-1] // group, group).to(torch.float32)
    amax = g.abs().amax(dim=-1).clamp(min=2.0 ** -100)
    if mode == "nvfp4":
        s = (amax / 6.0).to(torch.float8_e4m3fn)
        s = torch.where(s.to(torch.float32) == 0, torch.tensor(2.0 ** -9).to(torch.float8_e4m3fn), s)
        sval = s.to(torch.float32)
        sbyte = s.view(torch.uint8)
    else:
        emax = 2 if mode == "mxfp4" else 8  # largest exponent of E2M1 / E4M3
        e = torch.floor(torch.log2(amax)) - emax
        e = e.clamp(-127, 127)
        sval = torch.pow(2.0, e)
        sbyte = (e + 127).to(torch.uint8)
    x = g / sval.unsqueeze(-1)
    if mode == "mxfp8":
        q = x.clamp(-448, 448).to(torch.float8_e4m3fn)
        codes = q.view(torch.uint8)
        vals = q.to(torch.float32)
    else:
        codes = e2m1_encode(x.clamp(-6, 6))
        vals = E2M1[codes.to(torch.int64)]
    eff = (vals * sval.unsqueeze(-1)).reshape(w.shape)  # exact products
    return codes.reshape(w.shape), sbyte, eff


def mx_store(stem, w, mode):
    codes, sbyte, eff = mx_quantize(w, mode)
    bits = 8 if mode == "mxfp8" else 4
    out = {}
    words = pack_u32_lsb(codes, bits)
    out[stem + ".weight"] = torch.from_numpy(words.view(np.int32))  # saved as U32 below
    out[stem + ".scales"] = sbyte.contiguous()
    return out, eff


def blocks_store(stem, w):
    """gpt-oss layout: P_blocks u8 [.., out, G, 16] (low nibble = even element),
    P_scales u8 [.., out, G]."""
    codes, sbyte, eff = mx_quantize(w, "mxfp4")
    c = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 32, 16, 2).to(torch.int32)
    blocks = (c[..., 0] | (c[..., 1] << 4)).to(torch.uint8)
    return {stem + "_blocks": blocks.contiguous(), stem + "_scales": sbyte.contiguous()}, eff


def fp8_store(stem, w, bn, bk):
    out_dim, in_dim = w.shape
    sr, sc = -(-out_dim // bn), -(-in_dim // bk)
    scale = torch.empty(sr, sc, dtype=torch.float32)
    q = torch.empty(out_dim, in_dim, dtype=torch.float8_e4m3fn)
    eff = torch.empty_like(w)
    for i in range(sr):
        for j in range(sc):
            blk = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
            s = (blk.abs().amax().clamp(min=1e-12) / 448.0).to(torch.float32)
            scale[i, j] = s
            qb = (blk / s).clamp(-448, 448).to(torch.float8_e4m3fn)
            q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = qb
            # transformers' Fp8Dequantize: float32 code times the block's scale, one rounding
            eff[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = qb.to(torch.float32) * s
    return {stem + ".weight": q.contiguous(), stem + ".weight_scale_inv": scale}, eff


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble j of a word holds output 8k + AWQ_ORDER[j]


def int_quantize(w, bits, group, gidx):
    """Asymmetric per-group integer quantization over inputs; gidx [in] gives each input's
    group. Returns q [out, in] int, zeros [G, out] int, scales f16 [G, out], effective."""
    out_dim, in_dim = w.shape
    ng = int(gidx.max()) + 1
    maxq = (1 << bits) - 1
    q = torch.empty(out_dim, in_dim, dtype=torch.int64)
    zeros = torch.empty(ng, out_dim, dtype=torch.int64)
    scales = torch.empty(ng, out_dim, dtype=torch.float16)
    for g in range(ng):
        cols = (gidx == g).nonzero().flatten()
        blk = w[:, cols]
        lo, hi = blk.min(dim=1).values.clamp(max=0), blk.max(dim=1).values.clamp(min=0)
        s = ((hi - lo) / maxq).clamp(min=1e-8).to(torch.float16)
        sf = s.to(torch.float32)
        # zero >= 1: GPTQ v1 stores zero - 1, which cannot hold -1
        z = torch.round(-lo / sf).clamp(1, maxq).to(torch.int64)
        q[:, cols] = (torch.round(blk / sf.unsqueeze(1)) + z.unsqueeze(1)).clamp(0, maxq).to(torch.int64)
        zeros[g], scales[g] = z, s
    sfull = scales.to(torch.float32)[gidx].T  # [out, in]
    zfull = zeros[gidx].T
    eff = sfull * (q - zfull).to(torch.float32)  # <= 20 significant bits: exact
    return q, zeros, scales, eff


def pack_cols(v, bits, order=None):
    """[rows, n] ints -> [rows, n*bits/32] int32 words packed along the last axis."""
    per = 32 // bits
    v = v.reshape(v.shape[0], -1, per)
    if order is not None:
        v = v[:, :, order]
    words = torch.zeros(v.shape[0], v.shape[1], dtype=torch.int64)
    for j in range(per):
        words |= v[:, :, j] << (bits * j)
    return torch.from_numpy(words.numpy().astype(np.uint32).view(np.int32))


def gptq_store(stem, w, bits, group, desc, seed):
    out_dim, in_dim = w.shape
    if desc:
        perm = torch.randperm(in_dim, generator=torch.Generator().manual_seed(seed))
        gidx = torch.empty(in_dim, dtype=torch.int64)
        gidx[perm] = torch.arange(in_dim) // group  # groups in activation order
    else:
        gidx = torch.arange(in_dim) // group
    q, zeros, scales, eff = int_quantize(w, bits, group, gidx)
    # qweight [in*bits/32, out]: packed along inputs
    out = {stem + ".qweight": pack_cols(q, bits).T.contiguous()}
    out[stem + ".qzeros"] = pack_cols(zeros - 1, bits)  # v1 stores zero - 1
    out[stem + ".scales"] = scales.contiguous()
    if desc:
        out[stem + ".g_idx"] = gidx.to(torch.int32)
    return out, eff


def awq_store(stem, w, group):
    out_dim, in_dim = w.shape
    gidx = torch.arange(in_dim) // group
    q, zeros, scales, eff = int_quantize(w, 4, group, gidx)
    return {stem + ".qweight": pack_cols(q.T.contiguous(), 4, AWQ_ORDER),
            stem + ".qzeros": pack_cols(zeros, 4, AWQ_ORDER),
            stem + ".scales": scales.contiguous()}, eff


def is_layer_linear(name, t):
    return (".layers." in name and name.endswith(".weight") and t.dim() == 2
            and any(p in name for p in ("_proj.", ".gate.")) and "norm" not in name)


def quantize_format(spec, layout, config, seed):
    """layout {name: (tensor, hf_names)} -> (stored, effective-by-stored-name, cfg additions)."""
    fmt = spec["format"]
    stored, eff = {}, {}
    qcfg = {}
    if fmt in ("mxfp4", "mxfp8", "nvfp4"):
        bits, gs = (8 if fmt == "mxfp8" else 4), (16 if fmt == "nvfp4" else 32)
        qcfg = {"quantization": {"group_size": gs, "bits": bits, "mode": fmt}}
    elif fmt == "blocks":
        qcfg = {"quantization_config": {"quant_method": "mxfp4",
                                        "modules_to_not_convert": ["lm_head", "model.embed_tokens"]}}
    elif fmt == "fp8":
        qcfg = {"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                        "weight_block_size": [spec["block"], spec["block"]]}}
    elif fmt == "gptq":
        qcfg = {"quantization_config": {"quant_method": "gptq", "bits": spec["bits"],
                                        "group_size": spec["group_size"], "desc_act": spec.get("desc", False),
                                        "sym": False, "checkpoint_format": "gptq"}}
    elif fmt == "awq":
        qcfg = {"quantization_config": {"quant_method": "awq", "bits": 4,
                                        "group_size": spec["group_size"], "zero_point": True,
                                        "version": "gemm"}}
    from make_fixtures import mlx_quantize  # the affine quantizer, for mixed variants
    for k, (t, _) in layout.items():
        stem = k[: -len(".weight")] if k.endswith(".weight") else k
        mlx_ok = fmt in ("mxfp4", "mxfp8", "nvfp4") and k.endswith(".weight") and t.dim() >= 2 \
            and "norm" not in k and t.shape[-1] % 32 == 0
        if mlx_ok and spec.get("mixed") and stem.endswith("down_proj"):
            packed, sc, bi, e = mlx_quantize(t, 8, 64, torch.float16)
            stored.update({stem + ".weight": packed, stem + ".scales": sc, stem + ".biases": bi})
            qcfg["quantization"][stem] = {"group_size": 64, "bits": 8}  # no mode: affine
        elif mlx_ok:
            s, e = mx_store(stem, t, fmt)
            stored.update(s)
        elif fmt == "blocks" and is_layer_linear(k, t) and t.shape[-1] % 32 == 0:
            s, e = blocks_store(stem, t)
            stored.update(s)
        elif fmt == "fp8" and is_layer_linear(k, t):
            s, e = fp8_store(stem, t, spec["block"], spec["block"])
            stored.update(s)
        elif fmt == "gptq" and is_layer_linear(k, t) and t.shape[0] % 8 == 0:
            s, e = gptq_store(stem, t, spec["bits"], spec["group_size"], spec.get("desc"), seed)
            stored.update(s)
        elif fmt == "awq" and is_layer_linear(k, t) and t.shape[0] % 8 == 0:
            s, e = awq_store(stem, t, spec["group_size"])
            stored.update(s)
        else:
            stored[k] = t.contiguous()
            e = t
        eff[k] = e
    return stored, eff, qcfg
