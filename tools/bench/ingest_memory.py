#!/usr/bin/python3
"""Ingest memory benchmark: peak RSS of `noisy ingest` over folders of N tiny
distinct PNGs (folders of 1,000), for several N. Flat memory means the peak does
not grow with N: the scan streams, and only one batch of files is in flight.

Usage: ingest_memory.py [--sizes 10000,100000] [--work DIR] [--noisy PATH]
Prints one line per size: files, seconds, files/s, peak RSS and peak anonymous
RSS (heap and stacks, without the LMDB map's page-cache pages).
"""
import argparse, os, shutil, subprocess, sys, time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labels_scale import run  # noqa: E402  (wall time and peak RSS of a child process)


def make_folder(root, n):
    """n distinct 4x4 PNGs (the index in the first pixels: the store dedupes by content)."""
    done = root + f"/.complete-{n}"
    if os.path.exists(done):
        return
    shutil.rmtree(root, ignore_errors=True)
    base = np.zeros((4, 4, 3), np.uint8)
    for i in range(n):
        d = f"{root}/{i // 1000:04d}"
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        px = base.copy()
        px.reshape(-1)[:4] = np.frombuffer(i.to_bytes(4, "little"), np.uint8)
        Image.fromarray(px).save(f"{d}/{i % 1000:03d}.png")
    open(done, "w").close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--work", default="/tmp/noisy-ingest-memory")
    ap.add_argument("--noisy", default=None)
    a = ap.parse_args()
    noisy = a.noisy or subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip() + "/noisy"
    print(f"{'files':>9} {'seconds':>8} {'files/s':>8} {'peak RSS MB':>12} {'peak anon MB':>13}")
    for n in [int(s) for s in a.sizes.split(",")]:
        folder = f"{a.work}/files-{n}"
        make_folder(folder, n)
        store = f"{a.work}/store-{n}.noisy"
        shutil.rmtree(store, ignore_errors=True)
        _, wall, (rss, anon) = run([noisy, "ingest", "--store", store, "--unlabeled", folder, "--quiet", "--json"])
        print(f"{n:>9} {wall:>8.1f} {n / wall:>8.0f} {rss / 1e6:>12.0f} {anon / 1e6:>13.0f}", flush=True)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
