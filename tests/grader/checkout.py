"""A throwaway git checkout of the repository, for tests that must change files (plant a learner's body in exercises/,
edit a source, block a module) without touching the working tree they run from."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.manifest import ROOT


def copy_of_repository(into: Path) -> Path:
    """Copy every file git knows or would add (tracked, and untracked but not ignored) into `into`, then make it a git
    checkout of its own with all of them tracked, as a fresh clone of the working tree would be."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                                capture_output=True, check=True, timeout=60).stdout.decode("utf-8")
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"needs git and a git checkout of the workbook: {error}")
    for name in sorted(set(listed.split("\0")) - {""}):
        if (ROOT / name).is_file():  # tracked but deleted in the working tree: gone
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=into, check=True, capture_output=True, timeout=120)
    return into


def run_in(copy: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python ARGS` in the copy, as a learner or an instructor types it there (no PYTHONPATH of ours, no colour)."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_COLOR": "1"}
    return subprocess.run([sys.executable, *args], cwd=copy, env=base | (env or {}), capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=timeout)
