"""Run stage suites against a target in a pytest subprocess and gather the outcomes per stage.

The subprocess keeps every run independent (a learner's module is imported fresh each time) and keeps a crash, an
`os._exit` or a hang in the learner's code from taking the grader down with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import manifest
from ..manifest import ROOT, Stage
from . import scoring, targets


@dataclass
class TestResult:
    nodeid: str
    name: str
    stage: str
    hidden: bool
    outcome: str  # passed | failed | skipped | error
    message: str = ""
    details: str = ""
    concept: str | None = None
    hint: str | None = None
    duration: float = 0.0
    where: dict | None = None  # where the target's code raised: {file, path, line, source, function, kind, ...}

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class StageResult:
    stage: Stage
    tests: list[TestResult] = field(default_factory=list)

    def select(self, hidden: bool | None = None) -> list[TestResult]:
        return [t for t in self.tests if hidden is None or t.hidden == hidden]

    def passed(self, hidden: bool | None = None) -> int:
        return sum(t.passed for t in self.select(hidden))

    def total(self, hidden: bool | None = None) -> int:
        return len(self.select(hidden))

    def points(self, hidden: bool | None = None) -> float:
        """Each test is worth an equal share of its suite's points, in hundredths (grader/suites/scoring.py)."""
        earned = 0.0
        for suite_hidden, suite_points in ((False, self.stage.visible_points), (True, self.stage.hidden_points)):
            if hidden is not None and hidden != suite_hidden:
                continue
            tests = self.select(suite_hidden)
            earned += scoring.score([t.nodeid for t in tests], [t.nodeid for t in tests if t.passed], suite_points)
        return round(earned, 2)

    def max_points(self, hidden: bool | None = None) -> float:
        points = 0.0
        if hidden in (None, False) and self.total(False):
            points += self.stage.visible_points
        if hidden in (None, True) and self.total(True):
            points += self.stage.hidden_points
        return points

    @property
    def complete(self) -> bool:
        return self.total() > 0 and self.passed() == self.total()

    def first_failure(self) -> TestResult | None:
        return next((t for t in self.tests if not t.passed), None)

    def summary(self) -> dict:
        """Plain data for --json and the gradebook."""
        return {
            "stage": self.stage.id,
            "title": self.stage.title,
            "passed": self.passed(),
            "failed": self.total() - self.passed(),
            "total": self.total(),
            "points": self.points(),
            "max_points": self.max_points(),
            "visible": {"passed": self.passed(False), "total": self.total(False), "points": self.points(False)},
            "hidden": {"passed": self.passed(True), "total": self.total(True), "points": self.points(True)},
            "tests": [{"name": t.name, "nodeid": t.nodeid, "hidden": t.hidden, "outcome": t.outcome,
                       "message": t.message, "hint": t.hint} for t in self.tests],
        }


@dataclass
class Run:
    target: str
    stages: list[StageResult]
    error: str | None = None  # the run itself failed (crash, timeout): outcomes may be incomplete
    cached: list[str] = field(default_factory=list)  # ids of the stages answered from the learner's cache

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.complete for s in self.stages)


Progress = Callable[[int, int], None]


def _suite_dirs(stages: Iterable[Stage], hidden: bool) -> list[str]:
    dirs = []
    for stage in stages:
        for is_hidden in (False, True) if hidden else (False,):
            path = stage.test_dir(is_hidden)
            if (ROOT / path).is_dir():
                dirs.append(path)
    return dirs


def json_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines report (the plugin's), skipping a line cut short by a kill; [] when absent."""
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
    return records


def _read(report: Path) -> tuple[int | None, list[dict]]:
    collected, records = None, []
    for record in json_lines(report):
        if "collected" in record:
            collected = record["collected"]
        else:
            records.append(record)
    return collected, records


def _environment() -> dict[str, str]:
    # A lean pytest: no plugins found by entry point (hypothesis alone adds half a second), no bytecode written into
    # the learner's folder; the runner adds no cache folder and no traceback text (formatting it took a second for a
    # stub's suite; the plugin records what it needs).
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # the grader first
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "GRADER_PARENT": str(os.getpid())}  # the run dies with this process (plugin.py), and its workers with it


