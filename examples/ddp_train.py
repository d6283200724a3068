"""Train with DistributedDataParallel on batches that one `noisy serve` per node streams
to every local rank (the tests run this file as it is, on CPU with gloo).

    noisy serve --store data.noisy --socket /tmp/noisy.sock --size 32 --layout float32
    .venv/bin/torchrun --nproc_per_node 2 examples/ddp_train.py unix:/tmp/noisy.sock --steps 100

Each rank's NoisyIterableDataset takes its rank and world size from torch.distributed,
so each rank gets its own disjoint share of every epoch, and every rank gets the same
number of batches. gloo on CPU; nccl when every rank has a GPU.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from noisy.torch import NoisyIterableDataset
from train_torch import small_cnn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("address", help="unix:/path/to.sock or host:port of this node's `noisy serve`")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    gpu = torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    dist.init_process_group("nccl" if gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if gpu else "cpu")
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)

    data = NoisyIterableDataset(args.address, steps=args.steps)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0, pin_memory=gpu)
    model = opt = None
    seen, losses, start = [], [], time.time()
    for step, batch in enumerate(loader):
        images, targets, weights = (batch[k].to(device, non_blocking=True) for k in ("images", "targets", "weights"))
        if model is None:  # the first batch tells the input channels and the class count
            model = DistributedDataParallel(small_cnn(images.shape[1], targets.shape[1]).to(device),
                                            device_ids=[device.index] if gpu else None)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        loss = (-(targets * F.log_softmax(model(images), 1)).sum(1) * weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(batch["ids"].tolist())
        losses.append(loss.item())
    elapsed = time.time() - start
    # Every rank reports what it trained on: rank 0 checks the shares are disjoint and equal.
    reports = [None] * world
    dist.all_gather_object(reports, {"rank": rank, "batches": len(losses), "ids": seen, "losses": losses,
                                     "images_per_second": sum(map(len, seen)) / elapsed})
    if rank == 0:
        for r in reports:
            first, last = sum(r["losses"][:10]) / 10, sum(r["losses"][-10:]) / 10
            print(f"rank {r['rank']} batches {r['batches']} loss {first:.4f} -> {last:.4f} "
                  f"images/s {r['images_per_second']:.0f}", flush=True)
        # No sample reaches two ranks within an epoch: here, the first epoch's batches.
        per = data.batches_per_epoch
        shares = [set(i for b in r["ids"][:per] for i in b) for r in reports]
        shared = sum(len(shares[a] & shares[b]) for a in range(world) for b in range(a + 1, world))
        print(f"world {world} batches per epoch {per} equal batches {len({r['batches'] for r in reports}) == 1} "
              f"samples shared in the first epoch {shared} device {device.type}", flush=True)
    # Leave together: on several nodes the rendezvous store lives in node 0's torchrun agent,
    # and a rank still tearing down when that agent exits can abort.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Everything is trained, reported and torn down. Leave without the interpreter's
    # teardown: gloo can abort there ("terminate called without an active exception",
    # a joinable C++ thread destroyed at exit; seen once in our CI on a loaded machine,
    # and in torch's own CI), which torchrun would report as a failed rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
