"""Hostile submissions, each graded at exactly its honest score by the sandboxed grader.

Two groups. CASES: a copy of stage 01 (the reference or the skeleton) with one attack or one failure planted in it,
run through the suites' runner with four tests selected (three call `train_val_split`, one only the tokenizer), so a
broken `train_val_split` honestly scores 1 of 4 and a cheating skeleton 0 of 4. BATCH: the attacks of issue 9 and the
files that used to abort a batch, graded together by `grade` (two at a time, so that each attack has a neighbour),
with honest submissions among them; none may lose a point, none may gain one, and no feedback or result may hold a
byte of a file the submission was not given.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import manifest, sandbox
from grader.instructor import grade, gradescope
from grader.suites import runner
from grader.manifest import ROOT

STAGE = manifest.stage("01")
SELECT = "test_ngram and (split or vocabulary_is_sorted)"  # four tests of one module, whatever else joins the suite
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
    sandbox.remember_isolation()  # found once here; each suite run would otherwise look for it again
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


# ---------------------------------------------------------------- a batch graded by `grade`: issue 9's attacks

MARKER = f"hostile-{uuid.uuid4().hex}"  # in the command line of every process the daemon attack starts
SECRET = f"root-only-{uuid.uuid4().hex}"  # in a file only root may read, linked into a submission
ELSEWHERE = f"another-copy-{uuid.uuid4().hex}"  # in a copy of the reference outside the repository
HONEST = STAGE.visible_points  # a stage-01 batch without hidden suites

# Text of files no submission is given: the suites' own source, the grader's, the two planted above.
NOT_GIVEN = ["Stage 01 (n-gram language models), visible suite.", "def probe_", "TRUSTED_FILES", "import pytest",
             SECRET, ELSEWHERE]
BASE64 = re.compile(r"[A-Za-z0-9+/=]{48,}")


def _encoded(text: str) -> list[str]:
    """Runs of base64 (letters of both cases and digits), the way the attack of issue 9 smuggled files out."""
    return [run for run in BASE64.findall(text) if all(re.search(c, run) for c in ("[A-Z]", "[a-z]", "[0-9]"))]


DROPS = REFERENCE + textwrap.dedent("""
    for _folder in ("/tmp", "/var/tmp", "/dev/shm"):  # leave this module where a later submission could exec it
        try:
            with open(_folder + "/shared_ngram.py", "w") as _f:
                _f.write(open(__file__).read())
            import os as _os
            _os.chmod(_folder + "/shared_ngram.py", 0o666)
        except OSError:
            pass
    """)

PICKER = SKELETON + textwrap.dedent("""
    import glob as _glob, time as _time
    def _steal():
        deadline = _time.monotonic() + 2  # its neighbour, graded at the same time, may not have written yet
        while _time.monotonic() < deadline:
            for path in (_glob.glob("/tmp/shared_ngram.py") + _glob.glob("/var/tmp/shared_ngram.py")
                         + _glob.glob("/dev/shm/shared_ngram.py") + _glob.glob("/proc/*/root/sandbox/package/ngram.py")
                         + _glob.glob("/proc/*/cwd/../package/ngram.py") + _glob.glob("/tmp/*/package/ngram.py")
                         + _glob.glob("/tmp/*/*/package/ngram.py")):
                try:
                    source = open(path).read()
                except OSError:
                    continue
                if "NotImplementedError" not in source:  # a solved copy
                    exec(source, globals())
                    return
            _time.sleep(0.1)
    _steal()
    """)

_ATTACK = """
import ctypes, os, signal, time
ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: do not die with the parent
end = time.monotonic() + 60
while time.monotonic() < end:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (1, os.getpid()):
            continue
        try:
            if b"worker.py" in open(f"/proc/{pid}/cmdline", "rb").read():
                open(f"/proc/{pid}/mem", "rb").close()
                os.listdir(f"/proc/{pid}/root/sandbox/package")
                os.kill(int(pid), signal.SIGKILL)  # another submission's worker
        except OSError:
            pass
    time.sleep(0.05)
