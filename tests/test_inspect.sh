#!/usr/bin/env bash
# test_inspect.sh CELLM FIXTURES: `cellm inspect` on every fixture checkpoint, checking the
# facts the directory name and family imply (storage, shard count, experts, head tying,
# sliding layers, soft-caps, partial rotary, fused projections, naming scheme).
set -u
cellm=$1
fixtures=$2
fails=0
n=0

fail() {
  echo "FAIL $rel: $*"
  fails=$((fails + 1))
}

# has PATTERN: the output holds a line matching the extended regex
has() {
  grep -Eq -- "$1" <<<"$out" || fail "no line matching '$1'"
}

for dir in "$fixtures"/*/*/; do
  dir=${dir%/}
  rel=${dir#"$fixtures"/}
  fam=${rel%%/*}
  var=${rel#*/}
  n=$((n + 1))
  if ! out=$("$cellm" inspect -m "$dir" 2>&1); then
    fail "exit status non-zero: $out"
    continue
  fi
  has "^model +$dir\$"
  has "^parameters +[1-9][0-9]* "
  has "^bytes +[1-9][0-9]* "
  has "^warnings +none\$"
  # storage from the variant's name: qB-gG-DT, or a float dtype
  if [[ $fam == deepseek-v3 ]]; then
    # latent attention: no q, k, v; mlx-lm splits kv_b_proj per head (embed_q, unembed_out)
    if [[ $var =~ ^mlx-q([0-9])-g([0-9]+)-(f16|bf16)$ ]]; then
      want="affine ${BASH_REMATCH[1]}-bit g${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
      has "^  latent kv kv_a, embed_q, unembed_out +$want\$"
      has "^  moe router +BF16\$"
    else
      want=$(tr a-z A-Z <<<"$var")
      has "^  latent kv kv_a, kv_b +$want\$"
    fi
    has "^  embedding +$want \["
    has "^  attention q_a, q_b, o +$want\$"
    has "^  shared gate, up, down +$want\$"
  elif [[ $fam == gpt-oss && $var == blocks ]]; then
    # the Hugging Face release's layout: mxfp4 experts, everything else BF16
    has "^  experts down, gate_up +mxfp4 E2M1 g32 e8m0 scales, 4.25 bpw\$"
    has "^  attention.* q, k, v, o +BF16\$"
    has "^quantization mxfp4 blocks"
  elif [[ $fam == gpt-oss && $var == mlx-mxfp4-q8-g64 ]]; then
    # mlx-community's: experts split by row parity in MLX mxfp4, the rest 8-bit affine
    has "^  experts gate, up, down +mxfp4 E2M1 g32 e8m0 scales, 4.25 bpw\$"
    has "^  attention.* q, k, v, o +affine 8-bit g64 bf16\$"
    has "^  moe router +affine 8-bit g64 bf16\$"
  elif [[ $var =~ ^mlx-q([0-9])-g([0-9]+)-(f16|bf16)$ ]]; then
    # the hybrids in mlx-lm's layout (tools/oracle/families_hybrid.py)
    want="affine ${BASH_REMATCH[1]}-bit g${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
    has "^  embedding +$want \["
    has "^  attention.* q, k, v, o +$want\$"
    has "^quantization ${BASH_REMATCH[1]}-bit, group ${BASH_REMATCH[2]} "
  elif [[ $var =~ ^q([0-9])-g([0-9]+)-(f16|bf16) ]]; then
    want="affine ${BASH_REMATCH[1]}-bit g${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
    has "^  embedding +$want \["
    if [[ $fam == granite && ${BASH_REMATCH[1]} != 8 ]]; then
      # mlx-lm keeps Granite's o_proj at 8 bits (a per-module override)
      has "^  attention.* q, k, v +$want\$"
      has "^  attention.* o +affine 8-bit g${BASH_REMATCH[2]} ${BASH_REMATCH[3]}\$"
    else
      has "^  attention.* q, k, v, o +$want\$"
    fi
    has "^quantization ${BASH_REMATCH[1]}-bit, group ${BASH_REMATCH[2]} "
  elif [[ $var =~ ^(mxfp4|mxfp8|nvfp4)(-mixed)?$ ]]; then
    # the formats of docs/formats.md (tools/oracle/formats.py names the variants)
    has "^  attention.* +${BASH_REMATCH[1]} E[24]M[13] g[0-9]+ e[48]m[03] scales, [0-9.]+ bpw"
    has "^quantization mode ${BASH_REMATCH[1]}, "
  elif [[ $var =~ ^(blocks|fp8-b[0-9]+|gptq[48]-g[0-9]+(-desc)?|awq4-g[0-9]+)$ ]]; then
    case $var in
      blocks) want="mxfp4 E2M1 g32 e8m0 scales" ;;
      fp8*) want="fp8 E4M3 blocks ${var#fp8-b}x${var#fp8-b}" ;;
      gptq*) want="gptq ${var:4:1}-bit" ;;
      *) want="awq 4-bit" ;;
    esac
    has "^  attention.* +$want"
    has "^  embedding +F32 \["
  else
    dt=$(tr a-z A-Z <<<"${var%%-*}")
    has "^  embedding +$dt \["
    has "^  attention.* q, k, v, o +$dt\$"
    has "^  norms +$dt\$"
  fi
  # shards
  if [[ $var =~ shard([0-9]+) ]]; then
    has "^shards +${BASH_REMATCH[1]}\$"
    has "^  model-0000${BASH_REMATCH[1]}-of-0000${BASH_REMATCH[1]}\.safetensors +[0-9]+ bytes"
  else
    has "^shards +1\$"
    has "^  model\.safetensors +[0-9]+ bytes"
  fi
  # family facts
  case $fam in
    llama-tied) has "^family +llama\$"; has "^  head +tied to the embedding"
                has "^rope +llama3, theta" ;;
    llama3-untied) has "^family +llama\$"; has "^  head +(affine|[BF]|mxfp|nvfp)"
                   has "^attention +heads 4, kv heads 2, head_dim 16" ;;
    llama-wide) has "^family +llama\$"; has "^dimensions +vocab [0-9]+, hidden 128" ;;
    llama-tiled) has "^family +llama\$"; has "^dimensions +vocab 512, hidden 256, layers 2, ffn 512"
                 has "^  head +tied to the embedding" ;;
    gemma2) has "^family +gemma2\$"; has "^soft-caps +attention 50, final 30\$"
            has "^sliding +window 8 on 1 of 2 layers \(0\)"; has "tied to the embedding"
            has "RMSNorm \(1 \+ w\)" ;;
    gemma3) has "^family +gemma3_text\$"; has "^sliding +window 8 on 2 of 4 layers \(0,2\)"
            has "^rope local +default, theta 10000\$"; has "^soft-caps +none\$"
            has "^tokens +bos 2, eos 1,106\$" ;;
    mistral) has "^family +mistral\$"; has "^sliding +none\$" ;;
    phi3) has "^family +phi3\$"; has "^  attention \(fused qkv\) q, k, v, o"
          has "^  mlp \(fused gate_up\) gate, up, down" ;;
    qwen2) has "^family +qwen2\$"; has "^sliding +none\$"; has "qkv bias"
           has "tied to the embedding" ;;
    qwen3) has "^family +qwen3\$"; has "q/k norm"; has "head_dim 32" ;;
    qwen3-yarn) has "^family +qwen3\$"
                has "^rope +yarn, theta 1e\+06, factor 4, original_max_position_embeddings 128, beta_fast 32, beta_slow 1, truncate true, ramp over frequencies 0\.\.4, attention factor 1\.13863 " ;;
    phi3-longrope) has "^family +phi3\$"; has "rotary dims 12,"
                   has "^rope +longrope, theta 10000, factor 32, attention factor 1\.87083 .*short_factor \[1, 1\.05, 1\.1, \.\.\., 2\] \(6\).*original_max_position_embeddings 4, long_factor \[1, 1\.25, 2, \.\.\., 9\] \(6\) beyond" ;;
    qwen3-moe) has "^family +qwen3_moe\$"; has "^experts +8 experts, 2 per token, ffn 64"
               has "^  experts gate, up, down +"; has "^  moe router +" ;;
    gpt-oss) has "^family +gpt_oss\$"; has "^sliding +window 8 on 2 of 4 layers \(0,2\)"
             has "^sinks +a learned logit per head"; has "qkv bias, o bias"
             has "^experts +8 experts, 2 per token, ffn 96, "
             has "^router +top-k of the logits, then softmax, biases on the router and the experts"
             has "^expert act +clamped SwiGLU: limit 7, alpha 1.702"
             [[ $var == mlx* ]] || has "gate/up rows interleaved \(gpt-oss\)" ;;
    glm4-moe) has "^family +glm4_moe\$"; has "rotary dims 16,"; has "qkv bias, q/k norm\$"
              has "^experts +16 experts, 4 per token, ffn 32, .*on 1 of 2 layers \(1\), top-k renormalised\$"
              has "^router +sigmoid; chosen with e_score_correction_bias among the best 2 of 4 groups; weights x 2.5\$"
              has "^shared +ffn 32, added to every MoE layer's output\$"
              has "^  shared gate, up, down +"; has "^  moe router +(F32|BF16|F16)\$"
              [[ $out == *"o bias"* ]] && fail "glm4_moe's o_proj has no bias" ;;
    deepseek-v3) has "^family +deepseek_v3\$"
                 has "^attention +heads 4, kv heads 4, head_dim 48, rotary dims 16, scale 0\.196355\$"
                 has "^latent attn +q_lora_rank 32, kv_lora_rank 32, qk_nope 32 \+ qk_rope 16 \(interleaved\), v_head_dim 32; cache 48 floats"
                 has "^experts +8 experts, 2 per token, ffn 32, .* on 2 of 3 layers \(1,2\), top-k renormalised\$"
                 has "^router +sigmoid, correction bias for the choice, best 2 of 4 groups, weights x 2\.5; 1 shared expert\$"
                 has "attention factor 1\.03566 " ;;
    granite) has "^family +granite\$"
             has "^block +RMSNorm eps 1e-05, silu, embeddings x 12, residuals x 0.5, logits / 2\$" ;;
    lfm2) has "^family +lfm2\$"; has "^dimensions +vocab 384, hidden 64, layers 6, ffn 128,"
          has "^state +short gated conv on 4 of 6 layers \(0,1,3,4\), kernel 3; 512 f32 per sequence\$"
          has "^  conv in_proj, out_proj +"; has "tied to the embedding"; has "q/k norm" ;;
    qwen3-next|qwen3.5|qwen3.5-moe)
      has "^state +Gated DeltaNet on 2 of 4 layers \(0,2\), 2 key / 4 value heads, dk 16, dv 16, conv kernel 4; 2816 f32 per sequence"
      has "^  linear attention in_proj, out_proj +"; has "rotary dims 8,"
      if [[ $var == mlx* ]]; then has "^block +RMSNorm eps"; else has "^block +RMSNorm \(1 \+ w\)"; fi
      case $fam in
        qwen3-next) has "^family +qwen3_next\$"; has "^experts +8 experts, 2 per token, ffn 32, "
                    has "^  shared expert gate, up, down"; has "top-k renormalised" ;;
        qwen3.5) has "^family +qwen3_5_text\$"; has "tied to the embedding" ;;
        *) has "^family +qwen3_5_moe_text\$"; has "^  shared expert gate, up, down"
           has "top-k renormalised" ;;
      esac ;;
    gemma4) has "^family +gemma4_text\$"; has "^sliding +window 8 on 3 of 5 layers \(0,1,3\)"
            has "^attention +heads 4, kv heads 1, head_dim 16, rotary dims 16, scale 1\$"
            has "^rope +proportional, theta 1e\+06, factor 1, partial_rotary_factor 0\.25: the first 4 of 16 angles rotate"
            has "^layers +full layers head_dim 32, kv heads 1; v norm without weight; layer_scalar; layers 3\.\.4 reuse the KV of layers 1,2, with a double-wide MLP \(ffn 128\); per-layer embeddings of 32 \(vocab 256\)\$"
            has "^  per-layer gate, proj +"; has "^soft-caps +attention 0, final 30\$" ;;
    gemma4-moe) has "^family +gemma4_text\$"; has "^experts +8 experts, 2 per token, ffn 32, "
                has "^router +softmax, then top-k, renormalised, x router\.per_expert_scale"
                has "^layers +full layers head_dim 32, kv heads 1, values = keys \(k=v\); v norm without weight; layer_scalar\$"
                [[ $var == q* ]] && has "stacked \(mlx-lm switch_mlp\)"
                [[ $var == q* ]] || has "stacked gate_up \(transformers v5\)" ;;
    gemma3n) has "^family +gemma3n_text\$"; has "^sliding +window 8 on 3 of 5 layers \(0,1,3\)"
             has "^attention +heads 4, kv heads 2, head_dim 16, rotary dims 16, scale 1\$"
             has "^block +RMSNorm \(x / root\) eps 1e-06, gelu_pytorch_tanh, q/k norm, sandwich norms"
             has "^layers +AltUp 4 streams \(active 0, correction coefs clipped to 120, correct_output_scale\), LAuReL rank 32; activation sparsity on layers 0 \(0\.95\); v norm without weight; layers 3\.\.4 reuse the KV of layers 1,2; per-layer embeddings of 32 \(vocab 256\)\$"
             has "^  per-layer gate, proj +"; has "^  laurel left, right +"; has "^soft-caps +attention 0, final 30\$"
             if [[ $var == q* ]]; then has "^  altup correct, predict +B?F16\$"; has "^names +model\.language_model\.\*\$"; fi ;;
    stablelm2) has "^family +stablelm\$"; has "rotary dims 4,"; has "LayerNorm eps"
               has "qkv bias" ;;
    smollm3) has "^family +smollm3\$"; has "^block +RMSNorm eps 1e-06, silu, no RoPE on 1 of 4 layers \(3\)\$"
             has "^rope +default, theta 5e\+06\$"; has "^  head +tied to the embedding" ;;
    olmo2) has "^family +olmo2\$"; has "^sliding +none\$"
           has "^block +RMSNorm eps 1e-06, silu, full-width q/k norm, post-norm \(norms after attention and MLP, none before\)\$" ;;
    olmo3) has "^family +olmo3\$"; has "^sliding +window 8 on 1 of 2 layers \(0\)\$"
           has "full-width q/k norm, post-norm"; has "^rope +default, theta 500000\$" ;;
    llama4) has "^family +llama4_text\$"; has "^sliding +none\$"
            has "^positions +interleaved RoPE; NoPE on 1 of 4 layers \(3\) with query temperature \(floor_scale 8, attn_scale 0.1\); chunked attention \(16\) on 3 of 4 layers \(0,1,2\); weightless q/k norm after RoPE\$"
            has "^experts +4 experts, 1 per token, ffn 96, .*on 1 of 4 layers \(3\)"
            has "^router +top-k of the logits; sigmoid scores scale the experts' input\$"
            has "^  shared gate, up, down +"
            if [[ $var == q* ]]; then has "mlx-lm gpt-oss, Llama 4"; has "^names +language_model\.\*"
            else has "stored \[E, in, out\] \(Llama 4\)"; fi ;;
    ministral3) has "^family +ministral3\$"; has "^sliding +none\$"
                has "^rope +yarn, theta 1e\+06, factor 16, original_max_position_embeddings 16, .*attention factor 1 "
                has "^positions +queries x 1 \+ 0.1 \* ln\(1 \+ floor\(p / 16\)\)\$" ;;
    *) fail "unknown family $fam" ;;
  esac
  [[ $var == *stacked* ]] && has "stacked \(mlx-lm switch_mlp\)"
  [[ $fam == qwen3-moe && $var != *stacked* ]] && has "per-expert tensors"
  [[ $var == *vlm* && $fam != qwen3.5* ]] && has "^names +language_model\.\*"
  [[ $var == bf16-vlm && $fam == qwen3.5* ]] && has "^names +model\.language_model\.\*"
  [[ $var == mlx* && $fam == qwen3.5* ]] && has "^names +language_model\.\*"
  [[ $var == *mixed* ]] && has "^  mlp down +affine 8-bit g64 f16\$"
done

# errors: one line on stderr, non-zero status
if out=$("$cellm" inspect -m "$fixtures/does-not-exist" 2>&1); then
  rel=missing; fail "succeeded on a missing directory"
elif [[ $(wc -l <<<"$out") != 1 || $out != "cellm inspect: "* ]]; then
  rel=missing; fail "expected one error line, got: $out"
fi
if "$cellm" inspect 2>/dev/null; then rel=usage; fail "succeeded without -m"; fi

echo "$n fixtures inspected, $fails failures"
[ "$n" -ge 48 ] && [ "$fails" -eq 0 ]
