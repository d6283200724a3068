#!/usr/bin/env bash
# Corruption throughput, noisy against the imagecorruptions package (1.1.2, .venv-ic/),
# side by side in one run, one thread each, on the same images: photographs at 224x224
# (scikit-image's bundled photographs, resized and centre-cropped by Pillow) and
# Fashion-MNIST-sized images (the same photographs at 32x32, the package's minimum, and
# at 28x28 for noisy alone: the package refuses images under 32 px). Severity 3.
# Prints a markdown table of medians and ratios.
#
# Usage: tools/bench/corruptions.sh [WORKDIR] [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/noisy-bench-corruptions}
repeat=${2:-3}
tools/python-env.sh >/dev/null
ref=.venv-ic/bin/python
swift build -c release --product noisy >/dev/null
noisy=$(swift build -c release --show-bin-path)/noisy
mkdir -p "$work"
$ref - "$work" <<'PY'
import os, sys, skimage
from PIL import Image
work = sys.argv[1]
data = os.path.join(os.path.dirname(skimage.__file__), "data")
photos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "color.png"]
for size in (224, 32, 28):
    d = f"{work}/{size}"; os.makedirs(d, exist_ok=True)
    for name in photos:
        im = Image.open(os.path.join(data, name)).convert("RGB")
        s = size / min(im.size)
        im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))), Image.BICUBIC)
        l, t = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        im.crop((l, t, l + size, t + size)).save(f"{d}/{os.path.splitext(name)[0]}.png")
PY
echo "corruption throughput, images/s on one thread (severity 3, $(ls "$work/224" | wc -l) photographs, median of $repeat)"
echo
echo "| corruption | noisy 224 | imagecorruptions 224 | ratio | noisy 32 | imagecorruptions 32 | ratio | noisy 28 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for size in 224 32 28; do
  "$noisy" bench corruptions --images "$work/$size" --severity 3 --repeat "$repeat" --json > "$work/noisy-$size.json"
  # The corruptions noisy has (frost and spatter are left out), in its order.
  names=$(/usr/bin/python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["corruptions"]))' "$work/noisy-$size.json")
  [ "$size" = 28 ] || tools/bench/corruptions_reference.py "$work/$size" --severity 3 --repeat "$repeat" --corruptions "$names" > "$work/ref-$size.json"
done
/usr/bin/python3 - "$work" "$names" <<'PY'
import json, sys
work, names = sys.argv[1], sys.argv[2].split(",")
load = lambda f: json.load(open(f"{work}/{f}"))["images_per_second"]
n224, r224, n32, r32, n28 = load("noisy-224.json"), load("ref-224.json"), load("noisy-32.json"), load("ref-32.json"), load("noisy-28.json")
for c in names:
    print(f"| {c} | {n224[c]:.1f} | {r224[c]:.1f} | {n224[c] / r224[c]:.2f}x | {n32[c]:.0f} | {r32[c]:.0f} | {n32[c] / r32[c]:.2f}x | {n28[c]:.0f} |")
PY
