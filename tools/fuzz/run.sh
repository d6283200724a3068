#!/usr/bin/env bash
# Fuzzes the JPEG/PNG/WebP decode paths with libFuzzer + AddressSanitizer for SECONDS
# (default 600), starting from seeds made by our own encoder and the kept corpus.
# New interesting inputs are merged into Tests/Fixtures/fuzz/decode (replayed by
# the tests). Usage: tools/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
work=$(mktemp -d /tmp/noisy-fuzz.XXXXXX)
corpus=Tests/Fixtures/fuzz/decode
mkdir -p "$corpus" "$work/new"
clang -g -O1 -fsanitize=fuzzer,address -ISources/CNoisyCodec/include $(pkg-config --cflags libjpeg libpng zlib libwebpdemux) \
  tools/fuzz/decode_fuzzer.c Sources/CNoisyCodec/{jpeg,png,webp,sniff}.c \
  $(pkg-config --libs libjpeg libpng zlib libwebpdemux) -lm -o "$work/decode_fuzzer" 2> >(grep -v "Cannot export local symbol" >&2)
# Seeds: small valid files of every flavour, written with Pillow.
/usr/bin/python3 - "$work/seeds" <<'PY'
import io, os, sys, numpy as np
from PIL import Image
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rng = np.random.RandomState(0)
img = Image.fromarray(rng.randint(0, 255, (23, 31, 3), dtype=np.uint8))
for i, (mode, fmt, kw) in enumerate([("RGB", "JPEG", {}), ("RGB", "JPEG", {"progressive": True}), ("L", "JPEG", {}),
                                      ("CMYK", "JPEG", {}), ("RGB", "PNG", {}), ("L", "PNG", {}), ("RGBA", "PNG", {}),
                                      ("P", "PNG", {}), ("1", "PNG", {}), ("RGB", "PNG", {"interlace": 1}),
                                      ("RGB", "WEBP", {"quality": 60}), ("RGBA", "WEBP", {"lossless": True}),
                                      ("RGBA", "WEBP", {"quality": 50})]):
    img.convert(mode).save(f"{d}/seed{i}.{fmt.lower()}", fmt, **kw)
img.save(f"{d}/seed-anim.webp", "WEBP", save_all=True, append_images=[img.transpose(Image.FLIP_TOP_BOTTOM)], duration=50)
# Large enough (128 pixels or more) for the restart-marker rewrite and its crops.
big = Image.fromarray(rng.randint(0, 255, (130, 161, 3), dtype=np.uint8))
big.save(f"{d}/seed-big.jpg", "JPEG", quality=30)
big.convert("L").save(f"{d}/seed-big-gray.jpg", "JPEG", quality=30, progressive=True)
PY
"$work/decode_fuzzer" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
  "$work/new" "$work/seeds" "$corpus" 2>&1 | tail -15
"$work/decode_fuzzer" -merge=1 "$corpus" "$work/new" 2>&1 | tail -2
echo "corpus: $(ls "$corpus" | wc -l) files in $corpus"
rm -rf "$work"
