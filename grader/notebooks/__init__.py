"""One Jupyter notebook per stage, generated from the same sources as everything else, and its nbgrader course.

    python -m grader notebooks [STAGE ...] [--check]   # regenerate notebooks/instructor/ and notebooks/student/
    python -m grader nbgrader-course DIR [STAGE ...]   # lay out an nbgrader course in DIR

A stage's notebook is built from solutions/<module>.py (the code, one cell per top-level def or class), exercises/
<module>.py (which functions are the learner's: their bodies go between `### BEGIN SOLUTION` and `### END SOLUTION`),
docs/NN-*.md (markdown cells, split at headings) and the stage's suites as pytest collects them (one test cell per
concept, worth the manifest's points in proportion to its tests; the hidden suite between `### BEGIN HIDDEN TESTS`
and `### END HIDDEN TESTS`). notebooks/instructor/ holds that nbgrader source; notebooks/student/ holds what nbgrader's
own `generate_assignment` makes of it. Nothing in here knows any stage: the manifest says which there are.

Inside a notebook's kernel, `setup` makes the notebook's own definitions the target of the stage's real tests, which
`run_tests` runs in-process through pytest; `modules_from_notebooks` turns a learner's notebooks back into modules,
so `python -m grader grade` accepts notebook submissions. See docs/instructors.md, "Notebooks and nbgrader".
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from .. import manifest
from ..instructor.release import copy_into
from ..manifest import ROOT, Stage
from ..source import reference

NOTEBOOKS = ROOT / "notebooks"
PREREQUISITES = "workbook"  # the package of earlier stages' modules a notebook imports from
TARGET = "this_notebook"  # the --target name under which a kernel's definitions are tested
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError(todo())"  # todo() names the stage and the function
CELL_TIMEOUT = 300  # seconds; the first test cell runs the stage's whole visible suite
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SCHEMA = 3  # nbgrader's cell metadata schema
KIT = ("grader", "pyproject.toml", "tests/__init__.py", "tests/conftest.py")  # what runs the suites


class NotebookError(ValueError):
    """A stage cannot be turned into a notebook (or a notebook into a module); the message says which and why."""


def notebook_name(stage: Stage) -> str:
    """'01-ngram': the notebook's stem and, in an nbgrader course, the assignment's name."""
    return f"{stage.id}-{stage.module}"


# ---------------------------------------------------------------- the module, cut into cells


@dataclass
class Chunk:
    name: str  # 'header', a top-level def or class, or 'code-N' for other top-level statements
    source: str
    solution: bool  # holds a function the learner writes


def _functions(tree: ast.Module):
    """(qualified name, node) of every function, methods included, in source order."""
    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
                yield from walk(node.body, f"{prefix}{node.name}.<locals>.")
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.")
    yield from walk(tree.body, "")


def _docstring_node(node) -> ast.Expr | None:
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def stubs(exercise_source: str) -> set[str]:
    """Qualified names of the functions the skeleton leaves to the learner: a body of `raise NotImplementedError`."""
    found = set()
    for name, node in _functions(ast.parse(exercise_source)):
        body = node.body[1:] if _docstring_node(node) else node.body
        if (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None
                and "NotImplementedError" in ast.unparse(body[0].exc)):
            found.add(name)
    return found


def _main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"')


def cut(solution_source: str, learner_writes: set[str], where: str = "module") -> list[Chunk]:
    """The reference module as cells: the header, then one chunk per top-level def or class (with the comments just
    above it), other top-level statements grouped; relative imports point at the prerequisites package and the body of
    every function in `learner_writes` (after its docstring) sits between the solution markers.

    An `if __name__ == "__main__":` block is left out: in a notebook it would run.
    """
    tree = ast.parse(solution_source)
    lines = solution_source.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level > 1:
                raise NotebookError(f"{where}: line {node.lineno} imports from a parent package (level {node.level})")
            i = node.lineno - 1
            lines[i] = re.sub(r"\bfrom\s+\.(\w[\w.]*)?\s+import\b",  # `from .tensor import` and `from . import`
                              lambda m: f"from {PREREQUISITES}{'.' + m[1] if m[1] else ''} import", lines[i], count=1)
    before: dict[int, list[str]] = {}  # 0-based line -> marker lines inserted above it
    after: dict[int, list[str]] = {}
    missing = set(learner_writes)
    for name, node in _functions(tree):
        if name not in learner_writes:
            continue
        missing.discard(name)
        doc = _docstring_node(node)
        body = node.body[1:] if doc else node.body
        if not body:
            continue
        start = (doc.end_lineno if doc else node.body[0].lineno - 1)  # 0-based: the first line after the docstring
        while start < body[0].lineno - 1 and not lines[start].strip():
            start += 1
        if doc is None and body[0].lineno == node.lineno:
            raise NotebookError(f"{where}: {name} has its body on the line of its def; give it lines of its own")
        indent = re.match(r"\s*", lines[body[0].lineno - 1])[0]
        before.setdefault(start, []).append(indent + BEGIN_SOLUTION)
        after.setdefault(node.end_lineno - 1, []).insert(0, indent + END_SOLUTION)
    if missing:
        raise NotebookError(f"{where}: the skeleton's stubs {sorted(missing)} are not functions of the reference")

    starts: list[tuple[int, str]] = []  # (0-based first line, name) of each chunk after the header
    previous_kind = None
    for node in tree.body:
        if _main_guard(node):
            starts.append((node.lineno - 1, "__main__"))
            previous_kind = "main"
            continue
        named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while first > 0 and lines[first - 1].lstrip().startswith("#"):  # comments that introduce it
            first -= 1
        if named:
            starts.append((first, node.name))
            previous_kind = "def"
        elif previous_kind in ("def", "main"):  # statements after a def start a chunk; later ones join it
            starts.append((first, f"code-{len(starts) + 1}"))
            previous_kind = "code"
    bounds = [0] + [s for s, _ in starts] + [len(lines)]
    names = ["header"] + [n for _, n in starts]
    chunks = []
    for k, name in enumerate(names):
        text = []
        for i in range(bounds[k], bounds[k + 1]):
            text += before.get(i, []) + [lines[i]] + after.get(i, [])
        source = "\n".join(text).strip("\n")
        if name == "__main__" or not source.strip():
            continue
        chunks.append(Chunk(name, source, BEGIN_SOLUTION in source))
    return chunks


# ---------------------------------------------------------------- the tests, as pytest collects them


@dataclass
class Group:
    concept: str
    nodeids: list[str]
    hidden: bool
    points: float = 0.0


class _Collector:
    def __init__(self) -> None:
        self.items: list[dict] = []
        self.errors: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            marker = item.get_closest_marker("concept")
            self.items.append({"nodeid": item.nodeid, "path": str(item.path),
                               "concept": marker.args[0] if marker else Path(str(item.path)).stem})

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid}: {str(report.longrepr)[-1500:]}")


def _collect_main(out: str, dirs: list[str]) -> None:
    """Run in a subprocess by `collect`: collect (never run) the suites in `dirs` and write what came to `out`."""
    import pytest
    collector = _Collector()
    pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}", *dirs], plugins=[collector])
    Path(out).write_text(json.dumps({"items": collector.items, "errors": collector.errors}))


def collect(stages: list[Stage]) -> dict[str, list[Group]]:
    """stage id -> its test groups: one per concept, visible then hidden, in the order pytest collects them."""
    dirs = [d for s in stages for d in (s.test_dir(False), s.test_dir(True)) if (ROOT / d).is_dir()]
    with tempfile.TemporaryDirectory(prefix="notebooks-") as tmp:
        out = Path(tmp) / "collected.json"
        code = "import sys; from grader.notebooks import _collect_main; _collect_main(sys.argv[1], sys.argv[2:])"
        done = subprocess.run([sys.executable, "-c", code, str(out), *dirs], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
        if not out.exists():
            raise NotebookError(f"collecting the suites failed:\n{(done.stdout + done.stderr)[-3000:]}")
        collected = json.loads(out.read_text())
    if collected["errors"]:
        raise NotebookError("the suites do not collect:\n" + "\n".join(collected["errors"]))
    groups: dict[str, list[Group]] = {s.id: [] for s in stages}
    for item in collected["items"]:
        found = manifest.stage_of_test_path(item["path"])
        if found is None or found[0].id not in groups:
            continue
        stage_groups = groups[found[0].id]
        match = [g for g in stage_groups if g.concept == item["concept"] and g.hidden == found[1]]
        if match:
            match[0].nodeids.append(item["nodeid"])
        else:
            stage_groups.append(Group(item["concept"], [item["nodeid"]], found[1]))
    for stage in stages:
        stage_groups = groups[stage.id]
        stage_groups.sort(key=lambda g: g.hidden)  # stable: visible first, each in collection order
        for hidden, total in ((False, stage.visible_points), (True, stage.hidden_points)):
            _share([g for g in stage_groups if g.hidden == hidden], total)
    return groups


def _share(groups: list[Group], total: float) -> None:
    """Split `total` points over the groups in proportion to their tests, in hundredths that add up exactly."""
    tests = sum(len(g.nodeids) for g in groups)
    if not tests:
        return
    cents = round(total * 100)
    exact = [cents * len(g.nodeids) / tests for g in groups]
    given = [int(e) for e in exact]
    by_remainder = sorted(range(len(groups)), key=lambda i: (given[i] - exact[i], i))
    for i in by_remainder[: cents - sum(given)]:
        given[i] += 1
    for group, c in zip(groups, given, strict=True):
        group.points = c / 100


# ---------------------------------------------------------------- the notebook


def _doc_cells(stage: Stage) -> list[str]:
    """The stage's page, one markdown cell per '#' or '##' section, links made relative to notebooks/<kind>/."""
    path = ROOT / stage.doc
    if not path.exists():
        raise NotebookError(f"stage {stage.id}: no docs page {stage.doc}")
    text = re.sub(r"\]\((?![a-z]+:|#|/)([^)\s]+)\)", r"](../../docs/\1)", path.read_text(encoding="utf-8"))
    sections, current, fenced = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,2} ", line) and any(s.strip() for s in current):
            sections.append(current)
            current = []
        current.append(line)
    sections.append(current)
    return ["\n".join(s).strip("\n") for s in sections if any(x.strip() for x in s)]