class Warm:
    """A pytest process started ahead (grader/suites/warm.py): the next run skips Python's, pytest's and NumPy's
    start-up. Each serves one run; `close()` ends one that was never used."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "grader.suites.warm"], cwd=ROOT, env=_environment(), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def used(self) -> bool:
        return self.process is None

    def start(self, arguments: list[str], log: Path) -> subprocess.Popen | None:
        """Hand it a run's pytest arguments; None when it is gone (the runner then starts pytest itself)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None
        order = {"args": arguments, "log": str(log), "cwd": str(ROOT)}
        try:
            process.stdin.write((json.dumps(order) + "\n").encode("utf-8"))
            process.stdin.close()
        except OSError:
            process.kill()
            return None
        return process

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def run(stages: Iterable[Stage], target: str = "exercises", hidden: bool = False,
        on_progress: Progress | None = None, timeout: float | None = None, extra: Iterable[str] = (),
        select: Iterable[str] = (), warm: Warm | None = None) -> Run:
    """Run the suites of `stages` (visible, plus hidden when asked) against `target`.

    `extra` adds pytest options, e.g. ("--sandbox", "--probe-timeout=30") to keep the target's code out of this
    process and out of pytest's, or ("-k", "encode"). `select` runs only those test ids ('tests/stage01/x.py::test_y')
    instead of the stages' whole folders. `warm`, a pytest process started ahead, runs it when it is still there.
    """
    stages = list(stages)
    targets.resolve(target)  # a clear TargetError before anything runs
    results = {s.id: StageResult(s) for s in stages}
    dirs = list(select) or _suite_dirs(stages, hidden)
    if not dirs:
        return Run(target, list(results.values()))
    with tempfile.TemporaryDirectory(prefix="grader-") as tmp:
        report, log = Path(tmp) / "report.jsonl", Path(tmp) / "pytest.log"
        arguments = [*dirs, f"--target={target}", "-p", "grader.suites.plugin", f"--grader-report={report}", "-q",
                     "-p", "no:cacheprovider", "--tb=no", f"--rootdir={ROOT}", *extra]
        error = None
        process = warm.start(arguments, log) if warm is not None else None
        if process is None:
            with open(log, "wb") as out:
                process = subprocess.Popen([sys.executable, "-m", "pytest", *arguments], cwd=ROOT, env=_environment(),
                                           stdout=out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while process.poll() is None:
            if on_progress:
                collected, records = _read(report)
                on_progress(len(records), collected or 0)
            if timeout and time.monotonic() - started > timeout:
                process.kill()
                error = f"the run took longer than {timeout:g} s and was stopped (an infinite loop?)"
            time.sleep(0.05)
        process.wait()
        collected, records = _read(report)
        if collected is None and error is None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            error = f"pytest did not start the suites (exit code {process.returncode}):\n{tail}"
        elif error is None and len([r for r in records if "nodeid" in r]) < collected:
            error = f"the run stopped after {len(records)} of {collected} tests (exit code {process.returncode})"
    for record in records:
        if "collection_error" in record:
            found = manifest.stage_of_test_path(record["collection_error"])
            if found and found[0].id in results:
                results[found[0].id].tests.append(TestResult(
                    record["collection_error"], record["collection_error"], found[0].id, found[1], "error",
                    message=record["message"].strip().splitlines()[-1], details=record["message"]))
            continue
        if record.get("stage") in results:
            fields = {k: record.get(k) for k in ("nodeid", "name", "stage", "hidden", "outcome", "message",
                                                 "details", "concept", "hint", "duration", "where")}
            results[record["stage"]].tests.append(TestResult(**fields))
    if on_progress:
        on_progress(len(records), collected or len(records))
    return Run(target, list(results.values()), error)
