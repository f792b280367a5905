"""The given --threads option (solutions/threads.py, copied to exercises/ as it is): the package sets the matrix
library's thread count from `python -m <package>.<command> --threads N` before NumPy loads, and leaves every other
command line alone. Each case runs a fresh interpreter, since the setting only counts before NumPy is imported."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.harness import EXACT, assert_close

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
threads = importlib.import_module(f"{PACKAGE}.threads")

# In the child: what the variables hold and how many threads NumPy's BLAS really runs (threadpoolctl asks the loaded
# library itself), and whether NumPy was loaded before the package read the command line.
REPORT = ("import json, os, sys; from threadpoolctl import threadpool_info; "
          "print(json.dumps({'variables': {name: os.environ.get(name) for name in %r}, "
          "'blas_threads': sorted({pool['num_threads'] for pool in threadpool_info() if pool['user_api'] == 'blas'})}))")


def run(code: str, *arguments: str, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in threads.VARIABLES} | (variables or {})
    return subprocess.run([sys.executable, "-c", code, *arguments], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("argv, expected", [
    (["--preset", "cpu-small", "--threads", "3"], 3), (["--threads=2"], 2), (["--threads", "1", "--threads", "4"], 4),
    ([], None), (["--threads"], None), (["--threads", "0"], None), (["--threads", "two"], None),
    (["--", "--threads", "3"], None), (["--threads-per-core", "3"], None)])
def test_requested_reads_the_option_as_argparse_would(argv, expected):
    assert_close(threads.requested(argv), expected, EXACT, f"requested({argv})")


def test_python_m_with_threads_sets_the_variables_before_numpy_loads():
    # `python -m PACKAGE.train --threads 1` as Python runs it: runpy imports the package while sys.argv[0] is "-m",
    # then runs the module (here only to print its --help). The variables start at 2, so 1 can only come from --threads.
    code = (f"import sys, runpy; sys.argv = ['-m', '--threads', '1', '--help']\n"
            f"assert 'numpy' not in sys.modules\n"
            f"try:\n    runpy.run_module('{PACKAGE}.train', run_name='__main__', alter_sys=True)\n"
            f"except SystemExit:\n    pass\n" + REPORT % (threads.VARIABLES,))
    done = run(code, variables=dict.fromkeys(threads.VARIABLES, "2"))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert_close(got, {"variables": dict.fromkeys(threads.VARIABLES, "1"), "blas_threads": [1]}, EXACT,
                 "the variables and NumPy's BLAS threads after `python -m train --threads 1`")


def test_the_real_command_accepts_threads_and_does_not_say_it_came_too_late():
    done = subprocess.run([sys.executable, "-m", f"{PACKAGE}.generate", "--threads", "1", "--checkpoint",
                           "no-such-checkpoint.npz", "--prompt", "a"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k not in threads.VARIABLES})
    assert done.returncode == 2 and "no checkpoint file" in done.stderr, done.stderr  # parsed, then refused the file
    assert "has no effect" not in done.stderr, f"the package did not apply --threads before NumPy: {done.stderr}"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused_by_the_command(value):
    done = subprocess.run([sys.executable, "-m", f"{PACKAGE}.train", f"--threads={value}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "positive number of threads" in done.stderr, done.stderr


def test_main_called_from_python_says_the_option_came_too_late():
    code = (f"from {PACKAGE}.generate import main\n"
            f"main(['--threads', '1', '--checkpoint', 'no-such-checkpoint.npz', '--prompt', 'a'])")
    done = run(code)
    assert done.returncode == 2 and "--threads 1 has no effect here" in done.stderr, done.stderr


def test_a_program_that_imports_the_package_keeps_its_own_command_line():
    # `python -c ... --threads 1` (or any script with its own --threads) imports the package: nothing may change
    done = run(f"import {PACKAGE}.train\n" + REPORT % (threads.VARIABLES,), "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert_close(json.loads(done.stdout)["variables"], dict.fromkeys(threads.VARIABLES), EXACT,
                 "the variables after importing the package from a program whose own argv has --threads 1")
