#!/usr/bin/env python3
"""fakehub: a local Hugging Face Hub for tests (Python 3.11 standard library
only).

It speaks the Hub's upload protocol as ../shared/reference/hub.md describes
it (whoami-v2, repos/create, preupload, the Git LFS batch API with the basic
and multipart transfers, verify, the NDJSON commit, revisions, model info,
tree listings and resolve), stores what it receives, checks sizes and
SHA-256 sums, records every request and injects faults on demand.  The
"storage" that pre-signed upload URLs point to is a second listener on its
own port; any Authorization header reaching it is recorded as a violation.

In-process use (see doc/testing-hub.md for the whole API):

    from fakehub import FakeHub
    users = [{"token": "hf_alice...", "name": "alice", "orgs": ["acme"]}]
    with FakeHub(workdir, users=users) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        hub.fail("put", status=500, times=2)
        ... run the client ...
        assert hub.files("alice/demo")["model.safetensors"]["lfs"]

As a subprocess (for tests written in C or shell):

    python3 tests/hub/fakehub.py --port-file F [--user NAME:TOKEN[:ORG,...][:ROLE]]...
    python3 tests/hub/fakehub.py call CONTROL_URL METHOD ['{"kwarg": ...}']

The server prints one JSON line {"endpoint", "storage", "control", "pid"}
on stdout and writes the same object to the port file; the control URL takes
POST /call {"method", "args", "kwargs"} for the same methods as the Python
API.  SIGTERM/SIGINT stop it; the exit status is 3 when violations were
recorded.
"""

import argparse
import base64
import codecs
import hashlib
import hmac
import http.server
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

#: above this size the Hub takes no regular (non-LFS) file
LFS_THRESHOLD = 10 * 1024 * 1024

#: the .gitattributes of a new model repository on the Hub (35 rules; *.gguf
#: is not among them)
DEFAULT_GITATTRIBUTES = "".join(
    "%s filter=lfs diff=lfs merge=lfs -text\n" % p for p in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
        "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
        "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
        "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip",
        "*.zst", "*tfevents*"))

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
LFS_POINTER_MISSING = ("Your push was rejected because an LFS pointer pointed to a file that "
                       "does not exist. For instance, this can happen if you used git push "
                       "--no-verify to push your changes. Offending file: - %s")
STALE_PARENT = "The branch was updated since you opened this page. Please refresh and try again."
LFS_JSON = "application/vnd.git-lfs+json"
REPO_TYPES = ("model", "dataset", "space")

#: request kinds ("endpoints") a fault, a hook or a query can name
ENDPOINTS = ("whoami", "create", "delete-repo", "validate-yaml", "repo-info", "tree", "refs",
             "commits", "branch", "preupload", "lfs-batch", "verify", "completion", "commit",
             "resolve", "resolve-cache", "put", "part-put", "storage-get", "unknown")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,96}$")


class FakeHubError(Exception):
    """Misuse of the Python API (unknown repo, bad argument)."""


class FakeHubViolation(AssertionError):
    """Raised when a FakeHub with strict=True closes after recording
    violations (a token sent to storage, a fakehub internal error...)."""


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data):
    """The git object id of a blob holding data."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def _glob_regex(pattern, anchored):
    """A regular expression for one git wildmatch pattern (the subset
    .gitattributes and .gitignore use: *, ?, [...] with [:class:], **)."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                before_ok = i == 0 or pattern[i - 1] == "/"
                after = pattern[i + 2:i + 3]
                if before_ok and after == "/":
                    out.append("(?:.*/)?")      # **/ : zero or more folders
                    i += 3
                    continue
                if before_ok and after == "":
                    out.append(".*")            # trailing /** : everything inside
                    i += 2
                    continue
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                if pattern.startswith("[:", j):
                    k = pattern.find(":]", j + 2)
                    j = k + 2 if k >= 0 else j + 1
                else:
                    j += 1
            if j >= n:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:j]
            neg = body[:1] in ("!", "^")
            if neg:
                body = body[1:]
            classes = {"space": r"\s", "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9",
                       "upper": "A-Z", "lower": "a-z", "xdigit": "0-9a-fA-F", "punct": r"!-/:-@\[-`{-~"}
            parts, k = [], 0
            while k < len(body):
                if body.startswith("[:", k) and body.find(":]", k) > 0:
                    e = body.find(":]", k)
                    parts.append(classes.get(body[k + 2:e], ""))
                    k = e + 2
                elif body[k] in "\\]^":
                    parts.append("\\" + body[k])
                    k += 1
                else:
                    parts.append(body[k])
                    k += 1
            out.append("[%s%s]" % ("^/" if neg else "", "".join(parts)))
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    body = "".join(out)
    return re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")


def _pattern(p):
    """(regex, dir_only) of a .gitattributes/.gitignore pattern."""
    dir_only = p.endswith("/")
    p = p.rstrip("/")
    anchored = "/" in p
    return _glob_regex(p.lstrip("/"), anchored), dir_only


def lfs_tracked(gitattributes, path):
    """Whether the .gitattributes text gives path filter=lfs (the last line
    that sets or unsets filter wins)."""
    result = False
    for line in (gitattributes or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        rx, _ = _pattern(fields[0])
        if not rx.match(path):
            continue
        for attr in fields[1:]:
            if attr.startswith("filter="):
                result = attr == "filter=lfs"
            elif attr in ("-filter", "!filter"):
                result = False
    return result


def git_ignored(gitignore, path):
    """Whether the .gitignore text ignores path (a folder excluded excludes
    everything under it)."""
    rules = []
    for line in (gitignore or "").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        neg = line.startswith("!")
        rx, dir_only = _pattern(line[1:] if neg else line.rstrip())
        rules.append((rx, dir_only, neg))
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        sub = "/".join(parts[:depth])
        is_dir = depth < len(parts)
        ignored = False
        for rx, dir_only, neg in rules:
            if dir_only and not is_dir:
                continue
            if rx.match(sub):
                ignored = not neg
        if ignored:
            return True
    return False


def sample_is_binary(sample, truncated):
    """The Hub sends binary-looking content to LFS: a NUL byte, or bytes that
    are not UTF-8 (a multi-byte character cut at the end of a truncated
    sample does not count)."""
    if b"\0" in sample:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not truncated)
    except UnicodeDecodeError:
        return True
    return False


def bad_repo_path(path):
    """Why path cannot be a file in a repo, or None (the Hub answers 422)."""
    if not isinstance(path, str) or not path:
        return "empty path"
    for seg in re.split(r"[\\/]", path):
        if seg in ("", ".", ".."):
            return "invalid path segment in %r" % path
        if seg == ".git":
            return "reserved path segment .git in %r" % path
    return None


def bad_repo_name(name):
    if not _NAME.match(name or ""):
        return "names are 1 to 96 characters among letters, digits, '-', '_' and '.'"
    if "--" in name or ".." in name:
        return "'--' and '..' are forbidden in names"
    if name[0] in "-." or name[-1] in "-.":
        return "names cannot start or end with '-' or '.'"
    if name.endswith(".git"):
        return "names cannot end with '.git'"
    return None


def _split_repo(repo, repo_type=None):
    """'alice/x' (model), 'datasets/alice/x' or 'spaces/alice/x' ->
    (type, 'alice/x')."""
    parts = repo.split("/")
    if len(parts) == 3 and parts[0] in ("models", "datasets", "spaces"):
        return parts[0][:-1], "/".join(parts[1:])
    if len(parts) != 2:
        raise FakeHubError("repo %r is not of the form owner/name" % repo)
    return repo_type or "model", repo


def _to_json_safe(obj):
    """bytes -> {"__bytes__": base64} recursively (for the control API)."""
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, dict):
        return {k: _to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json_safe(v) for v in obj]
    return obj


