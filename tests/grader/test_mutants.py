"""Plausible learner mistakes (tests/mutants/stageNN.toml), each of which must fail a visible test: `python -m grader
mutants` (grader/instructor/mutants.py).

The big test runs every mutant of every stage, stopped at its first failing test (one pytest process per stage, two
stages at a time: 35 to 55 s on 2 cores). The others check the machinery on stage 01, the smallest suite: how a
replacement is found, what a malformed definition says, that a survivor and a replacement that does not apply exit 1,
that a mutant that loops forever is stopped, and that the rounds in one pytest process agree with one process per
mutant through the grader's runner.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from grader import manifest
from grader.instructor import mutants
from grader.instructor.mutants import Mutant, MutantError
from grader.manifest import ROOT

STAGE01 = manifest.stage("01")
# The cases of issue 10 that passed the visible suite of stage 01 and then lost hidden points.
ISSUE_10 = {"split-int-not-round": "train_val_split", "empty-text-accepted": "CharTokenizer.__init__",
            "fit-accepts-out-of-range": "NGramModel.fit", "loglik-off-by-one-start": "NGramModel.log_likelihood"}


def grader(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


# ---------------------------------------------------------------- the mutants themselves


def test_every_stage_has_at_least_ten_mutants_and_they_load():
    # Every stage of the manifest has its file (a stage added later brings one with its suite), with 10 mutants or more.
    missing = [stage.id for stage in manifest.stages() if not mutants.definitions_file(stage).exists()]
    assert not missing, f"stages without tests/mutants/stageNN.toml: {missing}"
    counts = {stage.id: len(mutants.load(stage)) for stage in manifest.stages()}
    assert all(count >= 10 for count in counts.values()), f"mutants per stage (at least 10 each): {counts}"
    for stage in manifest.stages():
        for mutant in mutants.load(stage):
            mutants.mutated_source(mutant)  # applies: exactly once, inside its function's solution region


def test_the_cases_of_issue_10_are_mutants_of_stage_01():
    found = {m.name: m.function for m in mutants.load(STAGE01)}
    assert {name: found.get(name) for name in ISSUE_10} == ISSUE_10


def test_every_mutant_fails_a_visible_test():
    outcomes = mutants.run(list(manifest.stages()), first=True, jobs=2)
    errors = [f"{o.stage}/{o.name}: {o.error}" for o in outcomes if o.status == "error"]
    assert not errors, "mutants without a verdict:\n  " + "\n  ".join(errors)
    survivors = [f"{o.stage}/{o.name} ({o.function}): {o.mistake}" for o in outcomes if o.status == "SURVIVED"]
    assert not survivors, ("these mistakes pass every visible test of their stage; add a visible test whose input "
                           "exposes the convention (tests/stageNN/test_conventions.py):\n  " + "\n  ".join(survivors))
    assert len(outcomes) == sum(len(mutants.load(stage)) for stage in manifest.stages())


# ---------------------------------------------------------------- the machinery


def _mutant(old: str, new: str = "pass", function: str = "train_val_split") -> Mutant:
    return Mutant("01", "probe", function, old, new, "a test's mutant")


def test_a_replacement_is_made_once_in_the_reference_without_markers():
    text = mutants.mutated_source(_mutant("n_val = round(val_fraction * len(tokens))",
                                          "n_val = int(val_fraction * len(tokens))"))
    assert "\n    n_val = int(val_fraction * len(tokens))\n" in text and "\n    n_val = round(val_fraction * len(tokens))\n" not in text
    assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text


@pytest.mark.parametrize("mutant, says", [
    (_mutant("n_val = ceil("), "occurs 0 times"),
    (_mutant("n_train"), "occurs"),  # several times
    (_mutant("Split a token sequence"), "occurs 0 times"),  # the docstring is not the learner's to write
    (_mutant("n_val = round(", "n_val = round(("), "not valid Python"),
    (_mutant("pass", function="no_such_function"), "has no function"),
    (_mutant("return len(self.vocab)", function="CharTokenizer.vocab_size"), "has no solution region"),
])
def test_a_replacement_that_does_not_apply_exactly_once_is_refused(mutant, says):
    with pytest.raises(MutantError, match=says):
        mutants.mutated_source(mutant)


@pytest.mark.parametrize("text, says", [
    ('[[mutant]]\nname = "a"\nfunction = "f"\nold = "x"\nnew = "y"\n', "missing or empty ['mistake']"),
    ('[[mutant]]\nname = "a"\nfunction = "f"\nold = "x"\nnew = "y"\nmistake = "m"\ncolour = "red"\n',
     "unknown fields ['colour']"),
    ('[[mutant]]\nname = "a"\nfunction = "f"\nold = "x"\nnew = "x"\nmistake = "m"\n', "the same text"),
    ('[[mutant]]\nname = "a"\nfunction = "f"\nold = "x"\nnew = "y"\nmistake = "m"\n' * 2, "two mutants are named"),
    ('[[mutant]\n', "stage01.toml"),
])
def test_a_malformed_definition_names_the_file_and_the_problem(tmp_path, text, says):
    (tmp_path / "stage01.toml").write_text(text, encoding="utf-8")
    with pytest.raises(MutantError, match=repr(says)[1:-1].replace("[", r"\[").replace("]", r"\]")):
        mutants.load(STAGE01, tmp_path)


def test_a_survivor_or_a_replacement_that_does_not_apply_exits_1(tmp_path):
    # A copy made before the split changes nothing a test can see (an equivalent mutant): it survives.
    (tmp_path / "stage01.toml").write_text(
        '[[mutant]]\nname = "copies-first"\nfunction = "train_val_split"\n'
        'old = "tokens = np.asarray(tokens)"\nnew = "tokens = np.array(tokens)"\nmistake = "a harmless copy"\n\n'
        '[[mutant]]\nname = "moved"\nfunction = "train_val_split"\nold = "no such text"\nnew = "x"\n'
        'mistake = "text the reference no longer has"\n\n'
        '[[mutant]]\nname = "int-for-round"\nfunction = "train_val_split"\n'
        'old = "round(val_fraction * len(tokens))"\nnew = "int(val_fraction * len(tokens))"\nmistake = "int"\n',
        encoding="utf-8")
    done = grader("mutants", "01", "--first", "--json", "--definitions", str(tmp_path))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    report = {m["name"]: m for m in json.loads(done.stdout)["mutants"]}
    assert [report[name]["status"] for name in ("copies-first", "moved", "int-for-round")] == [
        "SURVIVED", "error", "killed"]
    assert "occurs 0 times" in report["moved"]["error"]
    assert report["int-for-round"]["failed"][0]["test"].endswith("test_split_rounds_with_pythons_round")


def test_an_unknown_mutant_name_is_an_error():
    done = grader("mutants", "01", "--name", "no-such-mutant")
    assert done.returncode == 2 and "no mutant named no-such-mutant" in done.stderr, done.stderr


def test_a_mutant_that_loops_forever_is_stopped_and_counts_as_killed():
    looping = Mutant("01", "loops", "train_val_split", "n_val = round(val_fraction * len(tokens))",
                     "while True:\n        pass", "loops forever")
    [outcome] = mutants.run_stage(STAGE01, [looping], first=True, test_seconds=2)
    assert outcome.status == "killed" and "ran for more than 2 s" in outcome.failed[0]["message"], outcome


def test_the_rounds_agree_with_one_pytest_process_per_mutant():
    # Every failing test of each mutant, listed by the rounds in one pytest process, and by the grader's runner in a
    # process of its own: state left behind by one round would show up as a difference.
    names = ("lambdas-reversed", "loglik-off-by-one-start")
    chosen = [m for m in mutants.load(STAGE01) if m.name in names]
    rounds = {o.name: sorted(f["test"] for f in o.failed) for o in mutants.run_stage(STAGE01, chosen)}
    alone = {m.name: sorted(f["test"] for f in mutants.run_isolated(STAGE01, m).failed) for m in chosen}
    assert rounds == alone and all(rounds.values())
