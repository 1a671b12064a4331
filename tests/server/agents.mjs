// agents.mjs BIN FIXTURE WORKDIR: the agent frameworks' own calls against `cellm serve`,
// as issue 24 names them: LangChain (@langchain/openai: bindTools with a forced call,
// withStructuredOutput by JSON Schema and by function calling) and the Vercel AI SDK
// (generateText with tools and generateObject, through the default @ai-sdk/openai provider,
// which speaks /v1/responses, and through the chat provider), and Anthropic's SDK
// (@anthropic-ai/sdk: messages.create with tools and a system prompt, a forced tool_use,
// streamed and not, and the round trip with its tool_result, authenticated by x-api-key).
// A tiny random model does not
// choose tools or write JSON on its own: each call here forces the shape (tool_choice
// required or named, response_format json_schema), so what is tested is that the
// frameworks' requests are understood and their parsers accept what comes back; every
// object is validated against its schema with ajv. The checkpoint is the fixture with
// Qwen2.5's real chat template (hermes tool calls), from tests/data/hub.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { check, eq, fail, makeTextCheckpoint, startServer } from './lib.mjs';

const [bin, fixture, work] = process.argv.slice(2);
if (!bin || !fixture || !work) fail('usage: agents.mjs BIN FIXTURE WORKDIR');
const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, 'package.json'));
let ChatOpenAI, ai, createOpenAI, Ajv, Anthropic;
try {
  Anthropic = (await import(require.resolve('@anthropic-ai/sdk'))).default;
  ({ ChatOpenAI } = await import(require.resolve('@langchain/openai')));
  ai = await import(require.resolve('ai'));
  ({ createOpenAI } = await import(require.resolve('@ai-sdk/openai')));
  Ajv = (await import(require.resolve('ajv'))).default;
} catch (e) {
  console.log(`SKIP: a client package is not installed (run .ci/setup.d/30-server.sh): ${e.message}`);
  process.exit(77);
}
const hub = path.resolve(here, '../data/hub/qwen2_5/tokenizer_config.json');
if (!fs.existsSync(hub)) {
  console.log('SKIP: tests/data/hub is not fetched (./scripts/test.sh fetches it)');
  process.exit(77);
}

// the fixture with Qwen2.5's template and room for its tool prompt
const dir = makeTextCheckpoint(fixture, path.join(work, 'server-agents'));
const tcPath = path.join(dir, 'tokenizer_config.json');
const tc = JSON.parse(fs.readFileSync(tcPath, 'utf8'));
tc.chat_template = JSON.parse(fs.readFileSync(hub, 'utf8')).chat_template;
fs.writeFileSync(tcPath, JSON.stringify(tc));
const mcPath = path.join(dir, 'config.json');
const mc = JSON.parse(fs.readFileSync(mcPath, 'utf8'));
mc.max_position_embeddings = 4096;
fs.rmSync(mcPath);
fs.writeFileSync(mcPath, JSON.stringify(mc));

// strings bounded: the fixture's tokenizer spends about a token per character
const timeSchema = {
  type: 'object',
  properties: { zone: { type: 'string', enum: ['utc', 'cet'] } },
  required: ['zone'],
  additionalProperties: false,
};
const answerSchema = {
  type: 'object',
  properties: {
    word: { type: 'string', maxLength: 8 },
    count: { type: 'integer', minimum: 0, maximum: 99 },
    tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, maxItems: 3 },
  },
  required: ['word', 'count', 'tags'],
  additionalProperties: false,
};
const ajv = new Ajv();
const validAnswer = ajv.compile(answerSchema);
const validTime = ajv.compile(timeSchema);

let phase = 'start';

