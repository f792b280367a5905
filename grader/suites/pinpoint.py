"""Where in the learner's code a failure happened, and on which input, said in a few lines.

When the target's code raises, the traceback holds the answer: the deepest frame whose file is inside the target
folder is the learner's line that raised (or called the NumPy function that did), and the harness frame that ran the
probe holds the probe and its inputs. A module that does not compile or import is said as such, with the compiler's
message and location. Values are written as numbers (0.09, not np.float64(0.09000000000000001)).
"""
from __future__ import annotations

import linecache
import re
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np

from . import targets

INPUTS_LIMIT = 300
NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint|complex|bool|longdouble|half|single|double)\w*\(([^()]*)\)")


def numbers(text: str) -> str:
    """'np.float64(0.09)' -> '0.09' wherever NumPy 2's scalar reprs appear in a message."""
    return NUMPY_SCALAR.sub(r"\1", text)


def short(value: Any, limit: int = 60) -> str:
    """A value in a few characters: numbers as numbers, arrays by shape and dtype (and values when few)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        text = repr(value)  # 1.0 stays 1.0; 0.30000000000000004 becomes 0.3
        return text if len(text) <= 10 else f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else repr(value[: limit - 8])[:-1] + "...'" + f" ({len(value)} chars)"
    if isinstance(value, np.ndarray):
        shape = "x".join(str(n) for n in value.shape) or "scalar"
        if value.size <= 6 and value.dtype.kind in "biuf":
            return f"array {shape} {value.dtype} [{', '.join(short(v) for v in value.ravel().tolist())}]"
        return f"array {shape} {value.dtype}"
    if isinstance(value, (list, tuple)):
        open_, close = "[]" if isinstance(value, list) else "()"
        shown = [short(v, 20) for v in value[:6]]
        more = f", ... ({len(value)} items)" if len(value) > 6 else ""
        return open_ + ", ".join(shown) + more + close
    if isinstance(value, dict):
        shown = [f"{k}: {short(v, 20)}" for k, v in list(value.items())[:6]]
        return "{" + ", ".join(shown) + (", ..." if len(value) > 6 else "") + "}"
    return type(value).__name__


def call(probe: str, inputs: dict) -> str:
    """'probe_sample(text='hello', n=2, seed=0)', cut at INPUTS_LIMIT characters."""
    text = f"{probe}(" + ", ".join(f"{k}={short(v)}" for k, v in inputs.items()) + ")"
    return text if len(text) <= INPUTS_LIMIT else text[: INPUTS_LIMIT - 4] + " ...)"


def _inside(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _frames(traceback: TracebackType | None) -> list[tuple[FrameType, int]]:
    found = []
    while traceback is not None:
        found.append((traceback.tb_frame, traceback.tb_lineno))
        traceback = traceback.tb_next
    return found


def _chain(error: BaseException) -> list[BaseException]:
    """The error and the ones it was raised from or during (a harness may re-raise a stub's error `from None`)."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _message(error: BaseException, folder: Path) -> str:
    """'ModuleNotFoundError: No module named 'exercises.tensr'': numbers as numbers, and the target's own name where
    the grader imported it under an alias (target_1a2b3c...)."""
    text = numbers(str(error))
    alias = targets.package_name(folder)
    if alias != folder.name:
        text = text.replace(f"{alias}.", f"{folder.name}.")
    return f"{type(error).__name__}: {text}"


def _shown(filename: str, folder: Path) -> str:
    """The learner's file as they know it: 'exercises/ngram.py'."""
    return f"{folder.name}/{Path(filename).resolve().relative_to(folder).as_posix()}"


def locate(error: BaseException, folder: Path) -> dict | None:
    """Where the learner's code raised `error`: {file, path, line, source, function, kind, caret?, probe?, inputs?}.

    kind is 'import' (the module did not compile or import), 'stub' (a NotImplementedError still in place) or
    'call' (their code raised while the probe ran it). None when no frame of the target raised (a wrong value, judged
    afterwards, has no place in their code to point at)."""
    folder = Path(folder).resolve()
    for link in _chain(error):
        if isinstance(link, SyntaxError) and link.filename and _inside(link.filename, folder):
            where = {"file": _shown(link.filename, folder), "path": str(Path(link.filename).resolve()),
                     "line": link.lineno, "source": (link.text or "").rstrip("\r\n"), "function": None,
                     "kind": "import", "message": f"{type(link).__name__}: {link.msg}"}
            if link.offset and link.text:
                indent = len(link.text) - len(link.text.lstrip())
                where["caret"] = max(link.offset - 1 - indent, 0)
            return where
        frames = _frames(link.__traceback__)
        ours = [(frame, line) for frame, line in frames if _inside(frame.f_code.co_filename, folder)]
        if not ours:
            continue
        frame, line = ours[-1]
        importing = any(f.f_code.co_name == "<module>" for f, _ in ours)
        kind = "import" if importing else "stub" if isinstance(link, NotImplementedError) else "call"
        code = frame.f_code
        where = {"file": _shown(code.co_filename, folder), "path": str(Path(code.co_filename).resolve()),
                 "line": line, "source": linecache.getline(code.co_filename, line).strip(),
                 "function": None if code.co_name == "<module>" else getattr(code, "co_qualname", code.co_name),
                 "kind": kind, "message": _message(link, folder)}
        probe = next((f for f, _ in frames if f.f_code.co_name == "run_probe" and "probe" in f.f_locals), None)
        if probe is not None and isinstance(probe.f_locals.get("inputs"), dict):
            where["probe"] = getattr(probe.f_locals["probe"], "__name__", "probe")
            where["inputs"] = call(where["probe"], probe.f_locals["inputs"])
        return where
    return None


def describe(where: dict) -> str:
    """The lines a failure message gains: the place, its source line (with a caret for a syntax error), the input."""
    place = f"in {where['file']}, line {where['line']}"
    if where.get("function"):
        place += f", in {where['function']}"
    if where["kind"] == "import":
        place += " (the module does not import, so no test of it can run)"
    lines = [place + ":"]
    if where.get("source"):
        lines.append(f"    {where['source'].strip()}")
        if where.get("caret") is not None:
            lines.append("    " + " " * where["caret"] + "^")
    if where.get("inputs"):
        lines.append(f"while running {where['inputs']}")
    return "\n".join(lines)
