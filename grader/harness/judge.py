"""The judge side of the harness: tolerances, comparisons that teach, and the seeded inputs tests are made from.

It runs only in the trusted process: it compares the target's plain data with the reference's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .probe import Plain, is_record

# ---------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tol:
    """How close is close enough, and why. |got - want| <= atol + rtol * |want|, elementwise."""

    rtol: float
    atol: float
    why: str

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g} ({self.why})"


EXACT = Tol(0.0, 0.0, "integers, strings and exact arithmetic must match exactly")
F64 = Tol(1e-9, 1e-12, "float64; only the order of summation may differ from the reference")
F32 = Tol(1e-4, 1e-6, "float32 keeps ~7 significant digits; reductions in another order differ in the last ones")
GRADCHECK = Tol(1e-5, 1e-7, "central differences in float64 with eps=1e-6 have truncation error O(eps^2)")


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer with a recognisable signature: `matches(got, want)` is True when it is the likely cause."""

    description: str
    matches: Callable[[Plain, Plain], bool]


def _short(value: Plain, limit: int = 160) -> str:
    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=6, threshold=12, edgeitems=3, separator=", ")
        text = f"array(shape={value.shape}, dtype={value.dtype}) {text}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Mismatch(AssertionError):
    """The target's output is not the expected one; the message teaches what differs and where."""


