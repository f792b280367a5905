"""What runs inside a learner's notebook kernel: `setup`, `todo` and `run_tests`, which the notebook's cells call.

`setup` makes the notebook's own definitions the target of the stage's real tests; `run_tests` runs them in-process
through pytest and fails with a short verdict that speaks of this notebook's cells (never a traceback into the
grader); `todo()` is what a stub calls. Only the standard library, pytest and the grader are imported here, nothing
Unix-only: learners run notebooks on Windows and macOS too.
"""
from __future__ import annotations

import inspect
import linecache
import re
import sys
import textwrap
import types
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from .common import PREREQUISITES, notebook_name

TARGET = "this_notebook"  # the --target name under which a kernel's definitions are tested
WIDTH = 100  # verdict lines are wrapped here: nbgrader's feedback page shows them in a <pre> that does not wrap

_KERNEL: dict = {}


def setup(stage_id: str, namespace: dict) -> None:
    """Make `namespace` (the notebook's globals) the stage's test target and the prerequisites importable."""
    from ..suites import targets

    stage = manifest.stage(stage_id)
    _KERNEL.update(stage=stage, namespace=namespace, runs={})
    here = Path.cwd().resolve()
    targets.NAMED[TARGET] = here / f".{TARGET}"  # resolved already: targets.package_name finds it by equality
    if (here / PREREQUISITES).is_dir():
        source = here / PREREQUISITES  # beside the notebook: the reference's modules (an nbgrader course, a test run)
    elif (ROOT / "solutions").is_dir():
        source = ROOT / "solutions"  # the instructors' checkout
    else:
        source = ROOT / "exercises"  # a student release: your own earlier stages
    if source != here / PREREQUISITES:
        package = types.ModuleType(PREREQUISITES)
        package.__path__ = [str(source)]
        sys.modules[PREREQUISITES] = package
    reference = "solutions/" if (ROOT / "solutions").is_dir() else "the stored outputs in tests/expected/"
    uses = f"; `{PREREQUISITES}` (the earlier stages) is {source}" if stage.requires else ""
    print(f"stage {stage.label}: tests from {ROOT / 'tests'}, compared with {reference}{uses}")


def todo() -> None:
    """Where your code goes. In a function: raise NotImplementedError naming the stage and the function, as the stubs
    of exercises/ do. At the level of a module or class (a place for optional helpers): nothing."""
    code = sys._getframe(1).f_code
    if not code.co_flags & inspect.CO_OPTIMIZED:  # a module's or a class's body, not a function's
        return
    name = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
    stage = _KERNEL.get("stage")
    raise NotImplementedError(f"stage {stage.id} ({stage.title}): {name}" if stage else name)


# ---------------------------------------------------------------- failures, told in the notebook's terms


def _cell(filename: str) -> str | None:
    """'cell [7]' when `filename` is the code of a notebook cell (IPython numbers cells as Jupyter shows them)."""
    try:
        number = get_ipython().compile._filename_map.get(filename)  # noqa: F821 (defined in a kernel)
    except (NameError, AttributeError):
        number = None
    if number is not None:
        return f"cell [{number}]"
    if re.search(r"ipykernel_\d+[\\/]\d+\.py$|^<ipython-input-", filename):
        return "a cell"
    return None


def _chain(error: BaseException):
    """The error and those it came from (`raise ... from`, or raised while handling), with their frames."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        frames, tb = [], error.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code, tb.tb_lineno))
            tb = tb.tb_next
        yield error, frames
        error = error.__cause__ or error.__context__


def _in_notebook_terms(message: str, error: BaseException, module: str) -> str:
    """A failure message that points at this notebook's cells: a stub by its function and cell, an error in the
    learner's code by the deepest line of it in a cell, and no kernel file names (2485582790.py)."""
    for found, frames in _chain(error):
        if frames and frames[-1][0] is todo.__code__:  # a stub: todo() raised it
            if len(frames) > 1 and _cell(frames[-2][0].co_filename):
                code = frames[-2][0]
                name = getattr(code, "co_qualname", code.co_name)
                return (f"{name} is not written yet: in {_cell(code.co_filename)} of this notebook, replace "
                        f"`todo()` with your code, run that cell, then this one again")
            return f"NotImplementedError: {found}"
    missing = re.search(rf"module '{TARGET}\.{re.escape(module)}' has no attribute '(\w+)'", message)
    if missing:
        return (f"this notebook defines no `{missing[1]}`: run the cell that defines it (or Run All), then this "
                f"cell again")
    for found, frames in _chain(error):
        cells = [(code, line) for code, line in frames if _cell(code.co_filename)]
        if cells:
            code, line = cells[-1]
            text = linecache.getline(code.co_filename, line).strip()
            name = getattr(code, "co_qualname", code.co_name)
            where = "" if name == "<module>" else f"{name}, "
            message += f"\n  at {where}{_cell(code.co_filename)} of this notebook, line {line}: {text}"
            break
    return re.sub(r"\S*ipykernel_\d+[\\/]\d+\.py|(?<![\w/\\])\d{6,}\.py\b", "this notebook", message)


