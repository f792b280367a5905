"""The learner's progress and checks: `python -m grader` (the table, what next) and `python -m grader check`."""
from __future__ import annotations

import argparse
import json

from .. import manifest, report
from ..manifest import ROOT
from ..suites import runner
from . import cache, functions, pristine


def cmd_progress(args: argparse.Namespace) -> int:
    """The default command: the table of stages, the next stage and its first failure. Always exits 0.

    Stages whose inputs did not change since their last check answer from the cache (grader/learner/cache.py)."""
    with report.progress("checking your stages") as on_progress:
        run = cache.run(manifest.stages(), args.target, on_progress=on_progress, timeout=args.timeout,
                        fresh=getattr(args, "fresh", False))
    report.show_progress(run)
    return 0


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """`check 01 encode`: the stage ids (digits) and the function names among the positional arguments."""
    ids = [n for n in names if n.isdigit()]
    return ids, [n for n in names if not n.isdigit()]


def one_function_run(stage: manifest.Stage, names: list[str], target: str, on_progress, timeout: float,
                     keyword: str | None) -> tuple[runner.Run, str]:
    """The tests of the named functions of one stage (and of `-k`), never cached: (the run, what it covered)."""
    wanted = []
    for name in names:
        found = functions.matching(stage, name)
        if not found:
            raise ValueError(f"stage {stage.id} has no function {name!r} for you to write; its functions are: "
                             f"{', '.join(pristine.learner_functions(stage))}")
        wanted += found
    tests = functions.tests_of(stage, wanted) if wanted else []
    select = list(dict.fromkeys(f"{t.path.relative_to(ROOT).as_posix()}::{t.name}" for t in tests))  # file order
    keywords = [keyword] if keyword else []
    if wanted and not select:  # no test names it (a helper the tests reach only through others): match by name
        keywords.append(" or ".join(name.split(".")[-1] for name in wanted))
    extra = ["-k", " and ".join(f"({k})" for k in keywords)] if keywords else []
    what = "the tests" + (f" of {', '.join(wanted)}" if wanted else "") + (f" matching -k {keyword!r}" if keyword
                                                                             else "")
    run = runner.run([stage], target, on_progress=on_progress, timeout=timeout, extra=extra,
                     select=select if wanted else ())
    return run, what


def cmd_check(args: argparse.Namespace) -> int:
    """Run the named stages' suites (or the tests of one function); exit 1 when any test fails (or the run did not
    finish). The visible suites answer from the cache where nothing changed (--fresh runs them anyway)."""
    ids, names = split_names(args.stages)
    stages = manifest.select(ids)
    partial = bool(names or args.keyword)
    if partial and len(stages) != 1:
        raise ValueError("name one stage to check one function's tests: python -m grader check 01 encode")
    covered = None
    with report.progress("running suites") as on_progress:
        shown = None if args.json else on_progress
        if partial:
            run, covered = one_function_run(stages[0], names, args.target, shown, args.timeout, args.keyword)
        elif args.hidden:  # instructors: never cached
            run = runner.run(stages, args.target, hidden=True, on_progress=shown, timeout=args.timeout)
        else:
            run = cache.run(stages, args.target, on_progress=shown, timeout=args.timeout, fresh=args.fresh)
    if args.json:
        print(json.dumps(report.as_json(run), indent=2))
    else:
        report.show_check(run, args.hidden, covered)
    return 0 if run.ok else 1


def register(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check", help="run stage suites and print each test's outcome")
    check.add_argument("stages", nargs="*", metavar="STAGE [FUNCTION]",
                       help="stage ids such as 01 03 (default: all); after one stage, a function's name (encode, "
                            "CharTokenizer.encode) runs only the tests of that function")
    check.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                       help="only the tests whose names match EXPR (pytest's -k), e.g. -k 'split and not leak'")
    check.add_argument("--target", default=argparse.SUPPRESS,
                       help="exercises (default), solutions, or a path to a copy of exercises/")
    check.add_argument("--hidden", action="store_true", help="include the hidden suites (instructors)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.add_argument("--fresh", action="store_true", help="run every named stage again, even if nothing changed")
    check.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the run after this many seconds")
    check.set_defaults(func=cmd_check)