SETUP = '''# Setup (read-only): find the workbook (the folder that holds grader/: $WORKBOOK_ROOT, else this folder
# or the nearest one above it), make this notebook's definitions the target of the stage's tests, and make the
# earlier stages' modules importable as `{package}`.
import os
import sys
from pathlib import Path

for _folder in (os.environ.get("WORKBOOK_ROOT"), Path.cwd(), *Path.cwd().parents):
    if _folder and (Path(_folder) / "grader" / "notebooks.py").is_file():
        _folder = str(Path(_folder).resolve())
        if sys.path[:1] != [_folder]:
            sys.path.insert(0, _folder)
        break
else:
    raise RuntimeError("cannot find the workbook's grader/: open this notebook inside the workbook (or its nbgrader "
                       "assignment folder), or set WORKBOOK_ROOT to the folder that holds grader/")

from grader.notebooks import run_tests, setup, todo

setup("{stage}", globals())'''

INTRO = """> **Stage {id}: {title}**, as a notebook. It is generated by `python -m grader notebooks` from
> `solutions/{module}.py`, `exercises/{module}.py`, `{doc}` and the stage's tests: change those, not this file.
>
> The page comes first, then the code. Run the setup cell, then fill in every `# YOUR CODE HERE` (the same functions
> as `exercises/{module}.py`; read-only cells are given). The test cells at the end run the stage's own tests
> against this notebook's definitions and show each failure's message and hint; the first one runs the whole suite
> (a few seconds), the others reuse its results until you change a definition."""


