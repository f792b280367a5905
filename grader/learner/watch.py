"""`python -m grader watch`: re-check the current stage every time you save, rustlings-style.

The current stage is the first one that is not complete (as far as the cache of `python -m grader` knows: an
unchanged stage is not run again). Each check runs only that stage's visible suite (a pytest subprocess, as `check`
does) and shows its progress bar, the file to open, and the first failing test; `python -m grader hint` gives a hint
when you want one. When the stage turns green it says so and moves on to the next. Changes are found by polling
modification times and sizes: no dependency, and it works on every file system, network mounts included.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import manifest, report
from ..manifest import Stage
from ..suites import runner, targets
from . import cache

QUIET_SECONDS = 0.2  # an editor may save in several writes: check once they have stopped

Snapshot = dict[str, tuple[int, int]]


def snapshot(folder: Path) -> Snapshot:
    """Every file under `folder` (caches aside) with its modification time and size."""
    files = {}
    for path in folder.rglob("*"):
        inside = path.relative_to(folder).parts
        if "__pycache__" in inside or any(part.startswith(".") for part in inside) or not path.is_file():
            continue
        try:
            stat = path.stat()
        except OSError:  # removed between the listing and the stat
            continue
        files[str(path.relative_to(folder))] = (stat.st_mtime_ns, stat.st_size)
    return files


def wait_for_change(folder: Path, since: Snapshot, interval: float) -> None:
    """Return once `folder` differs from `since` and has then stayed still for QUIET_SECONDS."""
    current = snapshot(folder)
    while current == since:
        time.sleep(interval)
        current = snapshot(folder)
    while True:
        time.sleep(QUIET_SECONDS)
        settled = snapshot(folder)
        if settled == current:
            return
        current = settled


def check(stages: list[Stage], index: int, target: str, timeout: float, warm: runner.Warm | None = None) -> int:
    """Run the current stage; while it passes, say so and go on. Returns the index of the new current stage."""
    folder = targets.resolve(target)
    while index < len(stages):
        stage = stages[index]
        with report.progress(f"checking stage {stage.id}") as on_progress:
            run = cache.run([stage], target, on_progress=on_progress, timeout=timeout, warm=warm)
        result = run.stages[0]
        done, total = result.passed(), result.total()
        finished = result.complete and run.error is None
        report.say(f"Stage {stage.label}  [{report.bar(done, total)}] {done}/{total}"
                   + ("  complete" if finished else ""), "bold green" if finished else "bold")
        if finished and index + 1 < len(stages):
            report.say(f"Stage {stage.id} is complete. On to stage {stages[index + 1].label}.\n", "green")
        if not finished:
            if run.error:
                report.say(f"The run did not finish: {run.error}", "bold red")
            report.show_next(result, report.shown_path(folder / f"{stage.module}.py"))
            return index
        index += 1
    return index


def watch(target: str, interval: float, max_checks: int | None, timeout: float) -> int:
    """Check, then wait for a change under the target and check again, until every stage passes (or max_checks)."""
    folder = targets.resolve(target)
    stages = list(manifest.stages())
    first = cache.current(stages, cache.lookup(stages, target))  # the stages the cache knows complete are skipped
    index, checks = (stages.index(first) if first else 0), 0
    warm = None  # a pytest started while the learner edits, so that the check after a save starts at once
    try:
        while True:
            seen = snapshot(folder)  # taken before the check, so a save during it triggers the next one
            checks += 1
            if report.fancy():
                print("\x1b[2J\x1b[H", end="")  # a fresh screen per check, as rustlings does
            elif checks > 1:
                print()
            report.say(f"check {checks} at {time.strftime('%H:%M:%S')}  (target: {report.shown_path(folder)})",
                       "dim")
            index = check(stages, index, target, timeout, warm)
            report.say(f"\nStages complete  [{report.bar(index, len(stages))}] {index}/{len(stages)}")
            if index == len(stages):
                report.say("Every stage passes. Well done.", "bold green")
                return 0
            if max_checks is not None and checks >= max_checks:
                return 0
            report.say(f"\nWatching {report.shown_path(folder)} for changes (Ctrl-C to stop)")
            sys.stdout.flush()  # the check's output must appear now, even when piped
            if warm is None or warm.used:
                warm = runner.Warm()
            wait_for_change(folder, seen, interval)
    finally:
        if warm is not None:
            warm.close()


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        return watch(args.target, args.interval, args.max_checks, args.timeout)
    except KeyboardInterrupt:
        report.say("\nStopped watching.")
        return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("watch", help="re-check the current stage every time a file changes (Ctrl-C stops)")
    parser.add_argument("--target", default=argparse.SUPPRESS,
                        help="exercises (default), or a path to a copy of exercises/")
    parser.add_argument("--interval", type=float, default=0.25,
                        help="seconds between looks for changes (default 0.25)")
    parser.add_argument("--max-checks", type=int, default=None, metavar="N", help="stop after N checks (for tests)")
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop one check after this many seconds")
    parser.set_defaults(func=cmd_watch)
