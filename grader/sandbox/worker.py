"""The sandboxed side of grading: run probes against a submission and answer with plain data.

Started by grader.sandbox as `python -I .../grader/sandbox/worker.py PACKAGE_DIR RESPONSE_FD` beside a copy of the
submission's package, the probes' modules and this file's few siblings, and nothing else. Requests arrive on stdin,
answers leave on RESPONSE_FD; the submission's own prints go to stdout/stderr, which only instructors see. The worker
never judges anything: it has nothing to judge with. Everything it answers is a claim the trusted side checks: an
error's type and frames (file, line) are only shown once matched with the submission's own files.
"""
from __future__ import annotations

import builtins
import importlib
import importlib.abc
import os
import sys
import traceback

FORBIDDEN = ("torch", "jax", "jaxlib", "tensorflow", "solutions", "grader.suites.runner", "grader.instructor")


class _Refuse(importlib.abc.MetaPathFinder):
    """Imports of frameworks and of the reference fail inside the sandbox, whatever the submission tries."""

    def find_spec(self, name, path=None, target=None):
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN):
            raise ImportError(f"importing {name!r} is not allowed in a submission (numpy and the standard library only)")
        return None


def _text(get) -> str:
    """A string from the submission's objects, whatever their __str__ does."""
    try:
        text = get()
        return text if type(text) is str else "<not a string>"
    except BaseException:  # noqa: BLE001 - a __str__ that raises, or a RecursionError
        return "<could not be printed>"


def _described(error: BaseException) -> dict:
    """An exception as data: its type, its frames from the probe down as [file, line], and its text (for
    instructors only: the trusted side shows a student the type and a checked line of the submission's own file)."""
    kind = type(error)
    name = _text(lambda: kind.__name__)
    frames = [[frame.f_code.co_filename, line] for frame, line in traceback.walk_tb(error.__traceback__)][-200:]
    if isinstance(error, SyntaxError):  # where the parser stopped is not a frame
        frames.append([_text(lambda: error.filename), error.lineno if type(error.lineno) is int else 0])
    return {"type": name, "builtin": getattr(builtins, name, None) is kind,
            "bases": [_text(lambda c=c: c.__name__) for c in kind.__mro__][:50], "frames": frames,
            "message": _text(lambda: str(error))[:4000],
            "traceback": _text(lambda: "".join(traceback.format_exception(kind, error, error.__traceback__)))[-4000:]}


def main() -> None:
    package_dir, response_fd = sys.argv[1], int(sys.argv[2])
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds grader/ and tests/
    sys.path.insert(0, here)
    sys.meta_path.insert(0, _Refuse())
    from grader.sandbox import wire
    from grader.suites import targets
    from grader.harness import ProbeError, plain

    responses = os.fdopen(response_fd, "wb", buffering=0)
    requests = sys.stdin.buffer
    package = targets.load(package_dir)
    wire.send(responses, {"ready": True})  # startup is not charged to the first probe's time limit
    while True:
        try:
            request = wire.read_frame(requests.read)
        except EOFError:
            return
        answer = {"id": request["id"]}
        try:
            probe = getattr(importlib.import_module(request["module"]), request["probe"])
            module = targets.stage_module(package, request["stage_module"])
            wire.send(responses, {"id": request["id"], "imported": True})  # what follows is the probe's own time
            answer.update(ok=True, output=plain(probe(module, **request["inputs"]), request["probe"]))
        except NotImplementedError as error:
            answer.update(ok=False, kind="unimplemented", **_described(error))
        except ProbeError as error:
            answer.update(ok=False, kind="probe", **_described(error))
        except BaseException as error:  # SystemExit, KeyboardInterrupt from the submission: report, keep serving
            answer.update(ok=False, kind="error", **_described(error))
        try:
            wire.send(responses, answer)
        except (ValueError, TypeError) as error:  # e.g. an output too large or not encodable
            wire.send(responses, {"id": request["id"], "ok": False, "kind": "unsendable", "type": "WireError",
                                  "message": f"the output could not be sent: {error}"})


if __name__ == "__main__":
    main()
