"""Hints on request, in steps: a failure shows no hint; `hint` gives a nudge, then the page, then the manifest's hint."""
from __future__ import annotations

import pytest

from grader import manifest
from grader.learner import hint
from grader.suites import runner

from .learner_kit import grader, skeleton

FIRST = manifest.stage("01")
NN = manifest.stage("04")


def failing(stage, name, concept, message="Mismatch: split: expected 2, got 3"):
    return runner.TestResult(f"tests/stage{stage.id}/t.py::{name}", name, stage.id, False, "failed", message,
                             concept=concept, hint=stage.hint(concept))


def test_hint_steps_from_a_nudge_to_the_page_to_the_formula_and_stays_there(tmp_path):
    folder = skeleton(tmp_path)
    tokenizer_hint = FIRST.hint("tokenizer")
    check = grader("check", FIRST.id, "--target", str(folder))
    assert check.returncode == 1 and "NotImplementedError" in check.stdout
    assert tokenizer_hint not in check.stdout, "a failure must not print the hint unasked"
    assert f"python -m grader hint {FIRST.id}" in grader("--target", str(folder)).stdout

    shown = [grader("hint", "--target", str(folder)) for _ in range(4)]
    assert all(done.returncode == 0 for done in shown), [d.stderr for d in shown]
    one, two, three, four = (done.stdout for done in shown)
    assert "Hint 1 of 3" in one and "'tokenizer'" in one
    assert "CharTokenizer.__init__" in one and "ngram.py:" in one and "still a stub" in one
    assert tokenizer_hint not in one and "docs/01-ngram.md" not in one
    assert "Hint 2 of 3" in two and "docs/01-ngram.md:" in two and "Characters to ids" in two
    assert tokenizer_hint not in two
    assert "Hint 3 of 3" in three and tokenizer_hint in three and "last hint" in three
    assert four == three
    assert (tmp_path / ".grader" / "hints.json").is_file()


def test_the_nudge_names_the_function_the_concept_is_about(tmp_path):
    folder = skeleton(tmp_path)
    nudge, page, formula = hint.steps(FIRST, failing(FIRST, "test_split_cannot_leak", "split"), folder)
    assert "train_val_split" in nudge and "checks split" in nudge and "ngram.py:" in nudge
    assert "NGramModel" not in nudge
    assert "2. A split that cannot leak" in page and "docs/01-ngram.md:" in page
    assert formula == FIRST.hint("split")


def test_a_page_named_by_its_title_is_found():
    assert hint._section(NN.doc, "'Modules'")[1].endswith("Modules")
    assert hint._section(FIRST.doc, "section 7")[1].startswith("7.")
    assert hint._section(FIRST.doc, "no such part") is None


def test_hint_steps_written_in_the_manifest_as_a_list_are_given_in_turn(tmp_path, monkeypatch):
    folder = skeleton(tmp_path)
    monkeypatch.setitem(FIRST.hints, "split", ["look at the tail", "round, not int"])
    assert hint.steps(FIRST, failing(FIRST, "test_split_cannot_leak", "split"), folder) == [
        "look at the tail", "round, not int"]


def test_a_module_that_does_not_import_gets_its_error_not_a_hint(tmp_path):
    folder = skeleton(tmp_path)
    (folder / f"{FIRST.module}.py").write_text("def broken(:\n", encoding="utf-8")
    done = grader("hint", FIRST.id, "--target", str(folder))
    assert done.returncode == 0, done.stderr
    assert "does not import" in done.stdout and "SyntaxError" in done.stdout
    assert "Hint 1" not in done.stdout and FIRST.hint("tokenizer") not in done.stdout


def test_instructors_can_turn_hints_off(tmp_path, monkeypatch, capsys):
    folder = skeleton(tmp_path)
    toml = tmp_path / "stages.toml"
    toml.write_text("hints = false\n" + manifest.MANIFEST.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(hint, "MANIFEST", toml)
    assert not hint.enabled()
    monkeypatch.setenv("NO_COLOR", "1")
    assert hint.hint(FIRST.id, str(folder), timeout=600) == 0
    out = capsys.readouterr().out
    assert "turned off" in out and "Hint 1" not in out
    assert not (tmp_path / ".grader" / "hints.json").exists()


@pytest.mark.parametrize("message", ["SyntaxError: invalid syntax (ngram.py, line 1)",
                                     "ImportError: cannot import name 'Tensr' from 'exercises.tensor'"])
def test_import_failures_are_recognised(message):
    assert hint.does_not_import(failing(FIRST, "test_x", "tokenizer", message))
    assert not hint.does_not_import(failing(FIRST, "test_x", "tokenizer", "ValueError: p must sum to 1"))
