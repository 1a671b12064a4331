#!/usr/bin/env python3
"""Writes the small hand-made tokenizer.json files under tests/tok/unit/ and tests/tok/fuzz/.

Each exercises a few components on a tiny vocabulary. Usage: tools/gen_tok_unit.py
"""
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tok")


def byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def bpe(vocab_list, merges, **kw):
    vocab = {}
    for t in vocab_list:
        vocab.setdefault(t, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
         "ignore_merges": False, "vocab": vocab, "merges": [a + " " + b for a, b in merges]}
    m.update(kw)
    return m


def added(i, content, special=True, **kw):
    d = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": special}
    d.update(kw)
    return d


def write(name, tok):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None}
    base.update(tok)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(base, f, ensure_ascii=False, indent=1)


BC = byte_chars()
G = "\u0120"
bl_merges = [(G, "t"), ("h", "e"), (G + "t", "he"), ("i", "n"), (G, "a"), ("e", "r"),
             ("l", "o"), ("lo", "w"), (G, "low"), ("low", "er"), ("1", "2"), ("12", "3")]
bl_model = bpe(["<s>", "</s>", "<mask>", "<pad>"] + BC, bl_merges)
nv = len(bl_model["vocab"])
regex_a = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
           "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
write("unit/bytelevel", {
    "added_tokens": [added(0, "<s>"), added(1, "</s>"), added(2, "<mask>", lstrip=True),
                     added(3, "<pad>", rstrip=True), added(nv, "word", special=False,
                                                              single_word=True)],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}},
                                  {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                                          "</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": bl_model})

write("unit/llamasplit", {
    "added_tokens": [added(0, "<s>")],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex_a}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                "use_regex": False},
    "model": dict(bl_model, ignore_merges=True)})

M = "\u2581"
spm_vocab = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + \
    [M, "a", "b", "c", "h", "e", "l", "o", "w", "r", "d", "x"]
spm_merges = [(M, "h"), ("e", "l"), ("el", "l"), ("ell", "o"), (M + "h", "ello"), (M, "w"),
              ("o", "r"), (M + "w", "or"), ("l", "d"), (M + "wor", "ld"), (M, M)]
write("unit/spm", {
    "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": M},
        {"type": "Replace", "pattern": {"String": " "}, "content": M}]},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": M}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": bpe(spm_vocab, spm_merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)})

write("unit/metaspace", {
    "pre_tokenizer": {"type": "Metaspace", "replacement": M, "prepend_scheme": "first",
                      "split": True},
    "decoder": {"type": "Metaspace", "replacement": M, "prepend_scheme": "first", "split": True},
    "added_tokens": [added(0, "<unk>"), added(1, "<s>")],
    "model": bpe(spm_vocab, spm_merges, unk_token="<unk>", fuse_unk=False)})

write("unit/normseq", {
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "7"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Whitespace"}, {"type": "Digits", "individual_digits": True}]},
    "model": bpe(["[UNK]"] + [chr(c) for c in range(32, 127)] + ["\u00e9", "\u0131", "\u0307"],
                 [("a", "b"), ("f", "i")], unk_token="[UNK]")})

write("unit/splits", {
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"String": "+"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"String": "|"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[0-9]"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": "x+"}, "behavior": "Isolated", "invert": True},
        {"type": "Digits", "individual_digits": False}]},
    "model": bpe(["<unk>"] + [chr(c) for c in range(32, 127)], [("a", "b"), ("-", "a")],
                 unk_token="<unk>")})

write("fuzz", {
    "added_tokens": [added(0, "<s>"), added(1, "</s>"), added(2, "<mask>", lstrip=True, rstrip=True),
                     added(nv, "word", special=False, single_word=True, normalized=True)],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex_a}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                "use_regex": False},
    "model": bl_model})
