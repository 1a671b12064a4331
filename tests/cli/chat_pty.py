#!/usr/bin/env python3
"""`cellm chat` driven through a pseudo-terminal, as a person at a terminal would.

    chat_pty.py CELLM MODEL_DIR WORKDIR

Three turns keep their history in the KV cache (turn 3 prefills only its own tokens: the
stats line shows the cached ones); Ctrl-C in the middle of a reply returns to the prompt
and keeps the session; /clear forgets; /save and /load keep a conversation; colour
appears on a terminal and not with NO_COLOR; Ctrl-C twice at the prompt quits; Ctrl-D
exits with status 0.
"""
import json
import os
import pty
import re
import select
import sys
import time

cellm, model, work = sys.argv[1:4]
ESC = re.compile(rb"\x1b\[[0-9;]*m")
STATS = re.compile(rb"\[prompt: (\d+) new tokens, (\d+) cached, [0-9.]+ tok/s \| "
                   rb"reply: (\d+) tokens, [0-9.]+ tok/s([^\]]*)\]")


def fail(msg, out=b""):
    sys.stderr.write("FAIL: %s\n--- terminal output ---\n%s\n" % (msg, out.decode("utf-8", "replace")))
    sys.exit(1)


class Term:
    def __init__(self, args, env=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(cellm, [cellm] + args, env or os.environ)
        self.buf = b""

    def send(self, data):
        os.write(self.fd, data)

    def expect(self, pattern, timeout=120):
        """Reads until pattern (bytes regex) matches the output since the last match."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            m = rx.search(ESC.sub(b"", self.buf))
            if m:
                plain = ESC.sub(b"", self.buf)
                seen = self.buf
                self.buf = plain[m.end():]
                return m, seen
            left = end - time.time()
            if left <= 0:
                fail("timed out waiting for %r" % pattern, self.buf)
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    fail("cellm chat ended while waiting for %r" % pattern, self.buf)
                self.buf += data

    def wait(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    self.buf += os.read(self.fd, 4096)
                except OSError:
                    pass
        fail("cellm chat did not exit", self.buf)


def turn(t, text):
    t.expect(rb">>> $")
    t.send(text.encode() + b"\r")
    m, seen = t.expect(STATS)
    new, cached, gen = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return new, cached, gen, m.group(4), seen


base = ["chat", "-m", model, "--temp", "0", "-n", "24", "--threads", "2"]
env = dict(os.environ)
env.pop("NO_COLOR", None)
t = Term(base + ["--color", "auto"], env)

# three turns: each prefills only its own tokens; the history stays cached
n1, c1, g1, _, seen = turn(t, "What does \"dog\" mean?")
if b"\x1b[" not in seen:
    fail("no colour on a terminal with --color auto", seen)
if c1 != 0 or n1 < 5:
    fail("turn 1: %d new, %d cached" % (n1, c1), seen)
reply1 = seen
n2, c2, g2, _, seen = turn(t, "What does \"cat\" mean?")
if c2 < n1:
    fail("turn 2 re-prefilled the first turn: %d new, %d cached (turn 1 was %d)" % (n2, c2, n1), seen)
n3, c3, g3, _, seen = turn(t, "What does \"house\" mean?")
if c3 < c2 + n2 or n3 >= c3:
    fail("turn 3 re-prefilled the history: %d new, %d cached (turn 2: %d new, %d cached)"
         % (n3, c3, n2, c2), seen)
print("three turns: prefilled %d, %d, %d tokens; cached %d, %d, %d" % (n1, n2, n3, c1, c2, c3))

# /save writes the conversation
saved = os.path.join(work, "chat.json")
t.expect(rb">>> $")
t.send(b"/save " + saved.encode() + b"\r")
t.expect(rb"saved 6 messages")
conv = json.load(open(saved))
roles = [m["role"] for m in conv["messages"]]
if roles != ["user", "assistant"] * 3 or "house" not in conv["messages"][4]["content"]:
    fail("/save wrote %r" % conv)

# /clear forgets: nothing is cached, and the first question gets the first answer again
t.send(b"/clear\r")
t.expect(rb"conversation cleared")
n, c, g, _, seen = turn(t, "What does \"dog\" mean?")
if c != 0 or n != n1:
    fail("after /clear: %d new, %d cached (expected %d new, 0 cached)" % (n, c, n1), seen)
def reply_text(s):
    s = ESC.sub(b"", s)
    return s[s.index(b"mean?") + 5:s.index(b"[prompt:")].strip()
if reply_text(seen) != reply_text(reply1):
    fail("after /clear the same question got %r, first %r" % (reply_text(seen), reply_text(reply1)))

# /load brings the saved conversation back; its next turn sees the history
t.expect(rb">>> $")
t.send(b"/load " + saved.encode() + b"\r")
t.expect(rb"loaded 6 messages")
n, c, g, _, seen = turn(t, "What does \"tree\" mean?")
if n + c <= n3 + c3:
    fail("after /load the prompt holds %d tokens, fewer than the saved history" % (n + c), seen)

# Ctrl-D exits with status 0
t.expect(rb">>> $")
t.send(b"\x04")
rc = t.wait()
if rc != 0:
    fail("Ctrl-D: exit status %d" % rc, t.buf)
print("Ctrl-D: exit 0")

# NO_COLOR: no escapes even on a terminal. Ctrl-C in the middle of a long reply (one that
# ignores end-of-sequence) stops it, the prompt returns and the session goes on with its
# history; Ctrl-C twice at the prompt quits (status 0).
env["NO_COLOR"] = "1"
t = Term(["chat", "-m", model, "--temp", "0", "-n", "400", "--ignore-eos", "--threads", "2"], env)
t.expect(rb">>> $")
t.send(b"Tell me about the genus of lilies\r")
t.expect(rb"lilies\s*\S")  # the reply has begun
time.sleep(0.05)
t.send(b"\x03")
m, seen = t.expect(STATS)
if b"\x1b[" in seen:
    fail("colour printed with NO_COLOR set", seen)
if b"interrupted" not in m.group(4) or int(m.group(3)) >= 400:
    fail("Ctrl-C mid-reply: stats say %r" % m.group(0), seen)
print("Ctrl-C stopped the reply after %s tokens" % m.group(3).decode())
t.expect(rb">>> $")
t.send(b"/set max-tokens 4\r")
t.expect(rb"max-tokens = 4")
n, c, g, _, seen = turn(t, "And roses?")
if c < int(m.group(1)):
    fail("after Ctrl-C the session lost its history: %d cached" % c, seen)
t.expect(rb">>> $")
t.send(b"\x03")
t.expect(rb"Ctrl-C again")
t.send(b"\x03")
rc = t.wait()
if rc != 0:
    fail("Ctrl-C twice: exit status %d" % rc, t.buf)
print("ok")
