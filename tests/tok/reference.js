// reference.js: writes the reference encodings and decodings of the corpus for one
// tokenizer directory, using the Hugging Face tokenizers library (Node bindings).
//   node reference.js DIR/tokenizer.json CORPUS_DIR OUT_FILE
// OUT_FILE lines, per case: "in HEX" (raw input bytes), "e1 IDS" and "e0 IDS" (encode with
// and without special tokens), "d0 HEX" and "d1 HEX" (decode of the e1 ids keeping and
// skipping special tokens). Inputs: corpus/tricky.txt (one escaped case per line), the
// paragraphs of corpus/mixed.txt grouped to about 2 KB, and the whole of mixed.txt.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('@anush008/tokenizers');

function unescape(line) {
  const out = [];
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c !== '\\' || i + 1 >= line.length) { out.push(...Buffer.from(c, 'utf8')); continue; }
    const e = line[++i];
    const simple = { n: 10, r: 13, t: 9, v: 11, f: 12, '\\': 92 };
    if (e in simple) out.push(simple[e]);
    else if (e === 'x') { out.push(parseInt(line.substr(i + 1, 2), 16)); i += 2; }
    else out.push(92, ...Buffer.from(e, 'utf8'));
  }
  return Buffer.from(out);
}

function cases(corpus) {
  const res = [];
  const tricky = fs.readFileSync(path.join(corpus, 'tricky.txt'), 'utf8').split('\n');
  for (const line of tricky) {
    if (line.startsWith('#') || line === '') continue;
    res.push(unescape(line));
  }
  const mixed = fs.readFileSync(path.join(corpus, 'mixed.txt'));
  let start = 0;
  for (let i = 0; i < mixed.length; i++) {
    if (i - start >= 2048 && mixed[i] === 10) {
      res.push(mixed.subarray(start, i + 1));
      start = i + 1;
    }
  }
  if (start < mixed.length) res.push(mixed.subarray(start));
  res.push(mixed);
  return res;
}

async function main() {
  const [file, corpus, out] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(file);
  const lines = [];
  for (const buf of cases(corpus)) {
    const text = buf.toString('utf8');
    const e1 = Array.from((await tok.encode(text, null, { addSpecialTokens: true })).getIds());
    const e0 = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    const d0 = await tok.decode(e1, false);
    const d1 = await tok.decode(e1, true);
    lines.push('in ' + buf.toString('hex'), 'e1 ' + e1.join(' '), 'e0 ' + e0.join(' '),
               'd0 ' + Buffer.from(d0, 'utf8').toString('hex'),
               'd1 ' + Buffer.from(d1, 'utf8').toString('hex'));
  }
  fs.writeFileSync(out, lines.join('\n') + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