"""

DAEMON = SKELETON + textwrap.dedent(f"""
    import os as _os, sys as _sys
    if _os.fork() == 0:  # a daemon: double fork, a session of its own, nothing of the worker's left
        _os.setsid()
        if _os.fork() == 0:
            _os.execv(_sys.executable, [_sys.executable, "-c", {_ATTACK!r}, {MARKER!r}])
        _os._exit(0)
    _os.wait()
    """)

EXFILTRATE = textwrap.dedent("""
    import base64 as _base64, os as _os
    _found = []
    _here = _os.path.dirname(_os.path.abspath(__file__))
    for _top in ("/sandbox", _os.path.dirname(_here), "/work", "/home", "/root", "/srv", "/opt"):
        for _folder, _, _files in _os.walk(_top):
            for _name in _files:
                try:
                    _found.append(_os.path.join(_folder, _name) + "\\n" + open(_os.path.join(_folder, _name)).read())
                except (OSError, UnicodeDecodeError):
                    pass
            if len(_found) > 400:
                break
    _DATA = _base64.b64encode("\\n".join(_found).encode()).decode()
    print(_DATA[:20000])
    _calls = [0]
    def __getattr__(name):  # every name a probe asks for: the next chunk of everything readable, in an exception
        if name.startswith("__"):
            raise AttributeError(name)
        _calls[0] += 1
        chunk = _DATA[(_calls[0] - 1) * 3000:_calls[0] * 3000] or "A" * 64
        if _calls[0] % 3 == 0:
            raise SystemExit(chunk)
        if _calls[0] % 3 == 1:
            raise type("X" + chunk[:200].replace("/", "_"), (ValueError,), {})(chunk)
        raise ValueError(chunk)
    """)

LISTING = SKELETON + textwrap.dedent("""
    import os as _os
    def _everything():
        found = []
        for top in ("/", _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))):
            for folder, folders, files in _os.walk(top):
                folders[:] = [f for f in folders if f not in ("proc", "sys", "usr", "lib", "dev")]
                found += [_os.path.join(folder, f) for f in files]
                if len(found) > 20000:
                    return found
        return found
    class CharTokenizer:
        def __init__(self, text):
            listing = "\\n".join(p for p in _everything() if "tests" in p or "hidden" in p or "solutions" in p)
            print(listing)
            raise RuntimeError(listing)
    """)

ELSEWHERE_SEARCH = SKELETON + textwrap.dedent("""
    import os as _os, time as _time
    def _search():
        deadline = _time.monotonic() + 2
        for top in (PLANTED, "/", "/tmp", "/root", "/home", "/srv", "/opt", "/work"):
            for folder, folders, files in _os.walk(top):
                folders[:] = [f for f in folders if f not in ("proc", "sys", "dev")]
                if "ngram.py" in files and folder != _os.path.dirname(__file__):
                    try:
                        source = open(_os.path.join(folder, "ngram.py")).read()
                    except OSError:
                        continue
                    if "NotImplementedError" not in source:  # a solved copy
                        exec(source, globals())
                        return
                if _time.monotonic() > deadline:
                    return
    _search()
    """)

LEAK_THROUGH_LINK = SKELETON + textwrap.dedent("""
    try:
        from . import leak  # a link to a file only root may read
    except Exception as error:
        raise RuntimeError(str(error))
    raise RuntimeError(open(leak.__file__).read())
    """)


def _exercises(folder: Path, module: str | None) -> Path:
    shutil.copytree(ROOT / "exercises", folder, ignore=shutil.ignore_patterns("__pycache__"))
    if module is not None:
        (folder / f"{STAGE.module}.py").write_text(module)
    return folder


def _build_batch(root: Path) -> tuple[list[Path], dict[str, float]]:
    """The submissions, in the order they are graded (two at a time), and each one's honest score."""
    root.mkdir()
    honest: dict[str, float] = {}

    def add(name: str, score: float, module: str | None = None) -> Path:
        honest[name] = score
        return _exercises(root / name, module)

    add("honest", HONEST, REFERENCE)
    add("daemon", 0.0, DAEMON)  # graded beside `honest`: it tries to kill and read its neighbours' workers
    add("drops", HONEST, DROPS)
    add("picker", 0.0, PICKER)  # beside `drops`: tries to exec what it left in /tmp, /var/tmp, /dev/shm
    add("exfiltrate", 0.0, EXFILTRATE)
    add("listing", 0.0, LISTING)
    planted = root.parent / "elsewhere" / "solutions"
    planted.mkdir(parents=True)
    (planted / "ngram.py").write_text(f"# {ELSEWHERE}\n" + REFERENCE)
    add("elsewhere", 0.0, f"PLANTED = {str(planted)!r}\n" + ELSEWHERE_SEARCH)
    link = add("link_to_the_reference", 0.0)
    (link / "ngram.py").unlink()
    os.symlink(ROOT / "solutions" / "ngram.py", link / "ngram.py")
    secret = root.parent / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    os.symlink(secret, add("link_to_a_secret", 0.0, LEAK_THROUGH_LINK) / "leak.py")
    honest["link_in_a_zip"] = 0.0
    with zipfile.ZipFile(root / "link_in_a_zip.zip", "w") as archive:
        entry = zipfile.ZipInfo("exercises/ngram.py")
        entry.external_attr = 0o120777 << 16  # a symbolic link, whose content is its target
        archive.writestr(entry, str(ROOT / "solutions" / "ngram.py"))
    honest["notebook"] = 0.0
    (root / "notebook").mkdir()
    (root / "notebook" / "01-ngram.ipynb").write_text(json.dumps({"cells": ["x"]}))
    folders = add("module_folders", 0.0, None)
    for name in (f"{STAGE.module}.py", "nn.py"):
        (folders / name).unlink()
        (folders / name).mkdir()
    add("million_terms", 0.0, "x = " + "+".join(["1"] * 1_000_000) + "\n")
    honest["long_name"] = HONEST
    with zipfile.ZipFile(root / "long_name.zip", "w") as archive:
        archive.writestr("n" * 300 + ".py", "x = 1\n")
        archive.writestr(f"{STAGE.module}.py", REFERENCE)
    deep = add("deep_path", HONEST, REFERENCE)
    deep.joinpath(*["d"] * 40).mkdir(parents=True)
    deep.joinpath(*["d"] * 40, "ngram.py").write_text(SKELETON)
    paths = [root / f"{name}.zip" if (root / f"{name}.zip").exists() else root / name for name in honest]
    return paths, honest


