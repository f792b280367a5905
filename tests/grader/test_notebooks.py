"""The stage notebooks (grader/notebooks/): up to date, valid nbgrader source, solved by the reference, the skeleton
and nothing more for students, worded for a notebook learner, failing with a short verdict in the notebook's terms,
gradable by nbgrader, and convertible back into modules that pass their suites.

The notebooks of the stages the selected tests need are executed once, two kernels at a time, by a module-scoped
fixture.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("nbgrader")

from grader import cli, manifest, notebooks  # noqa: E402
from grader.instructor import grade  # noqa: E402
from grader.manifest import ROOT  # noqa: E402
from grader.notebooks import build, cells, common, convert, course, runtime  # noqa: E402
from grader.source import BEGIN, END, functions, learner_writes, reference, regions  # noqa: E402
from grader.suites import runner  # noqa: E402

STAGES = tuple(s for s in manifest.stages() if s.notebook)  # stage 13's MPI ranks need a module file: no notebook
KINDS = ("instructor", "student")
NBGRADER_KEYS = {"schema_version", "grade", "solution", "locked", "grade_id", "points", "task", "checksum", "cell_type"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _path(kind: str, stage: manifest.Stage) -> Path:
    return notebooks.NOTEBOOKS / kind / f"{notebooks.notebook_name(stage)}.ipynb"


def _read(kind: str, stage: manifest.Stage):
    return nbformat.read(_path(kind, stage), as_version=4)


def _source(stage: manifest.Stage) -> str:
    return (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8")


def _run(notebook, folder: Path, env: dict | None = None):
    from nbclient import NotebookClient

    env = env if env is not None else {**os.environ, "WORKBOOK_ROOT": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    NotebookClient(notebook, timeout=600, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    return notebook


def _outcomes(notebook) -> list[dict]:
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        found.append({"id": cell.id, "role": cell.metadata["workbook"]["role"],
                      "text": "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"),
                      "error": (errors[0].ename, errors[0].evalue) if errors else None,
                      "shown": "\n".join(ANSI.sub("", line) for line in errors[0].traceback) if errors else None})
    return found


def _execute(kind: str, stage: manifest.Stage, folder: Path) -> list[dict] | Exception:
    """Run a notebook top to bottom in `folder` (with workbook/ beside it, as in a course); each code cell's outcome."""
    folder.mkdir(parents=True)
    if common.workbook_modules(stage):
        course.write_prerequisites(stage, folder)
    try:
        return _outcomes(_run(_read(kind, stage), folder))
    except Exception as error:  # reported by the stage's own test, not by every test of the module
        return error


@pytest.fixture(scope="module")
def executed(request, tmp_path_factory) -> dict[tuple[str, str], list[dict] | Exception]:
    """(kind, stage id) -> the outcomes of every code cell, for the instructor and student notebook of every stage
    that a selected test needs."""
    wanted = {item.callspec.params["stage"].id for item in request.session.items
              if "executed" in getattr(item, "fixturenames", ())
              and "stage" in getattr(getattr(item, "callspec", None), "params", {})}
    root = tmp_path_factory.mktemp("executed")
    jobs = [(kind, stage) for stage in STAGES if stage.id in wanted for kind in KINDS]
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
    assert build.stale(wanted) == [tmp_path / "changed.ipynb", tmp_path / "missing.ipynb"]


MARKED = f'''"""A module."""
from __future__ import annotations

from . import bpe
from .tensor import Tensor, op

LIMIT = 3
{BEGIN}
_SECRET = 7  # reference-only, in the header
{END}


# a comment that introduces f
def f(x: int) -> int:
    """Docstring."""

    {BEGIN}
    y = x + 1  # the body starts here
    return _helper(y)
    {END}


{BEGIN}
def _helper(y: int) -> int:
    return y * _SECRET
{END}


class C:
    def given(self) -> int:
        return 1

    {BEGIN}
    def _private(self) -> int:
        return 2
    {END}

    def mine(self):
        """Doc."""
        {BEGIN}
        from .nn import Linear
        return Linear
        {END}


TABLE = {{1: 2}}
OTHER = 4


if __name__ == "__main__":
    f(1)
'''


