"""`python -m grader release OUT_DIR`: the kit as students receive it, built from the sources, never the working tree.

In: exercises/ generated from solutions/ (grader/source.py), the visible suites and their stored expected outputs
(tests/expected/), the grader, docs/, the student notebooks. Out: solutions/, the hidden suites, instructor notebooks,
benchmarks, and anything git does not track (a learner's files, scratch notebooks, caches). The release's own
`python -m pytest` and `python -m grader` run the visible suites against exercises/, judging with the stored outputs.
`leaks(OUT_DIR)` inspects the kit itself: every function of its exercises/ is a stub or a given helper identical to
the source, and no solution body and no hidden test is anywhere in it.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .. import manifest, source
from ..manifest import ROOT
from ..suites import expected
from ..learner import pristine
from . import build as derived

SHIPPED = ("README.md", "requirements.txt", "pyproject.toml", ".gitignore", "docs", "grader",
           "tests/__init__.py", "tests/conftest.py", "tests/expected", "tests/grader/__init__.py",
           "tests/grader/test_harness.py", "notebooks/student")
CACHES = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".grader", ".git"}
TEXT_SUFFIXES = (".py", ".md", ".ipynb", ".json", ".toml", ".txt", ".cfg", ".sh", ".html")
STUDENT_README = """{title}

> **Student release**: everything you need to work through every stage, on your own machine.

A workbook that takes you from counting characters to a GPT-style transformer, one auto-graded stage at a time, with
nothing but NumPy. Each stage is one module for you to write in `exercises/`, a page of derivations in `docs/`, and a
test suite that checks values, not shapes, with messages that say what was expected, what came and where.

## Two commands

```bash
pip install -r requirements.txt    # once (Python 3.10 or newer; a virtual environment is a good idea)
python -m grader                   # your progress, the next stage, the file to open and its first failing test
```

Then keep `python -m grader watch` running beside your editor: it checks the stage you are on every time you save.

## The stages

| Stage | You build | You edit | Read |
| --- | --- | --- | --- |
{table}

Every function you write is a stub that raises `NotImplementedError("stage NN (...): name")`; its docstring has the
math, the shapes and the conventions. Later stages import earlier ones (`from .tensor import Tensor`), so your
attention runs on your own tensor engine.{notebooks}

## Every command

| Command | What it does |
| --- | --- |
| `python -m grader` | your progress through the stages and what to do next |
| `python -m grader check NN` | every test of stage NN against your code (`check NN FUNCTION`, or `-k WORDS`, for one function) |
| `python -m grader watch` | checks the current stage again each time a file changes (Ctrl-C stops) |
| `python -m grader hint [NN]` | the next hint for the first failing test: a nudge, then the page to read, then the formula |
| `python -m grader reset NN [FUNCTION]` | puts a stage's stubs (or one function's) back, keeping a backup of what it replaced |
| `python -m grader submit` | writes the zip to hand in: your stage modules (or `--notebooks`) with their digests |
| `python -m grader reveal NN` | the reference module of a stage once your code passes it, when your course provides it |
| `python -m pytest tests/stageNN` | the same tests with pytest's own output |

The tests compare your code with stored expected outputs (`tests/expected/`), so they run without any reference code.
"""


def student_readme() -> str:
    """The kit's README.md, written for learners, naming only what the kit holds."""
    title = (ROOT / "README.md").read_text(encoding="utf-8").partition("\n")[0]
    rows = [f"| {s.id} | {s.title}: {s.summary} | `exercises/{s.module}.py` | [{s.doc}]({s.doc}) |"
            for s in manifest.stages()]
    notebooks = ("\n\nYou may work in notebooks instead: `notebooks/student/` holds one per stage, each with the "
                 "stage's page, its code cells and its tests; `python -m grader submit --notebooks` hands them in.")
    has_notebooks = any((ROOT / "notebooks" / "student").glob("*.ipynb"))
    return STUDENT_README.format(title=title, table="\n".join(rows), notebooks=notebooks if has_notebooks else "")


class ReleaseError(RuntimeError):
    """The release cannot be built (an existing non-empty folder, a missing store)."""


# ---------------------------------------------------------------- which files ship: the ones the repository knows


