"""Batch grading: `python -m grader grade SUBMISSION... --out DIR`.

For each submission (a folder or a .zip holding a copy of exercises/, or the stage notebooks) and each stage:
  isolated    the stage's own module with every prerequisite swapped for the reference, so a bug in stage 03 does
              not zero stage 06 (the score that counts);
  cumulative  the submission's own code throughout (what the learner's package really does).
Submission code runs only in sandboxed workers (grader/sandbox/); this process judges. The submission is first copied
into a scratch folder as regular files only (a symbolic link, a device or a pipe is refused and named in the
feedback), and everything after reads that copy. Results are written atomically per submission, so a run killed
half-way and started again loses and duplicates nothing, and whatever goes wrong with one submission is recorded as
its problem while the batch goes on.

What a student sees (feedback/NAME.md, Gradescope's results.json) is the grader's own text: test names, verdicts, the
judge's expected-vs-got, hints, and for an error its builtin type and the line of the student's own file. What the
submission printed or put in its exceptions goes to raw/NAME.json, for instructors only.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import os
import stat
import sys
import shutil
import tempfile
import threading
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import manifest, source
from ..manifest import ROOT, Stage
from .. import report
from ..sandbox import read_regular, remember_isolation
from ..suites import runner

FORBIDDEN_MODULES = ("torch", "jax", "jaxlib", "tensorflow", "solutions", "grader")
MAX_ZIP_BYTES = 64 * 2**20  # a submission unpacks (or copies) to at most this much
MAX_ENTRIES = 5000  # files and folders in one submission
MAX_DEPTH = 12  # folders inside folders
MAX_NAME = 255  # characters of one file or folder name (what most file systems allow)
MIN_MEMORY_MB = 256  # measured: Python with NumPy and pytest needs ~150 MB of address space (one BLAS thread)
MESSAGE_LINES, LINE_CHARACTERS = 15, 240  # of one test's message in a student's feedback
SHOWN_REFUSALS = 10
# Default budgets, in probe timeouts (--timeout): a stage's run may take 3 (an honest stage takes seconds), a whole
# submission 4.5 (an honest one, every stage, hidden, both passes, takes well under a minute; benchmarks/grading.py),
# so code that sleeps or spins in every call costs under 5 minutes at the default 60 s, and the batch goes on.
STAGE_BUDGET_PROBES, SUBMISSION_BUDGET_PROBES = 3, 4.5
GRADEBOOK_COLUMNS = ("submission", "stage", "title", "visible_points", "hidden_points", "max_visible", "max_hidden",
                     "cumulative_visible", "cumulative_hidden", "passed", "total", "problem")
COLLECTION_FAILED = ("the grader could not load this test (an error on the grader's side, not yours: tell your "
                     "instructor)")


@dataclass(frozen=True)
class Options:
    out: Path
    hidden: bool = False
    jobs: int = 1
    timeout: float = 60.0
    memory_mb: int = 4096
    force: bool = False
    stages: tuple[str, ...] = ()  # stage ids to grade; empty means every stage
    stage_budget: float = 0.0  # wall-clock seconds for one stage's run; 0: STAGE_BUDGET_PROBES probe timeouts
    submission_budget: float = 0.0  # wall-clock seconds for a whole submission; 0: SUBMISSION_BUDGET_PROBES timeouts

    def __post_init__(self) -> None:
        if not self.stage_budget:
            object.__setattr__(self, "stage_budget", STAGE_BUDGET_PROBES * self.timeout)
        if not self.submission_budget:
            object.__setattr__(self, "submission_budget", SUBMISSION_BUDGET_PROBES * self.timeout)


class SubmissionProblem(ValueError):
    """The submission cannot be graded as given (a bad zip, no modules); recorded as its grade's reason."""


class GradingError(RuntimeError):
    """The batch cannot run as asked (bad options, an unusable --out); the message says what to change."""


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(temporary, path)


def submission_name(path: Path) -> str:
    return path.stem if path.suffix == ".zip" else path.name


def _shown(name: str) -> str:
    """A file name from a submission, short enough for a feedback line."""
    return name if len(name) <= 80 else name[:60] + "..." + name[-17:]


class _Budget:
    """What one submission may unpack to: entries and bytes, counted as they are written."""

    def __init__(self, origin: str):
        self.origin, self.entries, self.bytes = origin, 0, 0

    def take(self, size: int) -> None:
        self.entries += 1
        self.bytes += size
        if self.entries > MAX_ENTRIES:
            raise SubmissionProblem(f"{self.origin} holds more than {MAX_ENTRIES} files and folders")
        if self.bytes > MAX_ZIP_BYTES:
            raise SubmissionProblem(f"{self.origin} unpacks to more than {MAX_ZIP_BYTES >> 20} MB")


