#!/usr/bin/env python3
"""The fake Hub against the Hub's own JavaScript client: @huggingface/hub
(pinned in tests/llama/fetch-test-deps.sh) uploads files to tests/hub/
fakehub.py through hub-client-check.mjs; this test then reads them back
through the fake's resolve endpoint over HTTP and compares them byte for
byte with the originals, and checks what the library sent against the
protocol notes (preupload modes, LFS batch, multipart, one commit, no token
at the storage listener).  A fake that deviated from the real Hub where the
library depends on it would make the library fail here.

    /usr/bin/python3 tests/hub/test_fakehub_client.py --node NODE --deps CACHE_DIR \\
        [--workdir DIR]

Prints "ok CASE" / "FAIL CASE: why" and "N passed, M failed"; non-zero exit
status on failure.  Takes a couple of seconds (about 26 MB are uploaded).
"""

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fakehub import FakeHub  # noqa: E402

TOKEN = "hf_jsClientCheck00000000000000000000000"
MiB = 1024 * 1024
REPO = "alice/js-check"
MULTIPART_THRESHOLD = 12 * MiB
CHUNK = 5 * MiB


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def make_files(root):
    """The first commit's files: {path: bytes}."""
    rnd = random.Random(20260601)
    files = {
        "README.md": b"---\nlicense: mit\n---\n\n# checked with @huggingface/hub\n",
        "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n',
        # over the 10 MiB regular-file limit, not in the default .gitattributes
        "weights.gguf": b"GGUF\x03\x00\x00\x00" + rnd.randbytes(11 * MiB),
        # *.safetensors is LFS by .gitattributes; above the multipart threshold
        "model.safetensors": rnd.randbytes(13 * MiB + 12345),
        "sub/tokenizer.model": rnd.randbytes(3000),
        # small, no LFS rule, binary sample: LFS by content
        "blob.dat": b"\x00\x01" + rnd.randbytes(2000),
    }
    for p, b in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
        with open(os.path.join(root, p), "wb") as f:
            f.write(b)
    return files