def _nbgrader(kind: str, grade_id: str | None = None, points: float = 0.0) -> dict:
    """nbgrader's cell metadata (schema 3): 'solution', 'tests' (graded) or 'readonly'."""
    return {"schema_version": SCHEMA, "grade": kind == "tests", "solution": kind == "solution",
            "locked": kind != "solution", "grade_id": grade_id, **({"points": points} if kind == "tests" else {})}


def _cell_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:64] or "cell"


def _test_source(group: Group) -> str:
    calls = "".join(f"    {json.dumps(n)},\n" for n in group.nodeids)
    call = f"run_tests(\n{calls})"
    tests = "test" if len(group.nodeids) == 1 else "tests"
    if group.hidden:
        return (f"# Hidden tests: {group.concept} ({group.points:g} points); the autograder runs them.\n"
                f"{BEGIN_HIDDEN}\n{call}\n{END_HIDDEN}")
    return f"# {len(group.nodeids)} {tests}: {group.concept} ({group.points:g} points)\n{call}"


def _relative_imports(source: str) -> set[str]:
    """The sibling modules a module imports (`from .tensor import Tensor`, `from . import tensor`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return found


def build(stage: Stage, groups: list[Group]):
    """The instructor notebook (nbgrader source) of one stage, as an nbformat NotebookNode."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    solution_path, exercise_path = ROOT / "solutions" / f"{stage.module}.py", ROOT / stage.exercise_file
    for path in (solution_path, exercise_path):
        if not path.exists():
            raise NotebookError(f"stage {stage.id}: no {path.relative_to(ROOT)}")
    if not [g for g in groups if not g.hidden]:
        raise NotebookError(f"stage {stage.id}: no visible tests in {stage.test_dir()}")
    source = reference(solution_path.read_text(encoding="utf-8"))
    unlisted = sorted(_relative_imports(source) - {s.module for s in manifest.prerequisites(stage)})
    if unlisted:
        raise NotebookError(f"stage {stage.id}: solutions/{stage.module}.py imports {unlisted} relatively, but the "
                            f"manifest's `requires` of stage {stage.id} does not lead to them")
    chunks = cut(source, stubs(exercise_path.read_text(encoding="utf-8")), f"solutions/{stage.module}.py")
    cells = []

    def add(cell, role: str, cell_id: str, nbgrader: dict | None = None, **extra):
        cell.id = _cell_id(cell_id)
        cell.metadata = {"workbook": {"stage": stage.id, "module": stage.module, "role": role, **extra}}
        if nbgrader:
            cell.metadata["nbgrader"] = nbgrader
        cells.append(cell)

    add(new_markdown_cell(INTRO.format(id=stage.id, title=stage.title, module=stage.module, doc=stage.doc)),
        "intro", "intro")
    for i, text in enumerate(_doc_cells(stage)):
        add(new_markdown_cell(text), "doc", f"doc-{i + 1}")
    add(new_code_cell(SETUP.format(stage=stage.id, package=PREREQUISITES)), "setup", "setup",
        _nbgrader("readonly", "setup"))
    add(new_markdown_cell(f"## Your code: `{stage.module}.py`\n\nOne cell per function or class of the module. "
                          f"Fill in each `# YOUR CODE HERE`; earlier stages' modules come from `{PREREQUISITES}`."),
        "heading", "heading-code")
    for chunk in chunks:
        grade_id = _cell_id(f"{stage.module}-{chunk.name}")
        add(new_code_cell(chunk.source), "module-code", grade_id,
            _nbgrader("solution" if chunk.solution else "readonly", grade_id), name=chunk.name)
    add(new_markdown_cell(f"## Tests\n\nEach cell runs some of `{stage.test_dir()}` against the cells above, "
                          f"through pytest (the same tests as `python -m grader check {stage.id}`), and fails with "
                          f"every failed test's message and hint. Only the autograder runs the hidden tests."),
        "heading", "heading-tests")
    for group in groups:
        grade_id = _cell_id(f"{'hidden' if group.hidden else 'test'}-{group.concept}")
        add(new_code_cell(_test_source(group)), "hidden-tests" if group.hidden else "tests", grade_id,
            _nbgrader("tests", grade_id, group.points), concept=group.concept)
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise NotebookError(f"stage {stage.id}: cell ids {duplicates} are not unique (two chunks with one name?)")
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
        "workbook": {"stage": stage.id, "module": stage.module, "title": stage.title}})
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    nbformat.validate(notebook)
    return notebook


