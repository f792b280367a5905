"""Stage 13's MPI launcher (tests/stage13/mpi.py): a machine without MPI gets one message saying how to install it,
a rank that hangs is stopped with every process of its job, a rank that dies is named. Run against the reference."""
from __future__ import annotations

import os
import sys
import time

import pytest

from grader.suites import targets
from tests.stage13 import mpi

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process checks read /proc")


def _solutions_dir() -> str:
    return str(targets.resolve("solutions"))


def test_without_mpi4py_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` now raises ImportError
    with pytest.raises(mpi.MPIUnavailable, match="pip install mpi4py mpich"):
        mpi.launch(_solutions_dir(), "parallel", [["hang", {}]], 2)


def test_without_mpiexec_beside_python_the_message_says_how_to_install_it(tmp_path):
    with pytest.raises(mpi.MPIUnavailable, match="pip install mpi4py mpich"):
        mpi.launch(_solutions_dir(), "parallel", [["hang", {}]], 2, bin_dir=tmp_path)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_hanging_rank_is_stopped_with_every_process_of_its_job(tmp_path):
    began = time.monotonic()
    with pytest.raises(mpi.RankFailed, match="did not finish within 3 s"):
        mpi.launch(_solutions_dir(), "parallel", [["hang", {"pid_dir": str(tmp_path)}]], 2, timeout=3)
    assert time.monotonic() - began < 20, "the launcher waited far past its timeout"
    ranks = [int(path.read_text()) for path in tmp_path.glob("*.pid")]
    assert len(ranks) == 2, "test defect: both ranks should have started"
    time.sleep(0.2)
    assert not [pid for pid in ranks if _alive(pid)], f"ranks {ranks} outlived their job"


def test_a_rank_that_dies_is_reported_with_its_exit_code():
    # MPICH stops the other ranks when one dies, so which ones report first is a race: the message names the ranks
    # that did not report and mpiexec's exit code (the dead rank's)
    with pytest.raises(mpi.RankFailed, match=r"rank\(s\) \[(0, )?1\] of 2 died before reporting anything \(mpiexec "
                                             r"exit code 7"):
        mpi.launch(_solutions_dir(), "parallel", [["die", {}]], 2)
