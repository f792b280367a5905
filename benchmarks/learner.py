"""python -m benchmarks.learner [--repeats 7] [--stage 01] [--json PATH]

How quickly the learner's loop answers, measured as a learner meets it (whole `python -m grader` processes):

  progress_unchanged  `python -m grader` on a tree that has not changed since the last call (answered from .grader/)
  progress_edited     the same right after an edit to the stage module (it and every stage built on it run again;
                      for stage 01, whose tokenizer most later stages import, that is most of them)
  watch_save          from writing the stage module to the end of watch's verdict on it (one stage's visible suite)

Goals (issue 10), on 2 cores: progress_unchanged <= 1.5 s, watch_save <= 2 s. They are goals, never assertions:
timings on shared machines are noisy, so medians are printed with the spread, the CPU seconds the measured processes
used (which other work on the machine does not inflate), and the load average when the OS has one. Every run works on a temporary copy of
the skeleton, never on exercises/.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"progress_unchanged": 1.5, "watch_save": 2.0}


def _skeleton(into: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from grader import source
    for relative, text in source.generated_skeletons().items():
        path = into / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    return into / "exercises"


def _environment() -> dict:
    return {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


CPU: dict[str, list[float]] = {}  # CPU seconds of the measured processes (0 where the OS does not count children)


def _progress_seconds(folder: Path, name: str = "") -> float:
    started, before = time.perf_counter(), os.times()
    subprocess.run([sys.executable, "-m", "grader", "--target", str(folder)], cwd=ROOT, env=_environment(),
                   capture_output=True, check=True, timeout=600)
    after = os.times()
    if name:
        CPU.setdefault(name, []).append(after.children_user + after.children_system
                                        - before.children_user - before.children_system)
    return time.perf_counter() - started


def _edit(path: Path, count: int) -> None:
    """A change the learner might make that does not finish the stage: a comment at the end, different each time."""
    text = path.read_text(encoding="utf-8").split("\n# edit ")[0]
    path.write_text(f"{text}\n# edit {count}\n", encoding="utf-8", newline="\n")


def progress(folder: Path, module: Path, repeats: int) -> dict:
    _progress_seconds(folder)  # fills the cache
    unchanged = [_progress_seconds(folder, "progress_unchanged") for _ in range(repeats)]
    edited = []
    for count in range(repeats):
        _edit(module, count)
        edited.append(_progress_seconds(folder, "progress_edited"))
    return {"progress_unchanged": unchanged, "progress_edited": edited}


def watch(folder: Path, module: Path, repeats: int) -> dict:
    """Start one watch, then save `repeats` times; each time from the write to the verdict's last line."""
    process = subprocess.Popen([sys.executable, "-m", "grader", "watch", "--target", str(folder),
                                "--max-checks", str(repeats + 1)], cwd=ROOT, env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=lambda: [lines.put((time.perf_counter(), line)) for line in process.stdout],
                     daemon=True).start()

    def until_verdict(deadline: float = 600) -> float:
        stop = time.perf_counter() + deadline
        while time.perf_counter() < stop:
            try:
                when, line = lines.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    raise RuntimeError("watch stopped early")
                continue
            if line.startswith("Stages complete"):  # the last line of a check's verdict
                return when
        raise RuntimeError("watch gave no verdict in time")

    seconds = []
    try:
        until_verdict()
        for count in range(repeats):
            time.sleep(0.5)  # a learner's saves are seconds apart; this keeps them apart from the previous check
            saved = time.perf_counter()
            _edit(module, 100 + count)
            seconds.append(until_verdict() - saved)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return {"watch_save": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stage", default="01", help="the stage whose module is edited (default 01)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the timings as JSON")
    args = parser.parse_args(argv)
    from grader import manifest
    stage = manifest.stage(args.stage)
    with tempfile.TemporaryDirectory(prefix="learner-bench-") as tmp:
        folder = _skeleton(Path(tmp))
        module = folder / f"{stage.module}.py"
        timings = progress(folder, module, args.repeats) | watch(folder, module, args.repeats)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"learner loop, stage {stage.label}, {os.cpu_count()} cores{load}, {args.repeats} repeats (seconds)")
    summary = {}
    for name, values in timings.items():
        median = statistics.median(values)
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"   goal <= {goal:g} s: {'met' if median <= goal else 'NOT met'}"
        cpu = statistics.median(CPU[name]) if CPU.get(name) else None
        shown = f"   cpu {cpu:5.2f}" if cpu else ""
        print(f"  {name:<20} median {median:5.2f}   min {min(values):5.2f}   max {max(values):5.2f}{shown}{verdict}")
        summary[name] = {"median": median, "min": min(values), "max": max(values), "goal": goal, "runs": values,
                         "cpu_median": cpu}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
