"""The sandbox's own guarantees, tested directly (the attacks graded end to end are in test_hostile.py)."""
from __future__ import annotations

from pathlib import Path

from grader import manifest, sandbox
from grader.manifest import ROOT

STAGE = manifest.stage("01")


def _test_files(box: sandbox.Sandbox) -> set[str]:
    """The test modules on the worker's disk, as paths relative to the repository (tests/...)."""
    trusted = box.scratch / "trusted"
    return {p.relative_to(trusted).as_posix() for p in trusted.rglob("*.py")
            if p.relative_to(trusted).parts[0] == "tests" and p.name != "__init__.py"}


def _modules(folder: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}


def test_a_visible_run_puts_no_hidden_file_on_the_workers_disk():
    with sandbox.Sandbox(ROOT / "solutions", level="partial", suites=[STAGE.test_dir()]) as box:
        files = _test_files(box)
        everything = {p.relative_to(box.scratch).as_posix() for p in box.scratch.rglob("*") if p.is_file()}
    expected = _modules(STAGE.test_dir())
    assert files == expected, f"only the collected suite's modules belong there: expected {expected}, got {files}"
    assert not [f for f in everything if "hidden" in f], f"hidden files on the worker's disk: {everything}"


def test_a_hidden_run_copies_its_suite_and_what_it_imports_but_no_other_stage():
    hidden = STAGE.test_dir(hidden=True)
    with sandbox.Sandbox(ROOT / "solutions", level="partial", suites=[hidden]) as box:
        files = _test_files(box)
    imported = {f"{name.replace('.', '/')}.py" for path in _modules(hidden)  # shared helpers it imports
                for name in sandbox._imported_test_modules(ROOT / path)}
    expected = _modules(hidden) | {path for path in imported if (ROOT / path).is_file()}
    assert files == expected, f"expected {expected}, got {files}"
    assert not [f for f in files if f.startswith("tests/stage") and not f.startswith(STAGE.test_dir())], files


def test_probe_files_follow_imports_between_suites_transitively(tmp_path):
    every_hidden = [ROOT / s.test_dir(hidden=True) for s in manifest.stages()]
    files = {p.relative_to(ROOT).as_posix() for p in sandbox.probe_files(every_hidden)}
    for path in files:  # whatever a copied module imports from tests/ was copied too
        for name in sandbox._imported_test_modules(ROOT / path):
            module = Path(*name.split("."))
            if (ROOT / module.with_suffix(".py")).is_file():
                assert module.with_suffix(".py").as_posix() in files, f"{path} imports {name}, which was not copied"
