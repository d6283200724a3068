#!/usr/bin/env bash
# The ceiling our trainer reaches on Fashion-MNIST (issue 18): the demo's student
# architecture (CNN w2, dropout 0.5) trained supervised on all 55,000 training images
# that are not in the demo's validation hold-out (500 per class, the same fixed seed),
# with the student's noise (pad-3 shifts, flips, Cutout 10). Validation every epoch;
# test once, after the last. Run once.
#
#   tools/bench/ceiling.sh [OUT_DIR] [EPOCHS]      # defaults: /tmp/noisy-ceiling 15
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/noisy-ceiling}
epochs=${2:-15}
tools/bootstrap.sh >/dev/null
swift build -c release --product noisy 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)/noisy
# --per-class 5500 with --validation-per-class 500: every training image is labeled or validation.
"$bin" demo --workdir "$out" --per-class 5500 --validation-per-class 500 --unlabeled 0 --ingest-only
/usr/bin/time -f '%e s, %P CPU, %M KB' "$bin" train --store "$out/store.noisy" --size 28 --crop pad --pad 3 --cutout 10 \
  --model cnn --width 2 --depth 0 --dropout 0.5 --epochs "$epochs" --batch-size 64 --seed 0 --out "$out/ceiling.ckpt" --restart
