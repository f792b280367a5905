"""The one source of each stage: solutions/<module>.py, with the learner's parts between solution markers.

    def encode(self, text: str) -> np.ndarray:
        \"\"\"The docstring: math, shapes, conventions (the learner sees it whole).\"\"\"
        ### BEGIN SOLUTION
        ids = ...
        return ids
        ### END SOLUTION

Everything a learner receives is derived from that file (nbgrader's convention, so the notebooks can keep the markers):
  skeleton(...)   the exercises/ module: each marked region becomes `raise NotImplementedError("stage NN (title):
                  Qualified.name")`, everything else (given helpers, docstrings, imports) is copied as written;
  reference(...)  the reference without markers (what `reveal` shows and what the tests import);
  regions(...)    where the marked regions are and which function each belongs to (notebooks, leak checks).
A region sits inside one function body, after its docstring, with both markers at the body's indentation; or at
the level of a module or class body, around code of the reference's own (a private helper or method) that the
skeleton leaves out. A module of solutions/ that no stage names (given_modules: the corpus, the run log) has no
markers and is given whole: exercises/ gets it as it is, and any stage may import it.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
YOUR_TURN = " (your turn: replace every NotImplementedError)"


class SourceError(ValueError):
    """A stage's source is malformed (markers unpaired, outside a function, ...); the message names file and line."""


@dataclass(frozen=True)
class Region:
    begin: int  # 0-based line of BEGIN
    end: int  # 0-based line of END
    indent: str
    function: str | None  # qualified name ('CharTokenizer.encode'); None for reference-only code


def functions(tree: ast.Module):
    """(qualified name, node) of every function and method, nested ones named with '.<locals>.'."""
    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
                yield from walk(node.body, f"{prefix}{node.name}.<locals>.")
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.")
    yield from walk(tree.body, "")


def regions(source: str, where: str = "source") -> list[Region]:
    """The marked regions of a stage source, in order; SourceError when a marker is misplaced."""
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise SourceError(f"{where}: line {error.lineno}: {error.msg}") from None
    spans = [(node.lineno - 1, node.end_lineno - 1, name, node) for name, node in functions(tree)]
    found, open_at = [], None
    for i, line in enumerate(lines):
        marker = line.strip()
        if marker == BEGIN:
            if open_at is not None:
                raise SourceError(f"{where}: line {i + 1}: {BEGIN} inside the region opened at line {open_at + 1}")
            open_at = i
        elif marker == END:
            if open_at is None:
                raise SourceError(f"{where}: line {i + 1}: {END} without a {BEGIN} before it")
            indent = re.match(r"\s*", lines[open_at])[0]
            if re.match(r"\s*", line)[0] != indent:
                raise SourceError(f"{where}: lines {open_at + 1} and {i + 1}: the markers are indented differently")
            inside = [s for s in spans if s[0] < open_at <= s[1]]
            if not inside:
                found.append(Region(open_at, i, indent, None))  # reference-only code: the skeleton drops it
                open_at = None
                continue
            first, last, name, node = max(inside, key=lambda s: s[0])  # the innermost function
            if any(text.strip() and not text.strip().startswith("#") for text in lines[last + 1:i]):
                raise SourceError(f"{where}: line {i + 1}: {END} closes {name}'s region after code outside it")
            docstring = ast.get_docstring(node, clean=False) is not None
            if docstring and open_at < node.body[0].end_lineno:
                raise SourceError(f"{where}: line {open_at + 1}: {name}'s region must start after its docstring")
            found.append(Region(open_at, i, indent, name))
            open_at = None
    if open_at is not None:
        raise SourceError(f"{where}: line {open_at + 1}: {BEGIN} is never closed")
    return found


def learner_writes(source: str, where: str = "source") -> list[str]:
    """Qualified names of the functions with a marked region, in source order (each once)."""
    return list(dict.fromkeys(r.function for r in regions(source, where) if r.function))


def stub_message(stage_id: str, title: str, function: str) -> str:
    return f"stage {stage_id} ({title}): {function}"


def skeleton(source: str, stage_id: str, title: str, where: str = "source") -> str:
    """The learner's module: every marked region replaced by a raise naming the stage and the function."""
    lines = source.splitlines()
    found = regions(source, where)
    out, start = [], 0
    for region in found:
        out += lines[start:region.begin]
        start = region.end + 1
        if region.function is None:  # reference-only helpers: gone, with the blank lines that separated them
            while start < len(lines) and not lines[start].strip() and out and not out[-1].strip():
                start += 1
            continue
        out.append(f'{region.indent}raise NotImplementedError("{stub_message(stage_id, title, region.function)}")')
    out += lines[start:]
    text = "\n".join(out) + "\n"
    if found:
        text = _mark_module_docstring(text)
    return text


def _mark_module_docstring(text: str) -> str:
    """'\"\"\"Stage 01: n-gram language models.' -> '... models (your turn: replace every NotImplementedError).'"""
    first, newline, rest = text.partition("\n")
    if first.startswith('"""') and first.endswith(".") and YOUR_TURN not in first:
        first = first[:-1] + YOUR_TURN + "."
    return first + newline + rest


def reference(source: str) -> str:
    """The source with its marker lines removed: the reference as a reader should see it."""
    kept = [line for line in source.splitlines() if line.strip() not in (BEGIN, END)]
    return "\n".join(kept) + "\n"


def given_modules() -> list[str]:
    """The modules of solutions/ that no stage names (e.g. corpus, runlog): every learner receives them whole, in
    exercises/ and in every kit, and any stage may import them (they carry no solution markers)."""
    from .manifest import ROOT, stages
    named = {stage.module for stage in stages()} | {"__init__"}
    return sorted(path.stem for path in (ROOT / "solutions").glob("*.py") if path.stem not in named)


def generated_skeletons() -> dict[str, str]:
    """exercises/<module>.py's text for every stage, generated from solutions/<module>.py, and for every given module
    (given_modules), copied as it is."""
    from .manifest import ROOT, stages
    texts = {}
    for stage in stages():
        path = ROOT / "solutions" / f"{stage.module}.py"
        texts[f"exercises/{stage.module}.py"] = skeleton(path.read_text(encoding="utf-8"), stage.id, stage.title,
                                                         f"solutions/{stage.module}.py")
    for module in given_modules():
        source = (ROOT / "solutions" / f"{module}.py").read_text(encoding="utf-8")
        if regions(source, f"solutions/{module}.py"):
            raise SourceError(f"solutions/{module}.py belongs to no stage, so it is given whole: it cannot mark a "
                              f"solution")
        texts[f"exercises/{module}.py"] = source
    return texts


if __name__ == "__main__":  # python -m grader.source: rewrite exercises/ from solutions/
    from .manifest import ROOT
    for relative, text in generated_skeletons().items():
        (ROOT / relative).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {relative}")
