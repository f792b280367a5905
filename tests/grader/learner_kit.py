"""What the learner-command tests share: a fresh skeleton in a temporary folder, and the grader run as a learner runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from grader import source
from grader.manifest import ROOT


def skeleton(into: Path) -> Path:
    """into/exercises/ as `python -m grader.source` generates it (never the real exercises/ folder, which may be
    mid-edit); returns that folder. Its learner state (.grader/) then lives in `into`."""
    for relative, text in source.generated_skeletons().items():
        path = into / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    return into / "exercises"


def grader(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m grader ARGS` in a subprocess, plain text (NO_COLOR), as a learner's terminal would run it."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(cwd), "PYTHONIOENCODING": "utf-8"}  # cwd: a kit's own grader
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=600)
