"""`python -m grader hint [STAGE]`: the next hint for the first failing concept, one step at a time.

A failure says what was expected and what came; a hint is there when you ask for it, as in rustlings. Each call gives
the next step for the concept of the first failing test of the stage (the current stage when none is named):

    1  a nudge: which convention the test checks and which of your functions to look at again, with its docstring;
    2  the section of the stage's page that explains it;
    3  the manifest's hint, which often states the formula.

The step reached per concept is kept in .grader/hints.json beside your exercises (delete the file to start again).
A manifest hint may also be a list of steps of its own (grader/stages.toml), which are then given in turn.
Instructors turn hints off for a course with `hints = false` at the top of grader/stages.toml (docs/instructors.md).
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

from .. import manifest, report
from ..manifest import MANIFEST, ROOT, Stage
from ..suites import runner, targets
from . import cache, functions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

STEPS_FILE = "hints.json"
SEE = re.compile(r"See (docs/[\w./-]+\.md)(?:,\s*(.+?))?\.?\s*$")
IMPORT_ERRORS = ("SyntaxError", "IndentationError", "TabError", "ImportError", "ModuleNotFoundError")


def enabled() -> bool:
    """False when the manifest says `hints = false` (a course that withholds hints)."""
    try:
        with open(MANIFEST, "rb") as f:
            return tomllib.load(f).get("hints", True) is not False
    except (OSError, tomllib.TOMLDecodeError):
        return True


def does_not_import(test: runner.TestResult) -> bool:
    """The failure is the module failing to import (no concept's hint can help with that)."""
    where = getattr(test, "where", None) or {}
    return where.get("kind") == "import" or test.message.split(":")[0].strip() in IMPORT_ERRORS


def _section(doc: str, reference: str | None) -> tuple[int, str] | None:
    """(line, heading) of the part of `doc` a hint refers to: 'section 2', 'sections 1 and 9', "'Modules'"."""
    path = ROOT / doc
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    headings = [(i + 1, line.lstrip("#").strip()) for i, line in enumerate(lines) if line.startswith("## ")]
    if not reference:
        return None
    number = re.search(r"sections?\s+(\d+)", reference)
    if number:
        return next(((line, text) for line, text in headings if text.startswith(f"{number.group(1)}.")), None)
    named = re.search(r"['\"‘“]([^'\"’”]+)['\"’”]", reference)
    wanted = (named.group(1) if named else reference).strip().lower()
    return next(((line, text) for line, text in headings if wanted in text.lower()), None)


def _defined_at(folder: Path, stage: Stage) -> dict[str, int]:
    """Line of each function and method in the learner's module (empty when it does not parse)."""
    from ..source import functions as functions_of
    try:
        tree = ast.parse((folder / f"{stage.module}.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    return {name: node.lineno for name, node in functions_of(tree)}


def focus(stage: Stage, test: runner.TestResult) -> list[str]:
    """The learner functions a failing test is most about: where it raised, the stub it hit, or the functions every
    test of its concept exercises."""
    where = getattr(test, "where", None) or {}
    if where.get("function"):
        return [where["function"]]
    stub = re.search(r"\): ([\w.<>]+) -- still a stub", test.message)
    if stub:
        return [stub.group(1)]
    of_concept = [t.functions for t in functions.tests(stage) if test.concept and t.concept == test.concept]
    common = set.intersection(*map(set, of_concept)) if of_concept else set()
    found = functions.test_named(stage, test.name)
    ordered = found.functions if found else ()
    return [f for f in ordered if f in common] or list(ordered)


def steps(stage: Stage, test: runner.TestResult, folder: Path) -> list[str]:
    """The hint steps for the concept of a failing test, mildest first."""
    concept = test.concept
    written = stage.hints.get(concept) if concept else None
    if isinstance(written, list):
        return [str(step) for step in written]
    module = folder / f"{stage.module}.py"
    shown = report.shown_path(module)
    lines = _defined_at(folder, stage)
    names = focus(stage, test)[:4]
    places = ", ".join(f"{name} ({shown}:{lines[name]})" if name in lines else name for name in names)
    about = f"checks {concept.replace('-', ' ')}" if concept else "fails"
    if "still a stub" in test.message:
        nudge = (f"{test.name} {about}, and it needs {places or shown}, which is still a stub: write it first. Its "
                 f"docstring says what it takes, what it returns and which conventions the tests check.")
    else:
        nudge = (f"{test.name} {about}. Look again at {places or shown}: the docstring states the convention the "
                 f"test holds you to. Compare it, line by line, with what your code does on the test's input (the "
                 f"failure shows it).")
    found = SEE.search(written or "")
    doc, reference = (found.group(1), found.group(2)) if found else (stage.doc, None)
    section = _section(doc, reference)
    page = (f"Read {doc}:{section[0]}, the section '{section[1]}': it works through exactly this." if section
            else f"Read {doc}" + (f", {reference}" if reference else "") + ": it works through exactly this.")
    result = [nudge, page]
    if written:
        result.append(str(written))
    return result


class Steps:
    """How far each concept's hints have gone: .grader/hints.json, {"01/tokenizer": 2}."""

    def __init__(self, folder: Path):
        self.path = cache.state_dir(folder) / STEPS_FILE
        self.reached = cache.read_json(self.path)

    def next(self, key: str, available: int) -> int:
        """The step to give now (1-based), remembered; the last one repeats."""
        step = min(int(self.reached.get(key, 0)) + 1, available)
        self.reached[key] = step
        try:
            cache.write_json_atomically(self.path, self.reached)
        except OSError:
            pass
        return step


def hint(stage_id: str | None, target: str, timeout: float) -> int:
    if not enabled():
        report.say("Hints are turned off for this course. Each failure says what was expected and what came, and the "
                   "stage's page in docs/ explains every convention the tests check.")
        return 0
    folder = targets.resolve(target)
    stages = [manifest.stage(stage_id)] if stage_id else list(manifest.stages())
    with report.progress("checking") as on_progress:
        run = cache.run(stages, target, on_progress=on_progress, timeout=timeout)
    result = next((r for r in run.stages if not r.complete), None)
    if result is None:
        report.say(f"Stage {stages[0].label} passes: no hint needed." if stage_id else
                   "Every stage passes: no hint needed.", "bold green")
        return 0
    stage = result.stage
    failing = [t for t in result.tests if not t.passed and t.outcome != "skipped"]
    if not failing:
        report.say(f"Stage {stage.label} did not finish: {run.error}", "bold red")
        return 1
    first = failing[0]
    if does_not_import(first):
        report.say(f"{report.shown_path(folder / f'{stage.module}.py')} does not import, so no test of stage "
                   f"{stage.id} could run. Fix this first (no hint needed: the message says what and where):", "bold")
        report.say(report.indent(first.message))
        return 0
    with_concept = next((t for t in failing if t.concept), first)
    texts = steps(stage, with_concept, folder)
    step = Steps(folder).next(f"{stage.id}/{with_concept.concept or with_concept.name}", len(texts))
    concept = f"'{with_concept.concept}'" if with_concept.concept else with_concept.name
    report.say(f"Hint {step} of {len(texts)} for stage {stage.label}, {concept} "
               f"(first failing test: {with_concept.name})", "bold")
    report.say(report.indent(texts[step - 1], lines=40), "cyan")
    if step < len(texts):
        report.say(f"\nStill stuck? `python -m grader hint{' ' + stage_id if stage_id else ''}` again gives the "
                   f"next step.")
    else:
        report.say(f"\nThat is the last hint for {concept}. Once the stage passes, `python -m grader reveal {stage.id}` "
                   f"shows the reference.")
    return 0


def cmd_hint(args: argparse.Namespace) -> int:
    return hint(args.stage, args.target, args.timeout)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("hint", help="the next hint for the first failing test (a nudge, then the page, "
                                              "then the formula)")
    parser.add_argument("stage", nargs="?", default=None, metavar="STAGE",
                        help="a stage id such as 01 (default: your current stage)")
    parser.add_argument("--target", default=argparse.SUPPRESS,
                        help="exercises (default), or a path to a copy of exercises/")
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the check after this many seconds")
    parser.set_defaults(func=cmd_hint)
