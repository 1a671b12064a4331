// reference_unit.js: prints the reference results for the small tokenizers of tests/tok/unit
// (one JSON array per line: name, text, ids with and without special tokens, decodings
// keeping and skipping special tokens). Output committed as tests/tok/unit/expected.jsonl:
//   node tests/tok/reference_unit.js > tests/tok/unit/expected.jsonl
const { Tokenizer } = require('@anush008/tokenizers');
const cases = {
  bytelevel: ["the lower in", "Hello world's 123", " <mask>  x<pad>   y", "a word here", "awordb", "ß→😀 \n\n  end  "],
  llamasplit: ["the lower 12345 it's", "e\u0301 x  \n\n y", "<s>hi<s>"],
  spm: ["hello world", "  hello", "xyz 😀 héllo", "<s>hello</s> b", ""],
  metaspace: ["hello world", "<s>hello world", "hello <s> world  b", " lead"],
  normseq: ["  ﬁAB İ 123 x4y  ", "ÉÀ 42"],
  splits: ["a-b+c|d12e34xxfxg", "--a++b||", "ab-ab+ab"],
};
(async () => {
  for (const [name, list] of Object.entries(cases)) {
    const t = Tokenizer.fromFile(`${__dirname}/unit/${name}/tokenizer.json`);
    for (const s of list) {
      const e1 = Array.from((await t.encode(s, null, { addSpecialTokens: true })).getIds());
      const e0 = Array.from((await t.encode(s, null, { addSpecialTokens: false })).getIds());
      const d0 = await t.decode(e1, false), d1 = await t.decode(e1, true);
      console.log(JSON.stringify([name, s, e1, e0, d0, d1]));
    }
  }
})().catch(e => { console.error(e); process.exit(1); });
