#!/usr/bin/env bash
# The train view side by side, in one run, on the same JPEGs: noisy against
# libjpeg-turbo's own full decode, Pillow + numpy and torchvision's fastest CPU path
# (PyPI releases, in the .venv tools/python-env.sh makes), with and without
# RandAugment(2, 9). Runs are interleaved, so that machine noise hits every side
# alike. Prints medians and ratios (the BENCHMARKS.md table).
#
# Usage: tools/bench/pipeline.sh [COUNT] [WORKDIR] [ROUNDS] [JPEG_FOLDER]
#   JPEG_FOLDER: your own photos (default: COUNT generated ImageNet-like JPEGs).
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-1000}
work=${2:-/tmp/noisy-bench-pipeline}
rounds=${3:-3}
jpegs=${4:-$work/jpegs}
mkdir -p "$work"
[ -d "$jpegs" ] || /usr/bin/python3 tools/bench/make_jpegs.py "$jpegs" --count "$count" --classes 10
tools/python-env.sh >/dev/null
py=.venv/bin/python
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
[ -d "$work/store.noisy" ] || "$noisy" ingest --store "$work/store.noisy" --labeled "$jpegs" --quiet >/dev/null
# The same files rewritten losslessly with restart markers (ingest --restart-markers).
[ -d "$work/store-restarts.noisy" ] || "$noisy" ingest --store "$work/store-restarts.noisy" --labeled "$jpegs" --restart-markers --quiet >/dev/null
images=$("$noisy" info --store "$work/store.noisy" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["splits"]["labeled"])')
batches=$((images / 64))
ips() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])'; }
nb() { "$noisy" bench pipeline --store "$work/store.noisy" --batches "$batches" --repeat 1 --json "$@" | ips; }
nr() { "$noisy" bench pipeline --store "$work/store-restarts.noisy" --batches "$batches" --repeat 1 --json "$@" | ips; }
declare -A r
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  r[pil]+=" $($py tools/bench/pillow_baseline.py --folder "$jpegs" --limit "$images" --repeat 1 | ips)"
  r[tv]+=" $($py tools/bench/torchvision_baseline.py --folder "$jpegs" --limit "$images" --repeat 1 | ips)"
  r[decode]+=" $("$noisy" bench decode --store "$work/store.noisy" --repeat 1 --json | ips)"
  r[t1]+=" $(nb --layout float32 --threads 1)"
  r[t2]+=" $(nb --layout float32 --threads 2)"
  r[t1_u8]+=" $(nb --layout uint8 --threads 1)"
  r[pil_ra]+=" $($py tools/bench/pillow_baseline.py --folder "$jpegs" --limit "$images" --repeat 1 --randaugment 2,9 | ips)"
  r[tv_ra]+=" $($py tools/bench/torchvision_baseline.py --folder "$jpegs" --limit "$images" --repeat 1 --randaugment 2,9 | ips)"
  r[t1_ra]+=" $(nb --layout float32 --threads 1 --randaugment 2,9)"
  r[rdecode]+=" $("$noisy" bench decode --store "$work/store-restarts.noisy" --repeat 1 --json | ips)"
  r[r1]+=" $(nr --layout float32 --threads 1)"
  r[r1_ra]+=" $(nr --layout float32 --threads 1 --randaugment 2,9)"
  r[tc]+=" $(nb --layout float32 --threads 1 --view teacher)"
  r[rtc]+=" $(nr --layout float32 --threads 1 --view teacher)"
done
versions=$($py -c 'import PIL, torch, torchvision, numpy; print(f"Pillow {PIL.__version__}, numpy {numpy.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")')
/usr/bin/python3 - "$versions" "$images" "${r[pil]}" "${r[tv]}" "${r[decode]}" "${r[t1]}" "${r[t2]}" "${r[t1_u8]}" "${r[pil_ra]}" "${r[tv_ra]}" "${r[t1_ra]}" "${r[rdecode]}" "${r[r1]}" "${r[r1_ra]}" "${r[tc]}" "${r[rtc]}" <<'PY'
import statistics, sys
versions, images = sys.argv[1], sys.argv[2]
names = ["pil", "tv", "decode", "t1", "t2", "t1_u8", "pil_ra", "tv_ra", "t1_ra", "rdecode", "r1", "r1_ra", "tc", "rtc"]
runs = {n: [float(v) for v in s.split()] for n, s in zip(names, sys.argv[3:])}
m = {n: statistics.median(v) for n, v in runs.items()}
print(f"{images} images; {versions}")
print("| | median images/s | runs | ratio |")
print("| --- | --- | --- | --- |")
def row(label, key, *refs):
    ratios = ", ".join(f"**{m[key] / m[ref]:.2f}x** {what}" for ref, what in refs)
    print(f"| {label} | {m[key]:,.0f} | {', '.join(str(round(v)) for v in runs[key])} | {ratios} |")
row("libjpeg-turbo full decode alone, one thread (`noisy bench decode`)", "decode")
row("Pillow + numpy (`pillow_baseline.py`), one process", "pil")
row("torchvision `decode_jpeg` + transforms.v2 (`torchvision_baseline.py`), one thread", "tv")
row("noisy, 1 thread, float32 NCHW", "t1", ("decode", "full decode"), ("pil", "Pillow"), ("tv", "torchvision"))
row("noisy, 2 threads, float32 NCHW", "t2", ("t1", "one thread"))
row("noisy, 1 thread, uint8 NHWC", "t1_u8", ("decode", "full decode"))
row("Pillow + numpy + RandAugment(2, 9) (PIL ops)", "pil_ra")
row("torchvision + v2.RandAugment(2, 9)", "tv_ra")
row("noisy, 1 thread, float32, RandAugment(2, 9)", "t1_ra", ("tv_ra", "torchvision"), ("pil_ra", "Pillow"))
print("| **Store ingested with `--restart-markers`** (same pixels) | | | |")
row("libjpeg-turbo full decode of the rewritten files", "rdecode", ("decode", "full decode of the originals"))
row("noisy, 1 thread, float32 NCHW", "r1", ("decode", "full decode"), ("pil", "Pillow"), ("tv", "torchvision"), ("t1", "without restart markers"))
row("noisy, 1 thread, float32, RandAugment(2, 9)", "r1_ra", ("tv_ra", "torchvision"), ("pil_ra", "Pillow"))
print("| **The teacher's clean view** (resize to 256, centre crop 224), 1 thread, float32 | | | |")
row("noisy, plain store", "tc", ("decode", "full decode"))
row("noisy, store with restart markers", "rtc", ("decode", "full decode"), ("tc", "plain store"))
PY
