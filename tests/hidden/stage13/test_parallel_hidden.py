"""Stage 13 (data-parallel training on MPI), hidden suite: other sizes, shapes, dtypes, models and batches than the
visible one: empty and one-element arrays on 3 ranks, integer arrays, a model with learned positions, LayerNorm, GELU,
grouped-query attention and an untied head, uneven shards (7 rows on 3 ranks) with accumulation and active clipping,
a gradient that is None, and a ZeRO-1 training run."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, assert_close, assert_true, raised
from tests.stage13.helpers import (TINY_RUN, VERSE, bucket_messages, chunk_sizes, model_job, probe_mpi, probe_values,
                                   ring_bytes, ring_job, ring_total, tensors)
from tests.stage13.test_parallel import (RUN, SUMS, SUMS32, TRAJECTORIES, WHOLE_BATCH, probe_allreduce_seconds,
                                         probe_chunk_bounds, probe_make_buckets, probe_scaling_efficiency,
                                         probe_shard_batch)

OTHER_GPT = {"vocab_size": 13, "context": 6, "layers": 1, "heads": 2, "kv_heads": 1, "width": 12, "norm": "layer",
             "feed_forward": "gelu", "position": "learned", "tie_embeddings": False}
SMALL_GPT = {"vocab_size": 11, "context": 8, "layers": 2, "heads": 2, "width": 8}

RING3 = ring_job([0, 1, 5, 31], [17], [([2, 2, 3], "float32"), ([1], "float64"), ([4, 3], "int64")], seed=2300)
RING2 = ring_job([3], [77], [([5, 1], "float32"), ([6], "int64")], seed=2320)
# 7 rows on 3 ranks (3, 2, 2), two micro-batches, clipping at 0.05 (active: the norms are ~1), and a None gradient
MODEL3 = model_job({"config": SMALL_GPT, "seed": 2333, "batch": 7, "accumulation": 2, "steps": 3, "lr": 1e-2,
                    "clip": 0.05}, 100, [1, 5000], None)
MODEL3[1][1]["none_grad"] = True
MODEL3.append(["run", {"overrides": TINY_RUN, "text": VERSE, "zero": True}])
# another model: 5 rows on 2 ranks (3, 2), three micro-batches
MODEL2 = model_job({"config": OTHER_GPT, "seed": 2322, "batch": 5, "accumulation": 3, "steps": 2, "lr": 3e-3,
                    "clip": 1e3}, 600, [700], None)


def _tol(case: dict):
    if case["integers"] or case["dtype"] == "int64":
        return EXACT
    return SUMS32 if case["dtype"] == "float32" else SUMS


@pytest.mark.concept("chunks")
def test_chunk_bounds_more_ranks_than_elements_and_large_sizes(check):
    cases = [[3, 7], [1, 2], [10**6 + 3, 8], [64, 64], [65, 64]]
    got = check(probe_chunk_bounds, cases=cases, tol=EXACT, what="chunk_bounds")
    for (size, ranks), record in zip(cases, got):
        sizes = chunk_sizes(size, ranks)
        stops = np.cumsum(sizes).tolist()
        assert_close(record["returned"], [[stop - n, stop] for stop, n in zip(stops, sizes)], EXACT,
                     f"chunk_bounds({size}, {ranks}) against np.array_split's cut")


@pytest.mark.concept("cost-model")
def test_cost_model_edges(check):
    got = check(probe_allreduce_seconds, cases=[[0.0, 8, 3e-6, 1e9], [5e8, 1, 1.0, 1.0], [1e9, 16, 0.0, 1e9]],
                tol=F64, what="allreduce_seconds")
    assert_close(got, [14 * 3e-6, 0.0, 30 / 16], F64, "latency only (no bytes), one rank (nothing to send), "
                                                      "bandwidth only (1 GB over 16 ranks at 1 GB/s)")
    efficiency = check(probe_scaling_efficiency, compute=0.2, nbytes=4e6, ranks=[1, 8], latency=5e-5, bandwidth=1e8,
                       tol=F64, what="scaling_efficiency")
    assert_close(efficiency, [1.0, 0.2 / (0.2 + 14 * 5e-5 + 1.75 * 4e6 / 1e8)], F64, "efficiency at 1 and 8 ranks")


@pytest.mark.concept("buckets")
def test_make_buckets_with_an_oversized_first_parameter_and_exact_fits(check):
    shapes, dtypes = [[300], [50], [50], [100], [1]], ["float64", "float32", "float32", "float32", "float64"]
    got = check(probe_make_buckets, shapes=shapes, dtypes=dtypes, sizes=[400, 800, 2400, 2], tol=EXACT,
                what="make_buckets")  # 2400, 200, 200, 400, 8 bytes
    assert_close([record["returned"] for record in got],
                 [[[0], [1, 2], [3], [4]], [[0], [1, 2, 3], [4]], [[0], [1, 2, 3, 4]], [[0], [1], [2], [3], [4]]],
                 EXACT, "buckets worked out by hand (exactly full is not over)")


@pytest.mark.concept("shard")
def test_shard_batch_one_row_each_and_thirteen_on_four(check):
    got = check(probe_shard_batch, batch=13, ranks=4, tol=EXACT, what="shard_batch")
    x = np.arange(39).reshape(13, 3)
    assert_close([record["returned"][0] for record in got], [x[0:4], x[4:7], x[7:10], x[10:13]], EXACT,
                 "13 rows on 4 ranks: 4, 3, 3, 3")
    got = check(probe_shard_batch, batch=3, ranks=3, tol=EXACT, what="shard_batch")
    assert_close([record["returned"][1] for record in got], [x[i:i + 1] + 100 for i in range(3)], EXACT,
                 "3 rows on 3 ranks: one each (y)")


@pytest.mark.concept("allreduce")
def test_ring_on_3_ranks_with_empty_and_tiny_arrays(target):
    for check in ("reduce_scatter", "allreduce"):
        got = target.run(probe_mpi, job=RING3, ranks=3, check=check)
        cases = RING3[0 if check == "reduce_scatter" else 2][1]["cases"]
        for i, case in enumerate(cases):
            total = ring_total(case, 3)
            for rank in range(3):
                want = np.array_split(total.reshape(-1), 3)[rank] if check == "reduce_scatter" else total
                assert_close(np.asarray(got[rank][i]["value"], dtype=np.float64), want, _tol(case),
                             f"{check} on 3 ranks, {case.get('shape') or case.get('size')} {case['dtype']}: rank {rank}")


@pytest.mark.concept("allreduce")
def test_ring_on_2_ranks_against_mpi_and_the_reference(check, target):
    check(probe_values, job=RING2, ranks=2, check="allreduce", tol=SUMS32, what="ring_allreduce on 2 ranks")
    got = target.run(probe_mpi, job=RING2, ranks=2, check="allreduce")
    for i, case in enumerate(RING2[2][1]["cases"]):
        for rank in range(2):
            found = got[rank][i]
            assert_close(found["value"], found["mpi"], _tol(case), f"rank {rank}, {case['shape']} {case['dtype']}: "
                                                                    f"against MPI's Allreduce")
            assert_close([found["dtype"], found["input_kept"]], [case["dtype"], True], EXACT,
                         f"rank {rank}, {case['shape']} {case['dtype']}: [dtype, input unchanged]")


@pytest.mark.concept("bytes")
def test_bytes_sent_with_uneven_chunks(target):
    for job, ranks in ((RING3, 3), (RING2, 2)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="allreduce")
        for i, case in enumerate(job[2][1]["cases"]):
            size, itemsize = int(np.prod(case["shape"])), np.dtype(case["dtype"]).itemsize
            assert_close([got[rank][i]["bytes"] for rank in range(ranks)],
                         [ring_bytes(size, itemsize, ranks, rank) for rank in range(ranks)], EXACT,
                         f"{ranks} ranks, {size} elements of {itemsize} bytes: bytes each rank sent")


@pytest.mark.concept("allreduce-gradients")
def test_a_none_gradient_becomes_zeros_and_is_summed(target):
    got = target.run(probe_mpi, job=MODEL3, ranks=3, check="gradients")
    for i, size in enumerate(MODEL3[1][1]["bucket_bytes"]):
        total = sum(got[rank][i]["mine"] for rank in range(3))
        for rank in range(3):
            found = got[rank][i]
            assert_close(found["summed"], total, SUMS, f"3 ranks, buckets of {size} bytes, the first gradient None: "
                                                       f"rank {rank}'s gradients against the sum of every rank's")
            assert_close(found["messages"], bucket_messages(found["buckets"], 3), EXACT,
                         f"3 ranks, buckets of {size} bytes: messages of rank {rank}")


@pytest.mark.concept("shard-weights")
def test_ddp_with_uneven_shards_accumulation_and_clipping_follows_one_process(target):
    one = target.run(probe_mpi, job=MODEL3, ranks=3, check="one_process")[0]
    got = target.run(probe_mpi, job=MODEL3, ranks=3, check="ddp")
    assert_true(min(one["grad_norms"]) > 0.05, "test defect: clipping at 0.05 should be active")
    for rank in range(3):
        assert_close({k: got[rank][k] for k in ("losses", "grad_norms", "parameters")},
                     {k: one[k] for k in ("losses", "grad_norms", "parameters")}, TRAJECTORIES,
                     f"3 ranks with 3, 2 and 2 of 7 rows, 2 micro-batches, clipping at 0.05: rank {rank} against one "
                     f"process", (WHOLE_BATCH,))


@pytest.mark.concept("ddp")
def test_ddp_on_another_model_follows_one_process(target):
    one = target.run(probe_mpi, job=MODEL2, ranks=2, check="one_process")[0]
    got = target.run(probe_mpi, job=MODEL2, ranks=2, check="ddp")
    for rank in range(2):
        assert_close({k: got[rank][k] for k in ("losses", "grad_norms", "parameters")},
                     {k: one[k] for k in ("losses", "grad_norms", "parameters")}, TRAJECTORIES,
                     f"learned positions, LayerNorm, GELU, one kv head, untied head; 5 rows on 2 ranks, 3 micro-batches: "
                     f"rank {rank} against one process", (WHOLE_BATCH,))


@pytest.mark.concept("broadcast")
def test_broadcast_on_3_ranks(target):
    got = target.run(probe_mpi, job=MODEL3, ranks=3, check="broadcast")
    for rank in range(3):
        assert_close([got[rank]["after"], got[rank]["in_place"]], [got[0]["before"], True], EXACT,
                     f"3 ranks: rank {rank}'s [parameters, filled in place] after the broadcast")


@pytest.mark.concept("zero-step")
@pytest.mark.parametrize("ranks", [2, 3])
def test_zero_follows_ddp_with_clipping_and_another_model(target, ranks):
    job = MODEL2 if ranks == 2 else MODEL3
    ddp = target.run(probe_mpi, job=job, ranks=ranks, check="ddp")
    got = target.run(probe_mpi, job=job, ranks=ranks, check="zero")
    for rank in range(ranks):
        assert_close({k: got[rank][k] for k in ("losses", "grad_norms", "parameters")},
                     {k: ddp[rank][k] for k in ("losses", "grad_norms", "parameters")}, TRAJECTORIES,
                     f"{ranks} ranks, rank {rank}: ZeRO-1 against DDP (the norm for clipping is the whole gradient's)")


@pytest.mark.concept("zero-memory")
def test_zero_state_on_3_ranks_of_an_uneven_model(target):
    got = target.run(probe_mpi, job=MODEL3, ranks=3, check="zero")
    elements, itemsize = got[0]["elements"], got[0]["itemsize"]
    chunks = chunk_sizes(elements, 3)
    assert_close([[got[r]["state_bytes"], sum(p["size"] for p in got[r]["pieces"])] for r in range(3)],
                 [[2 * c * itemsize, c] for c in chunks], EXACT, f"3 ranks, {elements} elements: [state bytes, "
                                                                 f"elements in the pieces] of each rank")


@pytest.mark.concept("zero-step")
def test_a_zero_training_run_follows_one_process(target):
    got = target.run(probe_mpi, job=MODEL3, ranks=3, check="run")
    assert_close(got[0]["val_losses"], got[0]["one_val_losses"], RUN, "train_data_parallel(zero=True) on 3 ranks "
                 "against train.train in one process: [step, validation loss] pairs", (WHOLE_BATCH,))
