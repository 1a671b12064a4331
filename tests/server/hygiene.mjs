// hygiene.mjs BIN FIXTURE WORKDIR: the server's smaller routes and options, on the
// hardened connection model (issue 22's hygiene on issue 23's event loop and prep threads).
//
// On a text checkpoint made from the fixture (lib.mjs): GET /v1/models/{id} (200, and 404
// model_not_found); POST /tokenize and /detokenize (a round trip, pieces, the context bound
// as for prompts, strict JSON and the JSON content type, all through the prep threads);
// --cors-origin (the header on plain replies, errors and streams, the OPTIONS preflight
// answered without a key); --max-body (413 naming the limit); the startup banner and one
// log line per request (method, route, status, token counts), streams included; --quiet
// (no request lines). Needs only Node's fetch: it runs without the openai package.
import path from 'node:path';
import { check, eq, fail, makeTextCheckpoint, post, sse, startServer } from './lib.mjs';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: hygiene.mjs BIN FIXTURE WORKDIR');

const ORIGIN = 'https://app.example';
const KEY = 'sk-hygiene';
const auth = { Authorization: `Bearer ${KEY}` };
const dir = makeTextCheckpoint(fixture, path.join(work, 'server-hygiene-ckpt'));
const srv = await startServer(bin, ['-m', dir, '--name', 'hyg', '--cors-origin', ORIGIN,
  '--max-body', '8192', '--ctx-size', '64', '--api-key', KEY, '--prep-threads', '1']);
const url = srv.url;