class _Outcomes:
    """A pytest plugin that keeps each test's outcome, its failure message and the manifest's hint."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.results: dict[str, dict] = {}
        self.skipped_files: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def pytest_configure(self, config) -> None:
        config.option.tbstyle = "native"  # only the message is shown: skip pytest's costly source excerpts

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors[report.nodeid] = str(report.longrepr)[-2000:]
        elif report.skipped:
            self.skipped_files[report.nodeid] = str(report.longrepr)[-300:]

    def pytest_runtest_makereport(self, item, call):
        import pytest

        from ..suites.plugin import _message

        if call.excinfo is None:
            return
        record = self.results.setdefault(item.nodeid, {"outcome": "passed", "message": "", "hint": None})
        if call.excinfo.errisinstance(pytest.skip.Exception):
            record.update(outcome="skipped", message=str(call.excinfo.value))
            return
        if record["outcome"] != "failed":
            marker = item.get_closest_marker("concept")
            found = manifest.stage_of_test_path(item.path)
            message = _in_notebook_terms(_message(call.excinfo), call.excinfo.value, self.stage.module)
            record.update(outcome="failed", message=message,
                          hint=found[0].hint(marker.args[0]) if found and marker else None)

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.results.setdefault(nodeid, {"outcome": "passed", "message": "", "hint": None})


# ---------------------------------------------------------------- running the tests


def _target_module(stage: Stage, namespace: dict) -> types.ModuleType:
    module = types.ModuleType(f"{TARGET}.{stage.module}", f"stage {stage.id}, from this notebook")
    module.__dict__.update({k: v for k, v in namespace.items() if not k.startswith("_")})
    module.__file__, module.__package__ = "this notebook", TARGET
    return module


def _register_target(stage: Stage) -> None:
    """The package `this_notebook`: the notebook's definitions as the stage's module, beside the very modules it
    imported from `workbook` (tests reach those as siblings: `importlib.import_module(m.__package__ + ...)`)."""
    import importlib

    from ..suites import targets

    package = types.ModuleType(TARGET)
    package.__path__ = [str(targets.NAMED[TARGET])]
    sys.modules[TARGET] = package
    for earlier in manifest.prerequisites(stage):
        try:
            importlib.import_module(f"{PREREQUISITES}.{earlier.module}")
        except Exception:  # the notebook's own import of it fails too, and says why
            pass
    for name, module in list(sys.modules.items()):  # earlier stages, and given modules the notebook imported
        if name.startswith(f"{PREREQUISITES}.") and name.count(".") == 1 and module is not None:
            sys.modules[f"{TARGET}.{name.split('.')[1]}"] = module
    sys.modules[f"{TARGET}.{stage.module}"] = _target_module(stage, _KERNEL["namespace"])


def _run_suite(stage: Stage, suite: str) -> dict:
    """Run one suite (tests/stageNN or tests/hidden/stageNN) against the notebook's definitions, in this process."""
    import pytest

    outcomes = _Outcomes(stage)
    if not (ROOT / suite).is_dir():
        return {"results": {}, "skipped_files": {}, "errors": {}}
    _register_target(stage)
    args = [str(ROOT / suite), f"--rootdir={ROOT}", f"--target={TARGET}", "--capture=sys",
            *("-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:faulthandler", "-p", "no:benchmark",
              "-p", "no:unraisableexception")]
    if (ROOT / "pyproject.toml").exists():
        args += ["-c", str(ROOT / "pyproject.toml")]
    pytest.main(args, plugins=[outcomes])
    return {"results": outcomes.results, "skipped_files": outcomes.skipped_files, "errors": outcomes.errors}


def _fingerprint(namespace: dict) -> dict:
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in ("In", "Out")}