def run_case(args, workdir):
    files_dir = os.path.join(workdir, "files")
    shutil.rmtree(files_dir, ignore_errors=True)
    files = make_files(files_dir)
    lfs_paths = {"weights.gguf", "model.safetensors", "sub/tokenizer.model", "blob.dat"}
    with FakeHub(workdir, users=[{"token": TOKEN, "name": "alice", "orgs": ["acme"]}],
                 multipart_threshold=MULTIPART_THRESHOLD, chunk_size=CHUNK) as hub:
        t0 = time.monotonic()
        p = subprocess.run([args.node, os.path.join(HERE, "hub-client-check.mjs"), "--deps", args.deps,
                            "--hub", hub.endpoint, "--token", TOKEN, "--repo", REPO, "--files", files_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        check(p.returncode == 0, "hub-client-check.mjs failed (exit %d):\n%s" % (p.returncode, p.stderr[-3000:]))
        out = json.loads(p.stdout)
        js_seq = max(r["seq"] for r in hub.requests())     # what the library sent ends here
        print("  @huggingface/hub run: %.1f s" % (time.monotonic() - t0))

        # what the library got back
        check(out["whoami"] == {"name": "alice", "type": "user", "role": "write", "orgs": ["acme"]},
              "whoAmI: %r" % out["whoami"])
        check(out["repoUrl"] == hub.endpoint + "/" + REPO, "createRepo url %r" % out["repoUrl"])
        check(out["createAgainStatus"] == 409, "createRepo on an existing repo: %r" % out["createAgainStatus"])
        check(out["uploaded"] == {p: sha(b) for p, b in files.items()}, "the script read other files")
        commits = hub.commits(REPO)
        check([c["title"] for c in commits] == ["initial commit", "upload from @huggingface/hub", "copy and delete"],
              "history of main: %r" % [c["title"] for c in commits])
        check(out["commit1"]["oid"] == commits[1]["oid"] and out["commit1"]["url"] == commits[1]["url"]
              and out["commit2"]["oid"] == commits[2]["oid"], "commit ids/urls the library reported")
        check(out["staleStatus"] == 412, "a commit on a stale parent gave %r" % out["staleStatus"])
        prs = hub.pull_requests(REPO)
        check(len(prs) == 1 and out["pr"]["url"] == prs[0]["url"] == hub.endpoint + "/" + REPO + "/discussions/1",
              "pull request %r / %r" % (out["pr"], prs))
        check("pr.txt" in hub.files(REPO, "refs/pr/1") and "pr.txt" not in hub.files(REPO), "the PR's file")

        # every file read back over HTTP (resolve, LFS through the storage redirect)
        c1 = commits[1]["oid"]
        for path, blob in files.items():
            got = hub.http_download(REPO, path, rev=c1)
            check(got == blob, "%s read back through resolve differs (%d vs %d bytes)" % (path, len(got), len(blob)))
        check(hub.http_download(REPO, "copy/weights.gguf") == files["weights.gguf"], "copy/weights.gguf")
        main = hub.files(REPO)
        check("config.json" not in main and "copy/weights.gguf" in main, "commit 2 (delete, copy): %s" % sorted(main))
        first = hub.files(REPO, c1)
        modes = {p: first[p]["lfs"] for p in files}
        check(modes == {p: p in lfs_paths for p in files}, "regular/LFS split %r" % modes)
        ga = hub.download(REPO, ".gitattributes").decode()
        for p in ("weights.gguf", "blob.dat"):
            check("\n%s filter=lfs diff=lfs merge=lfs -text\n" % p in ga, ".gitattributes lacks %s" % p)
        # (the root-level weights.gguf pattern already covers copy/weights.gguf)
        check("copy/weights.gguf filter" not in ga, "a second line for copy/weights.gguf")

        # what the library sent
        batches = hub.requests("lfs-batch")
        check(len(batches) == 2, "%d LFS batch calls" % len(batches))
        b1, b2 = batches[0]["json"], batches[1]["json"]
        check(b1["transfers"] == ["basic", "multipart"] and b1["hash_algo"] == "sha_256"
              and b1["ref"] == {"name": "main"}, "first batch (useXet: false): %r" % {k: b1[k] for k in b1 if k != "objects"})
        check("xet" in b2["transfers"], "second batch did not offer xet: %r" % b2["transfers"])
        check({o["oid"]: o["size"] for o in b1["objects"]} == {sha(files[p]): len(files[p]) for p in lfs_paths},
              "batch objects")
        check([o["action"] for o in batches[1]["objects"]] == ["skip", "upload"],
              "second batch: the known object skipped, extra.bin uploaded: %r" % batches[1]["objects"])
        extra = hashlib.sha512(b"extra.bin").digest()
        check(out["commit2"]["extra"] == sha(extra) and hub.http_download(REPO, "extra.bin") == extra,
              "extra.bin (the LFS file of the commit that offered xet)")
        singles = [x for x in hub.storage_puts() if x["part"] is None]
        parts = hub.part_puts()
        check(sorted(x["oid"] for x in singles) == sorted([sha(files[p]) for p in lfs_paths - {"model.safetensors"}]
                                                          + [sha(extra)]),
              "single PUTs %r" % singles)
        n = math.ceil(len(files["model.safetensors"]) / CHUNK)
        check(sorted(x["part"] for x in parts) == list(range(1, n + 1)) and hub.completions() == 1,
              "multipart: parts %r, %d completions" % ([x["part"] for x in parts], hub.completions()))
        check(all(x["complete"] for x in singles + parts), "an incomplete PUT")
        pre = hub.requests("preupload")[0]["json"]["files"]
        check(all(len(f["sample"]) == 4 * math.ceil(min(512, len(files[f["path"]])) / 3) for f in pre),
              "preupload samples are not the first 512 bytes")
        lines = hub.requests("commit")[0]["ndjson"]
        keys = {l["value"]["path"]: l["key"] for l in lines[1:]}
        check(lines[0]["key"] == "header" and keys == {p: "lfsFile" if p in lfs_paths else "file" for p in files},
              "commit lines %r" % keys)
        check(not hub.protocol_warnings(), "protocol warnings: %r" % hub.protocol_warnings())
        api = [r for r in hub.requests(listener="hub") if r["endpoint"] != "completion" and r["seq"] <= js_seq]
        check(all(r["account"] == "alice" for r in api), "Hub requests without the token: %r"
              % [r["path"] for r in api if r["account"] != "alice"])
        check(not [r for r in hub.requests(listener="storage") if "authorization" in r["headers"]],
              "Authorization reached storage")
        check(not hub.violations(), "violations %r" % hub.violations())

        # what the library read back
        check(out["modelInfo"]["name"] == REPO and out["modelInfo"]["sha"] == hub.head(REPO) and
              out["modelInfo"]["siblings"] == sorted(main), "modelInfo %r" % out["modelInfo"])
        listed = {f["path"]: f for f in out["listFiles"] if f["type"] == "file"}
        check(set(listed) == set(main), "listFiles %s" % sorted(listed))
        for path, f in listed.items():
            want_lfs = main[path]["oid"] if main[path]["lfs"] else None
            check(f["size"] == main[path]["size"] and f["lfs"] == want_lfs, "listFiles entry %s: %r" % (path, f))
        check(out["downloads"] == {"weights.gguf": sha(files["weights.gguf"]), "README.md": sha(files["README.md"])},
              "downloadFile %r" % out["downloads"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--node", default="node")
    p.add_argument("--deps", default=os.environ.get("SMELT_TEST_DEPS") or
                   os.path.join(os.path.expanduser("~"), ".cache", "smelt", "test-deps"))
    p.add_argument("--workdir")
    args = p.parse_args(argv)
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="test-fakehub-client-")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.monotonic()
    try:
        run_case(args, workdir)
        why = None
    except Failure as e:
        why = str(e)
    except Exception as e:
        import traceback
        why = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    if why is None:
        print("ok huggingface-js-client (%.1f s)" % (time.monotonic() - t0))
        print("1 passed, 0 failed")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print("FAIL huggingface-js-client: %s" % why)
    print("0 passed, 1 failed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
