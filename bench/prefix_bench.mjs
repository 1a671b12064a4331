// prefix_bench.mjs BIN MODEL: see prefix_bench.sh.
import { startServer } from '../tests/server/lib.mjs';

const [bin, model] = process.argv.slice(2);
const device = process.env.DEVICE ?? 'cpu', threads = process.env.THREADS ?? '2';
const cacheFlag = device === 'cuda' ? '--cache-gpu' : '--cache-ram';
const common = ['-m', model, '--device', device, '--threads', threads, '--parallel', '1', '--quiet'];
const warm = await startServer(bin, [...common, cacheFlag, '1024']);
const cold = await startServer(bin, [...common, cacheFlag, '0']);

async function chat(url, messages, max_tokens) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages, max_tokens, temperature: 0 }),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(JSON.stringify(j));
  return { ms: performance.now() - t0, j };
}

const words = ['river', 'stone', 'light', 'garden', 'winter', 'paper', 'music', 'harbor',
  'forest', 'window', 'silver', 'market', 'candle', 'valley', 'letter', 'bridge'];
const userMsg = (t) => Array.from({ length: 150 }, (_, i) => words[(i * 7 + t * 3) % words.length]).join(' ');
const msgs = [{ role: 'system', content: 'You define words.' }];
console.log('turn  prompt  cached  ttft_cold_ms  ttft_warm_ms');
for (let t = 1; t <= 10; t++) {
  msgs.push({ role: 'user', content: userMsg(t) });
  // time to first token: a one-token request on each server (the warm one finds the
  // history of the previous turn cached)
  const c = await chat(cold.url, msgs, 1), w = await chat(warm.url, msgs, 1);
  // the turn itself (its answer joins the history, and the warm server caches it)
  const a = await chat(warm.url, msgs, 24);
  msgs.push({ role: 'assistant', content: a.j.choices[0].message.content });
  const u = w.j.usage;
  console.log(`${String(t).padStart(4)}  ${String(u.prompt_tokens).padStart(6)}  ` +
    `${String(u.prompt_tokens_details.cached_tokens).padStart(6)}  ${c.ms.toFixed(1).padStart(12)}  ` +
    `${w.ms.toFixed(1).padStart(12)}`);
}
await warm.stop();
await cold.stop();
