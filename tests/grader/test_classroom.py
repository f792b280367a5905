"""GitHub Classroom: the workflow `python -m grader classroom` writes parses, holds one command-grader step per stage
with the manifest's visible points and a reporter step that reads them all, and each step's command passes the
reference and fails the skeleton in a student's repository (the kit), shown here for one stage."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import manifest
from grader.instructor import classroom, release
from grader.manifest import ROOT

yaml = pytest.importorskip("yaml")
FIRST = manifest.stages()[0]


def test_the_workflow_has_one_step_per_stage_with_its_points_and_the_reporter(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grader", "classroom", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load((tmp_path / ".github" / "workflows" / "classroom.yml").read_text())
    assert set(data["on"]) >= {"push"} and data["permissions"]["checks"] == "write"
    steps = data["jobs"]["run-autograding-tests"]["steps"]
    graded = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-command-grader")]
    stages = manifest.stages()
    assert [s["id"] for s in graded] == [f"stage-{s.id}" for s in stages]
    assert [s["with"]["max-score"] for s in graded] == [s.visible_points for s in stages]
    assert [s["with"]["command"] for s in graded] == [f"python -m grader check {s.id} --fresh" for s in stages]
    [reporter] = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-grading-reporter")]
    assert reporter is steps[-1]
    assert reporter["with"]["runners"].split(",") == [s["id"] for s in graded]
    assert reporter["env"] == {f"{s['id'].upper()}_RESULTS": f"${{{{steps.{s['id']}.outputs.result}}}}"
                               for s in graded}


def test_a_steps_command_passes_the_reference_and_fails_the_skeleton_in_a_students_repository(tmp_path, monkeypatch):
    # The kit judges with stored outputs; record the stage's afresh (the committed store may lag the suites).
    from grader.instructor import build as derived
    derived.record_expected([FIRST], tmp_path / "store")
    store = release.expected.path_for(FIRST.id, tmp_path / "store")
    monkeypatch.setattr(release.expected, "path_for", lambda stage_id: Path(release.__file__))  # stages in progress
    kit = release.build(tmp_path / "kit")
    shutil.copyfile(store, kit / "tests" / "expected" / store.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORKBOOK_ROOT")}
    env["NO_COLOR"] = "1"
    argv = shlex.split(classroom.command(FIRST))
    assert argv[:3] == ["python", "-m", "grader"]
    run = [sys.executable, *argv[1:]]
    skeleton = subprocess.run(run, cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert skeleton.returncode != 0, "the skeleton passed the stage"
    shutil.copy(ROOT / "solutions" / f"{FIRST.module}.py", kit / "exercises" / f"{FIRST.module}.py")
    solved = subprocess.run(run, cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert solved.returncode == 0, solved.stdout[-3000:] + solved.stderr[-3000:]
