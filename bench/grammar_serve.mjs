// grammar_serve.mjs BIN MODEL [ROUNDS] [THREADS]: decode cost of a json_schema
// response_format through `cellm serve`, against the same request without it.
//
// Each round sends the constrained request (temperature 1, a seed per round) and the plain
// one with max_tokens equal to the tokens the constrained one generated and ignore_eos, so
// both decode the same number of tokens; the order alternates between rounds (the machine
// this runs on may be busy, so the two are interleaved and compared round by round). Per
// request: wall time less the prefill seconds the server's /metrics counted, and the server
// process's CPU time (its threads' schedstat), each divided by the generated tokens. Prints each
// round's ratios (constrained / plain) and their medians.
import fs from 'node:fs';
import { metrics, post, startServer } from '../tests/server/lib.mjs';

const [bin, model, roundsArg, threadsArg] = process.argv.slice(2);
if (!bin || !model) {
  console.error('usage: grammar_serve.mjs BIN MODEL [ROUNDS] [THREADS]');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 8);
const threads = String(threadsArg ?? 1);
const SCHEMA = {
  type: 'object',
  properties: {
    title: { type: 'string', maxLength: 24 },
    count: { type: 'integer', minimum: 0, maximum: 999 },
    kind: { enum: ['noun', 'verb', 'adjective', 'adverb'] },
    words: { type: 'array', items: { type: 'string', maxLength: 12 }, minItems: 20, maxItems: 20 },
  },
  required: ['title', 'count', 'kind', 'words'],
  additionalProperties: false,
};
const srv = await startServer(bin, ['-m', model, '--parallel', '1', '--threads', threads]);
const pid = srv.proc.pid;
// time on a CPU of every thread of the server, in ns (/proc/PID/task/TID/schedstat): finer
// than the 10 ms ticks of /proc/PID/stat
const cpuSeconds = () => {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* gone */ }
  }
  return ns / 1e9;
};
const messages = [{ role: 'user', content: 'Define the word lantern.' }];

async function timed(body) {
  const m0 = await metrics(srv.url), c0 = cpuSeconds(), t0 = performance.now();
  const r = await post(`${srv.url}/v1/chat/completions`, body);
  const t1 = performance.now(), c1 = cpuSeconds(), m1 = await metrics(srv.url);
  if (r.status !== 200) throw new Error(`${r.status} ${r.text}`);
  const n = r.json.usage.completion_tokens;
  const prefill = m1.cellm_prefill_seconds_total - m0.cellm_prefill_seconds_total;
  return { n, wall: ((t1 - t0) / 1e3 - prefill) / n, cpu: (c1 - c0) / n, text: r.json.choices[0].message.content };
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const wallR = [], cpuR = [];
try {
  // warm: the model's pages, the compiled grammar and its masks (a repeated schema)
  const rf = { type: 'json_schema', json_schema: { name: 'entry', schema: SCHEMA, strict: true } };
  await timed({ messages, temperature: 1, seed: 0, response_format: rf, max_tokens: 490 });
  for (let i = 0; i < rounds; i++) {
    const con = { messages, temperature: 1, seed: i + 1, response_format: rf, max_tokens: 490 };
    let g, p;
    if (i % 2 === 0) {
      g = await timed(con);
      p = await timed({ messages, temperature: 1, seed: i + 1, max_tokens: g.n, ignore_eos: true });
    } else {
      const probe = await timed(con); // the length this seed gives
      p = await timed({ messages, temperature: 1, seed: i + 1, max_tokens: probe.n, ignore_eos: true });
      g = await timed(con);
    }
    JSON.parse(g.text); // the constrained answer is a complete document
    wallR.push(g.wall / p.wall);
    cpuR.push(g.cpu / p.cpu);
    console.log(`round ${i + 1}: ${g.n} tokens; plain ${(1e3 * p.wall).toFixed(3)} ms/token ` +
      `(CPU ${(1e3 * p.cpu).toFixed(3)}), json_schema ${(1e3 * g.wall).toFixed(3)} ms/token ` +
      `(CPU ${(1e3 * g.cpu).toFixed(3)}): wall x${(g.wall / p.wall).toFixed(3)}, CPU x${(g.cpu / p.cpu).toFixed(3)}`);
  }
  console.log(`median ratio json_schema / plain over ${rounds} rounds: wall x${median(wallR).toFixed(3)}, ` +
    `CPU x${median(cpuR).toFixed(3)} (decode tok/s: plain / json_schema)`);
} finally {
  await srv.stop();
}
