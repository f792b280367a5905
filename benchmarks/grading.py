"""python -m benchmarks.grading [--jobs 1] [--only honest unfinished hostile] [--json PATH]

How long batch grading takes, measured as an instructor meets it (whole `python -m grader grade` processes, every
stage, hidden suites included, default --timeout and budgets):

  honest    the reference's modules as a submission (cumulative pass; the isolated pass runs for any stage that is
            not complete on the submission's own earlier stages)
  unfinished  the same, with stage 03's module left as the skeleton: every later stage fails on the submission's
            own tensor engine, so its isolated pass runs too (the most an honest submission costs)
  hostile   the same modules, every function and method of which sleeps 1000 s before it answers: each probe runs
            into --timeout and the stage and submission budgets (grader/instructor/grade.py) cut the rest off

Goals (issue 10), on 2 cores: honest (and unfinished) <= 180 s, hostile <= 300 s. They are goals, never assertions:
timings on shared machines are noisy, so the load average is printed beside them, with the points each submission
got (an honest one must keep full marks: a budget that cut it off would show here).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import manifest  # noqa: E402
from tests.grader.test_batch import SLEEPER  # noqa: E402  (the module tail that sleeps in every call)

GOALS = {"honest": 180.0, "unfinished": 180.0, "hostile": 300.0}
UNFINISHED = "03"  # its module stays the skeleton in the unfinished submission


def submission(folder: Path, sleeping: bool, unfinished: bool = False) -> Path:
    """Every stage's module from solutions/, as a learner's exercises/ folder would hold them."""
    folder.mkdir(parents=True)
    for stage in manifest.stages():
        origin = "exercises" if unfinished and stage.id == UNFINISHED else "solutions"
        text = (ROOT / origin / f"{stage.module}.py").read_text(encoding="utf-8")
        (folder / f"{stage.module}.py").write_text(text + (SLEEPER if sleeping else ""), encoding="utf-8")
    return folder


def graded(folder: Path, out: Path, jobs: int) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grader", "grade", str(folder), "--out", str(out), "--hidden",
                           "--jobs", str(jobs)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
    seconds = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"grade failed ({done.returncode}):\n{done.stderr[-3000:]}")
    [entry] = json.loads((out / "summary.json").read_text())["submissions"]
    return {"seconds": round(seconds, 1), "points": entry["points"], "max_points": entry["max_points"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--only", nargs="+", choices=list(GOALS), help="measure only these submissions")
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        for name in args.only or list(GOALS):
            folder = submission(Path(scratch) / name, sleeping=name == "hostile", unfinished=name == "unfinished")
            figures[name] = graded(folder, Path(scratch) / f"out-{name}", args.jobs)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            f = figures[name]
            verdict = "within" if f["seconds"] <= GOALS[name] else "OVER"
            print(f"{name:8s} {f['seconds']:7.1f} s  (goal <= {GOALS[name]:g} s: {verdict})  "
                  f"{f['points']:g} / {f['max_points']:g} points  load {load:.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"goals": GOALS, "figures": figures}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
