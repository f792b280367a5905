"""Run a submission's code only in a child process that can neither see the reference nor forge a grade.

The child (grader/sandbox/worker.py) runs in a scratch directory holding a copy of the submission's package and the probes'
modules, with limits on CPU time, address space, file size and processes, in a session of its own (so a fork bomb dies
with it). When the grader runs as root on Linux it also gets a private mount namespace in which the repository (the
reference solutions, the tests, the grader) is covered by an empty tmpfs, a network namespace with no interfaces, and
the unprivileged user `nobody`. It only ever answers with plain data (grader/sandbox/wire.py); the trusted process judges.
"""
from __future__ import annotations

import ast
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..harness import ProbeError, Unimplemented, plain
from .. import manifest
from ..manifest import ROOT
from . import wire

TRUSTED_FILES = ("__init__.py", "manifest.py", "harness/__init__.py", "harness/probe.py", "harness/judge.py",
                 "suites/__init__.py", "suites/targets.py", "sandbox/__init__.py", "sandbox/wire.py",
                 "sandbox/worker.py")  # what a worker imports, under grader/
PASSED_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                      "OPENBLAS_L2_SIZE", "LANG", "LC_ALL")
STARTUP_SECONDS = 120  # Python and NumPy starting on a loaded machine


@dataclass(frozen=True)
class Limits:
    timeout: float = 60.0  # wall seconds for one probe call
    memory_mb: int = 4096  # address space of the worker
    cpu_seconds: int = 1800  # CPU time of the worker over its life
    processes: int = 64  # for the unprivileged user
    file_mb: int = 64  # largest file the submission may write


class SubmissionCrashed(AssertionError):
    """The worker died, hung or answered nonsense; the test fails with what is known."""


class SubmissionError(AssertionError):
    """The submission's code raised while a probe ran; the message carries its type, text and traceback."""


def answer_of(answer: dict, module_file: str) -> Any:
    """Turn a worker's answer into plain data, or into the failure the in-process harness would have raised."""
    __tracebackhide__ = True
    if answer.get("ok") is True and "output" in answer:
        return plain(answer["output"], "the submission's output")
    kind, message = answer.get("kind"), str(answer.get("message", ""))
    if kind == "unimplemented":
        raise Unimplemented(f"NotImplementedError: {message} -- still a stub in {answer.get('where', module_file)}")
    if kind == "probe":
        raise ProbeError(message)
    trace = str(answer.get("traceback", "")).strip()
    raise SubmissionError(f"{answer.get('type', 'Error')}: {message}" + (f"\n{trace}" if trace else ""))


LEVELS = {
    "full": "private mounts hiding the repository and other sandboxes, no network, user nobody, resource limits",
    "unprivileged": "user nobody (no namespaces here: keep the reference unreadable to others), resource limits",
    "partial": "a separate process with resource limits, as the grader's own user (run as root on Linux for more)",
}



def isolation_level() -> str:
    """The strongest isolation this machine allows (see LEVELS); 'partial' wherever namespaces and users do not exist."""
    if not sys.platform.startswith("linux"):
        return "partial"
    from . import isolation
    return isolation.strongest_level()


def isolation_plan(scratch: str) -> list:
    from . import isolation
    return isolation.hide_plan(scratch)


def visible_suites() -> tuple[Path, ...]:
    return tuple(ROOT / stage.test_dir(hidden=False) for stage in manifest.stages())


