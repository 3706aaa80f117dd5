#!/usr/bin/env python3
"""Benchmark: smelt's hf-hub upload next to a plain HTTP PUT of the same bytes
with curl, both to the fake Hub (tests/hub/fakehub.py) on loopback.

    /usr/bin/python3 tests/bench/bench_hub_upload.py --smelt build/core/smelt
        [--workdir DIR] [--tiny] [--runs 2] [--keep]

Default: the synthetic ~1.1B-parameter bf16 llama of bench_merge.py (2.20 GB
in 2 shards, cached in the workdir), exported with merged16 and no adapter, so
the export is a 2.2 GB file set (one 2.2 GB model.safetensors plus config and
tokenizer files). Then, each --runs times, with a warm page cache and a
fresh fake Hub:

  (a) smelt export --format merged16 --to hf://bench/upload: the export, then
      the upload (preupload, LFS batch, one PUT per object, verify, one
      commit). The upload is timed from smelt's first "uploading" progress
      line to its exit, so it includes every Hub call, the commit and the
      removal of the staged files (a quarter of a second for 2.2 GB).
  (b) curl -T FILE URL for each file of a localfs export of the same recipe,
      one after the other, to upload URLs the fake's LFS batch API handed
      out: the same bytes through the same server, with nothing else.

Prints both throughputs, their ratio (target: smelt at least 0.8 of curl),
and how many bytes smelt read with read()/pread() (/proc/PID/io rchar,
sampled while it runs): about one read of the export, the upload's, since
the SHA-256 is computed while the files are written, never by reading them
back. Exits 0 whatever the numbers (a measurement, not a test); --tiny runs
the same on a tiny model (the CI smoke test).
"""

import importlib

try:  # numpy lives in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, "..", "hub"))
import bench_merge as bm  # noqa: E402
import fakehub  # noqa: E402

