"""Which of the learner's functions each visible test exercises, read from the test files (nothing is run).

A test calls probes (`check(probe_encode, ...)`, `target.run(probe_fit, ...)`), and a probe calls the learner's code
(`m.CharTokenizer(text).encode(other)`). Every name, attribute and operator reachable from the test through the
functions of its file and of the test helpers it imports (tests/stageNN/helpers.py) is collected; a learner function `A.b` is exercised when `b` is among them (`A` for `A.__init__`
and for `A.forward`, which a call of the module runs; the operator for `A.__add__`). It over-counts a little (two classes with an `encode` are both named), which is the
safe side for `check STAGE FUNCTION` and for the hint that names a function.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from . import pristine

OPERATORS = {
    ast.Add: ("__add__", "__radd__", "__iadd__"), ast.Sub: ("__sub__", "__rsub__", "__isub__"),
    ast.Mult: ("__mul__", "__rmul__", "__imul__"), ast.Div: ("__truediv__", "__rtruediv__", "__itruediv__"),
    ast.Pow: ("__pow__", "__rpow__"), ast.MatMult: ("__matmul__", "__rmatmul__"), ast.USub: ("__neg__",),
    ast.Subscript: ("__getitem__",), ast.Mod: ("__mod__",),
}
BUILTINS = {"len": "__len__", "repr": "__repr__", "iter": "__iter__", "float": "__float__"}


@dataclass(frozen=True)
class Test:
    name: str  # the test function's name (a parametrized test's cases share it)
    path: Path
    line: int
    concept: str | None
    functions: tuple[str, ...]  # the learner's functions it exercises, in the module's order


def _concept(node: ast.FunctionDef) -> str | None:
    for decorator in node.decorator_list:
        if (isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "concept"
                and decorator.args and isinstance(decorator.args[0], ast.Constant)):
            return str(decorator.args[0].value)
    return None


def _words(node: ast.AST, helpers: dict[str, ast.FunctionDef], seen: set[str]) -> set[str]:
    """Names, attributes and operator dunders used in `node` and in the file's functions it names."""
    words = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            words.add(child.id)
            words.add(BUILTINS.get(child.id, child.id))
            if child.id in helpers and child.id not in seen:
                seen.add(child.id)
                words |= _words(helpers[child.id], helpers, seen)
        elif isinstance(child, ast.Attribute):
            words.add(child.attr)
        elif isinstance(child, (ast.BinOp, ast.UnaryOp, ast.AugAssign)):
            words.update(OPERATORS.get(type(child.op), ()))
        elif isinstance(child, ast.Subscript):
            words.update(OPERATORS[ast.Subscript])
    return words


def _imported_helpers(tree: ast.Module, path: Path) -> dict[str, ast.FunctionDef]:
    """The functions a test file imports from the tests package (`from tests.stage01.helpers import probe_x`, or
    relatively), with every function of those files, whose bodies the imported ones may call."""
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level == 0 and node.module.split(".")[0] == "tests":
            source = ROOT.joinpath(*node.module.split(".")).with_suffix(".py")
        elif node.level == 1:
            source = path.parent.joinpath(*node.module.split(".")).with_suffix(".py")
        else:
            continue
        try:
            imported = ast.parse(source.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        found.update({n.name: n for n in imported.body if isinstance(n, ast.FunctionDef)})
    return found


def _exercised(function: str, words: set[str]) -> bool:
    parts = function.split(".")
    if parts[-1] in ("__init__", "forward", "__call__") and len(parts) > 1:  # Linear(...) and layer(x) name the class
        return parts[-2] in words or parts[-1] in words
    return parts[-1] in words


def tests(stage: Stage) -> tuple[Test, ...]:
    """Every test function of the stage's visible suite, with its concept and the learner functions it exercises."""
    return _tests(stage.id)


@lru_cache(maxsize=None)
def _tests(stage_id: str) -> tuple[Test, ...]:
    stage = manifest.stage(stage_id)
    learner = pristine.learner_functions(stage)
    found = []
    for path in sorted((ROOT / stage.test_dir(hidden=False)).glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        helpers = {**_imported_helpers(tree, path),
                   **{n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("test_")}}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                words = _words(node, helpers, set())
                found.append(Test(node.name, path, node.lineno, _concept(node),
                                  tuple(f for f in learner if _exercised(f, words))))
    return tuple(found)


def matching(stage: Stage, function: str) -> list[str]:
    """The learner functions of the stage that `function` names: 'encode', 'CharTokenizer.encode' or 'CharTokenizer'
    (every method of the class). Empty when none does."""
    learner = pristine.learner_functions(stage)
    exact = [f for f in learner if f == function]
    if exact:
        return exact
    return [f for f in learner if f.split(".")[-1] == function or f.startswith(function + ".")]


def tests_of(stage: Stage, functions: list[str]) -> list[Test]:
    """The tests that exercise any of `functions`."""
    return [t for t in tests(stage) if set(t.functions) & set(functions)]


def test_named(stage: Stage, name: str) -> Test | None:
    """The test function behind a test name (a parametrized case 'test_x[a]' is test_x)."""
    base = name.split("[")[0]
    return next((t for t in tests(stage) if t.name == base), None)
