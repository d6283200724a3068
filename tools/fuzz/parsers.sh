#!/usr/bin/env bash
# Fuzzes the prediction parsers of `noisy labels import` (NPY header and data,
# JSON Lines) with libFuzzer + AddressSanitizer: SECONDS (default 600) for each
# parser, from seeds written with numpy and the kept corpus. New interesting
# inputs are merged into Tests/Fixtures/fuzz/{npy,jsonl}, which the tests replay
# with the plain `noisy-fuzz` build. Usage: tools/fuzz/parsers.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
work=$(mktemp -d /tmp/noisy-fuzz-parsers.XXXXXX)
swift build -c release --product noisy-fuzz --build-path .build/fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
  -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld 2>&1 | tail -1
bin=.build/fuzz/release/noisy-fuzz
# Seeds: the first byte picks the parser (even: NPY, odd: JSON Lines).
/usr/bin/python3 - "$work/seeds" <<'PY'
import io, os, sys, numpy as np
d = sys.argv[1]; os.makedirs(d + "/npy"); os.makedirs(d + "/jsonl")
def npy(name, a):
    b = io.BytesIO(); np.save(b, a); open(f"{d}/npy/{name}", "wb").write(b"\x00" + b.getvalue())
npy("probs", np.full((3, 4), 0.25, np.float32))
npy("ids", np.arange(5, dtype=np.int64))
npy("uids", np.arange(5, dtype=np.uint64))
npy("half", np.full((2, 3), 0.5, np.float16))
npy("empty", np.zeros((0, 3), np.float32))
b = io.BytesIO(); np.lib.format.write_array(b, np.ones((2, 2), np.float32), version=(2, 0))
open(f"{d}/npy/v2", "wb").write(b"\x00" + b.getvalue())
lines = ['{"id": 0, "probs": [0.5, 0.5]}', '{"source": "a/b.png", "probs": [1, 0]}', '{"id": 3, "logits": [2.0, -1e3]}', '']
open(f"{d}/jsonl/two", "wb").write(b"\x03" + "\n".join(lines).encode())
open(f"{d}/jsonl/bad", "wb").write(b"\x03" + b'{"id": -1, "probs": [true, null]}\n[1,2]\n')
PY
for parser in npy jsonl; do
  corpus=Tests/Fixtures/fuzz/$parser
  mkdir -p "$corpus" "$work/new-$parser"
  echo "== $parser: $seconds s"
  NOISY_FUZZ_ONLY=$parser "$bin" -max_total_time="$seconds" -timeout=10 -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 \
    "$work/new-$parser" "$work/seeds/$parser" "$corpus" 2>&1 | grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|Done" || true
  NOISY_FUZZ_ONLY=$parser "$bin" -merge=1 "$corpus" "$work/new-$parser" "$work/seeds/$parser" 2>&1 | tail -1
  echo "corpus: $(ls "$corpus" | wc -l) files in $corpus"
done
rm -rf "$work"
