"""Instant progress: each stage's results, kept under a digest of everything that decides them.

A stage's verdict depends on
    its module in the target, and every module that one imports there (relatively, transitively; the manifest's
        prerequisites too), so a fix in tensor.py re-checks the stages built on it;
    its visible test files and the test helpers they import (tests.stageNN...), and tests/conftest.py;
    what the target is compared with: the reference modules (solutions/) or the stored outputs (a student kit);
    the grader's harness, suites and manifest, and the Python and NumPy in use.
The SHA-256 of all of that keys the stage's results in `.grader/results-<folder>.json`, beside the target (for
exercises/ that is the repository's root, where .grader/ is gitignored). A stage whose digest is unchanged answers from there at once;
the others run again, the current stage first so that its verdict is the first thing ready. Only complete runs of the
visible suites are kept: a run that timed out or crashed is shown, never remembered.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from .. import manifest
from ..manifest import ROOT, Stage
from ..suites import runner, targets

STATE = ".grader"  # gitignored; holds results-<folder>.json and the hint steps (hints.json)
FORMAT = 1  # bump when what is stored changes shape
GRADER_CODE = ("grader/manifest.py", "grader/stages.toml", "grader/harness", "grader/suites")


def state_dir(folder: Path) -> Path:
    """Where a target's learner state lives: .grader/ beside the target folder (the repository root for exercises/)."""
    return folder.parent / STATE


IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([\w, \t]*)", re.MULTILINE)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(dots, module, names) of each `from ... import ...` line of a file: read with a pattern, not parsed (parsing
    every module and test file on each call took a second); a line inside a string only adds a file to a digest."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [(len(dots), module, [n.strip() for n in names.split(",") if n.strip()])
            for dots, module, names in IMPORT.findall(text)]


def results_path(folder: Path) -> Path:
    """The cache file of one target folder (exercises/ and solutions/ side by side keep one each)."""
    return state_dir(folder) / f"results-{folder.name}.json"


def _relative_imports(path: Path) -> list[str]:
    """Module names `path` imports from its own folder (`from .tensor import Tensor`, `from . import tensor`)."""
    names = []
    for dots, module, imported in _imports(path):
        if dots == 1:
            names += [module.split(".")[0]] if module else imported
    return names


def _closure(start: Iterable[Path], imports) -> list[Path]:
    """`start` and every existing file reachable through `imports(path) -> [path]`, sorted."""
    seen, pending = set(), [p for p in start]
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        pending += imports(path)
    return sorted(seen)


def module_files(folder: Path, stage: Stage) -> list[Path]:
    """The stage's module in `folder`, its prerequisites' modules and every module they import from `folder`."""
    modules = [stage.module] + [s.module for s in manifest.prerequisites(stage)]
    return _closure([folder / f"{m}.py" for m in modules],
                    lambda path: [folder / f"{name}.py" for name in _relative_imports(path)])


def _test_imports(path: Path) -> list[Path]:
    """Files of the tests package that a test file imports (`from tests.stage06.x import y`, `from .x import y`)."""
    found = []
    for dots, module, _ in _imports(path):
        if dots == 0 and module.split(".")[0] == "tests":
            found.append(ROOT.joinpath(*module.split(".")).with_suffix(".py"))
        elif dots == 1 and module:
            found.append(path.parent.joinpath(*module.split(".")).with_suffix(".py"))
    return found


def suite_files(stage: Stage) -> list[Path]:
    """The stage's visible suite (every file under tests/stageNN/), the helpers it imports, and tests/conftest.py."""
    suite = ROOT / stage.test_dir(hidden=False)
    own = [p for p in suite.rglob("*") if p.is_file() and "__pycache__" not in p.parts] if suite.is_dir() else []
    return _closure([*own, ROOT / "tests" / "conftest.py"], _test_imports)


def _reference_files(stage: Stage) -> list[Path]:
    solutions = targets.NAMED["solutions"]
    if solutions.is_dir():
        return module_files(solutions, stage)
    return sorted((ROOT / "tests" / "expected").glob(f"stage{stage.id}.*"))


def _grader_files() -> list[Path]:
    files = []
    for relative in GRADER_CODE:
        path = ROOT / relative
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _environment() -> bytes:
    """Python's version and NumPy's (read from its version file: importing NumPy would cost a fifth of a second)."""
    spec = importlib.util.find_spec("numpy")
    version = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
    numpy = version.read_bytes() if version and version.is_file() else b"no numpy"
    return sys.version.encode() + b"\0" + numpy


