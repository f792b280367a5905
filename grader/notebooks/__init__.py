"""One Jupyter notebook per stage, generated from the same one source as everything else, and its nbgrader course.

    python -m grader notebooks [STAGE ...] [--check]   # regenerate notebooks/instructor/ and notebooks/student/
    python -m grader nbgrader-course DIR [STAGE ...]   # lay out an nbgrader course in DIR

A stage's notebook is built from solutions/<module>.py with its solution markers (cells.py: one code cell per
top-level def or class), docs/NN-*.md (cells.py: markdown cells, split at headings, worded for a notebook) and the
stage's suites as pytest collects them (groups.py: one test cell per concept, worth the manifest's points in
proportion to its tests; the hidden suite between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`).
notebooks/instructor/ holds that nbgrader source; notebooks/student/ holds what nbgrader's own `generate_assignment`
makes of it, checked to be the skeleton and nothing more (build.py). Nothing in here knows any stage: the manifest
says which there are.

    common.py    where notebooks live, the stub nbgrader writes, NotebookError
    cells.py     the module and the page, cut into cells
    groups.py    the suites, collected into test groups with their points
    build.py     the instructor and student notebooks; `notebooks`
    runtime.py   inside a notebook's kernel: setup, run_tests, todo (the only part a learner's kernel imports)
    convert.py   notebooks back into modules (so `grade` accepts notebook submissions); the skeleton check
    course.py    an nbgrader course; `nbgrader-course`

See docs/instructors.md, "Notebooks and nbgrader".
"""
from __future__ import annotations

from .build import generate, stale
from .common import NOTEBOOKS, NotebookError, notebook_name
from .convert import modules_from_notebooks
from .runtime import run_tests, setup, todo

__all__ = ["NOTEBOOKS", "NotebookError", "generate", "modules_from_notebooks", "notebook_name", "register",
           "run_tests", "setup", "stale", "todo"]


def register(commands) -> None:
    """Add `notebooks` and `nbgrader-course` to the grader's command line."""
    from . import build, course
    build.register(commands)
    course.register(commands)
