// lib.mjs: start and stop a real `cellm serve` on a loopback port for the server tests.
//
// The server is started with --port 0 and prints the port it got; stop() sends SIGTERM
// and checks that it exits 0 within a bound (under ASan a leak makes the exit non-zero,
// and the sanitizer's report is echoed).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const running = new Set();

export function fail(msg) {
  for (const p of running) p.kill('SIGKILL');
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

export function check(cond, msg) {
  if (!cond) fail(msg);
}

export function eq(a, b, msg) {
  const ja = JSON.stringify(a), jb = JSON.stringify(b);
  if (ja !== jb) fail(`${msg}: got ${ja}, expected ${jb}`);
}

export async function startServer(bin, args, { env = {}, quiet = true } = {}) {
  const proc = spawn(bin, ['serve', '--port', '0', '--threads', '2', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start in 120 s:\n${log}`)), 120000);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      if (!quiet) process.stderr.write(d);
      const m = log.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${log}`)));
  });
  return {
    url,
    proc,
    log: () => log,
    async stop(limitMs = 30000) {
      proc.kill('SIGTERM');
      let timer;
      const t = new Promise((r) => { timer = setTimeout(() => r(null), limitMs); });
      const r = await Promise.race([exited, t]);
      clearTimeout(timer);
      if (!r) {
        proc.kill('SIGKILL');
        fail(`server did not stop within ${limitMs} ms after SIGTERM:\n${log}`);
      }
      if (r.code !== 0 || /Sanitizer|runtime error/.test(log))
        fail(`server exited with ${r.code ?? r.sig} after SIGTERM:\n${log}`);
      return log;
    },
  };
}

export async function post(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// Reads an SSE response; returns the parsed data events (the string '[DONE]' kept as is).
export async function sse(url, body, { headers = {}, onEvent = null, signal = undefined } = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal,
  });
  if (res.status !== 200) return { status: res.status, events: [], text: await res.text() };
  const events = [];
  let buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ')) fail(`bad SSE event: ${ev}`);
      const data = ev.slice(6);
      const e = data === '[DONE]' ? data : JSON.parse(data);
      events.push(e);
      if (onEvent) onEvent(e);
    }
  }
  if (buf.length) fail(`SSE stream ended inside an event: ${buf}`);
  return { status: 200, events };
}

export async function metrics(url, headers = {}) {
  const t = await (await fetch(`${url}/metrics`, { headers })).text();
  const m = {};
  for (const line of t.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [k, v] = line.split(' ');
    m[k] = Number(v);
  }
  return m;
}

// A checkpoint directory with real text: the fixture's weights (symlinked) plus a small
// byte-level BPE tokenizer.json whose ids fit the fixture's vocabulary, and a chat
// template. The model is random, so its text is noise, but it is real UTF-8 text through
// the real tokenizer, detokenizer and chat template.
export function makeTextCheckpoint(fixture, dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(fixture)) {
    if (!/\.(safetensors|json)$/.test(f) || f.startsWith('oracle')) continue;
    const dst = path.join(dir, f);
    fs.rmSync(dst, { force: true });
    fs.symlinkSync(path.resolve(fixture, f), dst);
  }
  // GPT-2's byte-to-unicode table: printable bytes map to themselves.
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const vocab = {};
  // ids 0..255 in byte order
  const byteChar = new Array(256);
  bs.forEach((b, i) => { byteChar[b] = String.fromCodePoint(cs[i]); });
  for (let b = 0; b < 256; b++) vocab[byteChar[b]] = b;
  const merges = [['t', 'h'], ['th', 'e'], ['Ġ', 't'], ['i', 'n'], ['e', 'r'], ['a', 'n']];
  let id = 256;
  for (const [a, b] of merges) vocab[a + b] = id++;
  const special = ['<|bos|>', '<|eos|>', '<|user|>', '<|assistant|>', '<|system|>'];
  const added = special.map((content, i) => ({
    id: 300 + i, content, single_word: false, lstrip: false, rstrip: false,
    normalized: false, special: true,
  }));
  // every id of the model must decode (a detokenizer failure fails the request): the
  // rest of the fixture's vocabulary as plain added words
  const cfg = JSON.parse(fs.readFileSync(path.join(fixture, 'config.json'), 'utf8'));
  const nv = cfg.vocab_size ?? cfg.text_config?.vocab_size ?? 305;
  const used = new Set([...Object.values(vocab), ...added.map((a) => a.id)]);
  for (let i = 0; i < nv; i++)
    if (!used.has(i)) added.push({ id: i, content: `~w${i}`, single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: false });
  const tok = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: '<|bos|>',
    eos_token: '<|eos|>',
    chat_template:
      "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}" +
      '{% if add_generation_prompt %}<|assistant|>{% endif %}',
  }));
  return dir;
}

// Starts a streamed request and closes the TCP connection once the first bytes of the
// body arrive (a client that goes away mid-stream). Resolves with the HTTP status.
export function disconnectMidStream(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent: false,
      headers: { 'Content-Type': 'application/json', ...headers },
    }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve(res.statusCode);
      });
      res.once('end', () => resolve(res.statusCode));
    });
    req.on('error', (e) => (req.destroyed ? resolve(0) : reject(e)));
    req.end(JSON.stringify(body));
  });
}
