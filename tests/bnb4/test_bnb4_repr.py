#!/usr/bin/python3
"""smelt's Python-repr float formatting against Python's own repr().

bitsandbytes writes `nested_offset` into the quant-state JSON with
json.dumps, i.e. with Python's repr of a float; smelt must write the same
characters. Checked on special values, the edges of fixed and exponent
notation, float32 values widened to double (what a float32 offset is), and
random magnitudes from 1e-30 to 1e30.

    test_bnb4_repr.py --codec SMELT_BNB4_CODEC
"""
import argparse
import random
import struct
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--codec", required=True)
    args = ap.parse_args()
    rng = random.Random(20261122)
    values = [0.0, -0.0, 1.0, -1.0, 0.1, 1e-05, 1.5e-05, 0.0001, 0.00012345, 123456.0,
              1e15, 1e16, 1.5e16, 9999999999999998.0, 1e-300, 5e-324, 1.7976931348623157e308,
              0.024703405797481537, 100.0, 2.5]
    for _ in range(2000):
        f32 = struct.unpack("<f", struct.pack("<f", rng.gauss(0, 0.05)))[0]
        values.append(f32)
    values += [10.0 ** rng.uniform(-30, 30) for _ in range(2000)]
    values += [-(10.0 ** rng.uniform(-6, 17)) for _ in range(500)]
    p = subprocess.run([args.codec, "repr"] + [v.hex() for v in values],
                       stdout=subprocess.PIPE, text=True, check=True)
    out = p.stdout.splitlines()
    if len(out) != len(values):
        sys.exit("expected %d lines, got %d" % (len(values), len(out)))
    bad = [(v, o) for v, o in zip(values, out) if o != repr(v)]
    for v, o in bad[:10]:
        print("FAIL repr(%r): smelt wrote %s" % (v, o))
    print("%d values, %d formatted differently from Python" % (len(values), len(bad)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
