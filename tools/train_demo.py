#!/usr/bin/env python3
"""Train the demo model that the repository ships (models/wordnet-llama).

Two steps, on two machines:

  corpus  (any machine with Python 3 and Debian's wordnet-base; standard library only)
          python3 tools/train_demo.py corpus --out .demo-data/wordnet.jsonl.gz
          Reads /usr/share/wordnet/data.{noun,verb,adj,adv} and writes one JSON record
          per synset (part of speech, lemmas, gloss, example sentences), the first
          record holding the WordNet 3.0 licence text.

  train   (the GPU machine: torch, transformers, tokenizers, safetensors)
          python3 tools/train_demo.py train --corpus .demo-data/wordnet.jsonl.gz --work DIR
          1. trains a byte-level BPE tokenizer (Hugging Face tokenizers) on the text,
          2. trains a small Llama (transformers LlamaForCausalLM) for --seconds of GPU time,
             keeping the weights of the best held-out loss,
          3. writes DIR/NAME (Hugging Face layout, bf16) and DIR/NAME-4bit (MLX affine
             4-bit, group 64, bf16 scales and biases), each with oracle.safetensors and
             oracle.json computed by transformers in float32 on the CPU (eager
             attention) from exactly the values the stored files decode to.

tools/train_demo.sh wraps both and packs the result for the trip back.
"""
import argparse
import gzip
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import time

NAME = "wordnet-llama"
WORDNET = "/usr/share/wordnet"
POS_FILES = [("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r")]
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}

# ids 0..6, in this order, before the byte alphabet and the merges
SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
PAD, BOS, EOS, SYSTEM, USER, ASSISTANT, END = range(len(SPECIALS))

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


# ============================================================== corpus (stdlib only)

def parse_data_file(path, pos_default):
    """Yield (pos, lemmas, gloss, examples) for each synset line of a WordNet data file."""
    licence = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # licence header: "  N text"
                licence.append(re.sub(r"^\s+\d+ ?", "", line.rstrip()))
                continue
            if " | " not in line:
                continue
            head, gloss = line.rstrip("\n").split(" | ", 1)
            fields = head.split()
            pos = fields[2] if len(fields) > 2 else pos_default
            n = int(fields[3], 16)
            lemmas = []
            for i in range(n):
                w = fields[4 + 2 * i]
                w = re.sub(r"\((a|p|ip)\)$", "", w).replace("_", " ")
                if w not in lemmas:
                    lemmas.append(w)
            gloss = gloss.strip()
            examples = [e.strip() for e in re.findall(r'"([^"]*)"', gloss) if e.strip()]
            first_quote = gloss.find('"')
            definition = gloss if first_quote < 0 else gloss[:first_quote]
            definition = definition.strip().rstrip(";").strip()
            yield licence, (pos, lemmas, definition, examples)


def cmd_corpus(args):
    records, licence = [], None
    for fname, pos in POS_FILES:
        path = os.path.join(args.wordnet, "data." + fname)
        for lic, rec in parse_data_file(path, pos):
            if licence is None and lic:
                licence = lic
            if rec[2]:
                records.append(rec)
    lic_text = "\n".join(licence or []).strip() + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    n_chars = 0
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"source": "WordNet 3.0 (Debian package wordnet-base), %s" % args.wordnet,
                            "licence": lic_text}) + "\n")
        for pos, lemmas, definition, examples in records:
            f.write(json.dumps({"p": pos, "w": lemmas, "d": definition, "e": examples}) + "\n")
            n_chars += len(definition) + sum(len(e) for e in examples)
    print("corpus: %d synsets, %.1f MB of gloss and example text -> %s (%.1f MB)" % (
        len(records), n_chars / 1e6, args.out, os.path.getsize(args.out) / 1e6))


