"""Stage 13 (data-parallel training on MPI), visible suite: the conventions of the docstrings that the other tests'
inputs do not expose (a mistake there would pass them and fail the hidden suite). Each input is chosen so that one
plausible mistake gives a different answer; tests/mutants/stage13.toml lists those mistakes. One MPI job on 2 ranks:
a global batch of 5 rows (3 and 2 per rank) in 2 micro-batches, a parameter without a gradient, and a learning rate
that changes at every step.
"""
from __future__ import annotations

import pytest

from grader.harness import Mistake, Tol, assert_close, assert_true
from tests.stage13.helpers import SMALL_GPT, probe_mpi

TRAJECTORIES = Tol(1e-9, 1e-11, "float64; 2 ranks sum the batch's gradient in another order than one process, and "
                                "AdamW's steps carry it on")
SUMS = Tol(1e-12, 1e-12, "float64 sums of 2 numbers in another order differ by a few ulps")
UNEVEN = {"config": SMALL_GPT, "seed": 1351, "batch": 5, "accumulation": 2, "steps": 2, "lr": 1e-2, "clip": 1e3}
JOB = [["gradients", {"config": SMALL_GPT, "seed": 1352, "bucket_bytes": [300], "none_grad": True}],
       ["gradients_in_place", {"config": SMALL_GPT, "seed": 1353, "bucket_bytes": 300}],
       ["one_process", UNEVEN], ["ddp", {**UNEVEN, "bucket_bytes": 500}], ["zero", UNEVEN],
       ["zero_schedule", {"config": SMALL_GPT, "seed": 1354, "batch": 4, "lrs": [1e-2, 3e-3, 1e-3], "clip": 1e3}]]


def _trajectory(found: dict) -> dict:
    return {"losses": found["losses"], "grad_norms": found["grad_norms"], "parameters": found["parameters"]}


@pytest.mark.concept("allreduce-gradients")
def test_a_parameter_without_a_gradient_gets_the_sum_of_zeros(target):
    got = target.run(probe_mpi, job=JOB, ranks=2, check="gradients")
    total = got[0][0]["mine"] + got[1][0]["mine"]  # the first parameter's part is zeros on both ranks
    for rank in range(2):
        assert_close(got[rank][0]["summed"], total, SUMS,
                     f"rank {rank}'s gradients after allreduce_gradients, the first parameter's grad None on every "
                     f"rank (zeros first: every rank must send buckets of the same sizes)")


@pytest.mark.concept("allreduce-gradients")
def test_summed_gradients_are_written_into_the_gradient_arrays(target):
    got = target.run(probe_mpi, job=JOB, ranks=2, check="gradients_in_place")
    for rank in range(2):
        # float32 gradients summed over 2 ranks in another order than the check's: a few ulps of float32 (~1e-7)
        assert_true(got[rank]["worst_error"] <= 1e-5,
                    f"rank {rank}: after allreduce_gradients the gradients are not the sum over the ranks (worst "
                    f"relative error {got[rank]['worst_error']:.3g}): every rank's p.grad must hold the sum of all "
                    f"ranks' gradients")
        assert_true(all(got[rank]["in_place"]),
                    f"rank {rank}: after allreduce_gradients, p.grad is a new array for parameters "
                    f"{[i for i, same in enumerate(got[rank]['in_place']) if not same]}: copy each summed piece back "
                    f"into the gradient array the parameter holds, grad[...] = ..., as the docstring says")


@pytest.mark.concept("ddp")
def test_ddp_weights_each_rank_by_its_rows_when_the_batch_does_not_divide(target):
    # 5 rows on 2 ranks: 3 and 2. Weighting each rank by 1/2 instead of 3/5 and 2/5, or forgetting to divide the 2
    # micro-batches by k = 2, moves the trajectory away from one process on the whole batches.
    one = target.run(probe_mpi, job=JOB, ranks=2, check="one_process")[0]
    ddp = target.run(probe_mpi, job=JOB, ranks=2, check="ddp")
    zero = target.run(probe_mpi, job=JOB, ranks=2, check="zero")
    mistakes = (Mistake("each rank's loss must be weighted by its share of the rows, b_r / B, and divided by the k "
                        "micro-batches: loss * (b_r / B / k)", lambda got, want: True),)
    for rank in range(2):
        assert_close(_trajectory(ddp[rank]), _trajectory(one), TRAJECTORIES,
                     f"rank {rank}: 2 DDP steps of 2 micro-batches of 5 rows (3 and 2 per rank) against stage 10's "
                     f"train_step on the whole batches", mistakes)
        assert_close(_trajectory(zero[rank]), _trajectory(one), TRAJECTORIES,
                     f"rank {rank}: 2 ZeRO-1 steps of the same batches against one process", mistakes)


@pytest.mark.concept("zero-step")
def test_zero_steps_with_the_learning_rate_of_each_step(target):
    got = target.run(probe_mpi, job=JOB, ranks=2, check="zero_schedule")
    for rank in range(2):
        assert_close(got[rank]["zero"], got[rank]["ddp"], TRAJECTORIES,
                     f"rank {rank}: parameters after 3 ZeRO-1 steps at lr 1e-2, 3e-3, 1e-3 against 3 DDP steps at the "
                     f"same rates", mistakes=(
                         Mistake("zero_step's learning rate never reached the inner AdamW: ShardedAdamW.step sets "
                                 "self.optimizer.lr = self.lr before stepping", lambda got, want: True),))
