#!/usr/bin/python3
"""Generation scale benchmark: import, filter, export and random lookups for
N samples x C classes (default 1,000,000 x 1,000), in f16 and in topk:32.

Builds a store of N tiny distinct PNGs (unlabeled) plus one labeled image per
class, writes the predictions as a float32 .npy with numpy's memmap (chunked, so
generating them needs little memory), then runs each noisy command as a child
process and reports its wall time and peak RSS (wait4), and the store's growth
per sample. Usage: labels_scale.py [--samples N] [--classes C] [--work DIR]
"""
import argparse, json, os, subprocess, sys, time

import numpy as np
from PIL import Image


def anon_kb(pid):
    """Resident anonymous memory (heap, stacks): RSS without the memory-mapped files
    (the NPY, the LMDB map), whose pages belong to the page cache."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd):
    """Runs cmd; returns stdout, wall seconds, peak RSS and peak anonymous RSS (bytes)."""
    import threading
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, done = [0], threading.Event()
    def watch():  # reads /proc only; the one wait4 below reaps the child (a poll() here could reap it first)
        while not done.is_set():
            peak[0] = max(peak[0], anon_kb(p.pid)); time.sleep(0.05)
    w = threading.Thread(target=watch); w.start()
    out = p.stdout.read(); err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = status
    done.set()
    w.join()
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
    return out.decode(), wall, (usage.ru_maxrss * 1024, peak[0] * 1024)


def du(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def prepare(n, c, w, noisy):
    """The store of n tiny unlabeled PNGs plus one labeled image per class, and the
    predictions p.npy (float32 [n, c]) with ids.npy, made once in `w` and then reused.
    Returns the store's path."""
    os.makedirs(w, exist_ok=True)
    store = w + "/store.noisy"
    if not os.path.exists(store + "/data.mdb"):
        t = time.perf_counter()
        for k in range(c):  # one distinct image per class (distinct bytes: the store dedupes)
            d = f"{w}/labeled/c{k:04d}"; os.makedirs(d, exist_ok=True)
            px = np.full((4, 4, 3), 255, np.uint8); px.reshape(-1)[:4] = np.frombuffer(k.to_bytes(4, "little"), np.uint8)
            Image.fromarray(px).save(d + "/0.png")
        base = np.zeros((4, 4, 3), np.uint8)
        for i in range(n):
            if os.path.exists(f"{w}/unlabeled/{i // 1000:04d}/999.png"):
                continue
            d = f"{w}/unlabeled/{i // 1000:04d}"
            if i % 1000 == 0: os.makedirs(d, exist_ok=True)
            px = base.copy(); px.reshape(-1)[:4] = np.frombuffer(i.to_bytes(4, "little"), np.uint8)
            Image.fromarray(px).save(f"{d}/{i % 1000:03d}.png")
        print(f"wrote {n} + {c} PNGs in {time.perf_counter() - t:.0f} s", flush=True)
        out, wall, (rss, anon) = run([noisy, "ingest", "--store", store, "--labeled", w + "/labeled", "--unlabeled", w + "/unlabeled", "--quiet", "--json"])
        print(f"ingest: {wall:.0f} s, peak RSS {rss / 1e6:.0f} MB", flush=True)
    if not os.path.exists(w + "/p.npy"):
        t = time.perf_counter()
        p = np.lib.format.open_memmap(w + "/p.npy", mode="w+", dtype=np.float32, shape=(n, c))
        rng = np.random.default_rng(0)
        for s in range(0, n, 10_000):
            z = rng.standard_normal((min(10_000, n - s), c), dtype=np.float32) * 2.5
            z -= z.max(1, keepdims=True); np.exp(z, out=z); z /= z.sum(1, keepdims=True)
            p[s:s + len(z)] = z
        p.flush(); del p
        np.save(w + "/ids.npy", np.arange(c, c + n, dtype=np.int64))
        print(f"predictions {n} x {c} written in {time.perf_counter() - t:.0f} s", flush=True)
    return store


def arguments(description):
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/noisy-labels-scale")
    ap.add_argument("--noisy", default=None)
    a = ap.parse_args()
    a.noisy = a.noisy or subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip() + "/noisy"
    return a


def main():
    a = arguments(__doc__)
    n, c, w, noisy = a.samples, a.classes, a.work, a.noisy
    store = prepare(n, c, w, noisy)
    results = {"samples": n, "classes": c}
    for precision in ["f16", "topk:32"]:
        before = du(store)
        out, wall, rss = run([noisy, "labels", "import", "--store", store, "--predictions", w + "/p.npy", "--ids", w + "/ids.npy",
                              "--teacher", f"scale {precision}", "--precision", precision, "--parent", "none", "--json", "--quiet"])
        s = json.loads(out)
        k = s["generation"]
        grown = du(store) - before
        r = {"import_seconds": wall, "import_peak_rss_mb": rss[0] / 1e6, "import_peak_anon_mb": rss[1] / 1e6,
             "value_bytes_per_sample": s["bytes_per_sample"], "store_growth_bytes_per_sample": grown / n}
        out, wall, rss = run([noisy, "labels", "filter", "--store", store, "--generation", str(k), "--threshold", "0.3",
                              "--per-class", str(max(1, n // c)), "--json"])
        sel = json.loads(out)
        r.update(filter_seconds=wall, filter_peak_rss_mb=rss[0] / 1e6, filter_peak_anon_mb=rss[1] / 1e6,
                 selection_entries=sel["entries"], selection_samples=sel["samples"])
        exp = f"{w}/export-{k}"
        subprocess.run(["rm", "-rf", exp])
        out, wall, rss = run([noisy, "labels", "export", "--store", store, "--generation", str(k), "--format", "npy", "--out", exp])
        r.update(export_seconds=wall, export_peak_rss_mb=rss[0] / 1e6, export_peak_anon_mb=rss[1] / 1e6, export_bytes=du(exp))
        subprocess.run(["rm", "-rf", exp])
        out, wall, rss = run([noisy, "bench", "labels", "--store", store, "--generation", str(k), "--lookups", "200000", "--json"])
        r.update(lookups_per_second=json.loads(out)["lookups_per_second"])
        results[precision] = r
        print(precision, json.dumps(r), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