def load_corpus(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        meta = json.loads(f.readline())
        recs = [json.loads(l) for l in f]
    return meta, recs


QUESTIONS = {
    "n": ['What is a {w}?', 'What does "{w}" mean?', 'Define "{w}".', 'What is meant by "{w}"?'],
    "v": ['What does it mean to {w}?', 'What does "{w}" mean?', 'Define the verb "{w}".'],
    "a": ['What does "{w}" mean?', 'What does it mean to be {w}?', 'Define "{w}".'],
    "s": ['What does "{w}" mean?', 'What does it mean to be {w}?', 'Define "{w}".'],
    "r": ['What does "{w}" mean?', 'Define the adverb "{w}".'],
}


def chat_text(user, assistant):
    """The chat template's rendering of one user turn and one assistant turn, bos excluded."""
    return "<|user|>\n" + user + "<|end|>\n<|assistant|>\n" + assistant + "<|end|>\n"


def build_documents(recs, rng):
    """Turn synsets into training documents (strings, no bos/eos):
    the bare gloss, each example sentence, 'lemma (pos): gloss', and a chat exchange."""
    docs, tok_text = [], []
    for r in recs:
        pos, lemmas, d, ex = r["p"], r["w"], r["d"], r["e"]
        docs.append(d)
        tok_text.append(d)
        for e in ex:
            docs.append(e)
            tok_text.append(e)
        w = rng.choice(lemmas)
        entry = "%s (%s): %s" % (w, POS_NAME.get(pos, pos), d)
        if ex:
            entry += '; "%s"' % rng.choice(ex)
        docs.append(entry)
        answer = "%s: %s." % (w[0].upper() + w[1:] if w else w, d)
        if ex:
            answer += ' For example: "%s".' % rng.choice(ex)
        q = rng.choice(QUESTIONS.get(pos, QUESTIONS["n"])).format(w=w)
        docs.append(chat_text(q, answer))
        tok_text.append(q + "\n" + answer)
    return docs, tok_text


# ============================================================== train (GPU machine)

def st_write(path, tensors, metadata, mlx_style):
    """Write a safetensors file from {name: (dtype_str, shape, bytes)}.
    mlx_style: keys sorted, no header padding (as MLX writes files); else the header is
    padded with spaces to a multiple of 8 bytes (as the safetensors library does)."""
    header = {"__metadata__": metadata}
    off = 0
    order = sorted(tensors)
    for k in order:
        dt, shape, b = tensors[k]
        header[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    if not mlx_style:
        hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in order:
            f.write(tensors[k][2])


def cmd_train(args):
    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoConfig, AutoModelForCausalLM

    t_start = time.time()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    log = lambda *a: print("[%6.1fs]" % (time.time() - t_start), *a, flush=True)
    log("torch %s, transformers %s, device %s%s" % (
        torch.__version__, transformers.__version__, dev,
        " (%s)" % torch.cuda.get_device_name(0) if dev == "cuda" else ""))

    meta, recs = load_corpus(args.corpus)
    if args.tiny:
        recs = recs[:: max(1, len(recs) // 3000)]
    rng.shuffle(recs)
    n_val = max(50, len(recs) // 100)
    val_recs, train_recs = recs[:n_val], recs[n_val:]
    train_docs, tok_text = build_documents(train_recs, rng)
    val_docs, _ = build_documents(val_recs, rng)
    rng.shuffle(train_docs)
    n_chars = sum(len(d) for d in train_docs)
    log("corpus: %d synsets (%d held out), %d training documents, %.1f MB" % (
        len(recs), n_val, len(train_docs), n_chars / 1e6))

    # ---------------------------------------------------------- tokenizer
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(tok_text, trainer=trainer, length=len(tok_text))
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", BOS)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    vocab = tok.get_vocab_size()
    log("tokenizer: %d tokens" % vocab)

    def encode_docs(docs):
        encs = tok.encode_batch(docs, add_special_tokens=False)
        out = []
        for e in encs:
            out.append(BOS)
            out.extend(e.ids)
            out.append(EOS)
        return np.asarray(out, dtype=np.int64)

    train_ids = torch.from_numpy(encode_docs(train_docs))
    val_ids = torch.from_numpy(encode_docs(val_docs))
    log("tokens: %d train (%.2f chars/token), %d held out" % (
        len(train_ids), n_chars / len(train_ids), len(val_ids)))

    # ---------------------------------------------------------- model
    L = args.layers
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_hidden_layers": L,
        "num_attention_heads": args.hidden // 64,
        "num_key_value_heads": args.kv_heads,
        "head_dim": 64,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "pad_token_id": PAD,
        "use_cache": True,
    }
    work = args.work
    if os.path.exists(work):
        shutil.rmtree(work)
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp)

    def write_json(path, obj):
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    write_json(os.path.join(tmp, "config.json"), dict(config, torch_dtype="float32"))
    cfg = AutoConfig.from_pretrained(tmp)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa").to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log("model: %d layers, hidden %d, ffn %d, %d heads / %d kv heads, vocab %d: %.2fM parameters" % (
        L, args.hidden, args.ffn, args.hidden // 64, args.kv_heads, vocab, n_params / 1e6))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=(dev == "cuda"))
    T, B = args.seq, args.batch
    train_gpu = train_ids.to(dev)
    val_gpu = val_ids.to(dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    ar = torch.arange(T + 1, device=dev)

    def batch(data, bsz, g):
        starts = torch.randint(0, len(data) - T - 1, (bsz,), device=dev, generator=g)
        x = data[starts.unsqueeze(1) + ar]
        return x[:, :-1], x[:, 1:]

    def loss_of(x, y):
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def val_loss():
        model.eval()
        g = torch.Generator(device=dev).manual_seed(1234)
        tot = 0.0
        for _ in range(args.val_batches):
            x, y = batch(val_gpu, B, g)
            tot += float(loss_of(x, y))
        model.train()
        return tot / args.val_batches

    warmup = args.warmup
    best = (float("inf"), -1, None)
    step, t0, last_eval = 0, time.time(), time.time()
    history = []
    model.train()
    while True:
        elapsed = time.time() - t0
        if step >= args.max_steps or elapsed >= args.seconds:
            break
        frac = min(1.0, elapsed / args.seconds)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gp in opt.param_groups:
            gp["lr"] = lr
        x, y = batch(train_gpu, B, gen)
        loss = loss_of(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or time.time() - last_eval > args.eval_every:
            tl = float(loss.detach())
            if time.time() - last_eval > args.eval_every or step >= args.max_steps:
                vl = val_loss()
                last_eval = time.time()
                history.append((step, round(time.time() - t0, 1), round(tl, 4), round(vl, 4)))
                if vl < best[0]:
                    best = (vl, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
                log("step %5d  lr %.2e  train %.3f  held-out %.3f%s" % (
                    step, lr, tl, vl, "  (best)" if best[1] == step else ""))
    if dev == "cuda":
        torch.cuda.synchronize()
    train_time = time.time() - t0
    vl = val_loss()
    history.append((step, round(train_time, 1), round(float(loss.detach()), 4), round(vl, 4)))
    if vl < best[0]:
        best = (vl, step, None)
    else:
        model.load_state_dict(best[2])
    tokens_seen = step * B * T
    log("trained %d steps in %.1f s (%.0f tokens/s, %.1f epochs); final held-out %.3f; kept step %d (held-out %.3f)" % (
        step, train_time, tokens_seen / train_time, tokens_seen / len(train_ids), vl, best[1], best[0]))

    # ---------------------------------------------------------- samples (GPU, from the trained weights)
    model.eval()

    @torch.no_grad()
    def generate(ids, n, temperature=0.0, top_k=40, stop=(EOS, END), g=None, m=None):
        m = m or model
        ids = list(ids)
        out = []
        for _ in range(n):
            x = torch.tensor([ids], device=next(m.parameters()).device)
            logits = m(input_ids=x).logits[0, -1].float()
            if temperature <= 0:
                t = int(logits.argmax())
            else:
                v, i = torch.topk(logits / temperature, top_k)
                t = int(i[torch.multinomial(torch.softmax(v, -1), 1, generator=g)])
            if t in stop:
                break
            ids.append(t)
            out.append(t)
        return out

    prompts = ["a small animal", "the act of", "a person who", "having a", "to move"]
    samples = []
    g = torch.Generator(device=dev).manual_seed(7)
    for p in prompts:
        ids = tok.encode(p).ids
        greedy = tok.decode(generate(ids, 40))
        sampled = tok.decode(generate(ids, 40, temperature=0.8, g=g))
        samples.append((p, greedy, sampled))
        log("prompt %r\n      greedy : %s%s\n      sampled: %s%s" % (p, p, greedy, p, sampled))
    chat_q = 'What does "lighthouse" mean?'
    chat_ids = tok.encode("<|bos|>" + "<|user|>\n" + chat_q + "<|end|>\n<|assistant|>\n",
                          add_special_tokens=False).ids
    chat_a = tok.decode(generate(chat_ids, 60))
    log("chat %r -> %s" % (chat_q, chat_a))

    # ---------------------------------------------------------- export
    model = model.float().cpu()
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    sd.pop("lm_head.weight", None)  # tied to model.embed_tokens.weight
    hf_dir = os.path.join(work, NAME)
    q_dir = os.path.join(work, NAME + "-4bit")

    def bf16_bytes(t):
        return t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()

    def write_tokenizer_files(d):
        tok.save(os.path.join(d, "tokenizer.json"))
        added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True} for i, s in enumerate(SPECIALS)}
        write_json(os.path.join(d, "tokenizer_config.json"), {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 512,
            "added_tokens_decoder": added,
            "chat_template": CHAT_TEMPLATE,
        })
        write_json(os.path.join(d, "special_tokens_map.json"), {
            "bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
            "additional_special_tokens": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]})
        write_json(os.path.join(d, "generation_config.json"), {
            "bos_token_id": BOS, "eos_token_id": [EOS, END], "pad_token_id": PAD,
            "do_sample": True, "temperature": 0.8, "top_k": 40, "max_new_tokens": 64})
        with open(os.path.join(d, "LICENSE-WordNet"), "w") as f:
            f.write("The training text of these weights is WordNet 3.0 (Princeton University),\n"
                    "as shipped by Debian's wordnet-base package. Its licence:\n\n" + meta["licence"])

    # Hugging Face layout, bf16
    os.makedirs(hf_dir)
    hf_tensors = {k: ("BF16", tuple(v.shape), bf16_bytes(v)) for k, v in sd.items()}
    st_write(os.path.join(hf_dir, "model.safetensors"), hf_tensors, {"format": "pt"}, mlx_style=False)
    write_json(os.path.join(hf_dir, "config.json"), dict(config, torch_dtype="bfloat16"))
    write_tokenizer_files(hf_dir)
    hf_effective = {k: v.to(torch.bfloat16).float() for k, v in sd.items()}

    # MLX affine 4-bit, group 64, bf16 scales/biases; norms in bf16
    GS, BITS = 64, 4

    def quantize(w):
        """MLX affine quantization of w [out, in] (float32 math; the group max starts at 0 as
        on Apple and CUDA GPUs; the edge of larger magnitude is the bias). Returns packed
        uint32 [out, in/8] as bytes, bf16 scales and biases [out, in/64], and the dequantized
        float32 values (bf16 scale and bias widened, f32 multiply then f32 add)."""
        out_dim, in_dim = w.shape
        nb = float(2 ** BITS - 1)
        g = w.float().reshape(out_dim, in_dim // GS, GS)
        lo = g.amin(-1)
        hi = g.amax(-1).clamp(min=0.0)
        s = ((hi - lo) / nb).clamp(min=1e-7)
        take_lo = lo.abs() > hi.abs()
        s = torch.where(take_lo, s, -s)
        edge = torch.where(take_lo, lo, hi)
        q0 = torch.round(edge / s)
        nz = q0 != 0
        s = torch.where(nz, edge / torch.where(nz, q0, torch.ones_like(q0)), s)
        b = torch.where(nz, edge, torch.zeros_like(edge))
        q = torch.round((g - b[..., None]) / s[..., None]).clamp(0, nb).to(torch.int64)
        s16, b16 = s.to(torch.bfloat16), b.to(torch.bfloat16)
        deq = (q.float() * s16.float()[..., None]) + b16.float()[..., None]
        qn = q.reshape(out_dim, in_dim // 8, 8).numpy().astype(np.uint64)
        words = np.zeros((out_dim, in_dim // 8), dtype=np.uint64)
        for k in range(8):  # element k of a word at bits 4k..4k+3, least significant first
            words |= qn[:, :, k] << np.uint64(BITS * k)
        packed = words.astype("<u4")
        return packed, s16, b16, deq.reshape(out_dim, in_dim)

    os.makedirs(q_dir)
    q_tensors, q_effective = {}, {}
    for k, v in sd.items():
        if v.dim() == 2 and k.endswith(".weight") and "norm" not in k and v.shape[1] % GS == 0:
            packed, s16, b16, deq = quantize(v)
            stem = k[: -len(".weight")]
            q_tensors[stem + ".weight"] = ("U32", packed.shape, packed.tobytes())
            q_tensors[stem + ".scales"] = ("BF16", tuple(s16.shape), s16.contiguous().view(torch.int16).numpy().tobytes())
            q_tensors[stem + ".biases"] = ("BF16", tuple(b16.shape), b16.contiguous().view(torch.int16).numpy().tobytes())
            q_effective[k] = deq
            # self-check: unpack the stored words and compare with the codes' dequantization
            un = (packed[..., None].astype(np.uint64) >> (np.arange(8, dtype=np.uint64) * 4)) & 15
            un = torch.from_numpy(un.reshape(v.shape).astype(np.float32))
            chk = (un.reshape(v.shape[0], -1, GS) * s16.float()[..., None] + b16.float()[..., None]).reshape(v.shape)
            assert torch.equal(chk, deq), k
        else:
            q_tensors[k] = ("BF16", tuple(v.shape), bf16_bytes(v))
            q_effective[k] = v.to(torch.bfloat16).float()
    st_write(os.path.join(q_dir, "model.safetensors"), q_tensors, {"format": "mlx"}, mlx_style=True)
    qcfg = {"group_size": GS, "bits": BITS}
    write_json(os.path.join(q_dir, "config.json"),
               dict(config, torch_dtype="bfloat16", quantization=qcfg, quantization_config=dict(qcfg)))
    write_tokenizer_files(q_dir)
    qerr = max(float((q_effective[k] - sd[k]).abs().max()) for k in sd)
    log("4-bit: max |w - dequant(w)| %.4f" % qerr)

    # ---------------------------------------------------------- oracles
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    forced_text = ("a large body of water surrounded by land, used by the people of the town for "
                   "fishing and swimming; \"we walked along the shore of the lake at sunset\"")
    forced = tok.encode(forced_text).ids[: args.n_forced]
    oracle_prompts = ["the act of", "a small animal", "a person who", "having a", "to move"]

    @torch.no_grad()
    def oracle(effective, variant, out_dir):
        odir = os.path.join(tmp, "oracle-" + variant)
        os.makedirs(odir)
        save_file({k: v.contiguous() for k, v in effective.items()}, os.path.join(odir, "model.safetensors"),
                  metadata={"format": "pt"})
        write_json(os.path.join(odir, "config.json"), dict(config, torch_dtype="float32"))
        m = AutoModelForCausalLM.from_pretrained(odir, dtype=torch.float32, attn_implementation="eager")
        m.eval()
        assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
        chosen = None
        for p in oracle_prompts:
            prompt = tok.encode(p).ids
            ids, gids, glog, margins = list(prompt), [], [], []
            for _ in range(args.n_greedy):  # full recompute each step, no EOS stop
                lg = m(input_ids=torch.tensor([ids])).logits[0, -1].float()
                top = torch.topk(lg, 2)
                margins.append(float(top.values[0] - top.values[1]))
                t = int(top.indices[0])
                gids.append(t)
                glog.append(lg)
                ids.append(t)
            cand = (min(margins), p, prompt, gids, glog)
            if chosen is None or cand[0] > chosen[0]:
                chosen = cand
            if cand[0] > 0.05:
                break
        margin, p, prompt, gids, glog = chosen
        fl = m(input_ids=torch.tensor([forced])).logits[0].float()
        ftop = torch.topk(fl, 2, dim=-1).values
        info = {
            "prompt_ids": prompt,
            "greedy_ids": gids,
            "greedy_min_margin": margin,
            "forced_ids": forced,
            "forced_min_margin": float((ftop[:, 0] - ftop[:, 1]).min()),
            "case": NAME,
            "variant": variant,
            "model_type": "llama",
            "reference": "transformers %s, torch %s, float32, CPU, eager attention" % (
                transformers.__version__, torch.__version__),
            "notes": "trained demo model; prompt %r, greedy text %r; forced text %r" % (
                p, tok.decode(gids), tok.decode(forced)),
        }
        save_file({
            "prompt_ids": torch.tensor(prompt, dtype=torch.int32),
            "greedy_ids": torch.tensor(gids, dtype=torch.int32),
            "greedy_logits": torch.stack(glog).contiguous(),
            "forced_ids": torch.tensor(forced, dtype=torch.int32),
            "forced_logits": fl.contiguous(),
        }, os.path.join(out_dir, "oracle.safetensors"))
        write_json(os.path.join(out_dir, "oracle.json"), info)
        log("oracle %s: prompt %r -> %r (min margin greedy %.3f, forced %.3f)" % (
            variant, p, tok.decode(gids), margin, info["forced_min_margin"]))
        return m, info

    _, hf_info = oracle(hf_effective, "bf16", hf_dir)
    qm, q_info = oracle(q_effective, "q4-g64-bf16", q_dir)
    # cross-checks: transformers reads the written bf16 directory to the oracle's logits, and
    # its tokenizer files (chat template included) load and agree with the tokenizer here
    with torch.no_grad():
        hm = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
        hl = hm(input_ids=torch.tensor([forced])).logits[0].float()
    from safetensors import safe_open
    with safe_open(os.path.join(hf_dir, "oracle.safetensors"), "pt") as f:
        ref = f.get_tensor("forced_logits")
    log("check: transformers on %s vs oracle: max |diff| %.3g" % (NAME, float((hl - ref).abs().max())))
    assert float((hl - ref).abs().max()) < 1e-3
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(hf_dir)
        msgs = [{"role": "user", "content": chat_q}]
        rendered = at.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        log("check: chat template renders %r" % rendered)
        assert at.encode("a small animal") == tok.encode("a small animal").ids
        assert at.encode(rendered, add_special_tokens=False) == chat_ids, "chat ids differ"
    except Exception as e:  # informative only
        log("check: AutoTokenizer: %s: %s" % (type(e).__name__, e))
    q_samples = []
    for p in prompts[:2]:
        q_samples.append((p, tok.decode(generate(tok.encode(p).ids, 40, m=qm))))
        log("4-bit greedy %r -> %s%s" % (p, p, q_samples[-1][1]))

    # ---------------------------------------------------------- README
    stats = {
        "synsets": len(recs), "held_out_synsets": n_val, "train_documents": len(train_docs),
        "train_chars": n_chars, "train_tokens": int(len(train_ids)), "parameters": n_params,
        "steps": step, "batch": B, "seq_len": T, "train_seconds": round(train_time, 1),
        "tokens_seen": tokens_seen, "epochs": round(tokens_seen / len(train_ids), 2),
        "kept_step": best[1], "held_out_loss": round(best[0], 4),
        "history": history, "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "seed": args.seed, "lr": args.lr,
    }
    for d, variant, info in ((hf_dir, "bf16", hf_info), (q_dir, "4bit", q_info)):
        write_json(os.path.join(d, "training.json"), stats)
        write_readme(d, variant, config, stats, samples, chat_q, chat_a, q_samples, meta, info)
    shutil.rmtree(tmp)
    for d in (hf_dir, q_dir):
        for fn in os.listdir(d):
            os.chmod(os.path.join(d, fn), 0o644)
        tot = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        log("%s: %.2f MB  (%s)" % (d, tot / 1e6, ", ".join(sorted(os.listdir(d)))))
        if d == hf_dir:
            assert tot <= 25_000_000 or args.tiny, "model directory over 25 MB"
    log("done")


def write_readme(d, variant, config, st, samples, chat_q, chat_a, q_samples, meta, info):
    quant = variant == "4bit"
    name = NAME + ("-4bit" if quant else "")
    lines = [
        "# %s" % name,
        "",
        "A tiny Llama-architecture language model trained from scratch for cellm's demo: it writes",
        "dictionary-style English (definitions and example sentences). It is a toy: it knows",
        "nothing beyond the phrasing of a dictionary, and what it says is often wrong.",
        "",
        ("This is the MLX affine 4-bit copy (group size 64, bf16 scales and biases; embeddings "
         "quantized, norms in bf16) of `%s`, quantized from the same trained weights." % NAME) if quant else
        "Weights in bfloat16, Hugging Face layout; `%s-4bit` beside it holds the same weights in "
        "MLX's 4-bit layout." % NAME,
        "",
        "## Use",
        "",
        "```",
        "cellm generate -m models/%s -p \"a small animal\"" % name,
        "cellm verify -m models/%s" % name,
        "```",
        "",
        "## Model",
        "",
        "- Architecture: LlamaForCausalLM, %d layers, hidden %d, MLP %d, %d heads of 64, %d KV heads "
        "(GQA), RoPE theta %g, tied embeddings; %.2f M parameters." % (
            config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
            config["num_attention_heads"], config["num_key_value_heads"], config["rope_theta"],
            st["parameters"] / 1e6),
        "- Context: 512 positions (trained on 256-token windows).",
        "- Tokenizer: byte-level BPE, %d tokens, trained on the same text with Hugging Face "
        "tokenizers; its post-processor prepends `<|bos|>`." % config["vocab_size"],
        "- Special tokens: %s." % ", ".join("`%s` %d" % (s, i) for i, s in enumerate(SPECIALS)),
        "- End of text: `<|eos|>` (2) after plain text, `<|end|>` (6) after a chat turn; "
        "generation_config.json lists both.",
        "- Chat template (tokenizer_config.json): `<|bos|>` then `<|user|>\\n...<|end|>\\n` per "
        "message, then `<|assistant|>\\n`.",
        "",
        "## Training",
        "",
        "- Data: the %d synsets of WordNet 3.0 (glosses and example sentences) from Debian's "
        "`wordnet-base` package, `/usr/share/wordnet/data.{noun,verb,adj,adv}`. Each synset gives "
        "four kinds of document: the bare gloss, each example sentence, `lemma (part of speech): "
        "gloss`, and a one-turn chat (`What does \"lemma\" mean?` answered by the gloss). "
        "%d synsets were held out for the validation loss." % (st["synsets"], st["held_out_synsets"]),
        "- %d training documents, %.1f MB of text, %.2f M tokens." % (
            st["train_documents"], st["train_chars"] / 1e6, st["train_tokens"] / 1e6),
        "- %d steps of %d x %d tokens (%.1f epochs) in %.0f s on one %s; AdamW, peak lr %g, cosine "
        "decay, bf16 autocast; torch %s, transformers %s, seed %d." % (
            st["steps"], st["batch"], st["seq_len"], st["epochs"], st["train_seconds"], st["device"],
            st["lr"], st["torch"], st["transformers"], st["seed"]),
        "- Kept the weights of step %d, held-out loss %.3f (nats/token); the loss curve is in training.json." % (
            st["kept_step"], st["held_out_loss"]),
        "- Made by `tools/train_demo.sh` (see `tools/train_demo.py`), which also wrote every file here.",
        "",
        "## Samples (transformers, at training time)",
        "",
    ]
    if quant:
        for p, g in q_samples:
            lines += ["- greedy, this 4-bit copy: **%s**%s" % (p, g)]
    else:
        for p, g, s in samples:
            lines += ["- greedy: **%s**%s" % (p, g), "- sampled (T=0.8, top-k 40): **%s**%s" % (p, s)]
        lines += ["- chat: %s -> %s" % (chat_q, chat_a)]
    lines += [
        "",
        "## Reference outputs",
        "",
        "`oracle.safetensors` / `oracle.json` have the fixtures' format (shared/oracle/README.md): "
        "transformers in float32 on the CPU, eager attention, run on exactly the values these "
        "files decode to (%s). Greedy min margin %.3f, forced min margin %.3f. "
        "`cellm verify -m models/%s` checks the engine against them." % (
            "the dequantized 4-bit weights" if quant else "the bf16 weights widened to float32",
            info["greedy_min_margin"], info["forced_min_margin"], name),
        "",
        "## Licence",
        "",
        "The training text is WordNet 3.0, Copyright 2006 by Princeton University, under the "
        "WordNet 3.0 licence (a BSD-like permissive licence: use, copy, modify and distribute for "
        "any purpose without fee, provided the copyright notice and disclaimer appear on all "
        "copies). The weights and tokenizer are derived from that text, so they carry the same "
        "notice: see LICENSE-WordNet in this directory.",
        "",
    ]
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--wordnet", default=WORDNET)
    c.add_argument("--out", default=".demo-data/wordnet.jsonl.gz")
    t = sub.add_parser("train")
    t.add_argument("--corpus", default=".demo-data/wordnet.jsonl.gz")
    t.add_argument("--work", default="/tmp/demo")
    t.add_argument("--seconds", type=float, default=45)
    t.add_argument("--max-steps", type=int, default=10 ** 9)
    t.add_argument("--vocab", type=int, default=4096)
    t.add_argument("--hidden", type=int, default=384)
    t.add_argument("--ffn", type=int, default=1024)
    t.add_argument("--layers", type=int, default=6)
    t.add_argument("--kv-heads", type=int, default=2)
    t.add_argument("--seq", type=int, default=256)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--eval-every", type=float, default=5.0)
    t.add_argument("--val-batches", type=int, default=8)
    t.add_argument("--n-greedy", type=int, default=24)
    t.add_argument("--n-forced", type=int, default=40)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tiny", action="store_true", help="a quick check of the whole pipeline")
    args = ap.parse_args()
    if args.cmd == "corpus":
        return cmd_corpus(args)
    if args.tiny:
        args.vocab, args.hidden, args.ffn, args.layers, args.kv_heads = 512, 128, 256, 2, 1
        args.seq, args.batch, args.max_steps, args.warmup, args.eval_every = 64, 16, 30, 5, 0.0
        args.val_batches, args.n_greedy = 2, 6
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