def test_cut_keeps_the_markers_gives_reference_only_code_cells_of_its_own_and_points_imports_at_workbook():
    chunks = cells.cut(MARKED)
    assert [(c.name, c.solution) for c in chunks] == [
        ("header", False), ("helpers-1", True), ("f", True), ("helpers-2", True), ("C", True), ("code-5", False)]
    header, secret, f, helper, c, table = (chunk.source for chunk in chunks)
    assert "from workbook import bpe" in header and "from workbook.tensor import Tensor, op" in header
    assert header.endswith("LIMIT = 3") and BEGIN not in header, "the header is read-only: no region in it"
    assert secret == f"{cells.HELPERS_NOTE}\n{BEGIN}\n_SECRET = 7  # reference-only, in the header\n{END}"
    assert f.startswith("# a comment that introduces f\ndef f")
    assert f.endswith(f'"""Docstring."""\n\n    {BEGIN}\n    y = x + 1  # the body starts here\n    return _helper(y)\n'
                      f'    {END}')
    assert helper.startswith(f"{cells.HELPERS_NOTE}\n{BEGIN}\ndef _helper") and helper.endswith(END)
    assert f"    {cells.HELPERS_NOTE}\n    {BEGIN}\n    def _private" in c
    assert "return 1\n" in c and f"        {BEGIN}\n        from workbook.nn import Linear" in c
    assert table == "TABLE = {1: 2}\nOTHER = 4" and "__main__" not in "".join(x.source for x in chunks)


def _as_notebook(texts: list[str], module: str = "m") -> dict:
    return {"cells": [{"cell_type": "code", "source": text,
                       "metadata": {"workbook": {"role": "module-code", "module": module}}} for text in texts]}


def test_a_cut_module_converts_back_and_its_stubbed_cells_give_the_skeleton():
    chunks = cells.cut(MARKED)
    solved = convert.module_source(_as_notebook([c.source for c in chunks]))[1]
    assert "from . import bpe" in solved and "        from .nn import Linear" in solved and "### " not in solved
    assert {n for n, _ in functions(ast.parse(solved))} == {n for n, _ in functions(ast.parse(reference(MARKED)))}
    stubbed = [re.sub(rf"( *){BEGIN}.*?{END}", lambda m: m[1] + common.CODE_STUB.replace("\n", "\n" + m[1]),
                      c.source, flags=re.S) for c in chunks]  # what nbgrader's ClearSolutions does
    module = convert.module_source(_as_notebook(stubbed))[1]
    assert 'raise NotImplementedError("f")' in module and 'raise NotImplementedError("C.mine")' in module
    assert "todo()" not in module and "_SECRET" not in module and "_helper(y: int)" not in module
    assert "_private" not in module and module.count("# YOUR CODE HERE") == 2, "only the functions keep theirs"


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
def test_the_solution_regions_are_the_sources_and_the_student_version_has_none(stage):
    marked = regions(_source(stage))
    instructor, student = (json.dumps(_read(k, stage).cells) for k in KINDS)
    assert instructor.count(BEGIN) == instructor.count(END) == len(marked)
    assert BEGIN not in student and build.BEGIN_HIDDEN not in student
    assert "tests/hidden/" not in student, "the student notebook names a hidden test"
    stub = r"\n *".join(map(re.escape, common.CODE_STUB.splitlines()))  # at any indentation
    stubs = sum(len(re.findall(stub, c.source)) for c in _read("student", stage).cells if c.cell_type == "code")
    assert stubs == len(marked), "one stub per marked region"


# ---------------------------------------------------------------- nothing of the reference for students


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_function_of_the_student_notebook_is_a_stub_or_given_code_identical_to_the_source(stage):
    student = json.loads(_path("student", stage).read_text(encoding="utf-8"))
    assert convert.unlike_skeleton(student, stage) == []
    # and, independently of the skeleton: no body the learner writes and no reference-only line is in the notebook
    text = "\n".join("".join(c["source"]) for c in student["cells"])
    source = _source(stage)
    lines = source.splitlines()
    for region in regions(source):
        body = [line.strip() for line in lines[region.begin + 1:region.end]
                if len(line.strip()) >= 16 and not line.strip().startswith("#")]  # (not `else:`, `return x`)
        if region.function is None:
            leaked = [line for line in body if line in {x.strip() for x in text.splitlines()}
                      and line not in {x.strip() for x in (ROOT / stage.exercise_file).read_text().splitlines()}]
            assert not leaked, f"reference-only lines of solutions/{stage.module}.py in the student notebook: {leaked}"
        elif len(body) >= 2:
            assert "\n".join(body) not in "\n".join(x.strip() for x in text.splitlines()), (
                f"the reference body of {region.function} is in the student notebook")


