#!/usr/bin/env bash
# The first teacher's training on validation (issue 18): epochs x RandAugment, over seeds.
# The first teacher depends only on the seed and the teacher's options, so each run is a
# demo cut short after it (one iteration, one student epoch, no robustness pass); the
# teacher it trains is the one a full demo with the same options trains. Prints a markdown
# table: validation (what the choice is made on) and test (scored once), mean ± sample
# standard deviation over the seeds.
#
#   tools/bench/teacher_epochs.sh [OUT_DIR] [SEEDS...]    # defaults: /tmp/noisy-teacher-epochs 1 2 3
#
# About 2 minutes per run on 2 cores (18 runs for 3 seeds). A run whose report.json
# exists is not run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/noisy-teacher-epochs}
shift || true
seeds=("$@")
((${#seeds[@]} > 0)) || seeds=(1 2 3)
mkdir -p "$out"
tools/bootstrap.sh >/dev/null
swift build -c release --product noisy 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)/noisy
variants=("60 none" "60 2,5" "120 none" "120 2,5" "240 none" "240 2,5")
for v in "${variants[@]}"; do
  read -r epochs ra <<<"$v"
  for s in "${seeds[@]}"; do
    work="$out/e$epochs-ra${ra/,/-}-seed-$s"
    [[ -f "$work/report.json" ]] && continue
    echo "teacher_epochs: $epochs epochs, RandAugment $ra, seed $s ($(date +%H:%M:%S))"
    "$bin" demo --workdir "$work" --seed "$s" --iterations 1 --student-epochs 1 --robustness-samples 0 \
      --teacher-epochs "$epochs" --teacher-randaugment "$ra" >"$work.log" 2>&1 || {
      echo "teacher_epochs: failed; see $work.log" >&2; exit 1; }
  done
done
/usr/bin/python3 - "$out" "${seeds[@]}" <<'EOF'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
print("| first teacher | validation (%) | per seed | test (%) |")
print("| --- | --- | --- | --- |")
for v in ["60 none", "60 2,5", "120 none", "120 2,5", "240 none", "240 2,5"]:
    epochs, ra = v.split()
    val, test = [], []
    for s in seeds:
        with open(f"{out}/e{epochs}-ra{ra.replace(',', '-')}-seed-{s}/report.json") as f:
            r = json.load(f)
        val.append(100 * r["first_teacher_validation_accuracy"])
        test.append(100 * r["first_teacher_accuracy"])
    sd = lambda x: f" ± {statistics.stdev(x):.2f}" if len(x) > 1 else ""
    name = f"{epochs} epochs" + ("" if ra == "none" else f", RandAugment({ra.replace(',', ', ')})")
    print(f"| {name} | {statistics.mean(val):.2f}{sd(val)} | {', '.join(f'{x:.2f}' for x in val)} | {statistics.mean(test):.2f}{sd(test)} |")
EOF
