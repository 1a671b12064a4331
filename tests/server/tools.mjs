// tools.mjs BIN FIXTURE WORKDIR: tool calling and reasoning requests through the official
// openai client, on a text checkpoint (lib.mjs) that carries a real tools-capable chat
// template: Qwen2.5's, then Qwen3's (from tests/data/hub, fetched by
// .ci/setup.d/20-tokenizers.sh).
//
// A tiny model does not call tools on its own, so this checks the request side and the
// round trip: tools, an assistant's tool_calls (arguments as a JSON string) and a tool
// result in the history are accepted, and the prompt the server renders has exactly as many
// tokens as the one Python's jinja2 renders from the same conversation (tests/chat/render.py,
// the transformers environment); chat_template_kwargs and reasoning_effort reach the
// template; streamed and non-streamed answers agree; tool_choice required and named force
// one call whose arguments follow the tool's schema (the grammar engine), streamed and not;
// streamed, a long call's arguments arrive in many pieces that the openai client's stream
// accumulator joins into the non-streamed arguments. The parsing of tool calls out of model
// output is tests/test_toolcall.c's
// (canned outputs of every format).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { check, eq, fail, makeTextCheckpoint, post, sse, startServer } from './lib.mjs';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: tools.mjs BIN FIXTURE WORKDIR');
const here = path.dirname(new URL(import.meta.url).pathname);
const CI = process.env.CELLM_CI === '1';
function skip(why) {
  if (CI) fail(`(CI) ${why}`);
  console.log(`SKIP: ${why}`);
  process.exit(77);
}
let OpenAI;
try {
  const require = createRequire(path.join(here, 'package.json'));
  OpenAI = (await import(require.resolve('openai'))).default;
} catch {
  skip('the openai package is not installed (run .ci/setup.d/30-server.sh)');
}
const hub = path.resolve(here, '../data/hub');
const render = path.resolve(here, '../chat/render.py');
for (const m of ['qwen2_5', 'qwen3'])
  if (!fs.existsSync(path.join(hub, m, 'tokenizer_config.json')))
    skip(`tests/data/hub/${m} is missing (run .ci/setup.d/20-tokenizers.sh)`);
try {
  execFileSync('python3', ['-c', 'import jinja2']);
} catch {
  skip('python3 with jinja2 is missing');
}

// The test checkpoint with the chat template of a real model.
function checkpoint(model) {
  const dir = makeTextCheckpoint(fixture, path.join(work, `server-tools-${model}`));
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  cfg.chat_template = JSON.parse(fs.readFileSync(path.join(hub, model, 'tokenizer_config.json'), 'utf8')).chat_template;
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  // a real template's tool prompt is longer than the fixture's 512 positions
  const mcPath = path.join(dir, 'config.json');
  const mc = JSON.parse(fs.readFileSync(mcPath, 'utf8'));
  mc.max_position_embeddings = 4096;
  fs.rmSync(mcPath);
  fs.writeFileSync(mcPath, JSON.stringify(mc));
  return { dir, cfg };
}

// What transformers' apply_chat_template renders for these variables.
function pythonRender(cfg, vars) {
  const t = path.join(work, 'tools-template.json');
  const v = path.join(work, 'tools-vars.json');
  fs.writeFileSync(t, JSON.stringify({ chat_template: cfg.chat_template }));
  fs.writeFileSync(v, JSON.stringify({ bos_token: cfg.bos_token, eos_token: cfg.eos_token, ...vars }));
  return execFileSync('python3', [render, t, v]).toString('utf8');
}

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city, e.g. "Paris".',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city'],
    },
  },
}];
// What a client sends back after running the call (arguments as a JSON string).
const history = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the weather in Zürich?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Zürich", "unit": "c"}' } }] },
  { role: 'tool', tool_call_id: 'call_abc123', content: '{"temp": 21, "sky": "clear"}' },
];
// The same conversation as the template sees it: arguments as an object, null content "".
const asTemplateSees = history.map((m) => (m.tool_calls
  ? { ...m, content: '', tool_calls: m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })) }
  : m));

