#!/usr/bin/env python3
"""Tests of the fake Hub itself (tests/hub/fakehub.py), driven by an
independent client written here with urllib and http.client from the
protocol notes (../shared/reference/hub.md), not from fakehub's code.

    /usr/bin/python3 tests/hub/test_fakehub.py [--workdir DIR] [--case NAME]... [--list]

Prints "ok CASE" or "FAIL CASE: why" per case, then "N passed, M failed";
the exit status is non-zero when a case failed.  Standard library only;
the whole run takes a few seconds.
"""

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fakehub  # noqa: E402
from fakehub import FakeHub, FakeHubViolation, RemoteFakeHub  # noqa: E402

ALICE = "hf_aliceFakehubTest000000000000000001"
BOB = "hf_bobFakehubTest00000000000000000002"
READER = "hf_readerFakehubTest000000000000000003"
USERS = [{"token": ALICE, "name": "alice", "orgs": ["acme"]},
         {"token": BOB, "name": "bob", "orgs": []},
         {"token": READER, "name": "rita", "orgs": ["acme"], "role": "read"}]
MiB = 1024 * 1024
DEFAULT = object()    # "the Api's own token"
LFS_CT = "application/vnd.git-lfs+json"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def data(n, seed=0):
    return random.Random(seed).randbytes(n)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def b64(b):
    return base64.b64encode(b).decode()


# ---------------------------------------------------------------------------
# the client: plain urllib, no redirects followed unless asked
# ---------------------------------------------------------------------------

class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


_no_redirect = urllib.request.build_opener(_NoRedirect)


def call(method, url, body=None, raw=None, token=ALICE, ctype=None, headers=None, follow=False):
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=payload, method=method)
    if token:
        # never forwarded on a redirect (storage must not see it)
        req.add_unredirected_header("Authorization", "Bearer " + token)
    if payload is not None:
        req.add_header("Content-Type", ctype or "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener() if follow else _no_redirect
    try:
        with opener.open(req, timeout=30) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


def ndjson(lines, trailing=True):
    text = "\n".join(json.dumps(l) for l in lines)
    return (text + ("\n" if trailing else "")).encode()


class Api:
    """The calls of the upload flow, as hub.md describes them."""

    def __init__(self, hub, token=ALICE):
        self.hub, self.e, self.token = hub, hub.endpoint, token

    def _tok(self, token):
        return self.token if token is DEFAULT else token

    def create(self, name, org=None, token=DEFAULT, **extra):
        body = {"name": name, "organization": org}
        body.update(extra)
        return call("POST", self.e + "/api/repos/create", body, token=self._tok(token))

    def preupload(self, repo, files, rev="main", token=DEFAULT, pr=False, **extra):
        body = {"files": [{"path": p, "size": len(b), "sample": b64(b[:512])} for p, b in files]}
        body.update(extra)
        url = "%s/api/models/%s/preupload/%s%s" % (self.e, repo, urllib.parse.quote(rev, safe=""),
                                                     "?create_pr=1" if pr else "")
        return call("POST", url, body, token=self._tok(token))

    def batch(self, repo, blobs, transfers=("basic", "multipart"), token=DEFAULT, algo="sha256", objects=None):
        body = {"operation": "upload", "transfers": list(transfers),
                "objects": objects if objects is not None else [{"oid": sha(b), "size": len(b)} for b in blobs],
                "ref": {"name": "main"}}
        if algo is not None:
            body["hash_algo"] = algo
        return call("POST", "%s/%s.git/info/lfs/objects/batch" % (self.e, repo), body,
                    token=self._tok(token), ctype=LFS_CT, headers={"Accept": LFS_CT})

    def upload(self, obj, blob):
        """Do the actions of one batch object: single PUT or multipart."""
        up = obj["actions"]["upload"]
        hdr = up.get("header") or {}
        if "chunk_size" not in hdr:
            r = call("PUT", up["href"], raw=blob, token=None, ctype="application/octet-stream")
            check(r.status == 200, "single PUT: %r" % r)
            return r
        cs = int(hdr["chunk_size"])
        parts = sorted((int(k), v) for k, v in hdr.items() if k.isdigit())
        done = []
        for n, url in parts:
            r = call("PUT", url, raw=blob[(n - 1) * cs:n * cs], token=None, ctype="application/octet-stream")
            check(r.status == 200 and r.headers.get("ETag"), "part %d: %r" % (n, r))
            done.append({"partNumber": n, "etag": r.headers["ETag"]})
        r = call("POST", up["href"], {"oid": obj["oid"], "parts": done}, token=None, ctype=LFS_CT)
        check(r.status == 200, "completion: %r" % r)
        return r

    def commit(self, repo, lines, rev="main", token=DEFAULT, pr=False, trailing=True, ctype="application/x-ndjson"):
        url = "%s/api/models/%s/commit/%s%s" % (self.e, repo, urllib.parse.quote(rev, safe=""),
                                                  "?create_pr=1" if pr else "")
        return call("POST", url, raw=ndjson(lines, trailing), token=self._tok(token), ctype=ctype)

    def push_lfs(self, repo, blob):
        r = self.batch(repo, [blob])
        check(r.status == 200, "batch: %r" % r)
        obj = r.json()["objects"][0]
        if "actions" in obj:
            self.upload(obj, blob)
        return obj


def header(summary="a commit", parent=None):
    v = {"summary": summary, "description": ""}
    if parent:
        v["parentCommit"] = parent
    return {"key": "header", "value": v}


def file_line(path, blob):
    return {"key": "file", "value": {"path": path, "content": b64(blob), "encoding": "base64"}}


def lfs_line(path, blob):
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha(blob), "size": len(blob)}}


def new_hub(**kw):
    kw.setdefault("users", USERS)
    return FakeHub(CTX.workdir, **kw)


class _Ctx:
    workdir = None


CTX = _Ctx()
CASES = []


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


# ---------------------------------------------------------------------------
# pure helpers: the Hub's matching rules
# ---------------------------------------------------------------------------

