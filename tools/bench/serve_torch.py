#!/usr/bin/python3
"""A torch training loop's host side over `noisy serve`: the README's
NoisyIterableDataset in a torch DataLoader (batch_size=None, no workers). Each step
takes the batch's tensors and reads one value of the images and the targets, which
is what the host does for a GPU loop before `.to(device)` (there is no GPU here to
copy into). Prints one JSON line: images/s over the timed batches, after warm-up
batches that bring every slot and buffer into use, and the client's CPU per batch.

Usage: serve_torch.py ADDRESS BATCHES [--socket-only] [--uint8-raw]
  --socket-only: batches through the socket even on a Unix socket (no shared memory)
  --uint8-raw:   uint8 batches stay NHWC bytes (convert on the GPU) instead of floats"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import torch
from noisy.torch import NoisyIterableDataset

p = argparse.ArgumentParser()
p.add_argument("address")
p.add_argument("batches", type=int)
p.add_argument("--warmup", type=int, default=9)
p.add_argument("--socket-only", action="store_true")
p.add_argument("--uint8-raw", action="store_true")
a = p.parse_args()
ds = NoisyIterableDataset(a.address, rank=0, world_size=1, steps=a.warmup + a.batches,
                          shared_memory=not a.socket_only, uint8_to_float=not a.uint8_raw)
loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
n, checksum = 0, 0.0
it = iter(loader)
for _ in range(a.warmup):
    next(it)
start, cpu = time.perf_counter(), time.process_time()
for batch in it:
    images, targets = batch["images"], batch["targets"]
    checksum += float(images.reshape(-1)[0]) + float(targets[0, 0])
    n += images.shape[0]
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"images_per_second": n / wall, "images": n, "client_cpu_ms_per_batch": 1000 * cpu / a.batches,
                  "dtype": str(images.dtype), "checksum": checksum}))
