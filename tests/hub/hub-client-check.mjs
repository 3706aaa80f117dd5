// The Hub's own JavaScript client (@huggingface/hub) against the fake Hub:
// if the fake answers the way the real Hub does, the library's whole upload
// path (createRepo, preupload, LFS batch, single and multipart PUTs, the
// NDJSON commit, pull requests, parentCommit) works against it unchanged.
//
//   node hub-client-check.mjs --deps CACHE_DIR --hub URL --token hf_... \
//       --repo owner/name --files DIR > result.json
//
// DIR holds the files of the first commit (uploaded with useXet: false);
// the script then makes a second commit with the library's defaults (it
// offers the "xet" transfer; a Hub that answers "basic" gets plain LFS),
// opens a pull request, tries a commit on a stale parent, and reads back
// the repo with modelInfo, listFiles and downloadFile.  It prints one JSON
// object describing what the library returned; tests/hub/
// test_fakehub_client.py compares it with the fake's own records.  The
// package comes from CACHE_DIR/node/node_modules (CACHE_DIR: --deps, else
// $SMELT_TEST_DEPS, else ~/.cache/smelt/test-deps; filled by
// tests/llama/fetch-test-deps.sh).

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

function usage(msg) {
  process.stderr.write(`hub-client-check: ${msg}\n` +
    'usage: node hub-client-check.mjs [--deps CACHE_DIR] --hub URL --token TOKEN ' +
    '--repo OWNER/NAME --files DIR\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = {
    deps: process.env.SMELT_TEST_DEPS || path.join(os.homedir(), '.cache', 'smelt', 'test-deps'),
  };
  const keys = { '--deps': 'deps', '--hub': 'hub', '--token': 'token', '--repo': 'repo', '--files': 'files' };
  for (let i = 0; i < argv.length; i++) {
    const k = keys[argv[i]];
    if (!k) usage(`unknown argument ${argv[i]}`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    a[k] = argv[++i];
  }
  for (const k of ['hub', 'token', 'repo', 'files']) {
    if (!a[k]) usage(`--${k} is required`);
  }
  return a;
}

function loadHub(deps) {
  const modules = path.join(deps, 'node', 'node_modules');
  // resolve as if from a file inside that node_modules' parent
  const require = createRequire(path.join(modules, 'resolve-from-here.js'));
  try {
    return require('@huggingface/hub');
  } catch (e) {
    throw new Error(`@huggingface/hub cannot be loaded from ${modules} (${e.message}); ` +
      'run tests/llama/fetch-test-deps.sh');
  }
}

function listTree(dir, prefix = '') {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true }).sort((x, y) => (x.name < y.name ? -1 : 1))) {
    const rel = prefix ? `${prefix}/${ent.name}` : ent.name;
    if (ent.isDirectory()) out.push(...listTree(path.join(dir, ent.name), rel));
    else out.push(rel);
  }
  return out;
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// the HTTP status of a rejected promise, or 0 when it resolved
async function statusOf(promise) {
  try {
    await promise;
    return 0;
  } catch (e) {
    if (typeof e.statusCode === 'number') return e.statusCode;
    throw e;
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const hub = loadHub(a.deps);
  const creds = { accessToken: a.token, hubUrl: a.hub };
  const repo = { type: 'model', name: a.repo };
  const out = {};

  const me = await hub.whoAmI(creds);
  out.whoami = { name: me.name, type: me.type, role: me.auth?.accessToken?.role ?? null,
                 orgs: (me.orgs || []).map((o) => o.name) };

  const created = await hub.createRepo({ ...creds, repo, private: false });
  out.repoUrl = created.repoUrl;
  out.createAgainStatus = await statusOf(hub.createRepo({ ...creds, repo }));

  // commit 1: every file of DIR, plain LFS (no Xet offered)
  const files = listTree(a.files);
  const ops = files.map((p) => ({
    operation: 'addOrUpdate',
    path: p,
    content: new Blob([fs.readFileSync(path.join(a.files, p))]),
  }));
  const c1 = await hub.commit({ ...creds, repo, title: 'upload from @huggingface/hub', operations: ops,
                                useXet: false });
  out.commit1 = { oid: c1.commit.oid, url: c1.commit.url, hookOutput: c1.hookOutput };
  out.uploaded = Object.fromEntries(files.map((p) => [p, sha256(fs.readFileSync(path.join(a.files, p)))]));

  // commit 2, the library's defaults (Xet offered): an LFS file whose bytes
  // the Hub already has under another name, a new LFS file (sent through Xet
  // if the Hub answered "xet"), a deletion, on an explicit parent
  const gguf = files.find((p) => p.endsWith('.gguf'));
  const regular = files.find((p) => p.endsWith('.json'));
  const extra = crypto.createHash('sha512').update('extra.bin').digest();   // 64 bytes
  const c2 = await hub.commit({
    ...creds, repo, title: 'copy and delete', parentCommit: c1.commit.oid,
    operations: [
      { operation: 'addOrUpdate', path: `copy/${gguf}`, content: new Blob([fs.readFileSync(path.join(a.files, gguf))]) },
      { operation: 'addOrUpdate', path: 'extra.bin', content: new Blob([extra]) },
      { operation: 'delete', path: regular },
    ],
  });
  out.commit2 = { oid: c2.commit.oid, url: c2.commit.url, copied: `copy/${gguf}`, deleted: regular,
                  extra: sha256(extra) };

  // a pull request
  const pr = await hub.commit({
    ...creds, repo, title: 'a pull request', isPullRequest: true, useXet: false,
    operations: [{ operation: 'addOrUpdate', path: 'pr.txt', content: new Blob(['proposed change\n']) }],
  });
  out.pr = { url: pr.pullRequestUrl, oid: pr.commit.oid };

  // a commit on a stale parent is refused
  out.staleStatus = await statusOf(hub.commit({
    ...creds, repo, title: 'stale', parentCommit: c1.commit.oid, useXet: false,
    operations: [{ operation: 'addOrUpdate', path: 'late.txt', content: new Blob(['late\n']) }],
  }));

  // read it back
  const info = await hub.modelInfo({ ...creds, name: a.repo, additionalFields: ['sha', 'siblings'] });
  out.modelInfo = { name: info.name, id: info.id, private: info.private, sha: info.sha,
                    siblings: (info.siblings || []).map((s) => s.rfilename).sort() };
  out.listFiles = [];
  for await (const f of hub.listFiles({ ...creds, repo, recursive: true })) {
    out.listFiles.push({ type: f.type, path: f.path, size: f.size, lfs: f.lfs ? f.lfs.oid : null });
  }
  out.downloads = {};
  for (const p of [gguf, 'README.md']) {
    const blob = await hub.downloadFile({ ...creds, repo, path: p });
    out.downloads[p] = blob ? sha256(Buffer.from(await blob.arrayBuffer())) : null;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`hub-client-check: ${e.stack || e}\n`);
  process.exit(1);
});