@case("gitattributes-rules")
def _():
    ga = fakehub.DEFAULT_GITATTRIBUTES
    check(len(ga.splitlines()) == 35, "the default .gitattributes has %d rules" % len(ga.splitlines()))
    for p in ("model.safetensors", "a/b/pytorch_model.bin", "x.tar.gz", "runs/events.out.tfevents.1",
              "saved_model/a/variables.data", "tok.model", "f.zst"):
        check(fakehub.lfs_tracked(ga, p), "%s should be LFS by default" % p)
    for p in ("demo.Q8_0.gguf", "config.json", "README.md", "saved_model", "model.safetensors.index.json"):
        check(not fakehub.lfs_tracked(ga, p), "%s should not be LFS by default" % p)
    extra = ga + "my[[:space:]]file.gguf filter=lfs diff=lfs merge=lfs -text\n/top.bin -filter\n"
    check(fakehub.lfs_tracked(extra, "my file.gguf"), "[[:space:]] does not match a space")
    check(not fakehub.lfs_tracked(extra, "top.bin") and fakehub.lfs_tracked(extra, "sub/top.bin"),
          "an anchored -filter line should only unset top.bin at the root")
    gi = "*.tmp\nbuild/\n!keep.tmp\n/root-only.txt\n"
    check(fakehub.git_ignored(gi, "a/b.tmp") and not fakehub.git_ignored(gi, "keep.tmp"), "*.tmp / !keep.tmp")
    check(fakehub.git_ignored(gi, "build/x.json") and not fakehub.git_ignored(gi, "build"), "build/ is a folder rule")
    check(fakehub.git_ignored(gi, "root-only.txt") and not fakehub.git_ignored(gi, "d/root-only.txt"),
          "a pattern with a slash is anchored")
    check(fakehub.sample_is_binary(b"ab\0c", False) and fakehub.sample_is_binary(b"\xff\xfe", False),
          "NUL and invalid UTF-8 are binary")
    euro = "€".encode()  # 3 bytes: cut after 1 in a truncated sample is fine
    check(not fakehub.sample_is_binary(b"x" * 511 + euro[:1], True), "a cut character at the end of a sample")
    check(fakehub.sample_is_binary(b"x" * 511 + euro[:1], False), "a cut character at the end of a whole file")
    check(fakehub.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a",
          "git blob id of hello\\n (git hash-object)")


# ---------------------------------------------------------------------------
# account, repos, auth
# ---------------------------------------------------------------------------

@case("whoami")
def _():
    with new_hub() as hub:
        r = call("GET", hub.endpoint + "/api/whoami-v2")
        j = r.json()
        check(r.status == 200 and j["name"] == "alice" and j["type"] == "user", "whoami: %r" % r)
        check([o["name"] for o in j["orgs"]] == ["acme"], "orgs %r" % j["orgs"])
        check(j["auth"]["type"] == "access_token" and j["auth"]["accessToken"]["role"] == "write", "auth %r" % j["auth"])
        for k in ("id", "fullname", "email", "emailVerified", "isPro", "canPay", "periodEnd", "avatarUrl"):
            check(k in j, "whoami lacks %s" % k)
        check(call("GET", hub.endpoint + "/api/whoami-v2", token=READER).json()["auth"]["accessToken"]["role"] == "read",
              "the read token's role")
        for tok in (None, "hf_unknown000000000000000000000000"):
            r = call("GET", hub.endpoint + "/api/whoami-v2", token=tok)
            check(r.status == 401 and r.headers.get("X-Error-Message") == "Invalid credentials in Authorization header"
                  and "error" in r.json(), "token %r: %r %r" % (tok, r, dict(r.headers)))
        # a revoked token
        hub.remove_user(BOB)
        check(call("GET", hub.endpoint + "/api/whoami-v2", token=BOB).status == 401, "a removed user still works")
        recs = hub.requests("whoami")
        check([r["account"] for r in recs] == ["alice", "rita", None, None, None], "accounts %r" % [r["account"] for r in recs])
        check([r["auth"] for r in recs][2:] == ["none", "invalid", "invalid"], "auth states %r" % [r["auth"] for r in recs])


@case("create-repo")
def _():
    with new_hub() as hub:
        api = Api(hub)
        r = api.create("m1", "alice", private=True)
        j = r.json()
        check(r.status == 200 and j["url"] == hub.endpoint + "/alice/m1" and j["name"] == "alice/m1"
              and len(j["id"]) == 24, "create: %r" % r)
        check(hub.is_private("alice/m1"), "private=true ignored")
        r = api.create("m1", "alice")
        check(r.status == 409 and r.json()["url"] == hub.endpoint + "/alice/m1" and "error" in r.json(),
              "409 must keep the url: %r" % r)
        r = api.create("m2", None, visibility="private")       # bare name: the token's user
        check(r.status == 200 and r.json()["name"] == "alice/m2" and hub.is_private("alice/m2"), "bare name: %r" % r)
        check(api.create("m3", "acme").status == 200, "an org of alice")
        r = api.create("ds", "alice", type="dataset")
        check(r.status == 200 and r.json()["url"] == hub.endpoint + "/datasets/alice/ds", "dataset url: %r" % r)
        check(hub.repo_exists("datasets/alice/ds") and not hub.repo_exists("alice/ds"), "dataset repo kind")
        r = api.create("x", "bob")
        check(r.status == 403 and "rights" in r.json()["error"], "foreign namespace: %r" % r)
        check(api.create("x", "acme", token=READER).status == 403, "read token created a repo")
        check(api.create("x", "alice", token=None).status == 401, "no token")
        for bad in ("a--b", "-a", "a.git", "x" * 97, "a b"):
            check(api.create(bad, "alice").status == 400, "name %r accepted" % bad)
        # the initial commit holds the Hub's default .gitattributes
        commits = hub.commits("alice/m1")
        check(len(commits) == 1 and commits[0]["initial"], "initial commit %r" % commits)
        check(hub.download("alice/m1", ".gitattributes") == fakehub.DEFAULT_GITATTRIBUTES.encode(),
              "initial .gitattributes")


@case("preupload-modes")
def _():
    with new_hub(lfs_threshold=1000) as hub:  # small threshold: no 10 MiB samples needed
        api = Api(hub)
        api.create("p", "alice")
        files = [("README.md", b"# hi\n"), ("config.json", b'{"a": 1}'), ("small.safetensors", b"{}"),
                 ("big.txt", b"t" * 1000), ("almost.txt", b"t" * 999), ("demo.gguf", b"GGUF\x03\0\0\0"),
                 ("latin1.txt", b"caf\xe9"), ("long.txt", b"x" * 511 + "€".encode() + b"y" * 300),
                 ("empty.txt", b"")]
        r = api.preupload("alice/p", files)
        check(r.status == 200, "preupload: %r" % r)
        j = r.json()
        modes = {f["path"]: f["uploadMode"] for f in j["files"]}
        want = {"README.md": "regular", "config.json": "regular", "small.safetensors": "lfs", "big.txt": "lfs",
                "almost.txt": "regular", "demo.gguf": "lfs", "latin1.txt": "lfs", "long.txt": "regular",
                "empty.txt": "regular"}
        check(modes == want, "modes %r, want %r" % (modes, want))
        check(all(f["shouldIgnore"] is False for f in j["files"]), "shouldIgnore")
        check(j["commitOid"] == hub.head("alice/p"), "commitOid is not the head")
        # long.txt's sample ends inside a character: still text
        with new_hub() as hub2:
            Api(hub2).create("q", "alice")
            m = Api(hub2).preupload("alice/q", [("long.txt", b"x" * 511 + "€".encode() + b"y" * 300)]).json()
            check(m["files"][0]["uploadMode"] == "regular", "a character cut by the 512-byte sample made it LFS")
        # the commit's own .gitattributes and .gitignore, and remote oids
        r = api.preupload("alice/p", [("a.json", b"{}"), ("tmp/x.txt", b"x")],
                          gitAttributes="*.json filter=lfs diff=lfs merge=lfs -text\n", gitIgnore="tmp/\n")
        m = {f["path"]: f for f in r.json()["files"]}
        check(m["a.json"]["uploadMode"] == "lfs" and m["tmp/x.txt"]["shouldIgnore"] is True,
              "gitAttributes/gitIgnore fields: %r" % m)
        hub.commit_file("alice/p", "config.json", b'{"a": 1}', token=ALICE)
        m = {f["path"]: f for f in api.preupload("alice/p", [("config.json", b"{}"), (".gitattributes", b"")]).json()["files"]}
        check(m["config.json"].get("oid") == fakehub.git_blob_sha1(b'{"a": 1}'), "remote oid of a regular file %r" % m)
        check(m[".gitattributes"].get("oid") == fakehub.git_blob_sha1(fakehub.DEFAULT_GITATTRIBUTES.encode()),
              "remote oid of .gitattributes")
        # errors
        check(api.preupload("alice/nope", files[:1]).status == 404, "missing repo")
        r = api.preupload("alice/nope", files[:1], token=None)
        check(r.status == 401, "missing repo without a token: %r" % r)
        check(api.preupload("alice/p", [("../x", b"a")]).status == 422, "a .. path")
        check(api.preupload("alice/p", [(".git/config", b"a")]).status == 422, "a .git path")
        check(api.preupload("alice/p", files[:1], rev="nope").status == 404, "unknown revision")
        check(api.preupload("alice/p", files[:1], token=BOB).status == 403, "bob has no write access")
        check(api.preupload("alice/p", files[:1], token=BOB, pr=True).status == 200,
              "anyone may prepare a pull request on a public repo")
        r = call("POST", hub.endpoint + "/api/models/alice/p/preupload/main", {"files": [{"path": "a"}]})
        check(r.status == 400, "a file without size/sample: %r" % r)


