"""Stored expected outputs: the reference's probe results, for where the reference is not shipped (a student release).

Each probe call is keyed by the probe's name and a digest of its inputs (their wire encoding, which is deterministic);
the store for a stage is one gzipped JSON file, tests/expected/stageNN.json.gz, holding key -> the reference's output
(gzip with no timestamp, so regenerating an unchanged stage changes no byte). Only the
visible suites are stored: hidden cases never leave the instructors' copy.

    python -m grader expected     # regenerate every store from solutions/ (instructors)
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..manifest import ROOT
from ..sandbox import wire

STORE = ROOT / "tests" / "expected"


class MissingExpected(AssertionError):
    """The store has no output for this probe call: it is stale, or the test's inputs are not deterministic."""


def key(probe: Callable, inputs: dict) -> str:
    """The probe's module-qualified name and a digest of its inputs."""
    digest = hashlib.sha256(wire.dumps(inputs)).hexdigest()[:32]
    return f"{probe.__module__}:{probe.__name__}:{digest}"


def path_for(stage_id: str, store: Path = STORE) -> Path:
    return store / f"stage{stage_id}.json.gz"


def load(stage_id: str, store: Path = STORE) -> dict[str, Any]:
    path = path_for(stage_id, store)
    if not path.exists():
        return {}
    return {k: wire.decode(v) for k, v in json.loads(gzip.decompress(path.read_bytes())).items()}


def save(stage_id: str, outputs: dict[str, Any], store: Path = STORE) -> Path:
    """Write a stage's store, keys sorted so that regenerating an unchanged stage changes no byte."""
    path = path_for(stage_id, store)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = {k: wire.encode(outputs[k]) for k in sorted(outputs)}
    text = json.dumps(encoded, indent=0, sort_keys=True) + "\n"
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return path


def _stable(value: Any) -> Any:
    """The output with temporary-directory names in error messages replaced by <tmp>, so that recording twice gives
    the same bytes (raised(...) records are judged by their kind, never by a path in their message)."""
    if isinstance(value, dict):
        return {k: _TMP.sub("<tmp>", v) if k == "message" and isinstance(v, str) else _stable(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"[\\/][^\\/\s'\"]+")  # either separator (Windows too)


class Recorder:
    """Collects the reference's outputs during a run of the visible suites (conftest's --record-expected)."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, Any]] = {}

    def add(self, stage_id: str, probe: Callable, inputs: dict, output: Any) -> None:
        self.outputs.setdefault(stage_id, {})[key(probe, inputs)] = _stable(copy.deepcopy(output))

    def write(self, store: Path = STORE) -> list[Path]:
        return [save(stage_id, outputs, store) for stage_id, outputs in sorted(self.outputs.items())]


class Replayer:
    """The reference, replayed from the store."""

    def __init__(self, store: Path = STORE) -> None:
        self.store = store
        self.loaded: dict[str, dict[str, Any]] = {}

    def output(self, stage_id: str, probe: Callable, inputs: dict) -> Any:
        if stage_id not in self.loaded:
            self.loaded[stage_id] = load(stage_id, self.store)
        found = self.loaded[stage_id].get(key(probe, inputs), _MISSING)
        if found is _MISSING:
            raise MissingExpected(f"no stored expected output for {probe.__name__} with these inputs in "
                                  f"{path_for(stage_id, self.store).relative_to(ROOT)}; instructors regenerate the "
                                  f"stores with `python -m grader expected`")
        return copy.deepcopy(found)  # a test may edit what it gets; the store must stay as recorded


_MISSING = object()
