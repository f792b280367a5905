"""`python -m grader submit [--out FILE]`: the zip to hand in, which `grade` and the Gradescope autograder accept.

It holds only what you wrote: the stage modules of your exercises/ (exercises/<module>.py, never the given modules,
backups or caches), or with `--notebooks` the stage notebooks (notebooks/student/NN-<module>.ipynb), plus
submission.json, the SHA-256 of each file it holds (as otter's export records what it packed), so a grader can tell
that the zip is the one you made. Upload the zip as it is: Gradescope unpacks it, and `grade` reads it whole.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path

from .. import manifest, report
from ..manifest import ROOT
from ..suites import targets
from . import pristine

MANIFEST_NAME = "submission.json"
FORMAT = 1


def _notebook_name(stage: manifest.Stage) -> str:
    return f"{stage.id}-{stage.module}.ipynb"  # the stage notebooks' names (grader/notebooks/)


def files_to_submit(folder: Path, notebooks: Path | None) -> dict[str, Path]:
    """Name in the zip -> file: the stage modules of `folder`, or the stage notebooks of `notebooks`."""
    chosen = {}
    for stage in manifest.stages():
        if notebooks is not None:
            path, name = notebooks / _notebook_name(stage), f"notebooks/{_notebook_name(stage)}"
        else:
            path, name = folder / f"{stage.module}.py", f"exercises/{stage.module}.py"
        if path.is_file():
            chosen[name] = path
    return chosen


def untouched(folder: Path) -> list[str]:
    """Stage ids whose module is still exactly the skeleton (worth a word before handing in)."""
    return [s.id for s in manifest.stages()
            if (folder / f"{s.module}.py").is_file()
            and (folder / f"{s.module}.py").read_text(encoding="utf-8", errors="replace") == pristine.text(s.module)]


def write(out: Path, chosen: dict[str, Path]) -> dict:
    """Write the zip (files and submission.json) and return what submission.json says."""
    contents = {name: path.read_bytes() for name, path in chosen.items()}
    record = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "kind": "notebooks" if any(n.endswith(".ipynb") for n in contents) else "modules",
              "python": sys.version.split()[0],
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(contents.items())}}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(contents.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=time.localtime()[:6]), data,
                             compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(MANIFEST_NAME, json.dumps(record, indent=2) + "\n")
    partial.replace(out)
    return record


def verify(path: Path) -> list[str]:
    """What is wrong with a submission zip (empty: its files match the digests its submission.json records)."""
    problems = []
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if MANIFEST_NAME not in names:
            return [f"no {MANIFEST_NAME}"]
        recorded = json.loads(archive.read(MANIFEST_NAME))["files"]
        for name in sorted(names - {MANIFEST_NAME} - set(recorded)):
            problems.append(f"{name} is not in {MANIFEST_NAME}")
        for name, digest in sorted(recorded.items()):
            if name not in names:
                problems.append(f"{name} is missing")
            elif hashlib.sha256(archive.read(name)).hexdigest() != digest:
                problems.append(f"{name} does not match its digest")
    return problems


def cmd_submit(args: argparse.Namespace) -> int:
    folder = targets.resolve(args.target)
    notebooks = None
    if args.notebooks is not None:
        notebooks = Path(args.notebooks).expanduser().resolve()
        if not notebooks.is_dir():
            raise ValueError(f"no folder {args.notebooks!r} of stage notebooks")
    chosen = files_to_submit(folder, notebooks)
    if not chosen:
        where = notebooks if notebooks is not None else folder
        raise ValueError(f"nothing to submit: {where} holds no stage "
                         f"{'notebooks' if notebooks is not None else 'modules'}")
    out = Path(args.out).expanduser().resolve()
    record = write(out, chosen)
    report.say(f"Wrote {report.shown_path(out)}: {len(chosen)} files and {MANIFEST_NAME} (their SHA-256).", "bold")
    for name in record["files"]:
        report.say(f"  {name}")
    still = untouched(folder) if notebooks is None else []
    if still:
        report.say(f"Still the skeleton (they will score 0): stage{'s' if len(still) > 1 else ''} {', '.join(still)}.")
    report.say("Hand in this zip as it is; `python -m grader submit` again replaces it with your latest files.")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("submit", help="write the zip to hand in: your stage modules (or notebooks) and "
                                                "their digests")
    parser.add_argument("--out", default="submission.zip", help="the zip to write (default ./submission.zip)")
    parser.add_argument("--notebooks", nargs="?", const=str(ROOT / "notebooks" / "student"), default=None,
                        metavar="DIR", help="hand in the stage notebooks instead (default DIR: notebooks/student)")
    parser.add_argument("--target", default=argparse.SUPPRESS,
                        help="exercises (default), or a path to a copy of exercises/")
    parser.set_defaults(func=cmd_submit)
