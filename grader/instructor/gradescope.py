"""Gradescope: `python -m grader gradescope OUT.zip` builds the autograder; `python -m grader.instructor.gradescope run` grades.

The zip holds setup.sh and run_autograder at its root beside the trusted kit (the tracked files of grader/, tests/
with the hidden suites, solutions/, requirements.txt and pyproject.toml; exercises/ generated from solutions/, never
the working copy) and gradescope.json, which fixes the stages and the visibility of the hidden tests. On Gradescope
the kit lands in /autograder/source and each submission in /autograder/submission; run_autograder grades it with
grade.grade_one (sandboxed workers, hidden suites included) and always leaves /autograder/results/results.json behind,
even when the grader itself fails. AUTOGRADER_ROOT replaces /autograder, so the whole round trip runs in a test.

results.json follows https://gradescope-autograders.readthedocs.io/en/latest/specs/: `score`, `execution_time`,
`output`, and `tests[]` of {name, score, max_score, status, output, visibility, number, tags}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from .. import manifest, sandbox
from ..manifest import ROOT
from . import build as derived
from ..suites import scoring
from . import grade, release

CONFIG = "gradescope.json"
VISIBILITIES = ("after_due_date", "hidden", "visible", "after_published")
KIT = ("grader", "tests", "solutions", "requirements.txt", "pyproject.toml")  # and exercises/, generated
SHOWN = {"after_due_date": "after the due date", "hidden": "to instructors only",
         "after_published": "once grades are published"}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image.
set -euo pipefail
SOURCE="${AUTOGRADER_ROOT:-/autograder}/source"
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-pip
fi
# Newer Ubuntu images mark the system Python as externally managed; the image is ours alone, so install anyway.
python3 -m pip install -r "$SOURCE/requirements.txt" || \\
    python3 -m pip install --break-system-packages -r "$SOURCE/requirements.txt"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission. The grade is results.json, never this script's exit code.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
mkdir -p "$ROOT/results"
cd "$ROOT/source" && PYTHONPATH="$ROOT/source" python3 -m grader.instructor.gradescope run --root "$ROOT"
# The Python side always writes results.json; this covers a Python that cannot start at all.
if [ ! -s "$ROOT/results/results.json" ]; then
    echo '{"score": 0, "output": "The autograder could not start (see its log); this is not a verdict on your code. Please tell your instructor.", "tests": []}' > "$ROOT/results/results.json"
fi
exit 0
"""


def _kit_files() -> list[tuple[Path, str]]:
    """(file, name in the zip) for the trusted kit: the files the repository tracks (release.known_files: no
    untracked file, no cache), not the grader's own self-tests. exercises/ is added apart, generated from solutions/."""
    return [(ROOT / name, name) for name in release.known_files(KIT) if not name.startswith("tests/grader/")]


def _add(archive: zipfile.ZipFile, name: str, text: str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions once unpacked
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def build(out: Path, stages: list[str], hidden_visibility: str = "after_due_date") -> Path:
    """Write the autograder zip for `stages` (default: every stage) to `out`, replacing it atomically."""
    chosen = [manifest.stage(s) for s in stages] if stages else list(manifest.stages())
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"hidden visibility must be one of {', '.join(VISIBILITIES)}, not {hidden_visibility!r}")
    config = {"stages": [s.id for s in chosen], "hidden_visibility": hidden_visibility}
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(handle)
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "setup.sh", SETUP_SH, 0o755)  # Gradescope runs both scripts directly
        _add(archive, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(archive, CONFIG, json.dumps(config, indent=1) + "\n")
        for path, name in _kit_files():
            archive.write(path, name)
        for name, text in derived.exercise_texts().items():  # the skeleton from the source, never the working copy
            _add(archive, name, text)
    os.replace(temporary, out)
    return out


def results(graded: dict, hidden_visibility: str, seconds: float) -> dict:
    """grade_one's result as Gradescope's results.json: one entry per test, each worth its share of its suite."""
    tests, lines = [], []
    if graded.get("problem"):
        lines += [f"This submission could not be graded: {graded['problem']}",
                  "Upload your stage modules (the files of your exercises/ folder, e.g. ngram.py), or the folder "
                  "itself, or a zip of it.", ""]
    if graded.get("refused"):
        lines += ["Not graded (only regular files are; links, special files, over-long names and deep folders are "
                  "refused):", *grade.refusals(graded), ""]
    for entry in graded["stages"]:
        stage = manifest.stage(entry["stage"])
        earned = entry["visible_points"] + entry["hidden_points"]
        possible = entry["max_visible"] + entry["max_hidden"]
        lines.append(f"Stage {stage.label}: {earned:g} / {possible:g} points ({entry['passed']}/{entry['total']} "
                     f"tests)" + (f": {entry['problem']}" if entry.get("problem") and not graded.get("problem") else ""))
        own = entry["cumulative_visible"] + entry["cumulative_hidden"]
        if abs(own - earned) > 1e-9:  # graded on the reference's earlier stages; say what the learner's own give
            lines.append(f"  (on your own earlier stages instead of the reference's: {own:g} points)")
        if not entry["tests"]:  # nothing ran (no module, a banned import): one line carries the points and why
            tests.append({"name": f"{stage.label} › the stage", "score": 0.0, "max_score": possible,
                          "status": "failed", "output": entry.get("problem") or "no tests ran",
                          "visibility": "visible", "number": f"{int(stage.id)}.0", "tags": [f"stage {stage.id}"]})
            continue
        share = {h: scoring.shares([t.get("nodeid") or t["name"] for t in entry["tests"] if t["hidden"] == h],
                                   entry["max_hidden"] if h else entry["max_visible"]) for h in (False, True)}
        for i, test in enumerate(entry["tests"], 1):
            worth = share[test["hidden"]][test.get("nodeid") or test["name"]]
            passed = test["outcome"] == "passed"
            output = "" if passed else "\n".join(grade.student_text(test["message"] or test["outcome"])) + (
                f"\n\nHint: {test['hint']}" if test.get("hint") else "")
            tests.append({"name": f"{stage.label} › {test['name']}", "score": worth if passed else 0.0,
                          "max_score": worth, "status": "passed" if passed else "failed", "output": output,
                          "visibility": hidden_visibility if test["hidden"] else "visible",
                          "number": f"{int(stage.id)}.{i}",
                          "tags": [f"stage {stage.id}", "hidden" if test["hidden"] else "visible"]})
    if hidden_visibility != "visible":
        lines.append(f"\nThe hidden tests count toward the score; their results are shown {SHOWN[hidden_visibility]}.")
    score = sum(e["visible_points"] + e["hidden_points"] for e in graded["stages"])
    return {"score": round(score, 2), "execution_time": round(seconds), "output": "\n".join(lines), "tests": tests,
            "stdout_visibility": "hidden"}  # run_autograder's output (the raw record below) is for instructors


def _failure(reason: str, seconds: float) -> dict:
    return {"score": 0.0, "execution_time": round(seconds), "tests": [], "stdout_visibility": "hidden",
            "output": f"The autograder failed before it could grade this submission ({reason}). This is not a "
                      f"verdict on your code; please tell your instructor."}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def _close_to_others(folder: Path) -> None:
    """chmod go-rwx on a folder and everything in it (a worker running as `nobody` can then read none of it)."""
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & 0o700)


