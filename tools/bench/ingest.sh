#!/usr/bin/env bash
# Ingest benchmark: noisy ingest vs the Python baseline on the same JPEGs, 3 runs each
# interleaved, medians and ratio; and noisy ingest --restart-markers (the lossless rewrite
# that makes train views faster) against the plain ingest.
# Usage: tools/bench/ingest.sh [COUNT] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-2000}
work=${2:-/tmp/noisy-bench-ingest}
mkdir -p "$work"
[ -d "$work/jpegs" ] || /usr/bin/python3 tools/bench/make_jpegs.py "$work/jpegs" --count "$count" --classes 10
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
ours=(); base=(); restarts=()
rate() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["images_per_second"], d["megabytes_per_second"])'; }
for run in 1 2 3; do
  rm -rf "$work/store.noisy" "$work/base.lmdb" "$work/restarts.noisy"
  ours+=("$("$noisy" ingest --store "$work/store.noisy" --labeled "$work/jpegs" --json --quiet | rate)")
  restarts+=("$("$noisy" ingest --store "$work/restarts.noisy" --labeled "$work/jpegs" --restart-markers --json --quiet | rate)")
  base+=("$(/usr/bin/python3 tools/bench/ingest_baseline.py "$work/jpegs" "$work/base.lmdb" | rate)")
done
/usr/bin/python3 - "${ours[@]}" -- "${base[@]}" -- "${restarts[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]; i = args.index("--"); j = args.index("--", i + 1)
ours = [tuple(map(float, s.split())) for s in args[:i]]; base = [tuple(map(float, s.split())) for s in args[i+1:j]]
rst = [tuple(map(float, s.split())) for s in args[j+1:]]
ri = statistics.median(r[0] for r in rst); rm = statistics.median(r[1] for r in rst)
oi = statistics.median(o[0] for o in ours); om = statistics.median(o[1] for o in ours)
bi = statistics.median(b[0] for b in base); bm = statistics.median(b[1] for b in base)
print(f"noisy ingest : median {oi:7.0f} images/s  {om:6.1f} MB/s   runs {[round(o[0]) for o in ours]}")
print(f"baseline     : median {bi:7.0f} images/s  {bm:6.1f} MB/s   runs {[round(b[0]) for b in base]}")
print(f"ratio        : {oi / bi:.2f}x")
print(f"--restart-markers: median {ri:7.0f} images/s  {rm:6.1f} MB/s   runs {[round(r[0]) for r in rst]}  ({ri / oi:.2f}x plain ingest)")
PY