def _ls_files(options: tuple[str, ...], entries: tuple[str, ...] | list[str]) -> list[str] | None:
    """`git ls-files OPTIONS -- ENTRIES` in the repository, as paths relative to it; None when this is no git checkout
    (or there is no git)."""
    try:
        done = subprocess.run(["git", "ls-files", *options, "-z", "--", *entries], cwd=ROOT, capture_output=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [name for name in done.stdout.decode("utf-8").split("\0") if name]


def known_files(entries: tuple[str, ...] | list[str]) -> list[str]:
    """The files under `entries` (files or folders, relative to the repository) that ship, as '/'-separated paths.

    In a git checkout: the tracked ones, with their working-tree content (an instructor's uncommitted edit ships;
    untracked and ignored files, a learner's scratch notebook or a cache, never do). Outside one (a downloaded copy):
    every file but caches and compiled bytecode."""
    tracked = _ls_files(("--cached",), entries)
    if tracked is not None:
        return sorted(name for name in tracked if (ROOT / name).is_file())  # tracked but deleted: gone
    found = []
    for entry in entries:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            relative = candidate.relative_to(ROOT)
            if not CACHES & set(relative.parts) and candidate.suffix != ".pyc":
                found.append(relative.as_posix())
    return found


def untracked_files(entries: tuple[str, ...] | list[str]) -> list[str]:
    """Files under `entries` that git does not track and does not ignore: left out of every kit (and said so)."""
    return _ls_files(("--others", "--exclude-standard"), entries) or []


def copy_into(relative: str | Path, out: Path) -> None:
    """ROOT/relative (a file or a folder) to out/relative: only the files the repository knows (known_files), so no
    untracked file and no cache reaches a kit; nothing when there are none."""
    for name in known_files([Path(relative).as_posix()]):
        destination = out / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def write_exercises(out: Path) -> list[str]:
    """out/exercises/: the skeleton generated from solutions/ (never the working exercises/)."""
    written = []
    for relative, text in derived.exercise_texts().items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(relative)
    return written


# ---------------------------------------------------------------- the kit


def build(out: Path) -> Path:
    """Write the student kit to `out` (which must not exist or be empty)."""
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} exists and is not empty; choose a new folder")
    missing = [s.id for s in manifest.stages() if not expected.path_for(s.id).exists()]
    if missing:
        raise ReleaseError(f"no stored expected outputs for stages {missing}: run `python -m grader build` first")
    out.mkdir(parents=True, exist_ok=True)
    for relative in (*SHIPPED, *(s.test_dir(hidden=False) for s in manifest.stages())):
        copy_into(relative, out)
    write_exercises(out)
    pristine.ship(out)  # grader/pristine/: what `python -m grader reset` restores in a kit without solutions/
    (out / "README.md").write_text(student_readme(), encoding="utf-8", newline="\n")
    return out


# ---------------------------------------------------------------- the leak check, on the output itself


