"""`python -m grader classroom OUT_DIR`: the workflow GitHub Classroom's autograding runs, for a repository made from
the student kit (`python -m grader release`).

OUT_DIR/.github/workflows/classroom.yml holds one test per stage, run by GitHub Classroom's command grader
(classroom-resources/autograding-command-grader): `python -m grader check NN --fresh` on the student's exercises/,
the stage's visible suite judged with the kit's stored expected outputs, worth the manifest's visible points of that
stage when every test passes (that grader awards all or nothing for a command). The reporter step
(classroom-resources/autograding-grading-reporter) then sends the points to GitHub Classroom. Hidden suites never
reach a student's repository: grade them with `python -m grader grade --hidden` on the repositories' contents.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import manifest
from ..manifest import Stage

WORKFLOW = Path(".github") / "workflows" / "classroom.yml"
COMMAND_GRADER = "classroom-resources/autograding-command-grader@v1"
REPORTER = "classroom-resources/autograding-grading-reporter@v1"
PYTHON = "3.11"
TIMEOUT_MINUTES = 10  # per stage; an honest stage's visible suite takes seconds


def step_id(stage: Stage) -> str:
    return f"stage-{stage.id}"


def command(stage: Stage) -> str:
    """What the step runs: exit 0 exactly when every visible test of the stage passes on exercises/."""
    return f"python -m grader check {stage.id} --fresh"


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def workflow(stages: list[Stage]) -> str:
    """The text of classroom.yml for these stages."""
    lines = [
        "# GitHub Classroom autograding, written by `python -m grader classroom` from grader/stages.toml: one test",
        "# per stage (its visible suite, all or nothing, worth the stage's visible points). Regenerate, do not edit.",
        "name: Autograding Tests",
        "'on':",
        "  - push",
        "  - repository_dispatch",
        "permissions:",
        "  checks: write",
        "  actions: read",
        "  contents: read",
        "jobs:",
        "  run-autograding-tests:",
        "    runs-on: ubuntu-latest",
        "    if: github.actor != 'github-classroom[bot]'",
        "    steps:",
        "      - name: Checkout code",
        "        uses: actions/checkout@v4",
        "      - name: Set up Python",
        "        uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {_quoted(PYTHON)}",
        "      - name: Install the requirements",
        "        run: python -m pip install -r requirements.txt",
    ]
    for stage in stages:
        lines += [
            f"      - name: {_quoted(f'Stage {stage.id}: {stage.title}')}",
            f"        id: {step_id(stage)}",
            f"        uses: {COMMAND_GRADER}",
            "        with:",
            f"          test-name: {_quoted(f'Stage {stage.id}: {stage.title}')}",
            "          setup-command: ''",
            f"          command: {_quoted(command(stage))}",
            f"          timeout: {TIMEOUT_MINUTES}",
            f"          max-score: {stage.visible_points:g}",
        ]
    lines += [
        "      - name: Autograding Reporter",
        f"        uses: {REPORTER}",
        "        env:",
        *(f"          {step_id(s).upper()}_RESULTS: \"${{{{steps.{step_id(s)}.outputs.result}}}}\"" for s in stages),
        "        with:",
        f"          runners: {','.join(step_id(s) for s in stages)}",
    ]
    return "\n".join(lines) + "\n"


def write(out: Path, stages: list[Stage]) -> Path:
    path = Path(out) / WORKFLOW
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(workflow(stages), encoding="utf-8", newline="\n")
    return path


def cmd_classroom(args: argparse.Namespace) -> int:
    """Write OUT_DIR/.github/workflows/classroom.yml."""
    try:
        stages = manifest.select(args.stages)
    except KeyError as error:  # an unknown stage id: the message lists the stages
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    path = write(Path(args.out), stages)
    total = sum(s.visible_points for s in stages)
    print(f"wrote {path}: {len(stages)} tests, {total:g} points (visible suites; each stage all or nothing)")
    print("Put it in the template repository made from the student kit (`python -m grader release`).")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("classroom", help="instructors: write GitHub Classroom's autograding workflow")
    parser.add_argument("out", metavar="OUT_DIR", help="the template repository (or any folder) to write into")
    parser.add_argument("--stages", nargs="+", default=[], metavar="STAGE", help="stage ids (default: all)")
    parser.set_defaults(func=cmd_classroom)
