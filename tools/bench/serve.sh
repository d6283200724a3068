#!/usr/bin/env bash
# Streaming benchmark: batches of 256 x 224 x 224 x 3 uint8 (train view) in process,
# through shared memory, over a Unix socket and over TCP loopback (the numpy client),
# interleaved rounds; medians and ratios.
# Usage: tools/bench/serve.sh [STORE] [BATCHES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
store=${1:-/tmp/noisy-bench-pipeline/store.noisy}
n=${2:-12}
rounds=${3:-3}
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
opts=(--size 224 --batch-size 256 --threads 2 --seed 0)
sock=/tmp/noisy-bench-serve.sock
declare -A r
for round in $(seq "$rounds"); do
  r[inproc]+=" $("$noisy" bench pipeline --store "$store" "${opts[@]}" --batches "$n" --repeat 1 --json \
      | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"] / 256)')"
  "$noisy" serve --store "$store" --socket "$sock" "${opts[@]}" 2>/dev/null & pid=$!
  while [ ! -S "$sock" ]; do sleep 0.05; done
  r[shm]+=" $(/usr/bin/python3 tools/bench/serve_client.py "unix:$sock" "$n")|"
  r[unix]+=" $(/usr/bin/python3 tools/bench/serve_client.py "unix:$sock" "$n" --socket-only)|"
  kill "$pid"; wait "$pid" || true
  "$noisy" serve --store "$store" --listen 127.0.0.1:57391 "${opts[@]}" 2>/dev/null & pid=$!
  sleep 0.3
  r[tcp]+=" $(/usr/bin/python3 tools/bench/serve_client.py "127.0.0.1:57391" "$n")|"
  kill "$pid"; wait "$pid" || true
done
/usr/bin/python3 - "${r[inproc]}" "${r[shm]}" "${r[unix]}" "${r[tcp]}" <<'PY'
import json, statistics, sys
inproc = [float(v) for v in sys.argv[1].split()]
def runs(s): return [json.loads(x) for x in s.split("|") if x.strip()]
shm, unix, tcp = runs(sys.argv[2]), runs(sys.argv[3]), runs(sys.argv[4])
m = statistics.median(inproc)
print(f"in process     : {m:6.2f} batches/s  ({m * 256:.0f} images/s)  runs {[round(v, 2) for v in inproc]}")
for name, rs in (("shared memory", shm), ("unix socket", unix), ("tcp loopback", tcp)):
    b = statistics.median(r["batches_per_second"] for r in rs)
    mb = statistics.median(r["megabytes_per_second"] for r in rs)
    cpu = statistics.median(r["client_cpu_ms_per_batch"] for r in rs)
    print(f"{name:<15}: {b:6.2f} batches/s  {mb:6.0f} MB/s  {b / m:5.1%} of in process  "
          f"client CPU {cpu:.1f} ms/batch  runs {[round(r['batches_per_second'], 2) for r in rs]}")
PY
