"""Run a submission's code only in a child process that can neither see the reference nor forge a grade.

The child (grader/sandbox/worker.py) starts in a scratch directory holding a copy of the submission's regular .py
files (package/), the probes' modules and the few grader files the worker imports (trusted/), and an empty work/; it
has limits on CPU time, address space, file size and processes. How far it is kept apart depends on what the machine
allows (LEVELS; grader/sandbox/isolation.py does it on Linux). It only ever answers with plain data
(grader/sandbox/wire.py); the trusted process judges.

Nothing the submission says reaches a student: an error becomes its builtin type name and the file, line and source
line of the innermost frame in the submission's own files, read here from the copy made before the worker started.
Its message, traceback and printed output go only to the instructors' raw record (the exception's __notes__, which
the suite plugin stores as `details`).
"""
from __future__ import annotations

import ast
import builtins
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import manifest
from ..harness import ProbeError, Unimplemented, plain
from ..manifest import ROOT
from . import wire

TRUSTED_FILES = ("__init__.py", "manifest.py", "harness/__init__.py", "harness/probe.py", "harness/judge.py",
                 "suites/__init__.py", "suites/targets.py", "sandbox/__init__.py", "sandbox/wire.py",
                 "sandbox/worker.py")  # what a worker imports, under grader/
PASSED_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                      "OPENBLAS_L2_SIZE", "LANG", "LC_ALL")
STARTUP_SECONDS = 120  # Python and NumPy starting on a loaded machine
IMPORT_TIMEOUTS = 2  # a module whose import outlasted the time limit this often is not imported again
STOP_SECONDS = 10  # for the supervisor to kill a worker and everything it started
MAX_SOURCE_BYTES = 8 * 2**20  # a stage module larger than this is refused, not read
RAW_CHARACTERS = 4000  # of each raw text kept for instructors
BUILTIN_EXCEPTIONS = frozenset(name for name, value in vars(builtins).items()
                               if isinstance(value, type) and issubclass(value, BaseException))
WITHHELD = ("(its message, traceback and printed output are not shown in graded feedback; run the visible tests on "
            "your machine, `python -m grader check`, to see them)")


@dataclass(frozen=True)
class Limits:
    timeout: float = 60.0  # wall seconds for one probe call
    memory_mb: int = 4096  # address space of the worker
    cpu_seconds: int = 1800  # CPU time of the worker over its life
    processes: int = 64  # for the worker's uid
    file_mb: int = 64  # largest file the submission may write; also the size of each private /tmp


class SubmissionCrashed(AssertionError):
    """The worker died, hung or answered nonsense; the message says which, in the grader's words only."""


class SubmissionError(AssertionError):
    """The submission's code raised while a probe ran; the message names the builtin type and where, nothing more."""


def _with_raw(error: BaseException, raw: str) -> BaseException:
    """Attach what the submission said, for instructors: pytest prints __notes__ in the report's `details` only."""
    if raw:
        error.__notes__ = ["[for instructors: what the submission said]\n" + raw]
    return error


def answer_of(answer: dict, module_file: str) -> Any:
    """Turn Sandbox.call's answer into plain data, or into the failure the in-process harness would have raised."""
    __tracebackhide__ = True
    if answer.get("ok") is True and "output" in answer:
        return plain(answer["output"], "the submission's output")
    text = str(answer.get("feedback") or f"the submission's code failed in {module_file}")
    raw = str(answer.get("raw", ""))
    kind = answer.get("kind")
    if kind == "unimplemented":
        raise _with_raw(Unimplemented(text), raw)
    if kind == "probe":
        raise _with_raw(ProbeError(text), raw)
    raise _with_raw(SubmissionError(text), raw)


LEVELS = {
    "full": "a root of its own (the interpreter, its packages and its scratch folder only; private /tmp, /var/tmp, "
            "/dev/shm and /proc), own PID, network and IPC namespaces, a uid of its own, resource limits, everything "
            "it starts killed with it",
    "unprivileged": "a uid of its own, resource limits, everything it starts killed with it; it shares the host's "
                    "files and /tmp (keep the reference and the hidden tests unreadable to other users)",
    "partial": "a separate process with resource limits, as the grader's own user (run as root on Linux for more)",
}


