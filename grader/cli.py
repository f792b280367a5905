"""`python -m grader [COMMAND]`: the learner's progress and checks (instructor commands build on the same runner)."""
from __future__ import annotations

import argparse
import json
import sys

from . import manifest, report, runner, targets


def _stages(ids: list[str]) -> list[manifest.Stage]:
    return [manifest.stage(i) for i in ids] if ids else list(manifest.stages())


def cmd_progress(args: argparse.Namespace) -> int:
    """The default command: the table of stages, the next stage, its first failure and hint. Always exits 0."""
    with report.progress("checking your stages") as on_progress:
        run = runner.run(manifest.stages(), args.target, hidden=False, on_progress=on_progress, timeout=args.timeout)
    report.show_progress(run)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the named stages' suites; exit 1 when any test fails (or the run did not finish)."""
    stages = _stages(args.stages)
    with report.progress("running suites") as on_progress:
        run = runner.run(stages, args.target, hidden=args.hidden,
                         on_progress=None if args.json else on_progress, timeout=args.timeout)
    if args.json:
        print(json.dumps(report.as_json(run), indent=2))
    else:
        report.show_check(run, args.hidden)
    return 0 if run.ok else 1


def cmd_docs(args: argparse.Namespace) -> int:
    """Regenerate docs/README.md (the index of stage pages) and README.md's stage table from the manifest."""
    from . import docs
    print(f"wrote {', '.join(docs.write())}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade submissions into --out: gradebook.csv, feedback/<name>.md, results/<name>.json, summary.json."""
    from pathlib import Path

    from . import grade
    options = grade.Options(out=Path(args.out), hidden=args.hidden, jobs=args.jobs, timeout=args.probe_timeout,
                            memory_mb=args.memory, force=args.force)
    paths = [Path(p) for p in args.submissions]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    with report.progress("grading submissions") as on_progress:
        summary = grade.grade(paths, options, on_progress)
    for entry in summary["submissions"]:
        note = f"  ({entry['problem']})" if entry["problem"] else ""
        print(f"{entry['submission']}: {entry['points']:g} / {entry['max_points']:g}{note}")
    if summary["skipped"]:
        print(f"already graded, skipped (use --force to grade again): {', '.join(summary['skipped'])}")
    print(f"wrote {options.out / 'gradebook.csv'}, {options.out / 'summary.json'}, feedback/ and results/")
    return 0


def cmd_expected(args: argparse.Namespace) -> int:
    """Regenerate tests/expected/ from the reference (for the student release and Gradescope)."""
    stages = _stages(args.stages)
    with report.progress("recording expected outputs") as on_progress:
        run = runner.run(stages, "solutions", on_progress=on_progress, extra=["--record-expected"])
    if not run.ok:
        report.show_check(run, hidden=False)
        print("error: the reference fails its own visible tests; nothing was written", file=sys.stderr)
        return 1
    print(f"wrote tests/expected/ for stages {', '.join(s.id for s in stages)}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Build the student kit: no solutions, no hidden tests; visible tests judged by stored outputs."""
    from pathlib import Path

    from . import release
    out = release.build(Path(args.out))
    found = release.leaks(out)
    if found:
        print("error: the release leaks the reference:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    print(f"wrote the student release to {out} (checked: no solution body, no hidden test)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grader",
        description="Your progress through the workbook (no command), or run the stage suites (check).")
    parser.add_argument("--target", default="exercises",
                        help="exercises (default), solutions, or a path to a copy of exercises/")
    parser.add_argument("--timeout", type=float, default=600, help="stop a run after this many seconds (default 600)")
    parser.set_defaults(func=cmd_progress)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = commands.add_parser("check", help="run stage suites and print each test's outcome")
    check.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids such as 01 03 (default: all)")
    check.add_argument("--target", default=argparse.SUPPRESS,
                       help="exercises (default), solutions, or a path to a copy of exercises/")
    check.add_argument("--hidden", action="store_true", help="include the hidden suites (instructors)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="stop the run after this many seconds")
    check.set_defaults(func=cmd_check)

    grade = commands.add_parser("grade", help="instructors: grade submissions in sandboxed workers")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="folders or .zip files")
    grade.add_argument("--out", required=True, help="folder for gradebook.csv, feedback/, results/, summary.json")
    grade.add_argument("--hidden", action="store_true", help="include the hidden suites")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--timeout", dest="probe_timeout", type=float, default=60.0,
                       help="seconds one probe call may take (default 60)")
    grade.add_argument("--memory", type=int, default=4096, help="MB of address space for submission code")
    grade.add_argument("--force", action="store_true", help="grade again submissions already graded")
    grade.set_defaults(func=cmd_grade)

    expected = commands.add_parser("expected", help="instructors: store the reference's outputs of the visible suites")
    expected.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    expected.set_defaults(func=cmd_expected)

    release = commands.add_parser("release", help="instructors: build the student kit into OUT_DIR")
    release.add_argument("out", metavar="OUT_DIR")
    release.set_defaults(func=cmd_release)

    commands.add_parser("docs", help="regenerate docs/README.md and README.md's stage table from the manifest").set_defaults(func=cmd_docs)

    # command modules that live in files of their own register here: module.register(commands)
    from . import gradescope, notebooks, reveal, watch
    for module in (watch, reveal, gradescope, notebooks):
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
