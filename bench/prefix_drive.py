#!/usr/bin/env python3
"""The prefix-cache benchmark's driver in Python's standard library (the GPU machine has
no node): the same 10-turn chat as bench/prefix_bench.mjs, on two servers it starts (cache
on, cache off), printing per turn the prompt tokens, the cached tokens and the time to
first token (a one-token request) on each.
  prefix_drive.py BIN MODEL [--device cpu|cuda] [--threads N]"""
import argparse
import json
import re
import subprocess
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("model")
ap.add_argument("--device", default="cpu")
ap.add_argument("--threads", default="2")
a = ap.parse_args()
flag = "--cache-gpu" if a.device == "cuda" else "--cache-ram"


def start(cache_mb):
    p = subprocess.Popen([a.bin, "serve", "-m", a.model, "--device", a.device, "--threads", a.threads,
                          "--parallel", "1", "--quiet", "--port", "0", flag, str(cache_mb)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        m = re.search(r"http://[0-9.]+:(\d+)", line)
        if m:  # keep draining its output so that it never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, f"http://127.0.0.1:{m.group(1)}"
    raise SystemExit("prefix_drive: the server did not start")


def chat(url, messages, max_tokens):
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": 0}).encode()
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        j = json.load(r)
    return (time.perf_counter() - t0) * 1e3, j


warm, wurl = start(1024)
cold, curl = start(0)
words = ["river", "stone", "light", "garden", "winter", "paper", "music", "harbor",
         "forest", "window", "silver", "market", "candle", "valley", "letter", "bridge"]
msgs = [{"role": "system", "content": "You define words."}]
print("turn  prompt  cached  ttft_cold_ms  ttft_warm_ms")
try:
    for t in range(1, 11):
        msgs.append({"role": "user", "content": " ".join(words[(i * 7 + t * 3) % len(words)] for i in range(150))})
        c_ms, _ = chat(curl, msgs, 1)
        w_ms, w = chat(wurl, msgs, 1)
        _, ans = chat(wurl, msgs, 24)
        msgs.append({"role": "assistant", "content": ans["choices"][0]["message"]["content"]})
        u = w["usage"]
        print(f"{t:4d}  {u['prompt_tokens']:6d}  {u['prompt_tokens_details']['cached_tokens']:6d}  "
              f"{c_ms:12.1f}  {w_ms:12.1f}", flush=True)
finally:
    warm.terminate()
    cold.terminate()
