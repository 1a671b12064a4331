// structured.mjs BIN MODEL [FIXTURE WORKDIR]: constrained decoding through the openai client.
//
// For each server (the shipped demo model, and a text checkpoint made from the fixture when
// given): many seeded samples at temperature > 0 with response_format json_schema (nested
// objects, arrays with bounds, enums, const, required and optional fields, bounded integers,
// patterns, anyOf with null, $defs references); every output must finish with "stop" and
// validate against its schema with ajv. Also: streamed output, the same seed twice,
// json_object mode, llama-server's `grammar` (GBNF) and `json_schema`, vLLM's `guided_json` and `guided_choice`,
// and refusals that name the unsupported keyword (400, never an unconstrained 200).
import path from 'node:path';
import { createRequire } from 'node:module';
import { check, eq, fail, makeTextCheckpoint, startServer } from './lib.mjs';

const [bin, model, fixture, work] = process.argv.slice(2);
if (!bin || !model) fail('usage: structured.mjs BIN MODEL [FIXTURE WORKDIR]');
const here = path.dirname(new URL(import.meta.url).pathname);
let OpenAI, Ajv;
try {
  const require = createRequire(path.join(here, 'package.json'));
  OpenAI = (await import(require.resolve('openai'))).default;
  const a = (await import(require.resolve('ajv'))).default;
  Ajv = a.default ?? a;
} catch {
  console.log('SKIP: the openai or ajv package is not installed (run .ci/setup.d/30-server.sh)');
  process.exit(77);
}
const ajv = new Ajv({ strict: false, allErrors: true });

const schemas = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      email: { type: 'string', pattern: '^[a-z]{1,8}@[a-z]{1,8}\\.(com|org)$' },
      role: { enum: ['admin', 'user', 'guest'] },
      tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
      address: {
        type: 'object',
        properties: {
          city: { type: 'string', minLength: 1, maxLength: 10 },
          zip: { type: 'string', pattern: '^\\d{5}$' },
        },
        required: ['city', 'zip'],
        additionalProperties: false,
      },
      version: { const: 2 },
    },
    required: ['name', 'age', 'role', 'address', 'version'],
    additionalProperties: false,
  },
  orders: {
    type: 'array',
    minItems: 1,
    maxItems: 3,
    items: {
      type: 'object',
      properties: {
        id: { type: 'integer', minimum: 1, maximum: 999 },
        paid: { type: 'boolean' },
        total: { type: 'number' },
        lines: { type: 'array', minItems: 1, maxItems: 2, items: { type: 'integer', minimum: -5, maximum: 5 } },
      },
      required: ['id', 'paid', 'lines'],
      additionalProperties: false,
    },
  },
  shape: {
    $defs: {
      pt: {
        type: 'object',
        properties: { x: { type: 'integer', minimum: -50, maximum: 50 }, y: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 8 } },
        required: ['x', 'y'],
        additionalProperties: false,
      },
    },
    type: 'object',
    properties: {
      shape: { enum: ['circle', 'square', 'tri'] },
      at: { $ref: '#/$defs/pt' },
      label: { anyOf: [{ type: 'string', maxLength: 5 }, { type: 'null' }] },
      code: { type: 'string', pattern: '^[A-F0-9]{2}-(x|yz)?$' },
    },
    required: ['shape', 'at', 'label', 'code'],
    additionalProperties: false,
  },
};
const SEEDS = 12;

