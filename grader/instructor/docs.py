"""Generated from the manifest by `python -m grader docs` (and `python -m grader build`): docs/README.md (the index of
stage pages) and the stage table in README.md (between the STAGES markers)."""
from __future__ import annotations

import argparse

from .. import manifest
from ..manifest import ROOT

INDEX = ROOT / "docs" / "README.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- STAGES: generated from grader/stages.toml by `python -m grader docs` -->", "<!-- /STAGES -->"


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


def render_stage_table() -> str:
    lines = [BEGIN, "| Stage | You build | You edit | Read |", "| --- | --- | --- | --- |"]
    for stage in manifest.stages():
        lines.append(f"| {stage.id} | {stage.title}: {stage.summary} | `{stage.exercise_file}` | "
                     f"[{stage.doc}]({stage.doc}) |")
    return "\n".join(lines + [END])


def render_readme(current: str) -> str:
    """README.md with its stage table regenerated (the markers must be present)."""
    if BEGIN not in current or END not in current:
        raise ValueError("README.md has no STAGES markers for the generated stage table")
    head, rest = current.split(BEGIN, 1)
    return head + render_stage_table() + rest.split(END, 1)[1]


def write() -> list[str]:
    """Rewrite both files (UTF-8, '\n' line ends on every platform, so regenerating on Windows changes no byte)."""
    INDEX.write_text(render_index(), encoding="utf-8", newline="\n")
    README.write_text(render_readme(README.read_text(encoding="utf-8")), encoding="utf-8", newline="\n")
    return [INDEX.relative_to(ROOT).as_posix(), README.relative_to(ROOT).as_posix()]


def cmd_docs(args: argparse.Namespace) -> int:
    """Regenerate docs/README.md (the index of stage pages) and README.md's stage table from the manifest."""
    print(f"wrote {', '.join(write())}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("docs", help="regenerate docs/README.md and README.md's stage table from the manifest"
                        ).set_defaults(func=cmd_docs)