class Digests:
    """The digest of each stage's inputs for one target folder; the shared parts are read once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._files: dict[Path, bytes] = {}
        shared = hashlib.sha256(_environment())
        for path in _grader_files():
            self._add(shared, path)
        self._shared = shared

    def _add(self, digest, path: Path) -> None:
        if path not in self._files:
            try:
                self._files[path] = hashlib.sha256(path.read_bytes()).digest()
            except OSError:
                self._files[path] = b"missing"
        digest.update(str(path).encode() + b"\0" + self._files[path])

    def of(self, stage: Stage) -> str:
        digest = self._shared.copy()
        digest.update(f"stage {stage.id} {stage.module}".encode())
        for path in [*module_files(self.folder, stage), *suite_files(stage), *_reference_files(stage)]:
            self._add(digest, path)
        if not (self.folder / f"{stage.module}.py").is_file():
            digest.update(b"module missing")
        return digest.hexdigest()


def _result_to_json(result: runner.StageResult) -> list[dict]:
    return [dataclasses.asdict(test) for test in result.tests]


def _result_from_json(stage: Stage, tests: list[dict]) -> runner.StageResult:
    names = {f.name for f in dataclasses.fields(runner.TestResult)}
    return runner.StageResult(stage, [runner.TestResult(**{k: v for k, v in t.items() if k in names}) for t in tests])


def write_json_atomically(path: Path, data: object) -> None:
    """Write `data` as JSON so that a reader (another command, a kill half-way) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as f:
            json.dump(data, f, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or {} when it is missing or unreadable (a cache is never worth an error)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Cache:
    """The stored results of one target folder: stage id -> {digest, tests}."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = results_path(folder)
        stored = read_json(self.path)
        self.stages: dict = stored.get("stages", {}) if stored.get("format") == FORMAT and \
            stored.get("target") == str(folder) else {}

    def get(self, stage: Stage, digest: str) -> runner.StageResult | None:
        entry = self.stages.get(stage.id)
        if not isinstance(entry, dict) or entry.get("digest") != digest:
            return None
        try:
            return _result_from_json(stage, entry["tests"])
        except (KeyError, TypeError):
            return None

    def put(self, result: runner.StageResult, digest: str) -> None:
        self.stages[result.stage.id] = {"digest": digest, "checked": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "tests": _result_to_json(result)}

    def save(self) -> None:
        try:
            write_json_atomically(self.path, {"format": FORMAT, "target": str(self.folder), "stages": self.stages})
        except OSError:  # a read-only checkout still gets its verdicts, only not remembered
            pass


def lookup(stages: Iterable[Stage], target: str = "exercises") -> dict[str, runner.StageResult | None]:
    """What the cache knows of each stage as the target is now (None: changed since, or never checked); runs nothing."""
    folder = targets.resolve(target)
    digests, cache = Digests(folder), Cache(folder)
    return {s.id: cache.get(s, digests.of(s)) for s in stages}


def current(stages: list[Stage], known: dict[str, runner.StageResult | None]) -> Stage | None:
    """The first stage not known to be complete (unknown counts as not complete)."""
    return next((s for s in stages if known.get(s.id) is None or not known[s.id].complete), None)


def run(stages: Iterable[Stage], target: str = "exercises", on_progress: runner.Progress | None = None,
        timeout: float | None = None, fresh: bool = False, warm: runner.Warm | None = None) -> runner.Run:
    """The visible suites of `stages` against `target`, answered from the cache where nothing changed.

    The stages that must run go in two pytest runs: the current stage (the first not known to be complete) alone,
    then the rest together. `fresh` ignores what is stored (and stores the new results). `warm` (watch's pytest
    process started ahead) runs the first of them.
    """
    stages = list(stages)
    folder = targets.resolve(target)
    digests, cache = Digests(folder), Cache(folder)
    keys = {s.id: digests.of(s) for s in stages}
    known = {s.id: None if fresh else cache.get(s, keys[s.id]) for s in stages}
    cached = [s.id for s in stages if known[s.id] is not None]
    stale = [s for s in stages if known[s.id] is None]
    first = current(stages, known)
    batches = [[first], [s for s in stale if s is not first]] if first in stale else [stale]
    started, errors = time.monotonic(), []
    for batch in (b for b in batches if b):
        left = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
        done = runner.run(batch, target, hidden=False, on_progress=on_progress, timeout=left, warm=warm)
        warm = None  # it serves one run
        for result in done.stages:
            known[result.stage.id] = result
            if done.error is None:
                cache.put(result, keys[result.stage.id])
        if done.error:
            errors.append(done.error)
    if stale:
        cache.save()
    return runner.Run(target, [known[s.id] for s in stages], "; ".join(errors) or None, cached=cached)
