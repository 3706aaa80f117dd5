#!/usr/bin/env python3
"""End-to-end tests of the hf-hub destination against the fake Hub.

    /usr/bin/python3 tests/hub/test_hfhub_e2e.py --smelt BUILD/core/smelt \\
        --workdir DIR [--case NAME]... [--list]

Cases:
  demo-one-commit   the demo recipe (merged16 + GGUF F16/Q8_0, one pass) to a
                    new repo: ONE commit holding every file; each file read
                    back through the fake's resolve endpoint equals the file
                    of a localfs export of the same recipe, byte for byte; the
                    commit URL is printed; the model card's front matter and
                    table; upload progress as JSON; staging folder removed
  rerun-unchanged   the same export again: nothing is PUT, no commit is made
                    (the preupload gives each file's oid: all unchanged), and
                    smelt says so
  stale-shards      a sharded merged16 export, then an unsharded one: the
                    second commit deletes the old shards and index
  multipart         a file over the fake's multipart threshold goes as parts,
                    is completed and verified, and reads back identical
  create-pr         CreatePR=true: a pull request, its URL printed; main
                    unchanged
  private           Private=true creates a private repo; an existing public
                    repo with Private=true is refused before any upload
  card-behind-redirect  the Hub answers resolve for README.md with a
                    relative 307 (as huggingface.co does): smelt follows it,
                    recognises its own card and replaces it, keeps a person's
  model-card        ModelCard=FILE is uploaded as it is; a README.md a person
                    wrote on the Hub is not replaced; smelt's own card is
  export-cli        smelt export --to hf://owner/repo@branch --dest-set ...
  dry-run           smelt run --dry-run checks the token (whoami) and writes
                    nothing to the Hub

Needs numpy (the model generator) and the fake Hub (tests/hub/fakehub.py).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_hfhub_common import (TOKEN, Failure, Hub, check, demo_recipe, make_cases,  # noqa: E402
                               progress_lines, runner, sha256_bytes, staging_left, tree)

CASES, case = make_cases()

ALICE = {"token": TOKEN, "name": "alice", "orgs": ["acme"]}


def localfs_reference(ctx, d, **kw):
    """A localfs export of the same recipe: {path: sha256}."""
    model, adapter = ctx.demo()
    ref = os.path.join(d, "ref")
    recipe = demo_recipe(os.path.join(d, "ref.smelt"), model, adapter, ref, **kw)
    ctx.run_ok(["run", recipe, "--progress=none"], d)
    return tree(ref)


def front_matter(readme):
    text = readme.decode("utf-8")
    check(text.startswith("---\n"), "README.md has no YAML front matter: %r" % text[:200])
    block = text[4:text.index("\n---\n", 4)]
    fm, key = {}, None
    for line in block.splitlines():
        if line.startswith("- ") and key:
            fm.setdefault(key, []).append(json.loads(line[2:]) if line[2:].startswith('"') else line[2:])
        elif ":" in line:
            key, _, value = line.partition(":")
            value = value.strip()
            fm[key] = json.loads(value) if value.startswith('"') else (value or [])
    return fm, text


@case("demo-one-commit")
def _(ctx, d):
    want = localfs_reference(ctx, d)
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        recipe = demo_recipe(os.path.join(d, "hub.smelt"), model, adapter, None, repo="alice/demo")
        run = ctx.run_ok(["run", recipe, "--progress=json"], d, env=ctx.hub_env(hub, d))
        commits = hub.commits("alice/demo")
        ours = [c for c in commits if not c["initial"]]
        check(len(ours) == 1, "expected one commit, the Hub has %d: %r"
              % (len(ours), [c["title"] for c in ours]))
        # whoami is strictly rate-limited on the real Hub: asked once
        whoami = [r for r in hub.requests() if r["path"] == "/api/whoami-v2"]
        check(len(whoami) == 1, "whoami was called %d times" % len(whoami))
        check(hub.commit_posts() == 1, "the commit was POSTed %d times" % hub.commit_posts())
        files = hub.files("alice/demo")
        for path, digest in sorted(want.items()):
            check(path in files, "%s is missing from the repo (has %s)" % (path, sorted(files)))
            data = hub.download("alice/demo", path)
            check(sha256_bytes(data) == digest,
                  "%s read back from the Hub differs from the localfs export" % path)
        extra = set(files) - set(want) - {".gitattributes", "README.md"}
        check(not extra, "unexpected files in the repo: %s" % sorted(extra))
        # every weight file went through LFS, none as a regular file
        for path in want:
            if path.endswith((".safetensors", ".gguf")):
                check(files[path]["lfs"], "%s was committed as a regular file" % path)

        # what smelt says: the commit URL, for each export (JSON: on the
        # last line)
        url = ours[0]["url"]
        done = progress_lines(run.out)[-1]
        check(done["stage"] == "done" and len(done.get("exports", [])) == 2 and
              all(url in e["destination"] for e in done["exports"]),
              "the last JSON line does not give the commit URL %s: %r" % (url, done))

        # progress: an uploading stage measuring the bytes sent
        prog = [p for p in progress_lines(run.out) if p["stage"] == "uploading"]
        check(prog, "no \"uploading\" progress line")
        last = prog[-1]
        sent = hub.stored_bytes("alice/demo")
        check(last["bytes_total"] >= sent > 0 and last["bytes_done"] == last["bytes_total"],
              "upload progress ends at %d/%d bytes; the storage received %d" %
              (last["bytes_done"], last["bytes_total"], sent))
        check(all(a["bytes_done"] <= b["bytes_done"] or b["bytes_total"] != a["bytes_total"]
                  for a, b in zip(prog, prog[1:])), "upload bytes went backwards")
        check(abs(last["fraction"] - 1.0) < 1e-9, "upload fraction ends at %r" % last["fraction"])
        # the whole job's fraction never goes back: the export fills the
        # first half and the upload (this recipe's one uploading
        # destination) the second
        lines = progress_lines(run.out)
        fr = [p["fraction"] for p in lines]
        check(all(a <= b for a, b in zip(fr, fr[1:])), "the fraction went backwards: %r" % fr)
        check(abs(fr[-1] - 1.0) < 1e-9, "the fraction ends at %r" % fr[-1])
        before = [p["fraction"] for p in lines[:lines.index(prog[0])]]
        check(before and abs(max(before) - 0.5) < 1e-9,
              "before the upload the fraction reaches %r, not 0.5" % (before and max(before)))
        check(all(0.5 - 1e-9 <= p["fraction"] <= 1.0 for p in prog),
              "upload fractions outside [0.5, 1]: %r" % [p["fraction"] for p in prog])

        # the model card
        fm, text = front_matter(hub.download("alice/demo", "README.md"))
        check(fm.get("base_model") == "smelt-demo/tiny-llama", "base_model %r" % fm.get("base_model"))
        check(fm.get("library_name") == "transformers", "library_name %r" % fm.get("library_name"))
        check(fm.get("pipeline_tag") == "text-generation", "pipeline_tag %r" % fm.get("pipeline_tag"))
        for tag in ("gguf", "safetensors", "smelt", "llama"):
            check(tag in fm.get("tags", []), "tag %s missing: %r" % (tag, fm.get("tags")))
        for row in ("| demo.Q8_0.gguf |", "| demo.F16.gguf |", "| model.safetensors |"):
            check(row in text, "the card's table lacks %s" % row)
        check("| Q8_0 |" in text and "| F16 |" in text and "| BF16 |" in text,
              "the card's table lacks the types (Q8_0, F16, BF16)")
        check("llama-cli -hf alice/demo:Q8_0" in text and "ollama run hf.co/alice/demo:Q8_0" in text,
              "the card does not say how to run the GGUF files")
        check('from_pretrained("alice/demo")' in text, "the card lacks the transformers snippet")
        check(not staging_left(d), "staged files left behind: %s" % staging_left(d)[:5])


@case("rerun-unchanged")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        recipe = demo_recipe(os.path.join(d, "hub.smelt"), model, adapter, None, repo="alice/demo")
        env = ctx.hub_env(hub, d)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        puts_before = hub.storage_puts()
        check(puts_before, "the first run PUT nothing to storage")
        commits = len(hub.commits("alice/demo"))
        run = ctx.run_ok(["run", recipe, "--progress=plain"], d, env=env)
        again = hub.storage_puts()[len(puts_before):]
        check(not again, "the second run sent %d objects the Hub already had: %s"
              % (len(again), again[:3]))
        # the preupload says every file is there with the same content
        check(len(hub.commits("alice/demo")) == commits, "the unchanged export made a commit")
        check("unchanged" in run.out, "smelt does not say the repo was unchanged:\n%s" % run.out[-800:])


@case("stale-shards")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        env = ctx.hub_env(hub, d)
        sharded = demo_recipe(os.path.join(d, "a.smelt"), model, adapter, None, repo="alice/s",
                              exports=[("merged", "merged16", {"MaxShardSize": "100KB"})])
        ctx.run_ok(["run", sharded, "--progress=none"], d, env=env)
        first = hub.files("alice/s")
        shards = sorted(p for p in first if p.startswith("model-") and p.endswith(".safetensors"))
        check(len(shards) >= 2 and "model.safetensors.index.json" in first,
              "the sharded export is not sharded: %s" % sorted(first))
        whole = demo_recipe(os.path.join(d, "b.smelt"), model, adapter, None, repo="alice/s",
                            exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", whole, "--progress=none"], d, env=env)
        second = hub.files("alice/s")
        check("model.safetensors" in second, "model.safetensors missing after the second export")
        left = [p for p in shards + ["model.safetensors.index.json"] if p in second]
        check(not left, "stale shards left in the repo: %s" % left)
        ours = [c for c in hub.commits("alice/s") if not c["initial"]]
        check(len(ours) == 2, "expected 2 commits, got %d" % len(ours))


@case("multipart")
def _(ctx, d):
    want = localfs_reference(ctx, d, exports=[("merged", "merged16", {})])
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE], multipart_threshold=64 * 1024, chunk_size=40 * 1024) as hub:
        recipe = demo_recipe(os.path.join(d, "hub.smelt"), model, adapter, None, repo="alice/mp",
                             exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=ctx.hub_env(hub, d))
        parts = hub.part_puts()
        check(len(parts) >= 3, "expected model.safetensors in several parts, got %d part PUTs" % len(parts))
        check(hub.completions() >= 1, "no multipart completion call")
        check(sha256_bytes(hub.download("alice/mp", "model.safetensors")) == want["model.safetensors"],
              "model.safetensors read back differs after a multipart upload")


@case("create-pr")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        env = ctx.hub_env(hub, d)
        hub.create_repo("alice/pr", token=TOKEN)
        head = hub.head("alice/pr")
        recipe = demo_recipe(os.path.join(d, "hub.smelt"), model, adapter, None, repo="alice/pr",
                             dest_opts={"CreatePR": "true"},
                             exports=[("merged", "merged16", {})])
        run = ctx.run_ok(["run", recipe, "--progress=plain"], d, env=env)
        check(hub.head("alice/pr") == head, "CreatePR=true moved main")
        prs = hub.pull_requests("alice/pr")
        check(len(prs) == 1, "expected one pull request, got %r" % prs)
        check(prs[0]["url"] in run.out, "the PR URL %s is not printed:\n%s" % (prs[0]["url"], run.out))
        check("model.safetensors" in hub.files("alice/pr", prs[0]["ref"]),
              "the pull request does not hold model.safetensors")


@case("private")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        env = ctx.hub_env(hub, d)
        recipe = demo_recipe(os.path.join(d, "p.smelt"), model, adapter, None, repo="alice/priv",
                             dest_opts={"Private": "true"}, exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.is_private("alice/priv") is True, "Private=true did not make a private repo")

        hub.create_repo("alice/pub", token=TOKEN, private=False)
        recipe = demo_recipe(os.path.join(d, "q.smelt"), model, adapter, None, repo="alice/pub",
                             dest_opts={"Private": "true"}, exports=[("merged", "merged16", {})])
        puts = len(hub.storage_puts())
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        check(run.rc == 1 and "public" in run.error_line() and "alice/pub" in run.error_line(),
              "Private=true on a public repo: exit %d, %r" % (run.rc, run.error_line()))
        check(len(hub.storage_puts()) == puts, "bytes were uploaded to a public repo despite Private=true")
        check(len([c for c in hub.commits("alice/pub") if not c["initial"]]) == 0,
              "a commit was made to the public repo")


@case("model-card")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        env = ctx.hub_env(hub, d)
        mine = os.path.join(d, "card.md")
        with open(mine, "w") as f:
            f.write("---\nlicense: mit\n---\n\n# my own card\n")
        recipe = demo_recipe(os.path.join(d, "a.smelt"), model, adapter, None, repo="alice/c1",
                             dest_opts={"ModelCard": mine}, exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.download("alice/c1", "README.md") == open(mine, "rb").read(),
              "ModelCard= was not uploaded as it is")

        # a card a person wrote on the Hub stays
        hub.create_repo("alice/c2", token=TOKEN)
        hub.commit_file("alice/c2", "README.md", b"# hand-written\n", token=TOKEN)
        recipe = demo_recipe(os.path.join(d, "b.smelt"), model, adapter, None, repo="alice/c2",
                             exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.download("alice/c2", "README.md") == b"# hand-written\n",
              "smelt replaced a model card a person wrote")

        # smelt's own card is replaced by the next export's
        recipe = demo_recipe(os.path.join(d, "c.smelt"), model, adapter, None, repo="alice/c3",
                             exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        recipe = demo_recipe(os.path.join(d, "c.smelt"), model, adapter, None, repo="alice/c3",
                             dest_opts={"License": "apache-2.0"}, exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        fm, _ = front_matter(hub.download("alice/c3", "README.md"))
        check(fm.get("license") == "apache-2.0", "the second export's card did not replace the first")


@case("card-behind-redirect")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE], redirect_regular=True) as hub:
        env = ctx.hub_env(hub, d)
        # smelt's own card, read back through the Hub's relative 307, is
        # recognised and replaced by the next export's
        recipe = demo_recipe(os.path.join(d, "a.smelt"), model, adapter, None, repo="alice/r1",
                             exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        hub.reset_requests()
        recipe = demo_recipe(os.path.join(d, "b.smelt"), model, adapter, None, repo="alice/r1",
                             dest_opts={"License": "apache-2.0"}, exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        hops = [(r["endpoint"], r["status"]) for r in hub.requests()
                if r["endpoint"] in ("resolve", "resolve-cache") and r["file_path"] == "README.md"]
        check(hops == [("resolve", 307), ("resolve-cache", 200)],
              "README.md was not read through the redirect: %r" % hops)
        fm, _ = front_matter(hub.download("alice/r1", "README.md"))
        check(fm.get("license") == "apache-2.0", "smelt did not replace its own card behind a redirect")
        # a card a person wrote stays, also behind the redirect
        hub.create_repo("alice/r2", token=TOKEN)
        hub.commit_file("alice/r2", "README.md", b"# hand-written\n", token=TOKEN)
        recipe = demo_recipe(os.path.join(d, "c.smelt"), model, adapter, None, repo="alice/r2",
                             exports=[("merged", "merged16", {})])
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.download("alice/r2", "README.md") == b"# hand-written\n",
              "smelt replaced a model card a person wrote")


@case("export-cli")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        env = ctx.hub_env(hub, d)
        hub.create_repo("acme/cli", token=TOKEN)
        hub.create_branch("acme/cli", "dev", token=TOKEN)
        run = ctx.run_ok(["export", "--model", model, "--adapter", adapter, "--format", "merged16",
                          "--to", "hf://acme/cli@dev", "--dest-set", "CommitMessage=from the CLI",
                          "--progress=plain"], d, env=env)
        commits = [c for c in hub.commits("acme/cli", "dev") if not c["initial"]]
        check(len(commits) == 1 and commits[0]["title"] == "from the CLI",
              "expected one commit titled “from the CLI” on dev: %r" % commits)
        check(commits[0]["url"] in run.out, "the commit URL is not printed")
        check("model.safetensors" not in hub.files("acme/cli", "main"), "the export went to main")
        bad = ctx.run(["export", "--model", model, "--format", "merged16", "--to", "hf://acme"],
                      d, env=env)
        check(bad.rc == 2 and "owner/name" in bad.err, "hf://acme: exit %d %r" % (bad.rc, bad.err))


@case("dry-run")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=[ALICE]) as hub:
        recipe = demo_recipe(os.path.join(d, "hub.smelt"), model, adapter, None, repo="alice/dry")
        run = ctx.run_ok(["run", recipe, "--dry-run"], d, env=ctx.hub_env(hub, d))
        check("alice/dry" in run.out, "the plan does not name the repo")
        reqs = hub.requests()
        check(any(r["path"] == "/api/whoami-v2" for r in reqs), "--dry-run did not check the token")
        writes = [r for r in reqs if r["method"] != "GET"]
        check(not writes, "--dry-run sent %s" % ["%s %s" % (r["method"], r["path"]) for r in writes])
        check(not hub.repo_exists("alice/dry"), "--dry-run created the repo")


if __name__ == "__main__":
    sys.exit(runner(__doc__, CASES))
