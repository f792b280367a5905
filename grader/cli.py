"""`python -m grader [COMMAND]`: one entry for every command; each command lives in the module of the people who use it.

    learner      grader/learner/     progress (no command), check, watch, hint, reset, reveal, submit
    instructor   grader/instructor/  grade, release, gradescope, expected, docs, site, figures,
                                     mutants; grader/notebooks/:
                                     notebooks, nbgrader-course
Each of those modules has `register(commands)`, which adds its sub-commands; nothing here imports the sandbox.
"""
from __future__ import annotations

import argparse
import sys

from . import manifest
from .learner import hint, progress, reset, reveal, submit, watch
from .suites import targets

LEARNER = (progress, watch, hint, reset, reveal, submit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grader",
        description="Your progress through the workbook (no command), or run the stage suites (check).")
    parser.add_argument("--target", default="exercises",
                        help="exercises (default), solutions, or a path to a copy of exercises/")
    parser.add_argument("--timeout", type=float, default=600, help="stop a run after this many seconds (default 600)")
    parser.add_argument("--fresh", action="store_true",
                        help="run every stage again instead of answering unchanged ones from .grader/")
    parser.set_defaults(func=progress.cmd_progress)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    from . import notebooks
    from .instructor import build, classroom, docs, grade, gradescope, mutants, release, site
    for module in (*LEARNER, grade, build, release, docs, gradescope, classroom, mutants, notebooks, site):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (targets.TargetError, manifest.ManifestError, KeyError, RuntimeError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
