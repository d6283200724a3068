#!/usr/bin/env bash
# serve -> torch against in process, side by side in one run: the train view at 224
# (float32 NCHW and uint8 NHWC), 1 and 2 pipeline threads, batches of 32, through
# shared memory and through the socket, into the README's NoisyIterableDataset in a
# torch DataLoader (tools/bench/serve_torch.py). Rounds are interleaved; prints
# medians and ratios against `noisy bench pipeline` at the same settings.
#
# Usage: tools/bench/serve_torch.sh [WORKDIR] [BATCHES] [ROUNDS]
#   WORKDIR: where tools/bench/pipeline.sh keeps its JPEGs and store (made if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/noisy-bench-pipeline}
n=${2:-40}
rounds=${3:-3}
tools/python-env.sh >/dev/null
py=.venv/bin/python
[ -d "$work/jpegs" ] || /usr/bin/python3 tools/bench/make_jpegs.py "$work/jpegs" --count 1000 --classes 10
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
store=$work/store.noisy
[ -d "$store" ] || "$noisy" ingest --store "$store" --labeled "$work/jpegs" --quiet >/dev/null
sock=$work/serve-torch.sock
ips() { /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["images_per_second"], 1))'; }
serve() {  # serve LAYOUT THREADS -- CLIENT ARGS...
  local layout=$1 threads=$2; shift 3
  rm -f "$sock"
  "$noisy" serve --store "$store" --socket "$sock" --size 224 --batch-size 32 --seed 0 \
    --layout "$layout" --threads "$threads" 2>/dev/null & local pid=$!
  while [ ! -S "$sock" ]; do sleep 0.05; done
  $py tools/bench/serve_torch.py "unix:$sock" "$n" "$@" | ips
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
declare -A r
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  for layout in float32 uint8; do
    for t in 1 2; do
      r[$layout-$t-inproc]+=" $("$noisy" bench pipeline --store "$store" --size 224 --batch-size 32 --seed 0 \
          --layout "$layout" --threads "$t" --batches "$n" --repeat 1 --json | ips)"
      raw=(); [ "$layout" = uint8 ] && raw=(--uint8-raw)
      r[$layout-$t-shm]+=" $(serve "$layout" "$t" -- "${raw[@]}")"
      r[$layout-$t-socket]+=" $(serve "$layout" "$t" -- --socket-only "${raw[@]}")"
    done
  done
done
keys=(); vals=()
for k in "${!r[@]}"; do keys+=("$k"); vals+=("${r[$k]}"); done
/usr/bin/python3 - "$($py -c 'import torch, numpy; print(f"torch {torch.__version__}, numpy {numpy.__version__}")')" \
  "${#keys[@]}" "${keys[@]}" "${vals[@]}" <<'PY'
import statistics, sys
versions, k = sys.argv[1], int(sys.argv[2])
runs = {key: [float(v) for v in val.split()] for key, val in zip(sys.argv[3:3 + k], sys.argv[3 + k:])}
m = {key: statistics.median(v) for key, v in runs.items()}
print(versions)
print("| layout | threads | in process | shared memory | ratio | socket | ratio | shared / socket |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for layout in ("float32", "uint8"):
    for t in (1, 2):
        i, s, o = (m[f"{layout}-{t}-{x}"] for x in ("inproc", "shm", "socket"))
        print(f"| {layout} | {t} | {i:,.0f} | {s:,.0f} | {s / i:.2f} | {o:,.0f} | {o / i:.2f} | {s / o:.2f} |")
print("runs:", {key: v for key, v in sorted(runs.items())})
PY
