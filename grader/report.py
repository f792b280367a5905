"""What the grader prints: a progress table, the next step, per-test outcomes. Rich on a terminal, plain text otherwise."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .suites.runner import Progress, Run, StageResult, TestResult

BAR_WIDTH = 20


def fancy() -> bool:
    """Colour and live bars only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else 0
    return "#" * filled + "." * (width - filled)


def indent(text: str, prefix: str = "    ", lines: int = 12) -> str:
    kept = text.strip().splitlines()
    shown = kept[:lines] + (["..."] if len(kept) > lines else [])
    return "\n".join(prefix + line for line in shown)


def shown_path(path: Path) -> str:
    """A path as the learner would type it: relative to where they are when it is below, absolute otherwise."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _print(text: str = "", style: str | None = None) -> None:
    if fancy():
        from rich.console import Console
        from rich.markup import escape
        Console(highlight=False).print(f"[{style}]{escape(text)}[/]" if style else escape(text))
    else:
        print(text)


def say(text: str = "", style: str | None = None) -> None:
    """One line, styled on a terminal and plain otherwise: for the commands that live in files of their own."""
    _print(text, style)


@contextmanager
def progress(description: str) -> Iterator[Progress]:
    """A live progress bar on a terminal; silent otherwise. Yields the callback the runner calls."""
    if not fancy():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
    with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as bars:
        task = bars.add_task(description, total=None)
        yield lambda done, total: bars.update(task, completed=done, total=total or None)


def _stage_table(run: Run, hidden: bool) -> None:
    rows = []
    for result in run.stages:
        done, total = result.passed(), result.total()
        percent = f"{100 * done / total:3.0f}%" if total else "  --"
        rows.append((result.stage.label, f"{done}/{total}", f"{result.points():g}/{result.max_points():g}",
                     bar(done, total), percent, result.complete))
    if fancy():
        from rich.console import Console
        from rich.table import Table
        table = Table(title=f"Stages (target: {run.target}{', hidden included' if hidden else ''})",
                      title_justify="left")
        for column in ("Stage", "Tests", "Points", "Progress", ""):
            table.add_column(column)
        for label, tests, points, progress_bar, percent, complete in rows:
            colour = "green" if complete else ("yellow" if not progress_bar.startswith(".") else "white")
            table.add_row(label, tests, points, f"[{colour}]{progress_bar}[/]", percent)
        Console(highlight=False).print(table)
        return
    print(f"Stages (target: {run.target}{', hidden included' if hidden else ''})")
    width = max(len(r[0]) for r in rows) if rows else 10
    for label, tests, points, progress_bar, percent, _ in rows:
        print(f"  {label:<{width}}  {tests:>7}  {points:>11}  [{progress_bar}] {percent}")


def _failure(test: TestResult) -> None:
    _print(f"  FAIL {test.name}" + (" (hidden)" if test.hidden else ""), "bold red")
    _print(indent(test.message or test.details or "(no message)"))


def import_failure(result: StageResult) -> TestResult | None:
    """The failure every test of the stage shares because its module does not import (None otherwise)."""
    failed = [t for t in result.tests if not t.passed]
    if not failed or len(failed) != result.total():
        return None
    kinds = {(t.where or {}).get("kind") for t in failed}
    return failed[0] if kinds == {"import"} and len({t.message for t in failed}) == 1 else None


def show_progress(run: Run) -> None:
    """The learner's view: the table, then what to do next."""
    _stage_table(run, hidden=False)
    if run.error:
        _print(f"\nThe run did not finish: {run.error}", "bold red")
    following = next((r for r in run.stages if not r.complete), None)
    if following is None:
        _print("\nEvery stage passes. Well done.", "bold green")
        return
    show_next(following)
    _print(f"\nSee every test of this stage: python -m grader check {following.stage.id}")


def show_next(result: StageResult, open_path: str | None = None) -> None:
    """An unfinished stage: the file to open, the page to read, its first failing test (hints come on request)."""
    stage = result.stage
    _print(f"\nNext: stage {stage.label}", "bold")
    _print(f"  open  {open_path or stage.exercise_file}")
    _print(f"  read  {stage.doc}")
    first = result.first_failure()
    if first is not None:
        _print(f"\nFirst failing test ({result.passed()}/{result.total()} pass):")
        _failure(first)
        from .learner import hint
        if hint.enabled() and not hint.does_not_import(first):
            _print(f"\nStuck? python -m grader hint {stage.id}  (a nudge first; ask again for more)", "dim")


def show_check(run: Run, hidden: bool, covered: str | None = None) -> None:
    """Every test's outcome per stage, failures with their message, then the table (not for a run of some tests:
    `covered` says which, e.g. 'the tests of CharTokenizer.encode')."""
    for result in run.stages:
        of = f", {covered}" if covered else ""
        _print(f"\nStage {result.stage.label}{of}: {result.passed()}/{result.total()} passed", "bold")
        broken = import_failure(result)
        if broken is not None:  # one message, not one per test
            _print(f"  FAIL all {result.total()} tests: the module does not import", "bold red")
            _print(indent(broken.message))
            continue
        for test in result.tests:
            if test.passed:
                _print(f"  ok   {test.name}" + (" (hidden)" if test.hidden else ""), "green")
            elif test.outcome == "skipped":
                _print(f"  skip {test.name}: {test.message}", "yellow")
            else:
                _failure(test)
        if covered and not result.tests:
            _print("  no test matched", "yellow")
    print()
    if not covered:
        _stage_table(run, hidden)
    if run.error:
        _print(f"\nThe run did not finish: {run.error}", "bold red")


def as_json(run: Run) -> dict:
    return {
        "target": run.target,
        "ok": run.ok,
        "error": run.error,
        "stages": [result.summary() for result in run.stages],
    }