def run(root: Path) -> dict:
    """Grade root/submission into root/results/results.json; never raises, always leaves the file behind."""
    started = time.monotonic()
    target = root / "results" / "results.json"
    # Written first, so that a run killed by Gradescope's time limit still leaves an explanation.
    _write(target, _failure("it did not finish: it was stopped or ran out of time", 0))
    try:
        config = json.loads((ROOT / CONFIG).read_text(encoding="utf-8"))
        submission = root / "submission"
        zips = list(submission.glob("*.zip")) if submission.is_dir() else []
        if len(zips) == 1 and not any(submission.rglob("*.py")):
            submission = zips[0]  # a zip uploaded as it is
        options = grade.Options(out=root / "results", hidden=True, stages=tuple(config["stages"]))
        # Full isolation needs namespaces, which most containers refuse even to root. Without them the worker
        # still runs as a uid of its own, so the reference, the tests and the results must be closed to others.
        if ROOT.resolve() == (root / "source").resolve():  # only ever inside the autograder's own layout
            for private in (ROOT / "solutions", ROOT / "tests", root / "results"):
                _close_to_others(private)
        level = sandbox.remember_isolation()  # found once, not again in each stage's suite run
        print(f"sandbox isolation: {level} ({sandbox.LEVELS[level]})")
        graded = grade.grade_one(submission, options)
        raw = graded.pop("raw", {})  # what the submission printed and raised: to the instructors' log, never results
        print("raw record (instructors only):", json.dumps(raw, indent=1)[-200_000:])
        data = results(graded, config.get("hidden_visibility", "after_due_date"), time.monotonic() - started)
    except BaseException as error:  # noqa: BLE001 - whatever happens, the student gets a results.json
        traceback.print_exc()  # run_autograder's stdout is the instructors' log on Gradescope
        data = _failure(type(error).__name__, time.monotonic() - started)  # its message may quote the submission
    _write(target, data)
    print(f"score {data['score']:g}; {len(data['tests'])} test entries; wrote {target}")
    return data


def cmd_gradescope(args: argparse.Namespace) -> int:
    out = build(Path(args.out), args.stages, args.hidden_visibility)
    chosen = [manifest.stage(s) for s in args.stages] if args.stages else list(manifest.stages())
    total = sum(s.visible_points + s.hidden_points for s in chosen)
    print(f"wrote {out}: stages {', '.join(s.id for s in chosen)}, hidden tests {args.hidden_visibility}, "
          f"{total:g} points in all")
    print("Upload it as the autograder of a Gradescope programming assignment worth that many points.")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("gradescope", help="instructors: build a Gradescope autograder zip")
    parser.add_argument("out", metavar="OUT.zip")
    parser.add_argument("--stages", nargs="+", default=[], metavar="STAGE", help="stage ids to grade (default: all)")
    parser.add_argument("--hidden-visibility", choices=VISIBILITIES, default="after_due_date",
                        help="when students see the hidden tests' results (default after_due_date)")
    parser.set_defaults(func=cmd_gradescope)


def main(argv: list[str] | None = None) -> int:
    """The entry run_autograder calls: `python -m grader.instructor.gradescope run [--root DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m grader.instructor.gradescope")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"),
                        help="Gradescope's /autograder (default: $AUTOGRADER_ROOT, else /autograder)")
    run(Path(parser.parse_args(argv).root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
