#!/usr/bin/python3
"""Serve load benchmark: one `noisy serve` and CLIENTS concurrent Python clients
(ranks 0..CLIENTS-1 of one world, as a DDP job would connect) pulling batches for
SECONDS. Samples the server's RSS every second and reports, per client, batches/s
and images/s, and for the server the RSS at start (after the first batches), at
the end, its peak and its slope; any client error fails the run.

Usage: serve_load.py --store S [--clients 8] [--seconds 300] [--size 64]
                     [--batch-size 64] [--threads 2] [--noisy PATH]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

CLIENT = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import noisy.client as noisy_client
address, rank, world, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
c = noisy_client.connect(address, rank=rank, world_size=world)
it = c.batches()
next(it)
n, images, t = 0, 0, time.perf_counter()
while time.perf_counter() - t < seconds:
    b = next(it)
    assert b["images"].shape[0] > 0 and b["targets"].shape[0] == b["images"].shape[0]
    n += 1; images += b["images"].shape[0]
wall = time.perf_counter() - t
c.close()
print(json.dumps({"rank": rank, "batches": n, "batches_per_second": n / wall, "images_per_second": images / wall}))
"""


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noisy", default=None)
    a = ap.parse_args()
    noisy = a.noisy or subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip() + "/noisy"
    sock = os.path.join(tempfile.mkdtemp(prefix="noisy-load-"), "s.sock")
    log = open(sock + ".log", "w+")
    server = subprocess.Popen([noisy, "serve", "--store", a.store, "--socket", sock, "--size", str(a.size),
                               "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--seed", "0"],
                              stderr=log, stdout=subprocess.DEVNULL)
    while not os.path.exists(sock):
        if server.poll() is not None:
            log.seek(0); sys.exit("server did not start: " + log.read())
        time.sleep(0.05)
    here = os.path.dirname(os.path.abspath(__file__))
    py = os.path.join(here, "..", "..", "python")
    clients = [subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, py, "unix:" + sock, str(r), str(a.clients), str(a.seconds)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(a.clients)]
    samples, t0 = [], time.perf_counter()
    while any(c.poll() is None for c in clients):
        samples.append((time.perf_counter() - t0, rss_mb(server.pid)))
        time.sleep(1)
    results, errors = [], []
    for c in clients:
        out, err = c.communicate()
        if c.returncode != 0:
            errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {c.returncode}")
        else:
            results.append(json.loads(out))
    server.terminate(); server.wait()
    # RSS once every client is streaming (after 10 s) versus the last 10 s.
    warm = [m for t, m in samples if 10 <= t <= 20] or [samples[0][1]]
    last = [m for t, m in samples if t >= samples[-1][0] - 10]
    span_min = max(1e-9, (samples[-1][0] - 15) / 60)
    print(f"{a.clients} clients x {a.seconds:.0f} s, batch {a.batch_size} x {a.size}px, server threads {a.threads}")
    for r in sorted(results, key=lambda r: r["rank"]):
        print(f"  rank {r['rank']}: {r['batches']:6d} batches  {r['batches_per_second']:6.2f} batches/s  {r['images_per_second']:7.0f} images/s")
    if results:
        total = sum(r["images_per_second"] for r in results)
        print(f"  per client median {statistics.median(r['images_per_second'] for r in results):.0f} images/s, total {total:.0f} images/s")
    print(f"  server RSS: {statistics.median(warm):.0f} MB after warm-up, {statistics.median(last):.0f} MB at the end, "
          f"peak {max(m for _, m in samples):.0f} MB, slope {(statistics.median(last) - statistics.median(warm)) / span_min:+.2f} MB/min")
    print(f"  errors: {len(errors)}" + "".join(f"\n    {e}" for e in errors))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
