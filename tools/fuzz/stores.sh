#!/usr/bin/env bash
# Runs the store corruption suite (Tests/NoisyCLITests/CorruptionSuiteTests) for
# SECONDS (default 600) outside CI: fresh seeds, 52 damaged copies per seed (10
# each with 1-12 bit flips in meta, branch, leaf and overflow pages, 3 truncations,
# 3 zeroed pages), every copy run through info, verify, labels list, labels export
# and salvage and judged by python-lmdb. Prints the counts recorded in FUZZING.md.
# Usage: tools/fuzz/stores.sh [SECONDS] [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
export NOISY_CORRUPTION_SECONDS=${1:-600}
export NOISY_CORRUPTION_SEED=${2:-1}
swift build --build-tests 2>&1 | grep -E "error|warning: " || true
swift test --skip-build --filter 'CorruptionSuiteTests/testEveryDamagedCopy' 2>&1 | grep -E "corruption fuzz|failures|error|passed|failed|^[0-9]+-(meta|branch|leaf|overflow|cut|zero)" | grep -v "^Test Suite"
