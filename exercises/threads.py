"""`--threads N` for the commands (given code, nothing to implement): how many threads NumPy's matrix library uses.

    python -m solutions.train --preset cpu-small --threads 1       (or exercises.train, solutions.generate, ...)

Why it exists: the matrix library under NumPy (OpenBLAS; MKL or Apple's Accelerate in some builds) starts one thread
per core. On a machine whose cores are busy with other work those threads wait for each other, and training ran 4 to
6 times slower than with one thread (measured on a shared 2-core machine). Without --threads nothing changes.

Why it works this way: the library reads its thread count from environment variables ONCE, when NumPy is imported,
and every module of this package imports NumPy at its top. Changing the count later needs a library such as
threadpoolctl, and this package imports only NumPy and the standard library. So the variables are set before any
module loads: `python -m package.module` imports the package (its __init__.py, which imports this module first) and
only then the module, and while the package is imported sys.argv[0] is "-m" (Python's documented behaviour of -m, the
same on Windows, macOS and Linux). Only then is the command line read: a program or a test that imports the package
keeps its own command line to itself. (Starting the interpreter again with the variables set would work too, but it
starts Python twice, cannot replace the process on Windows, and would run every rank twice under mpiexec.)
"""
from __future__ import annotations

import argparse
import os
import sys

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def requested(argv: list[str]) -> int | None:
    """N from `--threads N` or `--threads=N` in argv (the last one wins, as in argparse); None when absent or not a
    positive integer (the command's own argparse then reports the mistake)."""
    count = None
    for i, argument in enumerate(argv):
        if argument == "--":  # what follows is not an option
            break
        value = argv[i + 1] if argument == "--threads" and i + 1 < len(argv) else None
        if argument.startswith("--threads="):
            value = argument.partition("=")[2]
        if value is not None:
            count = int(value) if value.isdigit() and int(value) > 0 else None
    return count


def apply(count: int) -> None:
    """Set every thread-count variable the matrix libraries read to `count` (effective only before NumPy loads)."""
    for name in VARIABLES:
        os.environ[name] = str(count)


def from_command_line() -> int | None:
    """Called once, by the package's __init__.py: apply --threads N when Python was started as `python -m
    <this package>.<module> ... --threads N`; return N (None when it did nothing)."""
    if sys.argv[:1] != ["-m"]:  # not `python -m` of a module of this package: the command line is not ours to read
        return None
    count = requested(sys.argv[1:])
    if count is not None:
        apply(count)
    return count


def _positive(text: str) -> int:
    if not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of threads, got {text!r}")
    return int(text)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The --threads option of every command, so that argparse accepts it and lists it in --help."""
    parser.add_argument("--threads", type=_positive, default=None, metavar="N",
                        help="threads for NumPy's matrix products (default: the library's, one per core); read before "
                             "NumPy loads, so only when the command is started with python -m")


def too_late(count: int | None) -> str | None:
    """A note when --threads N was asked for but NumPy already runs with another setting (main() called from Python,
    where NumPy was loaded first): how to get the effect. None when there is nothing to say."""
    if count is None or os.environ.get("OPENBLAS_NUM_THREADS") == str(count):
        return None
    return (f"note: --threads {count} has no effect here, NumPy was loaded before it was read; start the command "
            f"with python -m ... --threads {count}, or set OMP_NUM_THREADS={count} and OPENBLAS_NUM_THREADS={count} "
            f"before Python starts")
