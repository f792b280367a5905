"""A pytest plugin that records each stage test's outcome through pytest's hooks (never by parsing its output).

Loaded by the grader's runner as `-p grader.suites.plugin --grader-report PATH`. It writes JSON lines to PATH as the run
goes: first {"collected": N}, then one record per test as it finishes, so a run that dies half-way still leaves what
it finished, and the runner can show progress while it waits. When the target's own code raised, the record's message
says where (file, line, source line) and on which probe input, and `where` holds the same as data (pinpoint.py); a
module that does not import gets the compiler's message and no hint.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .. import manifest
from ..harness import Mismatch, Unimplemented
from ..sandbox import SubmissionCrashed, SubmissionError
from . import pinpoint, targets

MESSAGE_LIMIT = 4000


def _die_with_the_grader() -> None:
    """A run started by the runner ends when the process that started it ends, however it ends (even SIGKILL): the
    sandbox's workers die with this process in turn, so killing `grade` leaves no worker behind."""
    import os
    import sys

    parent = os.environ.get("GRADER_PARENT", "")
    if not (parent.isdigit() and sys.platform.startswith("linux")):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # started by someone else with the variable inherited, or the grader already gone
        try:
            os.kill(int(parent), 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


_die_with_the_grader()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("workbook").addoption("--grader-report", default=None, help="write test outcomes as JSON lines")


def _message(excinfo: pytest.ExceptionInfo) -> str:
    error = excinfo.value
    if isinstance(error, (Mismatch, Unimplemented, SubmissionError, SubmissionCrashed)):
        text = str(error)
    elif isinstance(error, AssertionError) and str(error):
        text = f"AssertionError: {error}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " ..."


class Recorder:
    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        self.folder: Path | None = None  # the target's folder, once a failure needs it
        path.write_text("")

    def _write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._write({"collected": len(session.items)})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write({"collection_error": report.nodeid, "message": str(report.longrepr)[:MESSAGE_LIMIT]})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        record = self.records.setdefault(item.nodeid, self._new_record(item))
        record["duration"] += report.duration
        if report.failed and record["outcome"] != "failed":
            record["outcome"] = "failed"
            record["phase"] = report.when
            message = _message(call.excinfo) if call.excinfo else report.longreprtext[:MESSAGE_LIMIT]
            where = self._where(item, call.excinfo)
            if where is not None:
                record["where"] = where
                if where["kind"] == "import":  # the compiler's (or importer's) word, and no concept's hint
                    message, record["hint"] = where["message"], None
                message = f"{message}\n{pinpoint.describe(where)}"
            record["message"] = pinpoint.numbers(message)
            record["details"] = report.longreprtext[-MESSAGE_LIMIT:]
        elif report.skipped and record["outcome"] == "passed":
            record["outcome"] = "skipped"
            record["message"] = str(call.excinfo.value) if call.excinfo else "skipped"
        if report.when == "teardown":
            self._write(record)

    def _where(self, item: pytest.Item, excinfo: pytest.ExceptionInfo | None) -> dict | None:
        """Where the target's own code raised (not a stub: its message already names it), or None."""
        if excinfo is None:
            return None
        if self.folder is None:
            try:
                self.folder = targets.resolve(item.config.getoption("--target"))
            except (ValueError, KeyError):
                return None
        where = pinpoint.locate(excinfo.value, self.folder)
        return where if where is not None and where["kind"] != "stub" else None

    @staticmethod
    def _new_record(item: pytest.Item) -> dict:
        found = manifest.stage_of_test_path(item.path)
        marker = item.get_closest_marker("concept")
        concept = marker.args[0] if marker else None
        stage = found[0] if found else None
        return {
            "nodeid": item.nodeid,
            "name": item.name,
            "stage": stage.id if stage else None,
            "hidden": found[1] if found else False,
            "concept": concept,
            "hint": stage.hint(concept) if stage else None,
            "outcome": "passed",
            "message": "",
            "details": "",
            "phase": None,
            "duration": 0.0,
            "where": None,
        }


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--grader-report")
    if path:
        config.pluginmanager.register(Recorder(Path(path)), "grader-recorder")
