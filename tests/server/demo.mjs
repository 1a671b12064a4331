// demo.mjs: `cellm serve` on the model the repository ships (models/wordnet-llama, a real
// tokenizer.json and chat template) answers the official openai client, and its greedy
// answers are the same text `cellm generate` prints for the same prompt.
//   node demo.mjs CELLM MODEL_DIR
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { check, eq, startServer } from './lib.mjs';

const [bin, model] = process.argv.slice(2);
const here = path.dirname(new URL(import.meta.url).pathname);
let OpenAI;
try {
  ({ default: OpenAI } = await import(path.join(here, 'node_modules/openai/index.mjs')));
} catch {
  if (process.env.CELLM_CI) {
    console.error('FAIL: the openai client is not installed (.ci/setup.d/30-server.sh)');
    process.exit(1);
  }
  console.error('skip: the openai client is not installed (.ci/setup.d/30-server.sh)');
  process.exit(77);
}
check(fs.existsSync(path.join(model, 'tokenizer.json')), `${model} has no tokenizer.json`);

function generate(args) {
  // stdout is the text plus a final newline
  return execFileSync(bin, ['generate', '-m', model, '--temp', '0', '-n', '24', '--threads', '2', ...args],
    { stdio: ['ignore', 'pipe', 'ignore'] }).toString().replace(/\n$/, '');
}

const srv = await startServer(bin, ['-m', model, '--parallel', '4']);
const client = new OpenAI({ apiKey: 'none', baseURL: `${srv.url}/v1`, maxRetries: 0 });

// completions: greedy text equals `cellm generate -p`
const prompt = 'the act of';
const c = await client.completions.create({ model: 'x', prompt, max_tokens: 24, temperature: 0 });
const want = generate(['--raw', '-p', prompt]);  // a completion: no chat template
eq(c.choices[0].text, want, 'completion text vs cellm generate');
check(/[a-z]{2}/.test(want), `no words in ${JSON.stringify(want)}`);
console.log(`completion: ${prompt}${c.choices[0].text}`);

// chat: greedy answer equals `cellm generate --chat`, streamed or not
const question = 'What does "lighthouse" mean?';
const messages = [{ role: 'user', content: question }];
const r = await client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0 });
const wantChat = generate(['--chat', '-p', question]);
eq(r.choices[0].message.content, wantChat, 'chat answer vs cellm generate --chat');
eq(r.choices[0].message.role, 'assistant', 'role');
check(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, 'usage');
const stream = await client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0, stream: true });
let streamed = '';
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
eq(streamed, wantChat, 'streamed chat answer');
console.log(`chat: ${question} -> ${r.choices[0].message.content}`);

await srv.stop();
console.log('ok');
