#!/usr/bin/python3
"""Baseline for `noisy ingest`: what a user writes today in one Python process.

Walks the folder, reads each file, SHA-256s it, validates it with a full Pillow
decode, and writes the bytes to LMDB in batched transactions (1000 per commit).
Prints one JSON object: images_per_second, megabytes_per_second.
Usage: ingest_baseline.py FOLDER OUT_LMDB_DIR
"""
import hashlib
import json
import os
import sys
import time

import lmdb
from PIL import Image


def main():
    root, out = sys.argv[1], sys.argv[2]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    env = lmdb.open(out, map_size=1 << 34)
    start = time.perf_counter()
    total = 0
    txn = env.begin(write=True)
    for i, path in enumerate(files):
        data = open(path, "rb").read()
        total += len(data)
        digest = hashlib.sha256(data).digest()
        with Image.open(path) as im:
            im.load()
        txn.put(i.to_bytes(8, "big"), data)
        txn.put(digest, i.to_bytes(8, "big"))
        if i % 1000 == 999:
            txn.commit()
            txn = env.begin(write=True)
    txn.commit()
    elapsed = time.perf_counter() - start
    print(json.dumps({"images": len(files), "seconds": elapsed, "images_per_second": len(files) / elapsed,
                      "megabytes_per_second": total / 1e6 / elapsed}))


if __name__ == "__main__":
    main()