async function run(dir, label) {
  const srv = await startServer(bin, ['-m', dir, '--parallel', '4']);
  const client = new OpenAI({ apiKey: 'x', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  let phase = 'start';
  try {
    const messages = [{ role: 'user', content: 'Answer in JSON.' }];
    for (const [name, schema] of Object.entries(schemas)) {
      phase = `${label}: schema ${name}`;
      const validate = ajv.compile(schema);
      const outs = await Promise.all(Array.from({ length: SEEDS }, (_, k) =>
        client.chat.completions.create({
          model: 'x', messages, temperature: 1.3, top_p: 1, seed: 100 + k,
          response_format: { type: 'json_schema', json_schema: { name, schema, strict: true } },
        })));
      const distinct = new Set();
      for (const [k, r] of outs.entries()) {
        const c = r.choices[0];
        eq(c.finish_reason, 'stop', `${name} seed ${100 + k} finish (${c.message.content})`);
        let v;
        try {
          v = JSON.parse(c.message.content);
        } catch (e) {
          fail(`${name} seed ${100 + k}: not JSON: ${c.message.content}`);
        }
        check(validate(v), `${name} seed ${100 + k}: ${c.message.content} fails: ${ajv.errorsText(validate.errors)}`);
        distinct.add(c.message.content);
      }
      check(distinct.size > 1, `${name}: the seeds gave one output only`);
      console.log(`${label}: ${name}: ${SEEDS} samples valid (${distinct.size} distinct), e.g. ${outs[0].choices[0].message.content}`);
    }

    phase = `${label}: streamed, and the same seed twice`;
    const rf = { type: 'json_schema', json_schema: { name: 'shape', schema: schemas.shape } };
    const st = await client.chat.completions.create({ model: 'x', messages, temperature: 1, seed: 7, response_format: rf, stream: true });
    let text = '', fin = null;
    for await (const ch of st) {
      text += ch.choices[0]?.delta?.content ?? '';
      fin = ch.choices[0]?.finish_reason ?? fin;
    }
    eq(fin, 'stop', 'streamed finish');
    check(ajv.validate(schemas.shape, JSON.parse(text)), `streamed output ${text} is not valid`);
    const again = await client.chat.completions.create({ model: 'x', messages, temperature: 1, seed: 7, response_format: rf });
    eq(again.choices[0].message.content, text, 'the same seed, streamed and not');

    phase = `${label}: json_object`;
    for (let k = 0; k < 4; k++) {
      const r = await client.chat.completions.create({ model: 'x', messages, temperature: 1, seed: k, max_tokens: 120, response_format: { type: 'json_object' } });
      const c = r.choices[0];
      check(c.message.content.startsWith('{'), `json_object starts with {: ${c.message.content}`);
      if (c.finish_reason === 'stop') {
        const v = JSON.parse(c.message.content);
        check(v && typeof v === 'object' && !Array.isArray(v), `json_object gave ${c.message.content}`);
      }
    }

    phase = `${label}: grammar, json_schema, guided_json on completions`;
    for (let k = 0; k < 6; k++) {
      const r = await client.completions.create({ model: 'x', prompt: 'The answer:', max_tokens: 40, temperature: 1.5, seed: k,
        grammar: 'root ::= ("yes" | "no") ", " [0-9]{1,3} "%" [.!]?\n' });
      check(/^(yes|no), [0-9]{1,3}%[.!]?$/.test(r.choices[0].text), `GBNF output ${JSON.stringify(r.choices[0].text)}`);
      eq(r.choices[0].finish_reason, 'stop', 'GBNF finish');
    }
    for (let k = 0; k < 4; k++) {
      const r = await client.chat.completions.create({ model: 'x', messages, temperature: 1.5, seed: k, guided_choice: ['red', 'green "leaf"', 'blue\\sky'] });
      check(['red', 'green "leaf"', 'blue\\sky'].includes(r.choices[0].message.content), `guided_choice gave ${r.choices[0].message.content}`);
      eq(r.choices[0].finish_reason, 'stop', 'guided_choice finish');
    }
    const small = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 10, maximum: 12 } }, required: ['ok', 'n'], additionalProperties: false };
    for (const field of ['json_schema', 'guided_json']) {
      const r = await client.completions.create({ model: 'x', prompt: 'x', max_tokens: 60, temperature: 1, seed: 3, [field]: small });
      check(ajv.validate(small, JSON.parse(r.choices[0].text)), `${field}: ${r.choices[0].text}`);
    }

    phase = `${label}: refusals`;
    const refused = [
      [{ response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object', properties: { d: { type: 'string', format: 'date' } } } } } }, 'response_format', "'format' is not supported at /properties/d"],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'array', items: { type: 'string', pattern: '(?=x)' } } } } }, 'response_format', 'lookaround'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { allOf: [{}] } } } }, 'response_format', "'allOf'"],
      [{ response_format: { type: 'yaml' } }, 'response_format', 'yaml'],
      [{ grammar: 'root ::= nothing' }, 'grammar', "1:10: rule 'nothing' is not defined"],
      [{ grammar: 'a', json_schema: {} }, 'json_schema', 'both constrain'],
      [{ guided_regex: 'a+' }, 'guided_regex', 'guided_regex'],
    ];
    for (const [extra, param, needle] of refused) {
      try {
        await client.chat.completions.create({ model: 'x', messages, max_tokens: 4, ...extra });
        fail(`${JSON.stringify(extra)} was not refused`);
      } catch (e) {
        eq(e.status, 400, `status for ${JSON.stringify(extra)}`);
        eq(e.error?.param ?? e.param, param, `param for ${JSON.stringify(extra)}`);
        check(e.message.includes(needle), `${e.message} lacks ${needle}`);
      }
    }
    console.log(`${label}: streamed, json_object, GBNF, json_schema, guided_json, guided_choice, refusals: ok`);
  } catch (e) {
    fail(`${phase}: ${e.stack ?? e}\n${srv.log()}`);
  }
  await srv.stop();
}

await run(model, path.basename(model));
if (fixture && work) await run(makeTextCheckpoint(fixture, path.join(work, 'structured-text-ckpt')), 'fixture text checkpoint');
console.log('ok');
