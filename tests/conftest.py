"""The stage suites' options and fixtures live in grader/suites/fixtures.py; this file only makes them visible to pytest."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader.suites.fixtures import *  # noqa: E402,F401,F403  (pytest finds hooks and fixtures by name)
