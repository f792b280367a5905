"""The learner's progress and checks: `python -m grader` (the table, what next) and `python -m grader check`."""
from __future__ import annotations

import argparse
import json

from .. import manifest, report
from ..suites import runner


def select_stages(ids: list[str]) -> list[manifest.Stage]:
    """The stages named by id ('3' or '03'), or every stage when none is named."""
    return [manifest.stage(i) for i in ids] if ids else list(manifest.stages())


def cmd_progress(args: argparse.Namespace) -> int:
    """The default command: the table of stages, the next stage, its first failure and hint. Always exits 0."""
    with report.progress("checking your stages") as on_progress:
        run = runner.run(manifest.stages(), args.target, hidden=False, on_progress=on_progress, timeout=args.timeout)
    report.show_progress(run)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the named stages' suites; exit 1 when any test fails (or the run did not finish)."""
    stages = select_stages(args.stages)
    with report.progress("running suites") as on_progress:
        run = runner.run(stages, args.target, hidden=args.hidden,
                         on_progress=None if args.json else on_progress, timeout=args.timeout)
    if args.json:
        print(json.dumps(report.as_json(run), indent=2))
    else:
        report.show_check(run, args.hidden)
    return 0 if run.ok else 1


def register(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check", help="run stage suites and print each test's outcome")
    check.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids such as 01 03 (default: all)")
    check.add_argument("--target", default=argparse.SUPPRESS,
                       help="exercises (default), solutions, or a path to a copy of exercises/")
    check.add_argument("--hidden", action="store_true", help="include the hidden suites (instructors)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the run after this many seconds")
    check.set_defaults(func=cmd_check)
