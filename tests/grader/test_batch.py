"""Batch grading at the scale of a class: a subset of stages, a wide gradebook, short feedback, budgets that keep a
sleeping submission from stalling the batch, and a `grade` killed with SIGKILL that leaves no worker behind and loses
or duplicates no row when started again. Budgets here are a few seconds; benchmarks/grading.py measures real ones."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import manifest
from grader.instructor import grade
from grader.manifest import ROOT

FIRST, SECOND = manifest.stages()[0], manifest.stages()[1]
SLEEPER = '''

import functools as _functools
import time as _time


def _asleep(function):
    @_functools.wraps(function)
    def wrapper(*args, **kwargs):
        _time.sleep(1000)
        return function(*args, **kwargs)
    return wrapper


for _name, _value in list(globals().items()):
    if isinstance(_value, type) and _value.__module__ == __name__:
        for _attribute, _member in list(vars(_value).items()):
            if callable(_member):
                setattr(_value, _attribute, _asleep(_member))
    elif callable(_value) and getattr(_value, "__module__", None) == __name__ and not _name.startswith("_"):
        globals()[_name] = _asleep(_value)
'''


def _submission(folder: Path, sleeping: bool = False) -> Path:
    folder.mkdir(parents=True)
    text = (ROOT / "solutions" / f"{FIRST.module}.py").read_text(encoding="utf-8")
    (folder / f"{FIRST.module}.py").write_text(text + (SLEEPER if sleeping else ""), encoding="utf-8")
    return folder


def test_a_subset_of_stages_a_wide_gradebook_and_one_line_for_a_missing_stage(tmp_path):
    honest = _submission(tmp_path / "alice")
    summary = grade.grade([honest], grade.Options(out=tmp_path / "out", stages=(FIRST.id, SECOND.id)))
    [entry] = summary["submissions"]
    assert entry["max_points"] == FIRST.visible_points + SECOND.visible_points, "visible only: out of visible points"
    assert entry["points"] == FIRST.visible_points
    with open(tmp_path / "out" / "gradebook.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["submission", FIRST.id, SECOND.id, "total", "max_total", "problem"]
    assert [(r["submission"], float(r[FIRST.id]), float(r[SECOND.id]), float(r["total"])) for r in rows] == [
        ("alice", FIRST.visible_points, 0.0, FIRST.visible_points)]
    page = (tmp_path / "out" / "feedback" / "alice.md").read_text()
    assert f"**Total: {FIRST.visible_points:g} / {FIRST.visible_points + SECOND.visible_points:g} points**" in page
    assert [line for line in page.splitlines() if f"{SECOND.module}.py" in line] == [
        f"- Stage {SECOND.id} {SECOND.title}: 0 / {SECOND.visible_points:g} points: no {SECOND.module}.py in the "
        f"submission"], "a missing stage is one line"
    others = [s for s in manifest.stages() if s.id not in (FIRST.id, SECOND.id)]
    assert not any(f"{s.module}.py" in page or f"Stage {s.id}" in page for s in others)

    # A later run on one stage grades again (the stages differ) and the gradebook keeps one row per student.
    grade.grade([honest], grade.Options(out=tmp_path / "out", stages=(FIRST.id,)))
    rows = list(csv.DictReader(open(tmp_path / "out" / "gradebook.csv", newline="")))
    assert [r["submission"] for r in rows] == ["alice"] and list(rows[0])[1:3] == [FIRST.id, "total"]


def test_feedback_lists_one_line_per_failing_test_before_the_details():
    tests = [{"name": f"test_{i}", "nodeid": f"t::test_{i}", "hidden": i == 2, "outcome": "failed",
              "message": f"expected {i}\ngot {i + 1}", "hint": "count again"} for i in range(3)]
    entry = {"stage": FIRST.id, "title": FIRST.title, "max_visible": 10, "max_hidden": 10, "visible_points": 4.0,
             "hidden_points": 5.0, "passed": 7, "total": 10, "problem": None, "tests": tests}
    page = grade.feedback({"submission": "bob", "hidden": True, "stages": [entry]})
    summary, details = page.split("## Details")
    assert [line for line in summary.splitlines() if "`test_" in line] == [
        f"- {FIRST.id} `test_0`: failed", f"- {FIRST.id} `test_1`: failed", f"- {FIRST.id} `test_2` (hidden): failed"]
    assert "expected 0" in details and "got 3" not in page, "a hidden test's message is never shown"
    assert "**Total: 9 / 20 points**" in summary


def test_a_submission_that_sleeps_in_every_call_is_graded_within_its_budget(tmp_path):
    sleeper = _submission(tmp_path / "sleepy", sleeping=True)
    options = grade.Options(out=tmp_path / "out", stages=(FIRST.id,), timeout=1.0, stage_budget=4.0,
                            submission_budget=8.0)
    started = time.monotonic()
    summary = grade.grade([sleeper], options)
    seconds = time.monotonic() - started
    assert seconds < options.submission_budget + 25, f"{seconds:.0f} s for a budget of {options.submission_budget} s"
    [entry] = summary["submissions"]
    assert entry["points"] == 0
    result = json.loads((tmp_path / "out" / "results" / "sleepy.json").read_text())
    [stage] = result["stages"]
    expected = grade.expected_tests([FIRST])[FIRST.id][False]
    assert stage["total"] == len(expected), "tests the budget cut off still count, as failed"
    assert all(t["outcome"] != "passed" for t in stage["tests"])
    assert any(re.search(r"budget of [0-9.]+ s was used up", t["message"]) for t in stage["tests"]), stage["tests"]


def _descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every process below `pid` (the start time tells a pid reused later apart)."""
    parents, starts = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)], starts[int(entry.name)] = int(fields[1]), fields[19]
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = starts[child]
                frontier.append(child)
    return found


def _alive(pid: int, start: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_grade_killed_mid_batch_leaves_no_worker_and_a_restart_loses_and_duplicates_no_row(tmp_path):
    names = ["a", "b", "c"]
    subs = [str(_submission(tmp_path / name, sleeping=name != "a")) for name in names]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "grade", *subs, "--out", str(out), "--stages", FIRST.id,
               "--timeout", "1", "--stage-budget", "4", "--submission-budget", "6"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 90, {}
    while time.monotonic() < deadline and process.poll() is None:  # until a sleeping submission's run is under way
        workers = _descendants(process.pid)
        if len(workers) >= 2 and (out / "results" / "a.json").exists():
            break
        time.sleep(0.2)
    assert process.poll() is None and workers, "grade ended before it could be killed mid-batch"
    workers = _descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p, s) for p, s in workers.items()):
        time.sleep(0.2)
    left = [p for p, s in workers.items() if _alive(p, s)]
    assert not left, f"processes of the killed grade still running: {left}"
    assert (out / grade.SCRATCH / str(process.pid)).exists()

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert str(process.pid) in summary["stale_scratch_removed"]
    assert not (out / grade.SCRATCH / str(process.pid)).exists()
    assert "a" in summary["skipped"], "the submission graded before the kill is not graded again"
    rows = list(csv.DictReader(open(out / "gradebook.csv", newline="")))
    assert sorted(r["submission"] for r in rows) == names, "one row per submission, none lost, none twice"
    assert sorted(p.name for p in (out / "results").iterdir()) == [f"{n}.json" for n in names]
