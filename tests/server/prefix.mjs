// prefix.mjs BIN FIXTURE WORKDIR: the prefix cache, n > 1 and logprobs through the official
// openai client, on a text checkpoint made from the fixture (lib.mjs).
//
// - A two-turn chat: turn 2 reports usage.prompt_tokens_details.cached_tokens >= turn 1's
//   prompt (plus its answer when the answer re-tokenizes to the generated ids), and its
//   output equals a cold server's (--cache-ram 0) token for token.
// - Two concurrent chats sharing a long system prompt: the metrics show it was prefilled
//   once (the second attached it, after waiting for the first to compute it).
// - n = 3 and logprobs with top_logprobs = 5, streamed and not, in OpenAI's shapes.
import path from 'node:path';
import { createRequire } from 'node:module';
import { check, eq, fail, makeTextCheckpoint, metrics, post, startServer } from './lib.mjs';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: prefix.mjs BIN FIXTURE WORKDIR');
const here = path.dirname(new URL(import.meta.url).pathname);
let OpenAI;
try {
  const require = createRequire(path.join(here, 'package.json'));
  OpenAI = (await import(require.resolve('openai'))).default;
} catch {
  console.log('SKIP: the openai package is not installed (run .ci/setup.d/30-server.sh)');
  process.exit(77);
}

