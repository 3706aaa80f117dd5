#!/usr/bin/env python3
"""The hf-hub destination against a misbehaving Hub: retries, resumption,
and the errors it gives.

    /usr/bin/python3 tests/hub/test_hfhub_faults.py --smelt BUILD/core/smelt \\
        --workdir DIR [--case NAME]... [--list]

Cases (each asserts what reached the fake Hub, not only smelt's exit status):
  rate-limit-429    the storage PUT answers 429 with Retry-After: 1 once:
                    smelt waits at least that long, sends it again, succeeds
  rate-limit-batch  the LFS batch answers 429 with RateLimit r=0;t=1 once
  server-500        the preupload and a PUT answer 500 once each: retried,
                    one commit
  dropped-upload    the connection drops in the middle of a PUT once: the
                    object is sent again in the same run, the file reads
                    back whole
  dropped-part      a multipart upload whose second part's connection drops
                    halfway once: only that part is sent again, every part
                    arrives once whole, one completion, the file reads back
                    whole
  resume            every PUT of one object drops: the run fails, nothing is
                    committed; the next run sends only that object (the
                    others are stored) and commits everything once
  bad-token-401     whoami answers 401: exit 1 before any work, the error
                    names where the token came from, no repo made
  no-write-403      repo creation answers 403 for the namespace: the error
                    names the account and the repo; no upload
  foreign-namespace a repo in a namespace the account does not belong to:
                    refused after whoami, naming the account
  stale-parent-412  the branch moves during the upload: 412, the error says
                    so, nothing committed
  lost-commit-reply the commit lands but its reply is dropped: exactly one
                    commit, smelt reports success with its URL
  commit-500-nothing-landed  the commit answers 500 without committing:
                    checked, sent again, one commit
  slow-server       every reply comes slowly: the upload completes, with
                    progress lines
  retries-exhausted a PUT that always answers 503: the run fails after the
                    retries, naming the file; no commit; no staged file left
  expired-urls      the pre-signed URLs expire during the upload (storage
                    answers 403): a second LFS batch gives fresh ones, the
                    upload completes, one commit
  lfs-object-error  the LFS batch refuses one object: the error names the file
                    and the Hub's message; nothing is uploaded or committed
  missing-repo      CreatePR on a repo that does not exist: 404, the error
                    names the repo
  missing-branch    Revision= a branch that does not exist: the error says so
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_hfhub_common import (TOKEN, Hub, check, demo_recipe, make_cases,  # noqa: E402
                               progress_lines, runner, sha256_bytes, staging_left, tree)

CASES, case = make_cases()

ALICE = {"token": TOKEN, "name": "alice", "orgs": ["acme"]}
MERGED = [("merged", "merged16", {})]
BOTH = None   # the demo recipe's merged16 + GGUF


def setup(ctx, d, hub, repo="alice/f", exports=MERGED, dest_opts=None):
    model, adapter = ctx.demo()
    recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo=repo,
                         exports=exports, dest_opts=dest_opts)
    return recipe, ctx.hub_env(hub, d)


def our_commits(hub, repo, rev="main"):
    return [c for c in hub.commits(repo, rev) if not c["initial"]] if hub.repo_exists(repo) else []


def reference(ctx, d, exports=MERGED):
    model, adapter = ctx.demo()
    ref = os.path.join(d, "ref")
    ctx.run_ok(["run", demo_recipe(os.path.join(d, "ref.smelt"), model, adapter, ref,
                                   exports=exports), "--progress=none"], d)
    return tree(ref)


def check_repo_equals(hub, repo, want):
    files = hub.files(repo)
    for path, digest in want.items():
        check(path in files, "%s missing from %s" % (path, repo))
        check(sha256_bytes(hub.download(repo, path)) == digest, "%s differs after the upload" % path)


@case("rate-limit-429")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.fail("put", status=429, times=1, headers={"Retry-After": "1"})
        run = ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.fault_hits("put") == 1, "the 429 was not served")
        gaps = hub.retry_gaps("put")
        check(gaps and gaps[0] >= 1.9, "smelt retried after %r s; Retry-After 1 means 2 s (1 + 1)" % gaps)
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")
        check(run.secs < 30, "took %.1f s" % run.secs)


@case("rate-limit-batch")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.fail("lfs-batch", status=429, times=1, headers={"RateLimit": '"api";r=0;t=1',
                                                           "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        gaps = hub.retry_gaps("lfs-batch")
        check(gaps and gaps[0] >= 1.9, "RateLimit t=1 means a 2 s wait; smelt waited %r" % gaps)
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")


@case("server-500")
def _(ctx, d):
    want = reference(ctx, d)
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.fail("preupload", status=500, times=1)
        hub.fail("put", status=500, times=1)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.fault_hits("preupload") == 1 and hub.fault_hits("put") == 1, "faults not served")
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")
        check_repo_equals(hub, "alice/f", want)


@case("dropped-upload")
def _(ctx, d):
    want = reference(ctx, d)
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.drop("put", times=1, after_bytes=50000)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.fault_hits("put") == 1, "the connection was not dropped")
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")
        check_repo_equals(hub, "alice/f", want)


@case("dropped-part")
def _(ctx, d):
    want = reference(ctx, d)
    with Hub(d, users=[ALICE], multipart_threshold=64 * 1024, chunk_size=40 * 1024) as hub:
        recipe, env = setup(ctx, d, hub, dest_opts={"Connections": "1"})
        hub.drop("part-put", times=1, after=1, after_bytes=20000)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.fault_hits("part-put") == 1, "the part's connection was not dropped")
        parts = hub.part_puts()
        done = [p["part"] for p in parts if p["complete"]]
        dropped = [p["part"] for p in parts if not p["complete"]]
        check(len(dropped) == 1, "expected one cut part, saw %r" % dropped)
        check(sorted(done) == sorted(set(done)) and set(done) == set(range(1, len(set(done)) + 1)),
              "every part must arrive whole exactly once: %r" % done)
        check(dropped[0] in done, "the cut part %d was not sent again" % dropped[0])
        check(len(done) >= 3, "the file did not go in several parts: %r" % done)
        check(hub.completions() == 1, "expected one completion, saw %d" % hub.completions())
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")
        check_repo_equals(hub, "alice/f", want)


@case("resume")
def _(ctx, d):
    want = reference(ctx, d, exports=BOTH)
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, exports=BOTH)
        # every attempt at demo.Q8_0.gguf drops: the run must give up (the
        # export is deterministic: its oid is the localfs export's SHA-256)
        q8 = want["demo.Q8_0.gguf"]
        hub.drop("put", times=100, after_bytes=1000, path="demo.Q8_0.gguf")
        run = ctx.run(["run", recipe, "--progress=none", "--set", "out.Retries=1"], d, env=env)
        check(run.rc == 1, "the run should fail when an upload keeps dropping (exit %d)" % run.rc)
        check("demo.Q8_0.gguf" in run.error_line(), "the error does not name the file: %r" % run.error_line())
        check(not our_commits(hub, "alice/f"), "a commit was made although an upload failed")
        check(not staging_left(d), "staged files left after the failure")
        stored_first = {p["oid"] for p in hub.storage_puts() if p["complete"]}
        check(stored_first, "nothing was stored by the failed run")

        hub.clear_faults()
        before = len(hub.storage_puts())
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        second = hub.storage_puts()[before:]
        resent = [p for p in second if p["oid"] in stored_first]
        check(not resent, "the second run sent again objects the Hub had: %s" % resent[:3])
        check([p for p in second if p["oid"] == q8 and p["complete"]],
              "the second run did not send the missing object")
        check(len(our_commits(hub, "alice/f")) == 1, "expected exactly one commit")
        check_repo_equals(hub, "alice/f", want)


@case("bad-token-401")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        env["HF_TOKEN"] = "hf_notAValidToken000000000000000000"
        ctx.tokens_seen.append(env["HF_TOKEN"])
        t0 = time.monotonic()
        run = ctx.run(["run", recipe, "--progress=json"], d, env=env)
        line = run.error_line()
        check(run.rc == 1, "exit %d" % run.rc)
        check("HF_TOKEN" in line and "401" in line and "alice/f" in line,
              "the error should name the token's source, the status and the repo: %r" % line)
        check(not [p for p in progress_lines(run.out) if p["stage"] == "exporting" and p["bytes_done"] > 0],
              "the export ran before the token was checked")
        check(not hub.repo_exists("alice/f"), "a repo was created with a bad token")
        check(time.monotonic() - t0 < 20, "a bad token took long to report")


@case("no-write-403")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, repo="acme/locked")
        hub.fail("create", status=403, times=100,
                 body={"error": "You don't have the rights to create a model under this namespace"})
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "alice" in line and "acme/locked" in line and "403" in line,
              "the error should name the account, the repo and the status: %r" % line)
        check(not hub.storage_puts(), "bytes were uploaded without write access")


@case("foreign-namespace")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, repo="bob/model")
        run = ctx.run(["run", recipe, "--progress=json"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "“alice”" in line and "“bob”" in line and "acme" in line,
              "the error should name the account, its organizations and the namespace: %r" % line)
        check(not [r for r in hub.requests() if r["method"] != "GET"],
              "requests other than whoami were sent")


@case("stale-parent-412")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.create_repo("alice/f", token=TOKEN)
        # someone else commits while smelt uploads
        hub.on("put", lambda: hub.commit_file("alice/f", "other.txt", b"moved\n", token=TOKEN), times=1)
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "412" in line and "moved" in line and "alice/f" in line,
              "expected the stale-parent error: exit %d %r" % (run.rc, line))
        titles = [c["title"] for c in our_commits(hub, "alice/f")]
        check(titles == ["other.txt"], "only the other commit may be there: %r" % titles)
        check(hub.storage_puts(), "the fault did not happen during the upload")


@case("lost-commit-reply")
def _(ctx, d):
    want = reference(ctx, d)
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.lose_commit_reply(times=1)
        run = ctx.run_ok(["run", recipe, "--progress=plain"], d, env=env)
        ours = our_commits(hub, "alice/f")
        check(len(ours) == 1, "expected exactly one commit after a lost reply, got %d" % len(ours))
        check(ours[0]["url"] in run.out, "the commit URL is not reported after the lost reply")
        check(hub.commit_posts() == 1, "the commit was POSTed %d times" % hub.commit_posts())
        check_repo_equals(hub, "alice/f", want)


@case("commit-500-nothing-landed")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.fail("commit", status=500, times=1)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        check(hub.commit_posts() == 2, "expected the commit sent twice (500, then checked), got %d"
              % hub.commit_posts())
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")


@case("slow-server")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, exports=BOTH)
        hub.slow(delay=0.3, rate=400000)
        run = ctx.run_ok(["run", recipe, "--progress=json"], d, env=env, timeout=300)
        prog = [p for p in progress_lines(run.out) if p["stage"] == "uploading"]
        check(len(prog) >= 3, "a slow upload should report progress several times: %d lines" % len(prog))
        check(any(0 < p["bytes_done"] < p["bytes_total"] for p in prog), "no intermediate progress")
        check(any(p["rate"] > 0 for p in prog), "no upload rate")
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")


@case("retries-exhausted")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.fail("put", status=503, times=1000)
        run = ctx.run(["run", recipe, "--progress=none", "--set", "out.Retries=2"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "503" in line and "model.safetensors" in line,
              "expected an error naming the file and the status: %r" % line)
        check(hub.fault_hits("put") == 3, "expected 3 attempts (Retries=2), saw %d" % hub.fault_hits("put"))
        check(not our_commits(hub, "alice/f"), "committed despite a failed upload")
        check(not staging_left(d), "staged files left")


@case("expired-urls")
def _(ctx, d):
    want = reference(ctx, d, exports=BOTH)
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, exports=BOTH)
        hub.on("put", hub.expire_urls, times=1)
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)
        denied = [p for p in hub.storage_puts() if p["status"] == 403]
        check(denied, "no storage PUT was refused as expired")
        check(hub.lfs_batch_count() == 2, "expected a second LFS batch for fresh URLs, saw %d"
              % hub.lfs_batch_count())
        check(len(our_commits(hub, "alice/f")) == 1, "expected one commit")
        check_repo_equals(hub, "alice/f", want)


@case("lfs-object-error")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub)
        hub.lfs_object_error(code=422, message="this object is not welcome", times=1)
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "model.safetensors" in line and "not welcome" in line and "422" in line,
              "expected an error naming the file and the Hub's message: %r" % line)
        check(not hub.storage_puts() and not our_commits(hub, "alice/f"), "uploaded or committed anyway")


@case("missing-repo")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        recipe, env = setup(ctx, d, hub, repo="acme/nothing", dest_opts={"CreatePR": "true"})
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "acme/nothing" in line and "does not exist" in line,
              "expected a repo-not-found error naming it: %r" % line)
        check(not hub.repo_exists("acme/nothing"), "CreatePR created the repo")


@case("missing-branch")
def _(ctx, d):
    with Hub(d, users=[ALICE]) as hub:
        hub.create_repo("alice/f", token=TOKEN)
        recipe, env = setup(ctx, d, hub, dest_opts={"Revision": "nope"})
        run = ctx.run(["run", recipe, "--progress=none"], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "“nope”" in line and "alice/f" in line and "does not exist" in line,
              "expected a missing-branch error: %r" % line)
        check(not hub.storage_puts(), "uploaded to a branch that does not exist")


if __name__ == "__main__":
    sys.exit(runner(__doc__, CASES))
