"""The student release: nothing of the reference or the hidden suites inside, and its own grader works from the
stored expected outputs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from grader import manifest
from grader.instructor import release
from grader.manifest import ROOT


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return release.build(tmp_path_factory.mktemp("release") / "kit")


def _grader(kit, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=kit, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_release_holds_no_reference_and_no_hidden_suite(kit):
    assert not (kit / "solutions").exists() and not (kit / "tests" / "hidden").exists()
    assert release.leaks(kit) == []
    assert (kit / "README.md").read_text().count("Student release") == 1


def test_the_leak_check_finds_a_planted_solution_and_a_hidden_test(kit, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(kit, copy)
    stage = manifest.stages()[0]
    shutil.copy(ROOT / "solutions" / f"{stage.module}.py", copy / "docs" / "oops.py")
    hidden = next((ROOT / stage.test_dir(hidden=True)).glob("test_*.py"))
    shutil.copy(hidden, copy / "tests" / hidden.name)
    found = release.leaks(copy)
    assert any("contains the body of" in f for f in found), found
    assert any("names the hidden" in f for f in found), found


def test_progress_in_the_release_starts_at_zero(kit):
    done = _grader(kit)
    assert done.returncode == 0, done.stderr
    assert f"Next: stage {manifest.stages()[0].label}" in done.stdout


def test_the_stored_outputs_judge_the_reference_exactly_as_the_reference_does(kit, tmp_path):
    """Every visible test of every stage passes when the release's exercises are the reference's modules."""
    solved = tmp_path / "solved"
    shutil.copytree(ROOT / "solutions", solved, ignore=shutil.ignore_patterns("__pycache__"))
    done = _grader(kit, "check", "--target", str(solved), "--json")
    data = json.loads(done.stdout)
    failing = [(s["stage"], t["name"], t["message"][:200]) for s in data["stages"] for t in s["tests"]
               if t["outcome"] != "passed"]
    assert not failing, f"stale or incomplete tests/expected/ (run `python -m grader expected`): {failing[:5]}"
    assert all(s["total"] > 0 for s in data["stages"])


def test_the_skeleton_fails_in_the_release_with_not_implemented(kit):
    stage = manifest.stages()[0]
    data = json.loads(_grader(kit, "check", stage.id, "--json").stdout)
    assert all(t["message"].startswith("NotImplementedError") for t in data["stages"][0]["tests"])


def test_building_into_a_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.build(tmp_path)
