// batch.mjs BIN FIXTURE: batched equals single.
//
// 16 greedy requests of different prompt lengths and max_tokens, sent through the
// prompt_ids/return_ids extension, first one at a time and then all at once (half of
// them streamed): every request must get exactly the same ids both ways, and the
// concurrent run must really have been batched (fewer model steps than tokens).
import { check, eq, fail, metrics, post, sse, startServer } from './lib.mjs';

const [bin, fixture] = process.argv.slice(2);
if (!bin || !fixture) fail('usage: batch.mjs BIN FIXTURE');

let seed = 12345;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const reqs = [];
for (let i = 0; i < 16; i++) {
  const len = 1 + ((i * 7) % 23) + rnd(9);
  const prompt = Array.from({ length: len }, () => 3 + rnd(300));
  reqs.push({ prompt_ids: prompt, max_tokens: 4 + ((i * 5) % 29), temperature: 0, return_ids: true });
}

const srv = await startServer(bin, ['-m', fixture, '--parallel', '16']);
const url = srv.url;
try {
  const alone = [];
  for (const r of reqs) {
    const res = await post(`${url}/v1/completions`, r);
    check(res.status === 200, `alone: ${res.status} ${res.text}`);
    const c = res.json.choices[0];
    check(c.token_ids.length >= 1 || c.finish_reason === 'stop', 'alone: no ids');
    if (c.finish_reason === 'length') eq(c.token_ids.length, r.max_tokens, 'length finish');
    alone.push(c.token_ids);
  }
  // Whether the 16 overlap in the scheduler depends on timing (a loaded machine may send
  // them slower than a tiny model answers): each round must equal the alone answers, and
  // up to three rounds are run until one was batched.
  let m0, m1, steps, toks;
  for (let round = 1; ; round++) {
    m0 = await metrics(url);
    const together = await Promise.all(reqs.map(async (r, i) => {
      if (i % 2) {
        const res = await post(`${url}/v1/completions`, r);
        check(res.status === 200, `batched: ${res.status} ${res.text}`);
        return res.json.choices[0].token_ids;
      }
      const res = await sse(`${url}/v1/completions`, { ...r, stream: true });
      check(res.status === 200, `batched stream: ${res.status} ${res.text}`);
      check(res.events.at(-1) === '[DONE]', 'stream ends with [DONE]');
      return res.events.filter((e) => e !== '[DONE]').flatMap((e) => e.choices[0].token_ids);
    }));
    m1 = await metrics(url);
    for (let i = 0; i < reqs.length; i++)
      eq(together[i], alone[i], `request ${i} (prompt ${reqs[i].prompt_ids.length} tokens) batched vs alone`);
    steps = m1.cellm_steps_total - m0.cellm_steps_total;
    toks = m1.cellm_generated_tokens_total - m0.cellm_generated_tokens_total;
    if (m1.cellm_decode_batch_max >= 2 || round === 3) break;
  }
  check(m1.cellm_decode_batch_max >= 2, `never batched in 3 rounds: ${steps} steps for ${toks} tokens`);
  console.log(`ok: 16 requests identical batched and alone (${toks} tokens in ${steps} steps, ` +
    `up to ${m1.cellm_decode_batch_max} sequences per step)`);
} catch (e) {
  fail(`${e.stack}\n${srv.log()}`);
}
await srv.stop();
