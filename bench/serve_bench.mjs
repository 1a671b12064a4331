// serve_bench.mjs BIN DIR [max_tokens] [levels...]: aggregate decode tok/s of `cellm serve`
// at several numbers of concurrent streams (default 1 4 16 64).
//
// One server with --parallel 64; at each level N, N streamed greedy requests (8-token
// prompts, max_tokens each) start together. Decode tok/s is the server's own split of
// step time (cellm_decode_tokens_total / cellm_decode_seconds_total, deltas over the
// level; a step that also prefills is split by row share); "wall" is all generated
// tokens over the level's wall time, prefill included.
import { metrics, sse, startServer } from '../tests/server/lib.mjs';

const [bin, dir, mt = '16', ...lv] = process.argv.slice(2);
const levels = lv.length ? lv.map(Number) : [1, 4, 16, 64];
const maxTokens = Number(mt);
const threads = process.env.THREADS ?? '2';
const srv = await startServer(bin, ['-m', dir, '--parallel', String(Math.max(...levels)),
  '--ctx-size', '512', '--threads', threads]);
console.log(`model ${dir}, ${threads} threads, 8-token prompts, ${maxTokens} tokens per stream`);
console.log('streams  decode tok/s  per stream  wall tok/s  (decode steps, s)');
for (const n of levels) {
  const m0 = await metrics(srv.url);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => sse(`${srv.url}/v1/completions`, {
    prompt_ids: Array.from({ length: 8 }, (_, k) => 100 + ((i * 8 + k) * 7919) % 150000),
    max_tokens: maxTokens, temperature: 0, stream: true,
  })));
  const secs = (performance.now() - t0) / 1000;
  const m1 = await metrics(srv.url);
  const dt = m1.cellm_decode_tokens_total - m0.cellm_decode_tokens_total;
  const ds = m1.cellm_decode_seconds_total - m0.cellm_decode_seconds_total;
  const gen = m1.cellm_generated_tokens_total - m0.cellm_generated_tokens_total;
  console.log(`${String(n).padStart(7)}  ${(dt / ds).toFixed(1).padStart(12)}  ` +
    `${(dt / ds / n).toFixed(2).padStart(10)}  ${(gen / secs).toFixed(1).padStart(10)}  ` +
    `(${m1.cellm_steps_total - m0.cellm_steps_total}, ${secs.toFixed(1)})`);
}
await srv.stop(600000);
