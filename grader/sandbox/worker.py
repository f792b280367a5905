"""The sandboxed side of grading: run probes against a submission and answer with plain data.

Started by grader.sandbox as `python -I grader/sandbox/worker.py PACKAGE_DIR RESPONSE_FD` inside a scratch directory that holds only
the submission's package, the probes' modules and this file's few siblings. Requests arrive on stdin, answers leave on
RESPONSE_FD; the submission's own prints go to stdout/stderr, which the grader keeps only as feedback. The worker
never judges anything: it has nothing to judge with.
"""
from __future__ import annotations

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


def main() -> None:
    package_dir, response_fd = sys.argv[1], int(sys.argv[2])
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds grader/ and tests/
    sys.path.insert(0, here)
    sys.meta_path.insert(0, _Refuse())
    from grader.sandbox import wire
    from grader.suites import targets
    from grader.harness import ProbeError, plain, raised_in

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
            answer.update(ok=True, output=plain(probe(module, **request["inputs"]), request["probe"]))
        except NotImplementedError as error:
            answer.update(ok=False, kind="unimplemented", type="NotImplementedError", message=str(error),
                          where=raised_in(error))
        except ProbeError as error:
            answer.update(ok=False, kind="probe", type="ProbeError", message=str(error))
        except BaseException as error:  # SystemExit, KeyboardInterrupt from the submission: report, keep serving
            answer.update(ok=False, kind="error", type=type(error).__name__, message=str(error)[:4000],
                          traceback="".join(traceback.format_exception(  # from the probe down
                              type(error), error, error.__traceback__.tb_next))[-4000:])
        try:
            wire.send(responses, answer)
        except (ValueError, TypeError) as error:  # e.g. an output too large or not encodable
            wire.send(responses, {"id": request["id"], "ok": False, "kind": "probe", "type": "WireError",
                                  "message": f"the output could not be sent: {error}"})


if __name__ == "__main__":
    main()