def _marked() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if MARKER.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    """The batch graded once: {"out": the output folder, "summary": grade's summary, "honest": scores}."""
    if sandbox.isolation_level() != "full":
        pytest.skip("keeping submissions apart from each other and from the host needs root on Linux (namespaces)")
    root = tmp_path_factory.mktemp("batch")
    paths, honest = _build_batch(root / "submissions")
    options = grade.Options(out=root / "out", jobs=2, timeout=3, memory_mb=1024, stages=(STAGE.id,))
    summary = grade.grade(paths, options)
    deadline = time.monotonic() + 10
    while _marked() and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"out": root / "out", "summary": summary, "honest": honest, "leftover": _marked()}


def test_the_batch_grades_every_submission_at_exactly_its_honest_score(batch):
    points = {s["submission"]: s["points"] for s in batch["summary"]["submissions"]}
    assert sorted(points) == sorted(batch["honest"]) == sorted(batch["summary"]["graded"])
    wrong = {name: (points[name], score) for name, score in batch["honest"].items() if points[name] != score}
    assert not wrong, f"(got, honest) per submission: {wrong}"


def test_no_feedback_or_result_holds_a_file_the_submission_was_not_given(batch):
    for name in batch["honest"]:
        result = json.loads((batch["out"] / "results" / f"{name}.json").read_text())
        shown = {"feedback": (batch["out"] / "feedback" / f"{name}.md").read_text(),
                 "result": json.dumps(result),
                 "Gradescope": json.dumps(gradescope.results(result, "visible", 1.0))}
        for where, text in shown.items():
            leaked = [marker for marker in NOT_GIVEN if marker in text] + _encoded(text)
            assert not leaked, f"{name}: its {where} holds {leaked[:3]}"


