#!/usr/bin/python3
"""Decode fidelity: every format and mode noisy reads, against Pillow's decode.

Writes one file per flavour with Pillow (from a photograph when one is given, else
a smooth synthetic RGB image), ingests each into its own store with the noisy
binary, writes the stored sample back with `noisy show` (PNG, lossless) and
compares its pixels with Pillow's `Image.open(f).convert("L" or "RGB")`: the
decode a torchvision user gets. Prints the BENCHMARKS.md table.

Usage (the benchmark virtual environment has the current PyPI Pillow):
  .venv/bin/python tools/bench/fidelity.py NOISY_BINARY WORKDIR [--photo FILE]
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image


def flavours(src, d):
    """(name, path, what it is) for every flavour, written under d."""
    out = []

    def save(name, img, what, **kw):
        p = os.path.join(d, name)
        img.save(p, **kw)
        out.append((name, p, what))

    save("baseline.jpg", src, "JPEG baseline, 4:2:0, q90", quality=90)
    save("q75-444.jpg", src, "JPEG 4:4:4, q75", quality=75, subsampling=0)
    save("progressive.jpg", src, "JPEG progressive", quality=85, progressive=True)
    save("gray.jpg", src.convert("L"), "JPEG grayscale", quality=90)
    save("cmyk.jpg", src.convert("CMYK"), "JPEG CMYK (Adobe marker)", quality=95)
    b = open(os.path.join(d, "cmyk.jpg"), "rb").read()
    i = b.index(b"\xff\xee")
    n = int.from_bytes(b[i + 2:i + 4], "big")
    p = os.path.join(d, "cmyk-no-adobe.jpg")
    open(p, "wb").write(b[:i] + b[i + 2 + n:])
    out.append(("cmyk-no-adobe.jpg", p, "JPEG CMYK without an Adobe marker"))
    b = open(os.path.join(d, "baseline.jpg"), "rb").read()
    i = b.index(b"\xff\xdb")
    p = os.path.join(d, "junk.jpg")
    open(p, "wb").write(b[:i] + b"\x00\x11\x22\x33\x44" + b[i:])
    out.append(("junk.jpg", p, "JPEG with junk between markers (accepted with a warning)"))
    save("rgb.png", src, "PNG RGB 8-bit")
    save("gray.png", src.convert("L"), "PNG gray 8-bit")
    save("gray-alpha.png", src.convert("LA"), "PNG gray + alpha")
    rgba = src.convert("RGBA")
    rgba.putalpha(128)
    save("rgba.png", rgba, "PNG RGBA (alpha dropped)")
    save("palette.png", src.convert("P", palette=Image.ADAPTIVE, colors=64), "PNG palette")
    save("palette-trns.png", src.convert("P", palette=Image.ADAPTIVE, colors=32), "PNG palette + tRNS", transparency=3)
    save("bilevel.png", src.convert("1"), "PNG 1-bit")
    g16 = (np.asarray(src.convert("L"), dtype=np.uint16) * 257 + 3).astype(np.uint16)
    save("gray16.png", Image.fromarray(g16), "PNG gray 16-bit, full range")
    save("gray16-low.png", Image.fromarray(np.asarray(src.convert("L"), dtype=np.uint16)), "PNG gray 16-bit, values 0-255")
    # Pillow writes no 16-bit RGB PNG: built here (filter 0 per row, one IDAT).
    rgb16 = (np.asarray(src, dtype=np.uint16) * 257 + 1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    chunk = lambda t, b: len(b).to_bytes(4, "big") + t + b + zlib.crc32(t + b).to_bytes(4, "big")
    p = os.path.join(d, "rgb16.png")
    open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", src.size[0].to_bytes(4, "big") + src.size[1].to_bytes(4, "big")
                                                     + bytes([16, 2, 0, 0, 0])) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    out.append(("rgb16.png", p, "PNG RGB 16-bit"))
    save("lossy.webp", src, "WebP lossy", quality=80)
    save("lossless.webp", src, "WebP lossless", lossless=True)
    save("alpha-lossy.webp", rgba, "WebP lossy + alpha", quality=70)
    save("alpha-lossless.webp", rgba, "WebP lossless + alpha", lossless=True)
    frames = [src, src.transpose(Image.FLIP_LEFT_RIGHT)]
    p = os.path.join(d, "animated.webp")
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    out.append(("animated.webp", p, "WebP animated (first frame)"))
    save("image.gif", src.convert("P"), "GIF")
    save("image.bmp", src, "BMP")
    save("image.tiff", src, "TIFF")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("noisy")
    ap.add_argument("work")
    ap.add_argument("--photo")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    files = os.path.join(a.work, "files")
    os.makedirs(files)
    if a.photo:
        src = Image.open(a.photo).convert("RGB")
    else:
        rng = np.random.RandomState(7)
        low = rng.rand(12, 16, 3) * 255
        src = Image.fromarray(low.astype(np.uint8)).resize((320, 240), Image.BICUBIC)
    import PIL
    print(f"Source: {a.photo or 'synthetic 320x240 RGB'}; Pillow {PIL.__version__}")
    print("| file | noisy reads it as | equal to Pillow | differing values | max difference |")
    print("| --- | --- | --- | --- | --- |")
    for name, path, what in flavours(src, files):
        folder = os.path.join(a.work, "in-" + name)
        os.makedirs(folder)
        shutil.copy(path, folder)
        store = os.path.join(a.work, "store-" + name)
        rep = os.path.join(a.work, "report-" + name + ".jsonl")
        r = subprocess.run([a.noisy, "ingest", "--store", store, "--unlabeled", folder, "--json", "--quiet",
                            "--report", rep], capture_output=True, text=True)
        summary = json.loads(r.stdout) if r.returncode == 0 else {}
        if summary.get("added", 0) != 1:
            lines = open(rep).read().splitlines() if os.path.exists(rep) else []
            reason = json.loads(lines[0])["reason"] if lines else (r.stderr.strip() or "refused")
            print(f"| {what} | refused: {reason} | - | - | - |")
            continue
        shown = subprocess.run([a.noisy, "show", "--store", store, "--id", "0", "--out", "-"], capture_output=True)
        if shown.returncode != 0:
            print(f"| {what} | refused | - | - | {shown.stderr.decode().strip()[:80]} |")
            continue
        ours = Image.open(io.BytesIO(shown.stdout))
        im = Image.open(path)
        mode = "L" if im.mode in ("1", "L", "LA", "I;16", "I") else "RGB"
        theirs = np.asarray(im.convert(mode), dtype=np.int16)
        mine = np.asarray(ours.convert(ours.mode), dtype=np.int16)
        if mine.shape != theirs.shape:
            print(f"| {what} | {ours.mode} {mine.shape} | no (Pillow: {mode} {theirs.shape}) | - | - |")
            continue
        diff = np.abs(mine - theirs)
        n = int((diff > 0).sum())
        print(f"| {what} | {'gray' if ours.mode == 'L' else 'RGB'} | {'**yes**' if n == 0 else 'no'} | "
              f"{n} of {diff.size} | {int(diff.max())} |")


if __name__ == "__main__":
    sys.exit(main())
