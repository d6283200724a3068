"""PyTorch wrapper over noisy_client (torch is imported only here).

    from noisy_torch import NoisyIterableDataset
    ds = NoisyIterableDataset("unix:/tmp/noisy.sock", rank=rank, world_size=world, steps=1000)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0, pin_memory=True)
    for images, targets, weights in loader: ...

Batches come ready-made from `noisy serve` (decode, views, RandAugment, mixing),
so the DataLoader needs no workers: batch_size=None passes them through.
"""
import torch

import noisy_client


class NoisyIterableDataset(torch.utils.data.IterableDataset):
    def __init__(self, address, rank=None, world_size=None, state=None, token=None, steps=None):
        self.address, self.rank, self.world_size = address, rank, world_size
        self.state, self.token, self.steps = state, token, steps
        self.last_state = state

    def __iter__(self):
        with noisy_client.connect(self.address, self.rank, self.world_size, self.state, self.token) as c:
            for b in c.batches(self.steps):
                self.last_state = c.state()
                images = torch.from_numpy(b["images"].copy())
                if images.dtype == torch.uint8:           # NHWC bytes -> NCHW float in [0, 1]
                    images = images.permute(0, 3, 1, 2).float().div_(255)
                yield images, torch.from_numpy(b["targets"].copy()), torch.from_numpy(b["weights"].copy())
