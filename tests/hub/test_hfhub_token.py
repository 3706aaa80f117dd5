#!/usr/bin/env python3
"""Where the hf-hub destination takes its token from, where it sends it, and
where it never shows it.

    /usr/bin/python3 tests/hub/test_hfhub_token.py --smelt BUILD/core/smelt \\
        --workdir DIR [--case NAME]... [--list]

Cases:
  precedence        HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then the one token
                    file: $HF_TOKEN_PATH, else $HF_HOME/token, else
                    $XDG_CACHE_HOME/huggingface/token, else
                    ~/.cache/huggingface/token (each token is a different
                    account on the fake; whoami tells which one was used);
                    the file's CR/LF and spaces are stripped
  no-token          none anywhere: a clear error before any work, no request
  never-to-storage  a full upload with multipart: the storage listener and the
                    completion never see an Authorization header; every Hub
                    API request carries it
  never-printed     the token appears in no output, also when the Hub echoes
                    it in an error message, and not in the staged files'
                    folder names
  offline           HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=yes): refused
                    with a message naming the variable, before any request
  not-in-recipes    a Token= key in a recipe is an error that says where tokens
                    come from and does not echo the value
  bad-options       smelt validate: bad repo ids, a branch with .., CreatePR
                    with another branch, plain http to another machine — exit 2
                    with a message naming the key
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_hfhub_common import (OTHER_TOKEN, TOKEN, Hub, check, demo_recipe,  # noqa: E402
                               make_cases, runner)

CASES, case = make_cases()

USERS = [{"token": TOKEN, "name": "alice", "orgs": []},
         {"token": OTHER_TOKEN, "name": "bob", "orgs": []}]
MERGED = [("merged", "merged16", {})]


def whoami_accounts(hub):
    return [r["account"] for r in hub.requests() if r["path"] == "/api/whoami-v2"]


@case("precedence")
def _(ctx, d):
    model, adapter = ctx.demo()
    names = ["carol", "dave", "erin", "frank", "grace", "heidi"]
    toks = {n: "hf_precedence%s%s" % (n, "0" * (28 - len(n))) for n in names}
    users = [{"token": t, "name": n, "orgs": []} for n, t in toks.items()]
    with Hub(d, users=users) as hub:
        recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="x/y",
                             exports=MERGED)
        home = os.path.join(d, "home")
        hf_home = os.path.join(d, "hfhome")
        xdg = os.path.join(d, "xdg")
        token_path = os.path.join(d, "tp", "mytoken")
        for p, n in ((os.path.join(home, ".cache", "huggingface", "token"), "heidi"),
                     (os.path.join(xdg, "huggingface", "token"), "grace"),
                     (os.path.join(hf_home, "token"), "frank"),
                     (token_path, "erin")):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write("  %s\r\n\n" % toks[n])   # cleaned as huggingface_hub does
        ctx.tokens_seen += list(toks.values())
        steps = [
            ({"HF_TOKEN": toks["carol"], "HUGGING_FACE_HUB_TOKEN": toks["dave"]}, "carol", "HF_TOKEN"),
            ({"HUGGING_FACE_HUB_TOKEN": toks["dave"]}, "dave", "HUGGING_FACE_HUB_TOKEN"),
            ({"HF_TOKEN_PATH": token_path, "HF_HOME": hf_home}, "erin", token_path),
            ({"HF_HOME": hf_home, "XDG_CACHE_HOME": xdg}, "frank", os.path.join(hf_home, "token")),
            ({"XDG_CACHE_HOME": xdg}, "grace", os.path.join(xdg, "huggingface", "token")),
            ({}, "heidi", os.path.join(home, ".cache", "huggingface", "token")),
        ]
        for extra, who, source in steps:
            env = ctx.hub_env(hub, d, token=None)
            env["HOME"] = home
            env.pop("XDG_CACHE_HOME", None)
            env.update(extra)
            # the namespace is never the account's: the error names the account and the source
            run = ctx.run(["run", recipe, "--dry-run"], d, env=env)
            line = run.error_line()
            check(run.rc == 1 and ("“%s”" % who) in line and source in line,
                  "%s: expected account %s from %s, got %r" % (sorted(extra), who, source, line))


@case("no-token")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=USERS) as hub:
        recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="alice/x",
                             exports=MERGED)
        env = ctx.hub_env(hub, d, token=None)
        run = ctx.run(["run", recipe], d, env=env)
        line = run.error_line()
        check(run.rc == 1 and "HF_TOKEN" in line and "token" in line and "alice/x" in line,
              "expected a clear no-token error: %r" % line)
        check(not hub.requests(), "requests were sent without a token")


@case("never-to-storage")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=USERS, multipart_threshold=64 * 1024, chunk_size=48 * 1024) as hub:
        recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="alice/t")
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=ctx.hub_env(hub, d))
        storage = hub.requests(listener="storage")
        check(len(storage) >= 3, "expected storage PUTs, saw %d" % len(storage))
        # the fake redacts the header's value in its records, but names the
        # account a token belongs to and says whether any was sent
        leaked = [r["path"] for r in storage
                  if r["account"] is not None or r["auth"] != "none" or "authorization" in r["headers"]]
        check(not leaked, "a token reached the storage listener: %s" % leaked)
        check(not hub.violations(), "the fake Hub recorded violations: %s" % hub.violations())
        check(hub.part_puts() and hub.completions(), "the multipart path was not exercised")
        # the multipart completion URL is signed: no token there either
        done = hub.requests("completion")
        check(done and all(r["auth"] == "none" for r in done), "a completion carried a token")
        # every Hub API call carries the valid token (the fake names the account)
        api = [r for r in hub.requests(listener="hub") if r["endpoint"] != "completion"]
        missing = ["%s %s" % (r["method"], r["path"]) for r in api if r["account"] != "alice"]
        check(not missing, "Hub API requests without alice's token: %s" % missing)


@case("never-printed")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=USERS) as hub:
        recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="alice/e",
                             exports=MERGED)
        env = ctx.hub_env(hub, d)
        # a Hub that echoes the Authorization header back in its error
        hub.fail("preupload", status=400, times=100, echo_auth=True)
        run = ctx.run(["run", recipe, "--progress=plain"], d, env=env)
        check(run.rc == 1, "exit %d" % run.rc)
        check("hf_***" in run.error_line() and "preupload" in run.error_line(),
              "the echoed error is not reported, scrubbed: %r" % run.error_line())
        # (Ctx.run checks every output for the token)
        # a whole upload with every debug message GLib and libsoup can print
        hub.clear_faults()
        env["G_MESSAGES_DEBUG"] = "all"
        run = ctx.run_ok(["run", recipe, "--progress=plain"], d, env=env)
        check(hub.commits("alice/e"), "the upload with debug messages made no commit")
        for dirpath, dirnames, names in os.walk(d):
            for n in dirnames + names:
                check(TOKEN not in n, "the token is in a file name: %s" % os.path.join(dirpath, n))


@case("offline")
def _(ctx, d):
    model, adapter = ctx.demo()
    with Hub(d, users=USERS) as hub:
        recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="alice/o",
                             exports=MERGED)
        for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_OFFLINE", "ON"),
                           ("TRANSFORMERS_OFFLINE", "yes")):
            env = ctx.hub_env(hub, d, **{var: value})
            run = ctx.run(["run", recipe, "--progress=json"], d, env=env)
            line = run.error_line()
            check(run.rc == 1 and var in line and "alice/o" in line,
                  "%s=%s: expected a refusal naming it, got exit %d %r" % (var, value, run.rc, line))
            check(not hub.requests(), "%s=%s: a request reached the Hub" % (var, value))
            check('"exporting"' not in run.out or '"bytes_done":0' in run.out,
                  "the export ran although offline")
        env = ctx.hub_env(hub, d, HF_HUB_OFFLINE="0")
        ctx.run_ok(["run", recipe, "--progress=none"], d, env=env)


@case("not-in-recipes")
def _(ctx, d):
    model, adapter = ctx.demo()
    recipe = demo_recipe(os.path.join(d, "r.smelt"), model, adapter, None, repo="alice/r",
                         dest_opts={"Token": TOKEN}, exports=MERGED)
    ctx.tokens_seen.append(TOKEN)
    run = ctx.run(["validate", recipe], d)
    check(run.rc == 2 and "Token" in run.error_line() and "HF_TOKEN" in run.error_line(),
          "a Token= key must be refused, saying where tokens come from: exit %d %r"
          % (run.rc, run.error_line()))
    # (Ctx.run checks that the value is not echoed)


@case("bad-options")
def _(ctx, d):
    model, adapter = ctx.demo()
    bad = [
        ({"Repo": "just-a-name"}, "owner/name"),
        ({"Repo": "a/b/c"}, "owner/name"),
        ({"Repo": "al--ice/x"}, "--"),
        ({"Repo": "alice/x.git"}, ".git"),
        ({"Repo": "-alice/x"}, "start or end"),
        ({"Repo": "alice/" + "x" * 97}, "96"),
        ({"Repo": "alice/x", "Revision": "a..b"}, "Revision"),
        ({"Repo": "alice/x", "CreatePR": "true", "Revision": "dev"}, "CreatePR"),
        ({"Repo": "alice/x", "Endpoint": "http://example.com"}, "clear text"),
        ({"Repo": "alice/x", "Endpoint": "ftp://127.0.0.1"}, "Endpoint"),
        ({"Repo": "alice/x", "RepoType": "space"}, "RepoType"),
        ({"Repo": "alice/x", "Connections": "0"}, "Connections"),
    ]
    for opts, word in bad:
        lines = ["[Source]", "Model=%s" % model, "", "[Destination out]", "Plugin=hf-hub"]
        lines += ["%s=%s" % kv for kv in opts.items()]
        lines += ["", "[Export m]", "Format=merged16", "Destination=out", ""]
        path = os.path.join(d, "bad.smelt")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        run = ctx.run(["validate", path], d)
        check(run.rc == 2 and word in run.error_line(),
              "%r: expected exit 2 mentioning %r, got %d %r" % (opts, word, run.rc, run.error_line()))
    good = os.path.join(d, "good.smelt")
    with open(good, "w") as f:
        f.write("[Source]\nModel=%s\n\n[Destination out]\nPlugin=hf-hub\nRepo=alice/ok\n"
                "Endpoint=http://127.0.0.1:9\nTags=a;b\n\n[Export m]\nFormat=merged16\n"
                "Destination=out\n" % model)
    ctx.run_ok(["validate", good], d)


if __name__ == "__main__":
    sys.exit(runner(__doc__, CASES))