def dumps(notebook) -> str:
    import nbformat
    return nbformat.writes(notebook) + "\n"


def student_versions(notebooks: dict[str, str]) -> dict[str, str]:
    """name -> instructor notebook text  =>  name -> what `nbgrader generate_assignment` makes of it.

    Runs nbgrader's own converter in a scratch course, configured like the course `nbgrader-course` writes.
    """
    import nbformat
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    out = {}
    with tempfile.TemporaryDirectory(prefix="nbgrader-") as tmp:
        config = Config()
        config.CourseDirectory.root = tmp
        config.ClearSolutions.code_stub = {"python": CODE_STUB}
        for name, text in notebooks.items():
            (Path(tmp) / "source" / name).mkdir(parents=True)
            (Path(tmp) / "source" / name / f"{name}.ipynb").write_text(text, encoding="utf-8")
        api = NbGraderAPI(CourseDirectory(config=config), config=config)
        with _bin_on_path():
            for name in notebooks:
                result = api.generate_assignment(name, force=True, create=True)
                if not result["success"]:
                    raise NotebookError(f"nbgrader generate_assignment {name} failed:\n{result['error']}\n"
                                        f"{result['log'][-3000:]}")
                released = Path(tmp) / "release" / name / f"{name}.ipynb"
                out[name] = dumps(nbformat.read(released, as_version=4))
    return out


