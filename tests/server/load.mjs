// load.mjs BIN FIXTURE: a bounded load test.
//
// 200 requests from 16 concurrent clients against 8 slots (a mix of streamed and plain,
// different prompt and output lengths; every 7th stream disconnects after its first
// chunk). Every request that was not cancelled must be answered completely; afterwards
// the server must be healthy and idle (no slot or queue entry leaked), answer a fresh
// request exactly as before, and stop cleanly on SIGTERM (under ASan: no leak).
import { check, disconnectMidStream, eq, fail, metrics, post, sse, startServer } from './lib.mjs';

const [bin, fixture] = process.argv.slice(2);
if (!bin || !fixture) fail('usage: load.mjs BIN FIXTURE');
const TOTAL = 200, CLIENTS = 16;

const srv = await startServer(bin, ['-m', fixture, '--parallel', '8', '--queue', '64']);
const url = srv.url;
const probe = { prompt_ids: [1, 5, 9, 13], max_tokens: 12, temperature: 0, return_ids: true };
try {
  const before = (await post(`${url}/v1/completions`, probe)).json.choices[0].token_ids;
  let next = 0, answered = 0, cancelled = 0;
  const pending = new Set();
  const watchdog = setTimeout(() => fail(`stuck: requests ${[...pending]} never finished\n${srv.log()}`), 20000);
  async function client() {
    while (next < TOTAL) {
      const i = next++;
      pending.add(i);
      const body = {
        prompt_ids: Array.from({ length: 1 + (i * 13) % 40 }, (_, k) => 3 + ((i + k * 31) % 350)),
        max_tokens: 1 + (i * 7) % 48, temperature: i % 3 ? 0.8 : 0, seed: i, return_ids: true,
      };
      if (i % 2 === 0) {
        const r = await post(`${url}/v1/completions`, body);
        check(r.status === 200, `request ${i}: ${r.status} ${r.text}`);
        const c = r.json.choices[0];
        check(['stop', 'length'].includes(c.finish_reason), `request ${i}: finish ${c.finish_reason}`);
        check(c.token_ids.length <= body.max_tokens, `request ${i}: too many tokens`);
        answered++;
      } else if (i % 7 === 1) {
        const st = await disconnectMidStream(`${url}/v1/completions`, { ...body, max_tokens: 400, stream: true });
        check(st === 200, `request ${i} (disconnecting): ${st}`);
        cancelled++;
        pending.delete(i);
        continue;
      } else {
        const r = await sse(`${url}/v1/completions`, { ...body, stream: true });
        check(r.status === 200, `stream ${i}: ${r.status} ${r.text}`);
        eq(r.events.at(-1), '[DONE]', `stream ${i} ends with [DONE]`);
        const fin = r.events.at(-2).choices[0].finish_reason;
        check(['stop', 'length'].includes(fin), `stream ${i}: finish ${fin}`);
        answered++;
      }
      pending.delete(i);
    }
  }
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const secs = (Date.now() - t0) / 1000;
  clearTimeout(watchdog);
  eq(answered + cancelled, TOTAL, 'every request accounted for');
  // idle again: cancelled requests gave their slots back
  let m;
  for (let t = 0; ; t++) {
    m = await metrics(url);
    if (m.cellm_active_slots === 0 && m.cellm_queue_depth === 0) break;
    check(t < 100, `not idle after the load: ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  eq((await (await fetch(`${url}/health`)).json()).status, 'ok', 'healthy after the load');
  const after = (await post(`${url}/v1/completions`, probe)).json.choices[0].token_ids;
  eq(after, before, 'same answer after the load');
  console.log(`ok: ${answered} answered, ${cancelled} cancelled in ${secs.toFixed(1)} s; ` +
    `${m.cellm_generated_tokens_total} tokens in ${m.cellm_steps_total} steps, ` +
    `${m.cellm_requests_cancelled_total} cancellations seen by the server`);
} catch (e) {
  fail(`${e.stack}\n${srv.log()}`);
}
await srv.stop();
