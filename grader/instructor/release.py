"""`python -m grader release OUT_DIR`: the kit as students receive it.

In: exercises/, the visible suites and their stored expected outputs (tests/expected/), the grader, docs/, the
student notebooks when they exist. Out: solutions/, the hidden suites, instructor notebooks, benchmarks. The release's
own `python -m pytest` and `python -m grader` run the visible suites against exercises/, judging with the stored
outputs. `leaks(OUT_DIR)` proves that no solution body and no hidden case made it in.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import re
import shutil
import sys
from pathlib import Path

from .. import manifest
from ..manifest import ROOT
from ..learner import pristine
from ..suites import expected

SHIPPED = ("README.md", "requirements.txt", "pyproject.toml", ".gitignore", "exercises", "docs", "grader",
           "tests/__init__.py", "tests/conftest.py", "tests/expected", "tests/grader/__init__.py",
           "tests/grader/test_harness.py", "notebooks/student")
RELEASE_NOTE = """> **Student release.** The reference solutions and the hidden tests are not part of this kit: the visible tests
> compare your code with stored expected outputs (`tests/expected/`), and `python -m pytest` checks `exercises/`.

"""


class ReleaseError(RuntimeError):
    """The release cannot be built (an existing non-empty folder, a missing store)."""


def copy_into(relative: str | Path, out: Path) -> None:
    """ROOT/relative to out/relative (a file or a folder, without caches); nothing when the source is absent."""
    source = ROOT / relative
    if not source.exists():
        return
    destination = out / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    else:
        shutil.copy2(source, destination)


def build(out: Path) -> Path:
    """Write the student kit to `out` (which must not exist or be empty)."""
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} exists and is not empty; choose a new folder")
    missing = [s.id for s in manifest.stages() if not expected.path_for(s.id).exists()]
    if missing:
        raise ReleaseError(f"no stored expected outputs for stages {missing}: run `python -m grader expected` first")
    out.mkdir(parents=True, exist_ok=True)
    for relative in SHIPPED:
        copy_into(relative, out)
    for stage in manifest.stages():
        copy_into(stage.test_dir(hidden=False), out)
    pristine.ship(out)  # grader/pristine/: what `python -m grader reset` restores in a kit without solutions/
    readme = out / "README.md"
    title, _, rest = readme.read_text().partition("\n")
    readme.write_text(f"{title}\n\n{RELEASE_NOTE}{rest.lstrip()}")
    return out


def _normalized(text: str) -> str:
    """Lines stripped of indentation and blank lines dropped, so a body matches wherever it is nested."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _solution_bodies() -> list[tuple[str, str]]:
    """(name, source) of every reference function body that the skeleton leaves to the learner (at least 2 lines)."""
    bodies = []
    for stage in manifest.stages():
        source = (ROOT / "solutions" / f"{stage.module}.py").read_text()
        exercise = (ROOT / "exercises" / f"{stage.module}.py").read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                if not body:
                    continue
                text = _normalized("\n".join(source.splitlines()[body[0].lineno - 1: body[-1].end_lineno]))
                if text.count("\n") >= 1 and text not in _normalized(exercise):  # given helpers are not leaks
                    bodies.append((f"{stage.module}.{node.name}", text))
    return bodies


def leaks(out: Path) -> list[str]:
    """What of the reference or the hidden suites is in a release folder (empty: nothing)."""
    found = []
    if (out / "solutions").exists():
        found.append("solutions/ is present")
    if (out / "tests" / "hidden").exists():
        found.append("tests/hidden/ is present")
    texts = {p: p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix in
             (".py", ".md", ".ipynb", ".json", ".toml", ".txt")}
    texts |= {p: gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in out.rglob("*.gz")}
    normalized = {p: _normalized(t) for p, t in texts.items()}
    for name, body in _solution_bodies():
        for path, text in normalized.items():
            if body in text:
                found.append(f"{path.relative_to(out)} contains the body of {name}")
    hidden_names = set()
    for stage in manifest.stages():
        for path in (ROOT / stage.test_dir(hidden=True)).glob("test_*.py"):
            hidden_names.add(path.stem)
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith(("test_", "probe_")):
                    hidden_names.add(node.name)
    visible_names = set()
    for stage in manifest.stages():
        for path in (ROOT / stage.test_dir(hidden=False)).glob("test_*.py"):
            visible_names |= {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    for name in sorted(hidden_names - visible_names):
        whole_word = re.compile(rf"\b{re.escape(name)}\b")
        for path, text in texts.items():
            if whole_word.search(text):
                found.append(f"{path.relative_to(out)} names the hidden {name}")
    return found


def cmd_release(args: argparse.Namespace) -> int:
    """Build the student kit: no solutions, no hidden tests; visible tests judged by stored outputs."""
    out = build(Path(args.out))
    found = leaks(out)
    if found:
        print("error: the release leaks the reference:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    print(f"wrote the student release to {out} (checked: no solution body, no hidden test)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("release", help="instructors: build the student kit into OUT_DIR")
    parser.add_argument("out", metavar="OUT_DIR")
    parser.set_defaults(func=cmd_release)
