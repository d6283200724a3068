#!/usr/bin/python3
"""Copy a demo work folder and rewind its loop to just after iteration N, so that a lever
that changes only later iterations (or only the students, N = 0) is screened without
training again what it does not change.

    tools/bench/fork_demo.py SRC_WORKDIR DST_WORKDIR N

The loop is deterministic and resumes where its state says it stopped (`noisy demo`
resumes an interrupted run), so running the copy with new options gives the same steps as
running those options from scratch: the students' seeds depend on the iteration, not on
the generation numbers or the folder. The copy keeps the store (its generations are kept;
a generation is reused only when its teacher's path and SHA-256 match, so the copy labels
again under its own paths, 4-20 s), the first teacher and students 1..N, drops the later
students and the reports (`demo_seeds.sh` skips a seed whose report exists), and rewrites
`run/run-state.json`: the first N iterations, with paths moved into the copy, and the last
kept student (or the first teacher) as the next teacher. DST_WORKDIR is replaced.

Used for the screens in BENCHMARKS.md ("The lever study on validation"), e.g.
    tools/bench/fork_demo.py /tmp/lever-deep14/seed-1 /tmp/scr/bn/seed-1 0
    EXTRA="--iterations 1 --student-width 1 --student-depth 1 --student-epochs 14 --batch-norm students" \\
        tools/bench/demo_seeds.sh /tmp/scr/bn 1
"""
import glob
import json
import os
import shutil
import sys


def main():
    if len(sys.argv) != 4 or not sys.argv[3].isdigit():
        sys.exit("usage: " + next(l.strip() for l in __doc__.splitlines() if "SRC_WORKDIR DST_WORKDIR N" in l))
    src, dst, n = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), int(sys.argv[3])
    state_path = os.path.join(src, "run", "run-state.json")
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"fork_demo: {state_path}: cannot read the loop's state: {e}")
    done = state.get("iterations", [])
    if n > len(done):
        sys.exit(f"fork_demo: {state_path}: only {len(done)} iteration(s) done, cannot rewind to {n}")
    if n == 0 and not done:
        sys.exit(f"fork_demo: {state_path}: no iteration done, so the first teacher's accuracy is not recorded")
    # The state's paths are absolute: the source folder is the part before /run/.
    old = done[0]["teacherCheckpoint"].rsplit("/run/", 1)[0]

    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    for pattern in ("report*.json", "time*.txt", "profile*.md", "robustness.*"):
        for path in glob.glob(os.path.join(dst, pattern)):
            os.remove(path)
    for path in glob.glob(os.path.join(dst, "run", "student-*.ckpt")):
        k = os.path.basename(path)[len("student-"):-len(".ckpt")]
        if not k.isdigit() or int(k) > n:
            os.remove(path)

    def moved(value):
        return value.replace(old, dst, 1) if isinstance(value, str) and value.startswith(old + "/") else value

    kept = [{key: moved(value) for key, value in it.items()} for it in done[:n]]
    if kept:
        last = kept[-1]
        teacher = (last["studentCheckpoint"], last["studentAccuracy"], last["studentValidationAccuracy"])
    else:
        first = done[0]
        teacher = (moved(first["teacherCheckpoint"]), first["teacherAccuracy"], first["teacherValidationAccuracy"])
    state["iterations"] = kept
    state["teacherCheckpoint"], state["teacherAccuracy"], state["teacherValidationAccuracy"] = teacher
    # An iteration in progress (its generation and selection) starts again in the copy.
    state.pop("generation", None)
    state.pop("selection", None)
    with open(os.path.join(dst, "run", "run-state.json"), "w") as f:
        json.dump(state, f, indent=2)
    print(f"fork_demo: {dst}: after iteration {n}, next teacher {teacher[0]}")


if __name__ == "__main__":
    main()
