"""One score in every channel: the same submission earns the same points from `grader grade`, nbgrader's autograde
and the Gradescope autograder, because all three use grader/suites/scoring.py (each test an equal share of its
suite's points, in hundredths that add up exactly)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import manifest, notebooks
from grader.instructor import grade
from grader.manifest import ROOT
from grader.suites import scoring

STAGE = manifest.stages()[0]
MISTAKE = ("n_val = round(val_fraction * len(tokens))", "n_val = int(val_fraction * len(tokens))")  # int for round


def test_shares_add_up_to_the_suites_points_exactly_whatever_the_order():
    ids = [f"tests/stage01/test_a.py::test_{i}" for i in range(7)]
    share = scoring.cents(ids, 10)
    assert sum(share.values()) == 1000 and set(share.values()) == {142, 143}
    assert scoring.cents(reversed(ids), 10) == share
    assert scoring.score(ids, ids, 10) == 10.0 and scoring.score(ids, [], 10) == 0.0
    halves = scoring.score(ids, ids[:3], 10) + scoring.score(ids, ids[3:], 10)
    assert halves == pytest.approx(10.0, abs=1e-9), "the scores of a partition of the tests add up to the whole"


def test_notebook_cells_are_worth_the_shares_of_their_tests():
    from grader.notebooks.groups import Group, share
    groups = [Group("a", [f"t::{i}" for i in range(3)], False), Group("b", [f"t::{i}" for i in range(3, 7)], False)]
    share(groups, 10)
    every = scoring.cents([n for g in groups for n in g.nodeids], 10)
    assert [g.points for g in groups] == [sum(every[n] for n in g.nodeids) / 100 for g in groups]
    assert sum(g.points for g in groups) == pytest.approx(10)


def _nbgrader(course_dir: Path, command: str, *args: str) -> None:
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    from grader.notebooks import common
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    with common.bin_on_path():  # nbgrader shells out to alembic
        result = getattr(NbGraderAPI(config=config), command)(*args)
    assert result["success"], f"nbgrader {command} {args}: {result.get('error')}\n{result.get('log', '')[-3000:]}"


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
def test_a_notebook_with_a_mistake_gets_the_same_points_from_grade_nbgrader_and_gradescope(tmp_path, monkeypatch):
    pytest.importorskip("nbgrader")
    from grader.notebooks import build, course
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)
    monkeypatch.delenv("WORKBOOK_PARTIAL_CREDIT", raising=False)
    name = notebooks.notebook_name(STAGE)
    # The notebooks built afresh from the source (notebooks/ may be stale while stages are being added).
    fresh = build.generate([STAGE])[notebooks.common.NOTEBOOKS / "instructor" / f"{name}.ipynb"]
    course_dir = tmp_path / "course"
    course.build_course(course_dir, [STAGE])
    (course_dir / "source" / name / f"{name}.ipynb").write_text(fresh, encoding="utf-8")
    _nbgrader(course_dir, "generate_assignment", name)
    released = json.loads((course_dir / "release" / name / f"{name}.ipynb").read_text())
    instructor = {c["id"]: c["source"] for c in json.loads(fresh)["cells"]}
    learner = copy.deepcopy(released)
    for cell in learner["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = instructor[cell["id"]]
    [cell] = [c for c in learner["cells"] if MISTAKE[0] in "".join(c["source"])]
    cell["source"] = "".join(cell["source"]).replace(*MISTAKE)
    submission = tmp_path / "learner"
    submission.mkdir()
    (submission / f"{name}.ipynb").write_text(json.dumps(learner))

    # nbgrader autograde
    folder = course_dir / "submitted" / "learner" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_text(json.dumps(learner))
    _nbgrader(course_dir, "autograde", name, "learner")
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gradebook:
        graded = gradebook.find_submission(name, "learner")
        by_nbgrader, nbgrader_max = graded.score, graded.max_score

    # grader grade
    summary = grade.grade([submission], grade.Options(out=tmp_path / "out", hidden=True, stages=(STAGE.id,)))
    [entry] = summary["submissions"]

    # the Gradescope autograder, in a fake /autograder
    zip_path = tmp_path / "autograder.zip"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "grader", "gradescope", str(zip_path), "--stages", STAGE.id],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir(parents=True)
    (root / "submission" / f"{name}.ipynb").write_text(json.dumps(learner))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORKBOOK_ROOT")}
    env.update(AUTOGRADER_ROOT=str(root), NO_COLOR="1", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                   timeout=600)
    by_gradescope = json.loads((root / "results" / "results.json").read_text())

    maximum = STAGE.visible_points + STAGE.hidden_points
    assert entry["max_points"] == maximum and nbgrader_max == pytest.approx(maximum, abs=1e-9)
    assert 0 < entry["points"] < maximum, f"the mistake ({MISTAKE[1]}) should cost some points: {entry}"
    assert by_nbgrader == pytest.approx(entry["points"], abs=1e-9), ("nbgrader", by_nbgrader, "grade", entry)
    assert by_gradescope["score"] == pytest.approx(entry["points"], abs=1e-9), ("gradescope", by_gradescope["score"])
    assert sum(t["score"] for t in by_gradescope["tests"]) == pytest.approx(entry["points"], abs=1e-9)
    assert sum(t["max_score"] for t in by_gradescope["tests"]) == pytest.approx(maximum, abs=1e-9)
    page = (tmp_path / "out" / "feedback" / "learner.md").read_text()
    assert f"/ {maximum:g} points" in page
