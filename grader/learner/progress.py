"""The learner's progress and checks: `python -m grader` (the table, what next) and `python -m grader check`."""
from __future__ import annotations

import argparse
import json

from .. import manifest, report
from ..suites import runner
from . import cache


def select_stages(ids: list[str]) -> list[manifest.Stage]:
    """The stages named by id ('3' or '03'), or every stage when none is named."""
    return [manifest.stage(i) for i in ids] if ids else list(manifest.stages())


def cmd_progress(args: argparse.Namespace) -> int:
    """The default command: the table of stages, the next stage and its first failure. Always exits 0.

    Stages whose inputs did not change since their last check answer from the cache (grader/learner/cache.py)."""
    with report.progress("checking your stages") as on_progress:
        run = cache.run(manifest.stages(), args.target, on_progress=on_progress, timeout=args.timeout,
                        fresh=getattr(args, "fresh", False))
    report.show_progress(run)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the named stages' suites; exit 1 when any test fails (or the run did not finish)."""
    stages = select_stages(args.stages)
    with report.progress("running suites") as on_progress:
        shown = None if args.json else on_progress
        if args.hidden:  # instructors: never cached
            run = runner.run(stages, args.target, hidden=True, on_progress=shown, timeout=args.timeout)
        else:
            run = cache.run(stages, args.target, on_progress=shown, timeout=args.timeout, fresh=args.fresh)
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
    check.add_argument("--fresh", action="store_true", help="run every named stage again, even if nothing changed")
    check.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the run after this many seconds")
    check.set_defaults(func=cmd_check)