@contextlib.contextmanager
def _bin_on_path():
    """nbgrader shells out to `alembic`, which lives beside this Python (in a virtual environment's bin/)."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def generate(stages: list[Stage] | None = None) -> dict[Path, str]:
    """path -> text of every notebook the stages should have (instructor and student)."""
    stages = list(stages or manifest.stages())
    groups = collect(stages)
    instructor = {notebook_name(s): dumps(build(s, groups[s.id])) for s in stages}
    student = student_versions(instructor)
    files = {}
    for name in instructor:
        files[NOTEBOOKS / "instructor" / f"{name}.ipynb"] = instructor[name]
        files[NOTEBOOKS / "student" / f"{name}.ipynb"] = student[name]
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]


# ---------------------------------------------------------------- inside a notebook's kernel

_KERNEL: dict = {}


def setup(stage_id: str, namespace: dict) -> None:
    """Make `namespace` (the notebook's globals) the stage's test target and the prerequisites importable."""
    from ..suites import targets

    stage = manifest.stage(stage_id)
    _KERNEL.update(stage=stage, namespace=namespace, runs={})
    here = Path.cwd().resolve()
    targets.NAMED[TARGET] = here / f".{TARGET}"  # resolved already: targets.package_name finds it by equality
    if (here / PREREQUISITES).is_dir():
        source = here / PREREQUISITES  # beside the notebook: the reference's modules (an nbgrader course, a test run)
    elif (ROOT / "solutions").is_dir():
        source = ROOT / "solutions"  # the instructors' checkout
    else:
        source = ROOT / "exercises"  # a student release: your own earlier stages
    if source != here / PREREQUISITES:
        package = types.ModuleType(PREREQUISITES)
        package.__path__ = [str(source)]
        sys.modules[PREREQUISITES] = package
    reference = "solutions/" if (ROOT / "solutions").is_dir() else "the stored outputs in tests/expected/"
    uses = f"; `{PREREQUISITES}` (the earlier stages) is {source}" if stage.requires else ""
    print(f"stage {stage.label}: tests from {ROOT / 'tests'}, compared with {reference}{uses}")


def todo() -> str:
    """The message of a stub's NotImplementedError: the stage and the function that raised it, as in exercises/."""
    code = sys._getframe(1).f_code
    name = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
    stage = _KERNEL.get("stage")
    return f"stage {stage.id} ({stage.title}): {name}" if stage else name


class _Outcomes:
    """A pytest plugin that keeps each test's outcome, its failure message and the manifest's hint."""

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}
        self.skipped_files: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def pytest_configure(self, config) -> None:
        config.option.tbstyle = "native"  # only the message is shown: skip pytest's costly source excerpts

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors[report.nodeid] = str(report.longrepr)[-2000:]
        elif report.skipped:
            self.skipped_files[report.nodeid] = str(report.longrepr)[-300:]

    def pytest_runtest_makereport(self, item, call):
        import pytest

        from ..suites.plugin import _message

        if call.excinfo is None:
            return
        record = self.results.setdefault(item.nodeid, {"outcome": "passed", "message": "", "hint": None})
        if call.excinfo.errisinstance(pytest.skip.Exception):
            record.update(outcome="skipped", message=str(call.excinfo.value))
            return
        if record["outcome"] != "failed":
            marker = item.get_closest_marker("concept")
            found = manifest.stage_of_test_path(item.path)
            record.update(outcome="failed", message=_message(call.excinfo),
                          hint=found[0].hint(marker.args[0]) if found and marker else None)

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.results.setdefault(nodeid, {"outcome": "passed", "message": "", "hint": None})


