"""Batch grading: `python -m grader grade SUBMISSION... --out DIR`.

For each submission (a folder or a .zip holding a copy of exercises/, or the stage notebooks) and each stage:
  isolated    the stage's own module with every prerequisite swapped for the reference, so a bug in stage 03 does
              not zero stage 06 (the score that counts);
  cumulative  the submission's own code throughout (what the learner's package really does).
Submission code runs only in sandboxed workers (grader/sandbox/); this process judges. Results are written
atomically per submission, so a run killed half-way and started again loses and duplicates nothing.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from .. import report
from ..suites import runner

FORBIDDEN_MODULES = ("torch", "jax", "jaxlib", "tensorflow", "solutions", "grader")
MAX_ZIP_BYTES = 64 * 2**20
GRADEBOOK_COLUMNS = ("submission", "stage", "title", "visible_points", "hidden_points", "max_visible", "max_hidden",
                     "cumulative_visible", "cumulative_hidden", "passed", "total", "problem")


@dataclass(frozen=True)
class Options:
    out: Path
    hidden: bool = False
    jobs: int = 1
    timeout: float = 60.0
    memory_mb: int = 4096
    force: bool = False
    stages: tuple[str, ...] = ()  # stage ids to grade; empty means every stage


class SubmissionProblem(ValueError):
    """The submission cannot be graded as given (a bad zip, no modules); recorded as its grade's reason."""


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(temporary, path)


def submission_name(path: Path) -> str:
    return path.stem if path.suffix == ".zip" else path.name


def _unpack(path: Path, into: Path) -> Path:
    """A submission as a folder of stage modules, from a folder, a zip, or notebooks."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                if sum(i.file_size for i in archive.infolist()) > MAX_ZIP_BYTES:
                    raise SubmissionProblem(f"{path.name} unpacks to more than {MAX_ZIP_BYTES >> 20} MB")
                for info in archive.infolist():
                    target = (into / info.filename).resolve()
                    if not str(target).startswith(str(into.resolve()) + os.sep) and target != into.resolve():
                        raise SubmissionProblem(f"{path.name} has an entry outside its folder: {info.filename!r}")
                archive.extractall(into)
        except zipfile.BadZipFile as error:
            raise SubmissionProblem(f"{path.name} is not a valid zip file ({error})") from None
        path = into
    elif not path.is_dir():
        raise SubmissionProblem(f"{path} is neither a folder nor a .zip file")
    modules = {m.module for m in manifest.stages()}
    candidates = [path, path / "exercises", *sorted(p for p in path.rglob("*") if p.is_dir() and p.name != "workbook")]
    for folder in candidates:  # (workbook/ beside a notebook holds the reference's earlier stages, not the learner's)
        if any((folder / f"{m}.py").exists() for m in modules):
            return folder
    notebooks = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if notebooks:  # the stage notebooks: their module-code cells become the modules (grader/notebooks/)
        from ..notebooks import NotebookError, modules_from_notebooks
        try:
            return modules_from_notebooks(notebooks, into.with_name(into.name + "-notebooks"))[0].parent
        except NotebookError as error:
            raise SubmissionProblem(f"{path.name}: {error}") from None
    raise SubmissionProblem(f"{path.name}: no stage modules ({', '.join(sorted(modules))}.py) and no notebooks found")


def forbidden_imports(package: Path, stage: Stage) -> list[str]:
    """Imports of frameworks or of the reference in the stage's module (a syntax error is the tests' business)."""
    source_path = package / f"{stage.module}.py"
    try:
        tree = ast.parse(source_path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        found += [n for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
    return sorted(set(found))


def _isolated_package(package: Path, stage: Stage, into: Path) -> Path:
    """The stage's module from the submission beside the reference's modules for its prerequisites, and nothing else."""
    into.mkdir(parents=True)
    for earlier in manifest.prerequisites(stage):
        module = earlier.module
        shutil.copy(ROOT / "solutions" / f"{module}.py", into / f"{module}.py")
    source = package / f"{stage.module}.py"
    if source.exists():
        shutil.copy(source, into / source.name)
    return into


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _suite_args(options: Options) -> list[str]:
    return ["--sandbox", f"--probe-timeout={options.timeout:g}", f"--memory-mb={options.memory_mb}"]


def grade_one(path: Path, options: Options) -> dict:
    """Grade one submission; never raises for anything the submission does."""
    started = time.monotonic()
    result = {"submission": submission_name(path), "source": str(path), "digest": _digest(path),
              "hidden": options.hidden, "problem": None, "stages": []}
    stages = [manifest.stage(s) for s in options.stages] if options.stages else list(manifest.stages())
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        try:
            package = _unpack(path, Path(scratch) / "unpacked")
        except SubmissionProblem as problem:
            result["problem"] = str(problem)
            package = None
        cumulative = {}
        if package is not None:
            run = runner.run(stages, str(package), hidden=options.hidden, extra=_suite_args(options),
                             timeout=options.timeout * 60)
            cumulative = {r.stage.id: r for r in run.stages}
            result["run_error"] = run.error
        for stage in stages:
            entry = {"stage": stage.id, "title": stage.title, "max_visible": stage.visible_points,
                     "max_hidden": stage.hidden_points if options.hidden else 0.0, "problem": result["problem"]}
            banned = forbidden_imports(package, stage) if package is not None else []
            if package is None or banned or not (package / f"{stage.module}.py").exists():
                entry.update(visible_points=0.0, hidden_points=0.0, cumulative_visible=0.0, cumulative_hidden=0.0,
                             passed=0, total=cumulative[stage.id].total() if stage.id in cumulative else 0, tests=[])
                if banned:
                    entry["problem"] = f"forbidden imports in {stage.module}.py: {', '.join(banned)} (stage scores 0)"
                elif package is not None:
                    entry["problem"] = f"no {stage.module}.py in the submission"
                result["stages"].append(entry)
                continue
            whole = cumulative[stage.id]
            if stage.requires and not whole.complete:  # full marks on its own code need no second opinion
                alone = runner.run([stage], str(_isolated_package(package, stage, Path(scratch) / f"iso{stage.id}")),
                                   hidden=options.hidden, extra=_suite_args(options),
                                   timeout=options.timeout * 30).stages[0]
            else:
                alone = whole  # nothing to swap, or nothing to gain: the isolated pass would give the same score
            entry.update(visible_points=alone.points(False), hidden_points=alone.points(True),
                         cumulative_visible=whole.points(False), cumulative_hidden=whole.points(True),
                         passed=alone.passed(), total=alone.total(),
                         tests=[{"name": t.name, "hidden": t.hidden, "outcome": t.outcome, "message": t.message,
                                 "hint": t.hint} for t in alone.tests])
            result["stages"].append(entry)
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def feedback(result: dict) -> str:
    """A learner-facing page: each stage's score and every failed test with its message and hint."""
    lines = [f"# Feedback for {result['submission']}", ""]
    if result.get("problem"):
        lines += [f"**This submission could not be graded:** {result['problem']}", ""]
    for entry in result["stages"]:
        earned = entry["visible_points"] + entry["hidden_points"]
        lines.append(f"## Stage {entry['stage']} {entry['title']}: {earned:g} / "
                     f"{entry['max_visible'] + entry['max_hidden']:g} points ({entry['passed']}/{entry['total']} tests)")
        if entry.get("problem") and entry["problem"] != result.get("problem"):
            lines.append(f"\n**{entry['problem']}**")
        for test in entry.get("tests", []):
            if test["outcome"] != "passed":
                label = " (hidden)" if test["hidden"] else ""
                message = test["message"] or "(no message)"
                lines += ["", f"- `{test['name']}`{label}: {test['outcome']}", "", "  ```",
                          *("  " + line for line in message.strip().splitlines()[:15]), "  ```"]
                if test.get("hint"):
                    lines.append(f"  Hint: {test['hint']}")
        lines.append("")
    return "\n".join(lines)


