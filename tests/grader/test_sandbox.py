"""The sandbox's own guarantees, tested directly (the attacks graded end to end are in test_hostile.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from grader import manifest, sandbox
from grader.manifest import ROOT

STAGE = manifest.stage("01")


def _test_files(box: sandbox.Sandbox) -> set[str]:
    """The test modules on the worker's disk, as paths relative to the repository (tests/...)."""
    trusted = box.scratch / "trusted"
    return {p.relative_to(trusted).as_posix() for p in trusted.rglob("*.py")
            if p.relative_to(trusted).parts[0] == "tests" and p.name != "__init__.py"}


def _modules(folder: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}


def test_a_visible_run_puts_no_hidden_file_on_the_workers_disk():
    with sandbox.Sandbox(ROOT / "solutions", level="partial", suites=[STAGE.test_dir()]) as box:
        files = _test_files(box)
        everything = {p.relative_to(box.scratch).as_posix() for p in box.scratch.rglob("*") if p.is_file()}
    expected = _modules(STAGE.test_dir())
    assert files == expected, f"only the collected suite's modules belong there: expected {expected}, got {files}"
    assert not [f for f in everything if "hidden" in f], f"hidden files on the worker's disk: {everything}"


def test_a_hidden_run_copies_its_suite_and_what_it_imports_but_no_other_stage():
    hidden = STAGE.test_dir(hidden=True)
    with sandbox.Sandbox(ROOT / "solutions", level="partial", suites=[hidden]) as box:
        files = _test_files(box)
    imported = {f"{name.replace('.', '/')}.py" for path in _modules(hidden)  # shared helpers it imports
                for name in sandbox._imported_test_modules(ROOT / path)}
    expected = _modules(hidden) | {path for path in imported if (ROOT / path).is_file()}
    assert files == expected, f"expected {expected}, got {files}"
    assert not [f for f in files if f.startswith("tests/stage") and not f.startswith(STAGE.test_dir())], files


def test_probe_files_follow_imports_between_suites_transitively(tmp_path):
    every_hidden = [ROOT / s.test_dir(hidden=True) for s in manifest.stages()]
    files = {p.relative_to(ROOT).as_posix() for p in sandbox.probe_files(every_hidden)}
    for path in files:  # whatever a copied module imports from tests/ was copied too
        for name in sandbox._imported_test_modules(ROOT / path):
            module = Path(*name.split("."))
            if (ROOT / module.with_suffix(".py")).is_file():
                assert module.with_suffix(".py").as_posix() in files, f"{path} imports {name}, which was not copied"


# ---------------------------------------------------------------- what a student sees of an error


SECRET = "Sw0rdf1sh-do-not-show"


