"""Stage 12 (where the time and memory go), visible suite: mixed precision.

The loss scaler's state machine is checked step by step against sequences worked out by hand; a mixed-precision run
of your model must compute in float16 (its logits are float16), keep float32 masters, track the float32 run's loss
within a stated margin (tests/stage12/helpers.py, MIXED_MARGIN, derives it), and skip an injected overflow without
touching the weights or the optimizer.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, raised, sibling
from tests.stage12.helpers import MIXED_MARGIN, TINY, model_of, probe_mixed_run, probe_scaler, probe_unscale


def probe_cast(m, x: np.ndarray, weights: np.ndarray) -> dict:
    tensor = sibling(m, "tensor")
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float32)
    with np.errstate(over="ignore"):  # 70000 becomes inf on purpose
        half = m.cast(leaf, np.float16)
    (m.cast(half, np.float32) * weights).sum().backward()
    return {"values": half.data.astype(np.float64), "dtype": str(half.dtype), "grad": leaf.grad,
            "grad_dtype": str(leaf.grad.dtype)}


@pytest.mark.concept("cast")
def test_cast_rounds_forward_and_passes_the_gradient_back(check):
    # 1 + 2^-12 is halfway between two float16 numbers (11 significant bits) and rounds to even, 1.0; 70000 is past
    # float16's largest finite value, 65504: inf. The gradient of sum(cast(cast(x)) · w) is w, in x's dtype.
    x = np.array([1.0 + 2.0**-12, 0.1, 70000.0], dtype=np.float32)
    weights = np.array([1.5, -2.0, 0.25], dtype=np.float32)
    got = check(probe_cast, x=x, weights=weights, tol=EXACT, what="cast")
    assert_close(got["values"], np.array([1.0, np.float16(0.1), np.inf]), EXACT, "cast(x, float16)'s values")
    assert_close([got["dtype"], got["grad_dtype"]], ["float16", "float32"], EXACT, "dtypes: the cast, x's gradient")
    assert_close(got["grad"], weights, EXACT, "the gradient passes through unchanged")


@pytest.mark.concept("loss-scaler")
def test_loss_scaler_state_machine_by_hand(check):
    # scale 8, grow after 3 clean steps. ok ok -> clean 1, 2; inf -> scale 4, clean 0; ok ok ok -> the third clean step
    # in a row doubles: 8, clean 0; ok -> clean 1; inf inf -> 4, 2.
    flags = [True, True, False, True, True, True, True, False, False]
    got = check(probe_scaler, flags=flags, scale=8.0, growth_interval=3, tol=EXACT, what="LossScaler.update")
    assert_close(got, {"scales": [8.0, 8.0, 4.0, 4.0, 4.0, 8.0, 8.0, 4.0, 2.0],
                       "clean_steps": [1, 2, 0, 1, 2, 0, 1, 0, 0]}, EXACT, "scale and clean_steps after each update",
                 mistakes=(Mistake("an overflow must reset clean_steps to 0: growth needs growth_interval clean "
                                   "steps IN A ROW", lambda got, want: got["clean_steps"][3] == 3),
                           Mistake("after growing, clean_steps starts again from 0",
                                   lambda got, want: got["clean_steps"][5] == 3)))


@pytest.mark.concept("loss-scaler")
def test_unscale_divides_in_float32_and_finds_overflow(check):
    # float16 gradients scaled by 1024: 512 -> 0.5, 3 -> 3/1024 (in float32: 2.9296875e-3), 2^-14 -> 2^-24, which
    # float16 could hold only as a subnormal and float16 arithmetic would lose more of: divide AFTER casting.
    grads = [[512.0, 3.0], [2.0**-14], None]
    got = check(probe_unscale, grads=grads, scale=1024.0, tol=EXACT, what="unscale, finite")
    assert_close(got["finite"], True, EXACT, "finite gradients")
    assert_close(got["grads"][:2], [np.array([0.5, 3 / 1024]), np.array([2.0**-24])], EXACT, "unscaled gradients")
    assert_close(got["dtypes"], ["float32", "float32", None], EXACT, "unscaled gradients are in the master's dtype")
    for bad in (np.inf, np.nan):
        got = check(probe_unscale, grads=[[1.0], [2.0, bad]], scale=2.0, tol=EXACT, what=f"unscale with {bad}")
        assert_close(got["finite"], False, EXACT, f"a gradient holding {bad} is not finite")


@pytest.mark.concept("mixed-precision")
def test_mixed_precision_tracks_the_float32_loss(target, check):
    fields = dict(TINY, width=32)
    got = target.run(probe_mixed_run, fields=fields, seed=1230, steps=12, lr=1e-3)
    assert_close(got["logits_dtypes"], ["float16"], EXACT, "dtype of the logits the mixed forward makes: the "
                 "model must run on float16 copies of its weights")
    assert_close(got["master_dtypes"], ["float32"], EXACT, "the masters stay float32 after the steps")
    assert_close(got["skipped"], [False] * 12, EXACT, "no step overflows at scale 2^16 with this model")
    assert_close(got["mixed"], got["plain"], MIXED_MARGIN, "the mixed-precision run's losses vs the float32 run's, "
                 "same model, same batches", mistakes=(
                     Mistake("the gradients were not divided by the scale before the optimizer step",
                             lambda got, want: abs(got[-1] - want[-1]) > 0.05),))
    check(probe_mixed_run, fields=fields, seed=1230, steps=3, lr=1e-3, tol=MIXED_MARGIN, what="mixed run, 3 steps")


@pytest.mark.concept("mixed-precision")
def test_an_injected_overflow_is_skipped_not_applied(target, check):
    # Step 1 runs at scale 2^100: the float32 loss times 2^100 is finite, but the gradient reaching the float16 logits
    # is inf. The step is skipped (weights and AdamW state untouched: the probe compares them), the scale halves to
    # 2^99; step 2 is set back to 2^10 and is applied; step 3 keeps 2^10 (growth needs 2000 clean steps).
    scales = [None, 2.0**100, 2.0**10, None]
    got = target.run(probe_mixed_run, fields=TINY, seed=1231, steps=4, lr=1e-3, scales=scales)
    assert_close(got["skipped"], [False, True, False, False], EXACT, "skipped steps (\"applied anyway\": the "
                 "weights or the optimizer's step counts changed on a skipped step)", mistakes=(
                     Mistake("the overflow was not detected: check every unscaled gradient with np.isfinite",
                             lambda got, want: got[1] is False),
                     Mistake("the optimizer stepped although the step overflowed", lambda got, want: got[1] != True)))
    assert_close(got["scales_used"], [2.0**16, 2.0**100, 2.0**10, 2.0**10], EXACT, "the scale each step used")
    assert_close(got["plain"][0], got["mixed"][0], MIXED_MARGIN, "step 0's loss, mixed vs float32")
    check(probe_mixed_run, fields=TINY, seed=1231, steps=4, lr=1e-3, scales=scales, tol=MIXED_MARGIN,
          what="a run with an injected overflow")


def probe_mixed_exception(m, fields: dict, seed: int) -> dict:
    """A step whose targets hold an id outside [0, V): cross_entropy raises ValueError in the middle of the step."""
    model = model_of(m, fields, seed)
    before = [p.data.copy() for p in model.parameters()]
    optimizer = sibling(m, "optim").AdamW(model.parameters(), lr=1e-3)
    ids = np.zeros((1, 4), dtype=np.int64)
    step = m.MixedPrecision(model, optimizer).step
    record = raised(step, ids, np.full((1, 4), fields["vocab_size"]))
    dtypes = sorted({str(p.data.dtype) for p in model.parameters()})
    unchanged = all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))
    accepted = raised(step, ids, np.zeros((1, 4), dtype=np.int64))  # then targets inside [0, V): a step is taken
    return {"record": record, "dtypes": dtypes, "unchanged": unchanged, "accepted": accepted}


@pytest.mark.concept("mixed-precision")
def test_an_exception_in_a_step_leaves_the_float32_masters(target, reference):
    mine, theirs = (who.run(probe_mixed_exception, fields=TINY, seed=1232) for who in (target, reference))
    assert_close(mine["record"], {"raised": "ValueError"}, EXACT,
                 "step() with a target outside the vocabulary (cross_entropy's ValueError, let through)")
    assert_close(mine["accepted"], theirs["accepted"], MIXED_MARGIN,
                 "the next step(), with targets inside the vocabulary: {loss, skipped, scale} as the reference's")
    for who, got in ((target, mine), (reference, theirs)):
        assert_true(got["dtypes"] == ["float32"] and got["unchanged"], f"{who.target}: after an exception in "
                    f"step() the parameters must be the float32 masters again, unchanged (dtypes {got['dtypes']}, "
                    f"unchanged {got['unchanged']}): restore them in a finally block")
