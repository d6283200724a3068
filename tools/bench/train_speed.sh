#!/usr/bin/env bash
# Trainer throughput, this checkout against an older revision built beside it
# (BENCHMARKS.md, "Direct convolutions"): the demo's plain student (width 2, depth 0)
# and the deeper one (width 1, one residual block per stage, stochastic depth), each
# trained by `noisy train` on the demo's 1,000 labeled Fashion-MNIST images under
# the demo's student noise, two data-parallel shards. ROUNDS interleaved rounds; each
# run's figure is the median images/s of its epochs (validation passes excluded);
# the table gives the median over rounds, the ratio, and whether the two builds wrote
# byte-identical checkpoints (a speed-up that changes no arithmetic must say yes). Both
# binaries must produce the same checkpoint for the plain student (its convolutions run
# on OpenBLAS in every revision this compares).
#
#   tools/bench/train_speed.sh [BASE_REV] [ROUNDS] [EPOCHS]   # defaults: ac66a7f^ 3 12
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-ac66a7f^}
rounds=${2:-3}
epochs=${3:-12}
work=${WORK:-/tmp/noisy-train-speed}
mkdir -p "$work"
tools/bootstrap.sh >/dev/null
swift build -c release --product noisy 2>&1 | tail -1
new=$(swift build -c release --show-bin-path)/noisy
rev=$(git rev-parse --short "$base")
old="$work/noisy-$rev"
if [[ ! -x "$old" ]]; then
  echo "train_speed: building $rev in $work/src ..."
  rm -rf "$work/src"
  git worktree add -f --detach "$work/src" "$rev" >/dev/null
  (cd "$work/src" && swift build -c release --product noisy 2>&1 | tail -1)
  cp "$(cd "$work/src" && swift build -c release --show-bin-path)/noisy" "$old"
  git worktree remove --force "$work/src"
fi
[[ -d "$work/demo/store.noisy" ]] || "$new" demo --workdir "$work/demo" --ingest-only >/dev/null
store="$work/demo/store.noisy"
noise=(--size 28 --crop pad --pad 3 --cutout 10 --randaugment 2,5 --dropout 0.5 --model cnn --seed 1 --epochs "$epochs")
archs=("--width 2 --depth 0" "--width 1 --depth 1 --stochastic-depth 0.8")
# Batch normalisation (--batch-norm) arrived after ac66a7f; older bases skip that row.
# (The help is read whole first: grep -q quits at the match, and under pipefail the writer's
# SIGPIPE would read as no match.)
old_help=$("$old" train --help 2>/dev/null || true)
if grep -q -- --batch-norm <<<"$old_help"; then
  archs+=("--width 1 --depth 1 --stochastic-depth 0.8 --batch-norm")
fi
results="$work/results.txt"
: > "$results"
for ((r = 1; r <= rounds; r++)); do
  for a in "${!archs[@]}"; do
    for which in old new; do
      bin=$old; [[ $which == new ]] && bin=$new
      ckpt="$work/$which-$a.ckpt"
      rm -f "$ckpt"
      # shellcheck disable=SC2086
      rate=$("$bin" train --store "$store" "${noise[@]}" ${archs[$a]} --out "$ckpt" 2>&1 |
        grep -o '[0-9]* images/s' | awk '{print $1}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
      echo "$a $which $r $rate" >> "$results"
      echo "train_speed: round $r, ${archs[$a]}, $which: $rate images/s"
    done
  done
done
if ! cmp -s "$work/old-0.ckpt" "$work/new-0.ckpt"; then
  echo "train_speed: the plain student's checkpoints differ between $rev and this checkout" >&2
  exit 1
fi
same=()
for a in "${!archs[@]}"; do
  if cmp -s "$work/old-$a.ckpt" "$work/new-$a.ckpt"; then same+=(yes); else same+=(no); fi
done
/usr/bin/python3 - "$results" "$rev" "${#archs[@]}" "${archs[@]}" "${same[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rev, k = sys.argv[2], int(sys.argv[3])
archs, same = sys.argv[4:4 + k], sys.argv[4 + k:]
print(f"| student | {rev} (images/s) | this checkout (images/s) | ratio | same checkpoint |")
print("| --- | --- | --- | --- | --- |")
for a, name in enumerate(archs):
    runs = {w: [int(r[3]) for r in rows if r[0] == str(a) and r[1] == w] for w in ("old", "new")}
    o, n = statistics.median(runs["old"]), statistics.median(runs["new"])
    print(f"| `{name}` | {o:,.0f} ({', '.join(map(str, runs['old']))}) | {n:,.0f} ({', '.join(map(str, runs['new']))}) | **{n / o:.2f}x** | {same[a]} |")
EOF