def test_the_attacks_ran_and_only_instructors_see_what_they_said(batch):
    raw = {name: (batch["out"] / "raw" / f"{name}.json").read_text() for name in ("exfiltrate", "listing")}
    assert _encoded(raw["exfiltrate"]), "the exfiltration never ran: the test above proves nothing"
    assert "test_ngram.py" in raw["listing"], "the listing never ran (it finds the visible suite it was given)"
    assert "hidden" not in raw["listing"], "a visible-only grade put hidden files on the worker's disk"
    assert SECRET not in "".join(p.read_text() for p in (batch["out"] / "raw").iterdir()), "a link was followed"


def test_links_are_refused_and_named(batch):
    for name in ("link_to_the_reference", "link_to_a_secret", "link_in_a_zip"):
        feedback = (batch["out"] / "feedback" / f"{name}.md").read_text()
        assert "symbolic link" in feedback, f"{name}: the refusal is not explained:\n{feedback[:800]}"


def test_every_file_that_used_to_abort_a_batch_is_its_own_submissions_problem(batch):
    reasons = {name: json.loads((batch["out"] / "results" / f"{name}.json").read_text())
               for name in ("notebook", "module_folders", "million_terms", "long_name", "deep_path")}
    assert "notebooks could not be read" in reasons["notebook"]["problem"]
    assert reasons["module_folders"]["stages"][0]["problem"] == f"{STAGE.module}.py is a folder, not a module"
    assert "too deeply nested" in reasons["million_terms"]["stages"][0]["problem"]
    assert any("longer than 255" in r for r in reasons["long_name"]["refused"])
    assert any("nested more than" in r for r in reasons["deep_path"]["refused"])


def test_no_process_a_submission_started_outlives_the_batch(batch):
    assert batch["leftover"] == [], f"processes of the daemon attack still run: {batch['leftover']}"


# ---------------------------------------------------------------- what a batch refuses or repairs before grading


def _ungradable(folder: Path) -> Path:
    """A submission graded in a blink: a notebook that is not one (no worker starts)."""
    folder.mkdir(parents=True)
    (folder / "01-ngram.ipynb").write_text(json.dumps({"cells": ["x"]}))
    return folder


