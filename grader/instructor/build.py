"""`python -m grader build`: regenerate every file derived from the stage sources, after any edit of them.

    python -m grader build              # rewrite whatever is stale
    python -m grader build --check      # write nothing; exit 1 naming each stale file and the command that fixes it
    python -m grader expected [STAGE]   # only the stored outputs (tests/expected/)

What is derived, from what, and the command that regenerates that kind alone:

    exercises/                  the skeleton of each solutions/<module>.py (grader/source.py)   python -m grader build
    README.md, docs/README.md   the stage tables, from grader/stages.toml (docs.py)            python -m grader docs
    tests/expected/             the reference's outputs of the visible suites                    python -m grader expected
    notebooks/                  solutions/, docs/ and the suites (grader/notebooks/)            python -m grader notebooks

exercises/ is also where a learner works. There "fresh" means: equal to the generated skeleton everywhere except in
the bodies of the learner's functions that are no longer stubs (`exercise_problem`), so filling a stub never makes the
self-test fail, while a skeleton left behind by an edit of solutions/ always does. `build` never overwrites a filled
body unless told to (--force).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import manifest, report, source
from ..learner import pristine
from ..manifest import ROOT
from ..suites import expected, runner
from . import docs

KINDS = ("exercises", "docs", "expected", "notebooks")  # in the order `build` writes them: notebooks read the rest
FIX = {"exercises": "python -m grader build", "docs": "python -m grader docs",
       "expected": "python -m grader expected", "notebooks": "python -m grader notebooks"}
# exercises/__init__.py has no source of its own in solutions/ (whose __init__ describes the reference)
EXERCISES_INIT = ('"""Your package: one module per stage. Each stub raises NotImplementedError naming its stage; '
                  'replace the bodies."""\n'
                  'from . import threads\n\n'
                  'threads.from_command_line()  # `python -m exercises.train --threads N`: set before any module imports '
                  'NumPy (threads.py)\n')


class BuildError(RuntimeError):
    """A derived file cannot be regenerated (the reference fails its own tests, a source is malformed)."""


@dataclass(frozen=True)
class Stale:
    path: str  # relative to the repository, with '/'
    why: str
    fix: str  # the command that regenerates it

    def __str__(self) -> str:
        return f"{self.path}: {self.why} (fix: `{self.fix}`)"


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------- exercises/: the skeleton, and the learner's bodies


def exercise_texts() -> dict[str, str]:
    """'exercises/<name>.py' -> its text, generated from solutions/: what exercises/ holds before a learner starts."""
    texts = source.generated_skeletons()
    texts.setdefault("exercises/__init__.py", EXERCISES_INIT)
    return texts