def test_the_skeleton_check_finds_a_planted_body_and_a_reference_only_helper():
    stage = next(s for s in STAGES if any(r.function is None for r in regions(_source(s))))
    planted = json.loads(_path("instructor", stage).read_text(encoding="utf-8"))  # every body, every helper
    problems = convert.unlike_skeleton(planted, stage)
    assert any("neither the skeleton's stub nor its given code" in p for p in problems), problems
    assert any("is not in the skeleton" in p for p in problems), problems
    assert all(p.startswith(f"{stage.id}-{stage.module}") for p in problems)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_the_page_speaks_to_a_notebook_learner(stage):
    notebook = _read("student", stage)
    pages = [c for c in notebook.cells if c.metadata["workbook"]["role"] in ("intro", "doc", "heading")]
    prose = re.sub(r"```.*?```", "", "\n".join(c.source for c in pages), flags=re.S)  # code blocks stay as written
    assert f"exercises/{stage.module}.py" not in prose and "solutions/" not in prose
    assert not re.search(r"python -m (grader|pytest)\b", prose), "a notebook learner runs the test cells"
    assert "test cell" in prose


def test_the_page_rewording_keeps_code_and_the_rest_of_the_sentence():
    stage = STAGES[0]
    text = (f"Intro.\n\nYou edit `exercises/{stage.module}.py`. Run it with `python -m grader check {stage.id}` (or\n"
            f"`python -m pytest tests/stage{stage.id}`). It reads `exercises/other.py`.\n\n```\npython -m grader\n```")
    assert cells.for_notebook(text, stage) == (
        f"Intro.\n\nYou fill in this notebook's code cells (the module `{stage.module}.py`). "
        f"{cells.CHECK_IN_NOTEBOOK} It reads `other.py`.\n\n```\npython -m grader\n```")


# ---------------------------------------------------------------- executed


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_instructor_notebook_runs_top_to_bottom_with_every_test_cell_passing(stage, executed):
    found = _cells(executed, "instructor", stage)
    failed = [f"{c['id']}: {c['error'][0]}: {c['error'][1][:1500]}" for c in found if c["error"]]
    assert not failed, "\n".join(failed)
    tests = [c for c in found if c["role"] in ("tests", "hidden-tests")]
    assert tests and all(re.search(r"(\d+) of \1 tests passed", c["text"]) for c in tests), tests


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_student_notebook_fails_its_test_cells_with_a_short_verdict_naming_the_unwritten_functions(stage, executed):
    found = _cells(executed, "student", stage)
    others = [f"{c['id']}: {c['error']}" for c in found if c["error"] and c["role"] != "tests"]
    assert not others, "cells other than visible test cells failed:\n" + "\n".join(others)
    writes = set(learner_writes(_source(stage)))
    for cell in (c for c in found if c["role"] == "tests"):
        assert cell["error"] and cell["error"][0] == "TestsFailed", f"{cell['id']} passed against the stubs"
        shown = cell["shown"]
        assert re.match(rf"\d+ of \d+ tests? failed, in this notebook \({stage.id}-{stage.module}\):", shown), shown
        assert "Traceback" not in shown and "grader" not in shown and not re.search(r"\d{6,}\.py", shown), shown
        assert max(map(len, shown.splitlines())) <= runtime.WIDTH, "verdict lines wrap for nbgrader's feedback page"
        named = re.findall(r"^    (\S+) is not written yet: in cell \[\d+\] of this notebook, replace `todo\(\)`",
                           shown, re.M)
        assert named and set(named) <= writes, f"{cell['id']}: every failure names an unwritten function:\n{shown}"


