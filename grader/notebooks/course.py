"""An nbgrader course of the stage notebooks, and the `nbgrader-course` command that lays it out."""
from __future__ import annotations

import shutil
from pathlib import Path

from .. import manifest
from ..instructor.release import copy_into
from ..manifest import ROOT, Stage
from ..source import reference
from .common import CODE_STUB, NOTEBOOKS, PREREQUISITES, NotebookError, notebook_name, workbook_modules

CELL_TIMEOUT = 300  # seconds; the first test cell runs the stage's whole visible suite
KIT = ("grader", "pyproject.toml", "tests/__init__.py", "tests/conftest.py")  # what runs the suites

COURSE_CONFIG = '''"""nbgrader's configuration of the workbook's course (from `python -m grader nbgrader-course`)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = HERE
c.Execute.timeout = {timeout}  # seconds per cell; the first test cell runs the stage's whole visible suite
# A stub calls todo(), which raises NotImplementedError naming the stage and the function, like exercises/ (todo() is
# set up in the notebook's read-only setup cell); outside a function it does nothing.
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
# The kernels nbgrader starts (validate, autograde) find the grader, every suite (the hidden ones too) and the
# reference in autograder/, which is outside source/ and so never released. Students' kernels, without this
# variable, use the kit released beside each notebook (visible suites, judged with the stored expected outputs).
os.environ.setdefault("WORKBOOK_ROOT", os.path.join(HERE, "autograder"))
# A failing test cell first shows the points its passed tests earn, each test an equal share of its suite's points
# (the rule `grader grade` and Gradescope use); nbgrader reads that result as the cell's partial credit.
os.environ.setdefault("WORKBOOK_PARTIAL_CREDIT", "1")
'''


def write_prerequisites(stage: Stage, folder: Path) -> Path:
    """folder/workbook/: the reference modules of the stage's prerequisites and the given modules, as a package."""
    package = folder / PREREQUISITES
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""The reference modules of the stages this notebook builds on."""\n',
                                         encoding="utf-8")
    for module in workbook_modules(stage):
        text = (ROOT / "solutions" / f"{module}.py").read_text(encoding="utf-8")
        (package / f"{module}.py").write_text(reference(text), encoding="utf-8")
    return package


def build_course(out: Path, stages: list[Stage] | None = None) -> list[Path]:
    """Lay out an nbgrader course in `out`; return the assignment folders written.

    out/nbgrader_config.py, out/source/<NN-module>/ (the instructor notebook, `workbook/` with the reference modules
    of its prerequisites, and the student kit: grader/, the visible suite and its stored expected outputs), and
    out/autograder/ (grader/, every suite with the hidden ones, solutions/) for the kernels nbgrader runs. Built again,
    it replaces those and leaves the gradebook, submitted/, autograded/ and feedback/ alone.
    """
    from ..suites import expected

    stages = [s for s in (stages or manifest.stages()) if s.notebook]  # see `notebook` in grader/stages.toml
    missing = [s.id for s in stages if not expected.path_for(s.id).exists()]
    if missing:
        raise NotebookError(f"no stored expected outputs for stages {missing} (students' kernels judge with them): "
                            f"run `python -m grader expected` first")
    absent = [notebook_name(s) for s in stages if not (NOTEBOOKS / "instructor" / f"{notebook_name(s)}.ipynb").exists()]
    if absent:
        raise NotebookError(f"no notebooks {absent}: run `python -m grader notebooks` first")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(COURSE_CONFIG.format(timeout=CELL_TIMEOUT, stub=CODE_STUB),
                                            encoding="utf-8")
    autograder = out / "autograder"
    shutil.rmtree(autograder, ignore_errors=True)
    for relative in (*KIT, "solutions", "tests/expected", "tests/hidden/__init__.py"):
        copy_into(relative, autograder)
    written = []
    for stage in stages:
        for hidden in (False, True):
            copy_into(stage.test_dir(hidden), autograder)
        folder = out / "source" / notebook_name(stage)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy2(NOTEBOOKS / "instructor" / f"{notebook_name(stage)}.ipynb", folder)
        if workbook_modules(stage):
            write_prerequisites(stage, folder)
        for relative in (*KIT, stage.test_dir(False), expected.path_for(stage.id).relative_to(ROOT)):
            copy_into(relative, folder)
        written.append(folder)
    return written


def cmd_nbgrader_course(args) -> int:
    """Lay out an nbgrader course in DIR."""
    folders = build_course(Path(args.dir), manifest.select(args.stages))
    root = Path(args.dir).resolve()
    print(f"wrote the nbgrader course {root}: nbgrader_config.py, autograder/ and "
          f"{', '.join(str(f.relative_to(root)) for f in folders)}")
    print(f"next: cd {root} && nbgrader generate_assignment {folders[0].name}")
    return 0


def register(commands) -> None:
    """Add `nbgrader-course` to the grader's command line."""
    course = commands.add_parser("nbgrader-course", help="instructors: lay out an nbgrader course in DIR")
    course.add_argument("dir", metavar="DIR")
    course.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    course.set_defaults(func=cmd_nbgrader_course)
