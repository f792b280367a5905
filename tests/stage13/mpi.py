"""Stage 13's probes on real MPI ranks: the launcher (in the test's process) and the rank side (this file, run by
mpiexec).

A probe calls `outcome(module, job, ranks, check)`. The first call for a job starts

    mpiexec -n RANKS python -I tests/stage13/mpi.py PACKAGE_DIR MODULE JOB.json OUT_DIR

with the mpiexec that sits beside the running python (pip install mpich puts it there), under a timeout. Each rank
imports the target's package by path (as grader/suites/targets.py does, so its relative imports work), runs the
job's checks (functions of this file, CHECKS) in order on MPI.COMM_WORLD and writes what each returned, as plain data,
to OUT_DIR/rank<r>.json after every check. The launcher reads the ranks' files once and keeps them for the other
tests that ask about the same job (one launch costs about a second; a job batches a few checks).

What can go wrong is said in words: MPI missing (how to install it), a rank that raised (its traceback), a stub
(NotImplementedError, as in-process probes raise it), ranks that hang (stopped after the timeout, every process of the
job killed) or die (the exit code and the last lines they printed).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

TIMEOUT = 45.0  # seconds per launch: ~1 s on an idle machine, well under the sandbox's 60 s per probe
INSTALL = "pip install mpi4py mpich"
COLLECTIVES = ("Allreduce", "allreduce", "Reduce_scatter", "Reduce_scatter_block", "Allgather", "allgather",
               "Allgatherv", "Reduce", "reduce", "Bcast", "bcast", "Scatter", "Gather", "Alltoall")
PICKLED = ("send", "recv", "sendrecv", "isend", "irecv", "ssend")  # lower-case point-to-point: pickled objects
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # one BLAS thread per rank: no oversubscribing


class MPIUnavailable(AssertionError):
    """MPI (mpi4py and the mpiexec beside python) is not installed; the message says how to install it."""


class RankFailed(AssertionError):
    """A rank raised, hung or died; the message says which rank and what it said."""


# ---------------------------------------------------------------- plain data through JSON (arrays keep their dtype)


def encode(value):
    if isinstance(value, np.ndarray):
        return {"__array__": value.dtype.str, "shape": list(value.shape), "data": value.reshape(-1).tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    if isinstance(value, dict) and "__array__" in value:
        return np.array(value["data"], dtype=np.dtype(value["__array__"])).reshape(value["shape"])
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# ---------------------------------------------------------------- the launcher


def mpiexec(bin_dir: str | Path | None = None) -> str:
    """The mpiexec beside the running python (a venv's bin/, where the mpich wheel puts it), else the one on PATH."""
    here = Path(bin_dir if bin_dir is not None else Path(sys.executable).parent)
    found = here / ("mpiexec.exe" if os.name == "nt" else "mpiexec")
    if found.is_file() and os.access(found, os.X_OK):
        return str(found)
    on_path = shutil.which("mpiexec") if bin_dir is None else None
    if on_path:
        return on_path
    raise MPIUnavailable(f"stage 13 runs its tests on MPI, and there is no mpiexec beside {sys.executable} (nor on "
                         f"PATH). Install MPI into this Python with `{INSTALL}` (or `pip install -r requirements.txt`), "
                         f"then run the tests again.")


def require_mpi(bin_dir: str | Path | None = None) -> str:
    """The mpiexec to use, after checking that mpi4py imports; MPIUnavailable saying how to install them otherwise."""
    try:
        importlib.import_module("mpi4py")
    except ImportError as error:
        raise MPIUnavailable(f"stage 13 runs its tests on MPI, and mpi4py cannot be imported ({error}). Install MPI "
                             f"into this Python with `{INSTALL}` (or `pip install -r requirements.txt`), then run the "
                             f"tests again.") from None
    return mpiexec(bin_dir)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux: from /proc). MPICH's launcher starts its proxy and the ranks in sessions of
    their own, so killing mpiexec's process group would leave them running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kill_job(process: subprocess.Popen) -> None:
    """Kill mpiexec and everything it started."""
    below = _descendants(process.pid) if sys.platform.startswith("linux") else []
    for pid in [process.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        pass
    process.wait()


def _tail(text: str, lines: int = 25) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (nothing)"


def launch(package_dir: str, stage_module: str, job: list, ranks: int, timeout: float = TIMEOUT,
           bin_dir: str | Path | None = None) -> list[dict]:
    """Run `job` (a list of [check name, arguments]) on `ranks` MPI ranks; each rank's {check name: record}."""
    command = require_mpi(bin_dir)
    with tempfile.TemporaryDirectory(prefix="stage13-") as scratch:
        job_file = Path(scratch) / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, **{name: "1" for name in THREADS}, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTHONPATH", None)
        began = time.monotonic()
        process = subprocess.Popen([command, "-n", str(ranks), sys.executable, "-I", os.path.abspath(__file__),
                                    package_dir, stage_module, str(job_file), scratch],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=scratch, env=env, start_new_session=True)
        try:
            printed, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_job(process)
            raise RankFailed(f"the {ranks} MPI ranks of {stage_module}.py did not finish within {timeout:g} s and "
                             f"were stopped. A rank is waiting for a message that never comes: a Sendrecv whose "
                             f"partner sends to another rank, chunk sizes that differ between ranks, or ranks that "
                             f"call collectives in a different order. Checks run: {[name for name, _ in job]}."
                             ) from None
        printed = printed.decode("utf-8", errors="replace")
        records = []
        for rank in range(ranks):
            path = Path(scratch) / f"rank{rank}.json"
            records.append(decode(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None)
    missing = [rank for rank, record in enumerate(records) if record is None]
    failed = any(isinstance(found, dict) and "error" in found for record in records if record for found in
                 record.values())
    if missing and failed:  # another rank raised and stopped the job (comm.Abort) before these reported
        records = [record if record is not None else {} for record in records]
    elif missing:
        raise RankFailed(f"MPI rank(s) {missing} of {ranks} died before reporting anything (mpiexec exit code "
                         f"{process.returncode}, after {time.monotonic() - began:.1f} s). What the ranks printed:\n"
                         f"{_tail(printed)}")
    for record in records:
        record["__printed__"] = printed
        record["__exit__"] = process.returncode
    return records


_launched: dict[str, list[dict] | AssertionError] = {}


def outcome(module, job: list, ranks: int, check: str) -> list:
    """What `check` of `job` returned on each rank (a list, rank 0 first), launching the job on first use.

    NotImplementedError when a rank met a stub there (as an in-process probe would raise it); RankFailed when a rank
    raised, or when an earlier check of the job failed so that this one never ran."""
    if not isinstance(getattr(module, "__file__", None), str):  # a notebook's namespace, say
        raise RankFailed(f"stage 13's MPI tests start new processes that import {module.__name__} from its file, and "
                         f"this one has none: run them on exercises/parallel.py (`python -m grader check 13`)")
    package_dir = os.path.dirname(os.path.abspath(module.__file__))
    stage_module = module.__name__.rsplit(".", 1)[-1]
    key = hashlib.sha1(json.dumps([package_dir, stage_module, job, ranks]).encode()).hexdigest()
    if key not in _launched:
        try:
            _launched[key] = launch(package_dir, stage_module, job, ranks)
        except AssertionError as error:  # a hang costs its timeout once, not once per test that asks
            _launched[key] = error
    records = _launched[key]
    if isinstance(records, AssertionError):
        raise type(records)(str(records))
    results = []
    for rank, record in enumerate(records):
        found = record.get(check)
        if found is None:  # this rank was stopped: by another rank's failure in this check, or an earlier one
            found = next((rec[check] for rec in records if "error" in rec.get(check, {})), None)
            rank = next((r for r, rec in enumerate(records) if "error" in rec.get(check, {})), rank)
        if found is None:
            failed = next(((name, r, rec[name]) for r, rec in enumerate(records) for name in rec
                           if isinstance(rec[name], dict) and "error" in rec[name]), None)
            why = (f"check {failed[0]!r} raised {failed[2]['error']} on rank {failed[1]} first, and the job stopped "
                   f"there:\n{_tail(failed[2]['traceback'])}" if failed else
                   f"the job stopped before it (mpiexec exit code {record['__exit__']}). What the ranks printed:\n"
                   f"{_tail(record['__printed__'])}")
            raise RankFailed(f"check {check!r} did not run on rank {rank}: {why}")
        if "unimplemented" in found:
            _raise_from_stub(found)
        if "error" in found:
            raise RankFailed(f"on MPI rank {rank} of {ranks}, {check} raised {found['error']}: {found['message']}\n"
                             f"{_tail(found['traceback'])}")
        results.append(found["returned"])
    return results


def _raise_from_stub(found: dict) -> None:
    """Raise the rank's NotImplementedError again here, from a frame that carries the stub's file and line, so the
    report names the stub ("still a stub in parallel.py") as it does for a probe that called it in this process."""
    filename, line = str(found.get("file", "<rank>")), max(int(found.get("line", 2) or 2), 2)
    function = str(found.get("function", "stub"))
    function = function if function.isidentifier() else "stub"
    namespace = {"message": found["unimplemented"]}
    exec(compile("\n" * (line - 2) + f"def {function}():\n    raise NotImplementedError(message)\n", filename, "exec"),
         namespace)
    namespace[function]()


# ---------------------------------------------------------------- the rank side: a communicator that counts


class CountingComm:
    """A communicator that forwards to MPI.COMM_WORLD and counts what this rank sends point to point: bytes and
    messages through the buffer methods, and the names of any collective or pickling method called."""

    def __init__(self, comm) -> None:
        self._comm = comm
        self.bytes_sent = 0
        self.messages = 0
        self.used: list[str] = []  # collectives and pickling methods, by name

    def Get_rank(self) -> int:
        return self._comm.Get_rank()

    def Get_size(self) -> int:
        return self._comm.Get_size()

    @property
    def rank(self) -> int:
        return self._comm.Get_rank()

    @property
    def size(self) -> int:
        return self._comm.Get_size()

    def _count(self, buffer) -> None:
        array = buffer[0] if isinstance(buffer, (list, tuple)) else buffer
        self.bytes_sent += memoryview(array).nbytes
        self.messages += 1

    def Sendrecv(self, sendbuf, *args, **kwargs):
        self._count(sendbuf)
        return self._comm.Sendrecv(sendbuf, *args, **kwargs)

    def Send(self, buf, *args, **kwargs):
        self._count(buf)
        return self._comm.Send(buf, *args, **kwargs)

    def Isend(self, buf, *args, **kwargs):
        self._count(buf)
        return self._comm.Isend(buf, *args, **kwargs)

    def Ssend(self, buf, *args, **kwargs):
        self._count(buf)
        return self._comm.Ssend(buf, *args, **kwargs)

    def __getattr__(self, name: str):
        if name in COLLECTIVES or name in PICKLED:
            self.used.append(name)
        if name in PICKLED:  # counted at their pickled size
            method = getattr(self._comm, name)

            def pickled(obj=None, *args, **kwargs):
                if name in ("send", "sendrecv", "isend", "ssend"):
                    self.bytes_sent += len(pickle.dumps(obj))
                    self.messages += 1
                return method(obj, *args, **kwargs)
            return pickled
        return getattr(self._comm, name)


def counted(comm, call) -> dict:
    """Run call(counting_comm); return what it returned with the bytes, messages and methods this rank used."""
    counting = CountingComm(comm)
    value = call(counting)
    return {"value": value, "bytes": counting.bytes_sent, "messages": counting.messages, "used": counting.used}


# ---------------------------------------------------------------- the rank side: inputs


def rank_array(seed: int, rank: int, shape: list, dtype: str, integers: bool) -> np.ndarray:
    """Rank `rank`'s seeded input: small integers (sums exact in any order) or normal floats."""
    rng = np.random.default_rng([seed, rank])
    values = rng.integers(-50, 51, size=shape) if integers else rng.normal(size=shape)
    return values.astype(dtype)


def sibling(m, name: str):
    return importlib.import_module(f"{m.__package__}.{name}")


def build_model(m, config: dict, seed: int, init_seed: int | None = None):
    """A float64 GPT of the target's gpt module with seeded weights (by sorted parameter name: the order in which the
    target's GPT draws its own does not matter). init_seed seeds the GPT's own draws (different per rank, say)."""
    from grader.harness import randomise_parameters
    gpt = sibling(m, "gpt")
    model = gpt.GPT(gpt.GPTConfig(**config), rng=np.random.default_rng(seed if init_seed is None else init_seed))
    randomise_parameters(model, seed)
    return model


def flat_parameters(model) -> np.ndarray:
    return np.concatenate([p.data.reshape(-1) for p in model.parameters()])


def global_batches(config: dict, seed: int, batch: int, accumulation: int) -> list:
    """`accumulation` global micro-batches (x, y) of `batch` rows, the same on every rank (one seed)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, config["vocab_size"], size=400)
    starts = [rng.integers(0, len(tokens) - config["context"] - 1, size=batch) for _ in range(accumulation)]
    positions = [s[:, None] + np.arange(config["context"]) for s in starts]
    return [(tokens[p], tokens[p + 1]) for p in positions]


def owned_bytes(root, excluded: set[int], package: str) -> int:
    """Bytes of the distinct memory blocks reachable from `root`'s attributes, lists, dicts and Tensors (a view
    counts as the array it views; a block in `excluded`, the model's parameters and gradients, counts for nothing)."""
    seen_objects, blocks = set(), {}
    pending = [root]
    while pending:
        obj = pending.pop()
        if id(obj) in seen_objects:
            continue
        seen_objects.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in excluded:
                blocks[id(base)] = base.nbytes
        elif isinstance(obj, dict):
            pending += list(obj.values())
        elif isinstance(obj, (list, tuple)):
            pending += list(obj)
        elif type(obj).__module__.startswith(package) and hasattr(obj, "__dict__"):
            pending += list(vars(obj).values())
    return int(sum(blocks.values()))


def _root_id(array: np.ndarray) -> int:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return id(array)


def _parameter_roots(params) -> set[int]:
    """The memory of the model's parameters and gradients: shared by the model, not the optimizer's own."""
    return {_root_id(p.data) for p in params} | {_root_id(p.grad) for p in params if p.grad is not None}


# ---------------------------------------------------------------- the rank side: checks


def check_reduce_scatter(m, comm, cases: list) -> list:
    out = []
    for case in cases:
        array = rank_array(case["seed"], comm.Get_rank(), [case["size"]], case["dtype"], case["integers"])
        out.append(counted(comm, lambda c: m.ring_reduce_scatter(c, array)))
    return out


def check_all_gather(m, comm, cases: list) -> list:
    """Rank r passes chunk r of a seeded array known to every rank (np.array_split's cut, test-side)."""
    out = []
    for case in cases:
        whole = rank_array(case["seed"], 0, [case["size"]], case["dtype"], case["integers"])
        chunk = np.array_split(whole, comm.Get_size())[comm.Get_rank()].copy()
        out.append(dict(counted(comm, lambda c: m.ring_all_gather(c, chunk, case["size"])), whole=whole))
    return out


def check_allreduce(m, comm, cases: list) -> list:
    """ring_allreduce against MPI's own Allreduce on the same arrays, with what the ring sent and used."""
    from mpi4py import MPI
    out = []
    for case in cases:
        array = rank_array(case["seed"], comm.Get_rank(), case["shape"], case["dtype"], case["integers"])
        before = array.copy()
        result = counted(comm, lambda c: m.ring_allreduce(c, array))
        mpi = np.empty_like(array)
        comm.Allreduce(array, mpi, op=MPI.SUM)
        value = result["value"]
        out.append(dict(result, mpi=mpi, input_kept=bool(np.array_equal(before, array)),
                        shape=list(np.shape(value)), dtype=str(np.asarray(value).dtype)))
    return out


def check_broadcast(m, comm, config: dict, seed: int) -> dict:
    """Models built from a different seed on each rank; after broadcast_parameters every rank should hold rank 0's."""
    model = build_model(m, config, seed + comm.Get_rank())
    before = flat_parameters(model)
    arrays = [p.data for p in model.parameters()]
    m.broadcast_parameters(comm, model)
    return {"before": before, "after": flat_parameters(model),
            "in_place": all(p.data is a for p, a in zip(model.parameters(), arrays))}


def check_gradients(m, comm, config: dict, seed: int, bucket_bytes: list, none_grad: bool = False) -> list:
    """allreduce_gradients on seeded per-rank gradients, for several bucket sizes; the first parameter's grad is None
    on every rank when none_grad."""
    model = build_model(m, config, seed)
    params = model.parameters()
    out = []
    for size in bucket_bytes:
        rng = np.random.default_rng([seed, comm.Get_rank(), size])
        for i, p in enumerate(params):
            p.grad = None if (none_grad and i == 0) else rng.normal(size=p.shape).astype(p.data.dtype)
        mine = np.concatenate([(p.grad if p.grad is not None else np.zeros_like(p.data)).reshape(-1) for p in params])
        buckets = m.make_buckets(params, size)
        result = counted(comm, lambda c: m.allreduce_gradients(c, params, buckets))
        out.append({"buckets": buckets, "mine": mine, "summed": np.concatenate([p.grad.reshape(-1) for p in params]),
                    "bytes": result["bytes"], "messages": result["messages"], "used": result["used"]})
    return out


def check_gradients_in_place(m, comm, config: dict, seed: int, bucket_bytes: int) -> dict:
    """allreduce_gradients must write the sums into the gradient arrays the parameters already hold (in place)."""
    model = build_model(m, config, seed)
    params = model.parameters()
    rng = np.random.default_rng([seed, comm.Get_rank()])
    for p in params:
        p.grad = rng.normal(size=p.shape).astype(p.data.dtype)
    arrays = [p.grad for p in params]
    m.allreduce_gradients(comm, params, m.make_buckets(params, bucket_bytes))
    summed = [np.zeros(p.shape) for p in params]  # what every rank's gradient must become: the sum over the ranks
    for rank in range(comm.Get_size()):
        other = np.random.default_rng([seed, rank])
        for total, p in zip(summed, params):
            total += other.normal(size=p.shape).astype(p.data.dtype)
    errors = [float(np.max(np.abs(np.asarray(p.grad, dtype=np.float64) - total) / (1.0 + np.abs(total))))
              if isinstance(p.grad, np.ndarray) and p.grad.shape == total.shape else float("inf")
              for p, total in zip(params, summed)]
    return {"in_place": [p.grad is array for p, array in zip(params, arrays)], "worst_error": max(errors)}


def check_zero_schedule(m, comm, config: dict, seed: int, batch: int, lrs: list, clip: float) -> dict:
    """A learning rate per step (a schedule): data_parallel_step and zero_step with the same rates, the ShardedAdamW
    made with lrs[0] (zero_step's lr must reach its inner AdamW at every step)."""
    optim = sibling(m, "optim")
    ddp_model, zero_model = build_model(m, config, seed), build_model(m, config, seed)
    ddp = optim.AdamW(ddp_model.parameters(), lr=lrs[0], betas=(0.9, 0.99), weight_decay=0.1)
    zero = m.ShardedAdamW(comm, zero_model.parameters(), lr=lrs[0], betas=(0.9, 0.99), weight_decay=0.1)
    for step, lr in enumerate(lrs):
        batches = global_batches(config, seed + step, batch, 1)
        m.data_parallel_step(comm, ddp_model, ddp, batches, lr=lr, clip=clip)
        m.zero_step(comm, zero_model, zero, batches, lr=lr, clip=clip)
    return {"ddp": flat_parameters(ddp_model), "zero": flat_parameters(zero_model)}


def check_one_process(m, comm, config: dict, seed: int, batch: int, accumulation: int, steps: int, lr: float,
                      clip: float) -> dict | None:
    """The same steps in one process with stage 10's train_step on the whole global batches (rank 0 only)."""
    if comm.Get_rank() != 0:
        return None
    train, optim = sibling(m, "train"), sibling(m, "optim")
    model = build_model(m, config, seed)
    optimizer = optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    losses, norms = [], []
    for step in range(steps):
        result = train.train_step(model, optimizer, global_batches(config, seed + step, batch, accumulation), lr=lr,
                                  clip=clip)
        losses.append(result["loss"])
        norms.append(result["grad_norm"])
    return {"losses": losses, "grad_norms": norms, "parameters": flat_parameters(model),
            "state_bytes": owned_bytes(optimizer, _parameter_roots(model.parameters()), m.__package__)}


def check_ddp(m, comm, config: dict, seed: int, batch: int, accumulation: int, steps: int, lr: float, clip: float,
              bucket_bytes: int) -> dict:
    """`steps` data_parallel_step calls from different initial weights per rank (broadcast first)."""
    optim = sibling(m, "optim")
    model = build_model(m, config, seed if comm.Get_rank() == 0 else seed + 1000 + comm.Get_rank())
    m.broadcast_parameters(comm, model)
    optimizer = optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    losses, norms = [], []
    for step in range(steps):
        result = m.data_parallel_step(comm, model, optimizer, global_batches(config, seed + step, batch, accumulation),
                                      lr=lr, clip=clip, bucket_bytes=bucket_bytes)
        losses.append(result["loss"])
        norms.append(result["grad_norm"])
    return {"losses": losses, "grad_norms": norms, "parameters": flat_parameters(model)}


def check_zero(m, comm, config: dict, seed: int, batch: int, accumulation: int, steps: int, lr: float,
               clip: float) -> dict:
    """`steps` zero_step calls, then what the ShardedAdamW holds: its pieces, its state, its memory."""
    model = build_model(m, config, seed)
    params = model.parameters()
    optimizer = m.ShardedAdamW(comm, params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    losses, norms = [], []
    for step in range(steps):
        result = m.zero_step(comm, model, optimizer, global_batches(config, seed + step, batch, accumulation), lr=lr,
                             clip=clip)
        losses.append(result["loss"])
        norms.append(result["grad_norm"])
    inner = optimizer.optimizer
    state = sum(a.nbytes for arrays in inner.state.values() for a in arrays)
    pieces = [{"size": int(piece.data.size), "view": any(np.shares_memory(piece.data, p.data) for p in params)}
              for piece in optimizer.pieces]
    return {"losses": losses, "grad_norms": norms, "parameters": flat_parameters(model), "state_bytes": state,
            "owned_bytes": owned_bytes(optimizer, _parameter_roots(params), m.__package__), "pieces": pieces,
            "itemsize": int(params[0].data.itemsize), "elements": int(sum(p.size for p in params))}


def check_run(m, comm, overrides: dict, text: str, zero: bool = False) -> dict:
    """The given data-parallel loop (parallel_train.py) on this job's ranks, and on rank 0 the one-process loop of
    stage 10 on the same config and text: both validation curves."""
    import dataclasses
    train, loop = sibling(m, "train"), sibling(m, "parallel_train")
    config = dataclasses.replace(train.PRESETS["tiny"], **overrides)
    out = Path(os.environ["STAGE13_SCRATCH"]) / "run"
    summary = loop.train_data_parallel(config, out / "ranks", text=text, verbose=False, comm=comm, zero=zero)
    result = {"val_losses": summary["val_losses"], "losses": summary["losses"]}
    if comm.Get_rank() == 0:
        alone = train.train(config, out / "one", text=text, verbose=False)
        result.update(one_val_losses=alone["val_losses"], one_losses=alone["losses"])
    return result


def check_hang(m, comm, pid_dir: str | None = None) -> None:
    """For the launcher's own tests: rank 1 waits for a message nobody sends (each rank's pid written to pid_dir)."""
    if pid_dir is not None:
        Path(pid_dir, f"{comm.Get_rank()}.pid").write_text(str(os.getpid()))
    if comm.Get_rank() == 1:
        comm.recv(source=0, tag=99)


def check_die(m, comm) -> None:
    """For the launcher's own tests: rank 1 dies without a word."""
    if comm.Get_rank() == 1:
        os._exit(7)


CHECKS = {name[len("check_"):]: value for name, value in list(globals().items()) if name.startswith("check_")}


def main() -> None:
    package_dir, stage_module, job_file, out_dir = sys.argv[1:5]
    root = Path(__file__).resolve().parents[2]  # holds grader/ (the repository, or the sandbox's trusted files)
    sys.path.insert(0, str(root))
    os.environ["STAGE13_SCRATCH"] = out_dir
    from mpi4py import MPI
    from grader.suites import targets

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    path = Path(out_dir) / f"rank{rank}.json"
    records: dict = {}

    def save() -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(encode(records)), encoding="utf-8")
        os.replace(temporary, path)

    try:
        module = targets.stage_module(targets.load(package_dir), stage_module)
    except BaseException as error:  # the target does not import: every check says so
        records["__import__"] = {"error": type(error).__name__, "message": str(error),
                                 "traceback": traceback.format_exc()}
        save()
        comm.Abort(3)
    for name, arguments in json.loads(Path(job_file).read_text(encoding="utf-8")):
        try:
            records[name] = {"returned": CHECKS[name](module, comm, **arguments)}
        except NotImplementedError as error:  # a stub raises on every rank at the same point: go on
            stub = traceback.extract_tb(error.__traceback__)[-1]
            records[name] = {"unimplemented": str(error), "file": stub.filename, "line": stub.lineno,
                             "function": stub.name}
        except BaseException as error:  # the other ranks may wait for this one forever: stop them all
            records[name] = {"error": type(error).__name__, "message": str(error),
                             "traceback": traceback.format_exc()}
            save()
            comm.Abort(3)
        save()


if __name__ == "__main__":
    main()
