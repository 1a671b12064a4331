#!/usr/bin/env python3
"""`cellm chat` keeps the history of a sliding-window model (gemma3, window 8) in its prefix
cache, and the replies over the cache equal those of a session without one.

    chat_window.py CELLM FIXTURE_DIR TOKENIZER_DIR WORKDIR [CHAT_OPTION...]

(CHAT_OPTION: e.g. --device cuda, as tests/gpu/chat_run.sh runs it.)

The gemma3 fixture has no tokenizer, so the test gives it the shipped model's, cut to the
fixture's 384 ids (the specials, the 256 bytes and the first merges), and its chat template.
A sequence cut back cannot keep a sliding layer's window (cellm_ctx_seq_truncate refuses),
so before the generation API this chat prefilled its whole history every turn.
"""
import json
import os
import re
import subprocess
import sys

cellm, fixture, tokdir, work = sys.argv[1:5]
more = sys.argv[5:]
STATS = re.compile(r"\[prompt: (\d+) new tokens, (\d+) cached, [0-9.]+ tok/s \| reply: (\d+) tokens")


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


model = os.path.join(work, "gemma3-chat")
os.makedirs(model, exist_ok=True)
cfg = json.load(open(os.path.join(fixture, "config.json")))
vocab = cfg["vocab_size"]
tj = json.load(open(os.path.join(tokdir, "tokenizer.json")))
keep = {t: i for t, i in tj["model"]["vocab"].items() if i < vocab}
tj["model"]["vocab"] = keep
tj["model"]["merges"] = [m for m in tj["model"]["merges"]
                         if all(p in keep for p in (m if isinstance(m, list) else m.split(" ")))
                         and "".join(m if isinstance(m, list) else m.split(" ")) in keep]
json.dump(tj, open(os.path.join(model, "tokenizer.json"), "w"))
tc = json.load(open(os.path.join(tokdir, "tokenizer_config.json")))
json.dump(tc, open(os.path.join(model, "tokenizer_config.json"), "w"))
for f in ("config.json", "model.safetensors"):
    dst = os.path.join(model, f)
    if not os.path.exists(dst):
        os.symlink(os.path.abspath(os.path.join(fixture, f)), dst)

turns = ["What does the word dog mean?", "And the word cat?", "And a house?"]


def chat(*extra):
    r = subprocess.run([cellm, "chat", "-m", model, "--temp", "0", "-n", "12", "--ignore-eos",
                        "--threads", "2"] + more + list(extra),
                       input="\n".join(turns) + "\n", capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail("cellm chat %s: exit %d\n%s" % (" ".join(extra), r.returncode, r.stderr))
    stats = [tuple(map(int, m.groups())) for m in STATS.finditer(r.stderr)]
    if len(stats) != len(turns):
        fail("expected %d stats lines, got:\n%s" % (len(turns), r.stderr))
    return r.stdout, stats


out, st = chat()
(n1, c1, _), (n2, c2, _), (n3, c3, _) = st
if c1 != 0:
    fail("turn 1: %d cached" % c1)
if n1 <= 8:
    fail("turn 1's prompt (%d tokens) should exceed the window of 8" % n1)
if c2 < n1 or c3 < n2 + c2:
    fail("the history was prefilled again: %r" % st)
cold, st0 = chat("--cache-ram", "0", "--cache-gpu", "0")
if any(c for _, c, _ in st0):
    fail("--cache-ram 0 still reports cached tokens: %r" % st0)
if [n + c for n, c, _ in st] != [n + c for n, c, _ in st0]:
    fail("the prompts differ with and without the cache: %r vs %r" % (st, st0))
if out != cold:
    fail("the replies over the cache differ from a session without one:\n%r\n%r" % (out, cold))
print("sliding window: cached %d, %d, %d; replies equal to an uncached session" % (c1, c2, c3))