def isolation_level() -> str:
    """The strongest isolation this machine allows (see LEVELS); 'partial' wherever namespaces and users do not exist."""
    if not sys.platform.startswith("linux"):
        return "partial"
    from . import isolation
    return isolation.strongest_level()


def remember_isolation() -> str:
    """The level, found once here and passed to child processes (each suite run would otherwise probe again)."""
    if not sys.platform.startswith("linux"):
        return "partial"
    from . import isolation
    return isolation.remember()


def read_regular(path: str | Path, limit: int = MAX_SOURCE_BYTES) -> bytes | str:
    """A regular file's bytes, opened without following a symbolic link; or, as a str, why it was refused."""
    try:
        status = os.lstat(path)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link (only regular files are graded)"
    if stat.S_ISDIR(status.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(status.st_mode):
        return "is a special file (a device, pipe or socket), not a regular file"
    if status.st_size > limit:
        return f"is larger than {limit >> 20} MB"
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0))
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # replaced between the two looks
            return "is not a regular file"
        data = file.read(limit + 1)
    return data if len(data) <= limit else f"is larger than {limit >> 20} MB"


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
        self.uid = self._isolation().worker_uid() if self.level != "partial" else None
        self.scratch = Path(tempfile.mkdtemp(prefix="grader-sandbox-"))
        self.sources: dict[str, list[str]] = {}  # the submission's files as staged: where errors are located
        self.refused: dict[str, str] = {}  # file name -> why it was not staged (a link, a special file, ...)
        self._process: subprocess.Popen | None = None
        self._responses = -1
        self._next_id = 0
        self._import_timeouts: dict[str, int] = {}  # stage module -> imports stopped by the time limit
        self.log = self.scratch / "output.log"
        try:
            self._stage(Path(package_dir))
            self._world = None
            if self.level == "full":
                parts = {str(self.scratch / name): name == "work" for name in ("package", "trusted", "work")}
                self._world = self._isolation().plan_world(str(self.scratch / "root"), parts, limits.file_mb)
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise

    @property
    def isolation(self) -> str:
        return f"{self.level}: {LEVELS[self.level]}"

    @staticmethod
    def _isolation():
        from . import isolation  # Linux only
        return isolation

    def _inside(self, part: str) -> str:
        """Where the worker sees a part of the scratch directory (package, trusted, work)."""
        if self.level == "full":
            return f"{self._isolation().INSIDE}/{part}"
        return str(self.scratch / part)

    def _stage(self, package_dir: Path) -> None:
        """Copy in the submission's regular .py files, the probes' modules and the worker: nothing else."""
        package, trusted, work = (self.scratch / name for name in ("package", "trusted", "work"))
        package.mkdir()
        names = sorted(entry.name for entry in os.scandir(package_dir)) if package_dir.is_dir() else []
        for name in names:
            if not name.endswith(".py"):
                continue
            data = read_regular(package_dir / name)
            if isinstance(data, str):
                self.refused[name] = data
                continue
            (package / name).write_bytes(data)
            self.sources[name] = re.split(r"\r\n|\r|\n", data.decode("utf-8", errors="replace"))  # Python's lines
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
        work.mkdir()
        (self.scratch / "root").mkdir()  # the full level's new root is mounted here
        for path in self.scratch.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if self.uid is not None:  # only root and this worker's uid may enter the scratch directory
            os.chown(self.scratch, 0, self.uid)
            os.chmod(self.scratch, 0o750)
            os.chown(work, self.uid, self.uid)
            os.chmod(work, 0o700)
        else:  # the worker runs as the grader's own user
            os.chmod(self.scratch, 0o700)
            os.chmod(work, 0o700)

    def _start(self) -> None:
        if os.name != "posix":  # answers come over an inherited pipe, which Windows' subprocess cannot pass
            raise SubmissionCrashed("sandboxed grading runs on Linux or macOS; grade on one of those (learners' "
                                    "own checks run anywhere)")
        read_end, write_end = os.pipe()
        prepare = self._isolation().prepare(self.level, self.limits, self.uid or 0, self._world, self._inside("work"),
                                            os.getpid(), str(self.scratch))
        env = {"PATH": "/usr/bin:/bin", "HOME": self._inside("work"), "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0"}
        env.update({k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ})
        for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(threads, "1")  # workers run side by side, and BLAS reserves memory per thread
        try:
            with open(self.log, "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-u", f"{self._inside('trusted')}/grader/sandbox/worker.py",
                     self._inside("package"), str(write_end)],
                    stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_end,), cwd=self.scratch / "work",
                    env=env, preexec_fn=prepare, start_new_session=True)
        except (OSError, subprocess.SubprocessError) as error:
            os.close(read_end)
            raise SubmissionCrashed(f"the grading worker could not be started ({type(error).__name__}); this is "
                                    f"the grader's fault, not the submission's: tell your instructor") from None
        finally:
            os.close(write_end)
        self._responses = read_end
        try:
            ready = wire.read_frame(lambda n: self._read(n, time.monotonic() + STARTUP_SECONDS))
        except (TimeoutError, EOFError, wire.WireError):
            ready = None
        if ready != {"ready": True}:
            code = self._stop()
            raise _with_raw(SubmissionCrashed(f"the grading worker did not start ({self._ended(code)})"),
                            self._output_since(0))

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

    def _output_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def _output_since(self, offset: int) -> str:
        """What the worker printed since `offset` (its tail), for the instructors' raw record."""
        try:
            with open(self.log, "rb") as log:
                log.seek(max(offset, self._output_size() - RAW_CHARACTERS))
                text = log.read(RAW_CHARACTERS).decode("utf-8", errors="replace").strip()
        except OSError:
            return ""
        return f"printed:\n{text}" if text else ""

    @staticmethod
    def _ended(code: int | None) -> str:
        if code is None:
            return "it did not answer"
        if code < 0 or code > 128:
            number = -code if code < 0 else code - 128
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            why = {"SIGKILL": ": out of memory, or stopped", "SIGXCPU": ": out of CPU time",
                   "SIGSEGV": ": a crash in native code"}.get(name, "")
            return f"killed by {name}{why}"
        return f"exit code {code}"

    def call(self, module: str, probe: str, stage_module: str, inputs: dict) -> dict:
        """Run one probe in the worker. The answer is {ok: True, output} or {ok: False, kind, feedback, raw}:
        `feedback` is written here from what can be checked, `raw` is what the submission said (instructors only)."""
        if f"{stage_module}.py" in self.refused:
            raise SubmissionCrashed(f"{stage_module}.py {self.refused[stage_module + '.py']}: it was not graded")
        if self._import_timeouts.get(stage_module, 0) >= IMPORT_TIMEOUTS:  # one module must not stall a batch
            raise SubmissionCrashed(f"{stage_module}.py did not finish importing within {self.limits.timeout:g} s, "
                                    f"{IMPORT_TIMEOUTS} times: its other tests are not run (a loop or a long "
                                    f"computation at module level?)")
        if self._process is None or self._process.poll() is not None:
            self._stop()
            self._start()
        self._next_id += 1
        request = {"id": self._next_id, "module": module, "probe": probe, "stage_module": stage_module,
                   "inputs": inputs}
        deadline = time.monotonic() + self.limits.timeout
        printed = self._output_size()
        imported = False
        try:
            self._process.stdin.write(wire.dumps(request))
            self._process.stdin.flush()
            answer = wire.read_frame(lambda n: self._read(n, deadline))
            if isinstance(answer, dict) and answer.get("imported") is True and answer.get("id") == request["id"]:
                imported = True  # the module imported; the answer follows
                answer = wire.read_frame(lambda n: self._read(n, deadline))
        except TimeoutError:
            self._stop()
            if not imported:
                self._import_timeouts[stage_module] = self._import_timeouts.get(stage_module, 0) + 1
            where = "" if imported else f" (while importing {stage_module}.py)"
            raise _with_raw(SubmissionCrashed(f"{probe} did not finish within {self.limits.timeout:g} s{where} and "
                                              f"was stopped (an infinite loop, or far too slow?)"),
                            self._output_since(printed)) from None
        except wire.WireError as error:
            self._stop()
            raise _with_raw(SubmissionCrashed(f"{probe}: the worker's answer was not well-formed plain data ({error}); "
                                              f"the submission wrote to its channel?"),
                            self._output_since(printed)) from None
        except (EOFError, BrokenPipeError) as error:
            code = self._stop()
            raise _with_raw(SubmissionCrashed(f"the submission's process ended during {probe} ({self._ended(code)})"),
                            "\n".join(filter(None, [str(error), self._output_since(printed)]))) from None
        if not isinstance(answer, dict) or answer.get("id") != request["id"]:
            self._stop()
            raise _with_raw(SubmissionCrashed(f"{probe}: the worker answered out of turn; the submission wrote to its "
                                              f"channel"), self._output_since(printed))
        if answer.get("ok") is True and "output" in answer:
            return {"ok": True, "output": answer["output"]}
        return self._failure(answer, probe, stage_module, self._output_since(printed))

    def _failure(self, answer: dict, probe: str, stage_module: str, printed: str) -> dict:
        """A failed call in the grader's words: the kind, the builtin type, and where in the submission's files."""
        kind = answer.get("kind") if answer.get("kind") in ("unimplemented", "probe", "unsendable") else "error"
        raw = "\n".join(filter(None, [f"{str(answer.get('type'))[:100]}: {str(answer.get('message'))[:RAW_CHARACTERS]}",
                                      str(answer.get("traceback", ""))[-RAW_CHARACTERS:], printed]))
        where = self.locate(answer.get("frames"))
        if kind == "unimplemented":
            text = f"NotImplementedError -- still a stub in {where or stage_module + '.py'}"
        elif kind == "probe":
            text = (f"{probe}: what the submission returned is not plain data (numbers, strings, arrays of numbers, "
                    f"lists, dicts), e.g. an object of a class of its own")
        elif kind == "unsendable":
            kind, text = "probe", f"{probe}: what the submission returned could not be sent back (too large?)"
        else:
            place = f"in {where}" if where else "outside the submission's files (in the test's probe, or in a " \
                                                "library the submission called)"
            text = f"{self._type_name(answer)} raised {place}\n{WITHHELD}"
        return {"ok": False, "kind": kind, "feedback": text, "raw": raw}

    @staticmethod
    def _type_name(answer: dict) -> str:
        """The exception's builtin type: only a name of Python's own exceptions is ever shown."""
        bases = answer.get("bases") if isinstance(answer.get("bases"), list) else []
        if answer.get("builtin") is True and answer.get("type") in BUILTIN_EXCEPTIONS:
            return str(answer["type"])
        base = next((b for b in bases[1:] if isinstance(b, str) and b in BUILTIN_EXCEPTIONS), None)
        return f"an exception of a class of its own (derived from {base})" if base else "an exception"

    def locate(self, frames: Any) -> str | None:
        """'ngram.py, line 57: <that line>' for the innermost frame in one of the submission's own files.

        The worker's frames are only a claim: a file counts when it is one of the regular files staged from the
        submission, and the line is read from that staged copy, never from a path the worker names.
        """
        if not isinstance(frames, list):
            return None
        prefix = self._inside("package") + "/"
        for frame in reversed(frames[-200:]):
            if not (isinstance(frame, list) and len(frame) == 2):
                continue
            file, line = frame
            if type(file) is not str or type(line) is not int or not file.startswith(prefix):
                continue
            lines = self.sources.get(file[len(prefix):])
            if lines is not None and 1 <= line <= len(lines):
                text = " ".join(lines[line - 1].split())
                return f"{file[len(prefix):]}, line {line}: {text[:160] + ('...' if len(text) > 160 else '')}"
        return None

    def _stop(self) -> int | None:
        code = None
        if self._process is not None:
            if self._process.poll() is None:
                self._kill()
            code = self._process.returncode
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

    def _kill(self) -> None:
        """Stop the worker and everything it started: the supervisor does it when there is one (SIGTERM)."""
        process = self._process
        if self.level != "partial":
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the worker leads a session of its own
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait()

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