def _normalized(text: str) -> str:
    """Lines stripped of indentation and blank lines dropped, so a body matches wherever it is nested."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _reference_only(text: str, found: list[source.Region]) -> set[str]:
    """Qualified names of the functions defined inside a reference-only region (the skeleton leaves them out)."""
    spans = [(r.begin, r.end) for r in found if r.function is None]
    return {name for name, node in derived.functions(text).items()
            if any(begin < node.lineno - 1 < end for begin, end in spans)}


def exercise_problems(folder: Path, shown: str = "exercises") -> list[str]:
    """What in a copy of exercises/ is not the skeleton: a learner's function with a body, a given helper that differs
    from the source, reference-only code, a module the source does not generate (empty: none)."""
    found = []
    wanted = derived.exercise_texts()
    present = {f"exercises/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
    for relative in sorted(present - set(wanted)):
        found.append(f"{shown}/{relative.removeprefix('exercises/')} is not generated from solutions/ (a learner's "
                     f"or an untracked file?)")
    stage_of = {f"exercises/{s.module}.py": s for s in manifest.stages()}
    for relative, skeleton_text in wanted.items():
        name = f"{shown}/{relative.removeprefix('exercises/')}"
        path = folder / relative.removeprefix("exercises/")
        if not path.is_file():
            found.append(f"{name} is missing")
            continue
        text = path.read_text(encoding="utf-8")
        if relative not in stage_of:  # a given module or the package's __init__: exactly as generated
            if text.splitlines() != skeleton_text.splitlines():
                found.append(f"{name} differs from the file generated from solutions/")
            continue
        origin = f"solutions/{stage_of[relative].module}.py"
        source_text = (ROOT / origin).read_text(encoding="utf-8")
        marked = source.regions(source_text, origin)
        learner = {r.function for r in marked if r.function}
        hidden_helpers = _reference_only(source_text, marked)
        given, skeleton_functions = derived.functions(source_text), derived.functions(skeleton_text)
        try:
            kit = derived.functions(text)
        except SyntaxError as error:
            found.append(f"{name} does not parse (line {error.lineno})")
            continue
        stubs = set(pristine.stubs(text))
        for function, node in kit.items():
            if function in learner:
                if function not in stubs:
                    found.append(f"{name}: {function} is the learner's to write, but has a body (a solution?)")
            elif function in hidden_helpers:
                found.append(f"{name}: {function} is reference-only code (marked in {origin}), yet it is here")
            elif function not in given:
                found.append(f"{name}: {function} is not in {origin}")
            else:  # a given helper: the source's own code (or its skeleton's, when a learner's function is nested)
                twin = skeleton_functions[function] if any(f.startswith(f"{function}.") for f in learner) \
                    else given[function]
                if ast.dump(node) != ast.dump(twin):
                    found.append(f"{name}: {function} differs from the given helper in {origin}")
        absent = sorted(set(skeleton_functions) - set(kit))
        if absent:
            found.append(f"{name} lacks {', '.join(absent)}")
    return found


def _solution_bodies() -> list[tuple[str, str]]:
    """(name, normalized text) of every marked region of at least two lines whose text the skeleton does not also
    give away (a given helper may hold the same two lines)."""
    skeletons = "\n".join(_normalized(t) for t in derived.exercise_texts().values())
    bodies = []
    for stage in manifest.stages():
        origin = f"solutions/{stage.module}.py"
        lines = (ROOT / origin).read_text(encoding="utf-8").splitlines()
        for region in source.regions("\n".join(lines) + "\n", origin):
            text = _normalized("\n".join(lines[region.begin + 1:region.end]))
            if text.count("\n") >= 1 and text not in skeletons:
                bodies.append((f"{stage.module}.{region.function or f'(reference-only code, line {region.begin + 1})'}",
                               text))
    return bodies


def _readable(path: Path) -> str | None:
    """A file's text as a reader would search it: notebooks by their cells' sources, stores decompressed."""
    try:
        if path.name.endswith(".gz"):
            return gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        if path.suffix not in TEXT_SUFFIXES:
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".ipynb":
            cells = json.loads(text).get("cells", [])
            text += "\n" + "\n".join("".join(c.get("source", [])) for c in cells)
        return text
    except (OSError, ValueError):
        return None


def leaks(out: Path) -> list[str]:
    """What of the reference or the hidden suites is in a release folder (empty: nothing)."""
    found = []
    if (out / "solutions").exists():
        found.append("solutions/ is present")
    if (out / "tests" / "hidden").exists():
        found.append("tests/hidden/ is present")
    found += exercise_problems(out / "exercises")
    shipped = out / pristine.SHIPPED.relative_to(ROOT)
    if shipped.is_dir():  # the kit's copy of the skeleton, for `reset`: held to the same rule
        found += exercise_problems(shipped, shipped.relative_to(out).as_posix())
    texts = {p: t for p in sorted(out.rglob("*")) if p.is_file() and (t := _readable(p)) is not None}
    normalized = {p: _normalized(t) for p, t in texts.items()}
    line_sets = {p: set(t.splitlines()) for p, t in normalized.items()}  # a cheap test before the substring search
    for name, body in _solution_bodies():
        lines = set(body.splitlines())
        for path, text in normalized.items():
            if lines <= line_sets[path] and body in text:
                found.append(f"{path.relative_to(out).as_posix()} contains the body of {name}")
    hidden_names, visible_names = set(), set()
    for stage in manifest.stages():
        for path in (ROOT / stage.test_dir(hidden=True)).glob("test_*.py"):
            hidden_names.add(path.stem)
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith(("test_", "probe_")):
                    hidden_names.add(node.name)
        for path in (ROOT / stage.test_dir(hidden=False)).glob("*.py"):  # the visible helpers ship too
            visible_names |= {n.name for n in ast.parse(path.read_text(encoding="utf-8")).body
                              if isinstance(n, ast.FunctionDef)}
    words = {p: set(re.findall(r"\w+", t)) for p, t in texts.items()}  # a name counts only as a whole word
    for name in sorted(hidden_names - visible_names):
        for path in texts:
            if name in words[path]:
                found.append(f"{path.relative_to(out).as_posix()} names the hidden {name}")
    return found


def cmd_release(args: argparse.Namespace) -> int:
    """Build the student kit: no solutions, no hidden tests; visible tests judged by stored outputs."""
    out = build(Path(args.out))
    left_out = untracked_files([*SHIPPED, "exercises"])
    if left_out:
        print(f"left out {len(left_out)} untracked file{'s' if len(left_out) > 1 else ''} (commit what should ship): "
              f"{', '.join(left_out[:8])}{' ...' if len(left_out) > 8 else ''}")
    found = leaks(out)
    if found:
        print("error: the release leaks the reference:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    print(f"wrote the student release to {out} (checked: exercises/ is the skeleton, no solution body, no hidden test)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("release", help="instructors: build the student kit into OUT_DIR")
    parser.add_argument("out", metavar="OUT_DIR")
    parser.set_defaults(func=cmd_release)
