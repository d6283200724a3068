#!/usr/bin/python3
"""The cost of `noisy shard` per million samples: the store of tools/bench/labels_scale.py
(N tiny PNGs, made once) with one topk:32 generation, cut into 8 shards; wall time and
peak heap of the command, and `noisy verify` of the set.
Usage: shard.py [--samples N] [--classes C] [--work DIR] [--shards 8]"""
import json, os, shutil, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labels_scale import arguments, prepare, run  # noqa: E402


def main():
    a = arguments(__doc__)
    n, c, w, noisy = a.samples, a.classes, a.work, a.noisy
    store = prepare(n, c, w, noisy)
    listed = json.loads(subprocess.check_output([noisy, "labels", "list", "--store", store, "--json"], text=True))
    if not listed:
        run([noisy, "labels", "import", "--store", store, "--predictions", w + "/p.npy", "--ids", w + "/ids.npy",
             "--teacher", "shard bench", "--precision", "topk:32", "--quiet"])
    results = {"samples": n, "generations": max(1, len(listed))}
    for shards in (8,):
        out = f"{w}/shards-{shards}"
        shutil.rmtree(out, ignore_errors=True)
        _, wall, (rss, anon) = run([noisy, "shard", "--store", store, "--shards", str(shards), "--out", out, "--quiet"])
        _, vwall, _ = run([noisy, "verify", "--store", out])
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
        results[f"shards_{shards}"] = {"seconds": wall, "seconds_per_million": wall / n * 1e6, "peak_anon_mb": anon / 1e6,
                                       "peak_rss_mb": rss / 1e6, "set_bytes": size, "verify_seconds": vwall}
        print(json.dumps(results[f"shards_{shards}"]), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
