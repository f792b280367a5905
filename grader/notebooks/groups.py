"""A stage's suites as pytest collects them, grouped into test cells: one per concept, visible then hidden.

Each group is worth the shares of its tests in the manifest's points of its suite (grader/suites/scoring.py).
Collection runs in a subprocess, so the suites' modules are never imported into the process that builds the notebooks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import manifest
from ..manifest import ROOT, Stage
from ..suites import scoring
from .common import NotebookError


@dataclass
class Group:
    concept: str
    nodeids: list[str]
    hidden: bool
    points: float = 0.0


class _Collector:
    def __init__(self) -> None:
        self.items: list[dict] = []
        self.errors: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            marker = item.get_closest_marker("concept")
            self.items.append({"nodeid": item.nodeid, "path": str(item.path),
                               "concept": marker.args[0] if marker else Path(str(item.path)).stem})

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid}: {str(report.longrepr)[-1500:]}")


def _collect_main(out: str, dirs: list[str]) -> None:
    """Run in a subprocess by `collect`: collect (never run) the suites in `dirs` and write what came to `out`."""
    import pytest
    collector = _Collector()
    pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}", *dirs], plugins=[collector])
    Path(out).write_text(json.dumps({"items": collector.items, "errors": collector.errors}), encoding="utf-8")


def collect(stages: list[Stage]) -> dict[str, list[Group]]:
    """stage id -> its test groups: one per concept, visible then hidden, in the order pytest collects them."""
    dirs = [d for s in stages for d in (s.test_dir(False), s.test_dir(True)) if (ROOT / d).is_dir()]
    with tempfile.TemporaryDirectory(prefix="notebooks-") as tmp:
        out = Path(tmp) / "collected.json"
        code = "import sys; from grader.notebooks.groups import _collect_main; _collect_main(sys.argv[1], sys.argv[2:])"
        done = subprocess.run([sys.executable, "-c", code, str(out), *dirs], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
        if not out.exists():
            raise NotebookError(f"collecting the suites failed:\n{(done.stdout + done.stderr)[-3000:]}")
        collected = json.loads(out.read_text(encoding="utf-8"))
    if collected["errors"]:
        raise NotebookError("the suites do not collect:\n" + "\n".join(collected["errors"]))
    groups: dict[str, list[Group]] = {s.id: [] for s in stages}
    for item in collected["items"]:
        found = manifest.stage_of_test_path(item["path"])
        if found is None or found[0].id not in groups:
            continue
        stage_groups = groups[found[0].id]
        match = [g for g in stage_groups if g.concept == item["concept"] and g.hidden == found[1]]
        if match:
            match[0].nodeids.append(item["nodeid"])
        else:
            stage_groups.append(Group(item["concept"], [item["nodeid"]], found[1]))
    for stage in stages:
        stage_groups = groups[stage.id]
        stage_groups.sort(key=lambda g: g.hidden)  # stable: visible first, each in collection order
        for hidden, total in ((False, stage.visible_points), (True, stage.hidden_points)):
            share([g for g in stage_groups if g.hidden == hidden], total)
    return groups


def share(groups: list[Group], total: float) -> None:
    """Give each group the sum of its tests' shares of `total` (grader/suites/scoring.py: the rule every channel
    uses), so a cell is worth exactly what its tests are worth in `grader grade` and on Gradescope."""
    shares = scoring.cents([n for g in groups for n in g.nodeids], total)
    for group in groups:
        group.points = sum(shares[n] for n in set(group.nodeids)) / 100
