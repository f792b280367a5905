"""The probe side of the harness: what runs beside the target's code (in a sandboxed worker, when grading).

A probe calls the target and returns plain data; `plain` refuses anything else. Nothing here judges.
"""
from __future__ import annotations

import builtins
import importlib
import os
from types import ModuleType
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


MESSAGE_CHARACTERS = 2000  # of an exception's message kept in a record: enough for any fragment a test looks for


def raised(fn: Callable, *args, mentions: tuple = (), **kwargs) -> dict:
    """Call fn(*args, **kwargs) and record what happened as plain data, to be judged by `assert_close`:

        {'call': 'CharTokenizer.encode', 'raised': 'ValueError', 'builtin': True, 'message': ..., 'mentions': [...]}
        {'call': 'CharTokenizer.encode', 'returned': plain data, 'mentions': [...]}

    `builtin` is True only when the exception's class IS the builtin of that name: a class of the submission's own
    (a subclass of every builtin exception, or one renamed 'ValueError') does not count. A returned value that is not
    plain data is recorded by its type, '<CharTokenizer object>', so a call that should have raised fails as such.
    `mentions` is what the message must name when the reference raises (a string, or a list of alternatives of which
    one must appear; case-insensitive). Call only the target inside: work done here on the result is recorded as the
    target's exception. NotImplementedError is not recorded: it propagates, so an unfinished stub fails as unfinished.
    """
    call = getattr(fn, "__qualname__", None)
    record = {"call": call if type(call) is str and "<" not in call else "the call",
              "mentions": [m if type(m) is str else list(m) for m in mentions]}
    try:
        value = fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # the point is to record any exception type the target raises
        kind = type(error)
        name = kind.__name__ if type(kind.__name__) is str else "?"
        try:
            message = str(error)
        except Exception:  # a __str__ of the submission's that raises
            message = "<the exception could not be printed>"
        builtin = getattr(builtins, name, None) is kind  # identity: `__module__ = "builtins"` is easily forged
        return {**record, "raised": name, "builtin": builtin,
                "message": message[:MESSAGE_CHARACTERS] if type(message) is str else "<not a string>"}
    try:
        returned = plain(value)
    except (ProbeError, RecursionError):
        name = type(value).__name__
        returned = f"<{name if type(name) is str else '?'} object>"
    return {**record, "returned": returned}


def is_record(value: Any) -> bool:
    """True for what `raised` returns (the judge compares such records by outcome, not key by key)."""
    return (type(value) is dict and "call" in value and "mentions" in value
            and ("raised" in value or "returned" in value))


def sibling(module: ModuleType, name: str) -> ModuleType:
    """Another module of the same target as `module`: sibling(ngram, "tensor") is the tensor module beside it.

    Probes receive one stage module; a stage that builds on an earlier one reaches it here, so the target's own
    earlier module is used (the reference's beside the reference, the submission's beside the submission).
    """
    return importlib.import_module(f"{module.__package__}.{name}")


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
    return os.path.basename(traceback.tb_frame.f_code.co_filename) if traceback else "?"  # either separator


def run_probe(probe: Callable, module: Any, inputs: dict, who: str) -> Plain:
    """Run a probe against one stage module; an unfinished stub becomes a clear `Unimplemented` failure."""
    __tracebackhide__ = True  # pytest shows the learner's frames, not this one
    try:
        return plain(probe(module, **inputs), f"{who} {probe.__name__}")
    except NotImplementedError as error:
        raise Unimplemented(f"NotImplementedError: {error} -- still a stub in {raised_in(error)}") from None
