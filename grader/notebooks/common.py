"""What every part of grader/notebooks/ shares: where notebooks live, the names a notebook's code uses, the error."""
from __future__ import annotations

import ast
import contextlib
import os
import sys
from pathlib import Path

from ..manifest import ROOT, Stage

NOTEBOOKS = ROOT / "notebooks"
PREREQUISITES = "workbook"  # the package of earlier stages' modules (and given modules) a notebook imports from
# What nbgrader puts in place of every solution region. todo() raises NotImplementedError naming the stage and the
# function, like a stub of exercises/; at the level of a module or class body it does nothing, so a cell whose
# reference-only helpers nbgrader removed still runs.
CODE_STUB = "# YOUR CODE HERE\ntodo()"


class NotebookError(ValueError):
    """A stage cannot be turned into a notebook (or a notebook into a module); the message says which and why."""


def notebook_name(stage: Stage) -> str:
    """'01-ngram': the notebook's stem and, in an nbgrader course, the assignment's name."""
    return f"{stage.id}-{stage.module}"


def relative_imports(source: str) -> set[str]:
    """The sibling modules a module imports when it is imported (`from .tensor import Tensor`, `from . import
    tensor`); an import inside a function runs only if the function is called (train's optional parallel loop)."""
    found, pending = set(), list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom) and node.level:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending += ast.iter_child_nodes(node)
    return found


def workbook_modules(stage: Stage) -> list[str]:
    """The modules a stage's notebook may import from `workbook`: its prerequisites', then the given modules (those
    of solutions/ that no stage names, e.g. a corpus reader) that any of them imports; NotebookError when one of these
    imports a module the manifest's `requires` does not lead to."""
    from .. import manifest

    earlier = [s.module for s in manifest.prerequisites(stage)]
    staged = {s.module for s in manifest.stages()}
    given, pending = set(), [stage.module, *earlier]
    while pending:
        module = pending.pop()
        for imported in relative_imports((ROOT / "solutions" / f"{module}.py").read_text(encoding="utf-8")):
            if imported in staged and imported not in earlier:
                raise NotebookError(f"stage {stage.id}: solutions/{module}.py imports {imported} relatively, but the "
                                    f"manifest's `requires` of stage {stage.id} does not lead to it")
            if imported not in staged and imported not in given:
                if not (ROOT / "solutions" / f"{imported}.py").exists():
                    raise NotebookError(f"stage {stage.id}: solutions/{module}.py imports {imported}, which "
                                        f"solutions/ does not have")
                given.add(imported)
                pending.append(imported)
    return earlier + sorted(given)


@contextlib.contextmanager
def bin_on_path():
    """nbgrader shells out to `alembic`, which lives beside this Python (in a virtual environment's bin/)."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved
