"""Train a PyTorch model on batches that `noisy serve` streams (the README's example;
the tests run this file as it is).

    noisy serve --store data.noisy --socket /tmp/noisy.sock --size 32 --layout float32
    .venv/bin/python examples/train_torch.py unix:/tmp/noisy.sock --steps 200
    .venv/bin/python examples/train_torch.py unix:/tmp/noisy.sock --steps 100 --resume

Each batch arrives decoded, augmented and mixed (labeled and pseudo-labeled samples
at the server's ratio), with soft targets and per-sample weights. The checkpoint
keeps the stream's state beside the weights, so a resumed run continues with
exactly the batches an uninterrupted one would have seen.
"""
import argparse
import os
import sys

# The `noisy` package (python/ in this repository; or `pip install ./python`).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch
import torch.nn as nn
import torch.nn.functional as F
from noisy.torch import NoisyIterableDataset


def small_cnn(channels, classes):
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, classes))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("address", help="unix:/path/to.sock or tcp:host:port of a running `noisy serve`")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--checkpoint", default="ckpt.pt")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint, weights and stream")
    args = p.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    saved = torch.load(args.checkpoint) if args.resume else None
    data = NoisyIterableDataset(args.address, steps=args.steps)
    if saved:
        data.load_state_dict(saved["stream"])
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0, pin_memory=device == "cuda")
    model = opt = None
    for step, batch in enumerate(loader):
        images, targets, weights = batch["images"], batch["targets"], batch["weights"]
        if model is None:  # the first batch tells the input channels and the class count
            model = small_cnn(images.shape[1], targets.shape[1]).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
            if saved:
                model.load_state_dict(saved["model"])
                opt.load_state_dict(saved["optimizer"])
        images, targets, weights = (t.to(device, non_blocking=True) for t in (images, targets, weights))
        logits = model(images)
        # Soft-target cross-entropy, weighted per sample: labeled and pseudo-labeled alike.
        loss = (-(targets * F.log_softmax(logits, 1)).sum(1) * weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.4f} images {tuple(images.shape)} {images.dtype}", flush=True)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "stream": data.state_dict()}, args.checkpoint)
    print(f"saved {args.checkpoint} at batch {data.state_dict()['stream']['batches']}", flush=True)


if __name__ == "__main__":
    main()
