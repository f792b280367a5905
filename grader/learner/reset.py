"""`python -m grader reset STAGE [FUNCTION]`: the way back to the stub, keeping what you had.

Without FUNCTION the stage's whole module goes back to the skeleton; with it, only that function's body does (found
by parsing the module, so the rest of your file is untouched). FUNCTION is a name as the stub names it:
`CharTokenizer.encode`, or just `encode` when only one function of the module has that name. Either way the file as it
was is first copied to `.backup/<module>.py.<date-time>` inside the target folder: copy it back to undo. The skeleton
comes from grader/learner/pristine.py (the kit's own copy, or the one generated from solutions/), so a student kit
without git can reset too.
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import time
from pathlib import Path

from .. import manifest, report
from ..manifest import Stage
from ..source import functions as functions_of
from ..suites import targets
from . import functions, pristine

BACKUP = ".backup"


class ResetError(ValueError):
    """Nothing was changed; the message says why and what to do instead."""


def backup(path: Path) -> Path:
    """Copy `path` to .backup/<name>.<date-time> beside it (a second backup in the same second gets -2, -3, ...)."""
    folder = path.parent / BACKUP
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    destination, count = folder / f"{path.name}.{stamp}", 1
    while destination.exists():
        count += 1
        destination = folder / f"{path.name}.{stamp}-{count}"
    shutil.copy2(path, destination)
    return destination


def _parse(text: str, where: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as error:
        raise ResetError(f"{where} does not parse (line {error.lineno}: {error.msg}), so one function in it cannot be "
                         f"found; fix that line, or reset the whole module") from None


def _body_span(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """0-based [start, end) lines of a function's body after its docstring (the signature and docstring stay)."""
    has_docstring = ast.get_docstring(node, clean=False) is not None
    start = node.body[0].end_lineno if has_docstring else node.body[0].lineno - 1
    if not has_docstring and node.body[0].lineno == node.lineno:
        raise ResetError(f"{node.name} is written on one line with its def; put its body on lines of its own first")
    return start, node.end_lineno


def _indent(line: str) -> str:
    return re.match(r"[ \t]*", line)[0]


def replace_body(current: str, skeleton: str, function: str, where: str) -> str:
    """`current` with `function`'s body (after the docstring) taken from `skeleton`, re-indented to fit."""
    mine = dict(functions_of(_parse(current, where)))
    theirs = dict(functions_of(_parse(skeleton, "the skeleton")))
    if function not in mine:
        raise ResetError(f"{where} has no function {function} (was it renamed or deleted? reset the whole module)")
    lines, pristine_lines = current.splitlines(), skeleton.splitlines()
    start, end = _body_span(mine[function])
    pristine_start, pristine_end = _body_span(theirs[function])
    mine_indent = _indent(lines[mine[function].lineno - 1])
    their_indent = _indent(pristine_lines[theirs[function].lineno - 1])
    body = [mine_indent + line[len(their_indent):] if line.startswith(their_indent) else line
            for line in pristine_lines[pristine_start:pristine_end]]
    result = "\n".join(lines[:start] + body + lines[end:]) + "\n"
    _parse(result, f"{where} after the reset")  # never write a file that no longer parses
    return result


def reset(stage: Stage, function: str | None, target: str) -> str:
    """Restore the stage's module (or one function of it); returns what to tell the learner."""
    folder = targets.resolve(target)
    path = folder / f"{stage.module}.py"
    shown = report.shown_path(path)
    skeleton = pristine.text(stage.module)
    if skeleton is None:
        raise ResetError(f"there is no skeleton of {stage.module}.py to restore from (neither grader/pristine/ nor "
                         f"solutions/ is in this copy); if your folder is a git repository, `git checkout -- "
                         f"{shown}` restores the last committed version")
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if function is None:
        if current == skeleton:
            return f"{shown} is already the skeleton: nothing to reset."
        saved = backup(path) if current is not None else None
        path.write_text(skeleton, encoding="utf-8", newline="\n")
        done = f"Reset {shown} to the skeleton of stage {stage.label}."
    else:
        if current is None:
            raise ResetError(f"{shown} does not exist; `python -m grader reset {stage.id}` restores the whole module")
        names = functions.matching(stage, function)
        if not names:
            known = ", ".join(pristine.learner_functions(stage))
            raise ResetError(f"stage {stage.id} has no function {function!r} for you to write; its functions are: "
                             f"{known}")
        if len(names) > 1:
            raise ResetError(f"{function!r} names {len(names)} functions of {stage.module}.py: {', '.join(names)}; "
                             f"give the one you mean")
        updated = replace_body(current, skeleton, names[0], shown)
        if updated == current:
            return f"{names[0]} in {shown} is already the stub: nothing to reset."
        saved = backup(path)
        path.write_text(updated, encoding="utf-8", newline="\n")
        done = f"Reset {names[0]} in {shown} to its stub; the rest of the file is as it was."
    if saved is not None:
        done += f"\nYour version is kept in {report.shown_path(saved)} (copy it back to undo)."
    return done


def cmd_reset(args: argparse.Namespace) -> int:
    report.say(reset(manifest.stage(args.stage), args.function, args.target))  # a ResetError: `error: ...`, exit 2
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("reset", help="restore a stage's stubs (or one function's), keeping a backup")
    parser.add_argument("stage", metavar="STAGE", help="a stage id such as 01")
    parser.add_argument("function", nargs="?", default=None, metavar="FUNCTION",
                        help="only this function's body, e.g. encode or CharTokenizer.encode (default: the whole "
                             "module)")
    parser.add_argument("--target", default=argparse.SUPPRESS,
                        help="exercises (default), or a path to a copy of exercises/")
    parser.set_defaults(func=cmd_reset)
