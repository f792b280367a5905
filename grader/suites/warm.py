"""A pytest process started ahead of time, so that a check after a save starts at once (used by `watch`).

Started as `python -m grader.suites.warm` while the learner is still typing, it imports what every run needs (pytest,
NumPy, the harness, the fixtures and the recording plugin: about a third of a second of CPU, more on a busy machine)
and waits. The runner then writes one JSON line to its stdin, {"args": [...], "log": PATH, "cwd": DIR}; it sends its
output to PATH and runs pytest with those arguments, exactly as `python -m pytest ARGS` would. Nothing of the learner's
code has been imported before that line arrives, so each run still imports it fresh, and each process runs once.
"""
from __future__ import annotations

import json
import os
import sys


def main() -> int:
    import numpy  # noqa: F401  (the slow imports, done ahead)
    import pytest

    from . import fixtures, plugin  # noqa: F401
    line = sys.stdin.readline()
    if not line:  # the watch ended without a check for this process
        return 0
    order = json.loads(line)
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(order["cwd"])
    return int(pytest.main(order["args"]))


if __name__ == "__main__":
    sys.exit(main())