def _package(tmp_path: Path, extra: str, name: str = "pkg") -> Path:
    """The skeleton of stage 01 with `extra` appended to its module."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ngram.py").write_text((ROOT / "exercises" / "ngram.py").read_text() + "\n" + extra)
    return folder


def _call(box: sandbox.Sandbox) -> dict:
    return box.call("tests.stage01.test_ngram", "probe_tokenizer", STAGE.module, {"text": "hello", "other": "hole"})


def test_an_error_is_told_by_its_builtin_type_and_line_never_by_its_message(tmp_path):
    extra = (f"SECRET = {SECRET[::-1]!r}[::-1]  # computed, so that no source line holds it\n"
             f"class CharTokenizer:\n"
             f"    def __init__(self, text):\n"
             f"        print(SECRET)\n"
             f"        raise type(SECRET, (KeyError,), {{}})(SECRET)\n")
    with sandbox.Sandbox(_package(tmp_path, extra), level="partial", suites=[STAGE.test_dir()]) as box:
        answer = _call(box)
    line = len((ROOT / "exercises" / "ngram.py").read_text().splitlines()) + 6
    assert answer["ok"] is False and answer["kind"] == "error"
    assert answer["feedback"].startswith(f"an exception of a class of its own (derived from KeyError) raised in "
                                         f"ngram.py, line {line}: raise type(SECRET, (KeyError,), {{}})(SECRET)\n"), \
        answer["feedback"]
    assert SECRET not in answer["feedback"], "neither its class name, nor its message, nor what it printed"
    assert answer["raw"].count(SECRET) >= 3, "instructors get the message, the traceback and what it printed"
    with pytest.raises(sandbox.SubmissionError) as caught:
        sandbox.answer_of(answer, "ngram.py")
    assert str(caught.value) == answer["feedback"] and SECRET in caught.value.__notes__[0]


def test_a_stub_names_its_line_and_a_message_stays_out(tmp_path):
    extra = (f"class CharTokenizer:\n    def __init__(self, text):\n"
             f"        raise NotImplementedError({SECRET[::-1]!r}[::-1])\n")
    with sandbox.Sandbox(_package(tmp_path, extra), level="partial", suites=[STAGE.test_dir()]) as box:
        answer = _call(box)
    assert answer["kind"] == "unimplemented" and SECRET not in answer["feedback"] and SECRET in answer["raw"]
    assert answer["feedback"].startswith("NotImplementedError -- still a stub in ngram.py, line ")


def test_the_workers_claims_about_frames_are_checked_against_the_staged_files(tmp_path):
    with sandbox.Sandbox(_package(tmp_path, ""), level="partial", suites=[STAGE.test_dir()]) as box:
        inside = box._inside("package")
        lines = len(box.sources["ngram.py"])
        for forged in (None, "x", [["/etc/passwd", 1]], [[f"{inside}/../trusted/grader/manifest.py", 1]],
                       [[f"{inside}/ngram.py", lines + 1]], [[f"{inside}/ngram.py", 0]], [[f"{inside}/ngram.py", "3"]],
                       [[f"{inside}/other.py", 1]], [[f"{inside}/ngram.py", True]]):
            assert box.locate(forged) is None, forged
        assert box.locate([[f"{inside}/ngram.py", 1], ["/elsewhere.py", 9]]).startswith("ngram.py, line 1: ")
        assert box._type_name({"type": "ValueError", "builtin": True}) == "ValueError"
        assert box._type_name({"type": SECRET, "builtin": True, "bases": [SECRET, "Exception"]}) == \
            "an exception of a class of its own (derived from Exception)"
        assert box._type_name({"type": "ValueError", "builtin": False, "bases": ["ValueError", SECRET]}) == \
            "an exception"


def test_the_sandbox_stages_regular_files_only(tmp_path):
    folder = _package(tmp_path, "")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    os.symlink(secret, folder / "leak.py")
    os.symlink(ROOT / "solutions" / "tensor.py", folder / "tensor.py")
    os.mkfifo(folder / "pipe.py")
    (folder / "nn.py").mkdir()
    with sandbox.Sandbox(folder, level="partial", suites=[STAGE.test_dir()]) as box:
        staged = sorted(p.name for p in (box.scratch / "package").iterdir())
        refused = dict(box.refused)
    assert staged == ["ngram.py"], staged
    assert refused.keys() == {"leak.py", "tensor.py", "pipe.py", "nn.py"}
    assert "symbolic link" in refused["leak.py"] and "special file" in refused["pipe.py"]
    assert "folder" in refused["nn.py"]
    (folder / "ngram.py").unlink()
    os.symlink(ROOT / "solutions" / "ngram.py", folder / "ngram.py")
    with sandbox.Sandbox(folder, level="partial", suites=[STAGE.test_dir()]) as box:
        with pytest.raises(sandbox.SubmissionCrashed, match="ngram.py is a symbolic link"):
            _call(box)


# ---------------------------------------------------------------- one submission, one world (root on Linux only)

if sys.platform.startswith("linux"):
    from grader.sandbox import isolation

full_only = pytest.mark.skipif(sandbox.isolation_level() != "full",
                               reason="the full level needs root on Linux with mount and PID namespaces")

LOOK_AROUND = """
import json as _json, os as _os, socket as _socket, numpy as _numpy
def _ls(path):
    try:
        return sorted(_os.listdir(path))
    except OSError as error:
        return type(error).__name__
def _net():
    try:
        _socket.create_connection(("1.1.1.1", 53), timeout=1)
        return "connected"
    except OSError as error:
        return type(error).__name__
SEEN = {"root": _ls("/"), "tmp": _ls("/tmp"), "var_tmp": _ls("/var/tmp"), "shm": _ls("/dev/shm"), "etc": _ls("/etc"),
        "proc": [p for p in _ls("/proc") if p.isdigit()], "pid": _os.getpid(), "uid": _os.getuid(),
        "sandbox": _ls("/sandbox"),
        "tests": [f"{d}/{f}" for d, _, fs in _os.walk("/sandbox/trusted/tests") for f in fs],
        "repository": _os.path.exists(REPOSITORY), "home": _ls("/home"), "net": _net(),
        "site": _ls(_os.path.dirname(_os.path.dirname(_numpy.__file__)))}
print("SEEN" + _json.dumps(SEEN), flush=True)
for _folder in ("/tmp", "/var/tmp", "/dev/shm"):
    open(_folder + "/planted.txt", "w").write("for the next submission")
