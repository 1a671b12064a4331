// prefix_state.mjs BIN FIXTURE WORKDIR: the prefix cache on a model with sequence state
// (LFM2's conv windows, Gated DeltaNet's recurrent states), on a text checkpoint made from
// the fixture (lib.mjs).
//
// A two-turn chat on a server of one slot, with an unrelated request between the turns, so
// the first turn's slot no longer holds its history: turn 2 resumes from the snapshot of
// the state that turn 1 left where its prompt's last whole block ends. It reports those
// positions as usage.prompt_tokens_details.cached_tokens, /metrics counts the snapshot, and
// its output equals a cold server's (--cache-ram 0) token for token.
import { check, eq, fail, makeTextCheckpoint, metrics, startServer } from './lib.mjs';
import path from 'node:path';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: prefix_state.mjs BIN FIXTURE WORKDIR');
const dir = makeTextCheckpoint(fixture, path.join(work, 'server-prefix-state-ckpt'));
const B = 16;
const warm = await startServer(bin, ['-m', dir, '--parallel', '1', '--cache-block', String(B)]);
const cold = await startServer(bin, ['-m', dir, '--parallel', '1', '--cache-ram', '0']);
const chat = async (srv, messages) => {
  const r = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'x', temperature: 0, max_tokens: 8, return_ids: true, messages }),
  });
  const j = await r.json();
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${JSON.stringify(j)}`);
  return j;
};
try {
  const turn1 = [{ role: 'system', content: 'You answer in one line.' },
    { role: 'user', content: 'Tell me about the weather in the north.' }];
  const r1 = await chat(warm, turn1);
  eq(r1.usage.prompt_tokens_details.cached_tokens, 0, 'turn 1 finds nothing cached');
  const m1 = await metrics(warm.url);
  eq(m1.cellm_prefix_cache_snapshots, 1, 'turn 1 left one snapshot');
  // another conversation takes the only slot
  await chat(warm, [{ role: 'user', content: 'Something else entirely, please.' }]);
  const turn2 = [...turn1, { role: 'assistant', content: r1.choices[0].message.content },
    { role: 'user', content: 'And in the south?' }];
  const r2 = await chat(warm, turn2);
  const r2c = await chat(cold, turn2);
  const n1 = r1.usage.prompt_tokens, cached = r2.usage.prompt_tokens_details.cached_tokens;
  eq(cached, Math.floor((n1 - 1) / B) * B, `turn 2 resumes at turn 1's snapshot (prompt ${n1})`);
  check(cached > 0, 'turn 2 cached something');
  eq(r2.choices[0].token_ids, r2c.choices[0].token_ids, 'turn 2: warm and cold ids');
  eq(r2c.usage.prompt_tokens_details.cached_tokens, 0, 'the cold server caches nothing');
  const m2 = await metrics(warm.url);
  check(m2.cellm_prefix_cache_hits_total >= 1, 'a hit counted');
  console.log(`two turns: turn 1 prompt ${n1}, turn 2 prompt ${r2.usage.prompt_tokens}, ` +
    `cached ${cached} (prefilled ${r2.usage.prompt_tokens - cached}; cold: ${r2c.usage.prompt_tokens}), ` +
    `snapshots held ${m2.cellm_prefix_cache_snapshots}, bytes ${m2.cellm_prefix_cache_bytes}`);
} catch (e) {
  fail(`${e.stack ?? e}\n${warm.log()}`);
}
await warm.stop();
await cold.stop();
console.log('ok');
