"""What the tests in tests/gi share: failing with a message, and an
independent reader of safetensors headers (no smelt code involved)."""

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
