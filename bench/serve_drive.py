#!/usr/bin/env python3
"""Drive a running `cellm serve` with N concurrent greedy /v1/completions requests of a
fixed prompt length (random token ids, so no tokenizer or prefix cache helps) and a fixed
number of generated tokens (ignore_eos), several waves; print the aggregate tok/s over the
whole requests (prefill included), as issue 21's table counts it. Python's standard
library only (the GPU machine has no node).
  serve_drive.py PORT N [--prompt 128] [--gen 128] [--waves 2] [--vocab 32000]"""
import argparse
import json
import random
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("n", type=int)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--gen", type=int, default=128)
ap.add_argument("--waves", type=int, default=2)
ap.add_argument("--vocab", type=int, default=32000)
a = ap.parse_args()
url = f"http://127.0.0.1:{a.port}/v1/completions"


def one(seed, out, i):
    rnd = random.Random(seed)
    body = {"prompt": [rnd.randrange(100, a.vocab) for _ in range(a.prompt)],
            "max_tokens": a.gen, "temperature": 0, "ignore_eos": True, "cache_prompt": False}
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out[i] = json.load(r)["usage"]["completion_tokens"]


best = 0.0
for w in range(a.waves):
    out = [0] * a.n
    ts = [threading.Thread(target=one, args=(w * 100000 + i, out, i)) for i in range(a.n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if min(out) != a.gen:
        raise SystemExit(f"serve_drive: a request generated {min(out)} tokens, not {a.gen}")
    best = max(best, sum(out) / dt)
print(f"serve: {a.n} streams x {a.prompt}+{a.gen} tokens, {best:.1f} tok/s aggregate (best of {a.waves} waves)")