def _name_problem(parts: tuple[str, ...]) -> str | None:
    if len(parts) > MAX_DEPTH:
        return f"is nested more than {MAX_DEPTH} folders deep"
    if any(len(part) > MAX_NAME for part in parts):
        return f"has a name longer than {MAX_NAME} characters"
    return None


def _copy_folder(source: Path, into: Path, refused: list[str]) -> None:
    """Copy a submission folder as regular files and folders only, never following a link; refusals are recorded."""
    budget = _Budget(source.name)
    pending = [(source, into, ())]
    while pending:
        folder, target, parts = pending.pop()
        target.mkdir(parents=True, exist_ok=True)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            refused.append(f"{_shown('/'.join(parts) or '.')}: cannot be read ({error.strerror})")
            continue
        for entry in entries:
            relative = (*parts, entry.name)
            shown = _shown("/".join(relative))
            problem = _name_problem(relative)
            if problem:
                refused.append(f"{shown}: {problem}")
                continue
            if entry.is_dir(follow_symlinks=False):
                budget.take(0)
                pending.append((Path(entry.path), target / entry.name, relative))
                continue
            data = read_regular(entry.path, MAX_ZIP_BYTES)
            if isinstance(data, str):
                refused.append(f"{shown}: {data}")
                continue
            budget.take(len(data))
            try:
                (target / entry.name).write_bytes(data)
            except OSError as error:
                refused.append(f"{shown}: cannot be copied ({error.strerror})")


def _extract_zip(path: Path, into: Path, refused: list[str]) -> None:
    """Unpack regular files and folders only: no symbolic link, no entry outside the folder, no overwriting."""
    budget = _Budget(path.name)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise SubmissionProblem(f"{path.name} holds more than {MAX_ENTRIES} files and folders")
            if sum(max(i.file_size, 0) for i in infos) > MAX_ZIP_BYTES:
                raise SubmissionProblem(f"{path.name} unpacks to more than {MAX_ZIP_BYTES >> 20} MB")
            into.mkdir(parents=True, exist_ok=True)
            for info in infos:
                name = info.filename.replace("\\", "/")
                shown = _shown(name)
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                    raise SubmissionProblem(f"{path.name} has an entry outside its folder: {shown!r}")
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    refused.append(f"{shown}: is a symbolic link (only regular files are graded)")
                    continue
                if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                    refused.append(f"{shown}: is a special file, not a regular file")
                    continue
                problem = _name_problem(parts)
                if problem:
                    refused.append(f"{shown}: {problem}")
                    continue
                target = into.joinpath(*parts)
                if info.is_dir():
                    budget.take(0)
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with archive.open(info) as member:
                    data = member.read(MAX_ZIP_BYTES + 1)
                budget.take(len(data))
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                                     | getattr(os, "O_BINARY", 0), 0o644)
                except FileExistsError:
                    refused.append(f"{shown}: appears twice in the zip (the first copy is graded)")
                    continue
                except OSError as error:
                    refused.append(f"{shown}: cannot be unpacked ({error.strerror})")
                    continue
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise SubmissionProblem(f"{path.name} is not a zip file that can be read ({error})") from None
    except (RuntimeError, ValueError, OSError) as error:  # an encrypted entry, a bad CRC, a truncated file
        if isinstance(error, SubmissionProblem):
            raise
        raise SubmissionProblem(f"{path.name} could not be unpacked ({type(error).__name__}: {error})") from None


