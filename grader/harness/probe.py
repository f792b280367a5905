"""The probe side of the harness: what runs beside the target's code (in a sandboxed worker, when grading).

A probe calls the target and returns plain data; `plain` refuses anything else. Nothing here judges.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

Plain = Any  # None | bool | int | float | str | np.ndarray | list[Plain] | dict[str, Plain]


class ProbeError(TypeError):
    """A probe produced something that is not plain data."""


class Unimplemented(AssertionError):
    """The target still raises NotImplementedError for what the probe called."""


def plain(value: Any, where: str = "output") -> Plain:
    """Convert a probe's result to plain data, refusing anything else (an object with a rigged __eq__, say)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):
        return plain(value.item(), where)
    if type(value) is np.ndarray:
        if value.dtype.kind not in "biufUS":
            raise ProbeError(f"{where}: array of dtype {value.dtype}; expected numbers")
        return value.copy()
    if type(value) in (list, tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            raise ProbeError(f"{where}: dict keys must be strings")
        return {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise ProbeError(f"{where}: {type(value).__name__} is not plain data (numbers, strings, arrays, lists, dicts)")


def raised(fn: Callable, *args, **kwargs) -> dict:
    """Call fn and record what happened as plain data: {'raised': type name, 'message': str} or {'returned': ...}.

    NotImplementedError is not recorded: it propagates, so an unfinished stub fails as unfinished.
    """
    try:
        value = fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # the point is to record any exception type the target raises
        return {"raised": type(error).__name__, "message": str(error), "bases": [c.__name__ for c in type(error).__mro__]}
    return {"returned": plain(value)}


def check_transportable(probe: Callable, inputs: dict) -> None:
    """A probe must be a module-level function and its inputs plain data, so a sandboxed worker can run it by name."""
    if "<" in probe.__qualname__ or "." in probe.__qualname__:
        raise ProbeError(f"probe {probe.__qualname__} must be a module-level function (no lambdas, closures or "
                         f"methods): the sandboxed grader calls it by name")
    if not probe.__name__.startswith("probe_"):
        raise ProbeError(f"probe {probe.__name__}: name probes probe_<what> so the sandbox can tell them apart")
    plain(inputs, f"inputs of {probe.__name__}")


def raised_in(error: BaseException) -> str:
    """The file name of the innermost frame of an exception's traceback: where the stub that raised it lives."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename.rsplit("/", 1)[-1] if traceback else "?"


def run_probe(probe: Callable, module: Any, inputs: dict, who: str) -> Plain:
    """Run a probe against one stage module; an unfinished stub becomes a clear `Unimplemented` failure."""
    __tracebackhide__ = True  # pytest shows the learner's frames, not this one
    try:
        return plain(probe(module, **inputs), f"{who} {probe.__name__}")
    except NotImplementedError as error:
        raise Unimplemented(f"NotImplementedError: {error} -- still a stub in {raised_in(error)}") from None
