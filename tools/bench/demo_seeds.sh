#!/usr/bin/env bash
# The demo's table over several seeds (issue 18): runs `noisy demo --seed K` for each
# seed in a fresh work folder (each seed picks other labeled images and other training
# noise; the validation hold-out is the same for all), timed and profiled phase by phase
# by tools/bench/cpu_profile.py (seed-K/time.txt, seed-K/profile.md), then
# prints the mean and standard deviation of every number in the table as markdown.
#
#   tools/bench/demo_seeds.sh [OUT_DIR] [SEEDS...]     # defaults: /tmp/noisy-demo-seeds 1 2 3
#   EXTRA="--iterations 1" tools/bench/demo_seeds.sh    # extra demo options for every seed
#
# About 20 minutes per seed on 2 cores. A seed whose report.json exists is not run again
# (delete its folder to re-run it); an interrupted seed resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/noisy-demo-seeds}
shift || true
seeds=("$@")
((${#seeds[@]} > 0)) || seeds=(1 2 3)
mkdir -p "$out"
tools/bootstrap.sh >/dev/null
swift build -c release --product noisy 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)/noisy
for s in "${seeds[@]}"; do
  work="$out/seed-$s"
  if [[ -f "$work/report.json" && -f "$work/time.txt" ]]; then
    echo "demo_seeds: seed $s done before ($work/report.json)"
    continue
  fi
  echo "demo_seeds: seed $s -> $work ($(date +%H:%M:%S))"
  # shellcheck disable=SC2086
  # cpu_profile.py times the run like /usr/bin/time -f '%e %P %M' and adds where the cores went, phase by phase.
  tools/bench/cpu_profile.py "$out/seed-$s.log" --time "$work.time" --table "$work.profile" -- \
    "$bin" demo --workdir "$work" --seed "$s" ${EXTRA:-} >/dev/null || {
    echo "demo_seeds: seed $s failed; see $out/seed-$s.log" >&2; exit 1; }
  mv "$work.time" "$work/time.txt"
  mv "$work.profile" "$work/profile.md"
done
/usr/bin/python3 tools/bench/demo_seeds_table.py "$out" "${seeds[@]}"
