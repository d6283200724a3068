#!/usr/bin/python3
"""Consumes batches from `noisy serve` and prints one JSON line: batches/s, MB/s,
and the client's own CPU time per batch (what the Python side costs).
Usage: serve_client.py ADDRESS BATCHES [--socket-only]
  --socket-only: batches through the socket even on a Unix socket (no shared memory)"""
import json, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import noisy.client as noisy_client

address, n = sys.argv[1], int(sys.argv[2])
c = noisy_client.connect(address, rank=0, world_size=1, shared_memory="--socket-only" not in sys.argv[3:])
it = c.batches()
next(it)                                   # warm-up batch
t, cpu, nbytes = time.perf_counter(), time.process_time(), 0
for _ in range(n):
    b = next(it)
    nbytes += sum(a.nbytes for k, a in b.items() if k != "index")
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
c.close()
print(json.dumps({"shared_memory": c.shared_memory, "batches_per_second": n / wall, "megabytes_per_second": nbytes / wall / 1e6,
                  "client_cpu_ms_per_batch": 1000 * cpu / n}))
