// Reference tokenizer for the GGUF tests: Hugging Face's own JavaScript
// implementation (@huggingface/tokenizers, the code Transformers.js uses).
//
//   node hf-tokenize.mjs [--deps CACHE_DIR] TOKENIZER_DIR < texts.json
//
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json; texts.json is
// a JSON array of strings. Prints a JSON array with, for each string, the ids
// of tokenizer.encode(text) with its defaults: special tokens added as the
// tokenizer's post-processor says (add_special_tokens = true), and special
// tokens written in the text recognised as such. Nothing is fetched from the
// network.
//
// The package is taken from CACHE_DIR/node/node_modules, CACHE_DIR being
// --deps, else $SMELT_TEST_DEPS, else ~/.cache/smelt/test-deps (the folder
// tests/llama/fetch-test-deps.sh fills).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

function usage(msg) {
  process.stderr.write(`hf-tokenize: ${msg}\n` +
    'usage: node hf-tokenize.mjs [--deps CACHE_DIR] TOKENIZER_DIR < texts.json\n');
  process.exit(1);
}

function parseArgs(argv) {
  let deps = process.env.SMELT_TEST_DEPS ||
    path.join(os.homedir(), '.cache', 'smelt', 'test-deps');
  let dir = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--deps') {
      if (i + 1 >= argv.length) usage('--deps needs a folder');
      deps = argv[++i];
    } else if (argv[i].startsWith('-')) {
      usage(`unknown option ${argv[i]}`);
    } else if (dir === null) {
      dir = argv[i];
    } else {
      usage('only one TOKENIZER_DIR');
    }
  }
  if (dir === null) usage('missing TOKENIZER_DIR');
  return { deps, dir };
}

async function loadTokenizerClass(deps) {
  const modules = path.join(deps, 'node', 'node_modules');
  // resolve as if from a file inside that node_modules' parent, so Node's
  // own package-exports rules pick the file
  const require = createRequire(path.join(modules, 'resolve-from-here.js'));
  let file;
  try {
    file = require.resolve('@huggingface/tokenizers');
  } catch (e) {
    throw new Error(`@huggingface/tokenizers not found under ${modules} ` +
      '(run tests/llama/fetch-test-deps.sh)');
  }
  const mod = await import(pathToFileURL(file).href);
  // a CommonJS build arrives as the default export
  return mod.Tokenizer ?? mod.default.Tokenizer;
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${e.message}`);
  }
}

async function main() {
  const { deps, dir } = parseArgs(process.argv.slice(2));
  const Tokenizer = await loadTokenizerClass(deps);
  const tokenizer = new Tokenizer(readJson(path.join(dir, 'tokenizer.json')),
                                  readJson(path.join(dir, 'tokenizer_config.json')));

  let texts;
  try {
    texts = JSON.parse(fs.readFileSync(0, 'utf8'));
  } catch (e) {
    throw new Error(`standard input: ${e.message}`);
  }
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string'))
    throw new Error('standard input: expected a JSON array of strings');

  const ids = texts.map((t) => Array.from(tokenizer.encode(t).ids));
  process.stdout.write(JSON.stringify(ids) + '\n');
}

main().catch((e) => {
  process.stderr.write(`hf-tokenize: ${e.message}\n`);
  process.exit(1);
});