let phase = 'start';
let srv = null;
process.on('uncaughtException', (e) => fail(`uncaught in phase '${phase}': ${e.stack}`));
try {
  // ---- Qwen2.5: hermes tool calls
  phase = 'qwen2.5 checkpoint';
  let { dir, cfg } = checkpoint('qwen2_5');
  srv = await startServer(bin, ['-m', dir, '--parallel', '2']);
  let client = new OpenAI({ apiKey: 'x', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  // /tokenize is idempotent: one retry covers a kept-alive socket that the server's idle
  // timeout closed while a loaded machine ran Python in between
  const count = async (text) => {
    const once = async () => (await post(`${srv.url}/tokenize`, { content: text })).json.tokens.length;
    try {
      return await once();
    } catch {
      return once();
    }
  };

  phase = 'tools round trip, non-streamed';
  const req = { model: 'x', messages: history, tools, max_tokens: 12, temperature: 0 };
  const r1 = await client.chat.completions.create(req);
  const want = pythonRender(cfg, { messages: asTemplateSees, tools, add_generation_prompt: true });
  check(want.includes('<tools>') && want.includes('<tool_response>') && want.includes('"city": "Zürich"'),
    `the reference rendering shows the tools, the call and its result:\n${want}`);
  eq(r1.usage.prompt_tokens, await count(want), 'prompt tokens = those of the jinja2 rendering');
  const m1 = r1.choices[0].message;
  eq(m1.role, 'assistant', 'role');
  check(['stop', 'length', 'tool_calls'].includes(r1.choices[0].finish_reason), `finish_reason ${r1.choices[0].finish_reason}`);
  if (m1.tool_calls) {
    // the model happened to call: the call is well-formed
    for (const c of m1.tool_calls) {
      eq(c.type, 'function', 'tool call type');
      check(typeof c.id === 'string' && c.id.length > 5, 'tool call id');
      JSON.parse(c.function.arguments);
    }
    eq(r1.choices[0].finish_reason, 'tool_calls', 'finish_reason with tool calls');
  } else {
    check(typeof m1.content === 'string', 'content is text');
  }

  phase = 'tools round trip, streamed';
  let content = '';
  let role = null;
  const calls = [];
  let finish = null;
  for await (const ch of await client.chat.completions.create({ ...req, stream: true })) {
    const d = ch.choices[0]?.delta ?? {};
    if (d.role) role = d.role;
    if (d.content) content += d.content;
    for (const tc of d.tool_calls ?? []) {
      calls[tc.index] ??= { name: '', arguments: '' };
      if (tc.function?.name) calls[tc.index].name += tc.function.name;
      if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
    }
    if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
  }
  eq(role, 'assistant', 'streamed role');
  eq(content, m1.content ?? '', 'streamed content = non-streamed content');
  eq(calls.length, (m1.tool_calls ?? []).length, 'streamed tool calls');
  eq(finish, r1.choices[0].finish_reason, 'streamed finish_reason');

  phase = 'tool_choice';
  const r2 = await client.chat.completions.create({ ...req, tool_choice: 'none', max_tokens: 4 });
  eq(r2.choices[0].message.tool_calls ?? null, null, 'tool_choice none: no calls');
  await client.chat.completions.create({ ...req, tool_choice: 'auto', parallel_tool_calls: false, max_tokens: 4 });
  // required and named force one well-formed call through the grammar engine, whatever
  // the tiny model would say; its arguments follow the tool's parameters schema
  // (strings bounded: the fixture's tokenizer spends about a token per character)
  const two = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city'], additionalProperties: false } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['utc', 'cet'] } }, required: ['zone'], additionalProperties: false } } }];
  for (const [tc, names] of [['required', ['get_weather', 'get_time']], [{ type: 'function', function: { name: 'get_time' } }, ['get_time']]]) {
    for (const seed of [1, 2, 3]) {
      const q = { ...req, tools: two, tool_choice: tc, max_tokens: 300, temperature: 1.0, seed };
      const r = await client.chat.completions.create(q);
      const what = `tool_choice ${JSON.stringify(tc)} seed ${seed}`;
      eq(r.choices[0].finish_reason, 'tool_calls', `${what}: finish_reason`);
      const calls = r.choices[0].message.tool_calls ?? [];
      eq(calls.length, 1, `${what}: one call`);
      check(names.includes(calls[0].function.name), `${what}: name ${calls[0].function.name}`);
      const args = JSON.parse(calls[0].function.arguments);
      if (calls[0].function.name === 'get_time') check(['utc', 'cet'].includes(args.zone) && Object.keys(args).length === 1, `${what}: arguments ${calls[0].function.arguments}`);
      else check(typeof args.city === 'string' && (args.unit === undefined || ['c', 'f'].includes(args.unit)), `${what}: arguments ${calls[0].function.arguments}`);
      let sname = '', sargs = '', sfinish = null;
      for await (const ch of await client.chat.completions.create({ ...q, stream: true })) {
        for (const d of ch.choices[0]?.delta?.tool_calls ?? []) {
          sname += d.function?.name ?? '';
          sargs += d.function?.arguments ?? '';
        }
        sfinish = ch.choices[0]?.finish_reason ?? sfinish;
      }
      eq(sname, calls[0].function.name, `${what}: streamed name`);
      eq(sargs, calls[0].function.arguments, `${what}: streamed arguments`);
      eq(sfinish, 'tool_calls', `${what}: streamed finish_reason`);
    }
  }
  for (const [q, param, why] of [
    [{ ...req, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /not in 'tools'/],
    [{ ...req, tool_choice: 'required', response_format: { type: 'json_object' } }, 'tool_choice', /send one of them/],
  ]) {
    try {
      await client.chat.completions.create(q);
      fail(`${JSON.stringify(q.tool_choice)}: no error`);
    } catch (e) {
      eq(e.status, 400, 'refused forced call: status');
      eq(e.param ?? e.error?.param, param, 'refused forced call: param');
      check(why.test(e.message), `the refusal says why: ${e.message}`);
    }
  }
  phase = 'incremental tool-call arguments';
  // streamed, a call's arguments arrive in pieces as the model writes them (as vLLM and
  // llama-server stream them), not in one chunk at the end: the raw SSE has many argument
  // deltas for a long call, and the openai client's stream accumulator rebuilds exactly the
  // non-streamed arguments
  {
    const note = [{ type: 'function', function: { name: 'write_note', parameters: { type: 'object', properties: {
      title: { type: 'string', minLength: 12, maxLength: 16 }, body: { type: 'string', minLength: 30, maxLength: 40 },
      tags: { type: 'array', items: { type: 'string', enum: ['a', 'bb', 'ccc'] }, minItems: 3, maxItems: 3 } },
    required: ['title', 'body', 'tags'], additionalProperties: false } } }];
    const q = { ...req, tools: note, tool_choice: { type: 'function', function: { name: 'write_note' } },
      max_tokens: 400, temperature: 1.0, seed: 5 };
    const r = await client.chat.completions.create(q);
    const call = r.choices[0].message.tool_calls?.[0];
    check(call && call.function.name === 'write_note', `incremental: a forced call (${JSON.stringify(r.choices[0].message)})`);
    const args = JSON.parse(call.function.arguments);
    check(args.body.length >= 30 && args.tags.length === 3, `incremental: arguments ${call.function.arguments}`);
    // a stream sends what the steps since its last write produced, so on a loaded machine
    // several tokens share a chunk and the count of pieces varies (test_toolcall's
    // test_live checks the parser's pieces exactly): up to four tries for more than one
    let pieces = [];
    for (let attempt = 0; attempt < 4 && pieces.length < 2; attempt++) {
      const raw = await sse(`${srv.url}/v1/chat/completions`, { ...q, stream: true });
      eq(raw.status, 200, 'incremental: raw stream');
      pieces = [];
      let heads = 0;
      for (const ev of raw.events) {
        if (ev === '[DONE]') continue;
        for (const d of ev.choices[0]?.delta?.tool_calls ?? []) {
          if (d.id) heads++;
          eq(d.index, 0, 'incremental: one call index');
          if (d.function?.arguments) pieces.push(d.function.arguments);
        }
      }
      eq(heads, 1, 'incremental: one head');
      eq(pieces.join(''), call.function.arguments, 'incremental: raw pieces join to the arguments');
    }
    check(pieces.length >= 2, `incremental: the arguments came in ${pieces.length} piece(s) in four tries`);
    const stream = (client.chat.completions.stream ?? client.beta.chat.completions.stream).call(
      client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions, q);
    const fin = await stream.finalChatCompletion();
    const acc = fin.choices[0].message.tool_calls?.[0];
    eq([acc?.id, acc?.function?.name, acc?.function?.arguments], [acc?.id, 'write_note', call.function.arguments],
      'incremental: the openai stream accumulator rebuilds the non-streamed call');
    eq(fin.choices[0].finish_reason, 'tool_calls', 'incremental: accumulated finish_reason');
  }

  phase = 'malformed tool messages';
  for (const [messages, param] of [
    [[{ role: 'user', content: 'x', tool_calls: [] }], 'messages[0].tool_calls'],
    [[{ role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { arguments: '{}' } }] }], 'messages[0].tool_calls[0]'],
    [[{ role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'f', arguments: 5 } }] }], 'messages[0].tool_calls[0].function.arguments'],
    [[{ role: 'tool', content: 'x', tool_call_id: 7 }], 'messages[0].tool_call_id'],
  ]) {
    const r = await post(`${srv.url}/v1/chat/completions`, { messages });
    eq(r.status, 400, `${param}: status`);
    eq(r.json.error.param, param, `${param}: param`);
  }
  const rt = await post(`${srv.url}/v1/chat/completions`, { messages: history, tools: [{ type: 'function', function: { name: 'f', parameters: 'x' } }] });
  eq(rt.json.error?.param, 'tools[0].function.parameters', 'tools parameters type');
  await srv.stop();
  srv = null;

  // ---- Qwen3: template kwargs and reasoning
  phase = 'qwen3 checkpoint';
  ({ dir, cfg } = checkpoint('qwen3'));
  srv = await startServer(bin, ['-m', dir]);
  client = new OpenAI({ apiKey: 'x', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  const msgs = [{ role: 'user', content: 'Hi' }];
  for (const enable of [true, false]) {
    phase = `qwen3 enable_thinking ${enable}`;
    const r = await client.chat.completions.create({
      model: 'x', messages: msgs, max_tokens: 6, temperature: 0, chat_template_kwargs: { enable_thinking: enable },
    });
    const w = pythonRender(cfg, { messages: msgs, add_generation_prompt: true, enable_thinking: enable });
    check(enable || w.endsWith('<think>\n\n</think>\n\n'), 'thinking off closes <think> in the prompt');
    eq(r.usage.prompt_tokens, await count(w), `enable_thinking ${enable}: prompt tokens = jinja2's`);
    // the model's text never shows the reasoning markers as content
    check(!/<\/?think>/.test(r.choices[0].message.content ?? ''), 'no think tags in content');
  }
  phase = 'qwen3 tools with a result and reasoning in history';
  const hist3 = [...history, { role: 'assistant', content: 'It is 21 °C.', reasoning_content: 'The tool said 21.' }, { role: 'user', content: 'Thanks' }];
  const r3 = await client.chat.completions.create({ model: 'x', messages: hist3, tools, max_tokens: 4, temperature: 0 });
  const w3 = pythonRender(cfg, {
    messages: [...asTemplateSees, ...hist3.slice(history.length)], tools, add_generation_prompt: true,
  });
  eq(r3.usage.prompt_tokens, await count(w3), 'qwen3 tool round trip: prompt tokens = jinja2\'s');
  await srv.stop();
  srv = null;

  // ---- reasoning_effort and kwargs (documents, ...) are template variables
  phase = 'reasoning_effort and kwargs';
  const kdir = makeTextCheckpoint(fixture, path.join(work, 'server-tools-kwargs'));
  const kcfgPath = path.join(kdir, 'tokenizer_config.json');
  const kcfg = JSON.parse(fs.readFileSync(kcfgPath, 'utf8'));
  kcfg.chat_template = '[{{ reasoning_effort | default("none") }}|{{ documents[0].text if documents else "" }}|{{ n }}]'
    + '{% for m in messages %}{{ m.content }}{% endfor %}';
  fs.writeFileSync(kcfgPath, JSON.stringify(kcfg));
  srv = await startServer(bin, ['-m', kdir]);
  for (const [extra, want] of [
    [{}, '[none||]hi'],
    [{ reasoning_effort: 'low' }, '[low||]hi'],
    [{ reasoning_effort: 'low', chat_template_kwargs: { reasoning_effort: 'high', documents: [{ text: 'Alpha.' }], n: 3 } }, '[high|Alpha.|3]hi'],
  ]) {
    const r = await post(`${srv.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, ...extra });
    eq(r.status, 200, `${JSON.stringify(extra)}: status`);
    const t = await post(`${srv.url}/tokenize`, { content: want });
    eq(r.json.usage.prompt_tokens, t.json.tokens.length, `${JSON.stringify(extra)}: the prompt is ${want}`);
  }
  const bad = await post(`${srv.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], reasoning_effort: 3 });
  eq(bad.json.error?.param, 'reasoning_effort', 'reasoning_effort type');
  await srv.stop();
  srv = null;
  console.log('tools: ok');
} catch (e) {
  if (srv) await srv.stop().catch(() => {});
  fail(`phase '${phase}': ${e.stack ?? e}`);
}
