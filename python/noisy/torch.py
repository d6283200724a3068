"""PyTorch dataset over `noisy serve` (torch is imported only here).

    from noisy.torch import NoisyIterableDataset
    ds = NoisyIterableDataset("unix:/tmp/noisy.sock", steps=1000)   # rank and world from torchrun
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0, pin_memory=True)
    for batch in loader:
        images, targets, weights = batch["images"], batch["targets"], batch["weights"]
        ...
    checkpoint["stream"] = ds.state_dict()       # and later: ds.load_state_dict(checkpoint["stream"])

Batches come ready-made from `noisy serve` (decode, views, RandAugment, mixing), so
the DataLoader needs no workers: batch_size=None passes them through.
"""
import os

import torch

from . import client as _client


def _rank_and_world(rank, world_size):
    """Explicit arguments win; then an initialised torch.distributed; then torchrun's
    RANK / WORLD_SIZE environment; else one process (None, None). An explicit world
    size that contradicts an initialised process group is an error, not a hang."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is not None and initialised and world_size != dist.get_world_size():
        raise ValueError(f"world_size={world_size} was given, but torch.distributed has {dist.get_world_size()} ranks; "
                         "leave it out to use the process group's")
    if rank is not None or world_size is not None:
        return rank, world_size
    if initialised:
        return dist.get_rank(), dist.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None, None


class NoisyIterableDataset(torch.utils.data.IterableDataset):
    """Yields one dict per batch: `images` (float32 NCHW; uint8 batches become floats
    in [0, 1], or stay uint8 NHWC with `uint8_to_float=False`, to convert on the GPU),
    `targets` [N, C], `weights` [N], `ids` [N] (int64 sample ids), `source` [N]
    (0 labeled, 1 pseudo-labeled) and `index` (the batch number).

    On a Unix socket the tensors view the server's shared memory (no copy); a batch
    stays valid until `hold` newer ones have been asked for (`pin_memory=True` or
    `.to(device)` copies it in time). `state_dict()` is the stream position after the
    last batch yielded, the torchdata StatefulDataLoader convention: a checkpoint
    that carries it resumes at exactly the next batch."""

    def __init__(self, address, rank=None, world_size=None, state=None, token=None, steps=None,
                 shared_memory=True, hold=2, uint8_to_float=True):
        self.address, self.token, self.steps = address, token, steps
        self.shared_memory, self.hold, self.uint8_to_float = shared_memory, hold, uint8_to_float
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        # A node's server over part of a shard set serves local ranks (torchrun's environment).
        self.local_rank = int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None
        self.local_world_size = int(os.environ["LOCAL_WORLD_SIZE"]) if "LOCAL_WORLD_SIZE" in os.environ else None
        self.state = state
        self.batches_per_epoch = None  # this rank's batches per epoch, once a stream has started

    def state_dict(self):
        return {"stream": self.state}

    def load_state_dict(self, state_dict):
        self.state = state_dict["stream"]

    def __iter__(self):
        with _client.connect(self.address, self.rank, self.world_size, self.state, self.token,
                             self.shared_memory, self.hold, self.local_rank, self.local_world_size) as c:
            self.batches_per_epoch = c.info.get("batches_per_epoch")
            for b in c.batches(self.steps):
                self.state = c.state()
                images = torch.from_numpy(b["images"])
                if images.dtype == torch.uint8 and self.uint8_to_float:   # NHWC bytes -> NCHW float in [0, 1]
                    images = images.permute(0, 3, 1, 2).float().div_(255)
                yield {"images": images, "targets": torch.from_numpy(b["targets"]),
                       "weights": torch.from_numpy(b["weights"]), "ids": torch.from_numpy(b["ids"].astype("int64")),
                       "source": torch.from_numpy(b["source"]), "index": b["index"]}
