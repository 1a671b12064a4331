// agents.mjs BIN FIXTURE WORKDIR: the agent frameworks' own calls against `cellm serve`,
// as issue 24 names them: LangChain (@langchain/openai: bindTools with a forced call,
// withStructuredOutput by JSON Schema and by function calling) and the Vercel AI SDK
// (generateText with tools and generateObject, through the default @ai-sdk/openai provider,
// which speaks /v1/responses, and through the chat provider). A tiny random model does not
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
let ChatOpenAI, ai, createOpenAI, Ajv;
try {
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
process.on('uncaughtException', (e) => fail(`uncaught in phase '${phase}': ${e.stack}`));
const srv = await startServer(bin, ['-m', dir, '--parallel', '2']);
try {
  const baseURL = `${srv.url}/v1`;
  const llm = new ChatOpenAI({ model: 'x', apiKey: 'x', temperature: 0.8, maxTokens: 300, maxRetries: 0, configuration: { baseURL } });

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

  const openai = createOpenAI({ baseURL, apiKey: 'x' });
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
  console.log('agents: langchain (bindTools, withStructuredOutput x2) and ai sdk (generateText with tools, generateObject; responses and chat providers): ok');
} catch (e) {
  fail(`phase '${phase}': ${e.stack ?? e}`);
} finally {
  await srv.stop();
}