@case("auth-rules")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("pub", "alice")
        api.create("priv", "acme", private=True)
        blob = data(3000, 1)
        # a bad token is refused everywhere, even on public reads
        bad = "hf_bad00000000000000000000000000000"
        for url in ("/api/models/alice/pub", "/alice/pub/resolve/main/.gitattributes"):
            r = call("GET", hub.endpoint + url, token=bad)
            check(r.status == 401 and r.headers.get("X-Error-Message") == "Invalid credentials in Authorization header",
                  "%s with a bad token: %r" % (url, r))
            check(call("GET", hub.endpoint + url, token=None).status == 200, "%s anonymously" % url)
        # private: anonymous 401, outsider 404, member (also read-only) 200
        info = hub.endpoint + "/api/models/acme/priv"
        r = call("GET", info, token=None)
        check(r.status == 401 and r.headers.get("X-Error-Code") == "RepoNotFound", "anonymous on private: %r" % r)
        r = call("GET", info, token=BOB)
        check(r.status == 404 and r.headers.get("X-Error-Code") == "RepoNotFound", "outsider on private: %r" % r)
        check(call("GET", info, token=READER).status == 200, "a member with a read token reads")
        # writes: read token 403, foreign namespace 403, no token 401
        for tok, repo, want in ((READER, "acme/priv", 403), (BOB, "alice/pub", 403), (None, "alice/pub", 401)):
            r = api.batch(repo, [blob], token=tok)
            check(r.status == want, "batch on %s with %s: %r" % (repo, tok, r))
            r = api.commit(repo, [header()], token=tok)
            check(r.status == want, "commit on %s with %s: %r" % (repo, tok, r))
            r = api.preupload(repo, [("a.txt", b"a")], token=tok)
            check(r.status == want, "preupload on %s with %s: %r" % (repo, tok, r))
        # pull requests on someone else's public repo: regular files yes, LFS no
        r = api.commit("alice/pub", [header("bob's PR"), file_line("bob.txt", b"hi")], token=BOB, pr=True)
        check(r.status == 200 and r.json()["pullRequestUrl"].endswith("/alice/pub/discussions/1"), "bob's PR: %r" % r)
        check(api.batch("alice/pub", [blob], token=BOB).status == 403, "bob uploaded LFS to a foreign repo")
        check(hub.pull_requests("alice/pub")[0]["author"] == "bob", "PR author")
        # records never hold the token
        dump = json.dumps(hub.requests())
        for t in (ALICE, BOB, READER, bad):
            check(t not in dump, "a token is in the request records")
        r = hub.requests("lfs-batch")[0]
        check(r["headers"]["authorization"] == "Bearer <redacted>", "authorization record %r" % r["headers"])


# ---------------------------------------------------------------------------
# LFS batch, storage, multipart, verify
# ---------------------------------------------------------------------------

@case("lfs-basic")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("b", "alice")
        blob = data(200000, 2)
        r = api.batch("alice/b", [blob], algo="sha_256")   # what huggingface.js sends
        check(r.status == 200 and r.headers["Content-Type"].startswith(LFS_CT), "batch: %r" % r)
        j = r.json()
        obj = j["objects"][0]
        check(j["transfer"] == "basic" and obj["oid"] == sha(blob) and obj["size"] == len(blob), "answer %r" % j)
        href = obj["actions"]["upload"]["href"]
        check(href.startswith(hub.storage_url + "/") and hub.storage_url != hub.endpoint, "upload href %s" % href)
        check("chunk_size" not in (obj["actions"]["upload"].get("header") or {}), "small object got multipart")
        verify = obj["actions"]["verify"]["href"]
        check(verify == hub.endpoint + "/alice/b.git/info/lfs/objects/verify", "verify href %s" % verify)
        check(call("POST", verify, {"oid": obj["oid"], "size": len(blob)}).status == 404, "verify before upload")
        api.upload(obj, blob)
        check(call("POST", verify, {"oid": obj["oid"], "size": len(blob)}).status == 200, "verify after upload")
        check(call("POST", verify, {"oid": obj["oid"], "size": 5}).status == 422, "verify with a wrong size")
        check(call("POST", verify, {"oid": obj["oid"], "size": len(blob)}, token=None).status == 401,
              "verify needs the token")
        check(hub.objects("alice/b") == {sha(blob): len(blob)}, "stored %r" % hub.objects("alice/b"))
        puts = hub.storage_puts()
        check(len(puts) == 1 and puts[0]["complete"] and puts[0]["stored"] and puts[0]["received"] == len(blob)
              and puts[0]["expected"] == len(blob) and puts[0]["part"] is None, "storage_puts %r" % puts)
        # per-object validation, hash algorithms, content type
        r = api.batch("alice/b", None, objects=[{"oid": "abc", "size": 1}, {"oid": sha(b"x"), "size": -1}])
        check(r.status == 200 and all(o["error"]["code"] == 422 for o in r.json()["objects"]), "bad objects: %r" % r)
        check(api.batch("alice/b", [blob], algo="md5").status == 409, "md5 accepted")
        check(api.batch("alice/b", [blob], algo=None).status == 200, "no hash_algo refused")
        check([w["kind"] for w in hub.protocol_warnings()] == ["no-hash-algo"], "warnings %r" % hub.protocol_warnings())
        # another repo does not have the object (LFS storage is per repo)
        api.create("other", "alice")
        check("actions" in api.batch("alice/other", [blob]).json()["objects"][0], "objects leak between repos")


