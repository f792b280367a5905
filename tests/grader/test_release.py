"""The student release: built from the sources, never from the working tree; nothing of the reference or the hidden
suites inside (the leak check reads the kit itself); and its own grader works from the stored expected outputs.

The kit is built from a copy of the repository in which a learner has been at work: a solution body planted in
exercises/, an untracked file and a cache beside it, an untracked scratch notebook. None of it may ship.
"""
from __future__ import annotations

import json
import shutil

import pytest

from grader import manifest, source
from grader.instructor import build as derived
from grader.instructor import release
from grader.manifest import ROOT

from .checkout import copy_of_repository, run_in

STAGE = manifest.stages()[0]
MODULE = f"exercises/{STAGE.module}.py"
PLANTED = "# planted: a learner's own notes, never to ship\n"


def _plant_a_learners_work(copy):
    """The reference's module as the learner's exercises/ module, and untracked files beside it and in docs/."""
    reference = source.reference((copy / "solutions" / f"{STAGE.module}.py").read_text(encoding="utf-8"))
    (copy / MODULE).write_text(reference, encoding="utf-8")
    (copy / "exercises" / "notes.py").write_text(PLANTED, encoding="utf-8")
    (copy / "exercises" / "__pycache__").mkdir(exist_ok=True)
    (copy / "exercises" / "__pycache__" / f"{STAGE.module}.cpython-311.pyc").write_bytes(b"\0planted")
    (copy / "docs" / "scratch.ipynb").write_text('{"cells": [], "note": "planted"}', encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    copy = copy_of_repository(tmp_path_factory.mktemp("checkout"))
    _plant_a_learners_work(copy)
    out = tmp_path_factory.mktemp("release") / "kit"
    done = run_in(copy, "-m", "grader", "release", str(out))
    return done, out


@pytest.fixture(scope="module")
def kit(built):
    done, out = built
    assert out.is_dir(), f"no kit was written:\n{done.stdout}\n{done.stderr}"
    return out


def _grader(kit, *args):
    return run_in(kit, "-m", "grader", *args)


def test_the_release_ships_the_generated_skeleton_not_the_working_exercises(kit):
    texts = derived.exercise_texts()
    shipped = sorted(p.relative_to(kit).as_posix() for p in (kit / "exercises").rglob("*") if p.is_file())
    assert shipped == sorted(texts), f"exercises/ in the kit holds {shipped}, not the generated {sorted(texts)}"
    for relative, text in texts.items():
        assert (kit / relative).read_text(encoding="utf-8") == text, f"{relative} in the kit is not the skeleton"


def test_no_untracked_file_and_no_cache_ships(built, kit):
    done, _ = built
    files = [p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or f == "docs/scratch.ipynb"], files
    assert not any(PLANTED in p.read_text(encoding="utf-8", errors="replace") for p in kit.rglob("*.py"))
    assert "left out 2 untracked files" in done.stdout and "exercises/notes.py" in done.stdout, done.stdout


def test_the_release_holds_no_reference_and_no_hidden_suite(built, kit):
    done, _ = built
    assert not (kit / "solutions").exists() and not (kit / "tests" / "hidden").exists()
    found = release.leaks(kit)
    assert found == [], "the kit leaks:\n  " + "\n  ".join(found)
    assert done.returncode == 0, done.stderr
    assert (kit / "README.md").read_text(encoding="utf-8").count("Student release") == 1


@pytest.fixture
def kit_copy(kit, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(kit, copy)
    return copy


def test_the_leak_check_finds_a_one_line_solution_in_the_kits_exercises(kit_copy):
    """A body too short for any text search (one line) is still found: the learner's functions must be stubs."""
    learner = derived.learner_functions()[MODULE]
    text = (kit_copy / MODULE).read_text(encoding="utf-8")
    name = sorted(learner)[0]
    stub = f'raise NotImplementedError("{source.stub_message(STAGE.id, STAGE.title, name)}")'
    (kit_copy / MODULE).write_text(text.replace(stub, "return None", 1), encoding="utf-8")
    found = release.leaks(kit_copy)
    assert any(f"{name} is the learner's to write, but has a body" in f for f in found), found


def test_the_leak_check_finds_a_changed_given_helper_and_a_stray_module(kit_copy):
    text = (kit_copy / MODULE).read_text(encoding="utf-8")
    learner = derived.learner_functions()[MODULE]
    given, node = next((n, f) for n, f in derived.functions(text).items() if n not in learner)
    lines = text.splitlines()
    lines.insert(node.body[-1].end_lineno, " " * node.body[-1].col_offset + "pass")
    (kit_copy / MODULE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (kit_copy / "exercises" / "mine.py").write_text("x = 1\n", encoding="utf-8")
    found = release.leaks(kit_copy)
    assert any(f"{given} differs from the given helper" in f for f in found), found
    assert any("exercises/mine.py is not generated from solutions/" in f for f in found), found


def test_the_leak_check_finds_a_planted_solution_and_a_hidden_test(kit_copy):
    shutil.copy(ROOT / "solutions" / f"{STAGE.module}.py", kit_copy / "docs" / "oops.py")
    hidden = next((ROOT / STAGE.test_dir(hidden=True)).glob("test_*.py"))
    shutil.copy(hidden, kit_copy / "tests" / hidden.name)
    found = release.leaks(kit_copy)
    assert any("docs/oops.py contains the body of" in f for f in found), found
    assert any("names the hidden" in f for f in found), found


def test_progress_in_the_release_starts_at_zero(kit):
    done = _grader(kit)
    assert done.returncode == 0, done.stderr
    assert f"Next: stage {STAGE.label}" in done.stdout


def test_the_stored_outputs_judge_the_reference_exactly_as_the_reference_does(kit, tmp_path):
    """Every visible test of every stage passes when the release's exercises are the reference's modules. (The
    byte-for-byte staleness check of the stores is tests/grader/test_build.py; this one proves they judge.)"""
    solved = tmp_path / "solved"
    shutil.copytree(ROOT / "solutions", solved, ignore=shutil.ignore_patterns("__pycache__"))
    done = _grader(kit, "check", "--target", str(solved), "--json")
    data = json.loads(done.stdout)
    failing = [(s["stage"], t["name"], t["message"][:200]) for s in data["stages"] for t in s["tests"]
               if t["outcome"] != "passed"]
    assert not failing, f"stale or incomplete tests/expected/ (run `python -m grader build`): {failing[:5]}"
    assert all(s["total"] > 0 for s in data["stages"])


def test_the_skeleton_fails_in_the_release_with_not_implemented(kit):
    data = json.loads(_grader(kit, "check", STAGE.id, "--json").stdout)
    assert all(t["message"].startswith("NotImplementedError") for t in data["stages"][0]["tests"])


def test_pytest_in_the_release_says_it_tests_the_learners_code(kit):
    done = run_in(kit, "-m", "pytest", STAGE.test_dir(hidden=False), "-p", "no:cacheprovider")
    assert "testing exercises/ (your code) against the stored expected outputs in tests/expected/" in done.stdout
    assert f"stage {STAGE.id} tested exercises/ (your code)" in done.stdout, done.stdout[-2000:]


def test_building_into_a_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.build(tmp_path)
