"""Stage 13 helpers shared by the visible and the hidden suite: the MPI probe, the jobs, and the truths computed
here (sums, chunk sizes, bytes) from the same seeded inputs the ranks make."""
from __future__ import annotations

import numpy as np

from tests.stage13 import mpi

SMALL_GPT = {"vocab_size": 11, "context": 8, "layers": 2, "heads": 2, "width": 8}


def probe_mpi(m, job: list, ranks: int, check: str) -> list:
    """What `check` of `job` returned on each of `ranks` MPI ranks (launched once per job and target)."""
    return mpi.outcome(m, job, ranks, check)


def probe_values(m, job: list, ranks: int, check: str) -> list:
    """Only the arrays the ring returned on each rank, case by case (for comparing with the reference)."""
    return [[case["value"] for case in cases] for cases in mpi.outcome(m, job, ranks, check)]


def tensors(m, shapes: list, dtypes: list) -> list:
    """Parameters (Tensors of the target's tensor module) of the given shapes and dtypes, zeros."""
    tensor = mpi.sibling(m, "tensor")
    return [tensor.Tensor(np.zeros(shape), requires_grad=True, dtype=dtype) for shape, dtype in zip(shapes, dtypes)]


def chunk_sizes(size: int, ranks: int) -> list[int]:
    """np.array_split's cut: the first size % ranks chunks have one element more."""
    return [len(piece) for piece in np.array_split(np.arange(size), ranks)]


def ring_total(case: dict, ranks: int) -> np.ndarray:
    """The sum over ranks of the ranks' seeded inputs (in their dtype), added here in float64: exact for the integer
    cases, within a few ulps of any other order for the float ones."""
    shape = case.get("shape", [case.get("size")])
    return sum(mpi.rank_array(case["seed"], r, shape, case["dtype"], case["integers"]).astype(np.float64)
               for r in range(ranks))


def ring_bytes(size: int, itemsize: int, ranks: int, rank: int) -> int:
    """What rank r sends in a ring all-reduce of `size` elements: every chunk but its own in reduce-scatter and every
    chunk but chunk r + 1 in all-gather, (2 size - |chunk r| - |chunk r+1|) elements. Summed over the ranks this is
    2 (N - 1) size exactly; per rank it is 2 (N - 1)/N size when N divides size."""
    if ranks == 1:
        return 0
    sizes = chunk_sizes(size, ranks)
    return itemsize * (2 * size - sizes[rank] - sizes[(rank + 1) % ranks])


def bucket_messages(buckets: list, ranks: int) -> int:
    """Messages one rank sends for bucketed gradients: one ring all-reduce per bucket, 2 (N - 1) messages each."""
    return len(buckets) * 2 * (ranks - 1)


# ---------------------------------------------------------------- the visible suite's jobs (one launch each)


def _cases(sizes: list, seed: int, integers: bool, dtype: str = "float64") -> list:
    return [{"size": size, "seed": seed + i, "integers": integers, "dtype": dtype} for i, size in enumerate(sizes)]


def ring_job(sizes_exact: list, sizes_float: list, shapes: list, seed: int) -> list:
    """reduce-scatter, all-gather and all-reduce on integer-valued arrays (sums exact in any order), on float arrays,
    and all-reduce on arrays of other shapes and dtypes."""
    flat = _cases(sizes_exact, seed, True) + _cases(sizes_float, seed + 100, False)
    shaped = [{"shape": shape, "seed": seed + 200 + i, "integers": False, "dtype": dtype}
              for i, (shape, dtype) in enumerate(shapes)]
    return [["reduce_scatter", {"cases": flat}], ["all_gather", {"cases": flat}],
            ["allreduce", {"cases": [{**case, "shape": [case["size"]]} for case in flat] + shaped}]]


RING2 = ring_job([10, 7, 1], [1001], [([3, 5], "float32"), ([2, 3, 4], "float64")], seed=1300)
RING3 = ring_job([10, 11, 2], [998], [([4, 7], "float32")], seed=1330)

TRAJECTORY = {"config": SMALL_GPT, "seed": 1313, "batch": 6, "accumulation": 1, "steps": 3, "lr": 1e-2, "clip": 1e3}
TINY_RUN = {"context": 16, "layers": 1, "heads": 2, "width": 16, "batch_size": 4, "steps": 8, "warmup_steps": 2,
            "eval_every": 4, "eval_batches": 2, "checkpoint_every": 4, "log_every": 4}
VERSE = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
         "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nWhat's in a name? that which we call a rose\n"
         "By any other name would smell as sweet.\n\nMERCUTIO:\nA plague o' both your houses!\n\n") * 12


def model_job(trajectory: dict, bucket_bytes: int, gradient_buckets: list, run: dict | None) -> list:
    """broadcast, bucketed gradients, the one-process trajectory, DDP's, ZeRO-1's, and (optionally) a training run."""
    job = [["broadcast", {"config": trajectory["config"], "seed": trajectory["seed"]}],
           ["gradients", {"config": trajectory["config"], "seed": trajectory["seed"], "bucket_bytes": gradient_buckets}],
           ["one_process", trajectory], ["ddp", {**trajectory, "bucket_bytes": bucket_bytes}], ["zero", trajectory]]
    if run is not None:
        job.append(["run", {"overrides": run, "text": VERSE}])
    return job


MODEL2 = model_job(TRAJECTORY, 256, [1, 700, 1 << 20], TINY_RUN)
MODEL3 = model_job({**TRAJECTORY, "seed": 1333}, 1000, [300], None)