def _unpack(path: Path, into: Path, refused: list[str] | None = None) -> Path:
    """A submission as a folder of stage modules, from a folder, a zip, or notebooks, always a copy inside `into`.

    Only regular files and folders are copied; each link, special file, too-long name or too-deep path is refused
    and described in `refused` (shown in the feedback), never followed.
    """
    refused = [] if refused is None else refused
    if path.suffix == ".zip":
        status = os.lstat(path)
        if not stat.S_ISREG(status.st_mode):
            raise SubmissionProblem(f"{path.name} is not a regular file (a link or a folder named .zip?)")
        _extract_zip(path, into, refused)
    elif path.is_dir() and not path.is_symlink():
        _copy_folder(path, into, refused)
    else:
        raise SubmissionProblem(f"{path.name} is neither a folder nor a .zip file")
    path = into
    modules = {m.module for m in manifest.stages()}
    candidates = [path, path / "exercises", *sorted(p for p in path.rglob("*") if p.is_dir() and p.name != "workbook")]
    for folder in candidates:  # (workbook/ beside a notebook holds the reference's earlier stages, not the learner's)
        if any((folder / f"{m}.py").is_file() for m in modules):
            return folder
    notebooks = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    if notebooks:  # the stage notebooks: their module-code cells become the modules (grader/notebooks/)
        from ..notebooks import NotebookError, modules_from_notebooks
        try:
            return modules_from_notebooks(notebooks, into.with_name(into.name + "-notebooks"))[0].parent
        except NotebookError as error:
            raise SubmissionProblem(f"the notebooks: {error}") from None
        except Exception as error:  # noqa: BLE001 - a notebook that is JSON but not a notebook (RecursionError too)
            raise SubmissionProblem(f"the notebooks could not be read as notebooks ({type(error).__name__}); "
                                    f"upload the stage notebooks as Jupyter saved them") from None
    folders = [p for p in path.rglob("*") if p.is_dir() and any(p.name == f"{m}.py" for m in modules)]
    if folders:
        raise SubmissionProblem(f"{_shown(folders[0].name)} is a folder, not a module: upload the stage modules "
                                f"({', '.join(sorted(modules))}.py) as files")
    links = [r for r in refused if r.split(":")[0].rsplit("/", 1)[-1] in {f"{m}.py" for m in modules}]
    raise SubmissionProblem(f"no stage modules ({', '.join(sorted(modules))}.py) and no notebooks found"
                            + (f"; refused: {links[0]}" if links else ""))


