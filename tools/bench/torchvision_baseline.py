#!/usr/bin/python3
"""torchvision's fastest CPU train transform, one process, one thread.

torchvision.io.decode_jpeg (libjpeg-turbo, uint8 CHW tensor) -> transforms.v2
RandomResizedCrop(224, antialias) -> RandomHorizontalFlip -> [RandAugment(N, M)]
-> ToDtype(float32, scale) -> Normalize(ImageNet). This is the path torchvision's
own docs recommend for speed: tensors from the start, no PIL round trip. Reads the
JPEGs of a folder (the same bytes `noisy ingest` stores). Prints one JSON object
with images_per_second (median of --repeat runs).

Run it with the benchmark virtual environment (tools/python-env.sh):
  .venv/bin/python tools/bench/torchvision_baseline.py --folder DIR [--limit 1000]
                   [--size 224] [--randaugment 2,9] [--repeat 3]
"""
import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torchvision
    from torchvision.io import decode_jpeg
    from torchvision.transforms import v2
except ImportError as e:  # Debian's python3 has no torch: the benchmark environment does
    sys.exit(f"torchvision_baseline.py: {e}; run it with the benchmark environment: "
             f"tools/python-env.sh && .venv/bin/python tools/bench/torchvision_baseline.py ...")

from pillow_baseline import image_files  # the same files, in the same order


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--randaugment")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    blobs = [torch.frombuffer(bytearray(open(n, "rb").read()), dtype=torch.uint8)
             for n in image_files(a.folder, (".jpg", ".jpeg"))[: a.limit]]
    steps = [v2.RandomResizedCrop(a.size, antialias=True), v2.RandomHorizontalFlip()]
    if a.randaugment:
        n, m = (int(v) for v in a.randaugment.split(","))
        steps.append(v2.RandAugment(num_ops=n, magnitude=m))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    transform = v2.Compose(steps)
    rates = []
    for r in range(a.repeat):
        torch.manual_seed(a.seed + r)
        t = time.perf_counter()
        for b in blobs:
            out = transform(decode_jpeg(b, mode=torchvision.io.ImageReadMode.RGB))
        rates.append(len(blobs) / (time.perf_counter() - t))
    assert out.shape == (3, a.size, a.size) and out.dtype == torch.float32
    print(json.dumps({"images_per_second": statistics.median(rates), "runs": rates, "images": len(blobs),
                      "randaugment": a.randaugment, "size": a.size, "torch": torch.__version__,
                      "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
