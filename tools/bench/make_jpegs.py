#!/usr/bin/python3
"""Writes N ImageNet-like JPEGs (about 480x360, quality 75-95, 4:2:0) for benchmarks.

Content is smooth random colour fields plus texture and edges, so that file sizes
and entropy-decoding work resemble photographs (~30-60 KB each). Deterministic
for a seed. Usage: make_jpegs.py OUT_DIR [--count 2000] [--seed 0] [--classes 10]
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageFilter


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=10, help="0: one flat folder (unlabeled)")
    a = ap.parse_args()
    rng = np.random.RandomState(a.seed)
    for i in range(a.count):
        w = int(rng.choice([480, 500, 375, 448, 512])); h = int(rng.choice([360, 375, 333, 400, 320]))
        low = rng.rand(h // 24 + 2, w // 24 + 2, 3) * 255
        img = Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.asarray(img).astype(np.int16)
        arr += rng.randint(-18, 19, size=arr.shape).astype(np.int16)
        for _ in range(4):  # some hard edges
            x0, y0 = rng.randint(0, w - 40), rng.randint(0, h - 40)
            arr[y0:y0 + rng.randint(20, 120), x0:x0 + rng.randint(20, 160)] = rng.randint(0, 255, 3)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
        folder = a.out if a.classes == 0 else os.path.join(a.out, f"class{i % a.classes:03d}")
        os.makedirs(folder, exist_ok=True)
        img.save(os.path.join(folder, f"img{i:06d}.jpg"), quality=int(rng.randint(75, 96)))
    print(f"wrote {a.count} JPEGs to {a.out}")


if __name__ == "__main__":
    main()
