"""Linux isolation for the sandbox's workers: resource limits, private mounts, no network, an unprivileged user.

Imported only by grader.sandbox when it starts a worker on a POSIX system: it needs `pwd` and `resource`, which
Windows lacks, and nothing on a learner's path imports it.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import resource
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from ..manifest import ROOT

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


def hide_plan(scratch: str | None = None) -> list[tuple[str, list[str]]]:
    """Directories to cover with an empty tmpfs, each with the paths inside it that must stay reachable.

    Covered: the repository (reference, tests, grader), the temporary directory (other sandboxes: other students'
    code), and any directory `nobody` may not traverse on the way to the interpreter and its packages (e.g. /root,
    when Python lives in /root/.pyenv). Kept: the interpreter, its packages, and this sandbox's scratch directory.
    """
    import numpy
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(numpy.__file__)),
                                            os.path.dirname(os.path.dirname(os.__file__)))}
    if scratch:
        needed.add(os.path.realpath(scratch))
    hide = {str(ROOT), os.path.realpath(tempfile.gettempdir())}
    for path in needed:
        parts = Path(path).parts
        for i in range(2, len(parts) + 1):
            ancestor = str(Path(*parts[:i]))
            if os.path.isdir(ancestor) and not os.stat(ancestor).st_mode & 0o001:
                hide.add(ancestor)
                break
    outermost = sorted(h for h in hide if not any(h != o and h.startswith(o + os.sep) for o in hide))
    plan = []
    for covered in outermost:
        keeps = sorted(n for n in needed if n.startswith(covered + os.sep))
        keeps = [k for k in keeps if not any(k != o and k.startswith(o + os.sep) for o in keeps)]
        plan.append((covered, keeps))
    return plan


def become_nobody() -> None:
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def isolate(plan: list[tuple[str, list[str]]]) -> None:
    """In the child, before exec: private mounts, no network, the repository covered, then become `nobody`."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what} failed")

    check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    for covered, keeps in plan:
        handles = [os.open(k, os.O_PATH) for k in keeps]
        check(libc.mount(b"tmpfs", covered.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755"), f"covering {covered}")
        for keep, handle in zip(keeps, handles):
            os.makedirs(keep, exist_ok=True)
            check(libc.mount(f"/proc/self/fd/{handle}".encode(), keep.encode(), None, MS_BIND | MS_REC, None),
                  f"exposing {keep}")
            os.close(handle)
    become_nobody()


def apply_limits(limits) -> None:  # a grader.sandbox.Limits
    megabyte = 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * megabyte,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * megabyte,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)


def _works(prepare) -> bool:
    try:
        done = subprocess.run([sys.executable, "-I", "-c", "import numpy"], preexec_fn=prepare,
                              capture_output=True, timeout=60, cwd="/")
    except (subprocess.SubprocessError, OSError):
        return False
    return done.returncode == 0


@lru_cache(maxsize=1)
def strongest_level() -> str:
    """The strongest isolation this machine allows, found once by trying it: see LEVELS."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "partial"
    plan = hide_plan()
    if _works(lambda: isolate(plan)):
        return "full"
    return "unprivileged" if _works(become_nobody) else "partial"


