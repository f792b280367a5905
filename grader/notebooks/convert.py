"""Notebooks back into modules: a learner's stage notebook becomes <module>.py, so `python -m grader grade` accepts
notebook submissions; and the check that a student notebook holds the skeleton exactly (no reference code).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from ..source import BEGIN, END, functions, skeleton, stub_message
from .cells import is_main_guard
from .common import PREREQUISITES, NotebookError


def _is_todo(node: ast.stmt) -> bool:
    """`todo()`, or `raise NotImplementedError(todo())` as notebooks made before todo() raised itself."""
    if isinstance(node, ast.Expr):
        call = node.value
    elif (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and len(node.exc.args) == 1
          and ast.unparse(node.exc.func) == "NotImplementedError"):
        call = node.exc.args[0]
    else:
        return False
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "todo"
            and not call.args and not call.keywords)


def _todo_statements(body: list[ast.stmt], prefix: str = "", function: str | None = None):
    """(statement, the qualified name of the function it is in or None, alone in its body?) of every todo()."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _todo_statements(node.body, f"{prefix}{node.name}.<locals>.", prefix + node.name)
        elif isinstance(node, ast.ClassDef):
            yield from _todo_statements(node.body, f"{prefix}{node.name}.", None)
        elif _is_todo(node):
            yield node, function, len(body) == 1
        else:
            for part in (node, *(c for c in ast.iter_child_nodes(node) if isinstance(c, (ast.excepthandler,
                                                                                        ast.match_case)))):
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(part, field, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                        yield from _todo_statements(inner, prefix, function)


def _stubs_as_in_exercises(source: str, stage: Stage | None) -> str:
    """Every todo() as exercises/ has it, so the module needs no kernel: in a function,
    `raise NotImplementedError("stage NN (title): name")`; at a module's or class's level (a place for optional
    helpers), nothing, with its `# YOUR CODE HERE`."""
    lines = source.splitlines()
    for node, function, alone in sorted(_todo_statements(ast.parse(source).body), key=lambda t: -t[0].lineno):
        i = node.lineno - 1
        indent = re.match(r"\s*", lines[i])[0]
        if function is not None:
            label = stub_message(stage.id, stage.title, function) if stage else function
            lines[i:node.end_lineno] = [f"{indent}raise NotImplementedError({json.dumps(label)})"]
        elif alone:
            lines[i:node.end_lineno] = [f"{indent}pass"]
        else:
            first = i - 1 if i > 0 and lines[i - 1].strip() == "# YOUR CODE HERE" else i
            del lines[first:node.end_lineno]
    return "\n".join(lines) + "\n"


def module_source(notebook: dict, where: str = "notebook") -> tuple[str, str]:
    """(module name, source) from a notebook's module-code cells, imports made relative again."""
    modules = {s.module for s in manifest.stages()}
    module, parts = None, []
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {})
        info = meta.get("workbook", {})
        prefix = str(meta.get("nbgrader", {}).get("grade_id", "")).split("-")[0]
        if cell.get("cell_type") != "code" or not (
                info.get("role") == "module-code" or (not info and prefix in modules)):  # metadata.workbook lost
            continue
        module = module or info.get("module") or prefix
        source = cell.get("source", "")
        parts.append("".join(source) if isinstance(source, list) else source)
    if not parts:
        raise NotebookError(f"{where}: no module-code cells (metadata workbook.role 'module-code', or an nbgrader "
                            f"grade_id '<module>-...')")
    text = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    text = "\n".join(line for line in text.split("\n") if line.strip() not in (BEGIN, END))
    text = re.sub(rf"^(\s*)from\s+{PREREQUISITES}\b\.?", r"\1from .", text, flags=re.M)
    try:
        text = _stubs_as_in_exercises(text, next((s for s in manifest.stages() if s.module == module), None))
    except SyntaxError:
        pass  # a syntax error is the tests' business: they report it against the module
    return module, text


def modules_from_notebooks(paths: list[Path], out_dir: Path) -> list[Path]:
    """Write each stage notebook's module (its module-code cells) into out_dir as <module>.py; return the files.

    Notebooks that are not a stage's (no module-code cells, not JSON) are skipped; none at all is a NotebookError.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, problems = [], []
    for path in paths:
        try:
            notebook = json.loads(Path(path).read_text(encoding="utf-8"))
            module, source = module_source(notebook, Path(path).name)
        except (OSError, ValueError) as error:  # not a notebook, or not a stage's (a scratch notebook, say)
            problems.append(str(error) if isinstance(error, NotebookError) else f"{Path(path).name}: {error}")
            continue
        if not module or not re.fullmatch(r"[A-Za-z_]\w*", module):
            raise NotebookError(f"{Path(path).name}: cannot tell which module its cells are ({module!r})")
        target = out_dir / f"{module}.py"
        if target in written:
            raise NotebookError(f"two notebooks hold the module {module}.py")
        target.write_text(source, encoding="utf-8")
        written.append(target)
    if not written:
        raise NotebookError("no stage notebook among them: " + "; ".join(problems or ["no notebooks given"]))
    return written


def _without_docstring_and_main(tree: ast.Module) -> ast.Module:
    body = tree.body[1:] if ast.get_docstring(tree, clean=False) is not None else tree.body
    return ast.Module([node for node in body if not is_main_guard(node)], [])


def unlike_skeleton(notebook: dict, stage: Stage) -> list[str]:
    """How a student notebook's module differs from the skeleton that solutions/<module>.py generates (empty: not at
    all). Every function must be a stub or a given helper identical to the source's, and nothing else may be there:
    a reference body or a reference-only helper in a student notebook is a leak."""
    where = f"{stage.id}-{stage.module} (student)"
    got = _without_docstring_and_main(ast.parse(module_source(notebook, where)[1]))
    source = (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8")
    want = _without_docstring_and_main(ast.parse(skeleton(source, stage.id, stage.title)))
    got_functions = {name: ast.dump(node) for name, node in functions(got)}
    want_functions = {name: ast.dump(node) for name, node in functions(want)}
    problems = [f"{where}: {name} is not in the skeleton (reference-only code?)"
                for name in got_functions if name not in want_functions]
    problems += [f"{where}: {name} is neither the skeleton's stub nor its given code (a reference body?)"
                 for name in got_functions if name in want_functions and got_functions[name] != want_functions[name]]
    problems += [f"{where}: {name} is missing" for name in want_functions if name not in got_functions]
    if not problems and ast.dump(got) != ast.dump(want):
        problems.append(f"{where}: its top-level statements are not the skeleton's (reference-only code?)")
    return problems
