"""Instant progress: stage results kept under a digest of their inputs; only changed stages run, the current one first."""
from __future__ import annotations

import json

import pytest

from grader import manifest
from grader.learner import cache
from grader.manifest import ROOT
from grader.suites import runner

from .learner_kit import grader, skeleton

STAGES = [manifest.stage(i) for i in ("01", "02", "03", "04")]  # 04 builds on 01 and 03


@pytest.fixture
def folder(tmp_path):
    return skeleton(tmp_path)


@pytest.fixture
def runs(monkeypatch):
    """Replace the pytest subprocess by a recorder: every stage 'runs' to one failing test, and each batch is noted."""
    batches = []

    def fake_run(stages, target="exercises", **_):
        stages = list(stages)
        batches.append([s.id for s in stages])
        return runner.Run(target, [runner.StageResult(s, [runner.TestResult(
            f"tests/stage{s.id}/test_x.py::test_x", "test_x", s.id, False, "failed", "NotImplementedError: stub")])
            for s in stages])
    monkeypatch.setattr(runner, "run", fake_run)
    return batches


def test_an_unchanged_tree_answers_from_the_cache(folder, runs):
    first = cache.run(STAGES, str(folder))
    assert runs == [["01"], ["02", "03", "04"]], "the current stage runs alone, first"
    assert first.cached == [] and cache.results_path(folder).is_file()
    again = cache.run(STAGES, str(folder))
    assert runs == [["01"], ["02", "03", "04"]], "nothing ran the second time"
    assert again.cached == ["01", "02", "03", "04"]
    assert [r.tests[0].message for r in again.stages] == ["NotImplementedError: stub"] * 4


def test_an_edit_reruns_the_stages_that_import_the_module_and_no_other(folder, runs):
    cache.run(STAGES, str(folder))
    runs.clear()
    with open(folder / "ngram.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit\n")
    cache.run(STAGES, str(folder))
    assert runs == [["01"], ["04"]], "ngram.py is stage 01's module and stage 04 builds on it"
    runs.clear()
    with open(folder / "tensor.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit\n")
    cache.run(STAGES, str(folder))
    assert runs == [["03", "04"]], "the current stage (01) is unchanged: only the stages built on tensor.py run"


def test_the_current_stage_is_the_first_not_known_complete(folder, runs, monkeypatch):
    cache.run(STAGES, str(folder))
    stored = cache.Cache(folder)
    digests = cache.Digests(folder)
    for stage in STAGES[:2]:  # pretend 01 and 02 passed
        stored.put(runner.StageResult(stage, [runner.TestResult("n", "t", stage.id, False, "passed")]),
                   digests.of(stage))
    stored.save()
    known = cache.lookup(STAGES, str(folder))
    assert cache.current(STAGES, known).id == "03"
    runs.clear()
    for module in ("autograd", "tensor"):
        with open(folder / f"{module}.py", "a", encoding="utf-8") as f:
            f.write("\n# an edit\n")
    cache.run(STAGES, str(folder))
    assert runs == [["02"], ["03", "04"]], "02 changed and is no longer known complete: it is the current stage"


def test_a_run_that_did_not_finish_is_never_remembered(folder, monkeypatch):
    def stopped(stages, target="exercises", **_):
        return runner.Run(target, [runner.StageResult(s) for s in stages], "the run took longer than 1 s")
    monkeypatch.setattr(runner, "run", stopped)
    run = cache.run(STAGES[:1], str(folder))
    assert run.error and not run.ok
    assert cache.lookup(STAGES[:1], str(folder)) == {"01": None}


def test_fresh_ignores_the_cache(folder, runs):
    cache.run(STAGES[:1], str(folder))
    cache.run(STAGES[:1], str(folder), fresh=True)
    assert runs == [["01"], ["01"]]


def test_a_damaged_cache_file_is_ignored(folder, runs):
    cache.run(STAGES[:1], str(folder))
    cache.results_path(folder).write_text("{not json", encoding="utf-8")
    cache.run(STAGES[:1], str(folder))
    assert runs == [["01"], ["01"]]


def test_digests_cover_the_suite_the_reference_and_the_test_helpers_of_other_stages(folder):
    attention, blocks = manifest.stage("06"), manifest.stage("07")
    files = {p.relative_to(ROOT).as_posix() for p in cache.suite_files(blocks)}
    assert "tests/conftest.py" in files and any(f.startswith("tests/stage07/") for f in files)
    assert any(f.startswith("tests/stage06/") for f in files), "stage 07's tests import stage 06's helpers"
    modules = {p.name for p in cache.module_files(folder, blocks)}
    assert {"blocks.py", "attention.py", "nn.py", "tensor.py"} <= modules
    assert "bpe.py" not in modules
    assert {p.name for p in cache.module_files(folder, attention)} >= {"attention.py", "tensor.py"}


def test_progress_twice_runs_pytest_once_and_says_the_same(tmp_path):
    folder = skeleton(tmp_path)
    first = grader("--target", str(folder))
    assert first.returncode == 0, first.stderr
    stored = json.loads((tmp_path / ".grader" / "results-exercises.json").read_text(encoding="utf-8"))
    assert stored["target"] == str(folder) and "01" in stored["stages"]
    second = grader("--target", str(folder))
    assert second.stdout == first.stdout
    assert not (folder / ".grader").exists()
