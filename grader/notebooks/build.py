"""Building the notebooks: a stage's cells and test groups into the instructor notebook (nbgrader source), nbgrader's
own student version of it, and the `notebooks` command that writes both into notebooks/ or lists the stale ones.
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from .cells import cut, page_cells
from .common import (CODE_STUB, NOTEBOOKS, PREREQUISITES, NotebookError, bin_on_path, notebook_name,
                     workbook_modules)
from .convert import unlike_skeleton
from .groups import Group, collect

BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SCHEMA = 3  # nbgrader's cell metadata schema

SETUP = '''# Setup (read-only): find the workbook (the folder that holds grader/: $WORKBOOK_ROOT, else this folder
# or the nearest one above it), make this notebook's definitions the target of the stage's tests, and make the
# earlier stages' modules importable as `{package}`.
import os
import sys
from pathlib import Path

for _folder in (os.environ.get("WORKBOOK_ROOT"), Path.cwd(), *Path.cwd().parents):
    if _folder and (Path(_folder) / "grader" / "stages.toml").is_file():
        _folder = str(Path(_folder).resolve())
        if sys.path[:1] != [_folder]:
            sys.path.insert(0, _folder)
        break
else:
    raise RuntimeError("cannot find the workbook's grader/: open this notebook inside the workbook (or its nbgrader "
                       "assignment folder), or set WORKBOOK_ROOT to the folder that holds grader/")

from grader.notebooks import run_tests, setup, todo

setup("{stage}", globals())'''

INTRO = """> **Stage {id}: {title}**, as a notebook.
>
> The page comes first, then the code, then the tests. Run the setup cell, then fill in every `# YOUR CODE HERE`:
> replace its `todo()` with your code and run the cell (read-only cells are given; a `todo()` outside a function
> marks a place for helpers of your own, if you want any). Each test cell at the end runs some of the stage's tests
> against your cells and, when one fails, says which test, what was expected and what came. The first one runs the
> whole suite (a few seconds); the others reuse its results until you change a definition.
>
> *Generated from the workbook's source of stage {id}.*"""


def _nbgrader(kind: str, grade_id: str | None = None, points: float = 0.0) -> dict:
    """nbgrader's cell metadata (schema 3): 'solution', 'tests' (graded) or 'readonly'."""
    return {"schema_version": SCHEMA, "grade": kind == "tests", "solution": kind == "solution",
            "locked": kind != "solution", "grade_id": grade_id, **({"points": points} if kind == "tests" else {})}


def _cell_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:64] or "cell"


def _test_source(group: Group) -> str:
    calls = "".join(f"    {json.dumps(n)},\n" for n in group.nodeids)
    call = f"run_tests(\n{calls})"
    tests = "test" if len(group.nodeids) == 1 else "tests"
    if group.hidden:
        return (f"# Hidden tests: {group.concept} ({group.points:g} points); the autograder runs them.\n"
                f"{BEGIN_HIDDEN}\n{call}\n{END_HIDDEN}")
    return f"# {len(group.nodeids)} {tests}: {group.concept} ({group.points:g} points)\n{call}"