@case("storage-listener")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("s", "alice")
        blob = data(50000, 3)
        href = api.batch("alice/s", [blob]).json()["objects"][0]["actions"]["upload"]["href"]
        # the token reaching storage: refused as S3 does, and recorded
        r = call("PUT", href, raw=blob, token=ALICE, ctype="application/octet-stream")
        check(r.status == 400 and b"InvalidArgument" in r.body, "PUT with Authorization: %r" % r)
        v = hub.violations()
        check(len(v) == 1 and v[0]["kind"] == "authorization-to-storage" and v[0]["listener"] == "storage",
              "violations %r" % v)
        check(not hub.objects("alice/s"), "an upload with Authorization was stored")
        check(hub.clear_violations() == 1 and not hub.violations(), "clear_violations")
        # a tampered or expired signature
        tampered = href.replace("X-Amz-Expires=900", "X-Amz-Expires=99999")
        r = call("PUT", tampered, raw=blob, token=None)
        check(r.status == 403 and b"AccessDenied" in r.body, "tampered URL: %r" % r)
        hub.expire_urls()
        r = call("PUT", href, raw=blob, token=None)
        check(r.status == 403 and b"expired" in r.body, "expired URL: %r" % r)
        href = api.batch("alice/s", [blob]).json()["objects"][0]["actions"]["upload"]["href"]
        # chunked bodies: S3 answers 501
        u = urllib.parse.urlsplit(href)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.putrequest("PUT", u.path + "?" + u.query)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(blob), blob))
        resp = c.getresponse()
        check(resp.status == 501, "chunked PUT: %d" % resp.status)
        c.close()
        api.upload({"actions": {"upload": {"href": href}}}, blob)
        check(hub.objects("alice/s") == {sha(blob): len(blob)}, "not stored after a clean PUT")
        # a token in a URL is a violation too
        call("GET", hub.endpoint + "/api/models/alice/s?token=" + ALICE, token=None)
        check([x["kind"] for x in hub.violations()] == ["token-in-url"], "token-in-url %r" % hub.violations())
        hub.clear_violations()
    # strict hubs fail the with block when a violation is left
    try:
        with new_hub() as hub:
            Api(hub).create("s", "alice")
            href = Api(hub).batch("alice/s", [blob]).json()["objects"][0]["actions"]["upload"]["href"]
            call("PUT", href, raw=blob, token=ALICE)
        raise Failure("a strict FakeHub closed without raising on a violation")
    except FakeHubViolation as e:
        check("authorization-to-storage" in str(e), "violation message %s" % e)


@case("content-checks")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("c", "alice")
        blob = data(70000, 4)
        obj = api.batch("alice/c", [blob]).json()["objects"][0]
        wrong = bytearray(blob)
        wrong[100] ^= 1
        r = call("PUT", obj["actions"]["upload"]["href"], raw=bytes(wrong), token=None)
        check(r.status == 200, "S3 takes any bytes: %r" % r)
        check([v["kind"] for v in hub.violations()] == ["lfs-content-mismatch"], "violations %r" % hub.violations())
        hub.clear_violations()
        check(not hub.objects("alice/c"), "a corrupted object was stored")
        check("actions" in api.batch("alice/c", [blob]).json()["objects"][0], "batch skips a corrupted object")
        r = api.commit("alice/c", [header(), lfs_line("w.bin", blob)])
        check(r.status == 400 and "LFS pointer pointed to a file that does not exist" in r.json()["error"]
              and "w.bin" in r.json()["error"], "commit of a missing object: %r" % r)
        api.push_lfs("alice/c", blob)
        bad_size = lfs_line("w.bin", blob)
        bad_size["value"]["size"] += 1
        check(api.commit("alice/c", [header(), bad_size]).status == 400, "lfsFile with a wrong size")
        check(api.commit("alice/c", [header(), lfs_line("w.bin", blob)]).status == 200, "good commit")
        check(hub.download("alice/c", "w.bin") == blob, "stored bytes")


