#!/usr/bin/python3
"""How right a demo's pseudo labels are: each generation's top class against the true
Fashion-MNIST label of the unlabeled image (the demo names every file after its index in
the IDX training set, `train-<i>.png`), over every unlabeled image and over the selection
the student trained on (with its multiplicity), per class, mean ± std over seeds.

    tools/bench/pseudo_labels.py [--generation K] [--selection run] DEMO_WORKDIR...

Each DEMO_WORKDIR is a `noisy demo --workdir` folder (e.g. /tmp/noisy-demo-seeds/seed-1);
the script exports the generation with the release build of `noisy` into a temporary
folder and reads the true labels with numpy from /usr/share/datasets/fashion-mnist.
"""
import argparse
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDX = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
NAMES = ["tshirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def true_labels():
    with gzip.open(IDX) as f:
        data = f.read()
    if int.from_bytes(data[:4], "big") != 2049:
        sys.exit(f"{IDX}: not an IDX label file")
    return np.frombuffer(data[8:], dtype=np.uint8)


def export(noisy, store, generation, selection, out):
    cmd = [noisy, "labels", "export", "--store", store, "--generation", str(generation), "--out", out]
    if selection:
        cmd += ["--selection", selection]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{store}: export failed: {r.stderr.strip()}")
    probs = np.load(f"{out}/probs.npy").astype(np.float32)
    mult = np.load(f"{out}/multiplicity.npy")
    with open(f"{out}/sources.txt") as f:
        sources = [line.rstrip("\n") for line in f]
    index = np.array([int(re.search(r"train-(\d+)\.png$", s).group(1)) for s in sources])
    return probs, mult, index


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generation", type=int, default=1)
    p.add_argument("--selection", default="run")
    p.add_argument("workdirs", nargs="+")
    a = p.parse_args()
    bin_path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    noisy = os.path.join(bin_path, "noisy")
    truth = true_labels()
    rows = {"all": [], "kept": []}
    per_class = []
    for w in a.workdirs:
        store = os.path.join(w, "store.noisy")
        with tempfile.TemporaryDirectory() as t:
            # The store's class order is alphabetical by folder name: map it to IDX order.
            classes = sorted(NAMES)
            to_idx = np.array([NAMES.index(c) for c in classes])
            probs, _, index = export(noisy, store, a.generation, None, t + "/all")
            rows["all"].append(100 * float(np.mean(to_idx[probs.argmax(1)] == truth[index])))
            probs, mult, index = export(noisy, store, a.generation, a.selection, t + "/kept")
            right = to_idx[probs.argmax(1)] == truth[index]
            rows["kept"].append(100 * float(np.sum(right * mult) / np.sum(mult)))
            per_class.append([100 * float(np.sum((right * mult)[truth[index] == k]) / max(1, np.sum(mult[truth[index] == k])))
                              for k in range(10)])

    def ms(v):
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    print(f"generation {a.generation}, {len(a.workdirs)} run(s): top class right (%)\n")
    print("| pseudo labels | right (%) |")
    print("| --- | --- |")
    print(f"| every unlabeled image | {ms(rows['all'])} |")
    print(f"| selection '{a.selection}' (what the student trains on, with multiplicity) | {ms(rows['kept'])} |")
    print("\n| true class | kept and right (%) |")
    print("| --- | --- |")
    for k in range(10):
        print(f"| {NAMES[k]} | {ms([r[k] for r in per_class])} |")


if __name__ == "__main__":
    main()