TARGET_RATIO = 0.8
TOKEN = "hf_smeltBenchToken0123456789abcdefgh"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def proc_rchar(pid):
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_smelt(smelt, model, repo, env):
    """(a): returns (upload seconds, upload bytes, export seconds, rchar)."""
    cmd = [smelt, "export", "--model", model, "--format", "merged16", "--to", "hf://" + repo,
           "--progress=json"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rchar = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            v = proc_rchar(p.pid)
            if v is not None:
                rchar[0] = max(rchar[0], v)
            time.sleep(0.01)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    first_upload = None
    export_start = export_end = None
    total = 0
    for line in p.stdout:
        now = time.monotonic()
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j["stage"] == "exporting" and export_start is None:
            export_start = now
        if j["stage"] in ("finishing", "committing") and export_end is None:
            export_end = now
        if j["stage"] == "uploading":
            if first_upload is None:
                first_upload = now
            total = max(total, j["bytes_total"])
    err = p.stderr.read()
    rc = p.wait()
    end = time.monotonic()
    done.set()
    th.join()
    if rc != 0 or first_upload is None:
        sys.exit("smelt failed (exit %d):\n%s" % (rc, err[-2000:]))
    return end - first_upload, total, (export_end or end) - (export_start or t0), rchar[0]


def upload_urls(hub, repo, objects):
    """Basic upload URLs for objects, from the fake's LFS batch API (as a
    client gets them; the repo is made first)."""
    hub.create_repo(repo)
    body = json.dumps({"operation": "upload", "transfers": ["basic"], "objects": objects,
                       "hash_algo": "sha256", "ref": {"name": "main"}}).encode()
    req = urllib.request.Request("%s/%s.git/info/lfs/objects/batch" % (hub.endpoint, repo), data=body,
                                 headers={"Authorization": "Bearer " + TOKEN,
                                          "Accept": "application/vnd.git-lfs+json",
                                          "Content-Type": "application/vnd.git-lfs+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    by_oid = {o["oid"]: o["actions"]["upload"]["href"] for o in answer["objects"]}
    return [by_oid[o["oid"]] for o in objects]


def run_curl(hub, files, repo):
    """(b): one curl -T per file to a basic upload URL from the LFS batch."""
    objects = [{"oid": sha256_file(f), "size": os.path.getsize(f)} for f in files]
    hrefs = upload_urls(hub, repo, objects)
    t0 = time.monotonic()
    for f, href in zip(files, hrefs):
        subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-T", f, href], check=True)
    return time.monotonic() - t0, sum(o["size"] for o in objects)


def check_hub(hub):
    v = hub.violations()
    if v:
        sys.exit("the fake Hub recorded violations: %s" % v[:3])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "smelt-bench-hub-%d" % os.getuid()))
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if shutil.which("curl") is None:
        sys.exit("curl is not installed (apt-get install curl)")
    smelt = os.path.abspath(args.smelt)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    model, _ = bm.prepare(os.path.join(workdir, "tiny" if args.tiny else "big"),
                          bm.TINY if args.tiny else bm.BIG)
    env = bm.smelt_env(smelt)
    env.pop("HF_HUB_OFFLINE", None)
    env["HF_TOKEN"] = TOKEN
    env["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")

    # the same bytes as a local export, for curl
    ref = os.path.join(workdir, "ref")
    shutil.rmtree(ref, ignore_errors=True)
    subprocess.run([smelt, "export", "--model", model, "--format", "merged16", "--to", ref,
                    "--progress=none", "--set", "MaxShardSize=5GB"], env=env, check=True)
    files = sorted(os.path.join(ref, f) for f in os.listdir(ref))
    bm.warm_cache(files)

    # the fake Hub in its own process (not competing with this one for the
    # GIL), neither hashing nor keeping what it receives: it costs the same
    # for both clients, and as little as it can
    hub_args = ["--user", "bench:" + TOKEN, "--no-hash", "--no-store"]
    smelt_best = curl_best = None
    rchar = up_bytes = export_secs = 0
    for i in range(args.runs):
        with fakehub.RemoteFakeHub.spawn(hub_args) as hub:
            env["HF_ENDPOINT"] = hub.endpoint
            os.sync()
            secs, nbytes, esecs, rc = run_smelt(smelt, model, "bench/upload-%d" % i, env)
            check_hub(hub)
            if smelt_best is None or secs < smelt_best[0]:
                smelt_best = (secs, nbytes)
                rchar, up_bytes, export_secs = rc, nbytes, esecs
        with fakehub.RemoteFakeHub.spawn(hub_args) as hub:
            os.sync()
            secs, nbytes = run_curl(hub, files, "bench/curl-%d" % i)
            check_hub(hub)
            if curl_best is None or secs < curl_best[0]:
                curl_best = (secs, nbytes)

    s_rate = smelt_best[1] / smelt_best[0]
    c_rate = curl_best[1] / curl_best[0]
    ratio = s_rate / c_rate
    print()
    print("| run | bytes | seconds | throughput |")
    print("| --- | --- | --- | --- |")
    print("| smelt hf-hub upload (all Hub calls and the commit) | %d | %.2f | %.0f MB/s |"
          % (smelt_best[1], smelt_best[0], s_rate / 1e6))
    print("| curl -T, one PUT per file | %d | %.2f | %.0f MB/s |" % (curl_best[1], curl_best[0], c_rate / 1e6))
    print()
    print("smelt / curl throughput: %.2f (target >= %.1f): %s"
          % (ratio, TARGET_RATIO, "PASS" if ratio >= TARGET_RATIO else "MISS"))
    print("export before the upload (writing and hashing the staged files): %.2f s" % export_secs)
    reads = rchar / float(up_bytes or 1)
    print("bytes smelt read with read()/pread(): %d = %.2f x the upload (the base is mmap'd, the"
          " upload reads each staged file once; a second read for hashing would make it 2): %s"
          % (rchar, reads, "PASS" if reads < 1.5 else "MISS"))
    if not args.keep:
        shutil.rmtree(os.path.join(workdir, "cache"), ignore_errors=True)
        shutil.rmtree(ref, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
