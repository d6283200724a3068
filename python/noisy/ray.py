"""Ray Data over a noisy store: read a split as a `ray.data.Dataset`, and write a
teacher's predictions back as one generation, through Ray's public Datasource and
Datasink APIs (needs `ray[data]`, `lmdb` and numpy; Pillow for `pixels`).

    import ray, noisy.ray
    ds = ray.data.read_datasource(noisy.ray.StoreDatasource("data.noisy", split="unlabeled", pixels=32))
    preds = ds.map_batches(Teacher, concurrency=2, batch_size=64)     # adds a "probs" column
    sink = noisy.ray.LabelJobDatasink("data.noisy", job="gen2", teacher="resnet50 gen 1")
    preds.write_datasink(sink)
    print(sink.generation)

The datasink writes each write task's rows to a fragment (`STORE/jobs/.ray-JOB/`,
replaced whole when Ray retries the task). When every task is done, on the driver,
`on_write_complete` cuts the rows into the job's parts (part i of W: positions i, i+W,
... of the split in id order), submits each with `noisy labels import --job`, and
commits: the generation appears in one step, with the bytes one `noisy labels import`
of the same predictions would give. A run that fails leaves no generation; the job's
staged parts (`noisy labels jobs`) can be finished or abandoned.
"""
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
from ray.data import Datasink, Datasource, ReadTask
from ray.data.block import BlockMetadata

from .store import open_store

__all__ = ["StoreDatasource", "LabelJobDatasink"]


def _pixels(data, size):
    """Pillow's decode, the shorter side resized to `size` (bilinear), a centre crop of
    size x size, RGB: a teacher's input for models that take pixels. (Not noisy's own
    teacher view, which `noisy serve` streams.)"""
    import io
    from PIL import Image
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


class StoreDatasource(Datasource):
    """A store's split as rows: `id` (int64), `data` (the stored encoded bytes), `label`
    (class index, -1 where unknown) and, with `pixels=SIZE`, `pixels` (uint8 [SIZE,
    SIZE, 3], see `_pixels`). Rows come in id order, cut into one read task per chunk."""

    def __init__(self, path, split="unlabeled", pixels=None):
        self.path, self.split, self.size = os.path.abspath(path), split, pixels
        with open_store(self.path) as store:
            self.sample_ids = store.ids(split)

    def get_name(self):
        return f"noisy store {os.path.basename(self.path)} ({self.split})"

    def estimate_inmemory_data_size(self):
        return None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        chunks = [c for c in np.array_split(np.asarray(self.sample_ids, dtype=np.int64), max(1, min(parallelism, len(self.sample_ids))))
                  if len(c)]
        path, size = self.path, self.size

        def make(chunk):
            def read():
                with open_store(path) as store:
                    rows = list(store.get(chunk.tolist()))
                frame = {"id": np.asarray([r["id"] for r in rows], dtype=np.int64),
                         "data": [r["data"] for r in rows],
                         "label": np.asarray([-1 if r["class_index"] is None else r["class_index"] for r in rows], dtype=np.int64)}
                if size:
                    frame["pixels"] = list(np.stack([_pixels(r["data"], size) for r in rows]))
                yield pd.DataFrame(frame)
            return ReadTask(read, BlockMetadata(num_rows=len(chunk), size_bytes=None, exec_stats=None, input_files=None))

        return [make(c) for c in chunks]


def _noisy_binary(given):
    found = given or os.environ.get("NOISY_BIN") or shutil.which("noisy")
    if not found:
        raise RuntimeError("the `noisy` binary was not found: pass noisy=PATH or set NOISY_BIN")
    return found


class LabelJobDatasink(Datasink):
    """Writes rows with `id` and `probs` (C floats: probabilities, or scores with
    logits=True) as label job `job` over `split`, and commits it (see the module's doc).

    parts: how many parts the job is cut into (default: one per write task). After a
    successful write, `generation` is the new generation's number."""

    def __init__(self, store, job, teacher, split="unlabeled", parts=None, logits=False, precision="f16",
                 checkpoint=None, noisy=None):
        self.store, self.job, self.teacher, self.split = os.path.abspath(store), job, teacher, split
        self.parts, self.logits, self.precision, self.checkpoint = parts, logits, precision, checkpoint
        self.noisy = _noisy_binary(noisy)
        self.staging = os.path.join(self.store, "jobs", f".ray-{job}")
        self.generation = None

    def get_name(self):
        return f"noisy label job {self.job}"

    def on_write_start(self, schema=None):
        os.makedirs(self.staging, exist_ok=True)

    def write(self, blocks, ctx):
        ids, probs = [], []
        for block in blocks:
            frame = block.to_pandas() if hasattr(block, "to_pandas") else block
            ids.append(np.asarray(frame["id"], dtype=np.int64))
            probs.append(np.stack([np.asarray(p, dtype=np.float32) for p in frame["probs"]]) if len(frame)
                         else np.zeros((0, 0), np.float32))
        ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        probs = np.concatenate([p for p in probs if p.size]) if any(p.size for p in probs) else np.zeros((0, 0), np.float32)
        # Whole or absent: written aside, then renamed over any copy a failed attempt left.
        final = os.path.join(self.staging, f"task-{ctx.task_idx:06d}.npz")
        temp = final + f".{os.getpid()}.tmp.npz"
        np.savez(temp, ids=ids, probs=probs)
        os.replace(temp, final)
        return {"fragment": final, "rows": int(len(ids))}

    def _run(self, args):
        r = subprocess.run([self.noisy] + args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"noisy {' '.join(args[:2])}: {r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    def on_write_complete(self, write_result):
        returns = [r for r in write_result.write_returns if r]
        rows = {}
        for r in returns:
            f = np.load(r["fragment"])
            for i, p in zip(f["ids"].tolist(), f["probs"]):
                rows.setdefault(i, p)     # a row written twice (a retried task) counts once
        with open_store(self.store) as store:
            order = store.ids(self.split)
        missing = [i for i in order if i not in rows]
        if missing:
            raise RuntimeError(f"job {self.job}: {len(missing)} samples of the {self.split} split have no prediction, "
                               f"first {missing[:5]}")
        w = self.parts or max(1, len(returns))
        common = ["--store", self.store, "--job", self.job, "--parts", str(w), "--split", self.split,
                  "--teacher", self.teacher, "--precision", self.precision, "--worker", "ray datasink", "--no-commit", "--json"]
        if self.logits:
            common.append("--logits")
        if self.checkpoint:
            common += ["--checkpoint", self.checkpoint]
        for part in range(w):
            ids = np.asarray(order[part::w], dtype=np.int64)
            p_path, i_path = os.path.join(self.staging, f"part-{part}.npy"), os.path.join(self.staging, f"ids-{part}.npy")
            np.save(p_path, np.stack([rows[i] for i in ids.tolist()]).astype(np.float32))
            np.save(i_path, ids)
            self._run(["labels", "import"] + common + ["--part", str(part), "--predictions", p_path, "--ids", i_path])
        out = self._run(["labels", "commit", "--store", self.store, "--job", self.job])
        self.generation = int(out.split("generation ")[1].split(":")[0].split(";")[0])
        shutil.rmtree(self.staging, ignore_errors=True)

    def on_write_failed(self, error):
        shutil.rmtree(self.staging, ignore_errors=True)
