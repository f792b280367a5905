"""The grader as a learner runs it: `python -m grader` and `python -m grader check`, in subprocesses."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys

import pytest

from grader import manifest
from grader.suites import runner
from grader.manifest import ROOT, ManifestError, _parse

FIRST = manifest.stages()[0]


def grader(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def submission(tmp_path):
    """A fresh copy of the skeleton, as a learner's folder."""
    folder = tmp_path / "exercises"
    shutil.copytree(ROOT / "exercises", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_check_json_against_the_reference_passes_everything():
    done = grader("check", FIRST.id, "--target", "solutions", "--hidden", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(done.stdout)
    [stage] = data["stages"]
    assert stage["stage"] == FIRST.id and stage["failed"] == 0 and stage["passed"] == stage["total"] > 0
    assert stage["hidden"]["total"] > 0 and stage["points"] == FIRST.visible_points + FIRST.hidden_points


def test_check_json_against_the_skeleton_fails_everything_with_not_implemented():
    done = grader("check", FIRST.id, "--json")
    assert done.returncode == 1
    [stage] = json.loads(done.stdout)["stages"]
    assert stage["passed"] == 0 and stage["failed"] == stage["total"] > 0
    assert all(t["message"].startswith("NotImplementedError") for t in stage["tests"])


def test_progress_on_the_skeleton_shows_zero_and_the_next_step():
    done = grader()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out, "NO_COLOR and a pipe must give plain text"
    for stage in manifest.stages():
        assert stage.label in out
    assert f"Next: stage {FIRST.label}" in out
    assert f"open  {FIRST.exercise_file}" in out and "NotImplementedError" in out


def test_finishing_one_stage_turns_that_stage_and_only_that_stage_green(submission):
    shutil.copy(ROOT / "solutions" / f"{FIRST.module}.py", submission / f"{FIRST.module}.py")
    done = grader("check", "--target", str(submission), "--json")
    stages = json.loads(done.stdout)["stages"]
    complete = [s["stage"] for s in stages if s["passed"] == s["total"] > 0]
    assert complete == [FIRST.id], [(s["stage"], s["passed"], s["total"]) for s in stages]


def test_a_syntax_error_fails_that_stage_with_the_error_and_nothing_crashes(submission):
    (submission / f"{FIRST.module}.py").write_text("def broken(:\n")
    done = grader("check", FIRST.id, "--target", str(submission), "--json")
    assert done.returncode == 1
    [stage] = json.loads(done.stdout)["stages"]
    assert stage["passed"] == 0 and stage["total"] > 0
    assert all("SyntaxError" in t["message"] for t in stage["tests"])


def test_a_missing_module_is_named(submission):
    (submission / f"{FIRST.module}.py").unlink()
    [stage] = json.loads(grader("check", FIRST.id, "--target", str(submission), "--json").stdout)["stages"]
    assert all(f"no module {FIRST.module}.py" in t["message"] for t in stage["tests"])


def test_a_hang_is_stopped_by_the_timeout(submission):
    (submission / f"{FIRST.module}.py").write_text("while True:\n    pass\n")
    run = runner.run([FIRST], str(submission), timeout=3)
    assert run.error and "longer than 3 s" in run.error and not run.ok


def test_a_bad_target_is_a_clear_error():
    done = grader("check", "--target", "/no/such/place")
    assert done.returncode == 2 and "no such directory" in done.stderr


def test_an_unknown_stage_is_a_clear_error():
    done = grader("check", "99")
    assert done.returncode == 2 and "no stage '99'" in done.stderr


def test_failures_carry_the_manifest_hint(tmp_path):
    suite = next(r for r in runner.run([FIRST], "exercises").stages)
    with_concept = [t for t in suite.tests if t.concept]
    assert with_concept, "stage tests should name their concept with @pytest.mark.concept"
    for test in with_concept:
        assert test.hint == FIRST.hint(test.concept) and test.hint, f"{test.name}: concept {test.concept!r} has no hint"


def test_manifest_rejects_out_of_order_and_unknown_prerequisites():
    def entry(stage_id, requires=()):
        return {"id": stage_id, "title": "t", "module": "m", "doc": "d", "points": {}, "requires": list(requires)}
    assert [s.id for s in _parse({"stage": [entry("01"), entry("02", ["01"])]})] == ["01", "02"]
    with pytest.raises(ManifestError, match="in order"):
        _parse({"stage": [entry("02"), entry("01")]})
    with pytest.raises(ManifestError, match="not earlier stages"):
        _parse({"stage": [entry("01", ["02"]), entry("02")]})
    with pytest.raises(ManifestError, match="has no 'module'"):
        _parse({"stage": [{"id": "01", "title": "t", "doc": "d", "points": {}}]})


def test_stage_of_test_path():
    assert manifest.stage_of_test_path(ROOT / f"tests/stage{FIRST.id}/test_x.py") == (FIRST, False)
    assert manifest.stage_of_test_path(ROOT / f"tests/hidden/stage{FIRST.id}/test_x.py") == (FIRST, True)
    assert manifest.stage_of_test_path(ROOT / "tests/grader/test_cli.py") is None


def test_every_concept_used_by_a_test_has_a_hint():
    missing = []
    for stage in manifest.stages():
        for hidden in (False, True):
            for path in (ROOT / stage.test_dir(hidden)).glob("test_*.py"):
                source = path.read_text()
                for concept in set(_concepts(source)):
                    if not stage.hint(concept):
                        missing.append(f"{path.relative_to(ROOT)}: {concept}")
    assert not missing, f"concepts with no hint in grader/stages.toml: {missing}"


def _concepts(source: str) -> list[str]:
    return re.findall(r"""mark\.concept\(\s*["']([^"']+)["']""", source)


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme[: readme.index("##", readme.index("Quick start") + 1)] if "Quick start" in readme else readme
    assert "pip install -r requirements.txt && python -m grader" in quick
    assert "pip install -r requirements.txt && python -m pytest" in quick


def test_docs_index_is_generated_from_the_manifest_and_up_to_date():
    from grader.instructor import docs
    index = (ROOT / "docs" / "README.md").read_text()
    assert index == docs.render_index(), "docs/README.md is stale: run `python -m grader docs`"
    readme = (ROOT / "README.md").read_text()
    assert readme == docs.render_readme(readme), "README.md's stage table is stale: run `python -m grader docs`"
    for stage in manifest.stages():
        assert stage.doc.removeprefix("docs/") in index

