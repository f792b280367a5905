"""The skeleton contract, on the skeleton GENERATED from solutions/ into a temporary folder (never the working
exercises/, where a learner may have filled stubs): every stub's body is exactly the raise naming its stage and
function, every other function is the source's own, the public API and docstrings are the reference's, and every
visible and hidden test fails on it with NotImplementedError.

(That exercises/ is this skeleton is tests/grader/test_build.py; that the reference passes is the rest of the
self-test: the stage suites run against solutions by default.)
"""
from __future__ import annotations

import ast
import inspect

import pytest

from grader import manifest, source
from grader.instructor import build, release
from grader.manifest import ROOT
from grader.suites import runner, targets

STAGES = manifest.stages()


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory):
    """A folder holding exercises/ exactly as `python -m grader build` would write it."""
    folder = tmp_path_factory.mktemp("skeleton")
    for relative, text in build.exercise_texts().items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text, encoding="utf-8", newline="\n")
    return folder / "exercises"


def _public(module) -> dict[str, object]:
    return {name: value for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_stage_has_all_its_files(stage):
    for path in (f"solutions/{stage.module}.py", stage.doc, stage.test_dir(hidden=False), stage.test_dir(hidden=True)):
        assert (ROOT / path).exists(), f"stage {stage.id} names {path} in the manifest, but it does not exist"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_every_stub_is_exactly_the_raise_naming_its_stage_and_function(skeleton, stage):
    origin = f"solutions/{stage.module}.py"
    learner = source.learner_writes((ROOT / origin).read_text(encoding="utf-8"), origin)
    assert learner, f"{origin} marks no function for the learner (### BEGIN SOLUTION inside a function body)"
    generated = build.functions((skeleton / f"{stage.module}.py").read_text(encoding="utf-8"))
    for name in learner:
        message = source.stub_message(stage.id, stage.title, name)
        node = generated[name]
        body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
        wanted = ast.parse(f"raise NotImplementedError({message!r})").body
        assert ast.dump(ast.Module(body, [])) == ast.dump(ast.Module(wanted, [])), (
            f"the skeleton's {name} (exercises/{stage.module}.py) must be its docstring and then only "
            f"`raise NotImplementedError({message!r})`, so the learner knows where it belongs; it is:\n"
            f"{ast.unparse(node)}")


def test_every_other_function_of_the_skeleton_is_the_sources_own(skeleton):
    """The release's leak check, on the generated skeleton: given helpers identical to the source, no reference-only
    code, no learner's function with a body, nothing that solutions/ does not generate."""
    problems = release.exercise_problems(skeleton)
    assert not problems, "the generated skeleton is not what the source says:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.id)
def test_the_skeleton_exposes_the_references_names_signatures_and_docstrings(skeleton, stage):
    ours = _public(targets.stage_module(targets.load(skeleton), stage.module))
    theirs = _public(targets.stage_module(targets.load("solutions"), stage.module))
    assert sorted(ours) == sorted(theirs), (
        f"stage {stage.id}: public names differ: only in the skeleton {sorted(set(ours) - set(theirs))}, "
        f"only in solutions {sorted(set(theirs) - set(ours))}")
    for name, value in theirs.items():
        members = {name: value}
        if inspect.isclass(value):
            members.update({f"{name}.{k}": v for k, v in vars(value).items()
                            if callable(v) and (not k.startswith("_") or k == "__init__")})
        for qualified, member in members.items():
            twin = ours[name] if qualified == name else vars(ours[name]).get(qualified.split(".", 1)[1])
            assert twin is not None, f"stage {stage.id}: the skeleton lacks {qualified}"
            if callable(member) and not inspect.isclass(member):
                assert inspect.signature(twin) == inspect.signature(member), (
                    f"stage {stage.id}: {qualified} has signature {inspect.signature(twin)} in the skeleton but "
                    f"{inspect.signature(member)} in solutions")
            assert inspect.getdoc(twin) == inspect.getdoc(member), (
                f"stage {stage.id}: the docstrings of {qualified} differ between the skeleton and solutions")


@pytest.fixture(scope="module")
def skeleton_run(skeleton) -> runner.Run:
    """Every suite, visible and hidden, against the generated skeleton, in one subprocess."""
    return runner.run(STAGES, str(skeleton), hidden=True, timeout=300)


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
def test_every_earlier_stage_a_module_imports_is_a_declared_prerequisite(skeleton, stage):
    """The grader swaps in the reference's modules of `requires` (transitively) when it grades a stage on its own:
    an import of an undeclared stage would fail there, so the manifest must name every one. (Given modules, which no
    stage names, every learner has whole: any stage may import them.)"""
    by_module = {s.module: s.id for s in STAGES}
    declared = {s.id for s in manifest.prerequisites(stage)}
    for where, folder in (("the skeleton", skeleton), ("solutions", ROOT / "solutions")):
        tree = ast.parse((folder / f"{stage.module}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        undeclared = sorted(m for m in imported if m in by_module and by_module[m] not in declared)
        assert not undeclared, (f"{where}'s {stage.module}.py imports {undeclared}, whose stages are not in stage "
                                f"{stage.id}'s requires in grader/stages.toml")
