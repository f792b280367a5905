"""The skeleton contract: every stub fails as unfinished, the reference passes, and the two packages mirror each other.

(The reference passing is the rest of the self-test: the stage suites run against solutions by default.)
"""
from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from grader import manifest
from grader.suites import runner
from grader.manifest import ROOT

STAGES = manifest.stages()


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Qualified name -> node for module-level functions and methods of module-level classes."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = item
    return found


def _stub_message(function: ast.FunctionDef) -> str | None:
    """The message of `raise NotImplementedError("...")` when that (after a docstring) is the whole body."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return None
    raised = body[0].exc
    if (isinstance(raised, ast.Call) and getattr(raised.func, "id", None) == "NotImplementedError"
            and raised.args and isinstance(raised.args[0], ast.Constant)):
        return str(raised.args[0].value)
    return None


def _public(module) -> dict[str, object]:
    return {name: value for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_stage_has_all_its_files(stage):
    for path in (f"exercises/{stage.module}.py", f"solutions/{stage.module}.py", stage.doc,
                 stage.test_dir(hidden=False), stage.test_dir(hidden=True)):
        assert (ROOT / path).exists(), f"stage {stage.id} names {path} in the manifest, but it does not exist"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_stub_raises_not_implemented_naming_its_stage(stage):
    exercise = ast.parse((ROOT / f"exercises/{stage.module}.py").read_text())
    solution_source = (ROOT / f"solutions/{stage.module}.py").read_text()
    solution = ast.parse(solution_source)
    solved = _functions(solution)
    stubs = 0
    for name, function in _functions(exercise).items():
        message = _stub_message(function)
        if message is None:
            # a given helper: it must be the reference's own code, not a half-solved stub
            twin = solved.get(name)
            assert twin is not None and ast.dump(twin) == ast.dump(function), (
                f"exercises/{stage.module}.py: {name} is neither a stub that raises NotImplementedError nor "
                f"identical to the reference's {name}")
            continue
        stubs += 1
        assert message.startswith(f"stage {stage.id} "), (
            f"exercises/{stage.module}.py: {name} raises NotImplementedError({message!r}); "
            f"the message must start with 'stage {stage.id} ' so the learner knows where it belongs")
    assert stubs > 0, f"exercises/{stage.module}.py has no stubs"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_exercises_and_solutions_expose_the_same_api(stage):
    exercise = importlib.import_module(f"exercises.{stage.module}")
    solution = importlib.import_module(f"solutions.{stage.module}")
    ours, theirs = _public(exercise), _public(solution)
    assert sorted(ours) == sorted(theirs), (
        f"stage {stage.id}: public names differ: only in exercises {sorted(set(ours) - set(theirs))}, "
        f"only in solutions {sorted(set(theirs) - set(ours))}")
    for name, value in theirs.items():
        members = {name: value}
        if inspect.isclass(value):
            members.update({f"{name}.{k}": v for k, v in vars(value).items()
                            if callable(v) and (not k.startswith("_") or k == "__init__")})
        for qualified, member in members.items():
            twin = ours[name] if qualified == name else vars(ours[name]).get(qualified.split(".", 1)[1])
            assert twin is not None, f"stage {stage.id}: exercises lacks {qualified}"
            if callable(member) and not inspect.isclass(member):
                assert inspect.signature(twin) == inspect.signature(member), (
                    f"stage {stage.id}: {qualified} has signature {inspect.signature(twin)} in exercises but "
                    f"{inspect.signature(member)} in solutions")
            assert inspect.getdoc(twin) == inspect.getdoc(member), (
                f"stage {stage.id}: the docstrings of {qualified} differ between exercises and solutions")


@pytest.fixture(scope="module")
def skeleton_run() -> runner.Run:
    """Every suite, visible and hidden, against the pristine skeleton, in one subprocess."""
    return runner.run(STAGES, "exercises", hidden=True, timeout=300)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_test_fails_on_the_skeleton_with_not_implemented(skeleton_run, stage):
    assert skeleton_run.error is None, skeleton_run.error
    result = next(r for r in skeleton_run.stages if r.stage.id == stage.id)
    assert result.total(hidden=False) >= 15, f"stage {stage.id}: only {result.total(False)} visible tests"
    assert result.total(hidden=True) >= 10, f"stage {stage.id}: only {result.total(True)} hidden tests"
    passing = [t.nodeid for t in result.tests if t.passed]
    assert not passing, f"stage {stage.id}: these tests pass against the untouched stubs: {passing}"
    vague = [(t.nodeid, t.message[:200]) for t in result.tests if "NotImplementedError" not in t.message]
    assert not vague, f"stage {stage.id}: these fail on the skeleton without naming NotImplementedError: {vague}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_earlier_stage_a_module_imports_is_a_declared_prerequisite(stage):
    """The grader swaps in the reference's modules of `requires` (transitively) when it grades a stage on its own:
    an import of an undeclared stage would fail there, so the manifest must name every one."""
    by_module = {s.module: s.id for s in STAGES}
    declared = {s.id for s in manifest.prerequisites(stage)}
    for package in ("exercises", "solutions"):
        tree = ast.parse((ROOT / package / f"{stage.module}.py").read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        undeclared = sorted(m for m in imported if by_module.get(m) not in declared)
        assert not undeclared, (f"{package}/{stage.module}.py imports {undeclared}, whose stages are not in stage "
                                f"{stage.id}'s requires in grader/stages.toml")
