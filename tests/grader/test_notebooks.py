"""The stage notebooks (grader/notebooks/): up to date, valid nbgrader source, solved by the reference, stubbed for
students exactly like exercises/, gradable by nbgrader, and convertible back into modules that pass their suites.

The notebooks of every stage are executed once, two kernels at a time, by a module-scoped fixture.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("nbgrader")

from grader import cli, manifest, notebooks  # noqa: E402
from grader.instructor import grade  # noqa: E402
from grader.suites import runner  # noqa: E402
from grader.manifest import ROOT  # noqa: E402

STAGES = manifest.stages()
KINDS = ("instructor", "student")
NBGRADER_KEYS = {"schema_version", "grade", "solution", "locked", "grade_id", "points", "task", "checksum", "cell_type"}
STUB_LINE = re.compile(r"^- (\w[^:]*): (.*)$")


def _path(kind: str, stage: manifest.Stage) -> Path:
    return notebooks.NOTEBOOKS / kind / f"{notebooks.notebook_name(stage)}.ipynb"


def _read(kind: str, stage: manifest.Stage):
    return nbformat.read(_path(kind, stage), as_version=4)


def _execute(kind: str, stage: manifest.Stage, folder: Path) -> list[dict] | Exception:
    """Run a notebook top to bottom in `folder` (with workbook/ beside it, as in a course); each code cell's outcome."""
    from nbclient import NotebookClient

    folder.mkdir(parents=True)
    if stage.requires:
        notebooks.write_prerequisites(stage, folder)
    try:
        notebook = _read(kind, stage)
        env = {**os.environ, "WORKBOOK_ROOT": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        NotebookClient(notebook, timeout=600, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute(env=env)
    except Exception as error:  # reported by the stage's own test, not by every test of the module
        return error
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        cells.append({"id": cell.id, "role": cell.metadata["workbook"]["role"], "text": text,
                      "error": (errors[0].ename, errors[0].evalue) if errors else None})
    return cells


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[tuple[str, str], list[dict] | Exception]:
    """(kind, stage id) -> the outcomes of every code cell, for every stage's instructor and student notebook."""
    root = tmp_path_factory.mktemp("executed")
    jobs = [(kind, stage) for stage in STAGES for kind in KINDS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(kind, stage.id): pool.submit(_execute, kind, stage, root / f"{kind}-{stage.id}")
                   for kind, stage in jobs}
        return {key: future.result() for key, future in futures.items()}


def _cells(executed: dict, kind: str, stage: manifest.Stage) -> list[dict]:
    found = executed[(kind, stage.id)]
    if isinstance(found, Exception):
        raise found
    return found


# ---------------------------------------------------------------- generated, and up to date


def test_regenerating_the_notebooks_changes_nothing(capsys):
    assert cli.main(["notebooks", "--check"]) == 0, (
        "stale notebooks:\n{}\nrun `python -m grader notebooks` and commit the result".format(
            "\n".join(capsys.readouterr())))
    assert sorted(p.name for p in (notebooks.NOTEBOOKS / "instructor").glob("*.ipynb")) == sorted(
        f"{notebooks.notebook_name(s)}.ipynb" for s in STAGES), "one instructor notebook per stage, and no other"


def test_check_lists_stale_and_missing_notebooks(tmp_path):
    (tmp_path / "same.ipynb").write_text("same")
    (tmp_path / "changed.ipynb").write_text("old")
    wanted = {tmp_path / "same.ipynb": "same", tmp_path / "changed.ipynb": "new", tmp_path / "missing.ipynb": "x"}
    assert notebooks.stale(wanted) == [tmp_path / "changed.ipynb", tmp_path / "missing.ipynb"]


def test_cut_marks_the_learners_bodies_points_imports_at_workbook_and_keeps_comments_with_their_def():
    source = '''"""A module."""
from __future__ import annotations

from . import bpe
from .tensor import Tensor, op

LIMIT = 3


# a comment that introduces f
def f(x: int) -> int:
    """Docstring."""

    y = x + 1  # the body starts here
    return y


class C:
    def given(self) -> int:
        return 1

    def mine(self):
        """Doc."""
        from .nn import Linear
        return Linear


TABLE = {1: 2}
OTHER = 4


if __name__ == "__main__":
    f(1)
'''
    chunks = notebooks.cut(source, {"f", "C.mine"})
    assert [(c.name, c.solution) for c in chunks] == [("header", False), ("f", True), ("C", True), ("code-3", False)]
    header, f, c, table = (chunk.source for chunk in chunks)
    assert "from workbook import bpe" in header and "from workbook.tensor import Tensor, op" in header
    assert f.startswith("# a comment that introduces f\ndef f")
    assert f.endswith('"""Docstring."""\n\n    ### BEGIN SOLUTION\n    y = x + 1  # the body starts here\n    return y\n'
                      '    ### END SOLUTION')
    assert "return 1\n" in c and "        ### BEGIN SOLUTION\n        from workbook.nn import Linear" in c
    assert table == "TABLE = {1: 2}\nOTHER = 4" and "__main__" not in "".join(x.source for x in chunks)
    module = notebooks.module_source({"cells": [
        {"cell_type": "code", "source": chunk.source, "metadata": {"workbook": {"role": "module-code", "module": "m"}}}
        for chunk in chunks]})[1]
    assert "from . import bpe" in module and "        from .nn import Linear" in module and "### " not in module


# ---------------------------------------------------------------- valid nbgrader source


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_notebook_is_valid_nbformat_and_nbgrader_schema_3(stage, kind):
    from nbgrader.nbgraderformat import MetadataValidator

    notebook = _read(kind, stage)
    nbformat.validate(notebook)
    MetadataValidator().validate_nb(notebook)  # nbgrader's own check of schema 3
    grade_ids, points = [], {False: 0.0, True: 0.0}
    for cell in notebook.cells:
        assert cell.metadata["workbook"]["stage"] == stage.id, f"{cell.id}: our metadata lives in metadata.workbook"
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        assert set(meta) <= NBGRADER_KEYS and meta["schema_version"] == 3, f"{cell.id}: {sorted(meta)}"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", meta["grade_id"]), meta["grade_id"]
        grade_ids.append(meta["grade_id"])
        if meta["grade"]:
            assert meta["locked"] and meta["points"] > 0, f"{cell.id}: a test cell is locked and worth points"
            points[cell.metadata["workbook"]["role"] == "hidden-tests"] += meta["points"]
    assert len(grade_ids) == len(set(grade_ids)), f"grade_ids repeat: {grade_ids}"
    assert points[False] == pytest.approx(stage.visible_points) and points[True] == pytest.approx(stage.hidden_points)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_stub_is_a_solution_region_and_the_student_version_has_no_solution(stage):
    stubs = notebooks.stubs((ROOT / stage.exercise_file).read_text())
    instructor, student = (json.dumps(_read(k, stage).cells) for k in KINDS)
    assert instructor.count(notebooks.BEGIN_SOLUTION) == instructor.count(notebooks.END_SOLUTION) == len(stubs)
    assert notebooks.BEGIN_SOLUTION not in student and notebooks.BEGIN_HIDDEN not in student
    assert "tests/hidden/" not in student, "the student notebook names a hidden test"
    assert student.count("raise NotImplementedError(todo())") == len(stubs)


# ---------------------------------------------------------------- executed


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_instructor_notebook_runs_top_to_bottom_with_every_test_cell_passing(stage, executed):
    cells = _cells(executed, "instructor", stage)
    failed = [f"{c['id']}: {c['error'][0]}: {c['error'][1][:1500]}" for c in cells if c["error"]]
    assert not failed, "\n".join(failed)
    tests = [c for c in cells if c["role"] in ("tests", "hidden-tests")]
    assert tests and all(re.search(r"(\d+) of \1 tests passed", c["text"]) for c in tests), tests


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_student_notebook_fails_its_test_cells_only_with_not_implemented_error(stage, executed):
    cells = _cells(executed, "student", stage)
    others = [f"{c['id']}: {c['error']}" for c in cells if c["error"] and c["role"] != "tests"]
    assert not others, "cells other than visible test cells failed:\n" + "\n".join(others)
    for cell in (c for c in cells if c["role"] == "tests"):
        assert cell["error"] and cell["error"][0] == "AssertionError", f"{cell['id']} passed against the stubs"
        failures = [m for m in map(STUB_LINE.match, cell["error"][1].splitlines()) if m]
        assert failures, cell["error"][1]
        for failure in failures:
            assert failure[2].startswith(f"NotImplementedError: stage {stage.id} ("), (
                f"{cell['id']}, {failure[1]} did not fail as unfinished: {failure[2][:500]}")


# ---------------------------------------------------------------- back into modules


def _functions(source: str) -> dict[str, str]:
    """Qualified name -> the dump of its body after the docstring."""
    found = {}
    for name, node in notebooks._functions(ast.parse(source)):
        body = node.body[1:] if notebooks._docstring_node(node) else node.body
        found[name] = "\n".join(ast.dump(statement) for statement in body)
    return found


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_notebooks_give_back_the_reference_and_the_skeleton(stage, tmp_path):
    [solved] = notebooks.modules_from_notebooks([_path("instructor", stage)], tmp_path / "solved")
    [stubbed] = notebooks.modules_from_notebooks([_path("student", stage)], tmp_path / "stubbed")
    assert solved.name == stubbed.name == f"{stage.module}.py"
    reference = (ROOT / "solutions" / solved.name).read_text()
    assert _functions(solved.read_text()) == _functions(reference), "the solved notebook is not the reference module"
    assert ("from workbook" not in solved.read_text()
            and [line for line in solved.read_text().splitlines() if line.startswith("from .")]
            == [line for line in reference.splitlines() if line.startswith("from .")])
    skeleton = _functions((ROOT / stage.exercise_file).read_text())
    got = _functions(stubbed.read_text())
    for name in notebooks.stubs((ROOT / stage.exercise_file).read_text()):
        assert got[name] == skeleton[name], f"{name}: the student notebook's stub differs from exercises/ (message?)"


def test_a_solved_notebook_submission_passes_its_suite_and_grade_accepts_notebooks(tmp_path):
    stage = STAGES[0]
    submission = tmp_path / "alice"
    shutil.copytree(ROOT / "notebooks" / "instructor", submission)
    (submission / "workbook").mkdir()  # beside a notebook: the reference's earlier stages, never the submission
    shutil.copy(ROOT / "solutions" / f"{stage.module}.py", submission / "workbook")
    package = grade._unpack(submission, tmp_path / "unpacked")
    assert sorted(p.name for p in package.glob("*.py")) == sorted(
        f"{s.module}.py" for s in STAGES if _path("instructor", s).exists())
    run = runner.run([stage], str(package), hidden=True)
    assert run.ok, [(t.name, t.message) for t in run.stages[0].tests if not t.passed]
    with pytest.raises(grade.SubmissionProblem, match="no stage notebook"):
        (tmp_path / "scratch").mkdir()
        (tmp_path / "scratch" / "play.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
        grade._unpack(tmp_path / "scratch", tmp_path / "unpacked2")


# ---------------------------------------------------------------- nbgrader itself


def _nbgrader(course: Path, command: str, *args: str) -> None:
    """Run an nbgrader command through its API, configured by the course's own nbgrader_config.py."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()  # sets WORKBOOK_ROOT
    with notebooks._bin_on_path():  # nbgrader shells out to alembic
        result = getattr(NbGraderAPI(config=config), command)(*args)
    assert result["success"], f"nbgrader {command} {args}: {result.get('error')}\n{result.get('log', '')[-3000:]}"


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader 0.9 on SQLAlchemy 2.1: harmless
def test_nbgrader_grades_a_correct_and_a_broken_submission(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)  # the course's config sets it; undone after the test
    stage = STAGES[0]
    name = notebooks.notebook_name(stage)
    course = tmp_path / "course"
    notebooks.build_course(course, [stage])
    source = course / "source" / name
    assert (source / f"{name}.ipynb").exists() and (source / "grader" / "notebooks.py").exists()
    assert not (source / "solutions").exists() and not (source / "tests" / "hidden").exists()
    _nbgrader(course, "generate_assignment", name)
    released = json.loads((course / "release" / name / f"{name}.ipynb").read_text())
    assert released["cells"] == json.loads(_path("student", stage).read_text())["cells"], (
        "notebooks/student/ is not what `nbgrader generate_assignment` gives")

    instructor = {c["id"]: c["source"] for c in json.loads((source / f"{name}.ipynb").read_text())["cells"]}
    solved = copy.deepcopy(released)
    for cell in solved["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = instructor[cell["id"]]
    broken = copy.deepcopy(solved)
    [victim] = [c for c in broken["cells"] if c["id"] == f"{stage.module}-{_first_solution(stage)}"]
    victim["source"] = _break(victim["source"])
    for student, notebook in (("right", solved), ("wrong", broken)):
        folder = course / "submitted" / student / name
        folder.mkdir(parents=True)
        (folder / f"{name}.ipynb").write_text(json.dumps(notebook))
    for student in ("right", "wrong"):
        _nbgrader(course, "autograde", name, student)

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        right = gradebook.find_submission(name, "right")
        assert right.max_score == pytest.approx(stage.visible_points + stage.hidden_points)
        assert right.score == pytest.approx(right.max_score), "the reference lost points under nbgrader"
        wrong = gradebook.find_submission(name, "wrong")
        assert 0 < wrong.score < wrong.max_score
        lost = {g.name for g in gradebook.find_submission_notebook(name, name, "wrong").grades if g.score < g.max_score}
    assert any(g.startswith("test-") for g in lost) and any(g.startswith("hidden-") for g in lost), (
        f"the broken function should fail visible and hidden cells (the hidden ones run at autograde): {lost}")

    # A student's kernel, in the released folder and without the course's WORKBOOK_ROOT, uses the kit beside the
    # notebook: the visible suite, judged with the stored expected outputs.
    from nbclient import NotebookClient
    student = tmp_path / "student"
    shutil.copytree(course / "release" / name, student)
    notebook = nbformat.reads(json.dumps(solved), as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_ROOT"}
    NotebookClient(notebook, timeout=600, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(student)}}).execute(env=env)
    outputs = {c.id: c.outputs for c in notebook.cells if c.cell_type == "code"}
    assert "stored outputs" in outputs["setup"][0]["text"], outputs["setup"]
    errors = [f"{i}: {o['evalue'][:500]}" for i, out in outputs.items() for o in out if o.output_type == "error"]
    assert not errors, errors


def _first_solution(stage: manifest.Stage) -> str:
    notebook = _read("instructor", stage)
    return next(c.metadata["workbook"]["name"] for c in notebook.cells
                if c.metadata.get("nbgrader", {}).get("solution"))


def _break(source: str | list[str]) -> str:
    """Make the first solution region of a cell return None right away: wrong, but not unfinished."""
    lines = ("".join(source) if isinstance(source, list) else source).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == notebooks.BEGIN_SOLUTION:
            lines.insert(i + 1, line.replace(notebooks.BEGIN_SOLUTION, "return None"))
            break
    return "\n".join(lines)
