"""Label a split with Ray Data: read the store as a Dataset, run a stateful PyTorch teacher
with map_batches on a pool of actors, and write the predictions back as one generation
(the tests run this file as it is, with a local Ray on 2 CPUs).

    .venv/bin/python examples/label_ray.py data.noisy --job gen1 --cpus 2

Ray schedules the work and retries failed tasks; noisy reads the store
(noisy.ray.StoreDatasource) and turns the predictions into a generation in one step
(noisy.ray.LabelJobDatasink, which calls the `noisy` binary: put it on PATH or set
NOISY_BIN). On a cluster, pass --address and put the store where every node reads it.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = os.path.normpath(os.path.join(HERE, "..", "python"))   # or: pip install "./python[ray]"
sys.path.insert(0, PYTHON)
import numpy as np
import ray
import torch
import noisy.ray
from train_torch import small_cnn


class Teacher:
    """One per actor: the model is built (or loaded) once, then labels batch after batch."""

    def __init__(self, classes, checkpoint=None):
        torch.manual_seed(0)  # the same teacher in every actor
        self.model = small_cnn(3, classes)
        if checkpoint:
            self.model.load_state_dict(torch.load(checkpoint)["model"])
        self.model.eval()

    def __call__(self, batch):
        x = torch.from_numpy(np.stack(batch["pixels"])).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            probs = torch.softmax(self.model(x), 1).numpy().astype(np.float32)
        return {"id": batch["id"], "probs": list(probs)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("--job", required=True, help="the label job's name")
    p.add_argument("--split", default="unlabeled")
    p.add_argument("--size", type=int, default=16, help="the teacher's input side in pixels")
    p.add_argument("--checkpoint", help="weights saved by examples/train_torch.py (default: a seeded untrained CNN)")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--address", help="a running Ray cluster (default: a local one)")
    p.add_argument("--save", help="also write every prediction here (predictions.npz: ids, probs)")
    args = p.parse_args()
    # Ray's workers import `noisy` and this folder's train_torch too.
    path = os.pathsep.join([PYTHON, HERE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(address=args.address, num_cpus=None if args.address else args.cpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    classes = len(noisy.open_store(args.store).classes())

    ds = ray.data.read_datasource(noisy.ray.StoreDatasource(args.store, split=args.split, pixels=args.size))
    # Half a CPU per actor: the reading tasks keep the other half of the CPUs.
    preds = ds.map_batches(Teacher, fn_constructor_args=(classes, args.checkpoint), batch_size=16, num_cpus=0.5,
                           compute=ray.data.ActorPoolStrategy(size=args.cpus)).materialize()
    if args.save:
        frame = preds.to_pandas()
        np.savez(os.path.join(args.save, "predictions.npz"), ids=frame["id"].to_numpy(np.int64),
                 probs=np.stack(frame["probs"].to_list()).astype(np.float32))
    sink = noisy.ray.LabelJobDatasink(args.store, job=args.job, teacher="small_cnn (examples/label_ray.py)", split=args.split)
    preds.write_datasink(sink)
    print(f"job {args.job}: generation {sink.generation}, {preds.count()} samples", flush=True)


if __name__ == "__main__":
    main()
