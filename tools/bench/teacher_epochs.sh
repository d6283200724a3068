#!/usr/bin/env bash
# The first teacher's training on validation (issue 18): epochs x RandAugment, over seeds.
# The first teacher depends only on the seed and the teacher's options, so each variant is
# tools/bench/demo_seeds.sh with the demo cut short after the teacher (one iteration, one
# student epoch, no robustness pass); the teacher it trains is the one a full demo with the
# same options trains. Prints a markdown table: validation (what the choice is made on) and
# test (scored once), mean ± sample standard deviation over the seeds.
#
#   tools/bench/teacher_epochs.sh [OUT_DIR] [SEEDS...]    # defaults: /tmp/noisy-teacher-epochs 1 2 3
#
# About 2 minutes per run on 2 cores (18 runs for 3 seeds); OUT_DIR/e<E>-ra<N-M|none>/seed-K
# is each run's work folder, and a finished one is not run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/noisy-teacher-epochs}
shift || true
seeds=("$@")
((${#seeds[@]} > 0)) || seeds=(1 2 3)
variants=("60 none" "60 2,5" "120 none" "120 2,5" "240 none" "240 2,5")
for v in "${variants[@]}"; do
  read -r epochs ra <<<"$v"
  echo "teacher_epochs: $epochs epochs, RandAugment $ra ($(date +%H:%M:%S))"
  EXTRA="--iterations 1 --student-epochs 1 --robustness-samples 0 --teacher-epochs $epochs --teacher-randaugment $ra" \
    tools/bench/demo_seeds.sh "$out/e$epochs-ra${ra/,/-}" "${seeds[@]}" >/dev/null
done
/usr/bin/python3 - "$out" "${#seeds[@]}" "${seeds[@]}" "${variants[@]}" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
seeds, variants = sys.argv[3:3 + n], sys.argv[3 + n:]
print("| first teacher | validation (%) | per seed | test (%) |")
print("| --- | --- | --- | --- |")
for v in variants:
    epochs, ra = v.split()
    val, test = [], []
    for s in seeds:
        with open(f"{out}/e{epochs}-ra{ra.replace(',', '-')}/seed-{s}/report.json") as f:
            r = json.load(f)
        val.append(100 * r["first_teacher_validation_accuracy"])
        test.append(100 * r["first_teacher_accuracy"])
    sd = lambda x: f" ± {statistics.stdev(x):.2f}" if len(x) > 1 else ""
    name = f"{epochs} epochs" + ("" if ra == "none" else f", RandAugment({ra.replace(',', ', ')})")
    print(f"| {name} | {statistics.mean(val):.2f}{sd(val)} | {', '.join(f'{x:.2f}' for x in val)} | {statistics.mean(test):.2f}{sd(test)} |")
PY