def _from_json_safe(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__bytes__"}:
            return base64.b64decode(obj["__bytes__"])
        return {k: _from_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# control flow inside a handler
# ---------------------------------------------------------------------------

class _HTTPError(Exception):
    def __init__(self, status, message, code=None, headers=None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


class _Drop(Exception):
    """Close the connection without answering."""


class _Resp:
    def __init__(self, status=200, body=None, headers=None, ctype="application/json",
                 file=None, file_range=None):
        self.status = status
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        self.body = body if body is not None else b""
        self.headers = dict(headers or {})
        self.ctype = ctype
        self.file = file                # serve this file instead of body
        self.file_range = file_range    # (start, length) within file


class _Fault:
    def __init__(self, kind, endpoint, times, after=0, path=None, repo=None, **kw):
        if endpoint not in ENDPOINTS + ("*", "single-put"):
            raise FakeHubError("unknown endpoint %r (one of %s, * or single-put)"
                               % (endpoint, ", ".join(ENDPOINTS)))
        self.kind, self.endpoint, self.times = kind, endpoint, times
        self.after, self.path = after, path
        self.repo = "%ss/%s" % _split_repo(repo) if repo else None
        self.kw = kw
        self.seen = 0       # matching requests so far
        self.hits = 0       # times applied

    def matches(self, rec):
        ep = rec["endpoint"]
        if self.endpoint == "*":
            pass
        elif self.endpoint == "put":
            if ep not in ("put", "part-put"):
                return False
        elif self.endpoint == "single-put":
            if ep != "put":
                return False
        elif self.endpoint != ep:
            return False
        if self.repo is not None and rec.get("repo") != self.repo:
            return False
        if self.path is not None and rec.get("file_path") != self.path:
            return False
        return True

    def describe(self):
        d = {"kind": self.kind, "endpoint": self.endpoint, "times": self.times, "hits": self.hits}
        d.update({k: v for k, v in self.kw.items() if not callable(v)})
        return d


# ---------------------------------------------------------------------------
# the HTTP side
# ---------------------------------------------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, hub, listener):
        self.hub = hub
        self.listener = listener
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def close_all(self):
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        self.hub._internal_error("connection handler: %r" % exc)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    timeout = 120
    # a reply goes out as headers, then body: with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers (40 ms on Linux), a
    # stall HTTP front ends avoid by setting TCP_NODELAY
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):   # quiet; everything is in hub.requests()
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    # --- request body -------------------------------------------------------

    def _body_setup(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        self.chunked = "chunked" in te
        cl = self.headers.get("Content-Length")
        self.clen = None
        if cl is not None:
            try:
                self.clen = int(cl)
            except ValueError:
                self.clen = -1
        self.body_read = 0
        self.body_done = (not self.chunked) and not self.clen
        self._chunk_left = 0

    def _throttle(self, nbytes):
        rate = self.hub._slow.get("rate")
        if rate and self._slow_applies():
            self._moved += nbytes
            ahead = self._moved / rate - (time.monotonic() - self._t0)
            if ahead > 0:
                time.sleep(ahead)

    def _slow_applies(self):
        ep = self.hub._slow.get("endpoint")
        return ep is None or self.rec.get("endpoint") == ep or (
            ep == "put" and self.rec.get("endpoint") == "part-put")

    def read_some(self, n):
        """Up to n bytes of the request body, b"" at its end."""
        if self.body_done:
            return b""
        if self.chunked:
            if self._chunk_left == 0:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    self.body_done = True
                    return b""
                self._chunk_left = size
            data = self.rfile.read(min(n, self._chunk_left))
            if not data:
                raise ConnectionError("client closed the connection in a chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.rfile.readline(3)
        else:
            left = self.clen - self.body_read
            data = self.rfile.read1(min(n, left)) if left > 0 else b""
            if left > 0 and not data:
                raise ConnectionError("client closed the connection after %d of %d bytes"
                                      % (self.body_read, self.clen))
            if self.body_read + len(data) >= self.clen:
                self.body_done = True
        self.body_read += len(data)
        self.rec["body_bytes"] = self.body_read
        self._throttle(len(data))
        return data

    def read_body(self, limit=512 * 1024 * 1024):
        chunks = []
        while True:
            d = self.read_some(1 << 20)
            if not d:
                break
            chunks.append(d)
            if self.body_read > limit:
                raise _HTTPError(413, "request body too large")
        return b"".join(chunks)

    def drain(self):
        while self.read_some(1 << 20):
            pass

    # --- response -------------------------------------------------------------

    def send(self, resp):
        body = resp.body
        length = len(body)
        if resp.file is not None:
            length = resp.file_range[1] if resp.file_range else os.path.getsize(resp.file)
        self.send_response(resp.status)
        headers = {"X-Request-Id": self.rec["request_id"]}
        if resp.ctype:
            headers["Content-Type"] = resp.ctype
        headers.update(resp.headers)
        if not self.body_done:
            # what the client still sends is not read: do not reuse the connection
            self.close_connection = True
            headers["Connection"] = "close"
        for k, v in headers.items():
            if v is not None:
                self.send_header(k, str(v))
        self.send_header("Content-Length", str(length))
        # the record is complete before the client can see the answer
        self.rec["status"] = resp.status
        self.hub._end(self.rec)
        self.end_headers()
        if self.command == "HEAD":
            return
        if resp.file is not None:
            start, left = resp.file_range if resp.file_range else (0, length)
            with open(resp.file, "rb") as f:
                f.seek(start)
                while left > 0:
                    d = f.read(min(left, 1 << 20))
                    if not d:
                        break
                    self._write(d)
                    left -= len(d)
        elif body:
            self._write(body)

    def _write(self, data):
        if self.hub._slow.get("rate") and self._slow_applies():
            for i in range(0, len(data), 16384):
                piece = data[i:i + 16384]
                self._throttle(len(piece))      # wait first: the last piece arrives late too
                self.wfile.write(piece)
        else:
            self.wfile.write(data)

    def drop(self):
        self.rec["dropped"] = True
        self.hub._end(self.rec)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- dispatch ---------------------------------------------------------------

    def _dispatch(self, method):
        hub = self.server.hub
        self.hub = hub
        self._t0 = time.monotonic()
        self._moved = 0
        self.rec = hub._begin(self.server.listener, method, self.path, self.headers)
        self._body_setup()
        try:
            try:
                resp = hub._handle(self)
                if resp is not None:
                    self.send(resp)
            except _HTTPError as e:
                self.send(hub._error_resp(self, e))
        except _Drop:
            self.drop()
        except (ConnectionError, TimeoutError, socket.timeout, BrokenPipeError) as e:
            with hub._lock:     # the record may already be published
                self.rec["dropped"] = True
                self.rec["client_error"] = str(e)
            self.close_connection = True
        except Exception as e:   # a bug in the fake: answer 500 and remember it
            import traceback
            hub._internal_error("%s %s: %s\n%s" % (method, self.path, e, traceback.format_exc()))
            try:
                self.send(_Resp(500, {"error": "fakehub internal error: %s" % e}))
            except Exception:
                self.close_connection = True
        finally:
            hub._end(self.rec)


class _ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, obj):
        data = json.dumps(_to_json_safe(obj)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/ping":
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": "POST /call {method, args, kwargs}"})

    def do_POST(self):
        hub = self.server.hub
        n = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError as e:
            return self._answer(400, {"error": "bad JSON: %s" % e})
        if self.path == "/shutdown":
            self._answer(200, {"ok": True})
            threading.Thread(target=hub._remote_shutdown, daemon=True).start()
            return
        if self.path != "/call":
            return self._answer(404, {"error": "POST /call {method, args, kwargs}"})
        name = req.get("method")
        if name not in FakeHub.CONTROL_METHODS:
            return self._answer(400, {"error": "unknown method %r; one of %s"
                                      % (name, ", ".join(sorted(FakeHub.CONTROL_METHODS)))})
        try:
            result = getattr(hub, name)(*_from_json_safe(req.get("args") or []),
                                        **_from_json_safe(req.get("kwargs") or {}))
        except (FakeHubError, TypeError, ValueError, KeyError) as e:
            return self._answer(400, {"error": "%s: %s" % (type(e).__name__, e)})
        self._answer(200, {"result": result})


# ---------------------------------------------------------------------------
# the Hub
# ---------------------------------------------------------------------------

class FakeHub:
    """A fake Hugging Face Hub on 127.0.0.1 (see the module docstring and
    doc/testing-hub.md).

    users: list of {"token": "hf_...", "name": "alice", "orgs": ["acme"],
    "role": "write" (or "read", "admin", "fineGrained"), "write": [namespaces]
    (default: the user's name and orgs unless role is "read"),
    "email", "fullname"}.
    """

    #: what the control endpoint may call
    CONTROL_METHODS = {
        "fail", "drop", "lose_commit_reply", "slow", "on", "lfs_object_error", "expire_urls",
        "clear_faults", "faults", "fault_hits", "retry_gaps", "requests", "count",
        "violations", "clear_violations", "protocol_warnings", "storage_puts", "part_puts",
        "completions", "commit_posts", "lfs_batch_count", "lfs_bytes_received",
        "create_repo", "delete_repo", "create_branch", "commit_file", "repo_exists",
        "is_private", "head", "commits", "files", "download", "objects", "pull_requests",
        "add_user", "remove_user", "info", "reset_requests",
    }

    def __init__(self, root=None, users=None, *, host="127.0.0.1", port=0, storage_port=0,
                 control=False, control_port=0, lfs_threshold=LFS_THRESHOLD,
                 multipart_threshold=None, chunk_size=None, verify_action=True,
                 redirect_lfs=True, redirect_regular=False, url_ttl=900, store_objects=True, hash_uploads=True,
                 strict=True, log_file=None, part_key_width=5):
        self._lock = threading.RLock()
        self._own_root = root is None
        if root is None:
            self.root = tempfile.mkdtemp(prefix="fakehub-")
        else:
            os.makedirs(root, exist_ok=True)
            self.root = tempfile.mkdtemp(prefix="fakehub-", dir=root)
        self._objdir = os.path.join(self.root, "objects")
        self._tmpdir = os.path.join(self.root, "tmp")
        os.makedirs(self._objdir)
        os.makedirs(self._tmpdir)
        self._host = host
        self._ports = (port, storage_port, control_port)
        self._want_control = control
        self.lfs_threshold = lfs_threshold
        #: objects larger than this get the multipart transfer (when offered)
        self.multipart_threshold = multipart_threshold if multipart_threshold is not None else 5 * 1024 ** 3
        self.chunk_size = chunk_size or (16 * 1024 * 1024 if multipart_threshold is None
                                         else max(1, multipart_threshold // 2))
        self.verify_action = verify_action
        self.redirect_lfs = redirect_lfs
        #: answer resolve for a regular file with a relative 307 to
        #: /api/resolve-cache/..., as huggingface.co does
        self.redirect_regular = redirect_regular
        self.url_ttl = url_ttl
        self.store_objects = store_objects
        self.hash_uploads = hash_uploads
        self.strict = strict
        self.part_key_width = part_key_width
        self._log_file = open(log_file, "a") if log_file else None
        self._secret = os.urandom(16)
        self._url_epoch = 0
        self._users = {}
        for u in users if users is not None else []:
            self.add_user(**u)
        self._repos = {}            # (type, "ns/name") -> repo dict
        self._objects = {}          # oid -> {"size", "file"}
        self._uploads = {}          # upload id -> pending multipart upload
        self._expected = {}         # (repo key, oid) -> size announced in the LFS batch
        self._records = []
        self._violations = []
        self._warnings = []
        self._faults = []
        self._slow = {}
        self._seq = 0
        self._commit_seq = 0
        self._upload_seq = 0
        self._t_start = time.monotonic()
        self._servers = []
        self._threads = []
        self._stopped = threading.Event()
        self.endpoint = self.storage_url = self.control_url = None

    # --- life cycle ---------------------------------------------------------------

    def start(self):
        hub_port, storage_port, control_port = self._ports
        hub_srv = _Server((self._host, hub_port), _Handler, self, "hub")
        sto_srv = _Server((self._host, storage_port), _Handler, self, "storage")
        self._servers = [hub_srv, sto_srv]
        self.endpoint = "http://%s:%d" % (self._host, hub_srv.server_address[1])
        self.storage_url = "http://%s:%d" % (self._host, sto_srv.server_address[1])
        if self._want_control:
            ctl = _Server((self._host, control_port), _ControlHandler, self, "control")
            self._servers.append(ctl)
            self.control_url = "http://%s:%d" % (self._host, ctl.server_address[1])
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                 daemon=True, name="fakehub-" + s.listener)
            t.start()
            self._threads.append(t)
        return self

    def close(self):
        for s in self._servers:
            s.shutdown()
            s.close_all()
            s.server_close()
        self._servers = []
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self.root, ignore_errors=True)
        self._stopped.set()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        violations = self.violations()
        self.close()
        if self.strict and exc_type is None and violations:
            raise FakeHubViolation("fakehub recorded %d violation(s): %s"
                                   % (len(violations), json.dumps(violations[:5], indent=1)))
        return False

    def _remote_shutdown(self):
        self._stopped.set()

    def info(self):
        """The URLs and settings (what the CLI prints)."""
        return {"endpoint": self.endpoint, "storage": self.storage_url,
                "control": self.control_url, "pid": os.getpid(),
                "lfs_threshold": self.lfs_threshold,
                "multipart_threshold": self.multipart_threshold, "chunk_size": self.chunk_size}

    # --- users ----------------------------------------------------------------------

    def add_user(self, token, name, orgs=(), role="write", write=None, email=None, fullname=None):
        """Make token valid for the account name (member of orgs)."""
        if not token:
            raise FakeHubError("a user needs a token")
        if role not in ("read", "write", "admin", "contributor", "fineGrained"):
            raise FakeHubError("unknown role %r" % role)
        if write is None:
            write = [] if role == "read" else [name] + list(orgs)
        with self._lock:
            self._users[token] = {"token": token, "name": name, "orgs": list(orgs), "role": role,
                                  "write": list(write), "email": email or "%s@example.com" % name,
                                  "fullname": fullname or name.capitalize()}

    def remove_user(self, token):
        """The token stops being valid (a revoked token)."""
        with self._lock:
            self._users.pop(token, None)

    def _user_for_token(self, token):
        u = self._users.get(token) if token else None
        if token is not None and u is None:
            raise FakeHubError("unknown token")
        return u

    @staticmethod
    def _oid_of(name, salt=""):
        return hashlib.sha1(("fakehub:%s:%s" % (salt, name)).encode()).hexdigest()[:24]

    # --- records, violations -----------------------------------------------------------

    def _now(self):
        return time.monotonic() - self._t_start

    def _begin(self, listener, method, raw_path, headers):
        with self._lock:
            self._seq += 1
            seq = self._seq
        hdrs = {}
        auth = None
        for k, v in headers.items():
            k = k.lower()
            if k == "authorization":
                auth = v
                scheme = v.split(" ", 1)[0] if " " in v else ""
                v = (scheme + " " if scheme else "") + "<redacted>"
            hdrs[k] = v
        url = urllib.parse.urlsplit(raw_path)
        rec = {"seq": seq, "listener": listener, "method": method,
               "path": urllib.parse.unquote(url.path), "raw_path": url.path,
               "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
               "headers": hdrs, "endpoint": "unknown", "repo": None, "file_path": None,
               "account": None, "auth": "none", "status": None, "fault": None,
               "dropped": False, "body_bytes": 0, "start": self._now(), "end": None,
               "request_id": "fakehub-%06d" % seq}
        rec["_auth_header"] = auth
        with self._lock:
            tokens = list(self._users)
        for tok in tokens:
            if tok in raw_path:
                self._violation("token-in-url", "a token was sent in a URL", rec)
        return rec

    def _end(self, rec):
        """The request is answered (or dropped): into the records, once."""
        with self._lock:
            if rec.get("end") is not None:
                return
            rec["end"] = self._now()
            rec.pop("_auth_header", None)
            self._records.append(rec)
            if self._log_file:
                self._log_file.write(json.dumps(rec) + "\n")
                self._log_file.flush()

    def _violation(self, kind, message, rec=None):
        v = {"kind": kind, "message": message}
        if rec is not None:
            v.update({"seq": rec["seq"], "method": rec["method"], "path": rec["path"],
                      "listener": rec["listener"]})
        with self._lock:
            self._violations.append(v)

    def _internal_error(self, message):
        self._violation("fakehub-internal-error", message)

    def _warn(self, kind, message, rec=None):
        w = {"kind": kind, "message": message}
        if rec is not None:
            w["seq"] = rec["seq"]
        with self._lock:
            self._warnings.append(w)

    def violations(self):
        """What a client must never do and did (each a dict with kind and
        message): "authorization-to-storage", "authorization-to-completion",
        "token-in-url", "lfs-content-mismatch", "fakehub-internal-error".
        A strict FakeHub raises FakeHubViolation when its with block ends
        while this is not empty."""
        with self._lock:
            return [dict(v) for v in self._violations]

    def clear_violations(self):
        with self._lock:
            n = len(self._violations)
            self._violations = []
        return n

    def protocol_warnings(self):
        """Deviations from what the reference clients do that the Hub may
        accept (kind "sample-mismatch", "mode-mismatch", "no-hash-algo",
        "lfs-content-type"...)."""
        with self._lock:
            return [dict(w) for w in self._warnings]

    def requests(self, endpoint=None, listener=None, method=None):
        """Every finished request, oldest first: dicts with seq, listener
        ("hub" or "storage"), method, path (decoded), raw_path, query,
        headers (lower-case names; an Authorization value is replaced by
        "<scheme> <redacted>"), endpoint, repo, file_path, account (the
        user the token belongs to, else None), auth ("none", "valid",
        "invalid"), status (None when the connection was dropped), fault,
        dropped, body_bytes, start, end (seconds since the hub started),
        request_id, and per endpoint: json (parsed body), ndjson (commit
        lines, file contents replaced by content_size/content_sha256),
        oid, part, upload_id."""
        with self._lock:
            out = []
            for r in sorted(self._records, key=lambda r: r["seq"]):
                if endpoint is not None and not _endpoint_matches(endpoint, r["endpoint"]):
                    continue
                if listener is not None and r["listener"] != listener:
                    continue
                if method is not None and r["method"] != method:
                    continue
                out.append(dict(r))
            return out

    def reset_requests(self):
        with self._lock:
            self._records = []

    def count(self, endpoint, status=None):
        """How many requests of that endpoint arrived (with that status)."""
        return len([r for r in self.requests(endpoint)
                    if status is None or r["status"] == status])

    def commit_posts(self):
        """How many commit POSTs arrived (whatever their outcome)."""
        return self.count("commit")

    def lfs_batch_count(self):
        return self.count("lfs-batch")

    def completions(self):
        """How many multipart completion POSTs arrived."""
        return self.count("completion")

    def storage_puts(self):
        """Every storage PUT (single and part), oldest first: dicts with seq,
        repo, oid, part (None for a single PUT), upload_id, expected
        (bytes), received (bytes), complete (the whole body arrived and was
        answered 2xx), stored (the object is now in the repo), status,
        path_hint (the repo path the preupload announced with this size and
        sample, else None), fault."""
        with self._lock:
            return [dict(r["storage"], seq=r["seq"], status=r["status"], fault=r["fault"])
                    for r in sorted(self._records, key=lambda r: r["seq"]) if "storage" in r]

    def part_puts(self):
        return [p for p in self.storage_puts() if p["part"] is not None]

    def lfs_bytes_received(self, repo):
        """Bytes received by each storage PUT for objects of repo."""
        rt, rid = _split_repo(repo)
        key = "%ss/%s" % (rt, rid)
        return [p["received"] for p in self.storage_puts() if p["repo"] == key]

    # --- faults ---------------------------------------------------------------------------

    def _add_fault(self, fault):
        with self._lock:
            self._faults.append(fault)
        return len(self._faults) - 1

    def fail(self, endpoint, status=500, times=1, headers=None, body=None, echo_auth=False,
             path=None, repo=None, after=0):
        """Answer the next `times` requests of endpoint (after letting `after`
        of them through) with status, extra headers and a JSON body (default
        {"error": ...}; storage answers S3-style XML).  echo_auth puts the
        request's Authorization header in the error message (a misbehaving
        Hub).  path restricts to one repo file (storage PUTs: the path
        announced at preupload; resolve: the file), repo to one repo."""
        return self._add_fault(_Fault("status", endpoint, times, after, path, repo,
                                      status=int(status), headers=dict(headers or {}),
                                      body=body, echo_auth=echo_auth))

    def drop(self, endpoint, times=1, after_bytes=0, path=None, repo=None, after=0):
        """Close the connection of the next `times` requests of endpoint
        after reading after_bytes of their body (None: all of it), without
        answering and without acting on them."""
        return self._add_fault(_Fault("drop", endpoint, times, after, path, repo,
                                      after_bytes=after_bytes))

    def lose_commit_reply(self, times=1, repo=None, after=0):
        """The next `times` commits are applied, then their connection is
        closed before the reply: the commit landed, the client does not know."""
        return self._add_fault(_Fault("lose-reply", "commit", times, after, None, repo))

    def on(self, endpoint, action, times=1, path=None, repo=None, after=0):
        """Run action when a request of endpoint arrives, before it is
        handled: a callable (no argument, or the request record), or
        {"commit_file": {kwargs of commit_file}} (usable over the control
        API) - e.g. someone else moving the branch during an upload."""
        if not callable(action) and not (isinstance(action, dict) and "commit_file" in action):
            raise FakeHubError("action must be callable or {'commit_file': {...}}")
        return self._add_fault(_Fault("hook", endpoint, times, after, path, repo, action=action))

    def lfs_object_error(self, code=422, message="Object rejected by fakehub", times=1, oid=None):
        """The LFS batch answers an error entry for the next `times` objects
        (or for that oid) instead of actions."""
        return self._add_fault(_Fault("lfs-error", "lfs-batch", times, 0, None, None,
                                      code=int(code), message=message, oid=oid))

    def slow(self, delay=0.0, rate=None, endpoint=None):
        """Wait delay seconds before answering each request and move request
        and response bodies at rate bytes/s (both listeners, or only
        endpoint).  slow() with no argument makes it fast again."""
        with self._lock:
            self._slow = {"delay": float(delay or 0), "rate": rate, "endpoint": endpoint}

    def expire_urls(self):
        """Every pre-signed URL handed out so far expires (storage answers 403
        AccessDenied, as S3 does)."""
        with self._lock:
            self._url_epoch += 1

    def clear_faults(self):
        """Remove every fault, hook and slowness."""
        with self._lock:
            self._faults = []
            self._slow = {}

    def faults(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def fault_hits(self, endpoint=None):
        """How many times faults registered for endpoint (as named when
        registered; None: all) were applied."""
        with self._lock:
            return sum(f.hits for f in self._faults
                       if endpoint is None or f.endpoint == endpoint)

    def retry_gaps(self, endpoint):
        """For each request of endpoint answered by an injected fault (or
        dropped), the seconds from the end of that answer to the start of
        the next request of the same endpoint and URL path: the client's
        back-off."""
        recs = self.requests(endpoint)
        gaps = []
        for i, r in enumerate(recs):
            if not r["fault"] or r["fault"] == "hook":
                continue
            for n in recs[i + 1:]:
                if n["path"] == r["path"] and n["start"] >= r["end"]:
                    gaps.append(round(n["start"] - r["end"], 3))
                    break
        return gaps

    def _take_faults(self, rec, kinds, pred=None):
        """The faults of these kinds that apply to rec now (counted)."""
        out = []
        with self._lock:
            for f in self._faults:
                if f.kind not in kinds or f.hits >= f.times or not f.matches(rec):
                    continue
                if pred is not None and not pred(f):
                    continue
                f.seen += 1
                if f.seen <= f.after:
                    continue
                f.hits += 1
                out.append(f)
        return out

    def _run_hooks(self, rec):
        for f in self._take_faults(rec, ("hook",)):
            a = f.kw["action"]
            if callable(a):
                try:
                    n = len(inspect.signature(a).parameters)
                except (TypeError, ValueError):
                    n = 0
                a(dict(rec)) if n else a()
            else:
                self.commit_file(**a["commit_file"])

    def _apply_faults(self, h, rec):
        """Status and drop faults for rec: raise what the handler must do."""
        for f in self._take_faults(rec, ("status", "drop")):
            rec["fault"] = f.kind if f.kind == "drop" else "status-%d" % f.kw["status"]
            if f.kind == "drop":
                limit = f.kw["after_bytes"]
                while limit is None or h.body_read < limit:
                    d = h.read_some(65536 if limit is None else min(65536, limit - h.body_read))
                    if not d:
                        break
                raise _Drop()
            h.drain()
            status = f.kw["status"]
            reason = http.server.BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
            msg = "%s (injected by fakehub)" % reason
            if f.kw["echo_auth"]:
                msg += "; you sent Authorization: %s" % (rec.get("_auth_header") or "nothing")
            headers = dict(f.kw["headers"])
            body = f.kw["body"]
            if rec["listener"] == "storage" and body is None:
                code = {403: "AccessDenied", 429: "SlowDown", 503: "SlowDown",
                        500: "InternalError"}.get(status, "InternalError")
                raise _HTTPError(status, msg, headers=headers, body=_s3_error(code, msg))
            if isinstance(body, dict) and "error" in body and "X-Error-Message" not in headers:
                headers["X-Error-Message"] = str(body["error"])
            raise _HTTPError(status, msg, headers=headers, body=body)

    # --- dispatching --------------------------------------------------------------------

    def _handle(self, h):
        rec = h.rec
        segs = [urllib.parse.unquote(s) for s in rec["raw_path"].split("/")[1:]]
        if rec["listener"] == "storage":
            route = self._route_storage(rec["method"], segs)
        else:
            route = self._route_hub(rec["method"], segs)
        endpoint, fn, params = route
        rec["endpoint"] = endpoint
        if "repo" in params:
            rec["repo"] = "%ss/%s" % params["repo"]
        if "file" in params:
            rec["file_path"] = params["file"]
        slow = self._slow
        if slow.get("delay") and h._slow_applies():
            time.sleep(slow["delay"])
            h._t0 = time.monotonic()     # the byte rate counts from here
        # who is asking
        auth = rec.get("_auth_header")
        user = None
        if auth:
            token = None
            if auth.startswith("Bearer "):
                token = auth[7:].strip()
            elif auth.startswith("Basic "):
                try:
                    token = base64.b64decode(auth[6:]).decode().split(":", 1)[1]
                except (ValueError, IndexError):
                    token = None
            with self._lock:
                user = self._users.get(token)
            rec["auth"] = "valid" if user else "invalid"
            rec["account"] = user["name"] if user else None
            if rec["listener"] == "storage":
                self._violation("authorization-to-storage",
                                "an Authorization header reached the storage listener", rec)
            elif endpoint == "completion":
                self._violation("authorization-to-completion",
                                "an Authorization header was sent with the multipart completion "
                                "(a pre-signed URL; the reference clients send none)", rec)
        h.user = user
        self._run_hooks(rec)
        if auth and rec["listener"] == "storage" and endpoint != "unknown":
            h.drain()
            raise _HTTPError(400, "Only one auth mechanism allowed",
                             body=_s3_error("InvalidArgument", "Only one auth mechanism allowed; only the "
                                            "X-Amz-Algorithm query parameter, Signature query string parameter "
                                            "or the Authorization header should be specified"))
        if not params.get("late_faults"):
            self._apply_faults(h, rec)
        if user is None and auth and rec["listener"] == "hub" and endpoint not in ("completion",):
            # an unknown token is refused everywhere, even for public reads
            raise _HTTPError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})
        return fn(h, **{k: v for k, v in params.items() if k != "late_faults"})

    def _error_resp(self, h, e):
        if e.body is not None and isinstance(e.body, (bytes, bytearray)):
            return _Resp(e.status, bytes(e.body), e.headers, ctype="application/xml")
        body = e.body if e.body is not None else {"error": e.message}
        headers = dict(e.headers)
        if e.code:
            headers.setdefault("X-Error-Code", e.code)
        if h.rec["listener"] == "hub" and "X-Error-Message" not in headers and e.status != 404:
            headers["X-Error-Message"] = e.message
        ctype = LFS_JSON if h.rec["endpoint"] in ("lfs-batch",) else "application/json"
        if h.rec["endpoint"] == "lfs-batch" and isinstance(body, dict):
            body.setdefault("message", e.message)
        return _Resp(e.status, body, headers, ctype=ctype)

    def _route_hub(self, method, s):
        n = len(s)
        nf = (lambda h: self._not_found(h))
        if s[:1] == ["api"]:
            if s == ["api", "whoami-v2"] and method == "GET":
                return "whoami", self._h_whoami, {}
            if s == ["api", "repos", "create"] and method == "POST":
                return "create", self._h_create, {}
            if s == ["api", "repos", "delete"] and method == "DELETE":
                return "delete-repo", self._h_delete_repo, {}
            if s == ["api", "validate-yaml"] and method == "POST":
                return "validate-yaml", self._h_validate_yaml, {}
            if s == ["api", "complete_multipart"] and method == "POST":
                return "completion", self._h_completion, {}
            if n >= 7 and s[1] == "resolve-cache" and s[2] in ("models", "datasets", "spaces") \
                    and method in ("GET", "HEAD"):
                return "resolve-cache", self._h_resolve_cache, {
                    "repo": (s[2][:-1], s[3] + "/" + s[4]), "commit": s[5], "file": "/".join(s[6:])}
            if n >= 4 and s[1] in ("models", "datasets", "spaces"):
                repo = (s[1][:-1], s[2] + "/" + s[3])
                rest = s[4:]
                if not rest and method in ("GET", "HEAD"):
                    return "repo-info", self._h_repo_info, {"repo": repo, "rev": None}
                if rest[:1] == ["revision"] and len(rest) >= 2 and method in ("GET", "HEAD"):
                    return "repo-info", self._h_repo_info, {"repo": repo, "rev": "/".join(rest[1:])}
                if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                    return "tree", self._h_tree, {"repo": repo, "rev": rest[1],
                                                  "file": "/".join(rest[2:]) or None}
                if rest == ["refs"] and method == "GET":
                    return "refs", self._h_refs, {"repo": repo}
                if rest[:1] == ["commits"] and len(rest) >= 2 and method == "GET":
                    return "commits", self._h_commits, {"repo": repo, "rev": "/".join(rest[1:])}
                if rest[:1] == ["branch"] and len(rest) >= 2 and method in ("POST", "DELETE"):
                    return "branch", self._h_branch, {"repo": repo, "branch": "/".join(rest[1:])}
                if rest[:1] == ["preupload"] and len(rest) >= 2 and method == "POST":
                    return "preupload", self._h_preupload, {"repo": repo, "rev": "/".join(rest[1:])}
                if rest[:1] == ["commit"] and len(rest) >= 2 and method == "POST":
                    return "commit", self._h_commit, {"repo": repo, "rev": "/".join(rest[1:])}
            return "unknown", nf, {}
        # /{prefix}{ns}/{name}.git/info/lfs/objects/{batch,verify}
        # /{prefix}{ns}/{name}/resolve/{rev}/{path}
        rtype = "model"
        if s[:1] in (["datasets"], ["spaces"]):
            rtype = s[0][:-1]
            s = s[1:]
            n = len(s)
        if n == 6 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"]:
            repo = (rtype, s[0] + "/" + s[1][:-4])
            if s[5] == "batch" and method == "POST":
                return "lfs-batch", self._h_lfs_batch, {"repo": repo}
            if s[5] == "verify" and method == "POST":
                return "verify", self._h_verify, {"repo": repo}
        if n >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return "resolve", self._h_resolve, {"repo": (rtype, s[0] + "/" + s[1]), "rev": s[3],
                                                "file": "/".join(s[4:])}
        return "unknown", nf, {}

    def _route_storage(self, method, s):
        # /lfs/{type}s/{ns}/{name}/{oid}  (?uploadId&partNumber for parts)
        if len(s) == 5 and s[0] in ("lfs", "lfs-dl") and s[1] in ("models", "datasets", "spaces"):
            repo = (s[1][:-1], s[2] + "/" + s[3])
            if s[0] == "lfs" and method == "PUT":
                return "put", self._h_storage_put, {"repo": repo, "oid": s[4], "late_faults": True}
            if s[0] == "lfs-dl" and method in ("GET", "HEAD"):
                return "storage-get", self._h_storage_get, {"repo": repo, "oid": s[4]}
        return "unknown", (lambda h: self._storage_not_found(h)), {}

    def _not_found(self, h):
        h.drain()
        raise _HTTPError(404, "Sorry, we can't find the page you are looking for.")

    def _storage_not_found(self, h):
        h.drain()
        raise _HTTPError(404, "no such key", body=_s3_error("NoSuchKey", "The specified key does not exist."))

    # --- repo access ---------------------------------------------------------------------

    def _repo_or_error(self, h, key, write=False, pr=False):
        """The repo for a request, or the Hub's error: 401 without a token on
        a write, 401/404 RepoNotFound for a missing or invisible repo, 403
        without write access (pr: opening a pull request needs read access
        only)."""
        user = h.user
        if write and user is None:
            raise _HTTPError(401, INVALID_CREDENTIALS if h.rec.get("_auth_header") else
                             "Authorization header is required", headers={"X-Error-Message": INVALID_CREDENTIALS})
        with self._lock:
            repo = self._repos.get(key)
        visible = repo is not None and (not repo["private"] or self._member(user, key[1].split("/")[0]))
        if not visible:
            if user is None:
                raise _HTTPError(401, "Repository not found", "RepoNotFound",
                                 headers={"X-Error-Message": "Invalid username or password."})
            raise _HTTPError(404, "Repository not found", "RepoNotFound",
                             headers={"X-Error-Message": "Repository not found"})
        if write and not pr and not self._can_write(user, key[1].split("/")[0]):
            raise _HTTPError(403, "You don't have the rights to write to %s (token of %s, role %s)"
                             % (key[1], user["name"], user["role"]))
        return repo

    @staticmethod
    def _member(user, ns):
        return user is not None and (ns == user["name"] or ns in user["orgs"])

    @staticmethod
    def _can_write(user, ns):
        return user is not None and user["role"] != "read" and ns in user["write"]

    def _resolve_rev(self, repo, rev, h=None):
        """(ref name or None, commit oid) of a revision: a branch, refs/heads/x,
        refs/pr/N, HEAD, or a commit id (full or >= 7 hex)."""
        if rev in (None, "", "HEAD"):
            rev = "main"
        refs = repo["refs"]
        for cand in (rev, "refs/heads/" + rev):
            if cand in refs:
                return cand, refs[cand]
        if re.match(r"^[0-9a-f]{7,40}$", rev):
            hits = [c for c in repo["commits"] if c.startswith(rev)]
            if len(hits) == 1:
                return None, hits[0]
        raise _HTTPError(404, "Invalid rev id: %s" % rev, "RevisionNotFound",
                         headers={"X-Error-Message": "Invalid rev id: %s" % rev})

    def _tree(self, repo, oid):
        return repo["commits"][oid]["tree"]

    # --- JSON bodies --------------------------------------------------------------------

    def _json_body(self, h, allow_empty=False):
        data = h.read_body()
        if not data and allow_empty:
            return {}
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise _HTTPError(400, "Invalid JSON in the request body: %s" % e)
        h.rec["json"] = obj
        return obj

    # --- endpoints: account and repos ----------------------------------------------------

    def _h_whoami(self, h):
        h.drain()
        u = h.user
        if u is None:
            raise _HTTPError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})
        return _Resp(200, self._whoami_body(u))

    def _whoami_body(self, u):
        orgs = [{"type": "org", "id": self._oid_of(o, "org"), "name": o, "fullname": o.capitalize(),
                 "email": None, "canPay": False, "avatarUrl": "/avatars/%s.svg" % o,
                 "periodEnd": None, "roleInOrg": "write" if o in u["write"] else "read"}
                for o in u["orgs"]]
        return {"type": "user", "id": self._oid_of(u["name"], "user"), "name": u["name"],
                "fullname": u["fullname"], "email": u["email"], "emailVerified": True,
                "canPay": False, "isPro": False, "periodEnd": None,
                "avatarUrl": "/avatars/%s.svg" % u["name"], "billingMode": "postpaid", "orgs": orgs,
                "auth": {"type": "access_token",
                         "accessToken": {"displayName": "fakehub-%s" % u["name"], "role": u["role"],
                                         "createdAt": "2026-01-01T00:00:00.000Z"}}}

    def _repo_url(self, key):
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[key[0]]
        return "%s/%s%s" % (self.endpoint, prefix, key[1])

    def _h_create(self, h):
        body = self._json_body(h)
        u = h.user
        if u is None:
            raise _HTTPError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})
        name = body.get("name")
        org = body.get("organization")
        rtype = body.get("type") or "model"
        if rtype not in REPO_TYPES:
            raise _HTTPError(400, "Invalid repo type %r" % rtype)
        if not isinstance(name, str):
            raise _HTTPError(400, "\"name\" is required")
        if "/" in name and org is None:
            org, name = name.split("/", 1)
        ns = org if org else u["name"]
        why = bad_repo_name(name) or bad_repo_name(ns)
        if why:
            raise _HTTPError(400, "Invalid repo name: %s" % why)
        if not self._can_write(u, ns):
            raise _HTTPError(403, "You don't have the rights to create a %s under this namespace" % rtype)
        if "private" in body:
            private = bool(body["private"])
        else:
            private = body.get("visibility") in ("private", "protected")
        key = (rtype, "%s/%s" % (ns, name))
        url = self._repo_url(key)
        files = []
        for f in body.get("files") or []:
            try:
                files.append((f["path"], base64.b64decode(f["content"]) if f.get("encoding") == "base64"
                              else f["content"].encode()))
            except (KeyError, ValueError, AttributeError):
                raise _HTTPError(400, "Invalid files entry")
        with self._lock:
            if key in self._repos:
                raise _HTTPError(409, "You already created this %s repo" % rtype,
                                 body={"error": "You already created this %s repo" % rtype, "url": url})
            repo = self._new_repo(key, private, u["name"], files)
        return _Resp(200, {"url": url, "name": key[1], "id": repo["id"]})

    def _new_repo(self, key, private, author, files=()):
        repo = {"key": key, "id": self._oid_of(key[1], key[0]), "private": private,
                "created": time.time(), "refs": {}, "commits": {}, "prs": [], "next_num": 1,
                "lfs": {}, "preuploads": {}}
        self._repos[key] = repo
        tree = {".gitattributes": self._regular(DEFAULT_GITATTRIBUTES.encode())}
        for path, data in files:
            tree[path] = self._regular(data)
        self._make_commit(repo, "refs/heads/main", None, tree, "initial commit", "", author,
                          initial=True, ops=[{"op": "add", "path": p} for p in sorted(tree)])
        return repo

    def _h_delete_repo(self, h):
        body = self._json_body(h)
        u = h.user
        if u is None:
            raise _HTTPError(401, INVALID_CREDENTIALS)
        ns = body.get("organization") or u["name"]
        key = (body.get("type") or "model", "%s/%s" % (ns, body.get("name")))
        self._repo_or_error(h, key, write=True)
        with self._lock:
            del self._repos[key]
        return _Resp(200, {})

    def _h_validate_yaml(self, h):
        body = self._json_body(h)
        content = body.get("content")
        if not isinstance(content, str):
            raise _HTTPError(400, "\"content\" is required")
        text = content.replace("\r\n", "\n")
        errors, warnings = [], []
        if text.startswith("---\n"):
            end = re.search(r"\n---[ \t]*(\n|$)", text[3:])
            if not end:
                errors.append({"message": "YAML front matter is not closed by a '---' line"})
            else:
                block = text[4:3 + end.start()]
                for i, line in enumerate(block.split("\n"), 1):
                    if "\t" in line[:len(line) - len(line.lstrip())]:
                        errors.append({"message": "line %d: tabs are not allowed in YAML indentation" % i})
                if not block.strip():
                    warnings.append({"message": "empty or missing yaml metadata in repo card"})
        else:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        return _Resp(400 if errors else 200, {"errors": errors, "warnings": warnings})

    def _h_repo_info(self, h, repo, rev):
        h.drain()
        r = self._repo_or_error(h, repo)
        with self._lock:
            _, oid = self._resolve_rev(r, rev)
            c = r["commits"][oid]
            tree = c["tree"]
            siblings = []
            blobs = h.rec["query"].get("blobs") in ("1", "true", "True")
            for p in sorted(tree):
                e = tree[p]
                s = {"rfilename": p}
                if blobs:
                    s["size"] = e["size"]
                    s["blobId"] = e["git_oid"]
                    if e["lfs"]:
                        s["lfs"] = {"sha256": e["oid"], "size": e["size"], "pointerSize": e["pointer_size"]}
                siblings.append(s)
            rtype, rid = repo
            body = {"_id": r["id"], "id": rid, "author": rid.split("/")[0], "sha": oid,
                    "lastModified": _iso(c["time"]), "createdAt": _iso(r["created"]),
                    "private": r["private"], "disabled": False, "gated": False, "downloads": 0,
                    "likes": 0, "tags": [], "siblings": siblings,
                    "usedStorage": sum(o["size"] for o in r["lfs"].values())}
            if rtype == "model":
                body["modelId"] = rid
        return _Resp(200, body, {"X-Repo-Commit": oid})

    def _h_tree(self, h, repo, rev, file):
        h.drain()
        r = self._repo_or_error(h, repo)
        recursive = h.rec["query"].get("recursive") in ("1", "true", "True")
        with self._lock:
            _, oid = self._resolve_rev(r, rev)
            tree = self._tree(r, oid)
            prefix = (file.rstrip("/") + "/") if file else ""
            if file and file in tree:
                raise _HTTPError(400, "%s is a file, not a folder" % file)
            out, dirs = [], set()
            for p in sorted(tree):
                if not p.startswith(prefix):
                    continue
                rest = p[len(prefix):]
                if "/" in rest and not recursive:
                    dirs.add(prefix + rest.split("/")[0])
                    continue
                if recursive:
                    parts = rest.split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        dirs.add(prefix + "/".join(parts[:i]))
                e = tree[p]
                item = {"type": "file", "oid": e["git_oid"], "size": e["size"], "path": p}
                if e["lfs"]:
                    item["lfs"] = {"oid": e["oid"], "size": e["size"], "pointerSize": e["pointer_size"]}
                out.append(item)
            if file and not out and not dirs:
                raise _HTTPError(404, "Entry not found", "EntryNotFound",
                                 headers={"X-Error-Message": "Entry not found"})
            for d in sorted(dirs):
                out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                            "size": 0, "path": d})
            out.sort(key=lambda i: i["path"])
        return _Resp(200, out)

    def _h_refs(self, h, repo):
        h.drain()
        r = self._repo_or_error(h, repo)
        with self._lock:
            branches = [{"name": k[len("refs/heads/"):], "ref": k, "targetCommit": v}
                        for k, v in sorted(r["refs"].items()) if k.startswith("refs/heads/")]
            body = {"branches": branches, "converts": [], "tags": []}
            if h.rec["query"].get("include_prs") in ("1", "true", "True"):
                body["pullRequests"] = [{"name": k, "ref": k, "targetCommit": v}
                                        for k, v in sorted(r["refs"].items()) if k.startswith("refs/pr/")]
        return _Resp(200, body)

    def _h_commits(self, h, repo, rev):
        h.drain()
        r = self._repo_or_error(h, repo)
        with self._lock:
            _, oid = self._resolve_rev(r, rev)
            out = []
            while oid:
                c = r["commits"][oid]
                out.append({"id": oid, "title": c["title"], "message": c["description"],
                            "authors": [{"user": c["author"]}], "date": _iso(c["time"])})
                oid = c["parents"][0] if c["parents"] else None
        return _Resp(200, out)

    def _h_branch(self, h, repo, branch):
        body = self._json_body(h, allow_empty=True) if h.rec["method"] == "POST" else (h.drain() or {})
        r = self._repo_or_error(h, repo, write=True)
        ref = "refs/heads/" + branch
        with self._lock:
            if h.rec["method"] == "DELETE":
                if ref not in r["refs"]:
                    raise _HTTPError(404, "Invalid rev id: %s" % branch, "RevisionNotFound")
                if branch == "main":
                    raise _HTTPError(403, "Cannot delete the default branch")
                del r["refs"][ref]
                return _Resp(200, {})
            if ref in r["refs"]:
                raise _HTTPError(409, "Reference already exists: %s" % ref)
            if re.search(r"\.\.|^/|/$|\s|~|\^|:|\\", branch):
                raise _HTTPError(400, "Invalid branch name %r" % branch)
            _, oid = self._resolve_rev(r, body.get("startingPoint") or "main")
            r["refs"][ref] = oid
        return _Resp(200, {})

    # --- preupload ------------------------------------------------------------------------

    def _h_preupload(self, h, repo, rev):
        body = self._json_body(h)
        pr = h.rec["query"].get("create_pr") in ("1", "true", "True")
        r = self._repo_or_error(h, repo, write=True, pr=pr)
        files = body.get("files")
        if not isinstance(files, list):
            raise _HTTPError(400, "\"files\" must be an array")
        with self._lock:
            _, head = self._resolve_rev(r, rev)
            tree = self._tree(r, head)
            attrs = body.get("gitAttributes")
            if not isinstance(attrs, str):
                ga = tree.get(".gitattributes")
                attrs = ga["data"].decode("utf-8", "replace") if ga and not ga["lfs"] else ""
            ignore = body.get("gitIgnore")
            if not isinstance(ignore, str):
                gi = tree.get(".gitignore")
                ignore = gi["data"].decode("utf-8", "replace") if gi and not gi["lfs"] else ""
            out = []
            for f in files:
                if not isinstance(f, dict) or not isinstance(f.get("path"), str) or \
                        not isinstance(f.get("size"), int) or isinstance(f.get("size"), bool) or \
                        f["size"] < 0 or not isinstance(f.get("sample"), str):
                    raise _HTTPError(400, "Invalid file entry: each needs path, size and sample")
                why = bad_repo_path(f["path"])
                if why:
                    raise _HTTPError(422, why)
                try:
                    sample = base64.b64decode(f["sample"], validate=True)
                except ValueError:
                    raise _HTTPError(400, "sample of %s is not base64" % f["path"])
                if len(sample) > 512:
                    self._warn("sample-too-long", "%s: sample of %d bytes (the clients send 512)"
                               % (f["path"], len(sample)), h.rec)
                if len(sample) != min(512, f["size"]):
                    self._warn("sample-size", "%s: sample of %d bytes for a %d-byte file"
                               % (f["path"], len(sample), f["size"]), h.rec)
                if lfs_tracked(attrs, f["path"]) or f["size"] >= self.lfs_threshold or \
                        sample_is_binary(sample, f["size"] > len(sample)):
                    mode = "lfs"
                else:
                    mode = "regular"
                item = {"path": f["path"], "uploadMode": mode,
                        "shouldIgnore": git_ignored(ignore, f["path"])}
                e = tree.get(f["path"])
                if e is not None:
                    item["oid"] = e["oid"] if e["lfs"] else e["git_oid"]
                out.append(item)
                r["preuploads"][f["path"]] = {"size": f["size"], "sample": sample, "mode": mode}
        return _Resp(200, {"files": out, "commitOid": head})

    # --- LFS batch, storage, completion, verify ----------------------------------------------

    def _sign(self, method, path, query):
        msg = "%s\n%s\n%s" % (method, path, "&".join("%s=%s" % kv for kv in sorted(query.items())))
        return hmac.new(self._secret, msg.encode(), hashlib.sha256).hexdigest()

    def _presign(self, base, method, path, extra=None):
        with self._lock:
            epoch = self._url_epoch
        q = dict(extra or {})
        q.update({"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "fakehub/%d" % epoch,
                  "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                  "X-Amz-Issued": "%.3f" % time.time(), "X-Amz-Expires": str(self.url_ttl),
                  "X-Amz-SignedHeaders": "host"})
        q["X-Amz-Signature"] = self._sign(method, path, q)
        return "%s%s?%s" % (base, urllib.parse.quote(path), urllib.parse.urlencode(q))

    def _check_signature(self, h, method, s3):
        q = dict(h.rec["query"])
        sig = q.pop("X-Amz-Signature", "")
        if not hmac.compare_digest(sig, self._sign(method, h.rec["path"], q)):
            h.drain()
            raise self._denied(s3, "The request signature we calculated does not match the signature you provided.")
        try:
            epoch = int(q.get("X-Amz-Credential", "fakehub/-1").split("/")[1])
            issued = float(q.get("X-Amz-Issued", "0"))
            ttl = float(q.get("X-Amz-Expires", "0"))
        except (ValueError, IndexError):
            epoch, issued, ttl = -1, 0, 0
        if epoch != self._url_epoch or time.time() > issued + ttl:
            h.drain()
            raise self._denied(s3, "Request has expired")

    @staticmethod
    def _denied(s3, message):
        if s3:
            return _HTTPError(403, message, body=_s3_error("AccessDenied", message))
        return _HTTPError(403, message)

    def _path_hint(self, r, size, head=None):
        """The repo path the preupload announced for an object of this size
        (and this first 512 bytes, when several paths have the size)."""
        cands = [p for p, e in r["preuploads"].items() if e["size"] == size and e["mode"] == "lfs"]
        if len(cands) > 1 and head is not None:
            cands = [p for p in cands if r["preuploads"][p]["sample"] == head[:512]] or cands
        return cands[0] if len(cands) == 1 else None

    def _h_lfs_batch(self, h, repo):
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self._json_body(h)
        r = self._repo_or_error(h, repo, write=True)
        if ctype != LFS_JSON:
            self._warn("lfs-content-type", "LFS batch sent with Content-Type %r" % ctype, h.rec)
        if body.get("operation") not in ("upload", "download"):
            raise _HTTPError(422, "operation must be upload or download")
        algo = body.get("hash_algo")
        if algo is None:
            self._warn("no-hash-algo", "LFS batch without hash_algo", h.rec)
        elif algo not in ("sha256", "sha_256"):
            raise _HTTPError(409, "Unsupported hash algorithm %r" % algo)
        objs = body.get("objects")
        if not isinstance(objs, list):
            raise _HTTPError(422, "objects must be an array")
        transfers = body.get("transfers") or ["basic"]
        multipart_ok = "multipart" in transfers
        download = body["operation"] == "download"
        key_path = "%ss/%s" % repo
        out, any_multipart = [], False
        for o in objs:
            oid, size = (o or {}).get("oid"), (o or {}).get("size")
            if not isinstance(oid, str) or not _HEX64.match(oid) or not isinstance(size, int) or \
                    isinstance(size, bool) or size < 0:
                out.append({"oid": oid, "size": size,
                            "error": {"code": 422, "message": "Invalid object: oid must be 64 lower-case "
                                                              "hex digits and size a non-negative integer"}})
                continue
            errs = self._take_faults(h.rec, ("lfs-error",), lambda f: f.kw["oid"] in (None, oid)) \
                if not download else []
            if errs:
                h.rec["fault"] = "lfs-error"
                out.append({"oid": oid, "size": size,
                            "error": {"code": errs[0].kw["code"], "message": errs[0].kw["message"]}})
                continue
            with self._lock:
                have = r["lfs"].get(oid)
            entry = {"oid": oid, "size": size, "authenticated": True}
            if download:
                if have is None:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    entry["actions"] = {"download": {
                        "href": self._presign(self.storage_url, "GET", "/lfs-dl/%s/%s" % (key_path, oid))}}
                out.append(entry)
                continue
            if have is not None:
                if have["size"] != size:
                    entry = {"oid": oid, "size": size,
                             "error": {"code": 422, "message": "Size mismatch: the object has %d bytes"
                                       % have["size"]}}
                out.append(entry)      # already stored: no actions, the client skips it
                continue
            actions = {}
            with self._lock:
                self._expected[(key_path, oid)] = size
                hint = self._path_hint(r, size)
            if multipart_ok and size > self.multipart_threshold:
                any_multipart = True
                with self._lock:
                    self._upload_seq += 1
                    uid = "fakehub-upload-%d" % self._upload_seq
                    nparts = -(-size // self.chunk_size)
                    self._uploads[uid] = {"repo": repo, "oid": oid, "size": size, "chunk": self.chunk_size,
                                          "nparts": nparts, "parts": {}, "path_hint": hint}
                header = {"chunk_size": str(self.chunk_size)}
                path = "/lfs/%s/%s" % (key_path, oid)
                for i in range(1, nparts + 1):
                    header[str(i).zfill(self.part_key_width)] = self._presign(
                        self.storage_url, "PUT", path, {"uploadId": uid, "partNumber": str(i)})
                actions["upload"] = {"href": self._presign(self.endpoint, "POST", "/api/complete_multipart",
                                                           {"uploadId": uid}),
                                     "header": header}
            else:
                actions["upload"] = {"href": self._presign(self.storage_url, "PUT",
                                                           "/lfs/%s/%s" % (key_path, oid))}
            if self.verify_action:
                prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo[0]]
                actions["verify"] = {"href": "%s/%s%s.git/info/lfs/objects/verify" % (self.endpoint, prefix, repo[1]),
                                     "header": {}}
            entry["actions"] = actions
            out.append(entry)
        h.rec["objects"] = [{"oid": e["oid"], "size": e["size"],
                             "action": "error" if "error" in e else ("upload" if "actions" in e and not download
                                                                     else ("download" if download else "skip"))}
                            for e in out]
        transfer = "multipart" if any_multipart else "basic"
        return _Resp(200, {"transfer": transfer, "objects": out}, ctype=LFS_JSON + "; charset=utf-8")

    def _h_storage_put(self, h, repo, oid):
        rec = h.rec
        q = rec["query"]
        uid, part = q.get("uploadId"), q.get("partNumber")
        key_path = "%ss/%s" % repo
        sto = {"repo": key_path, "oid": oid, "part": int(part) if part and part.isdigit() else None,
               "upload_id": uid, "expected": None, "received": 0, "complete": False,
               "stored": False, "path_hint": None}
        rec["storage"] = sto
        rec["oid"], rec["part"], rec["upload_id"] = oid, sto["part"], uid
        self._check_signature(h, "PUT", True)
        if h.chunked:
            h.drain()
            raise _HTTPError(501, "chunked transfer encoding is not implemented",
                             body=_s3_error("NotImplemented", "A header you provided implies functionality "
                                            "that is not implemented: Transfer-Encoding"))
        if h.clen is None or h.clen < 0:
            raise _HTTPError(411, "Content-Length required",
                             body=_s3_error("MissingContentLength", "You must provide the Content-Length HTTP header."))
        with self._lock:
            r = self._repos.get(repo)
            up = self._uploads.get(uid) if uid else None
        if r is None or (uid and (up is None or up["oid"] != oid)):
            h.drain()
            raise _HTTPError(404, "no such upload", body=_s3_error("NoSuchUpload", "The specified upload does not exist."))
        if up:
            n = sto["part"]
            if n is None or not 1 <= n <= up["nparts"]:
                h.drain()
                raise _HTTPError(400, "bad part number", body=_s3_error("InvalidArgument", "Part number out of range"))
            start = (n - 1) * up["chunk"]
            sto["expected"] = min(up["chunk"], up["size"] - start)
            rec["endpoint"] = "part-put"
            total = up["size"]
        else:
            start = 0
            with self._lock:
                total = self._expected.get((key_path, oid))
            sto["expected"] = total
        # the first bytes name the file (path hint) before faults are decided
        head = b""
        if start == 0:
            want = min(512, h.clen)
            while len(head) < want:
                d = h.read_some(want - len(head))
                if not d:
                    break
                head += d
        size_for_hint = up["size"] if up else (total if total is not None else h.clen)
        with self._lock:
            if up is not None and start != 0:
                sto["path_hint"] = up.get("path_hint")
            else:
                sto["path_hint"] = self._path_hint(r, size_for_hint, head) or (up or {}).get("path_hint")
                if up is not None:
                    up["path_hint"] = sto["path_hint"]
        rec["file_path"] = sto["path_hint"]
        try:
            self._apply_faults(h, rec)
        finally:
            sto["received"] = h.body_read
        # stream the body to a temporary file, hashing it
        sha = hashlib.sha256() if self.hash_uploads else None
        tmp = None
        if self.store_objects or up is not None:   # parts are kept until completion
            fd, tmp = tempfile.mkstemp(dir=self._tmpdir)
            out = os.fdopen(fd, "wb")
        else:
            out = None
        try:
            if head:
                if sha:
                    sha.update(head)
                if out:
                    out.write(head)
            while True:
                d = h.read_some(1 << 20)
                if not d:
                    break
                if sha:
                    sha.update(d)
                if out:
                    out.write(d)
                sto["received"] = h.body_read
        except BaseException:
            if out:
                out.close()
                os.unlink(tmp)
            raise
        if out:
            out.close()
        sto["received"] = h.body_read
        digest = sha.hexdigest() if sha else None
        etag = '"%s"' % (digest[:32] if digest else hashlib.md5(b"%d" % rec["seq"]).hexdigest())
        if up:
            with self._lock:
                old = up["parts"].get(sto["part"])
                up["parts"][sto["part"]] = {"file": tmp, "size": h.body_read, "etag": etag, "sha": digest}
            if old and old["file"] and old["file"] != tmp:
                _unlink(old["file"])
            if h.body_read != sto["expected"]:
                self._warn("part-size", "part %d of %s: %d bytes, the slice is %d"
                           % (sto["part"], oid, h.body_read, sto["expected"]), rec)
        else:
            ok = self._store_object(r, oid, tmp, h.body_read, digest, rec, sto["path_hint"], total)
            sto["stored"] = ok
        sto["complete"] = True
        return _Resp(200, b"", {"ETag": etag}, ctype=None)     # as S3: no Content-Type

    def _store_object(self, r, oid, tmp, size, digest, rec, hint, expected=None):
        """Keep an uploaded object if its size is the one announced in the
        batch and its SHA-256 is its oid (else it stays missing: the batch
        asks for it again, a commit naming it fails)."""
        if (self.hash_uploads and digest != oid) or (expected is not None and size != expected):
            self._violation("lfs-content-mismatch", "object %s%s: %d bytes received (%s announced) with "
                            "SHA-256 %s" % (oid, " (%s)" % hint if hint else "", size, expected, digest), rec)
            _unlink(tmp)
            return False
        with self._lock:
            if tmp:
                final = os.path.join(self._objdir, oid)
                if oid in self._objects and self._objects[oid]["file"]:
                    _unlink(tmp)
                else:
                    os.replace(tmp, final)
                self._objects[oid] = {"size": size, "file": final}
            else:
                self._objects.setdefault(oid, {"size": size, "file": None})
            r["lfs"][oid] = {"size": size}
        return True

    def _h_completion(self, h):
        self._check_signature(h, "POST", False)
        body = self._json_body(h)
        uid = h.rec["query"].get("uploadId")
        with self._lock:
            up = self._uploads.get(uid)
        if up is None:
            raise _HTTPError(404, "Unknown or finished multipart upload")
        h.rec["repo"] = "%ss/%s" % up["repo"]
        h.rec["oid"] = up["oid"]
        if body.get("oid") != up["oid"]:
            raise _HTTPError(400, "oid %r does not match the upload (%s)" % (body.get("oid"), up["oid"]))
        parts = body.get("parts")
        if not isinstance(parts, list) or len(parts) != up["nparts"]:
            raise _HTTPError(400, "expected %d parts, got %s" % (up["nparts"], len(parts) if isinstance(parts, list) else parts))
        for i, p in enumerate(parts, 1):
            if not isinstance(p, dict) or p.get("partNumber") != i:
                raise _HTTPError(400, "parts must be listed in order: entry %d is %r" % (i, p))
            have = up["parts"].get(i)
            if have is None:
                raise _HTTPError(400, "part %d was not uploaded" % i)
            if p.get("etag") != have["etag"]:
                raise _HTTPError(400, "part %d: ETag %r is not the one returned (%s)" % (i, p.get("etag"), have["etag"]))
        with self._lock:
            r = self._repos.get(up["repo"])
        size = sum(up["parts"][i]["size"] for i in range(1, up["nparts"] + 1))
        if size != up["size"]:
            raise _HTTPError(400, "the parts hold %d bytes, the object has %d" % (size, up["size"]))
        sha = hashlib.sha256() if self.hash_uploads else None
        tmp = None
        out = None
        if self.store_objects:
            fd, tmp = tempfile.mkstemp(dir=self._tmpdir)
            out = os.fdopen(fd, "wb")
        for i in range(1, up["nparts"] + 1):
            with open(up["parts"][i]["file"], "rb") as src:
                while True:
                    d = src.read(1 << 20)
                    if not d:
                        break
                    if sha:
                        sha.update(d)
                    if out:
                        out.write(d)
        if out:
            out.close()
        digest = sha.hexdigest() if sha else None
        ok = self._store_object(r, up["oid"], tmp, size, digest, h.rec, up.get("path_hint"))
        with self._lock:
            self._uploads.pop(uid, None)
        for p in up["parts"].values():
            _unlink(p["file"])
        if not ok:
            raise _HTTPError(400, "the parts do not hash to %s" % up["oid"])
        return _Resp(200, {"success": True})

    def _h_verify(self, h, repo):
        body = self._json_body(h)
        r = self._repo_or_error(h, repo, write=True)
        oid, size = body.get("oid"), body.get("size")
        h.rec["oid"] = oid
        with self._lock:
            have = r["lfs"].get(oid)
        if have is None:
            raise _HTTPError(404, "Object %s not found" % oid)
        if have["size"] != size:
            raise _HTTPError(422, "Object %s has %d bytes, not %s" % (oid, have["size"], size))
        return _Resp(200, {"success": True}, ctype=LFS_JSON)

    # --- commit ---------------------------------------------------------------------------

    def _regular(self, data):
        return {"lfs": False, "data": bytes(data), "size": len(data), "oid": git_blob_sha1(data),
                "git_oid": git_blob_sha1(data), "sha256": sha256_hex(data)}

    @staticmethod
    def _lfs_entry(oid, size):
        pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (oid, size)).encode()
        return {"lfs": True, "oid": oid, "size": size, "sha256": oid, "git_oid": git_blob_sha1(pointer),
                "pointer_size": len(pointer)}

    def _make_commit(self, repo, ref, parent, tree, title, description, author, initial=False,
                     ops=(), pr=None):
        self._commit_seq += 1
        h = hashlib.sha1()
        h.update(("%s\n%s\n%s\n%d\n" % (parent, title, description, self._commit_seq)).encode())
        for p in sorted(tree):
            h.update(("%s %s\n" % (p, tree[p]["git_oid"])).encode())
        oid = h.hexdigest()
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo["key"][0]]
        repo["commits"][oid] = {"oid": oid, "title": title, "description": description,
                                "parents": [parent] if parent else [], "author": author,
                                "time": time.time(), "initial": initial, "ref": ref, "pr": pr,
                                "url": "%s/%s%s/commit/%s" % (self.endpoint, prefix, repo["key"][1], oid),
                                "operations": list(ops), "tree": tree}
        repo["refs"][ref] = oid
        return oid

    def _parse_ndjson(self, h, data):
        lines = []
        for i, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as e:
                raise _HTTPError(400, "line %d of the commit payload is not JSON: %s" % (i, e))
            if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or \
                    not isinstance(obj.get("value"), dict):
                raise _HTTPError(400, "line %d of the commit payload must be {\"key\", \"value\"}" % i)
            lines.append(obj)
        return lines

    def _h_commit(self, h, repo, rev):
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        data = h.read_body()
        pr = h.rec["query"].get("create_pr") in ("1", "true", "True")
        r = self._repo_or_error(h, repo, write=True, pr=pr)
        if ctype == "application/json":
            lines = self._legacy_commit_lines(data)
        elif ctype == "application/x-ndjson":
            lines = self._parse_ndjson(h, data)
        else:
            raise _HTTPError(400, "commit payload must be application/x-ndjson (got %r)" % ctype)
        h.rec["ndjson"] = [_summarize_line(l) for l in lines]
        if not lines or lines[0]["key"] != "header":
            raise _HTTPError(400, "the first line of the commit payload must be the header")
        header = lines[0]["value"]
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise _HTTPError(400, "\"summary\" is required in the commit header")
        description = header.get("description") or ""
        parent_req = header.get("parentCommit")
        user = h.user
        with self._lock:
            ref, head = self._resolve_rev(r, rev)
            if ref is None:
                raise _HTTPError(400, "Cannot commit to a commit id (%s): give a branch" % rev)
            if parent_req is not None:
                hits = [c for c in r["commits"] if c.startswith(str(parent_req).lower())] \
                    if re.match(r"^[0-9a-fA-F]{5,40}$", str(parent_req)) else []
                if len(hits) != 1:
                    raise _HTTPError(400, "Invalid parentCommit %r" % parent_req)
                parent_full = hits[0]
                if not pr and parent_full != head:
                    raise _HTTPError(412, STALE_PARENT)
                base = parent_full
            else:
                base = head
            tree = dict(self._tree(r, base))
            ops = []
            new_lfs_paths = []
            for line in lines[1:]:
                key, v = line["key"], line["value"]
                path = v.get("path")
                if key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                    why = bad_repo_path(path.rstrip("/") if key == "deletedFolder" and isinstance(path, str) else path)
                    if why:
                        raise _HTTPError(422, "Invalid path: %s" % why)
                if key == "file":
                    enc = v.get("encoding", "utf-8")
                    content = v.get("content")
                    if not isinstance(content, str):
                        raise _HTTPError(400, "file %s: content is required" % path)
                    if enc == "base64":
                        try:
                            blob = base64.b64decode(content, validate=True)
                        except ValueError:
                            raise _HTTPError(400, "file %s: content is not base64" % path)
                    elif enc in ("utf-8", "utf8"):
                        blob = content.encode("utf-8")
                    else:
                        raise _HTTPError(400, "file %s: unknown encoding %r" % (path, enc))
                    if len(blob) > self.lfs_threshold:
                        raise _HTTPError(400, "Your push was rejected because it contains files larger than "
                                         "10 MiB. Please use https://git-lfs.github.com/ to store large files. "
                                         "Offending files: - %s (ref: %s)" % (path, ref))
                    pre = r["preuploads"].get(path)
                    if pre and pre["mode"] == "lfs":
                        self._warn("mode-mismatch", "%s committed as a regular file; the preupload said lfs" % path, h.rec)
                    if pre and pre["sample"] != blob[:512]:
                        self._warn("sample-mismatch", "%s: the preupload sample is not its first 512 bytes" % path, h.rec)
                    tree[path] = self._regular(blob)
                    ops.append({"op": "add", "path": path, "lfs": False, "size": len(blob)})
                elif key == "lfsFile":
                    oid, size = v.get("oid"), v.get("size")
                    if v.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _HEX64.match(oid):
                        raise _HTTPError(400, "lfsFile %s: needs algo sha256 and a 64-hex oid" % path)
                    have = r["lfs"].get(oid)
                    if have is None:
                        raise _HTTPError(400, LFS_POINTER_MISSING % path)
                    if size != have["size"]:
                        raise _HTTPError(400, "lfsFile %s: size %r, the stored object has %d bytes"
                                         % (path, size, have["size"]))
                    pre = r["preuploads"].get(path)
                    if pre and pre["mode"] == "regular":
                        self._warn("mode-mismatch", "%s committed through LFS; the preupload said regular" % path, h.rec)
                    tree[path] = self._lfs_entry(oid, size)
                    new_lfs_paths.append(path)
                    ops.append({"op": "add", "path": path, "lfs": True, "size": size, "oid": oid})
                elif key == "deletedFile":
                    if path not in tree:
                        raise _HTTPError(404, "Entry not found: %s" % path, "EntryNotFound")
                    del tree[path]
                    ops.append({"op": "delete", "path": path})
                elif key == "deletedFolder":
                    pre = path.rstrip("/") + "/"
                    gone = [p for p in tree if p.startswith(pre)]
                    if not gone:
                        raise _HTTPError(404, "Entry not found: %s" % path, "EntryNotFound")
                    for p in gone:
                        del tree[p]
                    ops.append({"op": "delete-folder", "path": path})
                elif key == "header":
                    raise _HTTPError(400, "only the first line may be the header")
                else:
                    raise _HTTPError(400, "unknown commit line key %r" % key)
            # the Hub tracks every LFS path in .gitattributes, in the same commit
            ga = tree.get(".gitattributes")
            attrs = ga["data"].decode("utf-8", "replace") if ga and not ga["lfs"] else ""
            added = [p for p in new_lfs_paths if p in tree and tree[p]["lfs"] and not lfs_tracked(attrs, p)]
            if added:
                if attrs and not attrs.endswith("\n"):
                    attrs += "\n"
                for p in dict.fromkeys(added):
                    attrs += "%s filter=lfs diff=lfs merge=lfs -text\n" % p.replace(" ", "[[:space:]]")
                tree[".gitattributes"] = self._regular(attrs.encode())
            author = user["name"] if user else None
            if pr:
                num = r["next_num"]
                r["next_num"] += 1
                pref = "refs/pr/%d" % num
                oid = self._make_commit(r, pref, base, tree, summary, description, author, ops=ops, pr=num)
                prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo[0]]
                url = "%s/%s%s/discussions/%d" % (self.endpoint, prefix, repo[1], num)
                r["prs"].append({"num": num, "ref": pref, "title": summary, "author": author, "url": url,
                                 "base": ref, "status": "open"})
            else:
                oid = self._make_commit(r, ref, base, tree, summary, description, author, ops=ops,
                                        pr=int(ref.split("/")[-1]) if ref.startswith("refs/pr/") else None)
            c = r["commits"][oid]
        h.rec["commit_oid"] = oid
        body = {"success": True, "commitOid": oid, "commitUrl": c["url"], "hookOutput": ""}
        if pr:
            body["pullRequestUrl"] = url
        if self._take_faults(h.rec, ("lose-reply",)):
            h.rec["fault"] = "lose-reply"
            raise _Drop()
        return _Resp(200, body)

    @staticmethod
    def _legacy_commit_lines(data):
        """The older JSON commit payload {summary, description, files,
        lfsFiles, deletedFiles} as NDJSON lines."""
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise _HTTPError(400, "commit payload is not JSON: %s" % e)
        lines = [{"key": "header", "value": {k: obj[k] for k in ("summary", "description", "parentCommit")
                                              if k in obj}}]
        for f in obj.get("files") or []:
            lines.append({"key": "file", "value": f})
        for f in obj.get("lfsFiles") or []:
            lines.append({"key": "lfsFile", "value": f})
        for f in obj.get("deletedFiles") or []:
            lines.append({"key": "deletedFile", "value": f})
        return lines

    # --- downloads ------------------------------------------------------------------------

    def _h_resolve(self, h, repo, rev, file):
        h.drain()
        r = self._repo_or_error(h, repo)
        with self._lock:
            _, oid = self._resolve_rev(r, rev)
            e = self._tree(r, oid).get(file)
            if e is None:
                raise _HTTPError(404, "Entry not found", "EntryNotFound",
                                 headers={"X-Error-Message": "Entry not found"})
            headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
            if e["lfs"]:
                headers.update({"ETag": '"%s"' % e["oid"], "X-Linked-Etag": '"%s"' % e["oid"],
                                "X-Linked-Size": str(e["size"])})
                obj = self._objects.get(e["oid"])
                if self.redirect_lfs:
                    loc = self._presign(self.storage_url, "GET", "/lfs-dl/%ss/%s/%s" % (repo[0], repo[1], e["oid"]))
                    headers["Location"] = loc
                    return _Resp(302, b"", headers, ctype="text/plain")
                if obj is None or obj["file"] is None:
                    raise _HTTPError(410, "object bytes were not kept (store_objects=False)")
                return self._ranged(h, obj["file"], e["size"], headers)
            headers["ETag"] = '"%s"' % e["git_oid"]
            if self.redirect_regular:
                # a relative reference, resolved against the request's URL
                headers["Location"] = "/api/resolve-cache/%ss/%s/%s/%s" % (
                    repo[0], repo[1], oid, urllib.parse.quote(file))
                return _Resp(307, b"", headers, ctype="text/plain")
            data = e["data"]
        return self._send_regular(h, data, headers)

    def _h_resolve_cache(self, h, repo, commit, file):
        """Where resolve redirects for a regular file with
        redirect_regular: the file at a commit id."""
        h.drain()
        r = self._repo_or_error(h, repo)
        with self._lock:
            _, oid = self._resolve_rev(r, commit)
            e = self._tree(r, oid).get(file)
            if e is None or e["lfs"] or oid != commit:
                raise _HTTPError(404, "Entry not found", "EntryNotFound",
                                 headers={"X-Error-Message": "Entry not found"})
            data = e["data"]
        return self._send_regular(h, data, {"X-Repo-Commit": oid, "ETag": '"%s"' % e["git_oid"]})

    def _send_regular(self, h, data, headers):
        rng = _parse_range(h.headers.get("Range"), len(data))
        if rng:
            start, length = rng
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, start + length - 1, len(data))
            return _Resp(206, data[start:start + length], headers, ctype="application/octet-stream")
        return _Resp(200, data, headers, ctype="application/octet-stream")

    def _ranged(self, h, path, size, headers):
        rng = _parse_range(h.headers.get("Range"), size)
        if rng:
            headers["Content-Range"] = "bytes %d-%d/%d" % (rng[0], rng[0] + rng[1] - 1, size)
            return _Resp(206, None, headers, ctype="application/octet-stream", file=path, file_range=rng)
        return _Resp(200, None, headers, ctype="application/octet-stream", file=path)

    def _h_storage_get(self, h, repo, oid):
        self._check_signature(h, "GET", True)
        h.rec["oid"] = oid
        with self._lock:
            r = self._repos.get(repo)
            obj = self._objects.get(oid)
            known = r is not None and oid in r["lfs"]
        if not known or obj is None or obj["file"] is None:
            raise _HTTPError(404, "no such key", body=_s3_error("NoSuchKey", "The specified key does not exist."))
        return self._ranged(h, obj["file"], obj["size"], {"ETag": '"%s"' % oid[:32]})

    # --- Python API: repos and contents ---------------------------------------------------------

    def _repo(self, repo, repo_type=None):
        key = _split_repo(repo, repo_type)
        with self._lock:
            r = self._repos.get(key)
        if r is None:
            raise FakeHubError("no repo %s/%s" % key)
        return r

    def create_repo(self, repo, token=None, private=False, repo_type=None, exist_ok=False):
        """Create repo ("owner/name", or "datasets/owner/name") directly,
        as the token's user (who needs write access to the namespace), or
        as an administrator when token is None.  Returns its URL."""
        key = _split_repo(repo, repo_type)
        u = self._user_for_token(token)
        ns = key[1].split("/")[0]
        if u is not None and not self._can_write(u, ns):
            raise FakeHubError("%s cannot create repos under %s" % (u["name"], ns))
        with self._lock:
            if key in self._repos:
                if exist_ok:
                    return self._repo_url(key)
                raise FakeHubError("repo %s/%s exists" % key)
            self._new_repo(key, bool(private), u["name"] if u else "fakehub-admin")
        return self._repo_url(key)

    def delete_repo(self, repo, repo_type=None):
        key = _split_repo(repo, repo_type)
        with self._lock:
            if self._repos.pop(key, None) is None:
                raise FakeHubError("no repo %s/%s" % key)

    def create_branch(self, repo, branch, token=None, from_rev="main", repo_type=None):
        r = self._repo(repo, repo_type)
        u = self._user_for_token(token)
        if u is not None and not self._can_write(u, r["key"][1].split("/")[0]):
            raise FakeHubError("%s cannot write to %s" % (u["name"], repo))
        with self._lock:
            ref = "refs/heads/" + branch
            if ref in r["refs"]:
                raise FakeHubError("branch %s exists" % branch)
            try:
                _, oid = self._resolve_rev(r, from_rev)
            except _HTTPError as e:
                raise FakeHubError(e.message)
            r["refs"][ref] = oid
        return oid

    def commit_file(self, repo, path, data, token=None, rev="main", message=None, lfs=None,
                    repo_type=None):
        """Commit one file directly (someone else's commit): through LFS when
        lfs is True, or when None and the Hub's rules say so.  Returns the
        new commit id."""
        r = self._repo(repo, repo_type)
        u = self._user_for_token(token)
        if isinstance(data, str):
            data = data.encode()
        if u is not None and not self._can_write(u, r["key"][1].split("/")[0]):
            raise FakeHubError("%s cannot write to %s" % (u["name"], repo))
        with self._lock:
            try:
                ref, head = self._resolve_rev(r, rev)
            except _HTTPError as e:
                raise FakeHubError(e.message)
            tree = dict(self._tree(r, head))
            ga = tree.get(".gitattributes")
            attrs = ga["data"].decode() if ga and not ga["lfs"] else ""
            if lfs is None:
                lfs = lfs_tracked(attrs, path) or len(data) >= self.lfs_threshold or \
                    sample_is_binary(data[:512], len(data) > 512)
            if lfs:
                oid = sha256_hex(data)
                final = None
                if self.store_objects:
                    final = os.path.join(self._objdir, oid)
                    with open(final, "wb") as f:
                        f.write(data)
                self._objects[oid] = {"size": len(data), "file": final}
                r["lfs"][oid] = {"size": len(data)}
                tree[path] = self._lfs_entry(oid, len(data))
                if not lfs_tracked(attrs, path):
                    attrs += ("" if not attrs or attrs.endswith("\n") else "\n") + \
                        "%s filter=lfs diff=lfs merge=lfs -text\n" % path.replace(" ", "[[:space:]]")
                    tree[".gitattributes"] = self._regular(attrs.encode())
            else:
                tree[path] = self._regular(data)
            return self._make_commit(r, ref, head, tree, message or path, "",
                                     u["name"] if u else "fakehub-admin",
                                     ops=[{"op": "add", "path": path, "lfs": bool(lfs), "size": len(data)}])

    def repo_exists(self, repo, repo_type=None):
        key = _split_repo(repo, repo_type)
        with self._lock:
            return key in self._repos

    def is_private(self, repo, repo_type=None):
        return self._repo(repo, repo_type)["private"]

    def head(self, repo, rev="main", repo_type=None):
        """The commit id rev points to."""
        r = self._repo(repo, repo_type)
        with self._lock:
            try:
                return self._resolve_rev(r, rev)[1]
            except _HTTPError as e:
                raise FakeHubError(e.message)

    def commits(self, repo, rev="main", repo_type=None):
        """The commits reachable from rev by first parents, oldest first:
        dicts with oid, title, description, parents, author, time, initial
        (the repo's creation), ref (where it was made), pr (its number for a
        pull-request commit), url, operations ([{op, path, lfs, size, oid}])."""
        r = self._repo(repo, repo_type)
        with self._lock:
            try:
                oid = self._resolve_rev(r, rev)[1]
            except _HTTPError as e:
                raise FakeHubError(e.message)
            out = []
            while oid:
                c = r["commits"][oid]
                out.append({k: (list(v) if isinstance(v, list) else v) for k, v in c.items() if k != "tree"})
                oid = c["parents"][0] if c["parents"] else None
        return out[::-1]

    def files(self, repo, rev="main", repo_type=None):
        """{path: {lfs, size, oid (sha256 for LFS, git blob id otherwise),
        sha256}} at rev."""
        r = self._repo(repo, repo_type)
        with self._lock:
            try:
                oid = self._resolve_rev(r, rev)[1]
            except _HTTPError as e:
                raise FakeHubError(e.message)
            return {p: {"lfs": e["lfs"], "size": e["size"], "oid": e["oid"], "sha256": e["sha256"]}
                    for p, e in self._tree(r, oid).items()}

    def download(self, repo, path, rev="main", repo_type=None):
        """The bytes of a committed file (read from the store, not over HTTP;
        use http_download for the resolve endpoint)."""
        r = self._repo(repo, repo_type)
        with self._lock:
            try:
                oid = self._resolve_rev(r, rev)[1]
            except _HTTPError as e:
                raise FakeHubError(e.message)
            e = self._tree(r, oid).get(path)
            if e is None:
                raise FakeHubError("%s is not in %s at %s" % (path, repo, rev))
            if not e["lfs"]:
                return e["data"]
            obj = self._objects.get(e["oid"])
        if obj is None or obj["file"] is None:
            raise FakeHubError("the bytes of %s were not kept (store_objects=False)" % path)
        with open(obj["file"], "rb") as f:
            return f.read()

    def http_download(self, repo, path, rev="main", token=None, repo_type=None):
        """GET {endpoint}/{repo}/resolve/{rev}/{path} as a client would
        (following the LFS redirect to storage without the token); returns
        the bytes.  Recorded like any request."""
        key = _split_repo(repo, repo_type)
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[key[0]]
        url = "%s/%s%s/resolve/%s/%s" % (self.endpoint, prefix, key[1], urllib.parse.quote(rev, safe=""),
                                         urllib.parse.quote(path))
        req = urllib.request.Request(url)
        if token:
            req.add_unredirected_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read()

    def objects(self, repo, repo_type=None):
        """{oid: size} of the LFS objects stored for repo."""
        r = self._repo(repo, repo_type)
        with self._lock:
            return {oid: o["size"] for oid, o in r["lfs"].items()}

    def pull_requests(self, repo, repo_type=None):
        """[{num, ref ("refs/pr/N"), title, author, url, base, status}]."""
        r = self._repo(repo, repo_type)
        with self._lock:
            return [dict(p) for p in r["prs"]]