@case("multipart")
def _():
    with new_hub(multipart_threshold=100000, chunk_size=30000) as hub:
        api = Api(hub)
        api.create("mp", "alice")
        blob = data(100001 + 20000, 5)
        small = data(100000, 6)
        r = api.batch("alice/mp", [blob, small])
        j = r.json()
        check(j["transfer"] == "multipart", "transfer %r" % j["transfer"])
        big, sm = j["objects"]
        hdr = big["actions"]["upload"]["header"]
        keys = sorted(k for k in hdr if k != "chunk_size")
        n = math.ceil(len(blob) / 30000)
        check(hdr["chunk_size"] == "30000" and keys == ["%05d" % i for i in range(1, n + 1)],
              "part keys %r" % keys)
        check(big["actions"]["upload"]["href"].startswith(hub.endpoint + "/api/complete_multipart?"),
              "completion href %s" % big["actions"]["upload"]["href"])
        check("chunk_size" not in (sm["actions"]["upload"].get("header") or {}), "100000 bytes is not above the threshold")
        check(api.batch("alice/mp", [blob], transfers=["basic"]).json()["objects"][0]["actions"]["upload"].get("header")
              in (None, {}), "multipart without the client offering it")
        # upload the parts in parallel (huggingface.js sends 5 at a time), out of order
        etags = {}

        def put(k):
            i = int(k)
            rr = call("PUT", hdr[k], raw=blob[(i - 1) * 30000:i * 30000], token=None)
            etags[i] = rr.headers.get("ETag")
        threads = [threading.Thread(target=put, args=(k,)) for k in reversed(keys)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(len(etags) == n and all(etags.values()), "part ETags %r" % etags)
        comp = big["actions"]["upload"]["href"]
        parts = [{"partNumber": i, "etag": etags[i]} for i in range(1, n + 1)]
        bad = [dict(p) for p in parts]
        bad[1]["etag"] = '"0000"'
        check(call("POST", comp, {"oid": big["oid"], "parts": bad}, token=None, ctype=LFS_CT).status == 400, "wrong ETag")
        check(call("POST", comp, {"oid": big["oid"], "parts": parts[::-1]}, token=None, ctype=LFS_CT).status == 400,
              "parts out of order")
        check(call("POST", comp, {"oid": big["oid"], "parts": parts[:-1]}, token=None, ctype=LFS_CT).status == 400,
              "a part missing")
        check(not hub.objects("alice/mp"), "stored before a good completion")
        r = call("POST", comp, {"oid": big["oid"], "parts": parts}, token=None, ctype=LFS_CT)
        check(r.status == 200 and hub.objects("alice/mp") == {sha(blob): len(blob)}, "completion: %r" % r)
        check(len(hub.part_puts()) == n and hub.completions() == 4, "records: %d parts, %d completions"
              % (len(hub.part_puts()), hub.completions()))
        check(not hub.violations(), "violations %r" % hub.violations())
        # the completion URL is pre-signed: the token there is a violation
        j = api.batch("alice/mp", [small[::-1] + blob]).json()["objects"][0]
        h2 = j["actions"]["upload"]["header"]
        b2 = small[::-1] + blob
        ps = []
        for k in sorted(x for x in h2 if x != "chunk_size"):
            i = int(k)
            ps.append({"partNumber": i, "etag": call("PUT", h2[k], raw=b2[(i - 1) * 30000:i * 30000], token=None).headers["ETag"]})
        r = call("POST", j["actions"]["upload"]["href"], {"oid": j["oid"], "parts": ps}, token=ALICE, ctype=LFS_CT)
        check([v["kind"] for v in hub.violations()] == ["authorization-to-completion"], "completion with the token: %r"
              % hub.violations())
        hub.clear_violations()


@case("resume-skips-stored")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("r", "alice")
        a, b = data(40000, 7), data(50000, 8)
        objs = api.batch("alice/r", [a, b]).json()["objects"]
        api.upload(objs[0], a)        # the run stops after the first object
        again = {o["oid"]: o for o in api.batch("alice/r", [a, b]).json()["objects"]}
        check("actions" not in again[sha(a)] and again[sha(a)]["size"] == len(a), "a stored object has actions")
        check("actions" in again[sha(b)], "a missing object has no actions")
        api.upload(again[sha(b)], b)
        check(all("actions" not in o for o in api.batch("alice/r", [a, b]).json()["objects"]), "both stored")
        check(len(hub.storage_puts()) == 2, "PUTs %r" % hub.storage_puts())


# ---------------------------------------------------------------------------
# commits and revisions
# ---------------------------------------------------------------------------

@case("commit")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("cm", "alice")
        head0 = hub.head("alice/cm")
        w, g = data(30000, 9), data(20000, 10)
        api.push_lfs("alice/cm", w)
        api.push_lfs("alice/cm", g)
        lines = [header("first", parent=head0), file_line("README.md", b"# card\n"),
                 {"key": "file", "value": {"path": "notes/a.txt", "content": "plain text\n", "encoding": "utf-8"}},
                 {"key": "file", "value": {"path": "notes/b.txt", "content": b64(b"b\n"), "encoding": "base64"}},
                 lfs_line("model.safetensors", w), lfs_line("my demo.gguf", g)]
        r = api.commit("alice/cm", lines, trailing=False)     # huggingface.js: no final newline
        j = r.json()
        check(r.status == 200 and j["success"] is True and j["hookOutput"] == "" and len(j["commitOid"]) == 40,
              "commit: %r" % r)
        check(j["commitUrl"] == "%s/alice/cm/commit/%s" % (hub.endpoint, j["commitOid"]), "commitUrl %s" % j["commitUrl"])
        check(hub.head("alice/cm") == j["commitOid"], "head did not move")
        files = hub.files("alice/cm")
        check(files["model.safetensors"]["lfs"] and files["my demo.gguf"]["lfs"] and not files["README.md"]["lfs"],
              "lfs flags %r" % files)
        check(hub.download("alice/cm", "notes/a.txt") == b"plain text\n" and
              hub.download("alice/cm", "my demo.gguf") == g, "contents")
        ga = hub.download("alice/cm", ".gitattributes").decode()
        check(ga.endswith("my[[:space:]]demo.gguf filter=lfs diff=lfs merge=lfs -text\n"),
              "the Hub appends untracked LFS paths to .gitattributes: %r" % ga[-120:])
        check("model.safetensors filter" not in ga, "*.safetensors is already tracked")
        rec = hub.requests("commit")[-1]
        check([l["key"] for l in rec["ndjson"]] == ["header", "file", "file", "file", "lfsFile", "lfsFile"]
              and rec["ndjson"][1]["value"]["content_size"] == 7, "recorded lines %r" % rec["ndjson"])
        # stale parent, deletions, errors
        c1 = j["commitOid"]
        r = api.commit("alice/cm", [header("stale", parent=head0), file_line("x", b"x")])
        check(r.status == 412 and "updated since" in r.json()["error"], "stale parent: %r" % r)
        check(hub.head("alice/cm") == c1, "a refused commit moved the branch")
        r = api.commit("alice/cm", [header("del", parent=c1[:12]), {"key": "deletedFile", "value": {"path": "README.md"}},
                                    {"key": "deletedFolder", "value": {"path": "notes/"}}])
        check(r.status == 200, "deletions: %r" % r)
        check(set(hub.files("alice/cm")) == {".gitattributes", "model.safetensors", "my demo.gguf"},
              "after deletions %r" % sorted(hub.files("alice/cm")))
        r = api.commit("alice/cm", [header(), {"key": "deletedFile", "value": {"path": "README.md"}}])
        check(r.status == 404 and r.headers.get("X-Error-Code") == "EntryNotFound", "deleting a missing file: %r" % r)
        check(api.commit("alice/cm", [file_line("a", b"a")]).status == 400, "no header")
        check(api.commit("alice/cm", [header(""), file_line("a", b"a")]).status == 400, "empty summary")
        check(api.commit("alice/cm", [header(), file_line("../a", b"a")]).status == 422, "a .. path")
        check(api.commit("alice/cm", [header(), file_line("a", b"a")], ctype="text/plain").status == 400,
              "a text/plain payload")
        check(api.commit("alice/cm", [header(), {"key": "bogus", "value": {}}]).status == 400, "an unknown key")
        r = api.commit("alice/cm", [header()], rev="nope")
        check(r.status == 404 and r.headers.get("X-Error-Code") == "RevisionNotFound", "unknown branch: %r" % r)
        with new_hub(lfs_threshold=1000) as hub2:
            Api(hub2).create("t", "alice")
            r = Api(hub2).commit("alice/t", [header(), file_line("big.txt", b"t" * 1001)])
            check(r.status == 400 and "larger than" in r.json()["error"], "a regular file over the limit: %r" % r)
        titles = [c["title"] for c in hub.commits("alice/cm")]
        check(titles == ["initial commit", "first", "del"], "history %r" % titles)


@case("pull-requests")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("pr", "alice")
        main0 = hub.head("alice/pr")
        r = api.commit("alice/pr", [header("PR one"), file_line("a.txt", b"a")], pr=True)
        j = r.json()
        check(r.status == 200 and j["pullRequestUrl"] == hub.endpoint + "/alice/pr/discussions/1", "PR: %r" % r)
        check(hub.head("alice/pr") == main0, "a PR moved main")
        check(hub.head("alice/pr", "refs/pr/1") == j["commitOid"], "refs/pr/1")
        check("a.txt" in hub.files("alice/pr", "refs/pr/1") and "a.txt" not in hub.files("alice/pr"), "PR files")
        # a stale parent does not stop a PR (it becomes its base)
        r = api.commit("alice/pr", [header("PR two", parent=main0), file_line("b.txt", b"b")], pr=True)
        check(r.status == 200 and r.json()["pullRequestUrl"].endswith("/discussions/2"), "second PR: %r" % r)
        # pushing to an existing PR: its ref, percent-encoded
        r = api.commit("alice/pr", [header("more"), file_line("c.txt", b"c")], rev="refs/pr/1")
        check(r.status == 200 and "c.txt" in hub.files("alice/pr", "refs/pr/1"), "commit on refs/pr/1: %r" % r)
        prs = hub.pull_requests("alice/pr")
        check([(p["num"], p["ref"], p["title"]) for p in prs] == [(1, "refs/pr/1", "PR one"), (2, "refs/pr/2", "PR two")],
              "pull_requests %r" % prs)
        refs = call("GET", hub.endpoint + "/api/models/alice/pr/refs?include_prs=1").json()
        check([p["ref"] for p in refs["pullRequests"]] == ["refs/pr/1", "refs/pr/2"], "refs %r" % refs)


@case("revisions-and-reads")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("rv", "alice")
        blob = data(25000, 11)
        api.push_lfs("alice/rv", blob)
        c1 = api.commit("alice/rv", [header("one"), file_line("config.json", b"{}\n"),
                                     lfs_line("sub/dir/w.safetensors", blob)]).json()["commitOid"]
        e = hub.endpoint
        r = call("POST", e + "/api/models/alice/rv/branch/dev", {})
        check(r.status == 200 and hub.head("alice/rv", "dev") == c1, "create branch: %r" % r)
        check(call("POST", e + "/api/models/alice/rv/branch/dev", {}).status == 409, "branch exists")
        check(call("POST", e + "/api/models/alice/rv/branch/x", {}, token=BOB).status == 403, "bob made a branch")
        c2 = api.commit("alice/rv", [header("on dev"), file_line("dev.txt", b"d")], rev="dev").json()["commitOid"]
        check(hub.head("alice/rv") == c1 and hub.head("alice/rv", "dev") == c2, "branches")
        refs = call("GET", e + "/api/models/alice/rv/refs").json()
        check({b["name"]: b["targetCommit"] for b in refs["branches"]} == {"main": c1, "dev": c2}, "refs %r" % refs)
        info = call("GET", e + "/api/models/alice/rv").json()
        check(info["sha"] == c1 and info["id"] == "alice/rv" and info["private"] is False and
              sorted(s["rfilename"] for s in info["siblings"]) == [".gitattributes", "config.json", "sub/dir/w.safetensors"],
              "model info %r" % info)
        r = call("GET", e + "/api/models/alice/rv/revision/dev")
        check(r.json()["sha"] == c2 and r.headers.get("X-Repo-Commit") == c2, "revision info")
        check(call("GET", e + "/api/models/alice/rv/revision/" + c1[:10]).json()["sha"] == c1, "a commit id prefix")
        r = call("GET", e + "/api/models/alice/rv/revision/nope")
        check(r.status == 404 and r.headers.get("X-Error-Code") == "RevisionNotFound", "unknown revision: %r" % r)
        r = call("GET", e + "/api/models/alice/none")
        check(r.status == 404 and r.headers.get("X-Error-Code") == "RepoNotFound", "missing repo: %r" % r)
        sib = {s["rfilename"]: s for s in call("GET", e + "/api/models/alice/rv?blobs=1").json()["siblings"]}
        check(sib["sub/dir/w.safetensors"]["lfs"]["sha256"] == sha(blob) and sib["config.json"]["size"] == 3,
              "blobs=1 %r" % sib)
        tree = call("GET", e + "/api/models/alice/rv/tree/main?recursive=true").json()
        check([(t["type"], t["path"]) for t in tree] == [("file", ".gitattributes"), ("file", "config.json"),
                                                         ("directory", "sub"), ("directory", "sub/dir"),
                                                         ("file", "sub/dir/w.safetensors")], "tree %r" % tree)
        flat = call("GET", e + "/api/models/alice/rv/tree/main/sub").json()
        check([(t["type"], t["path"]) for t in flat] == [("directory", "sub/dir")], "non-recursive tree %r" % flat)
        hist = call("GET", e + "/api/models/alice/rv/commits/dev").json()
        check([c["title"] for c in hist] == ["on dev", "one", "initial commit"], "commits listing %r" % hist)


@case("resolve")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("d", "alice")
        api.create("secret", "acme", private=True)
        blob = data(123457, 12)
        for repo in ("alice/d", "acme/secret"):
            api.push_lfs(repo, blob)
            api.commit(repo, [header(), lfs_line("w.safetensors", blob), file_line("config.json", b'{"x": 1}\n')])
        e = hub.endpoint
        r = call("GET", e + "/alice/d/resolve/main/config.json", token=None)
        check(r.status == 200 and r.body == b'{"x": 1}\n' and r.headers["ETag"] == '"%s"'
              % fakehub.git_blob_sha1(b'{"x": 1}\n') and r.headers["X-Repo-Commit"] == hub.head("alice/d"),
              "regular file: %r %r" % (r, dict(r.headers)))
        r = call("GET", e + "/alice/d/resolve/main/w.safetensors")
        loc = r.headers.get("Location", "")
        check(r.status == 302 and loc.startswith(hub.storage_url + "/") and r.headers["X-Linked-Size"] == str(len(blob))
              and r.headers["X-Linked-Etag"] == '"%s"' % sha(blob), "LFS file: %r %r" % (r, dict(r.headers)))
        got = call("GET", loc, token=None)
        check(got.status == 200 and got.body == blob, "storage download")
        part = call("GET", loc, token=None, headers={"Range": "bytes=100-199"})
        check(part.status == 206 and part.body == blob[100:200], "ranged download %r" % part)
        check(call("GET", e + "/alice/d/resolve/main/w.safetensors", follow=True, token=None).body == blob,
              "following the redirect")
        check(hub.http_download("alice/d", "w.safetensors", token=ALICE) == blob, "http_download")
        r = call("GET", e + "/alice/d/resolve/main/nope.txt")
        check(r.status == 404 and r.headers.get("X-Error-Code") == "EntryNotFound", "missing file: %r" % r)
        r = call("HEAD", e + "/alice/d/resolve/main/config.json")
        check(r.status == 200 and r.body == b"" and r.headers["Content-Length"] == "9", "HEAD %r" % r)
        # private
        check(call("GET", e + "/acme/secret/resolve/main/config.json", token=None).status == 401, "anonymous private")
        check(call("GET", e + "/acme/secret/resolve/main/config.json", token=BOB).status == 404, "outsider private")
        check(hub.http_download("acme/secret", "w.safetensors", token=READER) == blob, "member download")
        check(not hub.violations(), "violations %r" % hub.violations())


# ---------------------------------------------------------------------------
# fault injection
# ---------------------------------------------------------------------------

@case("fault-429-and-500")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("f", "alice")
        hub.fail("preupload", status=429, times=1, headers={"Retry-After": "1", "RateLimit": '"api";r=0;t=1'})
        r = api.preupload("alice/f", [("a.txt", b"a")])
        check(r.status == 429 and r.headers["Retry-After"] == "1" and r.headers["RateLimit"] == '"api";r=0;t=1'
              and "error" in r.json(), "429: %r" % r)
        time.sleep(0.3)
        check(api.preupload("alice/f", [("a.txt", b"a")]).status == 200, "after the 429")
        gaps = hub.retry_gaps("preupload")
        check(len(gaps) == 1 and 0.28 <= gaps[0] < 2, "retry gap %r" % gaps)
        check(hub.fault_hits("preupload") == 1, "hits")
        # 500 twice then success; `after` lets requests through first
        hub.fail("lfs-batch", status=500, times=2, after=1)
        statuses = [api.batch("alice/f", [b"x"]).status for _ in range(4)]
        check(statuses == [200, 500, 500, 200], "500 twice: %r" % statuses)
        check([r["fault"] for r in hub.requests("lfs-batch")] == [None, "status-500", "status-500", None],
              "fault records")
        # storage faults answer like S3; a body given is sent as JSON
        blob = data(10000, 13)
        obj = api.batch("alice/f", [blob]).json()["objects"][0]
        hub.fail("put", status=503, times=1)
        r = call("PUT", obj["actions"]["upload"]["href"], raw=blob, token=None)
        check(r.status == 503 and b"<Code>SlowDown</Code>" in r.body, "storage 503: %r" % r)
        api.upload(obj, blob)
        hub.fail("create", status=403, body={"error": "You don't have the rights to create a model under this namespace"})
        r = api.create("g", "alice")
        check(r.status == 403 and "rights" in r.json()["error"] and r.headers["X-Error-Message"].startswith("You don't"),
              "injected 403: %r" % r)
        hub.fail("whoami", status=401)
        check(call("GET", hub.endpoint + "/api/whoami-v2").status == 401, "injected 401")
        hub.fail("preupload", status=400, echo_auth=True)
        r = api.preupload("alice/f", [("a.txt", b"a")])
        check(r.status == 400 and ALICE in r.json()["error"], "echo_auth: %r" % r)
        check(ALICE not in json.dumps(hub.requests()), "the echoed token is in the records")
        check(hub.fault_hits() == 7 and len(hub.faults()) == 6, "fault_hits %d faults %r" % (hub.fault_hits(), hub.faults()))
        hub.clear_faults()
        check(not hub.faults(), "clear_faults")


@case("fault-drop-upload")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("dr", "alice")
        a, b = data(300000, 14), data(200000, 15)
        api.preupload("alice/dr", [("a.safetensors", a), ("b.gguf", b)])
        objs = api.batch("alice/dr", [a, b]).json()["objects"]
        hub.drop("put", times=1, after_bytes=1000, path="b.gguf")
        api.upload(objs[0], a)         # not b.gguf: not dropped
        u = urllib.parse.urlsplit(objs[1]["actions"]["upload"]["href"])
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            c.request("PUT", u.path + "?" + u.query, body=b)
            c.getresponse().read()
            raise Failure("the dropped PUT got an answer")
        except (ConnectionError, http.client.HTTPException):
            pass
        c.close()
        puts = hub.storage_puts()
        check([p["path_hint"] for p in puts] == ["a.safetensors", "b.gguf"], "path hints %r" % puts)
        check(puts[1]["fault"] == "drop" and not puts[1]["complete"] and 1000 <= puts[1]["received"] < len(b),
              "dropped PUT record %r" % puts[1])
        check(hub.requests("put")[1]["dropped"] and hub.requests("put")[1]["status"] is None, "dropped flag")
        check(set(hub.objects("alice/dr")) == {sha(a)}, "the dropped object was stored")
        again = {o["oid"]: o for o in api.batch("alice/dr", [a, b]).json()["objects"]}
        check("actions" not in again[sha(a)] and "actions" in again[sha(b)], "resume after the drop")
        api.upload(again[sha(b)], b)
        check(hub.objects("alice/dr") == {sha(a): len(a), sha(b): len(b)}, "resumed upload")
        check(hub.lfs_bytes_received("alice/dr")[0] == len(a), "lfs_bytes_received %r" % hub.lfs_bytes_received("alice/dr"))
        # dropping a part, and an API request (no answer, nothing done)
        with new_hub(multipart_threshold=50000, chunk_size=40000) as hub2:
            api2 = Api(hub2)
            api2.create("m", "alice")
            o = api2.batch("alice/m", [a]).json()["objects"][0]
            hub2.drop("part-put", times=1, after_bytes=5000, after=2)
            try:
                api2.upload(o, a)
                raise Failure("the third part was not dropped")
            except (ConnectionError, urllib.error.URLError, http.client.HTTPException):
                pass
            check([p["part"] for p in hub2.part_puts()] == [1, 2, 3] and hub2.part_puts()[2]["fault"] == "drop",
                  "part drop %r" % hub2.part_puts())
            hub2.drop("create", times=1, after_bytes=None)
            try:
                api2.create("n", "alice")
                raise Failure("create was answered")
            except (ConnectionError, urllib.error.URLError, http.client.HTTPException):
                pass
            check(not hub2.repo_exists("alice/n"), "a dropped create was applied")


@case("fault-lost-commit-reply")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("lc", "alice")
        head0 = hub.head("alice/lc")
        hub.lose_commit_reply(times=1)
        try:
            api.commit("alice/lc", [header("lands", parent=head0), file_line("a.txt", b"a")])
            raise Failure("the commit reply was not lost")
        except (ConnectionError, urllib.error.URLError, http.client.HTTPException):
            pass
        commits = hub.commits("alice/lc")
        check([c["title"] for c in commits] == ["initial commit", "lands"], "the commit did not land: %r" % commits)
        # what a careful client does next: read the head, see it moved
        info = call("GET", hub.endpoint + "/api/models/alice/lc/revision/main").json()
        check(info["sha"] == commits[-1]["oid"] != head0, "revision info after the lost reply")
        r = api.commit("alice/lc", [header("lands", parent=head0), file_line("a.txt", b"a")])
        check(r.status == 412, "a blind retry with the parent is refused: %r" % r)
        rec = hub.requests("commit")[0]
        check(rec["fault"] == "lose-reply" and rec["dropped"] and rec["status"] is None and
              rec["commit_oid"] == commits[-1]["oid"], "record %r" % {k: rec[k] for k in ("fault", "dropped", "status")})
        check(hub.commit_posts() == 2, "commit_posts %d" % hub.commit_posts())


@case("fault-race-and-hooks")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("h", "alice")
        blob = data(20000, 16)
        head0 = hub.head("alice/h")
        # someone commits while the client uploads (declarative, usable over the control API)
        hub.on("put", {"commit_file": {"repo": "alice/h", "path": "other.txt", "data": b"moved\n", "token": ALICE,
                                       "message": "someone else"}})
        api.push_lfs("alice/h", blob)
        r = api.commit("alice/h", [header("mine", parent=head0), lfs_line("w.bin", blob)])
        check(r.status == 412, "stale parent after the race: %r" % r)
        check([c["title"] for c in hub.commits("alice/h")] == ["initial commit", "someone else"], "history")
        seen = []
        hub.on("commit", lambda rec: seen.append(rec["path"]))
        hub.on("commit", lambda: seen.append("no-arg"), times=2)
        check(api.commit("alice/h", [header("mine"), lfs_line("w.bin", blob)]).status == 200, "commit without parent")
        check(seen == ["/api/models/alice/h/commit/main", "no-arg"], "hooks ran %r" % seen)
        # a per-object LFS error
        hub.lfs_object_error(code=422, message="nope", oid=sha(b"zz"))
        objs = api.batch("alice/h", [b"yy", b"zz"]).json()["objects"]
        check("actions" in objs[0] and objs[1]["error"] == {"code": 422, "message": "nope"}, "lfs error %r" % objs)


@case("fault-slow")
def _():
    with new_hub() as hub:
        api = Api(hub)
        api.create("sl", "alice")
        blob = data(100000, 17)
        obj = api.batch("alice/sl", [blob]).json()["objects"][0]
        hub.slow(delay=0.2)
        t0 = time.monotonic()
        call("GET", hub.endpoint + "/api/whoami-v2")
        check(time.monotonic() - t0 >= 0.2, "delay not applied")
        hub.slow(delay=0.5, rate=250000, endpoint="put")   # 0.5 s + 100 kB at 250 kB/s
        t0 = time.monotonic()
        api.upload(obj, blob)
        took = time.monotonic() - t0
        check(0.88 <= took < 5, "slowed PUT took %.2f s" % took)
        t0 = time.monotonic()
        call("GET", hub.endpoint + "/api/whoami-v2")
        check(time.monotonic() - t0 < 0.45, "slow(endpoint=put) slowed whoami")
        hub.slow(rate=200000)                    # responses too
        api.commit("alice/sl", [header(), lfs_line("w.bin", blob)])
        t0 = time.monotonic()
        got = call("GET", hub.endpoint + "/alice/sl/resolve/main/w.bin", follow=True, token=None).body
        took = time.monotonic() - t0
        check(got == blob and took >= 0.4, "throttled download: %.2f s" % took)
        hub.slow(delay=0.5)
        hub.slow()
        t0 = time.monotonic()
        call("GET", hub.endpoint + "/api/whoami-v2")
        check(time.monotonic() - t0 < 0.45, "slow() did not reset")


# ---------------------------------------------------------------------------
# the subprocess form
# ---------------------------------------------------------------------------

@case("subprocess-cli")
def _():
    port_file = os.path.join(CTX.workdir, "ports.json")
    log = os.path.join(CTX.workdir, "requests.jsonl")
    for p in (port_file, log):
        if os.path.exists(p):
            os.unlink(p)
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fakehub.py"), "--port-file", port_file,
                             "--user", "alice:%s:acme" % ALICE, "--user", "rita:%s:acme:read" % READER,
                             "--multipart-threshold", "1000", "--chunk-size", "600", "--log", log,
                             "--fault", '{"method": "fail", "endpoint": "whoami", "status": 503}'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        info = json.loads(first)
        check(json.load(open(port_file)) == info, "port file and stdout differ")
        check(info["pid"] == proc.pid and info["endpoint"] != info["storage"] != info["control"], "info %r" % info)
        e = info["endpoint"]
        check(call("GET", e + "/api/whoami-v2").status == 503, "the --fault was not registered")
        check(call("GET", e + "/api/whoami-v2", token=READER).json()["auth"]["accessToken"]["role"] == "read", "--user role")
        remote = RemoteFakeHub(info)
        remote.create_repo("alice/cli", token=ALICE)
        remote.fail("preupload", status=500, times=1)
        fake_hub = type("H", (), {"endpoint": e})()
        api = Api(fake_hub)
        check(api.preupload("alice/cli", [("a", b"a")]).status == 500, "remote fail()")
        blob = data(1500, 18)
        obj = api.batch("alice/cli", [blob]).json()["objects"][0]
        check(obj["actions"]["upload"]["header"]["chunk_size"] == "600", "--chunk-size")
        api.upload(obj, blob)
        api.commit("alice/cli", [header("via cli"), lfs_line("w.gguf", blob)])
        check(remote.download("alice/cli", "w.gguf") == blob, "remote download (bytes over JSON)")
        check(remote.fault_hits("preupload") == 1 and remote.completions() == 1, "remote counters")
        check([c["title"] for c in remote.commits("alice/cli")] == ["initial commit", "via cli"], "remote commits")
        out = subprocess.run([sys.executable, os.path.join(HERE, "fakehub.py"), "call", info["control"],
                              "files", json.dumps({"repo": "alice/cli"})], capture_output=True, text=True, timeout=30)
        check(out.returncode == 0 and json.loads(out.stdout)["w.gguf"]["lfs"] is True, "call CLI: %s %s"
              % (out.stdout, out.stderr))
        bad = subprocess.run([sys.executable, os.path.join(HERE, "fakehub.py"), "call", info["control"], "close"],
                             capture_output=True, text=True, timeout=30)
        check(bad.returncode == 1 and "unknown method" in bad.stderr, "call of a non-API method: %r" % bad.stderr)
        # a violation makes the exit status 3
        obj = api.batch("alice/cli", [b"q" * 100]).json()["objects"][0]
        call("PUT", obj["actions"]["upload"]["href"], raw=b"q" * 100, token=ALICE)
        check([v["kind"] for v in remote.violations()] == ["authorization-to-storage"], "remote violations")
        proc.send_signal(15)
        rc = proc.wait(timeout=20)
        err = proc.stderr.read()
        check(rc == 3 and "authorization-to-storage" in err, "exit %d, stderr %r" % (rc, err))
        recs = [json.loads(l) for l in open(log)]
        check(len(recs) >= 10 and ALICE not in open(log).read(), "request log (%d lines)" % len(recs))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with RemoteFakeHub.spawn(["--user", "bob:%s" % BOB]) as remote:
        check(call("GET", remote.endpoint + "/api/whoami-v2", token=BOB).json()["name"] == "bob", "spawn()")
        check(remote.close() == 0, "clean exit status")


# ---------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=None)
    p.add_argument("--case", action="append", default=[])
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    if a.list:
        for name, _ in CASES:
            print(name)
        return 0
    unknown = set(a.case) - {n for n, _ in CASES}
    if unknown:
        p.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    CTX.workdir = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="test-fakehub-")
    os.makedirs(CTX.workdir, exist_ok=True)
    passed = failed = 0
    for name, fn in CASES:
        if a.case and name not in a.case:
            continue
        t0 = time.monotonic()
        try:
            fn()
            why = None
        except Failure as e:
            why = str(e)
        except Exception as e:
            import traceback
            why = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
        if why is None:
            passed += 1
            print("ok %s (%.1f s)" % (name, time.monotonic() - t0))
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    if not failed:
        shutil.rmtree(CTX.workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