class TestsFailed(AssertionError):
    """Some tests of a test cell failed. In a notebook it shows as its verdict alone, without a traceback."""

    __test__ = False  # not a pytest test class

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        first, *rest = str(self).splitlines()
        return [f"\x1b[0;31m{first}\x1b[0m", *rest]


def _wrapped(text: str, indent: str) -> list[str]:
    """Lines of at most WIDTH characters, each continuation indented two more than its line."""
    lines = []
    for line in text.splitlines() or [""]:
        lead = indent + re.match(r"\s*", line)[0]
        lines += textwrap.wrap(line.strip(), WIDTH, initial_indent=lead, subsequent_indent=lead + "  ",
                               break_on_hyphens=False) or [lead]
    return lines


def _not_run(suite: str, file: str, run: dict) -> str:
    problem = run["errors"].get(file) or next(iter(run["errors"].values()), None)
    if not (ROOT / suite).is_dir():
        return (f"not run: this workbook ({ROOT}) has no {suite}/ (hidden suites are only in the instructors' copy "
                f"and in an nbgrader course's autograder/)")
    if problem:
        return f"not run: {problem.strip().splitlines()[-1]}"
    return "not collected: the test is missing (regenerate the notebooks?)"


GRADING = "WORKBOOK_PARTIAL_CREDIT"  # set by an nbgrader course's config: test cells then show the points they earn


def _show_partial_credit(stage: Stage, nodeids: tuple[str, ...]) -> None:
    """Under nbgrader (the course's config sets GRADING), show the points this cell's passed tests earn as the cell's
    result before its verdict: nbgrader reads a grade cell's first result as partial credit, so the cell scores
    the shares of its passed tests, the rule `grader grade` and Gradescope use (grader/suites/scoring.py)."""
    import os

    from ..suites import scoring

    if not os.environ.get(GRADING):
        return
    earned = 0.0
    for suite in sorted({Path(n.split("::")[0]).parent.as_posix() for n in nodeids}):
        run = _KERNEL["runs"][suite][1]
        ours = [n for n in nodeids if Path(n.split("::")[0]).parent.as_posix() == suite]
        everyone = set(run["results"]) | set(ours)  # the whole suite's tests share its points
        points = stage.hidden_points if suite.startswith("tests/hidden/") else stage.visible_points
        earned += scoring.score(everyone, [n for n in ours if run["results"].get(n, {}).get("outcome") == "passed"],
                                points)
    sys.displayhook(round(earned, 2))  # an execute_result, as a cell's last value would be


def run_tests(*nodeids: str) -> None:
    """Run these tests of the stage against the notebook's definitions; raise TestsFailed naming every failure.

    The suite a test belongs to runs whole, once for a given set of definitions: the next test cells reuse its
    outcomes until a definition changes (a cell run again makes new function objects).
    """
    if "stage" not in _KERNEL:
        raise RuntimeError("run the setup cell first")
    stage, namespace = _KERNEL["stage"], _KERNEL["namespace"]
    current = _fingerprint(namespace)
    lines, passed, skipped = [], 0, 0
    for nodeid in nodeids:
        suite = Path(nodeid.split("::")[0]).parent.as_posix()
        cached = _KERNEL["runs"].get(suite)
        if cached is None or cached[0].keys() != current.keys() or any(
                cached[0][k] is not current[k] for k in current):
            cached = (current, _run_suite(stage, suite))
            _KERNEL["runs"][suite] = cached
        run = cached[1]
        record = run["results"].get(nodeid)
        if record is None:
            if nodeid.split("::")[0] in run["skipped_files"]:
                skipped += 1
                continue
            record = {"outcome": "failed", "hint": None, "message": _not_run(suite, nodeid.split("::")[0], run)}
        if record["outcome"] == "passed":
            passed += 1
        elif record["outcome"] == "skipped":
            skipped += 1
        else:
            lines += _wrapped(f"- {nodeid.split('::', 1)[-1]}", "")
            lines += _wrapped(record["message"].strip(), "    ")
            if record["hint"]:  # the stage's page is this notebook's
                lines += _wrapped(f"hint: {record['hint'].replace(stage.doc, 'the page above')}", "    ")
    if lines or skipped:
        _show_partial_credit(stage, nodeids)
    if lines:
        failed = len(nodeids) - passed - skipped
        raise TestsFailed(f"{failed} of {len(nodeids)} tests failed, in this notebook ({notebook_name(stage)}):\n"
                          + "\n".join(lines))
    note = f" ({skipped} skipped)" if skipped else ""
    print(f"{passed} of {len(nodeids)} tests passed{note}")