def test_an_error_in_the_learners_code_points_at_its_cell_and_line(tmp_path):
    stage = STAGES[0]
    notebook = _read("instructor", stage)
    name = _first_solution(stage)
    [victim] = [c for c in notebook.cells if c.metadata["workbook"].get("name") == name]
    victim.source = _break(victim.source, "empty = [][0]  # a bug of the learner's")
    notebook.cells = [c for c in notebook.cells if c.metadata["workbook"]["role"] != "hidden-tests"]
    found = _outcomes(_run(notebook, tmp_path))
    shown = [c["shown"] for c in found if c["error"]]
    assert shown and all(re.match(r"\d+ of \d+ tests? failed, in this notebook", s) for s in shown), shown
    unwrapped = [" ".join(line.strip() for line in s.splitlines()) for s in shown]
    assert any(re.search(rf"IndexError: list index out of range at {re.escape(name)}\S*, cell \[\d+\] of this "
                         rf"notebook, line \d+: empty = \[\]\[0\]", s) for s in unwrapped), shown[0]


def test_the_runtime_imports_nothing_unix_only():
    code = ("import sys; sys.modules.update(pwd=None, resource=None, fcntl=None, termios=None); "
            "from grader.notebooks import run_tests, setup, todo; import grader.notebooks.runtime; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_todo_raises_in_a_function_and_does_nothing_at_module_or_class_level():
    namespace = {"todo": runtime.todo}
    exec("class K:\n    todo()\n    def m(self):\n        todo()\ntodo()\n", namespace)
    with pytest.raises(NotImplementedError, match="m$"):
        namespace["K"]().m()


# ---------------------------------------------------------------- back into modules


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_notebooks_give_back_the_reference_and_the_skeleton(stage, tmp_path):
    [solved] = notebooks.modules_from_notebooks([_path("instructor", stage)], tmp_path / "solved")
    [stubbed] = notebooks.modules_from_notebooks([_path("student", stage)], tmp_path / "stubbed")
    assert solved.name == stubbed.name == f"{stage.module}.py"
    want = reference(_source(stage))
    dump = lambda text: {n: ast.dump(node) for n, node in functions(ast.parse(text))}  # noqa: E731
    assert dump(solved.read_text()) == dump(want), "the solved notebook is not the reference module"
    assert ("from workbook" not in solved.read_text()
            and [line for line in solved.read_text().splitlines() if line.startswith("from .")]
            == [line for line in want.splitlines() if line.startswith("from .")])
    skeleton = dump((ROOT / stage.exercise_file).read_text())
    assert dump(stubbed.read_text()) == skeleton, "the student notebook's module is not exercises/ (stub messages?)"


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


def _nbgrader(course_dir: Path, command: str, *args: str) -> None:
    """Run an nbgrader command through its API, configured by the course's own nbgrader_config.py."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()  # sets WORKBOOK_ROOT
    with common.bin_on_path():  # nbgrader shells out to alembic
        result = getattr(NbGraderAPI(config=config), command)(*args)
    assert result["success"], f"nbgrader {command} {args}: {result.get('error')}\n{result.get('log', '')[-3000:]}"


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader 0.9 on SQLAlchemy 2.1: harmless
def test_nbgrader_grades_a_correct_and_a_broken_submission(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)  # the course's config sets it; undone after the test
    stage = STAGES[0]
    name = notebooks.notebook_name(stage)
    course_dir = tmp_path / "course"
    course.build_course(course_dir, [stage])
    source = course_dir / "source" / name
    assert (source / f"{name}.ipynb").exists() and (source / "grader" / "notebooks" / "runtime.py").exists()
    assert not (source / "solutions").exists() and not (source / "tests" / "hidden").exists()
    _nbgrader(course_dir, "generate_assignment", name)
    released = json.loads((course_dir / "release" / name / f"{name}.ipynb").read_text())
    assert released["cells"] == json.loads(_path("student", stage).read_text())["cells"], (
        "notebooks/student/ is not what `nbgrader generate_assignment` gives")

    instructor = {c["id"]: c["source"] for c in json.loads((source / f"{name}.ipynb").read_text())["cells"]}
    solved = copy.deepcopy(released)
    for cell in solved["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = instructor[cell["id"]]
    broken = copy.deepcopy(solved)
    [victim] = [c for c in broken["cells"] if c["id"] == f"{stage.module}-{_first_solution(stage)}"]
    victim["source"] = _break(victim["source"], "return None")
    for student, notebook in (("right", solved), ("wrong", broken)):
        folder = course_dir / "submitted" / student / name
        folder.mkdir(parents=True)
        (folder / f"{name}.ipynb").write_text(json.dumps(notebook))
    for student in ("right", "wrong"):
        _nbgrader(course_dir, "autograde", name, student)

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gradebook:
        right = gradebook.find_submission(name, "right")
        assert right.max_score == pytest.approx(stage.visible_points + stage.hidden_points)
        assert right.score == pytest.approx(right.max_score), "the reference lost points under nbgrader"
        wrong = gradebook.find_submission(name, "wrong")
        assert 0 < wrong.score < wrong.max_score
        lost = {g.name for g in gradebook.find_submission_notebook(name, name, "wrong").grades if g.score < g.max_score}
    assert any(g.startswith("test-") for g in lost) and any(g.startswith("hidden-") for g in lost), (
        f"the broken function should fail visible and hidden cells (the hidden ones run at autograde): {lost}")

    # The feedback page shows each failing cell's verdict, in lines short enough for its <pre>, and no traceback.
    _nbgrader(course_dir, "generate_feedback", name, "wrong")
    page = (course_dir / "feedback" / "wrong" / name / f"{name}.html").read_text(encoding="utf-8")
    verdicts = re.findall(r'<div class="output_subarea output_text output_error">\s*<pre>(.*?)</pre>', page, re.S)
    assert verdicts, "no failing cell in the feedback"
    for verdict in verdicts:
        text = re.sub(r"<[^>]+>", "", verdict)
        assert "failed, in this notebook" in text and "Traceback" not in text, text
        assert max(len(line) for line in text.splitlines()) <= runtime.WIDTH + 10, text  # (+ HTML entities)

    # A student's kernel, in the released folder and without the course's WORKBOOK_ROOT, uses the kit beside the
    # notebook: the visible suite, judged with the stored expected outputs.
    student_dir = tmp_path / "student"
    shutil.copytree(course_dir / "release" / name, student_dir)
    notebook = _run(nbformat.reads(json.dumps(solved), as_version=4), student_dir,
                    env={k: v for k, v in os.environ.items() if k != "WORKBOOK_ROOT"})
    outputs = {c.id: c.outputs for c in notebook.cells if c.cell_type == "code"}
    assert "stored outputs" in outputs["setup"][0]["text"], outputs["setup"]
    errors = [f"{i}: {o['evalue'][:500]}" for i, out in outputs.items() for o in out if o.output_type == "error"]
    assert not errors, errors


def _first_solution(stage: manifest.Stage) -> str:
    """The name of the first cell that holds a function the learner writes."""
    writes = learner_writes(_source(stage))
    notebook = _read("instructor", stage)
    return next(c.metadata["workbook"]["name"] for c in notebook.cells
                if c.metadata.get("nbgrader", {}).get("solution") and any(
                    w.split(".")[0] == c.metadata["workbook"]["name"] for w in writes))


def _break(source: str | list[str], line: str) -> str:
    """Put `line` first in the cell's first solution region: wrong (return None) or raising, but not unfinished."""
    lines = ("".join(source) if isinstance(source, list) else source).splitlines()
    for i, text in enumerate(lines):
        if text.strip() == BEGIN:
            lines.insert(i + 1, text.replace(BEGIN, line))
            break
    return "\n".join(lines)


def test_a_stage_without_a_notebook_gets_none_and_its_page_says_why():
    """Stage 13's ranks are separate processes importing the learner's module from its file: no notebook is made for
    it (grader/stages.toml: notebook = false), and its page tells a notebook learner where to work instead."""
    without = [s for s in manifest.stages() if not s.notebook]
    assert [s.id for s in without] == ["13"]
    names = {path.stem for path in (ROOT / "notebooks" / "student").glob("*.ipynb")}
    for stage in without:
        assert notebooks.notebook_name(stage) not in names
        assert "notebook" in (ROOT / stage.doc).read_text(encoding="utf-8").lower()