def build(stage: Stage, groups: list[Group]):
    """The instructor notebook (nbgrader source) of one stage, as an nbformat NotebookNode."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    path = ROOT / "solutions" / f"{stage.module}.py"
    if not path.exists():
        raise NotebookError(f"stage {stage.id}: no {path.relative_to(ROOT)}")
    if not [g for g in groups if not g.hidden]:
        raise NotebookError(f"stage {stage.id}: no visible tests in {stage.test_dir()}")
    source = path.read_text(encoding="utf-8")
    workbook_modules(stage)  # NotebookError when an import is not among the modules a notebook can have
    chunks = cut(source, f"solutions/{stage.module}.py")
    cells = []

    def add(cell, role: str, cell_id: str, nbgrader: dict | None = None, **extra):
        cell.id = _cell_id(cell_id)
        cell.metadata = {"workbook": {"stage": stage.id, "module": stage.module, "role": role, **extra}}
        if nbgrader:
            cell.metadata["nbgrader"] = nbgrader
        cells.append(cell)

    add(new_markdown_cell(INTRO.format(id=stage.id, title=stage.title)), "intro", "intro")
    for i, text in enumerate(page_cells(stage)):
        add(new_markdown_cell(text), "doc", f"doc-{i + 1}")
    add(new_code_cell(SETUP.format(stage=stage.id, package=PREREQUISITES)), "setup", "setup",
        _nbgrader("readonly", "setup"))
    add(new_markdown_cell(f"## Your code: `{stage.module}.py`\n\nOne cell per function or class of the module. "
                          f"Fill in each `# YOUR CODE HERE`; earlier stages' modules come from `{PREREQUISITES}`."),
        "heading", "heading-code")
    for chunk in chunks:
        grade_id = _cell_id(f"{stage.module}-{chunk.name}")
        add(new_code_cell(chunk.source), "module-code", grade_id,
            _nbgrader("solution" if chunk.solution else "readonly", grade_id), name=chunk.name)
    add(new_markdown_cell(f"## Tests\n\nEach cell runs some of the stage's tests (`{stage.test_dir()}`) against "
                          f"your cells above and fails with a short verdict: each failed test, what was expected and "
                          f"what came, and a hint. The hidden tests run only when your notebook is graded."),
        "heading", "heading-tests")
    for group in groups:
        grade_id = _cell_id(f"{'hidden' if group.hidden else 'test'}-{group.concept}")
        add(new_code_cell(_test_source(group)), "hidden-tests" if group.hidden else "tests", grade_id,
            _nbgrader("tests", grade_id, group.points), concept=group.concept)
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise NotebookError(f"stage {stage.id}: cell ids {duplicates} are not unique (two chunks with one name?)")
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
        "workbook": {"stage": stage.id, "module": stage.module, "title": stage.title}})
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    nbformat.validate(notebook)
    return notebook


def dumps(notebook) -> str:
    import nbformat
    return nbformat.writes(notebook) + "\n"


def student_versions(notebooks: dict[str, str]) -> dict[str, str]:
    """name -> instructor notebook text  =>  name -> what `nbgrader generate_assignment` makes of it.

    Runs nbgrader's own converter in a scratch course, configured like the course `nbgrader-course` writes.
    """
    import nbformat
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    out = {}
    with tempfile.TemporaryDirectory(prefix="nbgrader-") as tmp:
        config = Config()
        config.CourseDirectory.root = tmp
        config.ClearSolutions.code_stub = {"python": CODE_STUB}
        for name, text in notebooks.items():
            (Path(tmp) / "source" / name).mkdir(parents=True)
            (Path(tmp) / "source" / name / f"{name}.ipynb").write_text(text, encoding="utf-8")
        api = NbGraderAPI(CourseDirectory(config=config), config=config)
        with bin_on_path():
            for name in notebooks:
                result = api.generate_assignment(name, force=True, create=True)
                if not result["success"]:
                    raise NotebookError(f"nbgrader generate_assignment {name} failed:\n{result['error']}\n"
                                        f"{result['log'][-3000:]}")
                released = Path(tmp) / "release" / name / f"{name}.ipynb"
                out[name] = dumps(nbformat.read(released, as_version=4))
    return out


def generate(stages: list[Stage] | None = None) -> dict[Path, str]:
    """path -> text of every notebook the stages should have (instructor and student); NotebookError when a student
    version holds anything but the skeleton (a reference body, a reference-only helper)."""
    stages = [s for s in (stages or manifest.stages()) if s.notebook]  # see `notebook` in grader/stages.toml
    groups = collect(stages)
    instructor = {notebook_name(s): dumps(build(s, groups[s.id])) for s in stages}
    student = student_versions(instructor)
    leaks = [problem for s in stages for problem in unlike_skeleton(json.loads(student[notebook_name(s)]), s)]
    if leaks:
        raise NotebookError("a student notebook is not the skeleton:\n  " + "\n  ".join(leaks))
    files = {}
    for name in instructor:
        files[NOTEBOOKS / "instructor" / f"{name}.ipynb"] = instructor[name]
        files[NOTEBOOKS / "student" / f"{name}.ipynb"] = student[name]
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]


def cmd_notebooks(args) -> int:
    """Regenerate the notebooks of the stages (all by default); with --check, write nothing and list stale ones."""
    files = generate(manifest.select(args.stages))
    old = stale(files)
    if args.check:
        for path in old:
            print(f"stale: {path.relative_to(ROOT)}")
        if old:
            print("run `python -m grader notebooks` to regenerate them", file=sys.stderr)
        return 1 if old else 0
    for path in old:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if not old:
        print(f"the {len(files)} notebooks are up to date")
    return 0


def register(commands) -> None:
    """Add `notebooks` to the grader's command line."""
    notebooks = commands.add_parser("notebooks", help="instructors: regenerate the stage notebooks (notebooks/)")
    notebooks.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    notebooks.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale notebooks")
    notebooks.set_defaults(func=cmd_notebooks)
