"""What the tests in tests/gi share: failing with a message, an
independent reader of safetensors headers (no smelt code involved), the
files under a folder, and the mid-size model of the progress and cancel
tests.

    gi_check.py mid-model DIR    generates that model (for test_gi.js)
"""

import json
import os
import struct
import sys
import threading


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    if threading.current_thread() is not threading.main_thread():
        # sys.exit() would only end that thread (a callback run on one of
        # libsmelt's workers): end the process
        sys.stderr.flush()
        os._exit(1)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def read_safetensors_header(path):
    """The tensors of a safetensors file, checking that every tensor's
    byte range fits its shape and type and that the ranges cover the
    data section exactly."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data_len = os.path.getsize(path) - 8 - n
    ends = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        check(0 <= begin <= end <= data_len, f"{path}: {name} outside the data")
        elems = 1
        for d in info["shape"]:
            elems *= d
        width = {"F32": 4, "F16": 2, "BF16": 2}[info["dtype"]]
        check(end - begin == elems * width, f"{path}: {name} has {end - begin} bytes for shape {info['shape']}")
        ends.append(end)
    check(max(ends, default=0) == data_len, f"{path}: data size {data_len} is not what the header covers")
    return {k: v for k, v in header.items() if k != "__metadata__"}


def files_under(root):
    """Every file under @root, relative to it, sorted; [] if @root is not
    a folder."""
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs) if os.path.isdir(root) else []


def make_mid_model(d):
    """A 125 MB bf16 model in @d/model and its adapter in @d/adapter: big
    enough that quantizing it to Q4_K_M on one thread takes about a
    second, so that progress reports (every 100 ms) arrive while it is
    under way and a cancel lands midway. Returns @d."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen"))
    import gen_tiny_model as gen  # noqa: E402

    gen.generate_model(os.path.join(d, "model"), arch="llama", dtype="bf16", layers=4,
                       hidden=1024, intermediate=2816, heads=8, kv_heads=4, vocab=8192,
                       seed=7, fill="block")
    gen.generate_adapter(os.path.join(d, "adapter"), os.path.join(d, "model"), rank=8, seed=8)
    return d


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "mid-model":
        sys.exit("usage: gi_check.py mid-model DIR")
    make_mid_model(sys.argv[2])
