"""Stage 13 (data-parallel training on MPI), visible suite: chunks, the cost model and buckets in this process; the
ring collectives, DDP, ZeRO-1 and the training loop on 2 and 3 real MPI ranks (tests/stage13/mpi.py launches them,
one launch per job; a job batches several checks).

Every MPI result is checked against something that does not trust the reference: the sum computed here from the
ranks' seeded inputs, MPI's own Allreduce on the same arrays, the byte count derived in docs/13-parallel.md, one
process running stage 10's train_step on the whole batch, DDP's own trajectory for ZeRO-1, and the optimizer's state
counted in bytes. Models are float64 with seeded weights set by parameter name, so only the order of the sums can
differ, and each tolerance says how much that is.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, assert_true, raised
from tests.stage13.helpers import (MODEL2, MODEL3, RING2, RING3, bucket_messages, chunk_sizes, probe_mpi,
                                   probe_values, ring_bytes, ring_total, tensors)

# The ring adds N numbers in an order of its own, MPI's Allreduce and numpy in theirs: float64 sums of N normal
# numbers differ by a few ulps (~1e-16 relative); a sum that cancels to near zero needs the absolute margin.
SUMS = Tol(1e-12, 1e-12, "float64 sums of N numbers in another order differ by a few ulps")
SUMS32 = Tol(1e-5, 1e-6, "float32 sums of N numbers in another order differ by a few ulps (~1e-7 relative)")
# N ranks: b_r rows each, the mean weighted by b_r / B, then the ranks' parts added; one process sums the same terms
# in another order and rounds 1/B once. Three AdamW steps carry ~1e-16 relative differences on, and where a gradient
# nearly cancels, AdamW's division by sqrt(v) magnifies them: hence 1e-9.
TRAJECTORIES = Tol(1e-9, 1e-11, "float64; N ranks sum the batch's gradient in another order than one process, and "
                                "three AdamW steps carry it on")
# The training run is float32 (the tiny preset's GPT): ~1e-7 relative per sum, over 8 AdamW steps and the validation
# mean. A wrong weighting or a missing all-reduce moves the validation loss by 1e-2 or more.
RUN = Tol(1e-4, 1e-5, "float32 models: N ranks and one process sum in another order for 8 steps")

WHOLE_BATCH = Mistake("each rank stepped on its own rows only, or the gradients were averaged with 1/N where the "
                      "rows are uneven: weight each rank's loss by b_r / B and sum the gradients over the ranks",
                      lambda got, want: True)


def _case_tol(case: dict) -> Tol:
    return EXACT if case["integers"] else (SUMS32 if case["dtype"] == "float32" else SUMS)


# ---------------------------------------------------------------- in this process: chunks, cost model, buckets


def probe_chunk_bounds(m, cases: list) -> list:
    return [raised(m.chunk_bounds, size, ranks) for size, ranks in cases]


@pytest.mark.concept("chunks")
def test_chunk_bounds_cut_like_array_split_by_hand(check):
    cases = [[10, 3], [2, 3], [12, 4], [0, 2], [5, 1], [7, 2]]
    got = check(probe_chunk_bounds, cases=cases, tol=EXACT, what="chunk_bounds")
    by_hand = [[[0, 4], [4, 7], [7, 10]], [[0, 1], [1, 2], [2, 2]], [[0, 3], [3, 6], [6, 9], [9, 12]],
               [[0, 0], [0, 0]], [[0, 5]], [[0, 4], [4, 7]]]
    assert_close([record["returned"] for record in got], by_hand, EXACT, "chunk_bounds written out by hand")


@pytest.mark.concept("chunks")
def test_chunk_bounds_cover_every_size_as_array_split_does(target):
    cases = [[size, ranks] for size in range(0, 23) for ranks in range(1, 6)]
    for (size, ranks), record in zip(cases, target.run(probe_chunk_bounds, cases=cases)):
        sizes = chunk_sizes(size, ranks)
        stops = np.cumsum(sizes).tolist()
        want = [[stop - length, stop] for stop, length in zip(stops, sizes)]
        assert_close(record, {"returned": want}, EXACT, f"chunk_bounds({size}, {ranks}) against np.array_split's cut "
                     f"(the first size % ranks chunks hold one element more)")
    assert_close(target.run(probe_chunk_bounds, cases=[[-1, 2], [4, 0]]),
                 [{"raised": "ValueError"}, {"raised": "ValueError"}], EXACT, "size < 0 and ranks < 1")


def probe_allreduce_seconds(m, cases: list) -> list:
    return [m.allreduce_seconds(nbytes, ranks, latency=latency, bandwidth=bandwidth)
            for nbytes, ranks, latency, bandwidth in cases]


@pytest.mark.concept("cost-model")
def test_allreduce_seconds_is_the_alpha_beta_model_by_hand(check):
    cases = [[1e6, 1, 1e-5, 1e9], [1e6, 2, 1e-5, 1e9], [8e6, 4, 2e-6, 1e10], [3.2e6, 64, 1e-5, 1.25e9]]
    got = check(probe_allreduce_seconds, cases=cases, tol=F64, what="allreduce_seconds")
    # 2(N-1) latency + 2(N-1)/N nbytes / bandwidth, by hand
    by_hand = [0.0, 2e-5 + 1e-3, 6 * 2e-6 + 1.5 * 8e6 / 1e10, 126 * 1e-5 + 126 / 64 * 3.2e6 / 1.25e9]
    assert_close(got, by_hand, F64, "T(N) = 2(N-1) latency + 2(N-1)/N nbytes / bandwidth, worked out by hand",
                 (Mistake("the bandwidth term is missing its 2(N-1)/N: a ring sends each byte 2(N-1)/N times",
                          lambda got, want: abs(got[1] - 2e-5 - 1e6 / 1e9 / 2) < 1e-12),))


def probe_scaling_efficiency(m, compute: float, nbytes: float, ranks: list, latency: float, bandwidth: float) -> list:
    return [m.scaling_efficiency(compute, nbytes, n, latency=latency, bandwidth=bandwidth) for n in ranks]


@pytest.mark.concept("cost-model")
def test_scaling_efficiency_is_compute_over_compute_plus_allreduce(check):
    ranks = [1, 2, 4, 8, 16, 32, 64]
    got = check(probe_scaling_efficiency, compute=0.05, nbytes=3.2e6, ranks=ranks, latency=1e-5, bandwidth=1.25e9,
                tol=F64, what="scaling_efficiency")
    assert_close(got[:2], [1.0, 0.05 / (0.05 + 2e-5 + 3.2e6 / 1.25e9)], F64,
                 "one rank computes all the time; two ranks add 2e-5 s of latency and 2.56 ms of transfer")
    assert_true(all(a > b for a, b in zip(got, got[1:])),
                f"the efficiency should fall as ranks are added (more latency terms), got {got}")


def probe_shard_batch(m, batch: int, ranks: int) -> list:
    x = np.arange(batch * 3).reshape(batch, 3)  # (B, T): row b holds 3b, 3b+1, 3b+2
    return [raised(lambda r=r: list(m.shard_batch(x, x + 100, r, ranks))) for r in range(ranks)]


@pytest.mark.concept("shard")
def test_shard_batch_gives_each_rank_its_rows(check):
    got = check(probe_shard_batch, batch=7, ranks=3, tol=EXACT, what="shard_batch")
    rows = [[0, 1, 2], [3, 4], [5, 6]]  # chunk_bounds(7, 3): 3, 2, 2 rows
    x = np.arange(21).reshape(7, 3)
    assert_close([record["returned"] for record in got], [[x[r], x[r] + 100] for r in rows], EXACT,
                 "rank r's rows chunk_bounds(7, 3)[r] of x and of y")
    assert_close(check(probe_shard_batch, batch=2, ranks=3, tol=EXACT, what="shard_batch of 2 rows on 3 ranks"),
                 [{"raised": "ValueError", "mentions": []}] * 3, EXACT, "a batch smaller than the ranks")


def probe_make_buckets(m, shapes: list, dtypes: list, sizes: list) -> list:
    params = tensors(m, shapes, dtypes)
    return [raised(m.make_buckets, params, size) for size in sizes]


@pytest.mark.concept("buckets")
def test_make_buckets_by_hand(check):
    shapes, dtypes = [[100], [10, 10], [100], [500], [25]], ["float32"] * 5  # 400, 400, 400, 2000, 100 bytes
    got = check(probe_make_buckets, shapes=shapes, dtypes=dtypes, sizes=[1000, 1, 10**6, 800, 0], tol=EXACT,
                what="make_buckets")
    by_hand = [[[0, 1], [2], [3], [4]], [[0], [1], [2], [3], [4]], [[0, 1, 2, 3, 4]], [[0, 1], [2], [3], [4]]]
    assert_close([record["returned"] for record in got[:4]], by_hand, EXACT,
                 "buckets of at most 1000, 1, 10^6 and 800 bytes, worked out by hand (an oversized parameter sits "
                 "alone; exactly full is not over)")
    assert_close(got[4], {"raised": "ValueError"}, EXACT, "bucket_bytes = 0")


@pytest.mark.concept("buckets")
def test_make_buckets_keep_order_and_size_on_random_models(check):
    rng = np.random.default_rng(1301)
    shapes = [[int(rng.integers(1, 40)), int(rng.integers(1, 9))] for _ in range(23)]
    dtypes = [str(d) for d in rng.choice(["float32", "float64"], size=23)]
    sizes = [64, 512, 2048, 5000]
    got = check(probe_make_buckets, shapes=shapes, dtypes=dtypes, sizes=sizes, tol=EXACT, what="make_buckets")
    nbytes = [int(np.prod(s)) * np.dtype(d).itemsize for s, d in zip(shapes, dtypes)]
    for size, record in zip(sizes, got):
        buckets = record["returned"]
        assert_true(sum(buckets, []) == list(range(23)), f"bucket_bytes={size}: every index once, in order; got "
                                                         f"{buckets}")
        over = [b for b in buckets if len(b) > 1 and sum(nbytes[i] for i in b) > size]
        assert_true(not over, f"bucket_bytes={size}: buckets {over} hold more than {size} bytes")


# ---------------------------------------------------------------- the ring, on 2 and 3 ranks


@pytest.mark.concept("reduce-scatter")
def test_reduce_scatter_leaves_the_sum_of_chunk_r_on_rank_r(target):
    cases = RING3[0][1]["cases"]
    got = target.run(probe_mpi, job=RING3, ranks=3, check="reduce_scatter")
    for i, case in enumerate(cases):
        total = ring_total(case, 3)
        pieces = np.array_split(total, 3)
        for rank in range(3):
            assert_close(got[rank][i]["value"].astype(np.float64), pieces[rank], _case_tol(case),
                         f"3 ranks, {case['size']} elements: rank {rank}'s chunk of the sum",
                         (Mistake("the chunk is right but not added up over all ranks: did the last step add the "
                                  "received chunk?", lambda g, w: g.shape == w.shape),))


@pytest.mark.concept("all-gather")
def test_all_gather_puts_every_chunk_on_every_rank(target):
    cases = RING3[1][1]["cases"]
    got = target.run(probe_mpi, job=RING3, ranks=3, check="all_gather")
    for i, case in enumerate(cases):
        for rank in range(3):
            assert_close(got[rank][i]["value"], got[rank][i]["whole"], EXACT,
                         f"3 ranks, {case['size']} elements: rank {rank} after all-gather (every chunk, in order)")


@pytest.mark.concept("allreduce")
def test_ring_allreduce_on_2_ranks_sums_exactly(check):
    got = check(probe_values, job=RING2, ranks=2, check="allreduce", tol=SUMS32, what="ring_allreduce on 2 ranks")
    cases = RING2[2][1]["cases"]
    for i, case in enumerate(cases):
        for rank in range(2):
            assert_close(np.asarray(got[rank][i], dtype=np.float64), ring_total(case, 2), _case_tol(case),
                         f"rank {rank}, {case['shape']} {case['dtype']}: the sum of both ranks' arrays")


@pytest.mark.concept("allreduce")
def test_ring_allreduce_on_3_ranks_equals_mpi_allreduce(target, reference):
    got = target.run(probe_mpi, job=RING3, ranks=3, check="allreduce")
    want = reference.run(probe_mpi, job=RING3, ranks=3, check="allreduce")
    for i, case in enumerate(RING3[2][1]["cases"]):
        for rank in range(3):
            assert_close(got[rank][i]["value"], got[rank][i]["mpi"], _case_tol(case),
                         f"rank {rank}, {case['shape']} {case['dtype']}: ring_allreduce against MPI's Allreduce")
            assert_close(got[rank][i]["value"], want[rank][i]["value"], _case_tol(case),
                         f"rank {rank}, {case['shape']} {case['dtype']}: against the reference's ring")


@pytest.mark.concept("allreduce")
def test_ring_allreduce_keeps_shape_dtype_and_input_and_ranks_agree(target):
    for job, ranks in ((RING2, 2), (RING3, 3)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="allreduce")
        for i, case in enumerate(job[2][1]["cases"]):
            for rank in range(ranks):
                found = got[rank][i]
                assert_close([found["shape"], found["dtype"], found["input_kept"]], [case["shape"], case["dtype"], True],
                             EXACT, f"{ranks} ranks, rank {rank}: [shape, dtype, input unchanged] of the result")
                # all-gather hands every rank the same summed chunks: the results agree bit for bit
                assert_close(found["value"], got[0][i]["value"], EXACT, f"{ranks} ranks: rank {rank}'s result "
                             f"against rank 0's")


@pytest.mark.concept("bytes")
def test_each_rank_sends_2_n_minus_1_over_n_of_the_array(target):
    for job, ranks in ((RING2, 2), (RING3, 3)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="allreduce")
        for i, case in enumerate(job[2][1]["cases"]):
            size, itemsize = int(np.prod(case["shape"])), np.dtype(case["dtype"]).itemsize
            sent = [got[rank][i]["bytes"] for rank in range(ranks)]
            want = [ring_bytes(size, itemsize, ranks, rank) for rank in range(ranks)]
            assert_close(sent, want, EXACT, f"{ranks} ranks, {size} elements of {itemsize} bytes: bytes each rank "
                         f"sent (all chunks but its own, then all but chunk r + 1)",
                         (Mistake("the whole array went round instead of one chunk per step",
                                  lambda g, w: g[0] >= 2 * (ranks - 1) * size * itemsize > 0),))
            assert_close(sum(sent), 2 * (ranks - 1) * size * itemsize, EXACT,
                         f"{ranks} ranks, {size} elements: the ranks' bytes add up to 2(N-1) times the array")


@pytest.mark.concept("by-hand")
def test_the_ring_uses_sendrecv_only_n_minus_1_messages_per_phase(target):
    for job, ranks in ((RING2, 2), (RING3, 3)):
        for check, per_call in (("reduce_scatter", ranks - 1), ("all_gather", ranks - 1),
                                ("allreduce", 2 * (ranks - 1))):
            got = target.run(probe_mpi, job=job, ranks=ranks, check=check)
            for rank in range(ranks):
                assert_close([case["used"] for case in got[rank]], [[] for _ in got[rank]], EXACT,
                             f"{check} on {ranks} ranks, rank {rank}: MPI collectives or pickling methods called "
                             f"(build the ring from comm.Sendrecv on NumPy buffers)")
                assert_close([case["messages"] for case in got[rank]], [per_call] * len(got[rank]), EXACT,
                             f"{check} on {ranks} ranks, rank {rank}: messages sent per call (one per ring step)")


# ---------------------------------------------------------------- DDP and ZeRO-1 on 2 and 3 ranks


@pytest.mark.concept("broadcast")
def test_broadcast_parameters_gives_every_rank_rank_0s_weights(target):
    got = target.run(probe_mpi, job=MODEL2, ranks=2, check="broadcast")
    assert_true(not np.array_equal(got[0]["before"], got[1]["before"]), "test defect: the ranks' models should start "
                                                                        "different")
    for rank in range(2):
        assert_close(got[rank]["after"], got[0]["before"], EXACT, f"rank {rank}'s parameters after the broadcast "
                     f"against rank 0's before it")
        assert_true(got[rank]["in_place"], f"rank {rank}: broadcast_parameters must fill p.data in place (Bcast into "
                                           f"the same array), not assign new arrays")


@pytest.mark.concept("allreduce-gradients")
def test_bucketed_gradients_are_summed_over_the_ranks(target):
    for job, ranks in ((MODEL2, 2), (MODEL3, 3)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="gradients")
        for i, size in enumerate(job[1][1]["bucket_bytes"]):
            total = sum(got[rank][i]["mine"] for rank in range(ranks))
            for rank in range(ranks):
                found = got[rank][i]
                assert_close(found["summed"], total, SUMS, f"{ranks} ranks, buckets of {size} bytes: rank {rank}'s "
                             f"gradients against the sum of every rank's")
                assert_close([found["messages"], found["used"]], [bucket_messages(found["buckets"], ranks), []],
                             EXACT, f"{ranks} ranks, buckets of {size} bytes: [messages, collectives used]: one ring "
                             f"all-reduce per bucket")


def _trajectory(found: dict) -> dict:
    return {"losses": found["losses"], "grad_norms": found["grad_norms"], "parameters": found["parameters"]}


@pytest.mark.concept("ddp")
@pytest.mark.parametrize("ranks", [2, 3])
def test_ddp_on_n_ranks_follows_one_process_on_the_whole_batch(target, ranks):
    job = MODEL2 if ranks == 2 else MODEL3
    one = target.run(probe_mpi, job=job, ranks=ranks, check="one_process")[0]
    got = target.run(probe_mpi, job=job, ranks=ranks, check="ddp")
    for rank in range(ranks):
        assert_close(_trajectory(got[rank]), _trajectory(one), TRAJECTORIES,
                     f"{ranks} ranks, rank {rank}: 3 DDP steps on a batch of 6 against stage 10's train_step on the "
                     f"whole batch", (WHOLE_BATCH,))


@pytest.mark.concept("ddp")
def test_ddp_ranks_hold_the_same_model_bit_for_bit(target):
    for job, ranks in ((MODEL2, 2), (MODEL3, 3)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="ddp")
        for rank in range(1, ranks):
            assert_close(got[rank]["parameters"], got[0]["parameters"], EXACT,
                         f"{ranks} ranks: rank {rank}'s parameters after 3 steps against rank 0's (the same summed "
                         f"gradient and the same update on every rank)")


@pytest.mark.concept("zero-step")
@pytest.mark.parametrize("ranks", [2, 3])
def test_zero_follows_ddp(target, ranks):
    job = MODEL2 if ranks == 2 else MODEL3
    ddp = target.run(probe_mpi, job=job, ranks=ranks, check="ddp")
    got = target.run(probe_mpi, job=job, ranks=ranks, check="zero")
    for rank in range(ranks):
        assert_close(_trajectory(got[rank]), _trajectory(ddp[rank]), TRAJECTORIES,
                     f"{ranks} ranks, rank {rank}: 3 ZeRO-1 steps against 3 DDP steps (AdamW's update is elementwise: "
                     f"the shard's update is the same numbers)")


@pytest.mark.concept("zero-memory")
@pytest.mark.parametrize("ranks", [2, 3])
def test_zero_divides_the_optimizer_state_by_the_ranks(target, ranks):
    job = MODEL2 if ranks == 2 else MODEL3
    one = target.run(probe_mpi, job=job, ranks=ranks, check="one_process")[0]
    got = target.run(probe_mpi, job=job, ranks=ranks, check="zero")
    elements, itemsize = got[0]["elements"], got[0]["itemsize"]
    chunks = chunk_sizes(elements, ranks)
    assert_close(one["state_bytes"], 2 * elements * itemsize, EXACT, "test defect: one process's AdamW holds two "
                                                                     "moments per parameter element")
    assert_close([got[rank]["state_bytes"] for rank in range(ranks)], [2 * c * itemsize for c in chunks], EXACT,
                 f"{ranks} ranks: bytes of each rank's AdamW moments (two per element of its chunk, the state of "
                 f"{one['state_bytes']} bytes divided by {ranks})")
    limit = 3 * max(chunks) * itemsize + 1024  # moments and the chunk's gradient, and a little bookkeeping
    owned = [got[rank]["owned_bytes"] for rank in range(ranks)]
    assert_true(max(owned) <= limit, f"{ranks} ranks: the ShardedAdamW objects hold {owned} bytes of arrays of their "
                                     f"own after a step; at most {limit} fit a shard (a full-size buffer kept in the "
                                     f"optimizer undoes ZeRO's saving)")


@pytest.mark.concept("zero-shard")
def test_zero_pieces_are_views_covering_the_rank_chunk(target):
    for job, ranks in ((MODEL2, 2), (MODEL3, 3)):
        got = target.run(probe_mpi, job=job, ranks=ranks, check="zero")
        chunks = chunk_sizes(got[0]["elements"], ranks)
        for rank in range(ranks):
            pieces = got[rank]["pieces"]
            assert_close([sum(p["size"] for p in pieces), all(p["view"] for p in pieces)], [chunks[rank], True],
                         EXACT, f"{ranks} ranks, rank {rank}: [elements in its pieces, every piece a view of a "
                         f"parameter] (its chunk is {chunks[rank]} of {got[0]['elements']} elements)")


@pytest.mark.concept("ddp")
def test_the_data_parallel_run_follows_the_one_process_run(target):
    got = target.run(probe_mpi, job=MODEL2, ranks=2, check="run")
    assert_close(got[0]["val_losses"], got[0]["one_val_losses"], RUN,
                 "parallel_train.train_data_parallel on 2 ranks against train.train in one process (8 steps of the "
                 "tiny preset on the same verse): [step, validation loss] pairs", (WHOLE_BATCH,))
    assert_close(got[1]["losses"], got[0]["one_losses"], RUN, "rank 1's training losses against one process's")
