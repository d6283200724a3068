#!/usr/bin/env bash
# Integrity benchmark on a 100,000-sample store (Fashion-MNIST's 70,000 images plus
# 30,000 of them mirrored, as PNGs): `noisy verify` against a Python re-hash of every
# image (python-lmdb + hashlib, the least a script would do), `noisy salvage` against
# `mdb_copy -c` (a compacting copy that checks nothing), 3 interleaved runs each,
# medians and ratios; then the label digest's cost at import and per open.
# Usage: tools/bench/integrity.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/noisy-bench-integrity}
mkdir -p "$work"
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
store="$work/store.noisy"
if [ ! -f "$store/data.mdb" ]; then
  /usr/bin/python3 - "$work" <<'PY'
import gzip, os, sys, numpy as np
from PIL import Image
w = sys.argv[1]
def idx(name):
    with gzip.open(f"/usr/share/datasets/fashion-mnist/{name}") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
def idx_labels(name):
    with gzip.open(f"/usr/share/datasets/fashion-mnist/{name}") as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)
imgs = np.concatenate([idx("train-images-idx3-ubyte.gz"), idx("t10k-images-idx3-ubyte.gz")])
imgs = np.concatenate([imgs, imgs[:30000, :, ::-1]])
labels = np.concatenate([idx_labels("train-labels-idx1-ubyte.gz"), idx_labels("t10k-labels-idx1-ubyte.gz")])
for i, a in enumerate(imgs):
    # The 10,000 test images are the labeled split (in class folders), the rest unlabeled.
    if 60000 <= i < 70000:
        d = f"{w}/labeled/c{labels[i]}"
    else:
        d = f"{w}/png/{i // 1000:03d}"
    os.makedirs(d, exist_ok=True)
    Image.fromarray(a).save(f"{d}/{i:06d}.png")
PY
  "$noisy" ingest --store "$store" --labeled "$work/labeled" --unlabeled "$work/png" --quiet >/dev/null
  /usr/bin/python3 - "$store" "$work" <<'PY'
import lmdb, sys, numpy as np
e = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=32)
with e.begin(db=e.open_db(b"samples", create=False)) as t:
    ids = np.array([int.from_bytes(k, "big") for k, _ in t.cursor()], np.int64)
rng = np.random.RandomState(0)
p = rng.dirichlet(np.ones(10) * 0.3, size=len(ids)).astype(np.float32)
np.save(sys.argv[2] + "/ids.npy", ids); np.save(sys.argv[2] + "/p.npy", p)
PY
fi
samples=$(/usr/bin/python3 -c "import lmdb,sys; e=lmdb.open(sys.argv[1],readonly=True,lock=False,max_dbs=32); print(e.open_db(b'samples',create=False) and e.begin().stat(e.open_db(b'samples',create=False))['entries'])" "$store")
mb=$(du -m "$store/data.mdb" | cut -f1)
echo "store: $samples samples, $mb MB"
# Wall seconds of a command (output discarded).
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s%N); echo "$(( (e - s) / 1000000 ))e-3"; }
v=(); vb=(); s=(); sb=()
for run in 1 2 3; do
  v+=("$(t "$noisy" verify --store "$store")")
  vb+=("$(t /usr/bin/python3 -c "
import hashlib, lmdb, sys
e = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=32)
with e.begin(db=e.open_db(b'images', create=False)) as t:
    for k, v in t.cursor(): hashlib.sha256(v).digest()" "$store")")
  rm -rf "$work/saved" "$work/copy"; mkdir -p "$work/copy"
  s+=("$(t "$noisy" salvage --store "$store" --out "$work/saved" --json)")
  sb+=("$(t mdb_copy -c "$store" "$work/copy")")
done
/usr/bin/python3 - "$samples" "${v[*]}" "${vb[*]}" "${s[*]}" "${sb[*]}" <<'PY'
import statistics, sys
n = int(sys.argv[1]); runs = [list(map(float, a.split())) for a in sys.argv[2:]]
names = ["noisy verify (pages, hashes, decode, indexes, seals)", "python-lmdb + hashlib re-hash", "noisy salvage (to a new store)", "mdb_copy -c"]
med = [statistics.median(r) for r in runs]
for name, m, r in zip(names, med, runs):
    print(f"{name:54s}: median {m:6.2f} s  {n / m:9.0f} samples/s   runs {[round(x, 2) for x in r]}")
print(f"verify / re-hash time ratio  : {med[0] / med[1]:.2f}x   salvage / mdb_copy time ratio: {med[2] / med[3]:.2f}x")
PY
# The label digest: its share of an import, and its check per open.
"$noisy" labels delete --store "$store" --generation latest >/dev/null 2>&1 || true
"$noisy" labels import --store "$store" --predictions "$work/p.npy" --ids "$work/ids.npy" --teacher bench --json --quiet > "$work/import.json"
"$noisy" bench labels --store "$store" --generation latest --lookups 100000 --json > "$work/lookups.json"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
i = json.load(open(w + "/import.json")); b = json.load(open(w + "/lookups.json"))
print(f"labels import f16: {i['elapsed_seconds']:.2f} s for {i['samples']} samples, of which the digest {i['digest_seconds']:.3f} s ({100 * i['digest_seconds'] / i['elapsed_seconds']:.1f}%)")
print(f"digest check per open: {b['digest_check_seconds']:.3f} s for {b['samples']} labels; random lookups {b['lookups_per_second']:.0f}/s")
PY
