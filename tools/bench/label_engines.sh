#!/usr/bin/env bash
# Labelling engines side by side on one machine, one run: the same small CNN teacher
# (examples/train_torch.py's small_cnn, seeded) over the same split, through
#   - one serve label session (tools/bench/label_session_client.py), the baseline;
#   - torchrun, 2 ranks, each a serve label session for one part of a job (examples/label_torchrun.py);
#   - Ray Data, a local Ray on 2 CPUs, 2 teacher actors (examples/label_ray.py).
# Each is timed from the command's start to the generation's commit (process start-up,
# torch import, Ray start included). Rounds are interleaved; prints medians.
# Usage: tools/bench/label_engines.sh [STORE] [SPLIT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
store=${1:-/tmp/noisy-bench-pipeline/store.noisy}
split=${2:-labeled}
rounds=${3:-3}
tools/python-env.sh >/dev/null
py=.venv/bin/python
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sock=$work/s.sock
"$noisy" serve --store "$store" --socket "$sock" --size 32 --batch-size 64 --layout float32 --threads 2 2>/dev/null & pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
while [ ! -S "$sock" ]; do sleep 0.05; done
samples=$("$noisy" info --store "$store" --json | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['splits']['$split'])")
since() { awk "BEGIN { print $EPOCHREALTIME - $1 }"; }
declare -A r
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  t=$EPOCHREALTIME; $py tools/bench/label_session_client.py "unix:$sock" "$split" >/dev/null; r[serve]+=" $(since "$t")"
  t=$EPOCHREALTIME; $py -m torch.distributed.run --standalone --nproc_per_node 2 examples/label_torchrun.py "unix:$sock" \
    --job "bench-tr-$round-$$" --split "$split" >/dev/null 2>&1; r[torchrun]+=" $(since "$t")"
  t=$EPOCHREALTIME; NOISY_BIN=$noisy RAY_AUTH_MODE=disabled $py examples/label_ray.py "$store" --job "bench-ray-$round-$$" --split "$split" \
    --size 32 --cpus 2 >/dev/null 2>&1; r[ray]+=" $(since "$t")"
done
/usr/bin/python3 - "$samples" "${r[serve]}" "${r[torchrun]}" "${r[ray]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
runs = {k: [float(v) for v in s.split()] for k, s in zip(("serve", "torchrun", "ray"), sys.argv[2:])}
base = statistics.median(runs["serve"])
print(f"{n} samples")
print("| engine | median wall (s) | images/s | overhead vs one serve session | runs |")
print("| --- | --- | --- | --- | --- |")
for k, label in (("serve", "one serve label session"), ("torchrun", "torchrun, 2 ranks (a job in 2 parts)"), ("ray", "Ray Data, 2 actors")):
    m = statistics.median(runs[k])
    print(f"| {label} | {m:.1f} | {n / m:,.0f} | {m - base:+.1f} s | {[round(v, 1) for v in runs[k]]} |")
PY
