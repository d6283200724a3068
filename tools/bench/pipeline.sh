#!/usr/bin/env bash
# Pipeline benchmark: noisy's train view against the Pillow + numpy baseline on the
# same ImageNet-like JPEGs, runs interleaved so that machine noise hits both alike.
# Prints medians and ratios (the BENCHMARKS.md table).
# Usage: tools/bench/pipeline.sh [COUNT] [WORKDIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-1000}
work=${2:-/tmp/noisy-bench-pipeline}
rounds=${3:-3}
mkdir -p "$work"
[ -d "$work/jpegs" ] || /usr/bin/python3 tools/bench/make_jpegs.py "$work/jpegs" --count "$count" --classes 10
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
[ -d "$work/store.noisy" ] || "$noisy" ingest --store "$work/store.noisy" --labeled "$work/jpegs" --quiet >/dev/null
batches=$((count / 64))
ips() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])'; }
declare -A r
for round in $(seq "$rounds"); do
  r[pil]+=" $(/usr/bin/python3 tools/bench/pillow_baseline.py --store "$work/store.noisy" --limit "$count" --repeat 1 | ips)"
  r[pil_ra]+=" $(/usr/bin/python3 tools/bench/pillow_baseline.py --store "$work/store.noisy" --limit "$count" --repeat 1 --randaugment 2,9 | ips)"
  r[t1]+=" $("$noisy" bench pipeline --store "$work/store.noisy" --layout float32 --threads 1 --batches "$batches" --repeat 1 --json | ips)"
  r[t2]+=" $("$noisy" bench pipeline --store "$work/store.noisy" --layout float32 --threads 2 --batches "$batches" --repeat 1 --json | ips)"
  r[t1_ra]+=" $("$noisy" bench pipeline --store "$work/store.noisy" --layout float32 --threads 1 --batches "$batches" --repeat 1 --randaugment 2,9 --json | ips)"
  r[t1_u8]+=" $("$noisy" bench pipeline --store "$work/store.noisy" --layout uint8 --threads 1 --batches "$batches" --repeat 1 --json | ips)"
  r[decode]+=" $("$noisy" bench decode --store "$work/store.noisy" --repeat 1 --json | ips)"
done
/usr/bin/python3 - "${r[pil]}" "${r[pil_ra]}" "${r[t1]}" "${r[t2]}" "${r[t1_ra]}" "${r[t1_u8]}" "${r[decode]}" <<'PY'
import statistics, sys
names = ["pil", "pil_ra", "t1", "t2", "t1_ra", "t1_u8", "decode"]
m = {n: statistics.median(map(float, s.split())) for n, s in zip(names, sys.argv[1:])}
runs = {n: [round(float(v)) for v in s.split()] for n, s in zip(names, sys.argv[1:])}
def row(label, key, ref=None, ratio_label=""):
    extra = f"   {m[key] / m[ref]:.2f}x {ratio_label}" if ref else ""
    print(f"{label:<46} {m[key]:7.0f} img/s  runs {runs[key]}{extra}")
row("Pillow baseline, train view 224 float32", "pil")
row("Pillow baseline + RandAugment(2,9)", "pil_ra")
row("noisy, 1 thread, float32 NCHW", "t1", "pil", "vs Pillow")
row("noisy, 2 threads, float32 NCHW", "t2", "t1", "vs 1 thread")
row("noisy, 1 thread, RandAugment(2,9)", "t1_ra", "pil_ra", "vs Pillow + RandAugment")
row("noisy, 1 thread, uint8 NHWC", "t1_u8", "pil", "vs Pillow")
row("libjpeg-turbo full decode only (noisy bench decode)", "decode")
print(f"{'train view (1 thread) / full-decode rate':<46} {m['t1'] / m['decode']:.2f}")
PY