def _endpoint_matches(want, got):
    if want in ("*", got):
        return True
    return want == "put" and got == "part-put"


def _summarize_line(line):
    v = dict(line["value"]) if isinstance(line.get("value"), dict) else line.get("value")
    if line.get("key") == "file" and isinstance(v, dict) and isinstance(v.get("content"), str):
        c = v.pop("content")
        try:
            blob = base64.b64decode(c) if v.get("encoding") == "base64" else c.encode()
            v["content_size"] = len(blob)
            v["content_sha256"] = sha256_hex(blob)
        except ValueError:
            v["content_size"] = None
    return {"key": line.get("key"), "value": v}


def _parse_range(header, size):
    """(start, length) of a single "bytes=a-b" range, or None."""
    if not header:
        return None
    m = re.match(r"^bytes=(\d*)-(\d*)$", header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        start = max(0, size - int(m.group(2)))
        end = size - 1
    end = min(end, size - 1)
    if start > end:
        return None
    return start, end - start + 1


def _s3_error(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>fakehub</RequestId></Error>' % (code, message)).encode()


def _unlink(path):
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# a FakeHub in another process, driven through its control URL
# ---------------------------------------------------------------------------

class RemoteFakeHub:
    """The Python API of a fakehub subprocess: every FakeHub.CONTROL_METHODS
    method, called over the control URL.

        with RemoteFakeHub.spawn(["--user", "alice:hf_x"]) as hub:
            hub.fail("put", status=500)
            ... hub.endpoint ...
    """

    def __init__(self, info, proc=None):
        self._info = info
        self.endpoint = info["endpoint"]
        self.storage_url = info["storage"]
        self.control_url = info["control"]
        self._proc = proc

    @classmethod
    def spawn(cls, args=(), python=sys.executable, timeout=20):
        fd, port_file = tempfile.mkstemp(prefix="fakehub-port-")
        os.close(fd)
        os.unlink(port_file)
        proc = subprocess.Popen([python, os.path.abspath(__file__), "--port-file", port_file] + list(args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                proc.kill()
                raise FakeHubError("fakehub did not start (exit %s)" % proc.poll())
            time.sleep(0.02)
        with open(port_file) as f:
            info = json.load(f)
        os.unlink(port_file)
        return cls(info, proc)

    def _call(self, method, *args, **kwargs):
        data = json.dumps(_to_json_safe({"method": method, "args": list(args), "kwargs": kwargs})).encode()
        req = urllib.request.Request(self.control_url + "/call", data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return _from_json_safe(json.loads(resp.read()))["result"]
        except urllib.error.HTTPError as e:
            raise FakeHubError(json.loads(e.read() or b"{}").get("error", str(e)))

    def __getattr__(self, name):
        if name in FakeHub.CONTROL_METHODS:
            return lambda *a, **kw: self._call(name, *a, **kw)
        raise AttributeError(name)

    def close(self):
        """Stop the subprocess; returns its exit status (3: violations)."""
        if self._proc is None:
            return None
        try:
            urllib.request.urlopen(urllib.request.Request(self.control_url + "/shutdown", data=b"{}"),
                                   timeout=10).read()
        except OSError:
            self._proc.terminate()
        try:
            return self._proc.wait(timeout=20)
        finally:
            self._proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def _parse_user(spec):
    """NAME:TOKEN[:ORG,ORG][:ROLE]"""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError("--user wants NAME:TOKEN[:ORG,ORG...][:ROLE], got %r" % spec)
    u = {"name": parts[0], "token": parts[1]}
    if len(parts) > 2 and parts[2]:
        u["orgs"] = [o for o in parts[2].split(",") if o]
    if len(parts) > 3 and parts[3]:
        u["role"] = parts[3]
    return u


def _call_main(argv):
    p = argparse.ArgumentParser(prog="fakehub.py call",
                                description="Call a method of a running fakehub through its control URL.")
    p.add_argument("control_url")
    p.add_argument("method")
    p.add_argument("kwargs", nargs="?", default="{}", help="JSON object of keyword arguments")
    a = p.parse_args(argv)
    hub = RemoteFakeHub({"endpoint": None, "storage": None, "control": a.control_url.rstrip("/")})
    try:
        result = hub._call(a.method, **json.loads(a.kwargs))
    except FakeHubError as e:
        print("fakehub call: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(_to_json_safe(result), indent=1))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["call"]:
        return _call_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port-file", help="write {endpoint, storage, control, pid} here (JSON) once listening")
    p.add_argument("--user", action="append", type=_parse_user, default=[],
                   help="NAME:TOKEN[:ORG,ORG...][:ROLE] (repeatable)")
    p.add_argument("--root", help="folder for the stored objects (default: a temporary one)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--storage-port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--lfs-threshold", type=int, default=LFS_THRESHOLD)
    p.add_argument("--multipart-threshold", type=int)
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--no-verify-action", action="store_true", help="no verify action in LFS batch answers")
    p.add_argument("--no-redirect", action="store_true", help="resolve serves LFS files itself")
    p.add_argument("--no-store", action="store_true", help="hash uploads but do not keep their bytes")
    p.add_argument("--no-hash", action="store_true", help="do not hash uploads (benchmarks only)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--rate", type=int, help="bytes/s for request and response bodies")
    p.add_argument("--fault", action="append", default=[], metavar="JSON",
                   help='a fault to register: {"method": "fail", "endpoint": "put", "status": 500, ...}')
    p.add_argument("--log", help="append every request record to this file (JSON lines)")
    a = p.parse_args(argv)
    hub = FakeHub(a.root, users=a.user, port=a.port, storage_port=a.storage_port, control=True,
                  control_port=a.control_port, lfs_threshold=a.lfs_threshold,
                  multipart_threshold=a.multipart_threshold, chunk_size=a.chunk_size,
                  verify_action=not a.no_verify_action, redirect_lfs=not a.no_redirect,
                  store_objects=not a.no_store, hash_uploads=not a.no_hash, strict=False, log_file=a.log)
    hub.start()
    if a.delay or a.rate:
        hub.slow(a.delay, a.rate)
    for spec in a.fault:
        f = json.loads(spec)
        method = f.pop("method", "fail")
        if method not in ("fail", "drop", "lose_commit_reply", "lfs_object_error"):
            p.error("--fault method must be fail, drop, lose_commit_reply or lfs_object_error")
        getattr(hub, method)(**f)
    info = hub.info()
    line = json.dumps(info)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, a.port_file)
    print(line, flush=True)

    def stop(*_):
        hub._stopped.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not hub._stopped.wait(0.2):
        pass
    violations = hub.violations()
    hub.close()
    for v in violations:
        print("fakehub: violation: %s" % json.dumps(v), file=sys.stderr)
    return 3 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
