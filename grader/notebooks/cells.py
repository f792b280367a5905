"""What goes into a stage notebook's cells: its module's source cut into code cells, and its page cut into markdown.

The code comes from the one source, solutions/<module>.py, markers and all: nbgrader reads the same
`### BEGIN SOLUTION` / `### END SOLUTION`. A region inside a function is what the learner writes; a region at the level
of a module or class is the reference's own private code, which the skeleton leaves out. Both stay inside markers in
the instructor notebook, so nbgrader's student version replaces both with its code stub (common.CODE_STUB), which
does nothing outside a function: no reference code reaches a student.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..manifest import ROOT, Stage
from ..source import BEGIN, END, SourceError, regions
from .common import PREREQUISITES, NotebookError

# Above each reference-only region: the student version keeps this line and gets a stub that does nothing.
HELPERS_NOTE = "# Optional: private helpers of your own may go here."
CHECK_IN_NOTEBOOK = "Check it with the test cells at the end of this notebook."


@dataclass
class Chunk:
    name: str  # 'header', a top-level def or class, 'helpers-N' (reference-only code) or 'code-N' (other statements)
    source: str
    solution: bool  # holds a marked region: a function the learner writes, or reference-only code


def is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"')


def _point_imports_at_prerequisites(tree: ast.Module, lines: list[str], where: str) -> None:
    """`from .tensor import Tensor` -> `from workbook.tensor import Tensor`, in place."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level > 1:
                raise NotebookError(f"{where}: line {node.lineno} imports from a parent package (level {node.level})")
            i = node.lineno - 1
            lines[i] = re.sub(r"\bfrom\s+\.(\w[\w.]*)?\s+import\b",  # `from .tensor import` and `from . import`
                              lambda m: f"from {PREREQUISITES}{'.' + m[1] if m[1] else ''} import", lines[i], count=1)


def cut(source: str, where: str = "module") -> list[Chunk]:
    """The stage source as cells: the header, then one chunk per top-level def or class (with the comments just above
    it), one per region of reference-only code at module level, other top-level statements grouped. Relative imports
    point at the prerequisites package; the markers stay where the source has them.

    An `if __name__ == "__main__":` block is left out: in a notebook it would run.
    """
    try:
        found = regions(source, where)
    except SourceError as error:
        raise NotebookError(str(error)) from None
    tree = ast.parse(source)
    lines = source.splitlines()
    _point_imports_at_prerequisites(tree, lines, where)
    helpers = [r for r in found if r.function is None]
    module_helpers = [r for r in helpers if not r.indent]

    def inside(line: int):  # the module-level reference-only region around a 0-based line, if any
        return next((r for r in module_helpers if r.begin < line < r.end), None)

    def introduced_from(first: int) -> int:  # walk up over the comments that introduce a statement
        while (first > 0 and lines[first - 1].lstrip().startswith("#")
               and lines[first - 1].strip() not in (BEGIN, END)):
            first -= 1
        return first

    starts: list[tuple[int, str]] = []  # (0-based first line, name) of each chunk after the header
    previous_kind, started = None, set()
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        region = inside(first)
        if region is not None:
            if region.begin not in started:
                started.add(region.begin)
                starts.append((introduced_from(region.begin), f"helpers-{len(started)}"))
            previous_kind = "helpers"
        elif is_main_guard(node):
            starts.append((first, "__main__"))
            previous_kind = "main"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            starts.append((introduced_from(first), node.name))
            previous_kind = "def"
        elif previous_kind in ("def", "main", "helpers"):  # statements after a def start a chunk; later ones join it
            starts.append((introduced_from(first), f"code-{len(starts) + 1}"))
            previous_kind = "code"
    notes = {r.begin: r.indent + HELPERS_NOTE for r in helpers}
    bounds = [0] + [s for s, _ in starts] + [len(lines)]
    names = ["header"] + [n for _, n in starts]
    chunks = []
    for k, name in enumerate(names):
        text = []
        for i in range(bounds[k], bounds[k + 1]):
            text += [notes[i], lines[i]] if i in notes else [lines[i]]
        chunk = "\n".join(text).strip("\n")
        if name != "__main__" and chunk.strip():
            chunks.append(Chunk(name, chunk, any(line.strip() == BEGIN for line in text)))
    return chunks


# ---------------------------------------------------------------- the stage's page


def _sentences(paragraph: str) -> list[str]:
    """A paragraph split after each sentence, every piece keeping the whitespace that follows it."""
    pieces = re.split(r"(?<=[.!?])(\s+)(?=[A-Z`])", paragraph)
    return [text + space for text, space in zip(pieces[::2], pieces[1::2] + [""])]


def for_notebook(text: str, stage: Stage) -> str:
    """The page as a notebook learner should read it: 'You edit `exercises/ngram.py`' becomes this notebook's code
    cells, and a sentence that runs the grader or pytest becomes the test cells at the end. Code blocks are kept."""
    own = f"`exercises/{stage.module}.py`"

    def sentence(piece: str, said: list[bool]) -> str:
        if re.search(r"python -m (grader|pytest)\b", piece):
            if said[0]:
                return ""
            said[0] = True
            return CHECK_IN_NOTEBOOK + re.match(r".*?(\s*)$", piece, re.S)[1]
        piece = re.sub(rf"\bYou (edit|write) {re.escape(own)}", f"You fill in this notebook's code cells (the module "
                       f"`{stage.module}.py`)", piece)
        piece = piece.replace(own, "this notebook's code cells")
        return re.sub(r"`exercises/(\w+\.py)`", r"`\1`", piece)

    out, paragraph, fenced = [], [], False

    def flush() -> None:
        if paragraph:
            said = [False]
            out.append("".join(sentence(s, said) for s in _sentences("\n".join(paragraph))).rstrip())
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            flush()
            fenced = not fenced
            out.append(line)
        elif fenced:
            out.append(line)
        elif not line.strip():
            flush()
            out.append(line)
        else:
            paragraph.append(line)
    flush()
    return "\n".join(out)


def page_cells(stage: Stage) -> list[str]:
    """The stage's page, one markdown cell per '#' or '##' section, links made relative to notebooks/<kind>/."""
    path = ROOT / stage.doc
    if not path.exists():
        raise NotebookError(f"stage {stage.id}: no docs page {stage.doc}")
    text = re.sub(r"\]\((?![a-z]+:|#|/)([^)\s]+)\)", r"](../../docs/\1)", path.read_text(encoding="utf-8"))
    sections, current, fenced = [], [], False
    for line in for_notebook(text, stage).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,2} ", line) and any(s.strip() for s in current):
            sections.append(current)
            current = []
        current.append(line)
    sections.append(current)
    return ["\n".join(s).strip("\n") for s in sections if any(x.strip() for x in s)]