let phase = 'start';
process.on('uncaughtException', (e) => fail(`uncaught in phase '${phase}': ${e.stack}`));
try {
  phase = 'banner';
  check(/chat template found/.test(srv.log()), `banner without the template:\n${srv.log()}`);
  check(/prefix cache \d+ MB, CORS on/.test(srv.log()), `banner:\n${srv.log()}`);

  phase = 'models/{id}';
  let r = await fetch(`${url}/v1/models/hyg`, { headers: auth });
  eq(r.status, 200, 'GET /v1/models/hyg');
  const m = await r.json();
  eq([m.id, m.object, m.max_model_len], ['hyg', 'model', 64], 'the model object');
  eq(r.headers.get('access-control-allow-origin'), ORIGIN, 'CORS on a reply');
  eq(r.headers.get('vary'), 'Origin', 'Vary with one origin');
  r = await fetch(`${url}/v1/models/nope`, { headers: auth });
  eq(r.status, 404, 'an unknown model');
  eq((await r.json()).error.code, 'model_not_found', 'its code');
  r = await fetch(`${url}/v1/models/hyg`);
  eq(r.status, 401, 'models/{id} needs the key');
  eq(r.headers.get('access-control-allow-origin'), ORIGIN, 'CORS on an error');

  phase = 'preflight';
  r = await fetch(`${url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST' },
  });
  eq(r.status, 204, 'preflight without a key');
  eq(r.headers.get('access-control-allow-origin'), ORIGIN, 'preflight origin');
  check(/POST/.test(r.headers.get('access-control-allow-methods') ?? ''), 'preflight methods');
  check(/Content-Type/i.test(r.headers.get('access-control-allow-headers') ?? ''),
    'preflight allows Content-Type');
  check(/Authorization/i.test(r.headers.get('access-control-allow-headers') ?? ''),
    'preflight allows Authorization');

  phase = 'tokenize';
  const text = 'the cat sat on the mat';
  const t = await post(`${url}/tokenize`, { content: text }, auth);
  eq(t.status, 200, `POST /tokenize: ${t.text}`);
  check(Array.isArray(t.json.tokens) && t.json.tokens.length > 0 &&
    t.json.tokens.every(Number.isInteger), `tokens: ${t.text}`);
  const d = await post(`${url}/detokenize`, { tokens: t.json.tokens }, auth);
  eq(d.status, 200, `POST /detokenize: ${d.text}`);
  eq(d.json.content, text, 'detokenize(tokenize(text))');
  const p = await post(`${url}/tokenize`, { content: text, with_pieces: true }, auth);
  eq(p.json.tokens.map((x) => x.id), t.json.tokens, 'with_pieces ids');
  check(p.json.tokens.every((x) => typeof x.piece === 'string'), 'with_pieces pieces');
  const long = await post(`${url}/tokenize`, { content: 'the cat '.repeat(200) }, auth);
  eq([long.status, long.json?.error?.code], [400, 'context_length_exceeded'],
    `content beyond the context: ${long.text}`);
  const dup = await post(`${url}/tokenize`, '{"content":"a","content":"b"}', auth);
  eq([dup.status, dup.json?.error?.code], [400, 'invalid_json'], `duplicate key: ${dup.text}`);
  check(/content/.test(dup.json.error.message), `the key is named: ${dup.text}`);
  const nul = await post(`${url}/detokenize`, '{"tokens":[1],"x":"a\\u0000b"}', auth);
  eq([nul.status, nul.json?.error?.code], [400, 'invalid_json'], `\\u0000: ${nul.text}`);
  r = await fetch(`${url}/tokenize`, {
    method: 'POST', headers: { 'Content-Type': 'text/plain', ...auth }, body: '{"content":"x"}',
  });
  eq(r.status, 415, '/tokenize as text/plain');
  r = await fetch(`${url}/detokenize`, { method: 'GET', headers: auth });
  eq(r.status, 405, 'GET /detokenize');
  const bad = await post(`${url}/detokenize`, { tokens: [1e9] }, auth);
  eq([bad.status, bad.json?.error?.param], [400, 'tokens'], `an id outside the vocabulary: ${bad.text}`);
  // several at once through one prep thread: each gets its own answer
  const many = await Promise.all([...Array(8).keys()].map((i) =>
    post(`${url}/tokenize`, { content: `${text} ${i}` }, auth)));
  for (const [i, x] of many.entries()) {
    const back = await post(`${url}/detokenize`, { tokens: x.json.tokens }, auth);
    eq(back.json.content, `${text} ${i}`, `concurrent /tokenize ${i}`);
  }

  phase = 'max-body';
  const big = await post(`${url}/v1/completions`, { prompt: 'x'.repeat(9000) }, auth);
  eq(big.status, 413, '--max-body 8192');
  check(/8192/.test(big.json?.error?.message ?? ''), `413 names the limit: ${big.text}`);
  const fits = await post(`${url}/v1/completions`,
    { prompt: 'the cat', max_tokens: 3, temperature: 0, ignore_eos: true, pad: 'x'.repeat(7000) }, auth);
  eq(fits.status, 200, `a body under the limit: ${fits.text}`);
  eq(fits.headers.get('access-control-allow-origin'), ORIGIN, 'CORS on a completion');
  check(Number.isInteger(fits.json.usage.prompt_tokens_details?.cached_tokens), 'cached_tokens');

  phase = 'stream';
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...auth },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
      temperature: 0, stream: true }),
  });
  eq(res.status, 200, 'stream status');
  eq(res.headers.get('access-control-allow-origin'), ORIGIN, 'CORS on a stream');
  const body = await res.text();
  check(body.trimEnd().endsWith('data: [DONE]'), `stream end: ${body}`);
  const s2 = await sse(`${url}/v1/completions`,
    { prompt: 'the cat', max_tokens: 3, temperature: 0, ignore_eos: true, stream: true, n: 2 }, { headers: auth });
  eq(s2.events.at(-1), '[DONE]', 'n = 2 stream');
  eq(new Set(s2.events.slice(0, -1).map((e) => e.choices[0].index)).size, 2, 'both choices stream');

  phase = 'log';
  await new Promise((res) => setTimeout(res, 200)); // the last line is written on completion
  const log = srv.log();
  for (const re of [
    /POST \/v1\/completions 200 prompt=\d+ cached=\d+ generated=3 /,
    /POST \/v1\/chat\/completions 200 prompt=\d+ cached=\d+ generated=\d+ /,
    /POST \/v1\/completions 200 prompt=\d+ cached=\d+ generated=6 /, // the n = 2 stream
    /POST \/v1\/completions 413 /,
    /POST \/tokenize 200 /,
    /POST \/tokenize 400 /,
    /POST \/tokenize 415 /,
    /POST \/detokenize 200 /,
    /GET \/v1\/models\/nope 404 /,
    /GET \/v1\/models\/hyg 401 /,
    /OPTIONS \/v1\/chat\/completions 204 /,
  ])
    check(re.test(log), `no log line ${re}:\n${log}`);
  await srv.stop();

  phase = 'quiet';
  const q = await startServer(bin, ['-m', dir, '--quiet']);
  eq((await post(`${q.url}/tokenize`, { content: 'x' })).status, 200, 'quiet server answers');
  eq((await fetch(`${q.url}/health`)).headers.get('access-control-allow-origin'), null,
    'no CORS header without --cors-origin');
  const qlog = await q.stop();
  check(!/POST \/tokenize/.test(qlog), `--quiet still logs requests:\n${qlog}`);
} catch (e) {
  fail(`phase '${phase}': ${e.stack}`);
}
console.log('ok: hygiene tests');
