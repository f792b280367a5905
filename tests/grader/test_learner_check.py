"""A way forward: `check STAGE FUNCTION` (or `-k EXPR`) runs only the tests of one function."""
from __future__ import annotations

import json

from grader import manifest
from grader.learner import functions
from grader.manifest import ROOT

from .learner_kit import grader, skeleton

FIRST = manifest.stage("01")


def outcomes(done) -> dict[str, str]:
    [stage] = json.loads(done.stdout)["stages"]
    return {t["name"]: t["outcome"] for t in stage["tests"]}


def test_the_tests_of_a_function_are_the_ones_whose_probes_call_it():
    assert functions.matching(FIRST, "encode") == ["CharTokenizer.encode"]
    assert functions.matching(FIRST, "NGramModel.__init__") == ["NGramModel.__init__"]
    assert set(functions.matching(FIRST, "CharTokenizer")) == {"CharTokenizer.__init__", "CharTokenizer.encode",
                                                              "CharTokenizer.decode"}
    split = {t.name for t in functions.tests_of(FIRST, ["train_val_split"])}
    assert split and all("split" in name for name in split)
    assert {t.concept for t in functions.tests_of(FIRST, ["train_val_split"])} == {"split"}
    decode = {t.name for t in functions.tests_of(FIRST, ["CharTokenizer.decode"])}
    assert "test_decode_inverts_encode_and_accepts_lists_and_arrays" in decode
    assert not any("split" in name for name in decode)


def test_check_one_function_runs_only_its_tests(tmp_path):
    folder = skeleton(tmp_path)
    solved = (ROOT / "solutions" / f"{FIRST.module}.py").read_text(encoding="utf-8")
    (folder / f"{FIRST.module}.py").write_text(solved, encoding="utf-8")
    assert grader("reset", FIRST.id, "train_val_split", "--target", str(folder)).returncode == 0
    done = grader("check", FIRST.id, "train_val_split", "--target", str(folder), "--json")
    assert done.returncode == 1, done.stderr
    ran = outcomes(done)
    expected = {t.name for t in functions.tests_of(FIRST, ["train_val_split"])}
    assert set(ran) == expected and set(ran.values()) == {"failed"}
    encode = grader("check", FIRST.id, "encode", "--target", str(folder))
    assert encode.returncode == 0 and "the tests of CharTokenizer.encode" in encode.stdout
    assert "Stages (target" not in encode.stdout, "no stage table for a run of some tests"


def test_check_k_passes_the_expression_to_pytest(tmp_path):
    folder = skeleton(tmp_path)
    done = grader("check", FIRST.id, "-k", "split and not leak", "--target", str(folder), "--json")
    ran = outcomes(done)
    assert ran and all("split" in name and "leak" not in name for name in ran)


def test_check_function_needs_one_stage_and_a_known_name(tmp_path):
    folder = skeleton(tmp_path)
    two = grader("check", "01", "02", "encode", "--target", str(folder))
    assert two.returncode == 2 and "name one stage" in two.stderr
    unknown = grader("check", FIRST.id, "bogus", "--target", str(folder))
    assert unknown.returncode == 2 and "no function 'bogus'" in unknown.stderr and "train_val_split" in unknown.stderr
