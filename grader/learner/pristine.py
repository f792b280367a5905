"""The untouched skeleton of each module: what `reset` restores and where the learner's functions are listed.

Where it comes from, in order:
    grader/pristine/<module>.py   shipped in a student kit by `python -m grader release` (a kit has no solutions/
                                  and maybe no git, so it carries its own copy);
    solutions/<module>.py         in the instructors' repository, the skeleton generated from it (grader/source.py),
                                  which is exactly what exercises/ was generated as.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from .. import manifest, source
from ..manifest import ROOT

SHIPPED = ROOT / "grader" / "pristine"


def text(module: str) -> str | None:
    """The pristine exercises/<module>.py, or None when this copy has no source for it."""
    shipped = SHIPPED / f"{module}.py"
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    reference = ROOT / "solutions" / f"{module}.py"
    if not reference.is_file():
        return None
    stage = next((s for s in manifest.stages() if s.module == module), None)
    reference_text = reference.read_text(encoding="utf-8")
    if stage is None:  # a given module (no stage names it): copied whole
        return reference_text
    return source.skeleton(reference_text, stage.id, stage.title, f"solutions/{module}.py")


def modules() -> list[str]:
    """Every module the pristine skeleton has (the stages' and the given ones), by name."""
    names = {p.stem for p in SHIPPED.glob("*.py")}
    names |= {p.stem for p in (ROOT / "solutions").glob("*.py") if p.name != "__init__.py"}
    return sorted(names)


def ship(kit: Path) -> list[Path]:
    """Copy a kit's freshly written exercises/*.py to its grader/pristine/ (what `reset` restores there)."""
    into = kit / SHIPPED.relative_to(ROOT)
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for module in sorted((kit / "exercises").glob("*.py")):
        shutil.copyfile(module, into / module.name)
        written.append(into / module.name)
    return written


def stubs(module_text: str) -> list[str]:
    """Qualified names of the functions that are still stubs in a module's text (body: the stage's raise)."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return []
    found = []
    for name, node in source.functions(tree):
        body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
        if len(body) == 1 and isinstance(body[0], ast.Raise) and _is_stub_raise(body[0]):
            found.append(name)
    return found


def _is_stub_raise(node: ast.Raise) -> bool:
    call = node.exc
    return (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "NotImplementedError" and call.args
            and isinstance(call.args[0], ast.Constant) and str(call.args[0].value).startswith("stage "))


def learner_functions(stage: manifest.Stage) -> list[str]:
    """The functions the learner writes in a stage's module, in source order."""
    pristine = text(stage.module)
    return stubs(pristine) if pristine is not None else []
