#!/usr/bin/env python3
"""Ctrl-C in `cellm generate`, through a pseudo-terminal: the output ends with a newline,
the stats line and "interrupted" follow, and the status is 130 (as llama-cli does).

    generate_sigint.py CELLM MODEL_DIR

Also by a plain SIGINT with stdout on a pipe and --ids: the ids picked so far are printed
comma-separated on one line, and `cellm tokenize --decode` takes them.
"""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

cellm, model = sys.argv[1:3]
STATS = re.compile(rb"prompt: (\d+) tokens, [0-9.]+ tok/s; generated: (\d+) tokens")
# the model's whole context (512) with --ignore-eos: hundreds of tokens, time enough to
# interrupt after the first ones appear
ARGS = ["generate", "-m", model, "--raw", "-p", "the act of", "--temp", "0", "--ignore-eos",
        "-n", "100000", "--threads", "1"]


def fail(msg, out=b""):
    sys.stderr.write("FAIL: %s\n--- output ---\n%s\n" % (msg, out.decode("utf-8", "replace")))
    sys.exit(1)


def read_until(fd, pred, buf, timeout=120):
    end = time.time() + timeout
    while not pred(buf):
        left = end - time.time()
        if left <= 0:
            fail("timed out", buf)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                return buf, True
            buf += data
    return buf, False


# through a terminal: Ctrl-C is the terminal's SIGINT to the foreground process
pid, fd = pty.fork()
if pid == 0:
    os.execv(cellm, [cellm] + ARGS)
buf, eof = read_until(fd, lambda b: len(b.strip()) > 0, b"")
if eof:
    fail("cellm generate ended before any output", buf)
os.write(fd, b"\x03")
buf, eof = read_until(fd, lambda b: b"interrupted" in b, buf)
_, status = os.waitpid(pid, 0)
rc = os.waitstatus_to_exitcode(status)
try:
    while True:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            break
        data = os.read(fd, 4096)
        if not data:
            break
        buf += data
except OSError:
    pass
if rc != 130:
    fail("exit status %d after Ctrl-C (expected 130)" % rc, buf)
m = STATS.search(buf)
if not m:
    fail("no stats line after Ctrl-C", buf)
gen = int(m.group(2))
if not 0 < gen < 500:
    fail("generated %d tokens: not interrupted mid-output" % gen, buf)
text = buf[:m.start()]
if not text.replace(b"\r\n", b"\n").endswith(b"\n"):
    fail("the text does not end with a newline before the stats", buf)
if b"context is full" in buf:
    fail("ran to the full context instead of stopping", buf)
print("pty: Ctrl-C after %d tokens, status 130, newline and stats" % gen)

# a signal with stdout on a pipe, --ids: the ids so far, on one line
p = subprocess.Popen([cellm] + ARGS + ["--ids", "--verbose"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
# --verbose prints the seed just before the model loads (and Ctrl-C is caught from there
# on); --ids prints only at the end, so give the generation a moment to begin
err = b""
while b"seed: " not in err:
    line = p.stderr.readline()
    if not line:
        fail("no seed line from --verbose", err)
    err += line
time.sleep(0.2)
p.send_signal(signal.SIGINT)
out, rest = p.communicate(timeout=120)
err += rest
if p.returncode != 130:
    fail("--ids: exit status %d after SIGINT (expected 130)" % p.returncode, out + err)
if b"interrupted" not in err or not STATS.search(err):
    fail("--ids: no stats or note on stderr", err)
ids = out.decode().strip()
if not re.fullmatch(r"\d+(,\d+)*", ids) or not out.endswith(b"\n"):
    fail("--ids printed %r" % out, err)
n = len(ids.split(","))
if n != int(STATS.search(err).group(2)) or n >= 500:
    fail("--ids printed %d ids, the stats say %s" % (n, STATS.search(err).group(2)), err)
d = subprocess.run([cellm, "tokenize", "-m", model, "--decode", ids], capture_output=True)
if d.returncode != 0:
    fail("tokenize --decode rejects the ids", d.stderr)
print("signal: --ids printed %d ids, status 130" % n)