def _gradebook(results: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GRADEBOOK_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=lambda r: r["submission"]):
        for entry in result["stages"]:
            writer.writerow({**entry, "submission": result["submission"], "problem": entry.get("problem") or ""})
    return buffer.getvalue()


def grade(paths: list[Path], options: Options, on_progress=None) -> dict:
    """Grade every submission not graded yet (all with force) and rewrite the gradebook and summary from results/."""
    results_dir = options.out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    names = [submission_name(p) for p in paths]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SubmissionProblem(f"two submissions share the name(s) {sorted(duplicates)}; rename one")
    pending, skipped = [], []
    for path in paths:
        stored = results_dir / f"{submission_name(path)}.json"
        if stored.exists() and not options.force:
            try:
                if json.loads(stored.read_text())["digest"] == _digest(path):
                    skipped.append(submission_name(path))
                    continue
            except (ValueError, KeyError):
                pass  # a damaged result is graded again
        pending.append(path)
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {pool.submit(grade_one, path, options): path for path in pending}
        for future in as_completed(futures):
            result = future.result()
            _write_atomically(results_dir / f"{result['submission']}.json", json.dumps(result, indent=1))
            _write_atomically(options.out / "feedback" / f"{result['submission']}.md", feedback(result))
            done += 1
            if on_progress:
                on_progress(done, len(pending))
    results = []
    for stored in sorted(results_dir.glob("*.json")):
        try:
            results.append(json.loads(stored.read_text()))
        except ValueError:
            continue
    _write_atomically(options.out / "gradebook.csv", _gradebook(results))
    summary = {
        "graded": [submission_name(p) for p in pending], "skipped": skipped,
        "submissions": [{"submission": r["submission"], "problem": r.get("problem"),
                         "points": round(sum(e["visible_points"] + e["hidden_points"] for e in r["stages"]), 2),
                         "max_points": sum(e["max_visible"] + e["max_hidden"] for e in r["stages"]),
                         "seconds": r.get("seconds")} for r in results],
    }
    _write_atomically(options.out / "summary.json", json.dumps(summary, indent=1))
    return summary


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade submissions into --out: gradebook.csv, feedback/<name>.md, results/<name>.json, summary.json."""
    options = Options(out=Path(args.out), hidden=args.hidden, jobs=args.jobs, timeout=args.probe_timeout,
                            memory_mb=args.memory, force=args.force)
    paths = [Path(p) for p in args.submissions]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    with report.progress("grading submissions") as on_progress:
        summary = grade(paths, options, on_progress)
    for entry in summary["submissions"]:
        note = f"  ({entry['problem']})" if entry["problem"] else ""
        print(f"{entry['submission']}: {entry['points']:g} / {entry['max_points']:g}{note}")
    if summary["skipped"]:
        print(f"already graded, skipped (use --force to grade again): {', '.join(summary['skipped'])}")
    print(f"wrote {options.out / 'gradebook.csv'}, {options.out / 'summary.json'}, feedback/ and results/")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("grade", help="instructors: grade submissions in sandboxed workers")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="folders or .zip files")
    parser.add_argument("--out", required=True, help="folder for gradebook.csv, feedback/, results/, summary.json")
    parser.add_argument("--hidden", action="store_true", help="include the hidden suites")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--timeout", dest="probe_timeout", type=float, default=60.0,
                        help="seconds one probe call may take (default 60)")
    parser.add_argument("--memory", type=int, default=4096, help="MB of address space for submission code")
    parser.add_argument("--force", action="store_true", help="grade again submissions already graded")
    parser.set_defaults(func=cmd_grade)
