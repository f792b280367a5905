"""Targets: the package a stage suite runs against.

A target is a directory of stage modules: `exercises` (the learner's), `solutions` (the reference), or any path to a
copy of exercises/ (a submission). It is imported as a package under a name of its own, so that modules inside it
import each other relatively (`from .tensor import Tensor`) and a submission never shadows the repository's packages.
"""
from __future__ import annotations

import hashlib
import importlib
import sys
import types
from pathlib import Path

from ..manifest import ROOT

NAMED = {"exercises": ROOT / "exercises", "solutions": ROOT / "solutions"}


class TargetError(ValueError):
    """The target does not exist or is not a directory of stage modules; the message says which."""


def resolve(spec: str | Path) -> Path:
    """The directory a target names: 'exercises', 'solutions', or a path (a folder holding exercises/ is accepted)."""
    if str(spec) in NAMED:
        return NAMED[str(spec)]
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise TargetError(f"target {spec!r}: no such directory")
    if not path.is_dir():
        raise TargetError(f"target {spec!r} is a file; give the directory that holds the stage modules")
    if not any(path.glob("*.py")) and (path / "exercises").is_dir():
        path = path / "exercises"
    if not any(path.glob("*.py")):
        raise TargetError(f"target {spec!r} holds no Python modules (expected a copy of exercises/)")
    return path


def package_name(path: Path) -> str:
    """The import name of a target directory: its own name for the repository's packages, a unique alias otherwise."""
    for name, named_path in NAMED.items():
        if path == named_path.resolve():
            return name
    return "target_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def load(spec: str | Path) -> types.ModuleType:
    """Import a target directory as a package (without running its __init__.py, which may be absent)."""
    path = resolve(spec)
    name = package_name(path)
    package = sys.modules.get(name)
    if package is None or list(getattr(package, "__path__", [])) != [str(path)]:
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        package.__file__ = None
        sys.modules[name] = package
    return package


def stage_module(package: types.ModuleType, module: str) -> types.ModuleType:
    """`package.module`, imported (errors in the learner's module propagate with their traceback)."""
    return importlib.import_module(f"{package.__name__}.{module}")