// @anthropic-ai/sdk against /v1/messages: the SDK sends its key as x-api-key. A forced
// tool_use (tool_choice "tool" and "any"), not streamed and streamed (messages.stream, whose
// accumulator rebuilds the input from input_json_delta events), the same at temperature 0;
// then the tool_result round trip, which the template must render into a longer prompt.
async function anthropicTools(url) {
  const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
  const system = 'You tell the time.';
  const user = [{ role: 'user', content: 'What time is it in Europe?' }];
  const tools = [{ name: 'get_time', description: 'The time in a zone.', input_schema: timeSchema },
    { name: 'get_answer', description: 'An answer.', input_schema: answerSchema }];

  phase = 'anthropic messages.create with a forced tool';
  const m = await anthropic.messages.create({ model: 'x', system, messages: user, tools, max_tokens: 300,
    temperature: 0, tool_choice: { type: 'tool', name: 'get_answer' } });
  eq(m.stop_reason, 'tool_use', 'anthropic: stop_reason');
  const tu = m.content.filter((b) => b.type === 'tool_use');
  eq(tu.length, 1, `anthropic: one tool_use block in ${JSON.stringify(m.content)}`);
  eq(tu[0].name, 'get_answer', 'anthropic: tool name');
  check(typeof tu[0].id === 'string' && tu[0].id.length > 0, 'anthropic: tool_use id');
  check(validAnswer(tu[0].input), `anthropic: input ${JSON.stringify(tu[0].input)}`);

  phase = 'anthropic messages.stream with a forced tool';
  // the input arrives in pieces as generated; a stream coalesces the steps since its last
  // write, so on a loaded machine the count varies: up to four tries for more than one
  let deltas = 0;
  for (let attempt = 0; attempt < 4 && deltas < 2; attempt++) {
    const st = anthropic.messages.stream({ model: 'x', system, messages: user, tools, max_tokens: 300,
      temperature: 0, tool_choice: { type: 'tool', name: 'get_answer' } });
    deltas = 0;
    st.on('streamEvent', (ev) => { if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') deltas++; });
    const fm = await st.finalMessage();
    eq(fm.stop_reason, 'tool_use', 'anthropic stream: stop_reason');
    const stu = fm.content.filter((b) => b.type === 'tool_use');
    eq(stu.map((b) => [b.name, b.input]), [['get_answer', tu[0].input]], 'anthropic stream: the same tool_use as not streamed');
  }
  check(deltas > 1, `anthropic stream: the input arrives in pieces (${deltas} input_json_delta events in four tries)`);

  phase = 'anthropic tool_choice any';
  for (const seed of [3, 4]) {
    const a = await anthropic.messages.create({ model: 'x', system, messages: user, tools, max_tokens: 300,
      temperature: 0.8, seed, tool_choice: { type: 'any' } });
    const b = a.content.find((x) => x.type === 'tool_use');
    check(b && (b.name === 'get_time' ? validTime(b.input) : validAnswer(b.input)),
      `anthropic any (seed ${seed}): ${JSON.stringify(a.content)}`);
  }

  phase = 'anthropic tool_result round trip';
  const history = [...user, { role: 'assistant', content: m.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu[0].id, content: 'It is noon.' }] }];
  const r = await anthropic.messages.create({ model: 'x', system, messages: history, tools, max_tokens: 8, temperature: 0 });
  check(['end_turn', 'max_tokens', 'tool_use'].includes(r.stop_reason), `anthropic round trip: stop_reason ${r.stop_reason}`);
  check(r.usage.input_tokens + (r.usage.cache_read_input_tokens ?? 0) > m.usage.input_tokens + 10,
    `anthropic round trip: the call and its result are in the prompt (${JSON.stringify(r.usage)} after ${JSON.stringify(m.usage)})`);
  const rs = anthropic.messages.stream({ model: 'x', system, messages: history, tools, max_tokens: 8, temperature: 0 });
  const rf = await rs.finalMessage();
  eq(rf.content, r.content, 'anthropic round trip: streamed = not streamed');

  phase = 'anthropic auth';
  try {
    await new Anthropic({ apiKey: 'wrong', baseURL: url, maxRetries: 0 }).messages.create({
      model: 'x', messages: user, max_tokens: 4 });
    fail('anthropic: a wrong x-api-key was accepted');
  } catch (e) {
    eq(e.status, 401, `anthropic: wrong key (${e.message})`);
  }
}
process.on('uncaughtException', (e) => fail(`uncaught in phase '${phase}': ${e.stack}`));
const KEY = 'sk-agents';
const srv = await startServer(bin, ['-m', dir, '--parallel', '2', '--api-key', KEY]);
try {
  const baseURL = `${srv.url}/v1`;
  const llm = new ChatOpenAI({ model: 'x', apiKey: KEY, temperature: 0.8, maxTokens: 300, maxRetries: 0, configuration: { baseURL } });

  phase = 'langchain bindTools, forced call';
  const tool = { type: 'function', function: { name: 'get_time', description: 'The time in a zone.', parameters: timeSchema } };
  const msg = await llm.bindTools([tool], { tool_choice: 'required' }).invoke('What time is it?');
  eq(msg.tool_calls?.length, 1, 'langchain: one tool call');
  eq(msg.tool_calls[0].name, 'get_time', 'langchain: tool name');
  check(validTime(msg.tool_calls[0].args), `langchain: arguments ${JSON.stringify(msg.tool_calls[0].args)}`);

  for (const method of ['jsonSchema', 'functionCalling']) {
    phase = `langchain withStructuredOutput (${method})`;
    const out = await llm.withStructuredOutput(answerSchema, { name: 'answer', method }).invoke('Answer.');
    check(validAnswer(out), `langchain ${method}: ${JSON.stringify(out)} ${JSON.stringify(validAnswer.errors)}`);
  }

  const openai = createOpenAI({ baseURL, apiKey: KEY });
  for (const [label, model] of [['responses', openai('x')], ['chat', openai.chat('x')]]) {
    phase = `ai sdk generateText with a forced tool (${label})`;
    const r = await ai.generateText({
      model, prompt: 'What time is it?', maxOutputTokens: 300, temperature: 0.8,
      tools: { get_time: ai.tool({ description: 'The time in a zone.', inputSchema: ai.jsonSchema(timeSchema) }) },
      toolChoice: 'required',
    });
    eq(r.toolCalls.length, 1, `ai sdk ${label}: one tool call`);
    eq(r.toolCalls[0].toolName, 'get_time', `ai sdk ${label}: tool name`);
    check(validTime(r.toolCalls[0].input), `ai sdk ${label}: input ${JSON.stringify(r.toolCalls[0].input)}`);

    phase = `ai sdk generateObject (${label})`;
    for (const seed of [1, 2]) {
      const o = await ai.generateObject({
        model, prompt: 'Answer.', schema: ai.jsonSchema(answerSchema), schemaName: 'answer',
        maxOutputTokens: 300, temperature: 0.8, seed,
      });
      check(validAnswer(o.object), `ai sdk ${label} seed ${seed}: ${JSON.stringify(o.object)}`);
    }
  }
  await anthropicTools(srv.url);
  console.log('agents: langchain (bindTools, withStructuredOutput x2), ai sdk (generateText with tools, generateObject; responses and chat providers) and @anthropic-ai/sdk (tools, tool_use and tool_result, streamed and not, x-api-key): ok');
} catch (e) {
  fail(`phase '${phase}': ${e.stack ?? e}`);
} finally {
  await srv.stop();
}
