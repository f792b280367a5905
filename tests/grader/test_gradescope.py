"""The Gradescope autograder: build the zip, unpack it into a fake /autograder, run run_autograder, read results.json.

The keys checked are those of Gradescope's specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import manifest, source
from grader.instructor import build as derived
from grader.instructor import gradescope, release
from grader.manifest import ROOT

from .checkout import copy_of_repository, run_in

STAGE = manifest.stages()[0]
TOP_LEVEL_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                  "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility", "number", "tags"}


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gradescope") / "autograder.zip"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "grader", "gradescope", str(out), "--stages", STAGE.id], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def autograde(zip_path: Path, root: Path, fill_submission) -> dict:
    """Gradescope's layout in `root`: source/ = the zip, submission/ = what fill_submission puts there."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    fill_submission(root / "submission")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(AUTOGRADER_ROOT=str(root), NO_COLOR="1", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                   timeout=600)
    data = json.loads((root / "results" / "results.json").read_text())
    assert set(data) <= TOP_LEVEL_KEYS and {"score", "execution_time", "output", "tests"} <= set(data)
    for test in data["tests"]:
        assert set(test) == TEST_KEYS, test
        assert test["status"] in ("passed", "failed") and test["visibility"] in gradescope.VISIBILITIES
        assert isinstance(test["number"], str) and all(isinstance(tag, str) for tag in test["tags"])
    return data


def exercises_with(module_source: str | None):
    def fill(submission: Path) -> None:
        shutil.copytree(ROOT / "exercises", submission / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
        if module_source is not None:
            (submission / "exercises" / f"{STAGE.module}.py").write_text(module_source)
    return fill


def test_the_zip_has_both_scripts_at_its_root_and_the_trusted_kit(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as archive:
        names = set(archive.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        config = json.loads(archive.read(gradescope.CONFIG))
    for script in ("setup.sh", "run_autograder"):
        assert script in names and modes[script] & stat.S_IXUSR, f"{script} must be at the root and executable"
    for needed in ("grader/instructor/gradescope.py", "grader/stages.toml", "tests/conftest.py", "requirements.txt",
                   "pyproject.toml", f"solutions/{STAGE.module}.py", f"exercises/{STAGE.module}.py"):
        assert needed in names, needed
    assert any(n.startswith(f"tests/hidden/stage{STAGE.id}/") for n in names)
    assert not any("__pycache__" in n or n.startswith((".git", "tests/grader/")) for n in names)
    assert config == {"stages": [STAGE.id], "hidden_visibility": "after_due_date"}


@pytest.fixture(scope="module")
def zip_from_a_learners_checkout(tmp_path_factory) -> Path:
    """The zip built where a learner has been at work: the reference's module in exercises/, untracked files beside
    it and in tests/."""
    copy = copy_of_repository(tmp_path_factory.mktemp("checkout"))
    reference = source.reference((copy / "solutions" / f"{STAGE.module}.py").read_text(encoding="utf-8"))
    (copy / "exercises" / f"{STAGE.module}.py").write_text(reference, encoding="utf-8")
    (copy / "exercises" / "notes.py").write_text("# planted\n", encoding="utf-8")
    (copy / "tests" / "scratch.py").write_text("# planted\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("gradescope") / "planted.zip"
    done = run_in(copy, "-m", "grader", "gradescope", str(out), "--stages", STAGE.id, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_the_zip_holds_the_skeleton_from_the_source_and_no_untracked_file(zip_from_a_learners_checkout, tmp_path):
    with zipfile.ZipFile(zip_from_a_learners_checkout) as archive:
        names = set(archive.namelist())
        exercises = {n: archive.read(n).decode("utf-8") for n in names if n.startswith("exercises/")}
        archive.extractall(tmp_path, [n for n in names if n.startswith("exercises/")])
    assert "exercises/notes.py" not in names and "tests/scratch.py" not in names
    assert exercises == derived.exercise_texts(), "the zip's exercises/ is not the skeleton generated from solutions/"
    problems = release.exercise_problems(tmp_path / "exercises")  # the release's leak check, on the zip's copy
    assert not problems, problems


def test_a_solved_stage_gets_full_marks_with_hidden_tests_after_the_due_date(autograder_zip, tmp_path):
    def solved(submission: Path) -> None:
        exercises_with(None)(submission)
        shutil.copy(ROOT / "solutions" / f"{STAGE.module}.py", submission / "exercises" / f"{STAGE.module}.py")

    data = autograde(autograder_zip, tmp_path, solved)
    points = STAGE.visible_points + STAGE.hidden_points
    assert data["score"] == points and all(t["status"] == "passed" for t in data["tests"])
    assert sum(t["max_score"] for t in data["tests"]) == pytest.approx(points, abs=0.01)
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_due_date"}
    assert all(t["name"].startswith(f"{STAGE.label} › test_") for t in data["tests"])
    assert len({t["number"] for t in data["tests"]}) == len(data["tests"])


def test_a_syntax_error_still_writes_results_with_score_zero(autograder_zip, tmp_path):
    data = autograde(autograder_zip, tmp_path, exercises_with("def broken(:\n"))
    assert data["score"] == 0 and data["tests"] and all(t["status"] == "failed" for t in data["tests"])
    assert all("SyntaxError" in t["output"] for t in data["tests"])


def test_an_empty_submission_is_explained(autograder_zip, tmp_path):
    data = autograde(autograder_zip, tmp_path, lambda submission: None)
    assert data["score"] == 0 and "could not be graded" in data["output"] and "Upload" in data["output"]
    assert data["tests"][0]["max_score"] == STAGE.visible_points + STAGE.hidden_points


def test_a_crash_of_the_autograder_itself_still_writes_results(autograder_zip, tmp_path):
    def break_the_config(submission: Path) -> None:
        (submission.parent / "source" / gradescope.CONFIG).write_text('{"stages": ["99"]}')

    data = autograde(autograder_zip, tmp_path, break_the_config)
    assert data["score"] == 0 and data["tests"] == [] and "autograder failed" in data["output"]


def test_results_share_each_suites_points_and_apply_the_hidden_visibility():
    tests = [{"name": f"test_{i}", "hidden": i >= 3, "outcome": "passed" if i % 2 else "failed",
              "message": "Mismatch: off by one", "hint": "count from zero"} for i in range(5)]
    entry = {"stage": STAGE.id, "title": STAGE.title, "max_visible": 9.0, "max_hidden": 4.0, "visible_points": 3.0,
             "hidden_points": 2.0, "cumulative_visible": 3.0, "cumulative_hidden": 2.0, "passed": 2, "total": 5,
             "problem": None, "tests": tests}
    data = gradescope.results({"problem": None, "stages": [entry]}, "hidden", 1.4)
    assert [t["max_score"] for t in data["tests"]] == [3.0, 3.0, 3.0, 2.0, 2.0]
    assert [t["score"] for t in data["tests"]] == [0.0, 3.0, 0.0, 2.0, 0.0]
    assert [t["visibility"] for t in data["tests"]] == ["visible"] * 3 + ["hidden"] * 2
    assert data["score"] == 5.0 and data["execution_time"] == 1
    assert "off by one" in data["tests"][0]["output"] and "Hint: count from zero" in data["tests"][0]["output"]
