// openai.mjs BIN FIXTURE WORKDIR: drives `cellm serve` with the official openai client.
//
// On a text checkpoint made from the fixture (its weights, a small byte-level BPE
// tokenizer and a chat template, see lib.mjs): completions and chat, streaming and not,
// usage in streams, stop strings (not in the output), max_tokens, reproducible seeds,
// every refused field, wrong types, malformed JSON, oversized bodies, unknown routes,
// missing and wrong API keys, a full queue (503 + Retry-After), SIGTERM during a stream
// (the server drains: the stream finishes, the server exits 0) and past
// --shutdown-timeout (what is left ends with an error event). If
// CELLM_SERVER_TEXT_MODEL names a real checkpoint with tokenizer.json, the chat part
// runs on it too.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { check, eq, fail, makeTextCheckpoint, metrics, post, sse, startServer } from './lib.mjs';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: openai.mjs BIN FIXTURE WORKDIR');
const here = path.dirname(new URL(import.meta.url).pathname);
let OpenAI;
try {
  const require = createRequire(path.join(here, 'package.json'));
  OpenAI = (await import(require.resolve('openai'))).default;
} catch {
  console.log('SKIP: the openai package is not installed (run .ci/setup.d/30-server.sh)');
  process.exit(77);
}

const KEY = 'sk-test-cellm';
const dir = makeTextCheckpoint(fixture, path.join(work, 'server-text-ckpt'));
const srv = await startServer(bin, ['-m', dir, '--parallel', '4', '--api-key', KEY, '--queue', '4']);
const url = srv.url;
const client = new OpenAI({ apiKey: KEY, baseURL: `${url}/v1`, maxRetries: 0 });
const auth = { Authorization: `Bearer ${KEY}` };

async function expectError(promise, status, param, what) {
  try {
    await promise;
  } catch (e) {
    check(e.status === status, `${what}: status ${e.status}, expected ${status} (${e.message})`);
    if (param !== undefined) eq(e.param ?? e.error?.param ?? null, param, `${what}: param`);
    return e;
  }
  fail(`${what}: no error`);
}

