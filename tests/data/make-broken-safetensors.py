#!/usr/bin/env python3
# make-broken-safetensors.py: writes a corpus of broken safetensors files
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: make-broken-safetensors.py DIR
#
# Every file is small (at most 4 KiB) and must make smelt's reader fail
# with SMELT_MODEL_ERROR_INVALID. The files are committed under
# tests/data/broken/ and also serve as the seed corpus of the safetensors
# fuzz target. Standard library only.

import json
import os
import struct
import sys


def header(obj):
    """Compact JSON as the reference writer emits it (no padding)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def pack(head, data=b"", length=None):
    """8-byte little-endian header length, header, data."""
    n = len(head) if length is None else length
    return struct.pack("<Q", n) + head + data


def valid():
    """A well-formed file: two F32 tensors and a BF16 one, 36 data bytes."""
    head = header({
        "__metadata__": {"format": "pt"},
        "a": entry("F32", [2, 2], 0, 16),
        "b": entry("F32", [3], 16, 28),
        "c": entry("BF16", [4], 28, 36),
    })
    head += b" " * (-len(head) % 8)
    return pack(head, bytes(range(36)))


def corpus():
    good = valid()
    files = {}

    # Cut inside the data section: the last tensor runs past the end.
    files["truncated.safetensors"] = good[:-5]
    # The length claims far more header than the file holds.
    files["header-past-eof.safetensors"] = pack(b'{"a":{}}', length=4000000)
    # N = 0.
    files["zero-header.safetensors"] = pack(b"", length=0) + b"{}"
    files["overlapping.safetensors"] = pack(header({
        "a": entry("F32", [2], 0, 8),
        "b": entry("F32", [2], 4, 12),
    }), bytes(12))
    files["bad-dtype.safetensors"] = pack(header({
        "a": entry("F12", [2], 0, 8),
    }), bytes(8))
    # 2 F32 elements need 8 bytes, the span has 4.
    files["shape-span-mismatch.safetensors"] = pack(header({
        "a": entry("F32", [2], 0, 4),
    }), bytes(4))
    # Nested far beyond any valid header; a recursive parser would dive in.
    depth = 1900
    files["deep-json.safetensors"] = pack(
        b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    # json.dumps cannot write duplicate keys: build the text by hand.
    files["duplicate-name.safetensors"] = pack(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2))
    files["trailing-garbage.safetensors"] = good + b"garbage"
    files["hole.safetensors"] = pack(header({
        "a": entry("F32", [2], 0, 8),
        "b": entry("F32", [2], 12, 20),
    }), bytes(20))
    return files


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s DIR" % sys.argv[0])
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(corpus().items()):
        assert len(data) <= 4096, name
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
