"""Every derived file is fresh, and `python -m grader build` is the one command that makes it so.

One freshness test per kind of derived file (grader/instructor/build.py): exercises/ (here), the stage tables (here),
the stored outputs (here), the notebooks (tests/grader/test_notebooks.py, test_regenerating_the_notebooks_changes_
nothing). Each failure names the stale files and the command that fixes them.
"""
from __future__ import annotations

import pytest

from grader import manifest, source
from grader.instructor import build
from grader.manifest import ROOT

from .checkout import copy_of_repository, run_in

STAGE = manifest.stages()[0]
MODULE = f"exercises/{STAGE.module}.py"
ORIGIN = f"solutions/{STAGE.module}.py"


def _listed(stale: list[build.Stale]) -> str:
    return "\n".join(f"  {s}" for s in stale)


# ---------------------------------------------------------------- fresh


def test_exercises_are_the_skeleton_generated_from_solutions():
    """The only test that reads the working exercises/: a learner's filled stubs are theirs, everything else in it
    comes from solutions/ (see build.exercise_problem)."""
    stale = build.stale_exercises()
    assert not stale, (f"exercises/ is not the skeleton of solutions/:\n{_listed(stale)}\nrun `python -m grader "
                       f"build` (it regenerates exercises/ from solutions/ and never overwrites a filled-in function)")


def test_the_stage_tables_are_generated_from_the_manifest():
    stale = build.stale_docs()
    assert not stale, f"stale stage tables:\n{_listed(stale)}\nrun `python -m grader build` (or `python -m grader docs`)"


def test_the_stored_outputs_are_what_the_reference_records_now():
    """Re-records the visible suites' reference outputs into a temporary store (one run of the visible suites, about
    20 s) and compares bytes: the stores are deterministic, so any difference is staleness."""
    stale = build.stale_expected()
    assert not stale, (f"stale stored outputs (the student release judges with them):\n{_listed(stale)}\nrun "
                       f"`python -m grader build` (or `python -m grader expected`)")


# ---------------------------------------------------------------- what "fresh" means for exercises/


def _skeleton() -> tuple[str, set[str]]:
    return build.exercise_texts()[MODULE], build.learner_functions()[MODULE]


def _filled(skeleton: str, function: str, body: str) -> str:
    """The skeleton with one stub's raise replaced by `body` (indented like the raise)."""
    message = source.stub_message(STAGE.id, STAGE.title, function)
    lines = skeleton.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip() == f'raise NotImplementedError("{message}")')
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    lines[i:i + 1] = [indent + line if line else "" for line in body.splitlines()]
    return "\n".join(lines) + "\n"


def test_filled_stubs_leave_the_skeleton_fresh():
    skeleton, learner = _skeleton()
    assert build.exercise_problem(skeleton, skeleton, learner, ORIGIN) is None
    work = skeleton
    for function in sorted(learner):  # every stub filled, with comments and blank lines the skeleton never had
        work = _filled(work, function, "# my attempt\nvalue = 1\n\nreturn value  # done\n\n    # a trailing note")
    assert build.filled(work, learner) and set(build.filled(work, learner)) == learner
    assert build.exercise_problem(work, skeleton, learner, ORIGIN) is None


@pytest.mark.parametrize("edit, named", [
    (lambda text, function: text.replace('"""', '"""Edited. ', 1), "Edited."),
    (lambda text, function: "import math\n" + text, "import math"),
    (lambda text, function: text.replace(f"): {function}\")", f"): {function}!\")", 1), "!"),
], ids=["the-module-docstring", "an-import", "a-stub-message"])
def test_an_edit_outside_the_filled_bodies_makes_the_skeleton_stale(edit, named):
    """What solutions/ decides (docstrings, imports, given helpers, each untouched stub's message) must match, so a
    maintainer's edit of solutions/ without `build` is caught even where a learner has filled stubs."""
    skeleton, learner = _skeleton()
    function = sorted(learner)[-1]
    work = _filled(skeleton, sorted(learner)[0], "return 1")
    why = build.exercise_problem(edit(work, function), skeleton, learner, ORIGIN)
    assert why is not None and named in why and ORIGIN in why, why


def test_a_missing_or_unparsable_module_is_stale():
    skeleton, learner = _skeleton()
    assert build.exercise_problem(None, skeleton, learner, ORIGIN) == "missing"
    assert "does not parse" in build.exercise_problem(skeleton + "def broken(:\n", skeleton, learner, ORIGIN)


# ---------------------------------------------------------------- the command, on a copy of the repository


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    return copy_of_repository(tmp_path_factory.mktemp("checkout"))


def test_check_names_each_stale_file_and_build_regenerates_it(copy):
    text = (copy / ORIGIN).read_text(encoding="utf-8")
    (copy / ORIGIN).write_text(text.replace('"""', '"""Edited by a maintainer. ', 1), encoding="utf-8")
    toml = (copy / "grader" / "stages.toml").read_text(encoding="utf-8")
    (copy / "grader" / "stages.toml").write_text(toml.replace(f'summary = "{STAGE.summary}"',
                                                              f'summary = "{STAGE.summary}, edited"', 1),
                                                 encoding="utf-8")
    checked = run_in(copy, "-m", "grader", "build", "--check", "--only", "exercises", "docs")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    for stale, fix in ((MODULE, "python -m grader build"), ("README.md", "python -m grader docs")):
        assert any(line.startswith(f"stale: {stale}:") and f"`{fix}`" in line for line in checked.stdout.splitlines()), (
            f"{stale} not named with its fix:\n{checked.stdout}")
    assert "run `python -m grader build`" in checked.stderr
    assert "Edited by a maintainer" not in (copy / MODULE).read_text(encoding="utf-8"), "--check wrote a file"

    built = run_in(copy, "-m", "grader", "build", "--only", "exercises", "docs")
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"wrote {MODULE}" in built.stdout and "wrote README.md" in built.stdout
    assert "Edited by a maintainer" in (copy / MODULE).read_text(encoding="utf-8")
    again = run_in(copy, "-m", "grader", "build", "--check", "--only", "exercises", "docs")
    assert again.returncode == 0, again.stdout + again.stderr


def test_build_never_overwrites_a_filled_stub_unless_forced(copy):
    skeleton, learner = _skeleton()
    function = sorted(learner)[0]
    mine = _filled((copy / MODULE).read_text(encoding="utf-8"), function, "return 'my work'")
    (copy / MODULE).write_text(mine, encoding="utf-8")
    text = (copy / ORIGIN).read_text(encoding="utf-8")
    (copy / ORIGIN).write_text(text.replace('"""', '"""Edited again. ', 1), encoding="utf-8")

    refused = run_in(copy, "-m", "grader", "build", "--only", "exercises")
    assert refused.returncode == 1 and function in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert (copy / MODULE).read_text(encoding="utf-8") == mine, "build overwrote a learner's work"

    forced = run_in(copy, "-m", "grader", "build", "--only", "exercises", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "my work" not in (copy / MODULE).read_text(encoding="utf-8")
    assert "Edited again" in (copy / MODULE).read_text(encoding="utf-8")
