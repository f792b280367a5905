"""The student kit's README speaks to learners and names only what the kit holds."""
from __future__ import annotations

import re
from pathlib import Path

from grader import manifest
from grader.instructor import release

FIRST = manifest.stages()[0]
ABSENT = ("solutions", "benchmarks", "instructors.md", "hidden", "gradescope", "nbgrader", "grade ")


def test_every_path_the_kit_readme_names_is_in_the_kit_and_nothing_it_lacks_is_named(tmp_path, monkeypatch):
    # Stages being added may have no stored outputs yet; the README does not depend on them.
    monkeypatch.setattr(release.expected, "path_for", lambda stage_id: Path(release.__file__))
    kit = release.build(tmp_path / "kit")
    text = (kit / "README.md").read_text(encoding="utf-8")
    for command in ("python -m grader", "python -m grader watch", "check NN", "hint", "reset NN", "submit",
                    "reveal NN"):
        assert command in text, f"the README does not mention `{command}`"
    assert all(f"`exercises/{s.module}.py`" in text for s in manifest.stages()), "the stage table is incomplete"
    quoted = re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)]+)\)", text)  # code, and link targets
    named = {word.strip("(),.") for q in quoted for word in q.split()
             if re.fullmatch(r"[\w.-]+(/[\w.-]*)+|[\w-]+\.(py|md|txt|toml|ipynb)", word.strip("(),."))}
    named = {n.replace("stageNN", f"stage{FIRST.id}") for n in named if not n.startswith(("http", "../"))}
    assert named, "no path found: the pattern is broken"
    missing = sorted(n for n in named if not (kit / n).exists())
    assert not missing, f"the kit README names what the kit lacks: {missing}"
    lowered = text.lower()
    assert not [word for word in ABSENT if word in lowered], [word for word in ABSENT if word in lowered]
