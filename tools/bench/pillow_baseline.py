#!/usr/bin/python3
"""The train transform users run today, with Pillow + numpy, single process.

decode -> RandomResizedCrop(224, scale 0.08-1, ratio 3/4-4/3, bilinear; torchvision's
get_params) -> horizontal flip -> [RandAugment(N, M) with PIL ops] -> float32 CHW
normalised with ImageNet mean/std. Reads the same JPEGs as `noisy bench pipeline`
(from a folder, or straight from a noisy store with --store). Prints one JSON
object with images_per_second (median of --repeat runs).

Usage: pillow_baseline.py (--folder DIR | --store S) [--limit 1000] [--size 224]
                          [--randaugment 2,9] [--repeat 3]
"""
import argparse
import io
import json
import math
import os
import random
import statistics
import sys
import time

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
FILL = (128, 128, 128)


def rrc_params(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def affine(img, m):
    return img.transform(img.size, Image.AFFINE, m, resample=Image.BILINEAR, fillcolor=FILL)


def ra_op(img, name, level, rng):
    sign = -1 if rng.random() < 0.5 else 1
    if name == "auto_contrast": return ImageOps.autocontrast(img)
    if name == "equalize": return ImageOps.equalize(img)
    if name == "invert": return ImageOps.invert(img)
    if name == "rotate": return img.rotate(sign * 30 * level, resample=Image.BILINEAR, fillcolor=FILL)
    if name == "posterize": return ImageOps.posterize(img, max(0, min(8, int(4 * level))))
    if name == "solarize": return ImageOps.solarize(img, int(256 * level))
    if name == "solarize_add":
        add = int(110 * level)
        return img.point([min(255, i + add) if i < 128 else i for i in range(256)] * len(img.getbands()))
    f = 0.1 + 1.8 * level
    if name == "color": return ImageEnhance.Color(img).enhance(f)
    if name == "contrast": return ImageEnhance.Contrast(img).enhance(f)
    if name == "brightness": return ImageEnhance.Brightness(img).enhance(f)
    if name == "sharpness": return ImageEnhance.Sharpness(img).enhance(f)
    if name == "shear_x": return affine(img, (1, sign * 0.3 * level, 0, 0, 1, 0))
    if name == "shear_y": return affine(img, (1, 0, 0, sign * 0.3 * level, 1, 0))
    if name == "translate_x": return affine(img, (1, 0, sign * 100 * level, 0, 1, 0))
    if name == "translate_y": return affine(img, (1, 0, 0, 0, 1, sign * 100 * level))
    if name == "cutout":
        pad = int(40 * level)
        arr = np.array(img)
        cy, cx = rng.randint(0, arr.shape[0] - 1), rng.randint(0, arr.shape[1] - 1)
        arr[max(0, cy - pad):cy + pad, max(0, cx - pad):cx + pad] = 128
        return Image.fromarray(arr)
    raise ValueError(name)


OPS = ["auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
       "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y", "cutout"]


def transform(data, size, rng, ra):
    img = Image.open(io.BytesIO(data)).convert("RGB")
    x, y, w, h = rrc_params(img.width, img.height, rng)
    img = img.resize((size, size), Image.BILINEAR, box=(x, y, x + w, y + h))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if ra:
        n, m = ra
        for _ in range(n):
            img = ra_op(img, rng.choice(OPS), m / 10, rng)
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (arr - MEAN) / STD


def image_files(folder, suffixes=(".jpg", ".jpeg", ".png")):
    """The images under `folder`, sorted: the order every benchmark script reads them in."""
    names = []
    for root, _, files in os.walk(folder):
        names += [os.path.join(root, f) for f in files if f.lower().endswith(suffixes)]
    return sorted(names)


def load(args):
    if args.store:
        import noisy
        store = noisy.open_store(args.store)
        out = []
        for s in store.samples("labeled"):
            out.append(bytes(s["data"]))
            if len(out) >= args.limit:
                break
        return out
    return [open(n, "rb").read() for n in image_files(args.folder)[: args.limit]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder")
    ap.add_argument("--store")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--randaugment")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not (a.folder or a.store):
        ap.error("give --folder or --store")
    ra = tuple(int(v) for v in a.randaugment.split(",")) if a.randaugment else None
    blobs = load(a)
    rates = []
    for r in range(a.repeat):
        rng = random.Random(a.seed + r)
        t = time.perf_counter()
        for b in blobs:
            transform(b, a.size, rng, ra)
        rates.append(len(blobs) / (time.perf_counter() - t))
    print(json.dumps({"images_per_second": statistics.median(rates), "runs": rates, "images": len(blobs),
                      "randaugment": a.randaugment, "size": a.size}))


if __name__ == "__main__":
    main()