let phase = 'start';
process.on('uncaughtException', (e) => fail(`uncaught in phase '${phase}': ${e.stack}\n${e.cause?.stack ?? ''}`));
try {
  // ---- models, health
  phase = 'models, health';
  const models = await client.models.list();
  eq(models.data.map((m) => m.id), ['server-text-ckpt'], 'models');
  eq((await (await fetch(`${url}/health`)).json()).status, 'ok', 'health');

  // ---- completions, non-streaming, max_tokens
  phase = 'completions, non-streaming, max_tokens';
  const c1 = await client.completions.create({
    model: 'x', prompt: 'the cat sat on the', max_tokens: 12, temperature: 0,
  });
  eq(c1.object, 'text_completion', 'object');
  eq(c1.choices[0].finish_reason, 'length', 'finish_reason at max_tokens');
  eq(c1.usage.completion_tokens, 12, 'completion_tokens = max_tokens');
  check(c1.usage.prompt_tokens > 0, 'prompt_tokens');
  check(typeof c1.choices[0].text === 'string', 'text');

  // ---- streaming completion equals the non-streaming one, usage at the end
  phase = 'streaming completion equals the non-streaming one, usage at the end';
  const st = await client.completions.create({
    model: 'x', prompt: 'the cat sat on the', max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null;
  for await (const ch of st) {
    if (ch.choices.length) {
      text += ch.choices[0].text;
      finish = ch.choices[0].finish_reason ?? finish;
    }
    if (ch.usage) usage = ch.usage;
  }
  eq(text, c1.choices[0].text, 'streamed text = non-streamed text');
  eq(finish, 'length', 'streamed finish_reason');
  eq(usage?.completion_tokens, 12, 'streamed usage');

  // ---- ids extension through the SDK (prompt as a list of ids, extra body field)
  phase = 'ids extension through the SDK (prompt as a list of ids, extra body field)';
  const ci = await client.completions.create({
    model: 'x', prompt: [5, 6, 7, 8], max_tokens: 6, temperature: 0, return_ids: true,
  });
  eq(ci.choices[0].token_ids.length, 6, 'token_ids with return_ids');

  // ---- stop strings: the output ends before the first occurrence, which is not included
  phase = 'stop strings: the output ends before the first occurrence, which is not included';
  // a sampled continuation long enough to cut (seeded, so it repeats exactly)
  let full = '', cps = [], seed = 0;
  const sreq = { model: 'x', prompt: 'in the beginning', max_tokens: 40, temperature: 0.7, top_k: 40 };
  for (; seed < 20 && cps.length < 8; seed++) {
    full = (await client.completions.create({ ...sreq, seed })).choices[0].text;
    cps = [...full];
  }
  seed--;
  check(cps.length >= 8, `need some text to cut: ${JSON.stringify(full)}`);
  const stopStr = cps.slice(4, 6).join('');
  const want = full.slice(0, full.indexOf(stopStr));
  for (const stream of [false, true]) {
    const req = { ...sreq, seed, stop: [stopStr, 'never-appears'] };
    let got, fin;
    if (stream) {
      got = '';
      for await (const ch of await client.completions.create({ ...req, stream: true })) {
        got += ch.choices[0].text;
        fin = ch.choices[0].finish_reason ?? fin;
      }
    } else {
      const r = await client.completions.create(req);
      got = r.choices[0].text;
      fin = r.choices[0].finish_reason;
    }
    eq(got, want, `stop string (stream ${stream})`);
    eq(fin, 'stop', `finish_reason at a stop string (stream ${stream})`);
  }
  const r1 = await client.completions.create({ ...sreq, seed, stop: stopStr });
  eq(r1.choices[0].text, want, 'stop as one string');

  // ---- chat, non-streaming and streaming
  phase = 'chat, non-streaming and streaming';
  const msgs = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }];
  const ch1 = await client.chat.completions.create({ model: 'x', messages: msgs, max_tokens: 10, temperature: 0 });
  eq(ch1.object, 'chat.completion', 'chat object');
  eq(ch1.choices[0].message.role, 'assistant', 'chat role');
  eq(ch1.usage.completion_tokens <= 10, true, 'chat max_tokens');
  let ctext = '', role = null, cfin = null, cusage = null;
  for await (const ch of await client.chat.completions.create({
    model: 'x', messages: msgs, max_completion_tokens: 10, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  })) {
    if (ch.choices.length) {
      role = ch.choices[0].delta.role ?? role;
      ctext += ch.choices[0].delta.content ?? '';
      cfin = ch.choices[0].finish_reason ?? cfin;
    }
    if (ch.usage) cusage = ch.usage;
  }
  eq(role, 'assistant', 'streamed chat role');
  eq(ctext, ch1.choices[0].message.content, 'streamed chat = non-streamed chat');
  eq(cfin, ch1.choices[0].finish_reason, 'streamed chat finish');
  eq(cusage?.total_tokens, ch1.usage.total_tokens, 'streamed chat usage');

  // ---- seeds: same seed same output, sampling really samples
  phase = 'seeds: same seed same output, sampling really samples';
  const samp = (seed) => client.completions.create({
    model: 'x', prompt: [9, 10, 11], max_tokens: 16, temperature: 1.5, top_k: 200, top_p: 0.99,
    min_p: 0.001, presence_penalty: 0.5, frequency_penalty: 0.2, repetition_penalty: 1.1,
    seed, return_ids: true,
  }).then((r) => r.choices[0].token_ids);
  const a = await samp(42), b = await samp(42), c = await samp(43), d = await samp(44);
  eq(a, b, 'same seed, same tokens');
  check(JSON.stringify(a) !== JSON.stringify(c) || JSON.stringify(a) !== JSON.stringify(d),
    'different seeds gave the same tokens three times');

  // ---- refused fields, each named
  phase = 'refused fields, each named';
  const base = { model: 'x', prompt: 'hi', max_tokens: 2 };
  const cbase = { model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
  const refused = [
    ['completions', { logprobs: 21 }, 'logprobs'],
    ['chat', { logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    ['chat', { logprobs: false, top_logprobs: 3 }, 'top_logprobs'],
    ['completions', { grammar: 'root ::= a' }, 'grammar'],
    ['chat', { guided_json: { type: 'object', minProperties: 1 } }, 'guided_json'],
    ['completions', { json_schema: { type: 'string', format: 'email' } }, 'json_schema'],
    ['completions', { guided_regex: 'a+' }, 'guided_regex'],
    ['chat', { structured_outputs: { json: {} } }, 'structured_outputs'],
    ['completions', { mirostat: 2 }, 'mirostat'],
    ['completions', { stop_token_ids: [5] }, 'stop_token_ids'],
    ['chat', { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, 'tools'],
    ['chat', { functions: [{ name: 'f' }] }, 'functions'],
    ['chat', { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { not: {} } } } }, 'response_format'],
    ['chat', { response_format: { type: 'xml' } }, 'response_format'],
    ['completions', { n: 65 }, 'n'],
    ['chat', { n: 0 }, 'n'],
    ['completions', { echo: true }, 'echo'],
    ['completions', { best_of: 2 }, 'best_of'],
    ['completions', { logit_bias: { 5: 10 } }, 'logit_bias'],
    ['completions', { suffix: 'x' }, 'suffix'],
    ['chat', { messages: [{ role: 'function', content: 'x', name: 'a' }] }, 'messages[0].role'],
  ];
  for (const [ep, extra, param] of refused) {
    const p = ep === 'chat' ? client.chat.completions.create({ ...cbase, ...extra })
      : client.completions.create({ ...base, ...extra });
    const e = await expectError(p, 400, param, `refused ${param}`);
    eq(e.type ?? e.error?.type, 'invalid_request_error', `type for ${param}`);
  }
  // response_format text and n = 1 are fine
  await client.chat.completions.create({ ...cbase, response_format: { type: 'text' }, n: 1 });

  // ---- wrong types, each named
  phase = 'wrong types, each named';
  const wrong = [
    ['temperature', 'hot'], ['top_p', '1'], ['top_k', 1.5], ['min_p', []], ['seed', 'x'],
    ['max_tokens', '5'], ['max_tokens', 0], ['stop', 5], ['stop', [1]], ['stream', 'yes'],
    ['presence_penalty', {}], ['frequency_penalty', 3], ['repetition_penalty', 0], ['n', 'one'],
    ['prompt', 5], ['prompt_ids', [1, 'a']], ['prompt_ids', [1, 100000]], ['model', 5],
    ['stream_options', 1],
  ];
  for (const [k, v] of wrong) {
    const body = { ...base, [k]: v };
    if (k === 'prompt_ids') delete body.prompt;
    const r = await post(`${url}/v1/completions`, body, auth);
    eq(r.status, 400, `wrong ${k}=${JSON.stringify(v)}: status`);
    eq(r.json?.error?.param, k, `wrong ${k}: param`);
    eq(r.json?.error?.type, 'invalid_request_error', `wrong ${k}: type`);
  }
  for (const [k, v] of [['messages', 'hi'], ['messages', []], ['messages', [{ role: 'user', content: 5 }]]]) {
    const r = await post(`${url}/v1/chat/completions`, { model: 'x', [k]: v }, auth);
    eq(r.status, 400, `wrong chat ${JSON.stringify(v)}`);
    check(r.json?.error?.param?.startsWith('messages'), `wrong chat param: ${r.text}`);
  }
  const so = await post(`${url}/v1/completions`, { ...base, stream: true, stream_options: { include_usage: 'y' } }, auth);
  eq(so.json?.error?.param, 'stream_options.include_usage', 'stream_options.include_usage type');

  // ---- context: prompt + max_tokens beyond it, both lengths named
  phase = 'context: prompt + max_tokens beyond it, both lengths named';
  const cx = await post(`${url}/v1/completions`, { prompt_ids: [1, 2, 3], max_tokens: 600 }, auth);
  eq(cx.status, 400, 'context exceeded');
  check(/3 tokens/.test(cx.json.error.message) && /600/.test(cx.json.error.message) &&
    /512/.test(cx.json.error.message), `context message names both lengths: ${cx.text}`);
  await expectError(client.completions.create({ ...base, prompt: [1, 2, 3], max_tokens: 600 }), 400, 'max_tokens', 'sdk context');

  // ---- malformed JSON, non-object body, oversized body, unknown route, method
  phase = 'malformed JSON, non-object body, oversized body, unknown route, method';
  for (const bad of ['{', '{"prompt": "x",}', 'null', '[1,2]', '']) {
    const r = await post(`${url}/v1/completions`, bad, auth);
    eq(r.status, 400, `malformed ${JSON.stringify(bad)}`);
    eq(r.json?.error?.type, 'invalid_request_error', 'malformed type');
  }
  const big = JSON.stringify({ prompt: 'x'.repeat(1024 * 1024 + 10) });
  const rb = await post(`${url}/v1/completions`, big, auth);
  eq(rb.status, 413, 'oversized body');
  check(/1048576/.test(rb.text), `413 names the limit: ${rb.text}`);
  const e404 = await expectError(client.get('/nope'), 404, undefined, 'unknown route');
  check(e404 instanceof OpenAI.NotFoundError, 'NotFoundError');
  const r405 = await fetch(`${url}/v1/completions`, { headers: auth });
  await r405.text();
  eq(r405.status, 405, 'GET on a POST route');

  // ---- API key
  phase = 'API key';
  const noKey = new OpenAI({ apiKey: 'wrong', baseURL: `${url}/v1`, maxRetries: 0 });
  const e401 = await expectError(noKey.completions.create(base), 401, undefined, 'wrong key');
  check(e401 instanceof OpenAI.AuthenticationError, 'AuthenticationError');
  eq((await post(`${url}/v1/completions`, base)).status, 401, 'missing key');
  const rh = await fetch(`${url}/health`);
  await rh.text();
  eq(rh.status, 200, 'health needs no key');

  // ---- a real checkpoint, if one is given
  phase = 'a real checkpoint, if one is given';
  const real = process.env.CELLM_SERVER_TEXT_MODEL;
  if (real && fs.existsSync(path.join(real, 'tokenizer.json'))) {
    const s2 = await startServer(bin, ['-m', real, '--parallel', '2', '--ctx-size', '2048']);
    const c2 = new OpenAI({ apiKey: 'none', baseURL: `${s2.url}/v1`, maxRetries: 0 });
    const r = await c2.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16, temperature: 0 });
    console.log(`real model says: ${JSON.stringify(r.choices[0].message.content)}`);
    await s2.stop();
  }

  // ---- a full queue: 4 slots and 4 waiting; 12 at once: some get 503 + Retry-After
  phase = 'a full queue: 4 slots and 4 waiting; 12 at once: some get 503 + Retry-After';
  const resps = await Promise.all(Array.from({ length: 12 }, (_, i) => fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...auth },
    body: JSON.stringify({ prompt_ids: [1, 2], max_tokens: 500, temperature: 1, seed: i, stream: true }),
  })));
  const burst = resps.map((r) => ({ status: r.status, retry: r.headers.get('retry-after') }));
  // close the streams (the server notices and frees their slots), read the 503 bodies
  await Promise.all(resps.map((r) => (r.status === 200 ? r.body.cancel() : r.text())));
  const n503 = burst.filter((b) => b.status === 503 && b.retry === '1').length;
  check(n503 >= 1 && burst.every((b) => b.status === 200 || (b.status === 503 && b.retry === '1')),
    `a full queue: ${JSON.stringify(burst)}`);
  check(burst.filter((b) => b.status === 200).length >= 8, `8 accepted: ${JSON.stringify(burst)}`);
  // cancelled streams free their slots
  for (let t = 0; t < 100; t++) {
    const m = await metrics(url, auth);
    if (m.cellm_active_slots === 0 && m.cellm_queue_depth === 0) break;
    check(t < 99, 'slots not freed after clients went away');
    await new Promise((r) => setTimeout(r, 50));
  }

  // ---- SIGTERM during a stream: the server drains, so the stream finishes in full, and it
  // exits 0
  phase = 'SIGTERM during a stream: it finishes (drain) and the server exits 0';
  const events = [];
  let first;
  const gotFirst = new Promise((r) => { first = r; });
  const p = sse(`${url}/v1/completions`, { prompt_ids: [1, 2], max_tokens: 500, temperature: 0,
    ignore_eos: true, stream: true, stream_options: { include_usage: true } },
  { headers: auth, onEvent: (e) => { events.push(e); first(); } });
  await gotFirst;
  await srv.stop();
  await p;
  eq(events.at(-1), '[DONE]', 'the drained stream ends with [DONE]');
  eq(events.at(-2)?.usage?.completion_tokens, 500, 'the drained stream is complete');

  // ---- past --shutdown-timeout: what is still running or queued ends with an error event
  phase = 'past --shutdown-timeout: streams end with an error event';
  const s3 = await startServer(bin, ['-m', dir, '--parallel', '1', '--queue', '64',
    '--prep-queue', '128', '--shutdown-timeout', '1']);
  const ends = [];
  const streams = Array.from({ length: 60 }, (_, i) => sse(`${s3.url}/v1/completions`,
    { prompt_ids: [1, 2], max_tokens: 500, temperature: 1, seed: i, ignore_eos: true, stream: true })
    .then((r) => { ends.push(r.status === 200 ? r.events.at(-1) : r.status); }));
  // most of them queued behind the one slot before the signal: more than a machine many
  // times faster than this fixture's ~2,500 tok/s could finish in the 1 s deadline
  for (let t = 0; ; t++) {
    const m = await metrics(s3.url);
    if (m.cellm_queue_depth >= 50) break;
    check(t < 200, `the streams did not queue: ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const t0 = performance.now();
  await s3.stop();
  const stopMs = performance.now() - t0;
  await Promise.all(streams);
  const cut = ends.filter((e) => e?.error && /shutting down/.test(e.error.message)).length;
  // a request that arrives while the server drains gets 503
  check(ends.every((e) => e === '[DONE]' || e?.error || e === 503),
    `each stream ends: ${JSON.stringify(ends)}`);
  check(cut >= 1, `no stream was cut at the deadline (stopped in ${stopMs.toFixed(0)} ms)`);
  console.log(`deadline: ${cut} of 60 streams cut, stopped ${stopMs.toFixed(0)} ms after SIGTERM`);
  check(stopMs < 5000, `stopped ${stopMs.toFixed(0)} ms after SIGTERM with a 1 s deadline`);
  console.log('ok: openai client tests');
} catch (e) {
  srv.proc.kill('SIGKILL');
  fail(`${e.stack}\n${srv.log()}`);
}
