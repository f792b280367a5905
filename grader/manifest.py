"""The manifest of stages (grader/stages.toml), read once into small dataclasses."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).resolve().parent / "stages.toml"


@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    module: str
    requires: tuple[str, ...]
    doc: str
    visible_points: float
    hidden_points: float
    hints: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    notebook: bool = True  # False: the stage has no notebook (its tests need the learner's module as a file)

    @property
    def label(self) -> str:
        return f"{self.id} {self.title}"

    @property
    def exercise_file(self) -> str:
        return f"exercises/{self.module}.py"

    def test_dir(self, hidden: bool = False) -> str:
        return f"tests/hidden/stage{self.id}" if hidden else f"tests/stage{self.id}"

    def hint(self, concept: str | None) -> str | None:
        return self.hints.get(concept) if concept else None


class ManifestError(ValueError):
    """The manifest is malformed; the message names the stage and the field."""


def _parse(raw: dict) -> list[Stage]:
    stages = []
    for i, entry in enumerate(raw.get("stage", [])):
        where = f"{MANIFEST.name}: stage #{i + 1}"
        for key in ("id", "title", "module", "doc", "points"):
            if key not in entry:
                raise ManifestError(f"{where} has no '{key}'")
        points = entry["points"]
        stages.append(Stage(
            id=str(entry["id"]),
            title=entry["title"],
            module=entry["module"],
            requires=tuple(str(r) for r in entry.get("requires", [])),
            doc=entry["doc"],
            visible_points=float(points.get("visible", 0)),
            hidden_points=float(points.get("hidden", 0)),
            hints=dict(entry.get("hints", {})),
            summary=entry.get("summary", ""),
            notebook=bool(entry.get("notebook", True)),
        ))
    ids = [s.id for s in stages]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise ManifestError(f"{MANIFEST.name}: stage ids must be unique and in order, got {ids}")
    for stage in stages:
        unknown = [r for r in stage.requires if r not in ids or r >= stage.id]
        if unknown:
            raise ManifestError(f"{MANIFEST.name}: stage {stage.id} requires {unknown}, which are not earlier stages")
    return stages


@lru_cache(maxsize=1)
def stages() -> tuple[Stage, ...]:
    """All stages in order."""
    with open(MANIFEST, "rb") as f:
        return tuple(_parse(tomllib.load(f)))


def stage(stage_id: str) -> Stage:
    """One stage by id; accepts '3' or '03'."""
    wanted = str(stage_id).zfill(2)
    for s in stages():
        if s.id == wanted:
            return s
    raise KeyError(f"no stage {stage_id!r}; the stages are {', '.join(s.id for s in stages())}")


def select(ids) -> list[Stage]:
    """The stages named by id ('3' or '03'), in the order given, or every stage when none is named."""
    return [stage(i) for i in ids] if ids else list(stages())


def stage_of_test_path(path: str | Path) -> tuple[Stage, bool] | None:
    """(stage, hidden) for a test file under tests/stageNN/ or tests/hidden/stageNN/, else None."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.startswith("stage") and part[5:].isdigit() and i > 0:
            hidden = parts[i - 1] == "hidden"
            if parts[i - 1] in ("tests", "hidden"):
                try:
                    return stage(part[5:]), hidden
                except KeyError:
                    return None
    return None


def prerequisites(of: Stage) -> list[Stage]:
    """Every stage whose module `of` imports, directly or through another, in manifest order."""
    needed, pending = set(), list(of.requires)
    while pending:
        stage_id = pending.pop()
        if stage_id not in needed:
            needed.add(stage_id)
            pending += stage(stage_id).requires
    return [s for s in stages() if s.id in needed]
