"""Instructors' derived-file commands: `python -m grader expected` stores the reference's outputs of the visible suites."""
from __future__ import annotations

import argparse
import sys

from .. import report
from ..learner.progress import select_stages
from ..suites import runner


def cmd_expected(args: argparse.Namespace) -> int:
    """Regenerate tests/expected/ from the reference (for the student release and Gradescope)."""
    stages = select_stages(args.stages)
    with report.progress("recording expected outputs") as on_progress:
        run = runner.run(stages, "solutions", on_progress=on_progress, extra=["--record-expected"])
    if not run.ok:
        report.show_check(run, hidden=False)
        print("error: the reference fails its own visible tests; nothing was written", file=sys.stderr)
        return 1
    print(f"wrote tests/expected/ for stages {', '.join(s.id for s in stages)}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    expected = commands.add_parser("expected", help="instructors: store the reference's outputs of the visible suites")
    expected.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    expected.set_defaults(func=cmd_expected)
