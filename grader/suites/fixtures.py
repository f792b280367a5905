"""The pytest side of the stage suites: `--target exercises|solutions|PATH` and the fixtures every suite uses.

tests/conftest.py imports this module, so `python -m pytest` anywhere in the repository (or a student kit) has it.
A stage suite lives in tests/stageNN/ (visible) or tests/hidden/stageNN/ (hidden); the manifest maps NN to the
module under test. Tests get three fixtures:

    target     the stage module of the target under test, behind `.run(probe, **inputs) -> plain data`
    reference  the same for the reference solutions (or, in a student kit, the stored expected outputs)
    check      `check(probe, tol=..., what=..., **inputs)`: run the probe on both and judge them equal

The sandbox is imported only when --sandbox asks for it, so nothing here needs a Unix-only module.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable

import pytest

from .. import manifest
from ..harness import F64, Mistake, Tol, assert_close, check_transportable, run_probe
from ..manifest import ROOT
from . import expected, pinpoint, targets

if TYPE_CHECKING:  # the sandbox is imported only when --sandbox is given
    from ..sandbox import Sandbox

# what tests/conftest.py star-imports: pytest finds hooks and fixtures there by name
__all__ = ["pytest_addoption", "pytest_configure", "pytest_sessionfinish", "pytest_runtest_makereport",
           "pytest_report_header", "pytest_collection_finish", "pytest_terminal_summary", "Subject", "_sandbox",
           "target", "reference", "check"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workbook")
    group.addoption("--target", default="solutions" if (ROOT / "solutions").is_dir() else "exercises",
                    help="what the stage suites test: exercises, solutions (the default where it exists) or a "
                         "path to a submission")
    group.addoption("--reference", choices=("solutions", "stored"), default=None,
                    help="what the target is compared with: solutions/ (default when present) or the stored "
                         "expected outputs in tests/expected/ (a student release)")
    group.addoption("--record-expected", action="store_true",
                    help="store the reference's outputs of the visible suites in tests/expected/ (instructors)")
    group.addoption("--expected-store", default=None, metavar="DIR",
                    help="where stored outputs are read and recorded (default tests/expected/; `build --check` "
                         "records into a temporary one)")
    group.addoption("--sandbox", action="store_true",
                    help="run the target's code only in a sandboxed worker process (grader/sandbox/)")
    group.addoption("--probe-timeout", type=float, default=60.0, help="with --sandbox: seconds per probe call")
    group.addoption("--memory-mb", type=int, default=4096, help="with --sandbox: the worker's address-space limit")


@dataclass
class Subject:
    """One stage module of one target, imported on first use so that an import error fails the test, not the run."""

    target: str
    stage: manifest.Stage
    sandbox: "Sandbox | None" = None
    replayer: expected.Replayer | None = None  # the reference, from stored outputs
    recorder: expected.Recorder | None = None  # stores what the reference computes
    _module: ModuleType | None = field(default=None, repr=False)

    @property
    def module(self) -> ModuleType:
        if self._module is None:
            package = targets.load(self.target)
            try:
                self._module = targets.stage_module(package, self.stage.module)
            except ModuleNotFoundError as error:
                if error.name and error.name.endswith(self.stage.module):
                    raise AssertionError(f"target {self.target!r} has no module {self.stage.module}.py "
                                         f"(stage {self.stage.label})") from None
                raise
        return self._module

    def run(self, probe: Callable, **inputs) -> object:
        check_transportable(probe, inputs)
        if self.replayer is not None:
            return self.replayer.output(self.stage.id, probe, inputs)
        if self.recorder is not None:
            output = run_probe(probe, self.module, copy.deepcopy(inputs), who=self.target)
            self.recorder.add(self.stage.id, probe, inputs, output)
            return output
        if self.sandbox is not None:
            from ..sandbox import answer_of
            return answer_of(self.sandbox.call(probe.__module__, probe.__name__, self.stage.module, inputs),
                             f"{self.stage.module}.py")
        return run_probe(probe, self.module, copy.deepcopy(inputs), who=self.target)


def _stage_of(request: pytest.FixtureRequest) -> tuple[manifest.Stage, bool]:
    found = manifest.stage_of_test_path(request.node.path)
    if found is None and hasattr(request.module, "STAGE"):  # a peer comparison (tests/peers/) names its stage
        return manifest.stage(request.module.STAGE), False
    if found is None:
        raise RuntimeError(f"{request.node.path} is not under tests/stageNN/ or tests/hidden/stageNN/ and names no "
                           f"STAGE")
    return found


def _reference_kind(config: pytest.Config) -> str:
    return config.getoption("--reference") or ("solutions" if targets.NAMED["solutions"].is_dir() else "stored")


def pytest_configure(config: pytest.Config) -> None:
    store = Path(config.getoption("--expected-store") or expected.STORE)
    config.expected_store = store
    config.expected_recorder = expected.Recorder() if config.getoption("--record-expected") else None
    config.expected_replayer = expected.Replayer(store) if _reference_kind(config) == "stored" else None


def pytest_sessionfinish(session: pytest.Session) -> None:
    recorder = session.config.expected_recorder
    if recorder is not None and session.testsfailed == 0:
        for path in recorder.write(session.config.expected_store):
            print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


# ---------------------------------------------------------------- which code a run tests, said in words
# `python -m pytest tests/stage01` in the instructors' copy tests the reference: "21 passed" must not read as a pass of
# the learner's exercises/, so the header and the last lines say what ran against what.


def _tested(config: pytest.Config) -> str:
    """What the stage suites run, and what they compare it with, in words."""
    spec = config.getoption("--target")
    if spec == "solutions":
        return "solutions/ (the reference), not your code in exercises/"
    if spec == "exercises":
        tested = "exercises/ (your code)"
    elif spec in targets.NAMED:
        tested = f"{spec} ({targets.NAMED[spec]})"
    else:
        tested = f"the submission at {Path(spec).expanduser().resolve()}"
    return f"{tested} against {_judge(config)}"


def _judge(config: pytest.Config) -> str:
    if _reference_kind(config) == "stored":
        store = config.expected_store.resolve()
        shown = store.relative_to(ROOT).as_posix() if store.is_relative_to(ROOT) else str(store)
        return f"the stored expected outputs in {shown}/"
    return "solutions/ (the reference)"


def _stages_asked(config: pytest.Config) -> set[str]:
    """The stages of the suites a run collected, or (before collection) of the paths it was given."""
    if hasattr(config, "workbook_stages"):
        return config.workbook_stages
    found = (manifest.stage_of_test_path(Path(arg.split("::")[0]).resolve()) for arg in config.args)
    return {f[0].id for f in found if f is not None}


def _your_code_command(config: pytest.Config) -> str:
    ids = sorted(_stages_asked(config))
    if len(ids) == 1:
        return f"`python -m grader check {ids[0]}` (or `python -m pytest tests/stage{ids[0]} --target exercises`)"
    return "`python -m grader check NN` (or `python -m pytest tests/stageNN --target exercises`)"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"workbook: testing {_tested(config)}"]
    if config.getoption("--target") == "solutions":
        lines.append(f"workbook: to test your own code in exercises/, run {_your_code_command(config)}")
    return lines


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.workbook_stages = {found[0].id for item in session.items
                                      if (found := manifest.stage_of_test_path(item.path)) is not None}


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not getattr(config, "workbook_stages", None):
        return  # no stage suite ran (the grader's own tests): there is no target to name
    ids = sorted(config.workbook_stages)
    terminalreporter.write_line(f"workbook: {'stage' if len(ids) == 1 else 'stages'} {', '.join(ids)} tested "
                                f"{_tested(config)}.",
                                bold=True, yellow=config.getoption("--target") == "solutions")
    if config.getoption("--target") == "solutions":
        terminalreporter.write_line(f"workbook: to test your own code in exercises/, run {_your_code_command(config)}.",
                                    yellow=True)


@pytest.fixture(scope="session")
def _sandbox(request: pytest.FixtureRequest) -> "Sandbox | None":
    if not request.config.getoption("--sandbox"):
        yield None
        return
    from ..sandbox import Limits, Sandbox
    suites = sorted({item.path.parent for item in request.session.items})  # only these suites' probes are copied
    box = Sandbox(targets.resolve(request.config.getoption("--target")),
                  Limits(timeout=request.config.getoption("--probe-timeout"),
                         memory_mb=request.config.getoption("--memory-mb")), suites=suites)
    yield box
    box.close()


@pytest.fixture
def target(request: pytest.FixtureRequest, _sandbox: "Sandbox | None") -> Subject:
    return Subject(request.config.getoption("--target"), _stage_of(request)[0], _sandbox)


@pytest.fixture
def reference(request: pytest.FixtureRequest) -> Subject:
    stage, hidden = _stage_of(request)
    in_suite = manifest.stage_of_test_path(request.node.path) is not None
    recorder = request.config.expected_recorder if in_suite and not hidden else None
    return Subject("solutions", stage, replayer=request.config.expected_replayer, recorder=recorder)


@pytest.fixture
def check(target: Subject, reference: Subject) -> Callable:
    def check(probe: Callable, *, tol: Tol = F64, what: str | None = None, mistakes: tuple[Mistake, ...] = (),
              **inputs) -> object:
        got = target.run(probe, **inputs)
        want = reference.run(probe, **inputs)
        assert_close(got, want, tol, what or probe.__name__.removeprefix("probe_"), mistakes)
        return got
    return check


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """After a failure's traceback, say where the target's own code raised: its file, line and source line, and the
    probe's input. (Hints come on request, `python -m grader hint`, never with a failure.)"""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.excinfo is None or manifest.stage_of_test_path(item.path) is None:
        return
    try:
        folder = targets.resolve(item.config.getoption("--target"))
    except targets.TargetError:
        return
    where = pinpoint.locate(call.excinfo.value, folder)
    if where is not None and where["kind"] != "stub":  # a stub's message already names its file
        report.sections.append(("where in your code", f"{where['message']}\n{pinpoint.describe(where)}"))
