#!/usr/bin/env bash
# Two nodes simulated on one machine against one node, side by side: examples/ddp_train.py
# with 2 ranks, either one torchrun with --nproc_per_node 2 over one `noisy serve`, or two
# torchrun agents (--nnodes 2, c10d rendezvous on 127.0.0.1) each with its own `noisy serve`
# over its shard of a 2-shard set (noisy shard). Prints each rank's images/s (the
# example's own report), median over rounds.
# Usage: tools/bench/two_nodes.sh [STORE] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
store=${1:-/tmp/noisy-bench-pipeline/store.noisy}
steps=${2:-200}
rounds=${3:-3}
tools/python-env.sh >/dev/null
py=.venv/bin/python
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
"$noisy" shard --store "$store" --shards 2 --out "$work/set" --quiet >/dev/null
opts=(--size 32 --batch-size 32 --layout float32 --threads 1 --seed 0)
"$noisy" serve --store "$store" --socket "$work/one.sock" "${opts[@]}" --threads 2 2>/dev/null & pids+=($!)
"$noisy" serve --store "$work/set" --shards 0 --socket "$work/a.sock" "${opts[@]}" 2>/dev/null & pids+=($!)
"$noisy" serve --store "$work/set" --shards 1 --socket "$work/b.sock" "${opts[@]}" 2>/dev/null & pids+=($!)
for s in one a b; do while [ ! -S "$work/$s.sock" ]; do sleep 0.05; done; done
rates() { grep -o 'images/s [0-9]*' | awk '{print $2}' | tr '\n' ' '; }
# torchrun sets OMP_NUM_THREADS=1 only with more than one process per node: set it for both
# layouts, so that each rank's torch uses one core in both.
export OMP_NUM_THREADS=1
declare -A r
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  r[one]+=" $($py -m torch.distributed.run --standalone --nproc_per_node 2 examples/ddp_train.py "unix:$work/one.sock" --steps "$steps" 2>/dev/null | rates)"
  port=$((29300 + round))
  agents=()
  for node in a b; do
    $py -m torch.distributed.run --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint "127.0.0.1:$port" \
      --rdzv_id "bench-$round" examples/ddp_train.py "unix:$work/$node.sock" --steps "$steps" > "$work/$node.out" 2>/dev/null &
    agents+=($!)
  done
  wait "${agents[@]}" || true
  r[two]+=" $(cat "$work/a.out" "$work/b.out" | rates)"
done
/usr/bin/python3 - "${r[one]}" "${r[two]}" <<'PY'
import statistics, sys
one, two = ([float(v) for v in s.split()] for s in sys.argv[1:3])
print("| | per-rank images/s (median) | all ranks | runs |")
print("| --- | --- | --- | --- |")
for name, v in (("one node: torchrun --nproc_per_node 2, one serve", one), ("two nodes: 2 x torchrun --nnodes 2, a serve per shard", two)):
    m = statistics.median(v)
    print(f"| {name} | {m:,.0f} | {2 * m:,.0f} | {[round(x) for x in v]} |")
PY