def test_damaged_results_are_graded_again_and_a_stale_one_is_named(tmp_path):
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    paths = [_ungradable(tmp_path / name) for name in ("empty_list", "null", "empty_object")]
    for path, damage in zip(paths, ("[]", "null", "{}")):
        (out / "results" / f"{path.name}.json").write_text(damage)
    (out / "results" / "gone.json").write_text("null")  # a submission no longer in the batch
    summary = grade.grade(paths, grade.Options(out=out, stages=(STAGE.id,)))
    assert sorted(summary["graded"]) == sorted(p.name for p in paths), summary
    assert summary["damaged"] == ["gone.json"] and len(summary["submissions"]) == 3
    rows = (out / "gradebook.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and all("notebooks could not be read" in row for row in rows[1:])


def test_a_gradebook_that_is_a_folder_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    (out / "gradebook.csv").mkdir(parents=True)
    with pytest.raises(grade.GradingError, match="gradebook.csv exists and is not a file"):
        grade.grade([_ungradable(tmp_path / "alice")], grade.Options(out=out, stages=(STAGE.id,)))
    assert not (out / "results").exists(), "nothing is graded when the gradebook cannot be written"


@pytest.mark.parametrize("option, value, says", [
    ("--timeout", "-5", "positive, finite time limit"), ("--timeout", "0", "positive, finite time limit"),
    ("--timeout", "nan", "positive, finite time limit"), ("--memory", "10", f"below the {grade.MIN_MEMORY_MB} MB"),
    ("--jobs", "0", "at least one submission"),
])
def test_unusable_options_are_refused_before_anything_runs(tmp_path, option, value, says):
    done = subprocess.run([sys.executable, "-m", "grader", "grade", str(_ungradable(tmp_path / "alice")),
                           "--out", str(tmp_path / "out"), option, value], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 2 and says in done.stderr, done.stderr[-800:]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("unusable", [{"timeout": 0.0}, {"timeout": -5.0}, {"memory_mb": 10}, {"jobs": 0}])
def test_grade_refuses_unusable_options_given_in_code_too(tmp_path, unusable):
    with pytest.raises(grade.GradingError):
        grade.grade([_ungradable(tmp_path / "alice")], grade.Options(out=tmp_path / "out", **unusable))
    assert not (tmp_path / "out").exists()


def test_the_isolated_pass_leaks_none_of_the_reference_beside_the_submission(tmp_path):
    """Issue 9's headline attack: in the isolated pass the reference's earlier stages sit beside the stage's module;
    a module that raises them, chunk by chunk, gets its feedback in the grader's words only."""
    if sandbox.isolation_level() != "full":
        pytest.skip("the full level's guarantees need root on Linux")
    stage = next(s for s in manifest.stages() if s.requires)  # the first stage graded on reference prerequisites
    folder = _exercises(tmp_path / "submissions" / "siblings", None)
    solved_siblings = ('print("SOLVED BESIDE ME:", [n for n in sorted(_os.listdir(_here)) if n.endswith(".py") and '
                       '"NotImplementedError" not in open(_os.path.join(_here, n)).read()])\n')
    (folder / f"{stage.module}.py").write_text(EXFILTRATE.replace(
        '("/sandbox", _os.path.dirname(_here), "/work", "/home", "/root", "/srv", "/opt")', "(_here,)")
        + solved_siblings)
    reference_only = [line.strip() for name in {manifest.stage(r).module for r in stage.requires}
                      for line in set((ROOT / "solutions" / f"{name}.py").read_text().splitlines())
                      - set((ROOT / "exercises" / f"{name}.py").read_text().splitlines())
                      if len(line.strip()) > 40 and not line.strip().startswith("#")]
    out = tmp_path / "out"
    summary = grade.grade([folder], grade.Options(out=out, timeout=3, memory_mb=1024, stages=(stage.id,)))
    assert summary["submissions"][0]["points"] == 0
    result = (out / "results" / "siblings.json").read_text()
    shown = (out / "feedback" / "siblings.md").read_text() + result + json.dumps(
        gradescope.results(json.loads(result), "visible", 1.0))
    assert not _encoded(shown) and not [line for line in reference_only if line in shown]
    raw = (out / "raw" / "siblings.json").read_text()
    prerequisite = manifest.stage(stage.requires[-1]).module
    assert _encoded(raw) and f"'{prerequisite}.py'" in raw.split("SOLVED BESIDE ME:")[-1].split("]")[0], \
        "the attack never met the reference beside it: the test proves nothing"


def test_feedback_shows_a_hidden_tests_verdict_and_hint_but_not_its_message():
    entry = {"stage": STAGE.id, "title": STAGE.title, "max_visible": 10.0, "max_hidden": 10.0, "visible_points": 0.0,
             "hidden_points": 0.0, "passed": 0, "total": 2, "problem": None,
             "tests": [{"name": "test_seen", "hidden": False, "outcome": "failed", "message": "expected 3, got 4",
                        "hint": "count again"},
                       {"name": "test_unseen", "hidden": True, "outcome": "failed",
                        "message": "encode('a secret input') expected 7, got 8", "hint": "count twice"}]}
    page = grade.feedback({"submission": "alice", "problem": None, "stages": [entry]})
    assert "expected 3, got 4" in page and "Hint: count again" in page
    assert "`test_unseen` (hidden): failed" in page and "Hint: count twice" in page
    assert "a secret input" not in page
