#!/usr/bin/python3
"""Where a `noisy demo` (or `noisy run`) spends its cores, phase by phase.

Runs the command, copies its output to LOG, and every 0.25 s reads the CPU time of
the process and of each of its threads from /proc. The phase is the last phase line
the log printed (folders, ingest, first teacher, labelling, student k, robustness).
Prints a markdown table: per phase, the wall time, the CPU used (% of one core: 200%
is both cores of a 2-core machine busy), and the share of the busiest thread (a phase
whose busiest thread is near 100% while the total is far below 200% waits on that
one thread).

    tools/bench/cpu_profile.py LOG [--table FILE] [--time FILE] -- .build/release/noisy demo --workdir /tmp/d --seed 1

--table also writes the table to FILE; --time writes "wall_s cpu% peak_rss_kB", the
fields of `/usr/bin/time -f '%e %P %M'` (tools/bench/demo_seeds.sh reads them).
"""
import os
import re
import subprocess
import sys
import threading
import time

PHASES = [
    (re.compile(r"^demo: writing"), "write folders"),
    (re.compile(r"^ingest:"), "ingest"),
    (re.compile(r"iteration 0: teacher"), "first teacher: train, validate each epoch"),
    (re.compile(r"iteration (\d+): labelling"), "labelling (iteration {0})"),
    (re.compile(r"iteration (\d+): student"), "student {0}: train, validate each epoch"),
    (re.compile(r"^demo: robustness|^robustness:"), "robustness"),
]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(path):
    """utime + stime of /proc/.../stat (fields 14 and 15, after the command name)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def main():
    if "--" not in sys.argv or sys.argv.index("--") < 2:
        sys.exit("usage: cpu_profile.py LOG [--table FILE] [--time FILE] -- COMMAND ...")
    cut = sys.argv.index("--")
    log_path, options, command = sys.argv[1], sys.argv[2:cut], sys.argv[cut + 1:]
    if len(options) % 2 or any(k not in ("--table", "--time") for k in options[::2]):
        sys.exit(f"cpu_profile.py: unknown options {options}")
    options = dict(zip(options[::2], options[1::2]))
    started = time.monotonic()
    peak_kb = 0
    phase = ["start"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

        def reader():
            for line in proc.stdout:
                log.write(line)
                log.flush()
                for pattern, name in PHASES:
                    m = pattern.search(line)
                    if m:
                        phase[0] = name.format(*m.groups())
                        break

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        # per phase: wall seconds, process ticks, ticks of each thread
        stats, order = {}, []
        last_total, last_threads, last_time = 0, {}, time.monotonic()
        while proc.poll() is None:
            time.sleep(0.25)
            now = time.monotonic()
            total = cpu_ticks(f"/proc/{proc.pid}/stat")
            threads = {}
            try:
                for tid in os.listdir(f"/proc/{proc.pid}/task"):
                    v = cpu_ticks(f"/proc/{proc.pid}/task/{tid}/stat")
                    if v is not None:
                        threads[tid] = v
            except OSError:
                pass
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            if total is None:
                continue
            p = phase[0]
            if p not in stats:
                stats[p] = [0.0, 0, {}]
                order.append(p)
            s = stats[p]
            s[0] += now - last_time
            s[1] += total - last_total
            for tid, v in threads.items():
                s[2][tid] = s[2].get(tid, 0) + v - last_threads.get(tid, 0)
            last_total, last_threads, last_time = total, threads, now
        t.join()
    elapsed = time.monotonic() - started
    rows = ["| phase | wall (s) | CPU (% of one core) | busiest thread (% of one core) |", "| --- | --- | --- | --- |"]
    wall = ticks = 0
    for p in order:
        w, k, per = stats[p]
        if w < 0.5:
            continue
        wall += w
        ticks += k
        busiest = max(per.values()) if per else 0
        rows.append(f"| {p} | {w:.0f} | {100 * k / TICK / w:.0f}% | {100 * busiest / TICK / w:.0f}% |")
    if wall:
        rows.append(f"| all | {wall:.0f} | {100 * ticks / TICK / wall:.0f}% | |")
    table = "\n".join(rows) + "\n"
    print(table, end="")
    if "--table" in options:
        with open(options["--table"], "w") as f:
            f.write(table)
    if "--time" in options:
        with open(options["--time"], "w") as f:
            f.write(f"{elapsed:.2f} {100 * ticks / TICK / max(wall, 1e-9):.0f}% {peak_kb}\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