def _diff(got: Plain, want: Plain, tol: Tol, path: str) -> str | None:
    """None when got matches want within tol; otherwise a description of the first difference."""
    if is_record(want) or (is_record(got) and _written_record(want)):
        return _diff_record(got, _written_record(want) or want, tol, path)
    if is_record(got) and "raised" in got:  # the probe let a call's exception stand for its output
        return _Outcome(f"{path}: expected {_short(want)}, but {got['call']} raised {got['raised']}: "
                        f"{_said(got['message'])}")
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            return f"{path}: expected keys {sorted(want)}, got {keys}"
        for key in want:
            found = _diff(got[key], want[key], tol, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(want, list) and not isinstance(got, np.ndarray):
        if not isinstance(got, list) or len(got) != len(want):
            size = len(got) if isinstance(got, list) else type(got).__name__
            return f"{path}: expected a list of {len(want)}, got {size}: {_short(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            found = _diff(g, w, tol, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(want, (str, type(None))) or isinstance(got, (str, type(None))):
        same = type(got) is type(want) and got == want  # the type first: None == array would be elementwise
        return None if same else f"{path}: expected {_short(want)}, got {_short(got)}"
    return _diff_numeric(got, want, tol, path)


class _Outcome(str):
    """A difference in what a call did (raised, returned, the message): no tolerance applies to it."""


def _said(message: str, limit: int = 160) -> str:
    """An exception's message as the learner wrote it, on one line and cut to `limit` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mentions(want: dict) -> str:
    """' whose message mentions 'z' and 'position 3'' for the record's required fragments ('' for none)."""
    parts = [repr(m) if isinstance(m, str) else " or ".join(map(repr, m)) for m in want["mentions"]]
    return f" whose message mentions {' and '.join(parts)}" if parts else ""


def _missing(message: str, mentions: list) -> list:
    """The required fragments (or groups of alternatives) that the message does not contain, case-insensitively."""
    text = message.lower()
    return [m for m in mentions if not any(a.lower() in text for a in ([m] if isinstance(m, str) else m))]


def _written_record(want: Plain) -> dict | None:
    """A record written by hand in a test, `{"raised": "ValueError", "mentions": ["position"]}` or `{"returned": 3}`,
    completed to what `raised` records; None when `want` is not one."""
    if (not isinstance(want, dict) or is_record(want) or ("raised" in want) == ("returned" in want)
            or not set(want) <= {"raised", "returned", "mentions", "call"}):
        return None
    return {"call": "the call", "mentions": [], **want, **({"builtin": True} if "raised" in want else {})}


def _diff_record(got: Plain, want: dict, tol: Tol, path: str) -> str | None:
    """Judge a `raised(...)` record by outcome: the exact builtin exception and what its message names, or the value.

    Messages are the learner's to word: they are never compared with the reference's, only searched for the fragments
    the test requires (the reference's record carries them, so a submission cannot choose them).
    """
    call = want["call"]
    if not is_record(got):  # not produced by raised(): the probe itself went wrong
        return _Outcome(f"{path}: expected the outcome of {call}, got {_short(got)}")
    if "raised" not in want:
        if "raised" in got:
            return _Outcome(f"{path}: expected {call} to return {_short(want['returned'])}, but it raised "
                            f"{got['raised']}: {_said(got['message'])}")
        return _diff(got["returned"], want["returned"], tol, f"{path} ({call} returned)")
    if not want.get("builtin"):
        raise AssertionError(f"test defect at {path}: the reference raised {want['raised']}, which is not a builtin "
                             f"exception; a test may only require builtin exception types")
    if "message" in want and _missing(want["message"], want["mentions"]):
        raise AssertionError(f"test defect at {path}: the reference's own message does not mention "
                             f"{_missing(want['message'], want['mentions'])}: {want['message']!r}")
    expected = f"expected {call} to raise {want['raised']}{_mentions(want)}"
    if "raised" not in got:
        return _Outcome(f"{path}: {expected}, but it returned {_short(got['returned'], 100)}")
    if not got.get("builtin"):
        return _Outcome(f"{path}: {expected}, but it raised {got['raised']}, a class of its own (not the builtin "
                        f"exception of that name, whatever it derives from): raise the builtin {want['raised']} "
                        f"itself")
    if got["raised"] != want["raised"]:
        hint = " (for a bad value, raise ValueError: KeyError says a key is missing)" if got["raised"] == "KeyError" \
            else ""
        return _Outcome(f"{path}: {expected}, but it raised {got['raised']}: {_said(got['message'])}{hint}")
    missing = _missing(got["message"], want["mentions"])
    if missing:
        names = ", ".join(repr(m) if isinstance(m, str) else " or ".join(map(repr, m)) for m in missing)
        return _Outcome(f"{path}: {expected}; it raised {want['raised']} but its message does not mention {names}: "
                        f"{_said(got['message'])}")
    return None


def _diff_numeric(got: Plain, want: Plain, tol: Tol, path: str) -> str | None:
    try:
        got_array = np.asarray(got)
        want_array = np.asarray(want)
    except Exception:  # a ragged list, for instance
        return f"{path}: expected {_short(want)}, got {_short(got)}"
    if got_array.dtype.kind not in "biuf" or want_array.dtype.kind not in "biuf":
        return f"{path}: expected {_short(want)}, got {_short(got)}"
    if got_array.shape != want_array.shape:
        return f"{path}: expected shape {want_array.shape}, got shape {got_array.shape}"
    got64, want64 = got_array.astype(np.float64), want_array.astype(np.float64)
    finite_wanted = np.isfinite(want64)
    if not (np.array_equal(np.isfinite(got64), finite_wanted)
            and np.array_equal(got64[~finite_wanted], want64[~finite_wanted], equal_nan=True)):
        same = (got64 == want64) | (np.isnan(got64) & np.isnan(want64))
        bad = np.argwhere((np.isfinite(got64) != finite_wanted) | (~finite_wanted & ~same))
        index = tuple(int(i) for i in bad[0]) if len(bad) else ()
        wrong = int(len(bad))
        where = f"index {index}" if index else "the value"
        if np.isfinite(got64[index]):  # e.g. a masked logit that should be -inf came out finite
            what = f"{wrong} values differ in being NaN/inf: finite where NaN/inf was expected"
        elif np.isfinite(want64[index]):
            what = f"{wrong} values differ in being NaN/inf: NaN/inf where finite values were expected"
        else:
            what = f"{wrong} values are a different NaN/inf than expected"
        return (f"{path}: {what}, first at {where}: expected {float(want64[index]):.8g}, "
                f"got {float(got64[index]):.8g}")  # numbers, not np.float64(...) reprs
    error = np.abs(np.where(finite_wanted, got64, 0.0) - np.where(finite_wanted, want64, 0.0))
    allowed = tol.atol + tol.rtol * np.abs(np.where(finite_wanted, want64, 0.0))  # 0 * inf would warn
    outside = error > allowed
    if not outside.any():
        return None
    worst = np.unravel_index(int(np.argmax(np.where(finite_wanted, error - allowed, -np.inf))), error.shape)
    index = tuple(int(i) for i in worst)
    where = f" at index {index}" if index else ""
    return (f"{path}: {int(outside.sum())} of {outside.size} values outside tolerance; worst{where}: "
            f"expected {want64[worst]:.8g}, got {got64[worst]:.8g} (|error| {error[worst]:.3g} > {allowed[worst]:.3g})"
            f"\n  expected: {_short(want)}\n  got:      {_short(got)}")


def assert_close(got: Plain, want: Plain, tol: Tol = F64, what: str = "output",
                 mistakes: Iterable[Mistake] = ()) -> None:
    """Judge got against want; on a difference raise Mismatch naming what, where, the tolerance and a likely mistake."""
    found = _diff(got, want, tol, what)
    if found is None:
        return
    lines = [found] if isinstance(found, _Outcome) else [found, f"  tolerance: {tol}"]
    for mistake in mistakes:
        try:
            if mistake.matches(got, want):
                lines.append(f"  likely mistake: {mistake.description}")
                break
        except Exception:  # a signature that does not apply to this output's structure
            continue
    raise Mismatch("\n".join(lines))


def assert_true(condition: bool, message: str) -> None:
    """Judge a property; the message says what was expected and what came."""
    if not condition:
        raise Mismatch(message)


def seeded(seed: int) -> np.random.Generator:
    """The one way tests make random inputs: a NumPy Generator from an explicit seed."""
    return np.random.default_rng(seed)


def randomise_parameters(module: Any, seed: int, dtype: Any = np.float64, spread: float = 0.2) -> None:
    """Give every parameter of a Module seeded values, by sorted name: matrices N(0, 1/rows), norm weights
    1 + N(0, spread²), biases N(0, spread²). Target and reference then hold the same weights whatever order they drew
    theirs in. dtype None writes in place (keeping each parameter's dtype); otherwise the data becomes that dtype.
    """
    rng = seeded(seed)
    for name, parameter in sorted(module.named_parameters(), key=lambda item: item[0]):
        if parameter.ndim == 2:
            value = rng.normal(size=parameter.shape) / np.sqrt(parameter.shape[0])
        elif name.endswith("bias"):
            value = spread * rng.normal(size=parameter.shape)
        else:
            value = 1.0 + spread * rng.normal(size=parameter.shape)
        if dtype is None:
            parameter.data[...] = value
        else:
            parameter.data = value.astype(dtype)


def central_difference(f: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d array by central differences, perturbing `array` in place (float64 arrays only; restored after).

    Test-side code: gradchecks use this on the target's forward pass, never the target's own gradchecker.
    Truncation error is O(eps^2) and rounding error O(1e-16 / eps), so eps=1e-6 gives ~1e-9 absolute accuracy.
    """
    if array.dtype != np.float64:
        raise TypeError(f"central differences need float64, got {array.dtype}")
    gradient = np.zeros_like(array)
    flat, flat_gradient = array.reshape(-1), gradient.reshape(-1)  # views: writes reach `array`
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        above = float(f())
        flat[i] = original - eps
        below = float(f())
        flat[i] = original
        flat_gradient[i] = (above - below) / (2 * eps)
    return gradient
