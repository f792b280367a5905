"""Targets for the stage suites: `--target exercises|solutions|PATH` (default: solutions, the self-test).

A stage suite lives in tests/stageNN/ (visible) or tests/hidden/stageNN/ (hidden); the manifest maps NN to the
module under test. Tests get three fixtures:

    target     the stage module of the target under test, behind `.run(probe, **inputs) -> plain data`
    reference  the same for the reference solutions
    check      `check(probe, tol=..., what=..., **inputs)`: run the probe on both and judge them equal
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader import manifest, targets  # noqa: E402
from grader.harness import F64, Mistake, Tol, assert_close, run_probe  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workbook")
    group.addoption("--target", default="solutions",
                    help="what the stage suites test: exercises, solutions (default) or a path to a submission")


@dataclass
class Subject:
    """One stage module of one target, imported on first use so that an import error fails the test, not the run."""

    target: str
    stage: manifest.Stage
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
        return run_probe(probe, self.module, copy.deepcopy(inputs), who=self.target)


def _stage_of(request: pytest.FixtureRequest) -> manifest.Stage:
    found = manifest.stage_of_test_path(request.node.path)
    if found is None:
        raise RuntimeError(f"{request.node.path} is not under tests/stageNN/ or tests/hidden/stageNN/")
    return found[0]


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Subject:
    return Subject(request.config.getoption("--target"), _stage_of(request))


@pytest.fixture
def reference(request: pytest.FixtureRequest) -> Subject:
    return Subject("solutions", _stage_of(request))


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
    """Append the manifest's hint for the test's concept to a failure."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("concept")
    found = manifest.stage_of_test_path(item.path)
    if report.failed and marker and found:
        hint = found[0].hint(marker.args[0])
        if hint:
            report.sections.append(("hint", hint))