def learner_functions() -> dict[str, set[str]]:
    """'exercises/<module>.py' -> the qualified names of the functions the learner writes there (marked in the
    source); given modules have none."""
    return {f"exercises/{stage.module}.py": set(source.learner_writes(
        (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8"), f"solutions/{stage.module}.py"))
        for stage in manifest.stages()}


def functions(text: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Qualified name -> node of every function and method of a module (nested ones named with '.<locals>.')."""
    return dict(source.functions(ast.parse(text)))


def filled(text: str, learner: set[str]) -> list[str]:
    """The learner's functions in `text` whose body is no longer a stub (the learner's work: never overwritten);
    SyntaxError when `text` does not parse."""
    still_stubs = set(pristine.stubs(text))
    return [name for name in functions(text) if name in learner and name not in still_stubs]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _outline(text: str, cut: set[str]) -> list[tuple[int, str]]:
    """(line number, line) of a module, with the body of every function in `cut` (after its docstring, through the
    comments and blank lines that trail it) replaced by one line '...'."""
    lines = text.splitlines()
    spans = []
    for name, node in functions(text).items():
        if name not in cut:
            continue
        docstring = ast.get_docstring(node, clean=False) is not None
        first = node.body[0].end_lineno if docstring else node.body[0].lineno - 1  # 0-based: the body's first line
        last, column = node.end_lineno - 1, _indent(lines[node.lineno - 1])
        while last + 1 < len(lines) and (not lines[last + 1].strip() or _indent(lines[last + 1]) > column):
            last += 1
        spans.append((first, last, column))
    outline, i = [], 0
    for first, last, column in sorted(spans):
        if first < i:  # inside a span already cut
            continue
        outline += [(n + 1, lines[n]) for n in range(i, first)]
        outline.append((first + 1, " " * (column + 4) + "..."))
        i = last + 1
    return outline + [(n + 1, lines[n]) for n in range(i, len(lines))]


def exercise_problem(text: str | None, wanted: str, learner: set[str], origin: str) -> str | None:
    """Why an exercises/ module's `text` (None: absent) is stale (None: it is fresh); `wanted` is the skeleton
    generated from `origin`, `learner` the functions the learner writes there.

    Fresh means equal to the generated skeleton `wanted` except inside the bodies of the learner's functions that are
    no longer stubs. A learner's contract is those bodies, so a filled stub never makes the skeleton stale; everything
    else in the file (imports, given helpers, docstrings, signatures, each untouched stub's message) comes from
    solutions/ and must match it, whoever changed it. (Comparing with the last commit instead would fail for a learner
    who commits their work, and would miss a maintainer's uncommitted edit of solutions/.)
    """
    if text is None:
        return "missing"
    try:
        cut = set(filled(text, learner))
        have = _outline(text, cut)
    except SyntaxError as error:
        return (f"line {error.lineno} does not parse ({error.msg}), so it cannot be compared with its skeleton; fix "
                f"it, or move it aside and regenerate")
    want = _outline(wanted, cut)
    if [line for _, line in have] == [line for _, line in want]:
        return None
    matcher = difflib.SequenceMatcher(a=[line for _, line in want], b=[line for _, line in have], autojunk=False)
    tag, i1, i2, j1, j2 = next(op for op in matcher.get_opcodes() if op[0] != "equal")
    extra = next((have[j] for j in range(j1, j2) if have[j][1].strip()), have[j1] if j1 < j2 else None)
    lacking = next((want[i][1].strip() for i in range(i1, i2) if want[i][1].strip()), "")
    if tag == "insert":
        return f"line {extra[0]} `{extra[1].strip()}` is not in the skeleton generated from {origin}"
    if tag == "delete":
        where = f"before line {have[j1][0]}" if j1 < len(have) else "at the end"
        return f"the skeleton generated from {origin} has `{lacking}` {where}, missing from the file"
    return (f"line {extra[0]} is `{extra[1].strip()}`, where the skeleton generated from {origin} has "
            f"`{lacking}`")


def stale_exercises() -> list[Stale]:
    learner = learner_functions()
    found = []
    for relative, wanted in exercise_texts().items():
        path = ROOT / relative
        why = exercise_problem(path.read_text(encoding="utf-8") if path.exists() else None, wanted,
                               learner.get(relative, set()), relative.replace("exercises/", "solutions/", 1))
        if why is not None:
            found.append(Stale(relative, why, FIX["exercises"]))
    return found


def write_exercises(force: bool = False) -> tuple[list[str], list[Stale]]:
    """Rewrite the stale files of exercises/; return (written, refused: stale but holding a learner's work)."""
    texts, learner = exercise_texts(), learner_functions()
    written, refused = [], []
    for stale in stale_exercises():
        path = ROOT / stale.path
        try:
            work = filled(path.read_text(encoding="utf-8"), learner.get(stale.path, set())) if path.exists() else []
        except SyntaxError:
            work = ["(the file does not parse)"]
        if work and not force:
            refused.append(Stale(stale.path, f"{stale.why}; not rewritten, because {', '.join(work)} "
                                 f"{'is' if len(work) == 1 else 'are'} filled in (someone's work): move it aside, "
                                 f"or pass --force to replace it with the skeleton", "python -m grader build --force"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[stale.path], encoding="utf-8", newline="\n")
        written.append(stale.path)
    return written, refused


# ---------------------------------------------------------------- README.md and docs/README.md


def _docs_texts() -> dict[Path, str]:
    return {docs.INDEX: docs.render_index(), docs.README: docs.render_readme(docs.README.read_text(encoding="utf-8"))}


def stale_docs() -> list[Stale]:
    return [Stale(_relative(path), "its stage table differs from grader/stages.toml", FIX["docs"])
            for path, text in _docs_texts().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


# ---------------------------------------------------------------- tests/expected/: the reference's outputs


def record_expected(stages: list[manifest.Stage], store: Path) -> None:
    """Run the visible suites of `stages` against solutions/, storing every probe's output under `store`."""
    with report.progress("recording the reference's outputs") as on_progress:
        run = runner.run(stages, "solutions", on_progress=on_progress,
                         extra=["--record-expected", f"--expected-store={store}"])
    if not run.ok:
        report.show_check(run, hidden=False)
        raise BuildError("the reference fails its own visible tests (above), so its outputs cannot be stored")


def _compare_stores(stages: list[manifest.Stage], recorded: Path, every_stage: bool) -> list[Stale]:
    found = []
    for stage in stages:
        new, old = expected.path_for(stage.id, recorded), expected.path_for(stage.id)
        fix = f"{FIX['expected']} {stage.id}"
        if not new.exists():
            if old.exists():
                found.append(Stale(_relative(old), "the visible suite no longer stores any output: delete it",
                                   "git rm " + _relative(old)))
        elif not old.exists():
            found.append(Stale(_relative(old), "missing", fix))
        elif new.read_bytes() != old.read_bytes():
            found.append(Stale(_relative(old), "differs from the reference's outputs recorded now", fix))
    if every_stage:
        known = {expected.path_for(s.id).name for s in manifest.stages()}
        found += [Stale(_relative(p), "belongs to no stage of grader/stages.toml: delete it", "git rm " + _relative(p))
                  for p in sorted(expected.STORE.glob("*.json.gz")) if p.name not in known]
    return found


def stale_expected(stages: list[manifest.Stage] | None = None) -> list[Stale]:
    """Record the reference's outputs into a temporary store and compare it with tests/expected/, byte for byte (the
    stores are deterministic: an unchanged stage records the same bytes)."""
    chosen = list(stages or manifest.stages())
    with tempfile.TemporaryDirectory(prefix="grader-expected-") as tmp:
        record_expected(chosen, Path(tmp))
        return _compare_stores(chosen, Path(tmp), stages is None)


def write_expected(stages: list[manifest.Stage] | None = None) -> list[str]:
    """Record into a temporary store, then replace only the stores that changed (none when the reference fails)."""
    chosen = list(stages or manifest.stages())
    written = []
    with tempfile.TemporaryDirectory(prefix="grader-expected-") as tmp:
        record_expected(chosen, Path(tmp))
        for stage in chosen:
            new, old = expected.path_for(stage.id, Path(tmp)), expected.path_for(stage.id)
            if new.exists() and (not old.exists() or new.read_bytes() != old.read_bytes()):
                old.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(new, old)
                written.append(_relative(old))
    return written


# ---------------------------------------------------------------- notebooks/


def _notebook_files() -> dict[Path, str]:
    from .. import notebooks  # nbformat and nbgrader: only when notebooks are asked for
    return notebooks.generate()


def stale_notebooks(files: dict[Path, str] | None = None) -> list[Stale]:
    from .. import notebooks
    return [Stale(_relative(path), "differs from its sources" if path.exists() else "missing", FIX["notebooks"])
            for path in notebooks.stale(_notebook_files() if files is None else files)]


# ---------------------------------------------------------------- the command


WHERE = {"exercises": "exercises/", "docs": "README.md, docs/README.md", "expected": "tests/expected/",
         "notebooks": "notebooks/"}
FAILURES = (BuildError, source.SourceError, ValueError, RuntimeError, OSError)  # a kind that cannot be generated


def _cannot(kind: str, error: Exception) -> Stale:
    return Stale(WHERE[kind], f"cannot be regenerated: {error}", FIX[kind])


def check(kinds: tuple[str, ...] = KINDS) -> list[Stale]:
    """Every stale derived file of these kinds; writes nothing. A kind that cannot be generated at all (a malformed
    source, a reference failing its own tests) is one entry saying why; the other kinds are still checked."""
    found = []
    for kind in kinds:
        try:
            found += {"exercises": stale_exercises, "docs": stale_docs, "expected": stale_expected,
                      "notebooks": stale_notebooks}[kind]()
        except FAILURES as error:
            found.append(_cannot(kind, error))
    return found


def _write_docs() -> list[str]:
    stale = [s.path for s in stale_docs()]
    docs.write()
    return stale


def _write_notebooks() -> list[str]:
    files, written = _notebook_files(), []
    for stale in stale_notebooks(files):
        path = ROOT / stale.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8", newline="\n")
        written.append(stale.path)
    return written


def build(kinds: tuple[str, ...] = KINDS, force: bool = False) -> tuple[list[str], list[Stale]]:
    """Regenerate the stale derived files of these kinds, in order (the notebooks read what comes before); return
    (written, failed: files left stale, each with the reason)."""
    written, failed = [], []
    for kind in kinds:
        try:
            if kind == "exercises":
                done, refused = write_exercises(force)
                written, failed = written + done, failed + refused
            else:
                written += {"docs": _write_docs, "expected": write_expected, "notebooks": _write_notebooks}[kind]()
        except FAILURES as error:
            failed.append(_cannot(kind, error))
    return written, failed


def cmd_build(args: argparse.Namespace) -> int:
    """Regenerate every derived file (exercises/, the stage tables, tests/expected/, notebooks/); --check: list them."""
    kinds = tuple(k for k in KINDS if k in (args.only or KINDS))
    if args.check:
        found = check(kinds)
        for stale in found:
            print(f"stale: {stale}")
        if found:
            print(f"{len(found)} derived file{'s are' if len(found) > 1 else ' is'} stale: run `python -m grader "
                  f"build` to regenerate {'them all' if len(found) > 1 else 'it'}", file=sys.stderr)
            return 1
        print(f"every derived file is up to date ({', '.join(kinds)})")
        return 0
    written, failed = build(kinds, args.force)
    for path in written:
        print(f"wrote {path}")
    for stale in failed:
        print(f"error: {stale.path}: {stale.why}", file=sys.stderr)
    if not written and not failed:
        print(f"every derived file was up to date ({', '.join(kinds)})")
    return 1 if failed else 0


def cmd_expected(args: argparse.Namespace) -> int:
    """Regenerate tests/expected/ from the reference (for the student release and Gradescope)."""
    stages = manifest.select(args.stages)
    try:
        written = write_expected(stages)
    except BuildError as error:
        print(f"error: {error}; nothing was written", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"the stored outputs of stages {', '.join(s.id for s in stages)} are up to date")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("build", help="instructors: regenerate every file derived from solutions/ and the "
                                               "manifest (exercises/, stage tables, tests/expected/, notebooks/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each stale file and the command that fixes it")
    parser.add_argument("--only", nargs="+", choices=KINDS, metavar="KIND",
                        help=f"only these kinds of derived file ({', '.join(KINDS)})")
    parser.add_argument("--force", action="store_true",
                        help="replace a stale exercises/ module even when a learner's function in it is filled in")
    parser.set_defaults(func=cmd_build)
    stored = commands.add_parser("expected", help="instructors: store the reference's outputs of the visible suites")
    stored.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    stored.set_defaults(func=cmd_expected)
