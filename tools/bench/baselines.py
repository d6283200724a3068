#!/usr/bin/python3
"""scikit-learn baselines on the demo's own splits (issue 18).

    tools/bench/baselines.py FOLDERS [FOLDERS ...]

Each FOLDERS is a demo work folder's `folders/` (noisy demo --seed K --ingest-only
writes it; tools/bench/demo_seeds.sh leaves one per seed). The script reads which
training images are labeled, validation and unlabeled from the file names
(train-<index>.png) and their pixels and labels from Debian's Fashion-MNIST IDX files,
so every model sees exactly the demo's 1,000 labels, its validation hold-out and its
unlabeled images. Per model, every setting is chosen on validation; test is scored
once, with the chosen setting. Prints a markdown table: mean and sample standard
deviation over the folders given.

Models (pixels / 255 as features): logistic regression (C), an MLP with one hidden
layer of 256 (alpha), and SelfTrainingClassifier around the chosen logistic regression
on the labeled plus unlabeled images (threshold; 5 rounds). About 10 minutes per seed
on 2 cores.

Runs in .venv (tools/python-env.sh) with scikit-learn from PyPI, which it installs
there if missing (pinned below).
"""
import gzip
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
SKLEARN = "scikit-learn==1.9.1"

if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")):
    if not os.path.exists(VENV_PY):
        sys.exit("baselines: no .venv; run tools/python-env.sh first")
    if subprocess.run([VENV_PY, "-c", "import sklearn"], capture_output=True).returncode != 0:
        subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "--no-cache-dir", SKLEARN], check=True)
    os.execv(VENV_PY, [VENV_PY] + sys.argv)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.semi_supervised import SelfTrainingClassifier  # noqa: E402

IDX = "/usr/share/datasets/fashion-mnist"


def idx(name, offset):
    with gzip.open(os.path.join(IDX, name)) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def indices(folder):
    out = []
    for _, _, files in os.walk(folder):
        out += [int(f[len("train-"):-len(".png")]) for f in files if f.startswith("train-") and f.endswith(".png")]
    return np.array(sorted(out), dtype=np.int64)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    train_x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255
    train_y = idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    test_x = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255
    test_y = idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    results = {}  # model -> list of (setting, validation, test)
    for seed, folders in enumerate(sys.argv[1:]):
        lab, val, unl = (indices(os.path.join(folders, s)) for s in ("labeled", "validation", "unlabeled"))
        assert len(val) and len(lab), f"{folders}: no labeled or validation images"
        assert not (set(lab) & set(val)) and not (set(unl) & set(val)) and not (set(lab) & set(unl))
        xl, yl, xv, yv = train_x[lab], train_y[lab], train_x[val], train_y[val]
        print(f"baselines: {folders}: {len(lab)} labeled, {len(val)} validation, {len(unl)} unlabeled", file=sys.stderr)

        def choose(name, make, grid, fit):
            best = None
            for g in grid:
                t = time.time()
                m = fit(make(g))
                v = m.score(xv, yv)
                print(f"  {name} {g}: validation {100 * v:.2f}% ({time.time() - t:.0f} s)", file=sys.stderr)
                if best is None or v > best[1]:
                    best = (g, v, m)
            g, v, m = best
            results.setdefault(name, []).append((g, v, m.score(test_x, test_y)))
            return g

        fit_l = lambda m: m.fit(xl, yl)
        c = choose("logistic regression (C)", lambda c: LogisticRegression(C=c, max_iter=2000), [0.01, 0.1, 1, 10], fit_l)
        choose("MLP, 256 hidden (alpha)",
               lambda a: MLPClassifier((256,), alpha=a, max_iter=500, random_state=seed), [1e-4, 1e-2, 1.0], fit_l)
        xs = np.concatenate([xl, train_x[unl]])
        ys = np.concatenate([yl, np.full(len(unl), -1)])
        # Five self-training rounds, each base fit capped at 300 L-BFGS iterations: the
        # rounds refit on up to 55,000 images, and uncapped this takes over an hour on 2 cores.
        choose("SelfTrainingClassifier(logistic regression) (threshold)",
               lambda th: SelfTrainingClassifier(LogisticRegression(C=c, max_iter=300), threshold=th, max_iter=5),
               [0.9, 0.99], lambda m: m.fit(xs, ys))

    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; {len(sys.argv) - 1} seed(s)\n")
    print("| model | setting chosen on validation (per seed) | validation accuracy | test accuracy |")
    print("| --- | --- | --- | --- |")
    for name, rs in results.items():
        def ms(xs):
            xs = [100 * x for x in xs]
            return f"{statistics.mean(xs):.2f}" + (f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")
        print(f"| {name} | {', '.join(str(r[0]) for r in rs)} | {ms([r[1] for r in rs])} | {ms([r[2] for r in rs])} |")


if __name__ == "__main__":
    main()
