#!/usr/bin/python3
"""Mean and standard deviation (over seeds) of every number in the demo's table.

    tools/bench/demo_seeds_table.py OUT_DIR SEED [SEED ...]

Reads OUT_DIR/seed-K/report.json (schemas/run-report.schema.json),
OUT_DIR/seed-K/time.txt (/usr/bin/time -f '%e %P %M': seconds, CPU share, peak KB)
and, when the demo made one, OUT_DIR/seed-K/robustness.json (robustness.schema.json),
as tools/bench/demo_seeds.sh writes them, and prints two markdown tables: the demo's
numbers, and the robustness per corruption and perturbation. The standard deviation
is the sample one (n - 1); with one seed it is left out.
"""
import json
import statistics
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, seeds = sys.argv[1], sys.argv[2:]
    rows = {}  # name -> [value per seed]
    order = []

    def add(name, value):
        if value is None:
            return
        if name not in rows:
            rows[name] = []
            order.append(name)
        rows[name].append(value)

    for s in seeds:
        with open(f"{out}/seed-{s}/report.json") as f:
            r = json.load(f)
        with open(f"{out}/seed-{s}/time.txt") as f:
            fields = f.read().split()
        its = r["iterations"]
        pct = lambda v: None if v is None else 100 * v
        add("first teacher, validation accuracy (%)", pct(r.get("first_teacher_validation_accuracy")))
        add("first teacher, test accuracy (%)", pct(r.get("first_teacher_accuracy")))
        for it in its:
            k = it["iteration"]
            add(f"student {k}, validation accuracy (%)", pct(it.get("student_validation_accuracy")))
            add(f"student {k}, test accuracy (%)", pct(it.get("student_accuracy")))
            if it.get("flip_rate") is not None:
                add(f"generation {it['generation']}, top class changed since the previous (%)", pct(it["flip_rate"]))
        first_v, last_v = r.get("first_teacher_validation_accuracy"), r.get("final_student_validation_accuracy")
        if first_v is not None and last_v is not None:
            add("gain, validation (points)", 100 * (last_v - first_v))
        add("gain, test (points)", 100 * (r["final_student_accuracy"] - r["first_teacher_accuracy"]))
        rob = r.get("robustness")
        if rob:
            for name, m in zip(["first teacher", "final student"], rob["models"]):
                add(f"{name}, clean accuracy on the {rob['samples']} robustness images (%)", pct(m["clean_accuracy"]))
                add(f"{name}, mCE (%)", pct(m["mce"]))
                add(f"{name}, relative mCE (%)", pct(m["relative_mce"]))
                add(f"{name}, mFR (%)", pct(m["mfr"]))
        add("wall time (min)", float(fields[0]) / 60)
        add("CPU use (% of one core)", float(fields[1].rstrip("%")))
        add("peak memory (MB)", float(fields[2]) / 1024)

    def ms(v):
        return f"{statistics.mean(v):.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else "")

    print(f"| over seeds {', '.join(seeds)} | mean | std | per seed |")
    print("| --- | --- | --- | --- |")
    for name in order:
        v = rows[name]
        std = f"{statistics.stdev(v):.2f}" if len(v) > 1 else "-"
        print(f"| {name} | {statistics.mean(v):.2f} | {std} | {', '.join(f'{x:.2f}' for x in v)} |")

    # Per corruption (error, mean over severities) and per perturbation (flip probability),
    # first teacher against final student, each as mean ± std over the seeds.
    robust = []
    for s in seeds:
        try:
            with open(f"{out}/seed-{s}/robustness.json") as f:
                robust.append(json.load(f))
        except FileNotFoundError:
            pass
    if not robust:
        return
    print(f"\n| robustness over seeds {', '.join(seeds)} ({robust[0]['samples']} test images) | first teacher | final student | student CE / FR |")
    print("| --- | --- | --- | --- |")
    for c in robust[0]["corruptions"]:
        t = [100 * r["models"][0]["mean_errors"][c] for r in robust]
        st = [100 * r["models"][-1]["mean_errors"][c] for r in robust]
        ce = [100 * r["models"][-1]["corruption_errors"][c] for r in robust]
        print(f"| {c} error | {ms(t)} | {ms(st)} | {ms(ce)} |")
    for p in robust[0]["perturbations"]:
        t = [100 * r["models"][0]["flip_probabilities"][p] for r in robust]
        st = [100 * r["models"][-1]["flip_probabilities"][p] for r in robust]
        fr = [100 * r["models"][-1]["flip_rates"][p] for r in robust]
        print(f"| {p} flip probability | {ms(t)} | {ms(st)} | {ms(fr)} |")


if __name__ == "__main__":
    main()