const dir = makeTextCheckpoint(fixture, path.join(work, 'server-prefix-ckpt'));
// blocks of one position: every prompt position can be reused, so the check is exact
const warm = await startServer(bin, ['-m', dir, '--parallel', '4', '--cache-block', '1']);
const cold = await startServer(bin, ['-m', dir, '--parallel', '4', '--cache-ram', '0']);
const cw = new OpenAI({ apiKey: 'x', baseURL: `${warm.url}/v1`, maxRetries: 0 });
const cc = new OpenAI({ apiKey: 'x', baseURL: `${cold.url}/v1`, maxRetries: 0 });
let phase = '';
try {
  // ---- a two-turn chat
  phase = 'two-turn chat';
  const turn1 = [{ role: 'system', content: 'You answer in one line.' },
    { role: 'user', content: 'Tell me about the weather in the north.' }];
  const opts = { model: 'x', temperature: 0, max_tokens: 12, return_ids: true };
  const r1 = await cw.chat.completions.create({ ...opts, messages: turn1 });
  const a1 = r1.choices[0].message.content;
  eq(r1.usage.prompt_tokens_details.cached_tokens, 0, 'turn 1 finds nothing cached');
  const turn2 = [...turn1, { role: 'assistant', content: a1 },
    { role: 'user', content: 'And in the south?' }];
  const r2 = await cw.chat.completions.create({ ...opts, messages: turn2 });
  const r2c = await cc.chat.completions.create({ ...opts, messages: turn2 });
  const n1 = r1.usage.prompt_tokens, cached = r2.usage.prompt_tokens_details.cached_tokens;
  check(cached >= n1, `turn 2 cached ${cached} tokens, turn 1's prompt has ${n1}`);
  const retok = (await post(`${warm.url}/tokenize`, { content: a1 })).json.tokens;
  const gen = r1.choices[0].token_ids;
  if (JSON.stringify(retok) === JSON.stringify(gen) && r1.choices[0].finish_reason === 'length')
    check(cached >= n1 + gen.length - 1,
      `the answer re-tokenizes to its ids, yet only ${cached} of ${n1} + ${gen.length - 1} cached`);
  eq(r2.choices[0].token_ids, r2c.choices[0].token_ids, 'turn 2: warm and cold ids');
  eq(r2.choices[0].message.content, r2c.choices[0].message.content, 'turn 2: warm and cold text');
  eq(r2c.usage.prompt_tokens_details.cached_tokens, 0, 'the cold server caches nothing');
  console.log(`two turns: turn 1 prompt ${n1}, turn 2 prompt ${r2.usage.prompt_tokens}, cached ${cached}`);

  // ---- two concurrent chats share a long system prompt
  phase = 'shared system prompt';
  const sys = 'You are careful. ' + Array.from({ length: 12 }, (_, i) =>
    `Rule ${i}: be brief.`).join(' ');
  const before = await metrics(warm.url);
  const [x, y] = await Promise.all(['first question', 'a second, different question'].map((q) =>
    cw.chat.completions.create({ model: 'x', temperature: 0, max_tokens: 4,
      messages: [{ role: 'system', content: sys }, { role: 'user', content: q }] })));
  const after = await metrics(warm.url);
  const pre = after.cellm_prefill_tokens_total - before.cellm_prefill_tokens_total;
  const cx = x.usage.prompt_tokens_details.cached_tokens, cy = y.usage.prompt_tokens_details.cached_tokens;
  const sysTokens = (await post(`${warm.url}/tokenize`, { content: sys })).json.tokens.length;
  check(sysTokens > 150, `system prompt of ${sysTokens} tokens`);
  check(Math.max(cx, cy) >= sysTokens, `one request attached the system prompt (cached ${cx}, ${cy}; ${sysTokens})`);
  eq(pre, x.usage.prompt_tokens + y.usage.prompt_tokens - cx - cy, 'prefilled rows = prompts - cached');
  check(pre < x.usage.prompt_tokens + y.usage.prompt_tokens - sysTokens + 1,
    `prefilled ${pre} rows: the system prompt was computed twice`);
  check(after.cellm_prefix_cache_hits_total > before.cellm_prefix_cache_hits_total, 'a hit counted');
  check(after.cellm_prefix_cache_cached_tokens_total - before.cellm_prefix_cache_cached_tokens_total >= sysTokens,
    'cached tokens counted');
  console.log(`shared system prompt (${sysTokens} tokens): prefilled ${pre} rows for prompts of ` +
    `${x.usage.prompt_tokens} and ${y.usage.prompt_tokens}, cached ${cx} and ${cy}, ` +
    `waits ${after.cellm_prefix_cache_waits_total - before.cellm_prefix_cache_waits_total}`);

  // ---- n = 3 and logprobs
  phase = 'n = 3, logprobs, top_logprobs = 5';
  const lp = await cw.chat.completions.create({ model: 'x', n: 3, temperature: 1, seed: 5,
    max_tokens: 6, logprobs: true, top_logprobs: 5, return_ids: true,
    messages: [{ role: 'user', content: 'Name three colours.' }] });
  eq(lp.choices.length, 3, 'three choices');
  eq(lp.choices.map((c) => c.index), [0, 1, 2], 'choice indices');
  let total = 0;
  for (const c of lp.choices) {
    const content = c.logprobs.content;
    eq(content.length, c.token_ids.length, 'one logprob per token');
    total += content.length;
    for (const t of content) {
      check(t.logprob <= 0 && Number.isFinite(t.logprob), `logprob ${t.logprob}`);
      eq(t.top_logprobs.length, 5, 'five alternatives');
      for (let k = 1; k < 5; k++)
        check(t.top_logprobs[k - 1].logprob >= t.top_logprobs[k].logprob, 'alternatives in order');
      check(t.logprob <= t.top_logprobs[0].logprob + 1e-6, 'the best alternative is the most likely');
      check(Array.isArray(t.bytes), 'bytes');
    }
  }
  eq(lp.usage.completion_tokens, total, 'usage counts every choice');
  check(new Set(lp.choices.map((c) => JSON.stringify(c.token_ids))).size > 1 ||
    lp.choices[0].token_ids.length < 2, 'sampled choices differ');
  // greedy choices are all the greedy answer, and their top alternative is their pick
  const g = await cw.completions.create({ model: 'x', prompt: 'The north', n: 3, temperature: 0,
    max_tokens: 5, logprobs: 5 });
  eq(g.choices.length, 3, 'three completions');
  for (const c of g.choices) {
    eq(c.text, g.choices[0].text, 'greedy choices agree');
    eq(c.logprobs.tokens.length, c.logprobs.token_logprobs.length, 'completions logprobs shape');
    c.logprobs.top_logprobs.forEach((m, i) => {
      const best = Math.max(...Object.values(m));
      check(Math.abs(best - c.logprobs.token_logprobs[i]) < 1e-6, 'greedy pick is the top logprob');
    });
  }
  // streamed: chunks carry their choice's index and logprobs
  const st = await cw.chat.completions.create({ model: 'x', n: 3, temperature: 0, max_tokens: 5,
    logprobs: true, top_logprobs: 5, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Name three colours.' }] });
  const texts = ['', '', ''], counts = [0, 0, 0], fin = [null, null, null];
  let usage = null;
  for await (const ch of st) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      texts[c.index] += c.delta?.content ?? '';
      counts[c.index] += c.logprobs?.content?.length ?? 0;
      if (c.finish_reason) fin[c.index] = c.finish_reason;
    }
  }
  const ns = await cw.chat.completions.create({ model: 'x', n: 3, temperature: 0, max_tokens: 5,
    messages: [{ role: 'user', content: 'Name three colours.' }] });
  for (let k = 0; k < 3; k++) {
    eq(texts[k], ns.choices[k].message.content, `streamed choice ${k} text`);
    check(fin[k], `choice ${k} finished`);
  }
  eq(counts.reduce((a, b) => a + b), usage.completion_tokens, 'streamed logprobs, one per token');
  console.log('n = 3 and logprobs: ok');
} catch (e) {
  fail(`${phase}: ${e.stack ?? e}\n${warm.log()}`);
}
await warm.stop();
await cold.stop();
console.log('ok');
