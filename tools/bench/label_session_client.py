#!/usr/bin/python3
"""One serve label session with the examples' small CNN teacher (the baseline of
tools/bench/label_engines.sh): every sample of SPLIT once, answered and committed.
Prints one JSON line: samples, wall seconds from connect to commit, the generation.
Usage: label_session_client.py ADDRESS SPLIT"""
import json, os, sys, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, "..", "..", "python"), os.path.join(here, "..", "..", "examples")]
import numpy as np
import torch
import noisy
from train_torch import small_cnn

address, split = sys.argv[1], sys.argv[2]
start = time.perf_counter()
session = noisy.connect(address).label_session(split, teacher="small_cnn (label_session_client.py)")
torch.manual_seed(0)
model = small_cnn(session.info["channels"], session.info["class_count"]).eval()
n = 0
with torch.no_grad():
    for ids, images in session:
        x = torch.from_numpy(images)
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float() / 255
        session.send(torch.softmax(model(x), 1).numpy().astype(np.float32))
        n += len(ids)
generation = session.commit()
print(json.dumps({"samples": n, "seconds": time.perf_counter() - start, "generation": generation}))