def forbidden_imports(package: Path, stage: Stage) -> list[str]:
    """Imports of frameworks or of the reference in the stage's module (a syntax error is the tests' business).

    A module too deeply nested for Python to parse (RecursionError, MemoryError) is a SubmissionProblem: the stage
    scores 0 with that reason, and the batch goes on.
    """
    data = read_regular(package / f"{stage.module}.py")
    if isinstance(data, str):
        return []
    try:
        tree = ast.parse(data.decode("utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return []
    except (RecursionError, MemoryError) as error:
        raise SubmissionProblem(f"{stage.module}.py is too deeply nested for Python to parse ({type(error).__name__}); "
                                f"the stage scores 0") from None
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        found += [n for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
    return sorted(set(found))


def _write_given_modules(into: Path) -> None:
    """The given modules (source.given_modules: the corpus, the run log, ...), always the reference's: every learner
    receives them whole, so a submission's copy (missing, edited or stale) never changes a grade."""
    for module in source.given_modules():
        (into / f"{module}.py").write_bytes((ROOT / "solutions" / f"{module}.py").read_bytes())


def _isolated_package(package: Path, stage: Stage, into: Path) -> Path:
    """The stage's module from the submission beside the reference's modules for its prerequisites and the given
    modules, and nothing else."""
    into.mkdir(parents=True)
    for earlier in manifest.prerequisites(stage):
        (into / f"{earlier.module}.py").write_bytes((ROOT / "solutions" / f"{earlier.module}.py").read_bytes())
    _write_given_modules(into)
    data = read_regular(package / f"{stage.module}.py")
    if isinstance(data, bytes):
        (into / f"{stage.module}.py").write_bytes(data)
    return into


def _digest(path: Path) -> str | None:
    """sha256 of a submission: names and the bytes of regular files, links and special files by name only, nothing
    followed. None when it cannot be read (then it is graded again every time)."""
    digest = hashlib.sha256()
    try:
        if path.is_symlink() or not path.is_dir():
            data = read_regular(path, 4 * MAX_ZIP_BYTES)
            digest.update(path.name.encode("utf-8", "replace"))
            digest.update(data if isinstance(data, bytes) else data.encode())
            return digest.hexdigest()
        pending, seen = [(path, ())], 0
        while pending:
            folder, parts = pending.pop()
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                seen += 1
                if seen > 2 * MAX_ENTRIES:
                    return None
                relative = (*parts, entry.name)
                digest.update("/".join(relative).encode("utf-8", "replace") + b"\0")
                if entry.is_dir(follow_symlinks=False):
                    if len(relative) <= MAX_DEPTH + 1:
                        pending.append((Path(entry.path), relative))
                    continue
                data = read_regular(entry.path, MAX_ZIP_BYTES)
                digest.update(data if isinstance(data, bytes) else b"refused: " + data.encode())
    except (OSError, ValueError, RecursionError):
        return None
    return digest.hexdigest()


def _suite_args(options: Options) -> list[str]:
    return ["--sandbox", f"--probe-timeout={options.timeout:g}", f"--memory-mb={options.memory_mb}"]


def _chosen(options: Options) -> list[Stage]:
    return [manifest.stage(s) for s in options.stages] if options.stages else list(manifest.stages())


def _zero(stage: Stage, options: Options, problem: str | None, total: int = 0) -> dict:
    return {"stage": stage.id, "title": stage.title, "max_visible": stage.visible_points,
            "max_hidden": stage.hidden_points if options.hidden else 0.0, "problem": problem, "visible_points": 0.0,
            "hidden_points": 0.0, "cumulative_visible": 0.0, "cumulative_hidden": 0.0, "passed": 0, "total": total,
            "tests": []}


def _public(test: runner.TestResult) -> str:
    """A test's message as a student may see it: the grader's own words (a failed collection says only that)."""
    if test.outcome == "error" and "::" not in test.nodeid:  # a test module that did not load: its traceback is
        return COLLECTION_FAILED                               # the test's source, never shown
    return test.message


def grade_one(path: Path, options: Options) -> dict:
    """Grade one submission; never raises: whatever goes wrong is recorded as this submission's problem.

    The result's "raw" entry holds what the submission said (messages, tracebacks, printed output) for instructors;
    grade() writes it to raw/NAME.json, apart from the result, and it never reaches a student.
    """
    started = time.monotonic()
    result = {"submission": submission_name(path), "source": str(path), "digest": None, "hidden": options.hidden,
              "problem": None, "refused": [], "stages": [], "raw": {"errors": [], "tests": []}}
    stages = _chosen(options)
    try:
        result["digest"] = _digest(path)
        _grade_stages(path, options, stages, result)
    except Exception as error:  # noqa: BLE001 - one submission must never abort the batch
        result["problem"] = (f"the grader failed on this submission ({type(error).__name__}); it is recorded for "
                             f"your instructor")
        result["raw"]["errors"].append(traceback.format_exc()[-6000:])
        graded = {entry["stage"] for entry in result["stages"]}
        result["stages"] += [_zero(s, options, result["problem"]) for s in stages if s.id not in graded]
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _stage_problem(package: Path, stage: Stage, refused: list[str]) -> str | None:
    """Why a stage scores 0 before any test runs (no module, a folder in its place, a forbidden import, a module
    Python cannot parse), or None."""
    module = package / f"{stage.module}.py"
    if module.is_dir():
        return f"{stage.module}.py is a folder, not a module"
    if not module.is_file():
        links = [r for r in refused if r.split(":")[0].rsplit("/", 1)[-1] == f"{stage.module}.py"]
        return f"no {stage.module}.py in the submission" + (f" ({links[0]})" if links else "")
    try:
        banned = forbidden_imports(package, stage)
    except SubmissionProblem as problem:
        return str(problem)
    return f"forbidden imports in {stage.module}.py: {', '.join(banned)} (stage scores 0)" if banned else None


_EXPECTED: dict[str, dict[bool, list[str]]] = {}  # stage id -> hidden -> the test ids its suites hold
_EXPECTED_LOCK = threading.Lock()


def expected_tests(stages: list[Stage]) -> dict[str, dict[bool, list[str]]]:
    """The test ids of each stage's visible and hidden suites, collected once per process (a test a run never
    reached still counts, as failed: the score is out of every test, never out of those that happened to run)."""
    with _EXPECTED_LOCK:
        missing = [s for s in stages if s.id not in _EXPECTED]
        if missing:
            from ..notebooks.groups import collect
            try:
                collected = collect(missing)
            except Exception:  # noqa: BLE001 - a suite that does not collect: its runs record that themselves
                collected = {s.id: [] for s in missing}
            for stage_id, groups in collected.items():
                _EXPECTED[stage_id] = {hidden: [n for g in groups if g.hidden == hidden for n in g.nodeids]
                                       for hidden in (False, True)}
        return {s.id: _EXPECTED[s.id] for s in stages}


def _complete(result: runner.StageResult, expected: dict[bool, list[str]], hidden: bool, reason: str) -> None:
    """Add each test the run did not reach as failed, with `reason` (a budget used up, a run that stopped)."""
    seen = {t.nodeid for t in result.tests}  # (a test file that did not load is one entry, its path)
    for suite_hidden in (False, True) if hidden else (False,):
        for nodeid in expected.get(suite_hidden, []):
            if nodeid not in seen and nodeid.split("::")[0] not in seen:
                result.tests.append(runner.TestResult(nodeid, nodeid.split("::", 1)[-1], result.stage.id,
                                                      suite_hidden, "failed", message=reason))


def _not_reached(error: str | None, budget: float, what: str) -> str:
    if error and error.startswith("the run took longer"):
        return (f"not run: the {what} budget of {round(budget, 1):g} s was used up before this test (code that "
                f"sleeps, spins or is very slow in the tests before it?)")
    return f"not run: the test run stopped before this test ({(error or 'no reason given').splitlines()[0]})"


def _grade_stages(path: Path, options: Options, stages: list[Stage], result: dict) -> None:
    deadline = time.monotonic() + options.submission_budget
    with tempfile.TemporaryDirectory(prefix="grade-", dir=_scratch_root(options)) as scratch:
        try:
            package = _unpack(path, Path(scratch) / "unpacked", result["refused"])
            _write_given_modules(package)
        except SubmissionProblem as problem:
            result["problem"] = str(problem)
            package = None
        reasons = {s.id: result["problem"] if package is None else _stage_problem(package, s, result["refused"])
                   for s in stages}
        runnable = [s for s in stages if not reasons[s.id]]  # a stage that scores 0 anyway costs no worker's time
        expected = expected_tests(runnable) if runnable else {}
        cumulative, short = {}, set()  # short: stages the cumulative run did not finish
        if package is not None and runnable:
            budget = min(options.stage_budget * len(runnable), max(deadline - time.monotonic(), 1.0))
            run = runner.run(runnable, str(package), hidden=options.hidden, extra=_suite_args(options),
                             timeout=budget)
            cumulative = {r.stage.id: r for r in run.stages}
            result["run_error"] = run.error.splitlines()[0] if run.error else None
            if run.error:
                result["raw"]["errors"].append(run.error[-6000:])
                for stage in runnable:
                    before = len(cumulative[stage.id].tests)
                    _complete(cumulative[stage.id], expected[stage.id], options.hidden,
                              _not_reached(run.error, budget, "cumulative run's"))
                    if len(cumulative[stage.id].tests) > before:
                        short.add(stage.id)
        for stage in stages:
            if reasons[stage.id]:
                result["stages"].append(_zero(stage, options, reasons[stage.id]))
                continue
            whole = cumulative[stage.id]
            if (stage.requires and not whole.complete) or stage.id in short:  # full marks on its own code need no
                remaining = deadline - time.monotonic()                        # second opinion
                alone = runner.StageResult(stage)
                if remaining <= 0:
                    _complete(alone, expected[stage.id], options.hidden,
                              f"not run: the submission budget of {options.submission_budget:g} s was used up "
                              f"before this stage")
                else:
                    isolated = _isolated_package(package, stage, Path(scratch) / f"iso{stage.id}")
                    budget = min(options.stage_budget, remaining)
                    alone_run = runner.run([stage], str(isolated), hidden=options.hidden, extra=_suite_args(options),
                                           timeout=budget)
                    alone = alone_run.stages[0]
                    if alone_run.error:
                        result["raw"]["errors"].append(f"stage {stage.id}, isolated: {alone_run.error[-6000:]}")
                        what = "stage" if budget == options.stage_budget else "submission's remaining"
                        _complete(alone, expected[stage.id], options.hidden, _not_reached(alone_run.error, budget,
                                                                                          what))
            else:
                alone = whole  # nothing to swap, or nothing to gain: the isolated pass would give the same score
            entry = _zero(stage, options, None)
            entry.update(visible_points=alone.points(False), hidden_points=alone.points(True),
                         cumulative_visible=whole.points(False), cumulative_hidden=whole.points(True),
                         passed=alone.passed(), total=alone.total(),
                         tests=[{"name": t.name, "nodeid": t.nodeid, "hidden": t.hidden, "outcome": t.outcome,
                                 "message": _public(t), "hint": t.hint} for t in alone.tests])
            result["stages"].append(entry)
            result["raw"]["tests"] += [{"stage": stage.id, "name": t.name, "outcome": t.outcome,
                                        "message": t.message, "details": t.details}
                                       for t in alone.tests if not t.passed]


SCRATCH = ".scratch"  # under --out: one folder per grading process, named by its pid


def _scratch_root(options: Options) -> Path:
    root = options.out / SCRATCH / str(os.getpid())
    root.mkdir(parents=True, exist_ok=True)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_scratch(out: Path) -> list[str]:
    """Remove the scratch folders of grading processes that are gone (killed, crashed); returns their names."""
    removed = []
    root = out / SCRATCH
    if not root.is_dir():
        return removed
    for folder in sorted(root.iterdir()):
        if folder.name.isdigit() and int(folder.name) != os.getpid() and _alive(int(folder.name)):
            continue
        if folder.name == str(os.getpid()):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def student_text(message: str) -> list[str]:
    """A test's message cut to what a feedback page shows: a few lines, none very long."""
    lines = (message or "(no message)").strip().splitlines()
    shown = [line if len(line) <= LINE_CHARACTERS else line[:LINE_CHARACTERS - 3] + "..."
             for line in lines[:MESSAGE_LINES]]
    return shown + (["..."] if len(lines) > MESSAGE_LINES else [])


def refusals(result: dict) -> list[str]:
    """What a submission held that was not graded, as feedback lines."""
    refused = result.get("refused") or []
    return [f"- {r}" for r in refused[:SHOWN_REFUSALS]] + (
        [f"- and {len(refused) - SHOWN_REFUSALS} more"] if len(refused) > SHOWN_REFUSALS else [])


def _stage_heading(entry: dict) -> str:
    earned = entry["visible_points"] + entry["hidden_points"]
    return (f"Stage {entry['stage']} {entry['title']}: {earned:g} / {entry['max_visible'] + entry['max_hidden']:g} "
            f"points")


def feedback(result: dict) -> str:
    """A learner-facing page: the total, one line per stage, one line per failing test, then each failure's details.

    A stage that could not run (no module, a forbidden import) is its one line with the reason; a hidden test shows
    its name, verdict and hint only (its message would tell the hidden case's inputs).
    """
    stages = result["stages"]
    earned = sum(e["visible_points"] + e["hidden_points"] for e in stages)
    possible = sum(e["max_visible"] + e["max_hidden"] for e in stages)
    lines = [f"# Feedback for {result['submission']}", "", f"**Total: {round(earned, 2):g} / {possible:g} points**"
             + ("" if result.get("hidden") else " (visible tests only)"), ""]
    if result.get("problem"):
        lines += [f"**This submission could not be graded:** {result['problem']}", ""]
    if result.get("refused"):
        lines += ["**Not graded** (only regular files are; links, special files, over-long names and deep folders "
                  "are refused):", *refusals(result), ""]
    failing = [(entry, test) for entry in stages for test in entry.get("tests", []) if test["outcome"] != "passed"]
    lines += ["## Stages", ""]
    for entry in stages:
        counts = f" ({entry['passed']}/{entry['total']} tests)" if entry.get("tests") else ""
        reason = entry.get("problem") if entry.get("problem") and entry["problem"] != result.get("problem") else None
        lines.append(f"- {_stage_heading(entry)}{counts}" + (f": {reason}" if reason else ""))
    if failing:
        lines += ["", "## Failing tests", ""]
        lines += [f"- {entry['stage']} `{test['name']}`" + (" (hidden)" if test["hidden"] else "")
                  + f": {test['outcome']}" for entry, test in failing]
        lines += ["", "## Details"]
        shown_stage = None
        for entry, test in failing:
            if entry["stage"] != shown_stage:
                shown_stage = entry["stage"]
                lines += ["", f"### {_stage_heading(entry)}"]
            if test["hidden"]:
                lines += ["", f"- `{test['name']}` (hidden): {test['outcome']}"]
            else:
                lines += ["", f"- `{test['name']}`: {test['outcome']}", "", "  ```",
                          *("  " + line for line in student_text(test["message"])), "  ```"]
            if test.get("hint"):
                lines.append(f"  Hint: {test['hint']}")
    lines.append("")
    return "\n".join(lines)


def _gradebook(results: list[dict]) -> str:
    """The wide gradebook: one row per student, the points of each stage graded, the total and its maximum."""
    stage_ids = sorted({e["stage"] for r in results for e in r["stages"]})
    columns = ["submission", *stage_ids, "total", "max_total", "problem"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=lambda r: r["submission"]):
        row = {"submission": result["submission"], "problem": result.get("problem") or ""}
        for entry in result["stages"]:
            row[entry["stage"]] = f"{round(entry['visible_points'] + entry['hidden_points'], 2):g}"
        row["total"] = f"{round(sum(e['visible_points'] + e['hidden_points'] for e in result['stages']), 2):g}"
        row["max_total"] = f"{sum(e['max_visible'] + e['max_hidden'] for e in result['stages']):g}"
        writer.writerow(row)
    return buffer.getvalue()


def _stage_rows(results: list[dict]) -> str:
    """gradebook-stages.csv: one row per submission and stage graded, with the details of each score."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GRADEBOOK_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=lambda r: r["submission"]):
        for entry in result["stages"]:
            writer.writerow({**entry, "submission": result["submission"], "problem": entry.get("problem") or ""})
    return buffer.getvalue()


STAGE_FIELDS = {"stage": str, "title": str, "visible_points": (int, float), "hidden_points": (int, float),
                "max_visible": (int, float), "max_hidden": (int, float)}


def _valid(result: object) -> bool:
    """Whether a stored result is one grade_one wrote (a damaged one, `[]`, `null`, `{}`, is graded again)."""
    return (isinstance(result, dict) and isinstance(result.get("submission"), str)
            and isinstance(result.get("stages"), list)
            and all(isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in STAGE_FIELDS.items())
                    for e in result["stages"]))


def _stored(path: Path) -> dict | None:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if _valid(result) else None


def check_options(options: Options) -> None:
    """Refuse, before anything runs, what would zero honest work or fail half-way."""
    if not (options.timeout > 0 and options.timeout != float("inf")):
        raise GradingError(f"--timeout must be a positive number of seconds, not {options.timeout:g}")
    if options.memory_mb < MIN_MEMORY_MB:
        raise GradingError(f"--memory {options.memory_mb} MB is below the {MIN_MEMORY_MB} MB that Python with NumPy "
                           f"needs to start: every test would fail")
    for flag, value in (("--stage-budget", options.stage_budget), ("--submission-budget", options.submission_budget)):
        if not (value > 0 and value != float("inf")):
            raise GradingError(f"{flag} must be a positive number of seconds, not {value:g}")
    if options.jobs < 1:
        raise GradingError(f"--jobs must be at least 1, not {options.jobs}")
    out = options.out
    if out.exists() and not out.is_dir():
        raise GradingError(f"--out {out} is a file, not a folder")
    for name in ("gradebook.csv", "gradebook-stages.csv", "summary.json"):
        if (out / name).exists() and not (out / name).is_file():
            raise GradingError(f"{out / name} exists and is not a file (a folder?): move it away, it is rewritten")
    for name in ("results", "feedback", "raw"):
        if (out / name).exists() and not (out / name).is_dir():
            raise GradingError(f"{out / name} exists and is not a folder: move it away")


def grade(paths: list[Path], options: Options, on_progress=None) -> dict:
    """Grade every submission not graded yet (all with force) and rewrite the gradebook and summary from results/."""
    check_options(options)
    names = [submission_name(p) for p in paths]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SubmissionProblem(f"two submissions share the name(s) {sorted(duplicates)}; rename one")
    results_dir = options.out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    stale = clean_stale_scratch(options.out)  # left by a run that was killed
    remember_isolation()  # found once here, not again in every suite run
    pending, skipped = [], []
    chosen = [s.id for s in _chosen(options)]
    for path in paths:
        stored = _stored(results_dir / f"{submission_name(path)}.json")
        if (stored is not None and not options.force and stored.get("digest") and stored["digest"] == _digest(path)
                and [e["stage"] for e in stored["stages"]] == chosen and stored.get("hidden") == options.hidden):
            skipped.append(submission_name(path))
        else:
            pending.append(path)  # new, changed, forced, or a damaged result: graded (again)
    done = 0
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = {pool.submit(grade_one, path, options): path for path in pending}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - grade_one does not raise; if it ever does, record it
                path = futures[future]
                result = {"submission": submission_name(path), "source": str(path), "digest": None,
                          "hidden": options.hidden, "problem": f"the grader failed ({type(error).__name__})",
                          "refused": [], "stages": [_zero(s, options, "the grader failed") for s in _chosen(options)],
                          "raw": {"errors": [traceback.format_exc()[-6000:]], "tests": []}}
            raw = result.pop("raw", {})
            name = result["submission"]
            _write_atomically(options.out / "raw" / f"{name}.json", json.dumps(
                {"submission": name, "note": "what the submission said: for instructors only, never for students",
                 **raw}, indent=1))
            _write_atomically(results_dir / f"{name}.json", json.dumps(result, indent=1))
            _write_atomically(options.out / "feedback" / f"{name}.md", feedback(result))
            done += 1
            if on_progress:
                on_progress(done, len(pending))
    results, damaged = [], []
    for stored_path in sorted(results_dir.glob("*.json")):
        stored = _stored(stored_path)
        if stored is None:
            damaged.append(stored_path.name)
        else:
            results.append(stored)
    shutil.rmtree(options.out / SCRATCH / str(os.getpid()), ignore_errors=True)
    _write_atomically(options.out / "gradebook.csv", _gradebook(results))
    _write_atomically(options.out / "gradebook-stages.csv", _stage_rows(results))
    summary = {
        "graded": [submission_name(p) for p in pending], "skipped": skipped, "damaged": damaged,
        "stale_scratch_removed": stale,
        "submissions": [{"submission": r["submission"], "problem": r.get("problem"),
                         "points": round(sum(e["visible_points"] + e["hidden_points"] for e in r["stages"]), 2),
                         "max_points": sum(e["max_visible"] + e["max_hidden"] for e in r["stages"]),
                         "seconds": r.get("seconds")} for r in results],
    }
    _write_atomically(options.out / "summary.json", json.dumps(summary, indent=1))
    return summary


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade submissions into --out: gradebook.csv, feedback/<name>.md, results/<name>.json, raw/<name>.json,
    summary.json."""
    try:
        chosen = tuple(s.id for s in manifest.select(args.stages or []))
    except (KeyError, ValueError) as error:  # an unknown stage id: the message lists the stages
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    options = Options(out=Path(args.out), hidden=args.hidden, jobs=args.jobs, timeout=args.probe_timeout,
                      memory_mb=args.memory, force=args.force, stages=chosen if args.stages else (),
                      stage_budget=args.stage_budget or 0.0, submission_budget=args.submission_budget or 0.0)
    paths = [Path(p) for p in args.submissions]
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        check_options(options)
        from ..sandbox import LEVELS
        level = remember_isolation()
        print(f"sandbox isolation: {level} ({LEVELS[level]})")
        with report.progress("grading submissions") as on_progress:
            summary = grade(paths, options, on_progress)
    except (GradingError, SubmissionProblem) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for entry in summary["submissions"]:
        note = f"  ({entry['problem']})" if entry["problem"] else ""
        print(f"{entry['submission']}: {entry['points']:g} / {entry['max_points']:g}{note}")
    if summary["skipped"]:
        print(f"already graded, skipped (use --force to grade again): {', '.join(summary['skipped'])}")
    if summary["damaged"]:
        print(f"damaged results left out of the gradebook (grade those submissions again): "
              f"{', '.join(summary['damaged'])}", file=sys.stderr)
    print(f"wrote {options.out / 'gradebook.csv'}, {options.out / 'summary.json'}, feedback/, results/ and raw/ "
          f"(raw/ holds what submissions printed and raised: for instructors only)")
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} s: a probe needs a positive, finite time limit")
    return value


def _memory(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MB") from None
    if value < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"{value} MB is below the {MIN_MEMORY_MB} MB that Python with NumPy needs "
                                         f"to start (every test would fail)")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least one submission must be graded at a time")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("grade", help="instructors: grade submissions in sandboxed workers")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="folders or .zip files")
    parser.add_argument("--out", required=True,
                        help="folder for gradebook.csv, feedback/, results/, raw/ (instructors only), summary.json")
    parser.add_argument("--hidden", action="store_true", help="include the hidden suites")
    parser.add_argument("--jobs", type=_jobs, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--timeout", dest="probe_timeout", type=_positive_seconds, default=60.0,
                        help="seconds one probe call may take (default 60)")
    parser.add_argument("--memory", type=_memory, default=4096,
                        help=f"MB of address space for submission code (default 4096, at least {MIN_MEMORY_MB})")
    parser.add_argument("--force", action="store_true", help="grade again submissions already graded")
    parser.add_argument("--stage-budget", type=_positive_seconds, default=None,
                        help=f"wall-clock seconds for one stage's run (default {STAGE_BUDGET_PROBES} x --timeout); "
                             f"tests not reached then fail, naming the budget")
    parser.add_argument("--submission-budget", type=_positive_seconds, default=None,
                        help=f"wall-clock seconds for one submission (default {SUBMISSION_BUDGET_PROBES} x --timeout)")
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help="grade only these stages (default: all)")
    parser.set_defaults(func=cmd_grade)
