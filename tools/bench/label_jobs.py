#!/usr/bin/python3
"""Label jobs at scale: a N x C generation (default 1,000,000 x 1,000) made from 8 and
from 64 parts against one-part `labels import`, in f16 and topk:32, measured in one run
on the same store and predictions (tools/bench/labels_scale.py makes them, once).

For each precision: the one-part import; then for each W, every part submitted with
`labels import --job J --part i --parts W --no-commit` (the workers' side: checks and
staging), then `labels commit` (the generation). Reports wall times and peak heap
(anonymous RSS) of each command, and checks that every generation holds the same
bytes as the one-part import (python-lmdb, value by value).
Usage: [PRECISIONS=f16,topk:32] label_jobs.py [--samples N] [--classes C] [--work DIR]
"""
import json, os, shutil, statistics, subprocess, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labels_scale import arguments, prepare, run  # noqa: E402


def same_labels(store, a, b):
    """True when generations a and b hold the same ids with the same stored bytes
    (read with python-lmdb, two cursors side by side)."""
    import lmdb
    env = lmdb.open(store, readonly=True, max_dbs=32, lock=False)
    try:
        with env.begin(buffers=True) as t:
            db = env.open_db(b"labels", txn=t, create=False)
            ca, cb = t.cursor(db), t.cursor(db)
            ok_a, ok_b = ca.set_range(a.to_bytes(4, "big")), cb.set_range(b.to_bytes(4, "big"))
            while True:
                in_a = ok_a and bytes(ca.key()[:4]) == a.to_bytes(4, "big")
                in_b = ok_b and bytes(cb.key()[:4]) == b.to_bytes(4, "big")
                if not in_a or not in_b:
                    return in_a == in_b
                if bytes(ca.key()[4:]) != bytes(cb.key()[4:]) or bytes(ca.value()) != bytes(cb.value()):
                    return False
                ok_a, ok_b = ca.next(), cb.next()
    finally:
        env.close()


def main():
    a = arguments(__doc__)
    n, c, w, noisy = a.samples, a.classes, a.work, a.noisy
    store = prepare(n, c, w, noisy)
    parts_list = [8, 64]
    p = np.load(w + "/p.npy", mmap_mode="r")
    ids = np.load(w + "/ids.npy")
    for parts in parts_list:  # the workers' files: part i holds rows i, i+W, ... (ids in id order)
        d = f"{w}/parts-{parts}"
        if os.path.exists(d + "/done"):
            continue
        os.makedirs(d, exist_ok=True)
        t = time.perf_counter()
        for i in range(parts):
            np.save(f"{d}/p{i}.npy", np.ascontiguousarray(p[i::parts]))
            np.save(f"{d}/ids{i}.npy", ids[i::parts])
        open(d + "/done", "w").close()
        print(f"{parts} part files written in {time.perf_counter() - t:.0f} s", flush=True)
    results = {"samples": n, "classes": c}
    for precision in os.environ.get("PRECISIONS", "f16,topk:32").split(","):
        tag = precision.replace(":", "")
        out, wall, (rss, anon) = run([noisy, "labels", "import", "--store", store, "--predictions", w + "/p.npy", "--ids", w + "/ids.npy",
                                      "--teacher", "jobs bench", "--precision", precision, "--parent", "none", "--json", "--quiet"])
        k = json.loads(out)["generation"]
        r = {"one_import_seconds": wall, "one_import_peak_anon_mb": anon / 1e6, "one_import_peak_rss_mb": rss / 1e6}
        for parts in parts_list:
            job = f"bench-{tag}-{parts}-{int(time.time())}"
            d = f"{w}/parts-{parts}"
            walls, anons = [], []
            t = time.perf_counter()
            for i in range(parts):
                _, pw, (_, pa) = run([noisy, "labels", "import", "--store", store, "--job", job, "--part", str(i), "--parts", str(parts),
                                      "--predictions", f"{d}/p{i}.npy", "--ids", f"{d}/ids{i}.npy", "--teacher", "jobs bench",
                                      "--precision", precision, "--parent", "none", "--no-commit"])
                walls.append(pw); anons.append(pa)
            submit_total = time.perf_counter() - t
            out, cw, (crss, canon) = run([noisy, "labels", "commit", "--store", store, "--job", job, "--json"])
            g = json.loads(out)["generation"]
            same = same_labels(store, k, g)
            r[f"parts_{parts}"] = {"submit_all_seconds": submit_total, "submit_median_seconds": statistics.median(walls),
                                   "submit_peak_anon_mb": max(anons) / 1e6, "commit_seconds": cw, "commit_peak_anon_mb": canon / 1e6,
                                   "commit_peak_rss_mb": crss / 1e6, "same_bytes_as_one_import": same}
            print(precision, parts, json.dumps(r[f"parts_{parts}"]), flush=True)
            for k2 in (g,):
                subprocess.run([noisy, "labels", "delete", "--store", store, "--generation", str(k2)], capture_output=True)
        subprocess.run([noisy, "labels", "delete", "--store", store, "--generation", str(k)], capture_output=True)
        results[precision] = r
        print(precision, json.dumps(r), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