def _target_module(stage: Stage, namespace: dict) -> types.ModuleType:
    module = types.ModuleType(f"{TARGET}.{stage.module}", f"stage {stage.id}, from this notebook")
    module.__dict__.update({k: v for k, v in namespace.items() if not k.startswith("_")})
    module.__file__, module.__package__ = "this notebook", TARGET
    return module


def _register_target(stage: Stage) -> None:
    """The package `this_notebook`: the notebook's definitions as the stage's module, beside the very modules of
    the earlier stages it imported (tests reach those as siblings: `importlib.import_module(m.__package__ + ...)`)."""
    import importlib

    from ..suites import targets

    package = types.ModuleType(TARGET)
    package.__path__ = [str(targets.NAMED[TARGET])]
    sys.modules[TARGET] = package
    for earlier in manifest.prerequisites(stage):
        try:
            sys.modules[f"{TARGET}.{earlier.module}"] = importlib.import_module(f"{PREREQUISITES}.{earlier.module}")
        except Exception:  # the notebook's own import of it fails too, and says why
            sys.modules.pop(f"{TARGET}.{earlier.module}", None)
    sys.modules[f"{TARGET}.{stage.module}"] = _target_module(stage, _KERNEL["namespace"])


def _run_suite(stage: Stage, suite: str) -> dict:
    """Run one suite (tests/stageNN or tests/hidden/stageNN) against the notebook's definitions, in this process."""
    import pytest

    outcomes = _Outcomes()
    if not (ROOT / suite).is_dir():
        return {"results": {}, "skipped_files": {}, "errors": {}}
    _register_target(stage)
    args = [str(ROOT / suite), f"--rootdir={ROOT}", f"--target={TARGET}", "--capture=sys",
            *("-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:faulthandler", "-p", "no:benchmark",
              "-p", "no:unraisableexception")]
    if (ROOT / "pyproject.toml").exists():
        args += ["-c", str(ROOT / "pyproject.toml")]
    pytest.main(args, plugins=[outcomes])
    return {"results": outcomes.results, "skipped_files": outcomes.skipped_files, "errors": outcomes.errors}


def _fingerprint(namespace: dict) -> dict:
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in ("In", "Out")}


