"""`python -m grader reveal STAGE`: the reference module of a stage, once your code passes that stage.

Reading the reference after you have made the tests pass shows another way to write what you already understand;
reading it before takes away the part where you work it out. So reveal checks the stage's visible suite first and
refuses while a test fails; `--force` shows it anyway, with a warning. A student release ships without solutions/,
and then there is nothing to reveal.
"""
from __future__ import annotations

import argparse
import sys

from .. import manifest, report, source
from ..manifest import ROOT
from ..suites import runner


def reveal(stage_id: str, target: str, force: bool, timeout: float) -> int:
    stage = manifest.stage(stage_id)
    reference = ROOT / "solutions" / f"{stage.module}.py"
    if not reference.exists():
        print(f"The reference for stage {stage.label} is not part of this kit: a student release ships without "
              f"solutions/. Ask your instructor, or compare notes with someone who has finished the stage.",
              file=sys.stderr)
        return 1
    if force:
        print(f"warning: revealing the reference for stage {stage.label} without checking your code. Reading it "
              f"before your own version passes takes away the part where you work it out.", file=sys.stderr)
    else:
        with report.progress(f"checking stage {stage.id}") as on_progress:
            run = runner.run([stage], target, on_progress=on_progress, timeout=timeout)
        result = run.stages[0]
        if not result.complete or run.error:
            failing = result.total() - result.passed()
            where = "" if target == "exercises" else f" --target {target}"
            print(f"Not yet: {failing} of {result.total()} tests of stage {stage.label} still fail"
                  + (f" ({run.error})" if run.error else "") + ".\n"
                  f"See them with: python -m grader check {stage.id}{where}\n"
                  f"The reference is revealed once they all pass (or now, with --force).", file=sys.stderr)
            return 1
        print(f"# Stage {stage.label} passes. The reference, {reference.relative_to(ROOT)}:", file=sys.stderr)
    sys.stdout.write(source.reference(reference.read_text(encoding="utf-8")))
    return 0


def cmd_reveal(args: argparse.Namespace) -> int:
    return reveal(args.stage, args.target, args.force, args.timeout)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("reveal", help="show a stage's reference module once your code passes the stage")
    parser.add_argument("stage", metavar="STAGE", help="a stage id such as 01")
    parser.add_argument("--force", action="store_true", help="reveal it even though the stage does not pass yet")
    parser.add_argument("--target", default=argparse.SUPPRESS,
                        help="exercises (default), or a path to a copy of exercises/")
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the check after this many seconds")
    parser.set_defaults(func=cmd_reveal)
