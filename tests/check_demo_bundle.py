#!/usr/bin/env python3
"""The bundled demo model (data/demo) is exactly what the generator makes.

Regenerates the demo into a scratch directory and compares every file byte
for byte, so the committed binaries cannot drift from their recipe."""
import filecmp
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
bundle = os.path.join(here, "..", "data", "demo")

with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, os.path.join(here, "gen", "gen_tiny_model.py"), "demo", tmp],
                   check=True)
    bad = []
    for root, _, files in os.walk(tmp):
        for name in files:
            fresh = os.path.join(root, name)
            rel = os.path.relpath(fresh, tmp)
            kept = os.path.join(bundle, rel)
            if not os.path.exists(kept) or not filecmp.cmp(fresh, kept, shallow=False):
                bad.append(rel)
    for root, _, files in os.walk(bundle):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), bundle)
            if not os.path.exists(os.path.join(tmp, rel)):
                bad.append(rel + " (not generated)")
    for rel in bad:
        print("differs:", rel)
    print("%d passed, %d failed" % (0 if bad else 1, 1 if bad else 0))
    sys.exit(1 if bad else 0)
