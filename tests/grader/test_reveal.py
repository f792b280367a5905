"""`python -m grader reveal STAGE`: the reference only after the stage passes, or with --force, never from a release."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from grader import source, manifest
from grader.manifest import ROOT

STAGE = manifest.stages()[0]
REFERENCE = source.reference((ROOT / "solutions" / f"{STAGE.module}.py").read_text())  # shown without markers


def grader(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_COLOR": "1", "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def submission(tmp_path):
    folder = tmp_path / "exercises"
    shutil.copytree(ROOT / "exercises", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_reveal_refuses_while_tests_fail_and_says_how_to_see_them(submission):
    done = grader("reveal", STAGE.id, "--target", str(submission))
    assert done.returncode == 1 and done.stdout == ""
    assert "still fail" in done.stderr and f"python -m grader check {STAGE.id} --target {submission}" in done.stderr


def test_reveal_prints_the_reference_once_the_stage_passes(submission):
    shutil.copy(ROOT / "solutions" / f"{STAGE.module}.py", submission / f"{STAGE.module}.py")
    done = grader("reveal", STAGE.id, "--target", str(submission))
    assert done.returncode == 0, done.stderr
    assert done.stdout == REFERENCE and "passes" in done.stderr


def test_force_reveals_with_a_warning(submission):
    done = grader("reveal", STAGE.id, "--force", "--target", str(submission))
    assert done.returncode == 0 and done.stdout == REFERENCE and "warning" in done.stderr


def test_a_student_release_has_no_reference_to_reveal(tmp_path):
    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "grader", kit / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "exercises", kit / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
    done = grader("reveal", STAGE.id, "--force", cwd=kit)
    assert done.returncode == 1 and done.stdout == "" and "not part of this kit" in done.stderr
