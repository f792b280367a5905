"""`python -m grader watch`: a save that finishes the current stage turns it green and names the next one."""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time

from grader import manifest
from grader.learner import watch
from grader.manifest import ROOT

FIRST, SECOND = manifest.stages()[:2]


def test_finishing_the_current_stage_moves_the_watch_to_the_next(tmp_path):
    folder = tmp_path / "exercises"
    shutil.copytree(ROOT / "exercises", folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "grader", "watch", "--target", str(folder), "--max-checks", "2", "--interval", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    first, deadline = [], time.monotonic() + 300
    while not any("Watching" in line for line in first):  # the first check is done and the watch is waiting
        assert time.monotonic() < deadline and process.poll() is None, "".join(first)
        try:
            first.append(lines.get(timeout=1))
        except queue.Empty:
            pass
    shutil.copy(ROOT / "solutions" / f"{FIRST.module}.py", folder / f"{FIRST.module}.py")
    assert process.wait(timeout=300) == 0
    time.sleep(0.2)  # let the reader thread drain the pipe
    second = "".join(lines.queue)
    first = "".join(first)
    assert f"Next: stage {FIRST.label}" in first and "NotImplementedError" in first
    assert f"Stage {FIRST.id} is complete" in second, second
    assert f"Next: stage {SECOND.label}" in second and f"{SECOND.module}.py" in second, second


def test_snapshots_see_a_rewrite_of_the_same_size(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    before = watch.snapshot(tmp_path)
    time.sleep(0.01)
    (tmp_path / "a.py").write_text("x = 2\n")
    os.utime(tmp_path / "a.py", ns=(before["a.py"][0] + 10**7,) * 2)  # coarse clocks: force a later mtime
    assert watch.snapshot(tmp_path) != before
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"")
    assert "__pycache__/a.pyc" not in watch.snapshot(tmp_path)


def test_a_pytest_started_ahead_gives_the_same_results_and_serves_once(tmp_path):
    from grader.suites import runner
    from .learner_kit import skeleton
    folder = skeleton(tmp_path)
    cold = runner.run([FIRST], str(folder))
    warm = runner.Warm()
    try:
        hot = runner.run([FIRST], str(folder), warm=warm)
        assert warm.used and runner.run([FIRST], str(folder), warm=warm).error is None, "a used one falls back"
    finally:
        warm.close()
    assert [(t.name, t.outcome, t.message) for t in hot.stages[0].tests] == \
        [(t.name, t.outcome, t.message) for t in cold.stages[0].tests]
    assert hot.error is None and hot.stages[0].total() > 0
    gone = runner.Warm()
    gone.close()
    assert runner.run([FIRST], str(folder), warm=gone).stages[0].total() == cold.stages[0].total()
