"""docs/README.md, the index of stage pages, generated from the manifest (`python -m grader docs`)."""
from __future__ import annotations

from . import manifest
from .manifest import ROOT

INDEX = ROOT / "docs" / "README.md"


def render_index() -> str:
    lines = [
        "# The stages",
        "",
        "<!-- generated from grader/stages.toml by `python -m grader docs`; edit the manifest, not this file -->",
        "",
        "Each page derives the stage's mathematics, states its conventions, and lists what you implement, in order.",
        "",
        "| Stage | Page | You edit | Builds on | Points (visible + hidden) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage in manifest.stages():
        page = stage.doc.removeprefix("docs/")
        requires = ", ".join(stage.requires) or "-"
        lines.append(f"| {stage.id} | [{stage.title}]({page}) | `{stage.exercise_file}` | {requires} | "
                     f"{stage.visible_points:g} + {stage.hidden_points:g} |")
    return "\n".join(lines) + "\n"


def write_index() -> None:
    INDEX.write_text(render_index(), encoding="utf-8")
