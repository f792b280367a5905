"""The learner's commands start where `pwd`, `resource` and `fcntl` do not exist (Windows), on Linux or macOS too.

A copy of the repository gets a sitecustomize.py at its root that makes those three modules unimportable
(sys.modules[name] = None: `import pwd` raises ImportError, as on Windows). Every process started there with the
repository on PYTHONPATH runs it first, including the pytest subprocess that the grader's runner starts (the runner
puts the repository, and so this file, on its PYTHONPATH). Each process that ran it appends its pid to a log, so the
test also proves the block reached the runner's subprocess.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import manifest
from grader.manifest import ROOT

from .checkout import copy_of_repository, run_in

STAGE = manifest.stages()[0]
UNIX_ONLY = ("pwd", "resource", "fcntl")
SITECUSTOMIZE = '''"""Test only (tests/grader/test_windows.py): these modules are absent, as on Windows."""
import os
import sys

for name in {names!r}:
    sys.modules[name] = None  # `import {first}` now raises ImportError
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(f"{{os.getpid()}} {{sys.argv[1:3]}}\\n")
'''


@dataclass
class Blocked:
    root: Path  # the copy of the repository
    log: Path  # one line per process that ran the block

    def processes(self) -> int:
        return len(self.log.read_text(encoding="utf-8").splitlines()) if self.log.exists() else 0


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Blocked:
    root = copy_of_repository(tmp_path_factory.mktemp("checkout"))
    log = tmp_path_factory.mktemp("blocked") / "processes.log"
    (root / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(names=UNIX_ONLY, first=UNIX_ONLY[0], log=str(log)), encoding="utf-8")
    return Blocked(root, log)


def run(copy: Blocked, *args):
    return run_in(copy.root, *args, env={"PYTHONPATH": str(copy.root)})


def _no_crash(done) -> str:
    """The output, after checking that it shows no import failure of a Unix-only module and no traceback."""
    output = done.stdout + done.stderr
    for name in UNIX_ONLY:
        assert f"No module named '{name}'" not in output and f"import of {name} halted" not in output, output[-3000:]
    return output


def test_the_modules_really_are_unimportable_there(copy):
    done = run(copy, "-c", "import sys\nfor m in ('pwd', 'resource', 'fcntl'):\n    try:\n        __import__(m)\n"
                           "    except ImportError:\n        print('blocked', m)")
    assert done.stdout.split() == ["blocked", "pwd", "blocked", "resource", "blocked", "fcntl"], done.stdout + done.stderr


def test_progress_runs(copy):
    before = copy.processes()
    done = run(copy, "-m", "grader")
    output = _no_crash(done)
    assert done.returncode == 0, output[-3000:]
    assert f"Next: stage {STAGE.label}" in done.stdout, output[-3000:]
    assert copy.processes() >= before + 2, "the runner's pytest subprocess did not inherit the block"


def test_check_fails_each_test_as_unfinished(copy):
    before = copy.processes()
    done = run(copy, "-m", "grader", "check", STAGE.id, "--fresh")
    output = _no_crash(done)
    assert done.returncode == 1, output[-3000:]
    assert "NotImplementedError" in output and "Traceback" not in output, output[-3000:]
    assert copy.processes() >= before + 2, "the runner's pytest subprocess did not inherit the block"


def test_plain_pytest_on_the_exercises_runs(copy):
    done = run(copy, "-m", "pytest", STAGE.test_dir(hidden=False), "--target", "exercises", "-p", "no:cacheprovider")
    output = _no_crash(done)
    assert done.returncode == 1, f"pytest exit code {done.returncode} (1: tests failed; 2-4: it could not run)\n" + (
        output[-3000:])
    assert "NotImplementedError" in output and " failed" in output and " passed" not in output.splitlines()[-1]
    assert "testing exercises/ (your code)" in output


@pytest.mark.parametrize("args, code", [(("reveal", "01"), 1), (("watch", "--max-checks", "1"), 0)],
                         ids=["reveal", "watch"])
def test_the_other_learner_commands_run(copy, args, code):
    done = run(copy, "-m", "grader", *args)
    output = _no_crash(done)
    assert "Traceback" not in output and done.returncode == code, output[-3000:]


def test_nothing_on_the_learners_path_imports_a_unix_only_module():
    """Importing the learner's side of the grader must not pull in the sandbox's Linux-only isolation."""
    code = ("import sys\nfor m in ('pwd', 'resource', 'fcntl'):\n    sys.modules[m] = None\n"
            "import grader.cli, grader.learner.progress, grader.learner.watch, grader.learner.reveal, "
            "grader.suites.fixtures, grader.suites.runner, grader.harness\nprint('imported')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "imported", done.stderr[-3000:]