def run_tests(*nodeids: str) -> None:
    """Run these tests of the stage against the notebook's definitions; raise AssertionError naming every failure.

    The suite a test belongs to runs whole, once for a given set of definitions: the next test cells reuse its
    outcomes until a definition changes (a cell run again makes new function objects).
    """
    if "stage" not in _KERNEL:
        raise RuntimeError("run the setup cell first")
    stage, namespace = _KERNEL["stage"], _KERNEL["namespace"]
    current = _fingerprint(namespace)
    lines, passed, skipped = [], 0, 0
    for nodeid in nodeids:
        suite = str(Path(nodeid.split("::")[0]).parent)
        cached = _KERNEL["runs"].get(suite)
        if cached is None or cached[0].keys() != current.keys() or any(
                cached[0][k] is not current[k] for k in current):
            cached = (current, _run_suite(stage, suite))
            _KERNEL["runs"][suite] = cached
        run = cached[1]
        name = nodeid.split("::", 1)[-1]
        record = run["results"].get(nodeid)
        if record is None:
            file = nodeid.split("::")[0]
            if file in run["skipped_files"]:
                skipped += 1
                continue
            problem = run["errors"].get(file) or next(iter(run["errors"].values()), None)
            if not (ROOT / suite).is_dir():
                message = (f"not run: this workbook ({ROOT}) has no {suite}/ (hidden suites are only in the "
                           f"instructors' copy and in an nbgrader course's autograder/)")
            elif problem:
                message = f"not run: {problem.strip().splitlines()[-1]}"
            else:
                message = "not collected: the test is missing (regenerate the notebooks?)"
            record = {"outcome": "failed", "hint": None, "message": message}
        if record["outcome"] == "passed":
            passed += 1
        elif record["outcome"] == "skipped":
            skipped += 1
        else:
            lines.append(f"- {name}: {record['message'].strip()}")
            if record["hint"]:
                lines.append(f"  hint: {record['hint']}")
    if lines:
        failed = len(nodeids) - passed - skipped
        raise AssertionError(f"{failed} of {len(nodeids)} tests failed\n" + "\n".join(lines))
    note = f" ({skipped} skipped)" if skipped else ""
    print(f"{passed} of {len(nodeids)} tests passed{note}")


# ---------------------------------------------------------------- notebooks back into modules