"""


def _runtime_entries(folder: str) -> list[str]:
    """What a private /tmp must show: the first part of every runtime path inside it (a venv in /tmp, say), nothing
    else."""
    from grader.sandbox import isolation
    inside = [Path(p) for p in isolation.runtime().paths if p.startswith(folder.rstrip("/") + "/")]
    return sorted({path.relative_to(folder).parts[0] for path in inside})


def _seen(box: sandbox.Sandbox) -> dict:
    line = next(line for line in box.log.read_text().splitlines() if line.startswith("SEEN"))
    return json.loads(line[len("SEEN"):])


@full_only
def test_a_worker_sees_only_the_interpreter_its_packages_and_its_scratch_folder(tmp_path):
    extra = f"REPOSITORY = {str(ROOT)!r}\n" + LOOK_AROUND
    with sandbox.Sandbox(_package(tmp_path, extra, "one"), suites=[STAGE.test_dir()]) as first, \
            sandbox.Sandbox(_package(tmp_path, extra, "two"), suites=[STAGE.test_dir()]) as second:
        _call(first)
        _call(second)  # started while the first one lives
        seen, other = _seen(first), _seen(second)
    assert set(seen["root"]) <= {"dev", "etc", "lib", "lib64", "bin", "sbin", "usr", "proc", "sandbox", "tmp", "var",
                                 *[p.strip("/").split("/")[0] for p in (sys.prefix, sys.base_prefix)]}, seen["root"]
    for who in (seen, other):  # the second worker must not see what the first one planted
        for key, folder in (("tmp", "/tmp"), ("var_tmp", "/var/tmp"), ("shm", "/dev/shm")):
            assert who[key] == _runtime_entries(folder), (
                f"each worker's {folder} starts empty but for the way to the interpreter (a venv made there, as CI "
                f"does): {who[key]}")
    assert seen["pid"] == 1 and seen["proc"] == ["1"], f"its own PID namespace: {seen['proc']}"
    assert seen["uid"] not in (0, other["uid"]), "a uid of its own, not root's, not its neighbour's"
    assert seen["sandbox"] == ["package", "trusted", "work"] and seen["etc"] == ["ld.so.cache"]
    assert not seen["repository"] and seen["home"] == "FileNotFoundError" and seen["net"] != "connected"
    assert seen["tests"] and not [t for t in seen["tests"] if "hidden" in t], seen["tests"]
    allowed = {os.path.basename(p) for p in isolation.runtime().paths}
    assert "numpy" in seen["site"] and set(seen["site"]) <= allowed, f"site-packages shows {seen['site']}"


DAEMON = """
import os as _os, sys as _sys, time as _time
def _daemon():
    if _os.fork():
        return
    _os.setsid()
    if _os.fork():
        _os._exit(0)
    _os.execv(_sys.executable, [_sys.executable, "-c", "import time\\nwhile True: time.sleep(0.2)", MARKER])
_daemon()
"""


def _marked(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


def _wait(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def _gone(marker: str) -> bool:
    return _wait(lambda: not _marked(marker))


def _started(marker: str) -> bool:
    return _wait(lambda: bool(_marked(marker)))


@full_only
def test_a_double_forked_daemon_dies_with_its_worker(tmp_path):
    marker = f"daemon-{uuid.uuid4().hex}"
    with sandbox.Sandbox(_package(tmp_path, f"MARKER = {marker!r}\n" + DAEMON), suites=[STAGE.test_dir()]) as box:
        _call(box)
        assert _started(marker), "the daemon never started: the test proves nothing"
    assert _gone(marker), f"processes outlived their sandbox: {_marked(marker)}"


@full_only
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_daemon_dies_however_the_grader_ends(tmp_path, how):
    marker = f"daemon-{uuid.uuid4().hex}"
    package = _package(tmp_path, f"MARKER = {marker!r}\n" + DAEMON)
    grader = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from grader import sandbox
box = sandbox.Sandbox({str(package)!r}, suites=[{STAGE.test_dir()!r}])
box.call("tests.stage01.test_ngram", "probe_tokenizer", "ngram", {{"text": "hello", "other": "hole"}})
print(box.scratch, flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        scratch = Path(grader.stdout.readline().strip())
        assert scratch.is_dir() and _started(marker), "the daemon never started: the test proves nothing"
        grader.send_signal(getattr(signal, how))  # no close(), no cleanup of its own
        grader.wait(timeout=30)
        assert _gone(marker), f"the worker's processes outlived the grader: {_marked(marker)}"
        assert _wait(lambda: not scratch.exists()), f"{scratch} outlived the grader"
    finally:
        grader.kill()
        grader.wait()


def test_at_the_unprivileged_level_a_daemon_dies_by_its_uid(tmp_path):
    """Without namespaces (most containers), the supervisor kills every process of the worker's own uid."""
    if not (sys.platform.startswith("linux") and os.geteuid() == 0 and isolation._works("unprivileged")):
        pytest.skip("needs root on Linux and an interpreter other users may run (not one under /root)")
    marker = f"daemon-{uuid.uuid4().hex}"
    package = _package(tmp_path, f"MARKER = {marker!r}\n" + DAEMON)
    with sandbox.Sandbox(package, level="unprivileged", suites=[STAGE.test_dir()]) as first, \
            sandbox.Sandbox(_package(tmp_path, "", "honest"), level="unprivileged", suites=[STAGE.test_dir()]) as other:
        _call(first)
        assert _started(marker), "the daemon never started: the test proves nothing"
        assert first.uid != other.uid and os.stat(first.scratch).st_mode & 0o007 == 0
    assert _gone(marker), f"processes outlived their sandbox: {_marked(marker)}"
