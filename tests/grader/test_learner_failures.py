"""Pinpointed failures: when the learner's code raises, every channel names their file, line and source line and the
probe's input; a module that does not import gets the compiler's message and location and no hint; numbers print as
numbers."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from grader import manifest
from grader.harness import F64, assert_close
from grader.manifest import ROOT
from grader.suites import pinpoint, runner

from .learner_kit import grader, skeleton

FIRST = manifest.stage("01")
SOLVED = (ROOT / "solutions" / f"{FIRST.module}.py").read_text(encoding="utf-8")
SAMPLING = "q = np.exp((logits - logits.max()) / temperature)"
NAN_SAMPLER = SOLVED.replace(SAMPLING, "q = np.exp(logits / temperature) * np.nan")  # rng.choice gets NaN


@pytest.fixture
def nan_sampler(tmp_path):
    assert SAMPLING in SOLVED, "the reference's sampler changed: update this mutant"
    folder = skeleton(tmp_path)
    (folder / f"{FIRST.module}.py").write_text(NAN_SAMPLER, encoding="utf-8")
    return folder


def test_a_learner_error_names_their_file_line_source_and_the_probe_input(nan_sampler):
    [result] = runner.run([FIRST], str(nan_sampler)).stages
    failed = [t for t in result.tests if not t.passed]
    assert failed and all(t.where and t.where["kind"] == "call" for t in failed), [t.message for t in failed]
    line = next(i for i, text in enumerate(NAN_SAMPLER.splitlines(), 1) if "int(rng.choice" in text)
    for test in failed:
        assert test.where["file"] == f"exercises/{FIRST.module}.py" and test.where["line"] == line
        assert "rng.choice" in test.where["source"] and test.where["function"] == "NGramModel.sample"
        assert test.message.startswith("ValueError: ") and "NaN" in test.message.splitlines()[0]
        assert f"in exercises/{FIRST.module}.py, line {line}, in NGramModel.sample:" in test.message
        assert "while running probe_" in test.message and "length=" in test.message
        assert "np.float64(" not in test.message and "np.int64(" not in test.message
        assert test.hint == FIRST.hint(test.concept), "a learner error keeps its concept's hint (on request)"


def test_check_shows_where_and_no_hint(nan_sampler):
    done = grader("check", FIRST.id, "--target", str(nan_sampler))
    assert done.returncode == 1
    assert f"in exercises/{FIRST.module}.py, line" in done.stdout and "rng.choice" in done.stdout
    assert FIRST.hint("sampling") not in done.stdout and "hint:" not in done.stdout


def test_pytest_itself_shows_where_in_their_code_and_no_hint(nan_sampler):
    done = grader_pytest(nan_sampler, "-k", "sampling_is_determined")
    assert "where in your code" in done.stdout and "rng.choice" in done.stdout
    assert f"exercises/{FIRST.module}.py, line" in done.stdout
    assert FIRST.hint("sampling") not in done.stdout


def grader_pytest(folder, *args):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", f"tests/stage{FIRST.id}", f"--target={folder}", "-q",
                           "-p", "no:cacheprovider", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_syntax_error_is_one_message_with_its_location_and_no_hint(tmp_path):
    folder = skeleton(tmp_path)
    (folder / f"{FIRST.module}.py").write_text("import numpy as np\n\ndef broken(:\n    pass\n", encoding="utf-8")
    [result] = runner.run([FIRST], str(folder)).stages
    assert result.total() > 0 and result.passed() == 0
    for test in result.tests:
        assert test.message.startswith("SyntaxError: invalid syntax\n"), test.message
        assert f"in exercises/{FIRST.module}.py, line 3" in test.message and "def broken(:" in test.message
        assert test.hint is None and test.where["kind"] == "import"
    done = grader("check", FIRST.id, "--target", str(folder))
    assert done.stdout.count("SyntaxError") == 1 and f"FAIL all {result.total()} tests" in done.stdout
    progress = grader("--target", str(folder)).stdout
    assert "SyntaxError" in progress and "grader hint" not in progress


def test_an_import_error_names_the_line_and_the_module_as_the_learner_knows_it(tmp_path):
    folder = skeleton(tmp_path)
    stage = manifest.stage("04")
    (folder / f"{stage.module}.py").write_text("from .tensr import Tensor\n", encoding="utf-8")
    [result] = runner.run([stage], str(folder)).stages
    test = result.tests[0]
    assert test.message.startswith("ModuleNotFoundError: No module named 'exercises.tensr'"), test.message
    assert f"in exercises/{stage.module}.py, line 1" in test.message and "target_" not in test.message
    assert test.hint is None


def test_values_print_as_numbers():
    assert pinpoint.numbers("expected np.float64(0.09), got np.int64(3) and np.True_") == \
        "expected 0.09, got 3 and np.True_"
    assert pinpoint.short(np.float64(0.09000000000000001)) == "0.09"
    assert pinpoint.short(1.0) == "1.0" and pinpoint.short(np.int64(7)) == "7"
    assert pinpoint.short(np.zeros((3, 4))) == "array 3x4 float64"
    assert pinpoint.short(np.array([1, 2], dtype=np.int64)) == "array 2 int64 [1, 2]"
    assert pinpoint.short(list(range(10))) == "[0, 1, 2, 3, 4, 5, ... (10 items)]"
    assert len(pinpoint.call("probe_x", {"text": "a" * 1000, "n": 2})) <= pinpoint.INPUTS_LIMIT
    with pytest.raises(AssertionError) as failure:
        assert_close(np.array([0.09, np.nan]), np.array([0.09, 0.1]), F64)
    assert "expected 0.1, got nan" in str(failure.value) and "np.float64" not in str(failure.value)