def _stub_messages(source: str, stage: Stage | None) -> str:
    """`NotImplementedError(todo())` -> the literal message todo() would give, so the module needs no kernel."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for name, node in _functions(tree):
        for call in ast.walk(node):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "todo"
                    and not call.args and call.lineno == call.end_lineno):
                label = f"stage {stage.id} ({stage.title}): {name}" if stage else name
                edits.append((call.lineno - 1, call.col_offset, call.end_col_offset, repr(label)))
    for line, start, end, text in sorted(edits, reverse=True):
        raw = lines[line].encode()  # ast offsets count UTF-8 bytes
        lines[line] = (raw[:start] + text.encode() + raw[end:]).decode()
    return "".join(lines)


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
    text = "\n".join(line for line in text.split("\n") if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))
    text = re.sub(rf"^(\s*)from\s+{PREREQUISITES}\b\.?", r"\1from .", text, flags=re.M)
    try:
        stage = next((s for s in manifest.stages() if s.module == module), None)
        text = _stub_messages(text, stage)
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


# ---------------------------------------------------------------- an nbgrader course

COURSE_CONFIG = '''"""nbgrader's configuration of the workbook's course (from `python -m grader nbgrader-course`)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = HERE
c.Execute.timeout = {timeout}  # seconds per cell; the first test cell runs the stage's whole visible suite
# A stub raises NotImplementedError naming the stage and the function, like exercises/ (todo() is set up in the
# notebook's read-only setup cell).
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
# The kernels nbgrader starts (validate, autograde) find the grader, every suite (the hidden ones too) and the
# reference in autograder/, which is outside source/ and so never released. Students' kernels, without this
# variable, use the kit released beside each notebook (visible suites, judged with the stored expected outputs).
os.environ.setdefault("WORKBOOK_ROOT", os.path.join(HERE, "autograder"))
'''


def write_prerequisites(stage: Stage, folder: Path) -> Path:
    """folder/workbook/: the reference modules of the stage's prerequisites, as a package."""
    package = folder / PREREQUISITES
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""The reference modules of the stages this notebook builds on."""\n')
    for earlier in manifest.prerequisites(stage):
        shutil.copy2(ROOT / "solutions" / f"{earlier.module}.py", package / f"{earlier.module}.py")
    return package


def build_course(out: Path, stages: list[Stage] | None = None) -> list[Path]:
    """Lay out an nbgrader course in `out`; return the assignment folders written.

    out/nbgrader_config.py, out/source/<NN-module>/ (the instructor notebook, `workbook/` with the reference modules
    of its prerequisites, and the student kit: grader/, the visible suite and its stored expected outputs), and
    out/autograder/ (grader/, every suite with the hidden ones, solutions/) for the kernels nbgrader runs. Built again,
    it replaces those and leaves the gradebook, submitted/, autograded/ and feedback/ alone.
    """
    from ..suites import expected

    stages = list(stages or manifest.stages())
    missing = [s.id for s in stages if not expected.path_for(s.id).exists()]
    if missing:
        raise NotebookError(f"no stored expected outputs for stages {missing} (students' kernels judge with them): "
                            f"run `python -m grader expected` first")
    absent = [notebook_name(s) for s in stages if not (NOTEBOOKS / "instructor" / f"{notebook_name(s)}.ipynb").exists()]
    if absent:
        raise NotebookError(f"no notebooks {absent}: run `python -m grader notebooks` first")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(COURSE_CONFIG.format(timeout=CELL_TIMEOUT, stub=CODE_STUB))
    autograder = out / "autograder"
    shutil.rmtree(autograder, ignore_errors=True)
    for relative in (*KIT, "solutions", "tests/expected", "tests/hidden/__init__.py"):
        copy_into(relative, autograder)
    written = []
    for stage in stages:
        for hidden in (False, True):
            copy_into(stage.test_dir(hidden), autograder)
        folder = out / "source" / notebook_name(stage)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy2(NOTEBOOKS / "instructor" / f"{notebook_name(stage)}.ipynb", folder)
        if stage.requires:
            write_prerequisites(stage, folder)
        for relative in (*KIT, stage.test_dir(False), expected.path_for(stage.id).relative_to(ROOT)):
            copy_into(relative, folder)
        written.append(folder)
    return written


# ---------------------------------------------------------------- commands


def _stages(ids: list[str]) -> list[Stage]:
    return [manifest.stage(i) for i in ids] if ids else list(manifest.stages())


def cmd_notebooks(args) -> int:
    """Regenerate the notebooks of the stages (all by default); with --check, write nothing and list stale ones."""
    files = generate(_stages(args.stages))
    old = stale(files)
    if args.check:
        for path in old:
            print(f"stale: {path.relative_to(ROOT)}")
        if old:
            print("run `python -m grader notebooks` to regenerate them", file=sys.stderr)
        return 1 if old else 0
    for path in old:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if not old:
        print(f"the {len(files)} notebooks are up to date")
    return 0


def cmd_nbgrader_course(args) -> int:
    """Lay out an nbgrader course in DIR."""
    folders = build_course(Path(args.dir), _stages(args.stages))
    root = Path(args.dir).resolve()
    print(f"wrote the nbgrader course {root}: nbgrader_config.py, autograder/ and "
          f"{', '.join(str(f.relative_to(root)) for f in folders)}")
    print(f"next: cd {root} && nbgrader generate_assignment {folders[0].name}")
    return 0


def register(commands) -> None:
    """Add `notebooks` and `nbgrader-course` to the grader's command line."""
    notebooks = commands.add_parser("notebooks", help="instructors: regenerate the stage notebooks (notebooks/)")
    notebooks.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    notebooks.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale notebooks")
    notebooks.set_defaults(func=cmd_notebooks)
    course = commands.add_parser("nbgrader-course", help="instructors: lay out an nbgrader course in DIR")
    course.add_argument("dir", metavar="DIR")
    course.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    course.set_defaults(func=cmd_nbgrader_course)
