"""Hostile submissions, each graded at exactly its honest score by the sandboxed grader.

Each case is a copy of stage 01 (the reference or the skeleton) with one attack or one failure planted in it. Four
tests are selected: three that call `train_val_split` and one that only uses the tokenizer, so a broken
`train_val_split` honestly scores 1 of 4 and a cheating skeleton honestly scores 0 of 4.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
import textwrap

import pytest

from grader import manifest, sandbox
from grader.instructor import grade
from grader.suites import runner
from grader.manifest import ROOT

STAGE = manifest.stage("01")
SELECT = "split or vocabulary_is_sorted"
SELECTED = 4

REFERENCE = (ROOT / "solutions" / "ngram.py").read_text()
SKELETON = (ROOT / "exercises" / "ngram.py").read_text()


def _replace_split(body: str, base: str = REFERENCE) -> str:
    """`base` with train_val_split redefined at the end (the later definition wins)."""
    return (base + "\n\ndef train_val_split(tokens, val_fraction):\n"
            + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n")


CASES = {
    # name: (module source or None to delete it, extra files, honest passed count)
    "infinite_loop": (_replace_split("while True:\n    pass"), {}, 1),
    "memory_bomb": (_replace_split("hoard = []\nwhile True:\n    hoard.append(bytearray(50 * 2**20))"), {}, 1),
    "os_exit_at_import": (SKELETON + "\nimport os\nprint('4 passed in 0.01s')\nos._exit(0)\n", {}, 0),
    "sys_exit_at_import": (SKELETON + "\nimport sys\nsys.exit(0)\n", {}, 0),
    "patched_numpy_testing": (SKELETON + textwrap.dedent("""
        import sys, numpy.testing
        numpy.testing.assert_allclose = lambda *a, **k: None
        numpy.testing.assert_array_equal = lambda *a, **k: None
        for name in list(sys.modules):
            if name.startswith("grader"):
                for attribute in ("assert_close", "assert_true", "_diff"):
                    if hasattr(sys.modules[name], attribute):
                        setattr(sys.modules[name], attribute, lambda *a, **k: None)
        """), {}, 0),
    "always_equal_objects": (_replace_split("""
        class Anything(list):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
        return Anything(), Anything()""", SKELETON), {}, 0),
    "planted_conftest": (SKELETON, {"conftest.py": textwrap.dedent("""
        import pytest
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            outcome = yield
            report = outcome.get_result()
            report.outcome = "passed"
            report.longrepr = None
        """)}, 0),
    "reads_the_reference_from_disk": (SKELETON + textwrap.dedent(f"""
        import glob
        candidates = glob.glob('/tmp/*/*/ngram.py') + glob.glob('/tmp/*/*/*/ngram.py')  # other sandboxes, clones
        for path in [{str(ROOT / 'solutions' / 'ngram.py')!r}] + [c for c in candidates if c != __file__]:
            try:
                exec(open(path).read(), globals())
                break
            except OSError:
                pass
        """), {}, 0),
    "forges_the_result_file": (SKELETON + textwrap.dedent("""
        import glob, json
        for path in glob.glob('/tmp/grader-*/report.jsonl') + glob.glob('/tmp/*/grader-*/report.jsonl'):
            try:
                with open(path, 'a') as f:
                    for i in range(50):
                        f.write(json.dumps({"nodeid": f"x{i}", "stage": "01", "outcome": "passed"}) + "\\n")
            except OSError:
                pass
        """), {}, 0),
    "nan_outputs": (_replace_split("import numpy as np\nreturn np.full(len(tokens), np.nan), np.full(1, np.nan)"),
                    {}, 1),
    "wrong_dtype_and_shape": (_replace_split("import numpy as np\nreturn np.asarray(tokens, dtype=np.float32)[None], "
                                             "np.zeros((1, 1), dtype=np.float32)"), {}, 1),
    "syntax_error": ("def train_val_split(:\n", {}, 0),
    "missing_module": (None, {}, 0),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, runner.StageResult]:
    """Every hostile case graded once, in sandboxed workers (the slow part, shared by the assertions below)."""
    folders = {name: tmp_path_factory.mktemp(name) for name in CASES}  # here, not in threads: mktemp is not thread-safe

    def grade_case(name: str) -> runner.StageResult:
        source, extra_files, _ = CASES[name]
        folder = folders[name]
        shutil.copytree(ROOT / "exercises", folder / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
        module = folder / "exercises" / f"{STAGE.module}.py"
        if source is None:
            module.unlink()
        else:
            module.write_text(source)
        for file_name, text in extra_files.items():
            (folder / "exercises" / file_name).write_text(text)
        run = runner.run([STAGE], str(folder / "exercises"), timeout=240,
                         extra=["--sandbox", "--probe-timeout=4", "--memory-mb=1024", "-k", SELECT])
        return run.stages[0]

    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly waiting on subprocesses and timeouts
        return dict(zip(CASES, pool.map(grade_case, CASES)))


@pytest.mark.parametrize("name", CASES)
def test_hostile_submission_gets_exactly_its_honest_score(graded, name):
    if name == "reads_the_reference_from_disk" and sandbox.isolation_level() != "full":
        pytest.skip("hiding the reference from the submission needs root on Linux (mount namespaces)")
    result = graded[name]
    honest = CASES[name][2]
    assert result.total() == SELECTED, f"{name}: {result.total()} tests ran, expected {SELECTED}"
    outcomes = {t.name: (t.outcome, t.message[:120]) for t in result.tests}
    assert result.passed() == honest, f"{name}: {result.passed()} passed, honest score {honest}: {outcomes}"


def test_the_reference_passes_the_same_selection_in_the_sandbox():
    run = runner.run([STAGE], "solutions", extra=["--sandbox", "-k", SELECT])
    assert run.stages[0].passed() == SELECTED == run.stages[0].total()


def test_timeouts_and_crashes_are_named_in_the_messages(graded):
    loop = [t.message for t in graded["infinite_loop"].tests if not t.passed]
    assert loop and all("did not finish within 4 s" in m for m in loop), loop
    exited = [t.message for t in graded["os_exit_at_import"].tests]
    assert exited and all("process ended" in m for m in exited), exited
    bomb = [t.message for t in graded["memory_bomb"].tests if not t.passed]
    assert bomb and all("MemoryError" in m or "process ended" in m or "did not finish" in m for m in bomb), bomb


def test_forbidden_imports_are_found_and_zero_the_stage(tmp_path):
    package = tmp_path / "exercises"
    shutil.copytree(ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "ngram.py").write_text("import torch\nfrom solutions.ngram import *\n"
                                      "x = __import__('jax')\n" + REFERENCE)
    assert grade.forbidden_imports(package, STAGE) == ["jax", "solutions.ngram", "torch"]
    result = grade.grade_one(package, grade.Options(out=tmp_path / "out", stages=(STAGE.id,)))
    [entry] = result["stages"]
    assert entry["visible_points"] == 0 and "forbidden imports" in entry["problem"]