def _imported_test_modules(source: Path) -> set[str]:
    """The `tests.*` modules a test module imports (absolutely, or relatively within tests/)."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return set()
    package = ".".join(source.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from tests.stage06 import helpers`
    return {name for name in found if name == "tests" or name.startswith("tests.")}


def probe_files(suites: Iterable[Path]) -> list[Path]:
    """The test modules in `suites` (folders, not recursive) and every test module they import, transitively.

    Only these are copied beside the worker: a run of the visible suites puts no hidden suite on its disk.
    """
    tests = (ROOT / "tests").resolve()
    pending = [p for folder in suites for p in sorted(Path(folder).glob("*.py")) if p.name != "conftest.py"]
    seen: set[Path] = set()
    while pending:
        path = pending.pop().resolve()
        if path in seen or tests not in path.parents or path.name == "conftest.py":
            continue
        seen.add(path)
        for name in _imported_test_modules(path):
            module = ROOT.joinpath(*name.split("."))
            for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                if candidate.is_file():
                    pending.append(candidate)
    return sorted(seen)


class Sandbox:
    """A persistent worker for one submission package; restarted after a crash or a timeout."""

    def __init__(self, package_dir: str | Path, limits: Limits = Limits(), level: str | None = None,
                 suites: Iterable[str | Path] | None = None):
        """`suites`: the folders of the test modules whose probes will run (default: every visible suite); only
        they, and the test modules they import, are copied where the worker can read them."""
        self.limits = limits
        self.level = level or isolation_level()
        self.suites = tuple(ROOT / folder for folder in suites) if suites is not None else visible_suites()
        self.scratch = Path(tempfile.mkdtemp(prefix="grader-sandbox-"))
        self._stage(Path(package_dir))
        self._process: subprocess.Popen | None = None
        self._responses = -1
        self._next_id = 0
        self.log = self.scratch / "output.log"
        self._plan = isolation_plan(str(self.scratch)) if self.level == "full" else []

    @property
    def isolation(self) -> str:
        return f"{self.level}: {LEVELS[self.level]}"

    def _stage(self, package_dir: Path) -> None:
        """Copy in the submission's modules, the probes' modules and the worker: nothing else."""
        os.chmod(self.scratch, 0o755)
        package = self.scratch / "package"
        package.mkdir()
        for source in package_dir.glob("*.py"):
            shutil.copy(source, package / source.name)
        trusted = self.scratch / "trusted"
        for name in TRUSTED_FILES:
            (trusted / "grader" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "grader" / name, trusted / "grader" / name)
        for source in probe_files(self.suites):
            relative = source.relative_to(ROOT)
            (trusted / relative.parent).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, trusted / relative)
        for folder in [trusted / "tests", *(trusted / "tests").rglob("*")]:
            if folder.is_dir():
                (folder / "__init__.py").touch()
        work = self.scratch / "work"
        work.mkdir()
        for path in self.scratch.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(work, 0o777)

    def _start(self) -> None:
        read_end, write_end = os.pipe()
        plan, limits, level = self._plan, self.limits, self.level

        prepare = self._prepare_child(plan, limits, level) if os.name == "posix" else None  # Windows: plain child

        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.scratch / "work"), "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0"}
        env.update({k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ})
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-I", str(self.scratch / "trusted" / "grader" / "sandbox" / "worker.py"),
                 str(self.scratch / "package"), str(write_end)],
                stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_end,), cwd=self.scratch / "work",
                env=env, preexec_fn=prepare, start_new_session=True)
        os.close(write_end)
        self._responses = read_end
        try:
            ready = wire.read_frame(lambda n: self._read(n, time.monotonic() + STARTUP_SECONDS))
        except (TimeoutError, EOFError, wire.WireError):
            ready = None
        if ready != {"ready": True}:
            self._stop()
            raise SubmissionCrashed(f"the grading worker did not start: {self._output_tail() or 'no output'}")

    @staticmethod
    def _prepare_child(plan: list, limits: Limits, level: str):
        """What the child runs between fork and exec: limits, then the isolation of its level."""
        from . import isolation

        def prepare() -> None:
            isolation.apply_limits(limits)
            if level == "full":
                isolation.isolate(plan)
            elif level == "unprivileged":
                isolation.become_nobody()
        return prepare

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        while remaining:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._responses], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._responses, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _output_tail(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-1500:].strip()
        except OSError:
            return ""

    def call(self, module: str, probe: str, stage_module: str, inputs: dict) -> dict:
        """Run one probe in the worker; the answer is a dict with ok, output or kind/type/message."""
        if self._process is None or self._process.poll() is not None:
            self._stop()
            self._start()
        self._next_id += 1
        request = {"id": self._next_id, "module": module, "probe": probe, "stage_module": stage_module,
                   "inputs": inputs}
        deadline = time.monotonic() + self.limits.timeout
        try:
            self._process.stdin.write(wire.dumps(request))
            self._process.stdin.flush()
            answer = wire.read_frame(lambda n: self._read(n, deadline))
        except TimeoutError:
            self._stop()
            raise SubmissionCrashed(f"{probe} did not finish within {self.limits.timeout:g} s and was stopped "
                                    f"(an infinite loop, or far too slow?)") from None
        except (EOFError, BrokenPipeError, wire.WireError) as error:
            code = self._stop()
            tail = self._output_tail()
            raise SubmissionCrashed(f"the submission's process ended during {probe} (exit code {code}; {error})"
                                    + (f"\n  its last output:\n{tail}" if tail else "")) from None
        if not isinstance(answer, dict) or answer.get("id") != request["id"]:
            self._stop()
            raise SubmissionCrashed(f"{probe}: the worker answered out of turn; the submission wrote to its channel")
        return answer

    def _stop(self) -> int | None:
        code = None
        if self._process is not None:
            if self._process.poll() is None:
                try:
                    os.killpg(self._process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self._process.kill()
            code = self._process.wait()
            if self._process.stdin:
                try:
                    self._process.stdin.close()
                except OSError:
                    pass
            self._process = None
        if self._responses >= 0:
            os.close(self._responses)
            self._responses = -1
        return code

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
