#!/usr/bin/python3
"""Images per second of each corruption of the imagecorruptions package (1.1.2, in
.venv-ic/) on one thread, on the image files of a folder: the baseline of
tools/bench/corruptions.sh. Prints one JSON object shaped like `noisy bench corruptions --json`.
Run by Debian's Python, it re-runs itself with .venv-ic/bin/python (tools/python-env.sh builds it).

    tools/bench/corruptions_reference.py DIR --severity 3 --repeat 3 --corruptions fog,contrast
"""
import argparse, json, os, sys, time, warnings
warnings.simplefilter("ignore")
try:
    import imagecorruptions  # noqa: F401
except ImportError:
    venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".venv-ic", "bin", "python")
    if "--help" not in sys.argv and os.path.exists(venv):
        os.execv(venv, [venv] + sys.argv)
    if "--help" not in sys.argv and "-h" not in sys.argv:
        sys.exit("corruptions_reference.py: needs imagecorruptions: run tools/python-env.sh to build .venv-ic/")
os.environ.setdefault("OMP_NUM_THREADS", "1")
p = argparse.ArgumentParser(description="imagecorruptions' throughput on one thread (the baseline of tools/bench/corruptions.sh)")
p.add_argument("dir"); p.add_argument("--severity", type=int, default=3); p.add_argument("--repeat", type=int, default=3)
p.add_argument("--corruptions", default="", help="comma-separated names")
a = p.parse_args()
import numpy as np
import skimage.filters
import imagecorruptions.corruptions as icc
from imagecorruptions import corrupt
from PIL import Image

# scikit-image 0.20 renamed gaussian's multichannel=True to channel_axis=-1 (see CorruptionParityTests).
_gaussian = skimage.filters.gaussian
def gaussian(image, *args, multichannel=None, **kw):
    if multichannel:
        kw["channel_axis"] = -1
    return _gaussian(image, *args, **kw)
icc.gaussian = gaussian
import cv2
cv2.setNumThreads(1)
names = sorted(f for f in os.listdir(a.dir) if f.lower().endswith((".png", ".jpg", ".jpeg")))
images = [np.array(Image.open(os.path.join(a.dir, f)).convert("RGB")) for f in names]
rates = {}
for c in a.corruptions.split(","):
    runs = []
    for r in range(a.repeat):
        np.random.seed(r)
        t = time.perf_counter()
        for img in images:
            corrupt(img, severity=a.severity, corruption_name=c)
        runs.append(len(images) / (time.perf_counter() - t))
    rates[c] = float(np.median(runs))
print(json.dumps({"images": len(images), "width": images[0].shape[1], "height": images[0].shape[0],
                  "severity": a.severity, "images_per_second": rates}))
