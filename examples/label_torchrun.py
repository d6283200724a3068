"""Label a split with a PyTorch teacher spread over torchrun ranks: each rank labels one
part of one label job, and the generation appears when the last part is in (the tests
run this file as it is, on CPU).

    noisy serve --store data.noisy --socket /tmp/noisy.sock --size 32 --layout float32
    .venv/bin/torchrun --nproc_per_node 2 examples/label_torchrun.py unix:/tmp/noisy.sock --job gen1

Rank r of W gets part r of W (the samples at positions r, r+W, ... of the split in id
order) through the clean teacher view, answers each batch with probabilities, and
submits. No process group is needed: the ranks share nothing but the job's name, so a
rank that fails is re-run alone (same --job, same RANK and WORLD_SIZE).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np
import torch
import noisy
from train_torch import small_cnn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("address", help="unix:/path/to.sock or host:port of this node's `noisy serve`")
    p.add_argument("--job", required=True, help="the label job's name (the same on every rank)")
    p.add_argument("--checkpoint", help="weights saved by examples/train_torch.py (default: a seeded untrained CNN)")
    p.add_argument("--split", default="unlabeled")
    p.add_argument("--save", help="also write this rank's ids and probabilities here (rank-R.npz)")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))

    session = noisy.connect(args.address).label_session(args.split, teacher="small_cnn (examples/label_torchrun.py)",
                                                        job=args.job)   # part and parts from RANK / WORLD_SIZE
    info = session.info
    torch.manual_seed(0)  # the same teacher on every rank
    model = small_cnn(info["channels"], info["class_count"])
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint)["model"])
    model = model.to(device).eval()
    kept_ids, kept_probs = [], []
    with torch.no_grad():
        for ids, images in session:                   # the clean teacher view, every sample of the part once
            x = torch.from_numpy(images).to(device)
            if x.dtype == torch.uint8:
                x = x.permute(0, 3, 1, 2).float() / 255
            probs = torch.softmax(model(x), 1).cpu().numpy().astype(np.float32)
            session.send(probs)
            kept_ids.append(ids.copy()); kept_probs.append(probs)
    generation = session.commit()
    r = session.receipt
    if args.save:
        np.savez(os.path.join(args.save, f"rank-{rank}.npz"), ids=np.concatenate(kept_ids), probs=np.concatenate(kept_probs))
    made = " (made by this rank's commit)" if r.get("created") else ""
    print(f"rank {rank} of {world}: part {r['part']} of {r['parts']}, {r['samples']} samples, {r['outcome']}, "
          + (f"generation {generation}{made}" if generation is not None else f"{len(r['missing'])} part(s) missing"), flush=True)


if __name__ == "__main__":
    main()
