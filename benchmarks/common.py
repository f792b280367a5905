"""Timing helpers shared by the benchmarks: thread pinning, medians over repeats, the optional torch peer."""
from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

TORCH_HINT = "PyTorch is not installed, so the comparison is skipped: pip install torch==2.13.0 (a CPU build)"


def torch_available() -> bool:
    """Whether torch is installed, without importing it (an import in a process that times NumPy would load its
    OpenMP runtime next to OpenBLAS: measured, it slowed the NumPy training step by a third)."""
    return importlib.util.find_spec("torch") is not None


def torch_or_none():
    """The torch module, or None (the benchmarks then time the reference alone and say how to install torch)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse instead of handing it back to the OS after each step;
    called at the start of every timing process, NumPy's and PyTorch's alike. Returns whether it applied (Linux with
    glibc only; elsewhere nothing changes).

    Why: a training step frees its whole graph, and by default glibc returns large blocks (>= 128 KB, served by mmap)
    and the heap's top to the OS at once, so the next step page-faults every one of them back in: measured on the
    medium configuration about 78,000 faults, 0.9 s of system time, per step. PyTorch's process pays the same tax on
    a smaller graph. The two settings are glibc's own (mallopt's M_MMAP_THRESHOLD = 32 MB, M_TRIM_THRESHOLD = 2 GB;
    the same as MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 in the environment of any command).
    """
    import ctypes
    import ctypes.util
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Pin BLAS (NumPy's and torch's) to `count` threads for a fair comparison."""
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")  # only if this process uses it: importing torch into a NumPy measurement would
    # add its memory and its OpenMP threads to ours
    previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(count)
    with threadpool_limits(limits=count):
        yield
    if torch:
        torch.set_num_threads(previous)


def median_seconds(step: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """The median wall time of `step` over `repeats` runs after `warmup` untimed ones."""
    return median_times(step, repeats, warmup)[0]


def median_times(step: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median wall time, median CPU time of this process) of `step` over `repeats` runs after `warmup` untimed ones.

    On a shared machine the wall time includes waiting for a core; the process's CPU time does not, so at ONE thread
    it is the steadier measure of the work (with more threads it adds up every thread's time, spinning included)."""
    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)
