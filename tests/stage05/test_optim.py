"""Stage 05 (optimizers), visible suite.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: an update worked out by hand in the comments, a closed form, or an invariant. The probes make
parameters with your own tensor module and set `.grad` directly to NumPy arrays, so nothing here depends on your
backward pass. The conventions are in the docstrings of exercises/optim.py and in docs/05-optim.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, Mistake, Tol, assert_close, assert_true, seeded
from tests.stage05.helpers import (NOT_IN_PLACE, adam_by_hand, least_squares_gradient, optimizer, probe_clip,
                                   probe_schedule, probe_steps, resume_inputs, set_grads, tensors)

def rosenbrock_gradient(point: np.ndarray) -> np.ndarray:
    """Gradient of f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, whose minimum is f(1, 1) = 0 at the end of a curved valley."""
    x, y = point
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


# Hyperparameters that exercise every term of each optimizer at once.
EVERYTHING = {
    "sgd-nesterov": {"kind": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    "adam-l2": {"kind": "Adam", "lr": 0.01, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1},
    "adamw": {"kind": "AdamW", "lr": 0.01, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1},
}


# ---------------------------------------------------------------- SGD


@pytest.mark.concept("sgd")
def test_sgd_step_is_p_minus_lr_g_in_place_and_reads_lr_each_step(check):
    # step 1, lr 0.1: [1, -2, 3] - 0.1 * [0.5, 0.5, -1] = [0.95, -2.05, 3.1]
    # step 2, lr changed to 0.2 between the steps: [0.95, -2.05, 3.1] - 0.2 * [1, 0, 2] = [0.75, -2.05, 2.7]
    inputs = {"spec": {"kind": "SGD", "lr": 0.1}, "params": [[1.0, -2.0, 3.0]],
              "grads": [[[0.5, 0.5, -1.0]], [[1.0, 0.0, 2.0]]], "lrs": [0.1, 0.2]}
    got = check(probe_steps, tol=F64, what="plain SGD", mistakes=(NOT_IN_PLACE,), **inputs)
    assert_close(got["trajectory"], [[np.array([0.95, -2.05, 3.1])], [np.array([0.75, -2.05, 2.7])]], F64,
                 "parameters after each step, by hand", mistakes=(
                     Mistake("the second step used lr 0.1: read self.lr inside step(), a schedule changes it",
                             lambda got, want: np.allclose(got[1][0], [0.85, -2.05, 2.9])),))
    assert_true(got["same_arrays"], "p.data must be updated in place (p.data -= lr * g), not replaced by a new array")
    assert_close(got["grads_after"][-1], [np.array([1.0, 0.0, 2.0])], EXACT, "p.grad after step() (left alone)")


MOMENTUM_INPUTS = {"params": [[1.0, -1.0]], "grads": [[[1.0, 2.0]], [[3.0, -1.0]]]}


@pytest.mark.concept("momentum")
def test_sgd_momentum_two_steps_by_hand(check):
    # lr 0.1, momentum 0.9. Step 1: b = 0.9 * 0 + [1, 2] = [1, 2];            p = [1, -1] - 0.1 * b = [0.9, -1.2]
    #                       Step 2: b = 0.9 * [1, 2] + [3, -1] = [3.9, 0.8];  p = [0.9, -1.2] - 0.1 * b = [0.51, -1.28]
    got = check(probe_steps, spec={"kind": "SGD", "lr": 0.1, "momentum": 0.9}, what="SGD with momentum",
                **MOMENTUM_INPUTS)
    assert_close(got["trajectory"], [[np.array([0.9, -1.2])], [np.array([0.51, -1.28])]], F64,
                 "parameters after two momentum steps, by hand", mistakes=(
                     Mistake("the buffer was damped (b = mu * b + (1 - mu) * g); torch's convention, used here, is "
                             "b = mu * b + g", lambda got, want: np.allclose(got[0][0], [0.99, -1.02])),
                     Mistake("the update used g instead of the buffer b (p -= lr * b)",
                             lambda got, want: np.allclose(got[1][0], [0.6, -1.1])),
                 ))


@pytest.mark.concept("nesterov")
def test_nesterov_two_steps_by_hand(check):
    # lr 0.1, momentum 0.9, nesterov: d = g + 0.9 * b after updating b.
    # Step 1: b = [1, 2];      d = [1, 2] + 0.9 * [1, 2] = [1.9, 3.8];      p = [1, -1] - 0.1 * d = [0.81, -1.38]
    # Step 2: b = [3.9, 0.8];  d = [3, -1] + 0.9 * [3.9, 0.8] = [6.51, -0.28];  p = [0.159, -1.352]
    got = check(probe_steps, spec={"kind": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                what="SGD with Nesterov momentum", **MOMENTUM_INPUTS)
    assert_close(got["trajectory"], [[np.array([0.81, -1.38])], [np.array([0.159, -1.352])]], F64,
                 "parameters after two Nesterov steps, by hand", mistakes=(
                     Mistake("nesterov=True made no difference: the update is d = g + momentum * b, not b",
                             lambda got, want: np.allclose(got[0][0], [0.9, -1.2])),))


@pytest.mark.concept("weight-decay")
def test_sgd_weight_decay_is_added_to_the_gradient_before_momentum(check):
    # lr 0.1, momentum 0.5, weight_decay 0.5; p0 = [2, -4], g1 = [1, 1], g2 = [0, 2].
    # Step 1: g = g1 + 0.5 * p0 = [2, -1];        b = [2, -1];                           p1 = [1.8, -3.9]
    # Step 2: g = g2 + 0.5 * p1 = [0.9, 0.05];    b = 0.5 * [2, -1] + g = [1.9, -0.45];  p2 = [1.61, -3.855]
    # (Decoupled decay, p *= 1 - lr * wd outside the buffer, gives the same p1 but p2 = [1.66, -3.955].)
    got = check(probe_steps, what="SGD with momentum and weight decay",
                spec={"kind": "SGD", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.5},
                params=[[2.0, -4.0]], grads=[[[1.0, 1.0]], [[0.0, 2.0]]])
    assert_close(got["trajectory"][-1], [np.array([1.61, -3.855])], F64, "parameters after two steps, by hand",
                 mistakes=(Mistake("the decay was applied to p directly (decoupled, AdamW-style); SGD adds "
                                   "weight_decay * p to the gradient, so it enters the momentum buffer",
                                   lambda got, want: np.allclose(got[0], [1.66, -3.955])),))
    assert_close(got["grads_after"][-1], [np.array([0.0, 2.0])], EXACT, "p.grad after step()", mistakes=(
        Mistake("p.grad was changed in place (g += wd * p); make a new array: g = p.grad + wd * p.data",
                lambda got, want: True),))


# ---------------------------------------------------------------- Adam and AdamW


# Magnitudes from 1e-7 to 200: at step 1 every coordinate moves by lr * |g| / (|g| + eps), i.e. by lr unless |g| is
# comparable to eps (the 1e-7 coordinate moves by lr * 1e-7 / 1.1e-7 = 0.909 * lr).
FIRST_GRAD = np.array([1e-3, -5.0, 200.0, -0.02, 1e-7, -3e-7])


@pytest.mark.concept("adam-bias-correction")
def test_adam_first_step_moves_each_coordinate_by_lr_times_sign(check):
    p0 = np.array([0.5, -0.25, 1.0, 2.0, -1.0, 0.0])
    lr, eps = 0.01, 1e-8
    got = check(probe_steps, spec={"kind": "Adam", "lr": lr}, params=[p0], grads=[[FIRST_GRAD]],
                what="Adam's first step", mistakes=(NOT_IN_PLACE,))
    # bias correction at t = 1: m_hat = (1 - b1) g / (1 - b1) = g and v_hat = g^2, so p1 = p0 - lr * g / (|g| + eps)
    want = p0 - lr * FIRST_GRAD / (np.abs(FIRST_GRAD) + eps)
    moved = got["trajectory"][0][0] - p0
    assert_close(got["trajectory"][0][0], want, F64, "Adam's first step, p0 - lr * g / (|g| + eps)", mistakes=(
        Mistake("no bias correction: m = 0.1 g and sqrt(v) = 0.0316 |g| make the first step 3.16 lr instead of lr",
                lambda got, want: np.isclose(abs(got[2] - 1.0), 0.01 * 0.1 / math.sqrt(0.001), rtol=1e-3)),
        Mistake("eps inside the square root (sqrt(v_hat + eps)); torch adds it after: sqrt(v_hat) + eps",
                lambda got, want: np.isclose(got[4] + 1.0, -lr * 1e-7 / math.sqrt(1e-14 + eps), rtol=1e-6)),
    ))
    assert_close(np.abs(moved[:4]), np.full(4, lr), Tol(1e-4, 0.0, "|g| >= 1e-3, so |g| / (|g| + eps) >= 1 - 1e-5"),
                 "how far the large-gradient coordinates moved (lr)")
    assert_close(np.sign(moved), -np.sign(FIRST_GRAD), EXACT, "direction of the first step (against the gradient)")


@pytest.mark.concept("adam")
def test_adam_three_steps_follow_the_equations(check):
    rng = seeded(501)
    p0 = rng.normal(size=5)
    grads = [[rng.normal(size=5)] for _ in range(3)]
    spec = {"kind": "Adam", "lr": 0.05, "betas": [0.5, 0.75], "eps": 1e-4}  # not the defaults: they must be used
    got = check(probe_steps, spec=spec, params=[p0], grads=grads, what="three Adam steps")
    want = adam_by_hand(p0, [g[0] for g in grads], [0.05] * 3, 0.5, 0.75, 1e-4, 0.0, decoupled=False)
    assert_close(got["trajectory"], want, F64, "three Adam steps, from the equations", mistakes=(
        Mistake("the first step is already off: bias-correct with t = 1 on the first step (increment the step count "
                "before using it)", lambda got, want: not np.allclose(got[0][0], want[0][0])),))
    assert_close(got["steps"], [3], EXACT, "optimizer.steps after three steps")


@pytest.mark.concept("adamw")
def test_adamw_decays_weights_directly_unlike_adam_with_l2(check):
    # Zero gradients isolate the weight decay (lr 0.1, wd 0.1, p0 = [1, -2, 0.5]):
    #   AdamW: p *= 1 - lr * wd = 0.99 -> [0.99, -1.98, 0.495]; m = v = 0, so the Adam part moves nothing (0 / eps).
    #   Adam with L2: g = wd * p0 = [0.1, -0.2, 0.05] goes through Adam's normalisation, so at step 1 EVERY weight
    #   moves by lr whatever its size: [0.9, -1.9, 0.4]. Decoupled decay is proportional to the weight; L2 is not.
    zero = [[[0.0, 0.0, 0.0]]]
    adamw = check(probe_steps, spec={"kind": "AdamW", "lr": 0.1, "weight_decay": 0.1}, params=[[1.0, -2.0, 0.5]],
                  grads=zero, what="AdamW with a zero gradient")
    adam = check(probe_steps, spec={"kind": "Adam", "lr": 0.1, "weight_decay": 0.1}, params=[[1.0, -2.0, 0.5]],
                 grads=zero, what="Adam + L2 with a zero gradient")
    assert_close(adamw["trajectory"][0], [np.array([0.99, -1.98, 0.495])], F64, "AdamW: p * (1 - lr * wd)",
                 mistakes=(Mistake("AdamW added the decay to the gradient (that is Adam's L2); decouple it: "
                                   "p *= 1 - lr * weight_decay", lambda got, want: np.allclose(got[0][1], -1.9)),
                           Mistake("the decay forgot the learning rate: p *= 1 - lr * weight_decay, not 1 - wd",
                                   lambda got, want: np.allclose(got[0][1], -1.8)),))
    p0, g = np.array([1.0, -2.0, 0.5]), 0.1 * np.array([1.0, -2.0, 0.5])
    assert_close(adam["trajectory"][0], [p0 - 0.1 * g / (np.abs(g) + 1e-8)], F64,
                 "Adam with L2: every weight moves by lr * g / (|g| + eps), about lr", mistakes=(
                     Mistake("Adam's weight_decay must be L2 (added to the gradient), not decoupled",
                             lambda got, want: np.allclose(got[0][0], 0.99)),))


@pytest.mark.concept("adamw")
def test_adamw_first_step_by_hand_with_the_default_decay(check):
    # weight_decay defaults to 0.01. Step 1: p1 = p0 * (1 - lr * 0.01) - lr * g / (|g| + eps).
    p0, g = np.array([3.0, -1.0, 0.25, 10.0]), np.array([0.5, 0.5, -2.0, 1e-3])
    lr = 0.1
    got = check(probe_steps, spec={"kind": "AdamW", "lr": lr}, params=[p0], grads=[[g]], what="AdamW's first step")
    assert_close(got["trajectory"][0][0], p0 * (1 - lr * 0.01) - lr * g / (np.abs(g) + 1e-8), F64,
                 "AdamW's first step by hand", mistakes=(
                     Mistake("the default weight_decay of AdamW is 0.01 (torch's), not 0",
                             lambda got, want: np.allclose(got, p0 - lr * g / (np.abs(g) + 1e-8), rtol=0,
                                                 atol=1e-12)),))


# ---------------------------------------------------------------- convergence


def probe_quadratic(m, spec: dict, curvatures: list, x0: list, steps: int) -> np.ndarray:
    """Minimise f(x) = 0.5 * sum_i a_i x_i^2 (gradient a * x) for `steps` steps; the final x."""
    (x,) = tensors(m, [x0])
    opt = optimizer(m, [x], spec)
    a = np.array(curvatures)
    for _ in range(steps):
        x.grad = a * x.data
        opt.step()
    return x.data.copy()


@pytest.mark.concept("convergence")
def test_optimizers_minimise_an_ill_conditioned_quadratic(check, target, reference):
    # curvatures 1, 10, 100 (condition number 100), x0 = [1, 1, 1], 300 steps.
    inputs = {"curvatures": [1.0, 10.0, 100.0], "x0": [1.0, 1.0, 1.0], "steps": 300}
    # Plain SGD has a closed form: x_i <- (1 - lr a_i) x_i, so after 300 steps x_i = (1 - lr a_i)^300. With lr 0.01
    # (stable up to 2 / 100) the flat direction still holds 0.99^300 = 0.049 of its start...
    got = check(probe_quadratic, spec={"kind": "SGD", "lr": 0.01}, what="plain SGD on the quadratic", **inputs)
    assert_close(got, (1 - 0.01 * np.array([1.0, 10.0, 100.0])) ** 300, Tol(1e-10, 1e-300, "300 products"),
                 "plain SGD: x = (1 - lr a)^300 exactly")
    # ...while momentum, Nesterov, Adam and AdamW (without decay) all get within 1e-6 of the minimum.
    for spec in ({"kind": "SGD", "lr": 0.01, "momentum": 0.9}, {"kind": "SGD", "lr": 0.01, "momentum": 0.9,
                 "nesterov": True}, {"kind": "Adam", "lr": 0.1}, {"kind": "AdamW", "lr": 0.1, "weight_decay": 0.0}):
        for who in (target, reference):
            x = who.run(probe_quadratic, spec=spec, **inputs)
            assert_true(np.linalg.norm(x) < 1e-6, f"{who.target}: {spec} should end within 1e-6 of the minimum 0 "
                                                  f"after 300 steps, but |x| = {np.linalg.norm(x):.3g}")


def probe_rosenbrock(m, spec: dict, start: list, steps: int) -> np.ndarray:
    (point,) = tensors(m, [start])
    opt = optimizer(m, [point], spec)
    for _ in range(steps):
        point.grad = rosenbrock_gradient(point.data)
        opt.step()
    return point.data.copy()


@pytest.mark.concept("convergence")
def test_adam_and_nesterov_solve_rosenbrock_from_minus_one_and_a_half_two(target, reference):
    # From (-1.5, 2) the path runs down into the curved valley and along it to (1, 1). Adam (lr 0.05) gets within 1e-4
    # in 2000 steps and Nesterov SGD (lr 1e-3, momentum 0.95) in 1500; plain SGD at that lr is still ~1.25 away.
    for spec, steps in (({"kind": "Adam", "lr": 0.05}, 2000),
                        ({"kind": "SGD", "lr": 1e-3, "momentum": 0.95, "nesterov": True}, 1500)):
        for who in (target, reference):
            end = who.run(probe_rosenbrock, spec=spec, start=[-1.5, 2.0], steps=steps)
            distance = float(np.linalg.norm(end - 1.0))
            assert_true(distance < 1e-4, f"{who.target}: {spec} from (-1.5, 2) should end within 1e-4 of (1, 1) "
                                         f"after {steps} steps, but it ended at {end.tolist()} ({distance:.3g} away)")


# ---------------------------------------------------------------- clipping


PER_PARAMETER = Mistake("each parameter was clipped by its own norm; clip by ONE global norm over all the gradients",
                        lambda got, want: np.allclose(got["grads"][2], [[6.5]]))


@pytest.mark.concept("clipping")
def test_clip_returns_the_norm_before_and_scales_to_max_norm(check):
    # gradients [3, 4] and [[12]] (and one None): global norm sqrt(9 + 16 + 144) = 13; max_norm 6.5 halves them all.
    got = check(probe_clip, grads=[[3.0, 4.0], None, [[12.0]]], max_norm=6.5, what="clip_grad_norm",
                mistakes=(PER_PARAMETER,))
    assert_close(got["norm"], 13.0, F64, "returned norm (before clipping)", mistakes=(
        Mistake("returned the norm after clipping; return the norm before", lambda got, want: np.isclose(got, 6.5)),))
    assert_close(got["type"], "float", EXACT, "type of the returned norm (a Python float)")
    assert_close(got["grads"], [np.array([1.5, 2.0]), None, np.array([[6.0]])], F64, "gradients after clipping",
                 mistakes=(PER_PARAMETER,))
    after = math.sqrt(sum(float(np.sum(g ** 2)) for g in got["grads"] if g is not None))
    assert_close(after, 6.5, F64, "global norm after clipping (= max_norm)")
    assert_true(got["same_arrays"], "clip_grad_norm must scale p.grad in place (p.grad *= scale), not replace it")


@pytest.mark.concept("clipping")
def test_clip_is_a_no_op_at_or_under_max_norm(check):
    rng = seeded(502)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in grads))
    # under the limit, and exactly at it ([3, 4] and [[12]] have norm 13 with no rounding anywhere)
    for grads, max_norm, norm in ((grads, 1.5 * norm, norm), ([[3.0, 4.0], [[12.0]]], 13.0, 13.0)):
        got = check(probe_clip, grads=grads, max_norm=max_norm, what=f"clip_grad_norm with max_norm {max_norm:.6g}")
        assert_close(got["norm"], norm, F64, "returned norm")
        assert_close(got["grads"], [np.array(g) for g in grads], EXACT,
                     "gradients (must be untouched when the norm is <= max_norm)")


# ---------------------------------------------------------------- the schedule


SCHEDULE = {"max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}


@pytest.mark.concept("schedule")
def test_schedule_values_at_the_landmarks(check):
    # warmup 10, total 110, max 1.0, min 0.1:
    #   step 0 -> 1.0 * 1/10 = 0.1;  step 4 -> 0.5;  step 9 (end of warmup) -> 1.0;  step 10 (cosine starts) -> 1.0
    #   step 35 (a quarter of the cosine) -> 0.1 + 0.9 * (1 + cos(pi/4)) / 2 = 0.86819805...
    #   step 60 (midpoint) -> (1.0 + 0.1) / 2 = 0.55;  step 110 (end) -> 0.1;  steps 111, 10000 (after) -> 0.1
    steps = [0, 4, 9, 10, 35, 60, 110, 111, 10000]
    got = check(probe_schedule, steps=steps, what="cosine_schedule", **SCHEDULE)
    want = [0.1, 0.5, 1.0, 1.0, 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, 0.55, 0.1, 0.1, 0.1]
    assert_close(got["values"], want, F64, f"learning rates at steps {steps}", mistakes=(
        Mistake("the warmup starts at 0 (max_lr * step / warmup_steps); the convention here is (step + 1) / warmup, "
                "so step 0 already gets max_lr / warmup_steps", lambda got, want: got[0] == 0.0),
        Mistake("the cosine ran over total_steps instead of total_steps - warmup_steps (progress = "
                "(step - warmup) / (total - warmup))",
                lambda got, want: abs(got[5] - (0.1 + 0.45 * (1 + math.cos(math.pi * 50 / 110)))) < 1e-9),
    ))
    assert_close(got["types"], ["float"], EXACT, "type of the returned values (Python floats)")


@pytest.mark.concept("schedule")
def test_schedule_rises_then_falls_and_stays_between_min_and_max(check):
    steps = list(range(0, 131))
    got = check(probe_schedule, steps=steps, what="cosine_schedule over 0..130", **SCHEDULE)
    values = np.array(got["values"])
    assert_true(np.all(np.diff(values[:10]) > 0), f"the warmup (steps 0..9) must rise strictly: {values[:10]}")
    assert_true(np.all(np.diff(values[10:]) <= 1e-15), "from step 10 on the rate must never rise")
    assert_true(values.min() >= 0.1 - 1e-15 and values.max() <= 1.0 + 1e-15, "every rate must be in [min_lr, max_lr]")
    assert_close(np.diff(values[:10]), np.full(9, 0.1), F64, "warmup increments (linear: max_lr / warmup_steps)")


# ---------------------------------------------------------------- gradients that are None, zero_grad


@pytest.mark.concept("skip-none")
def test_parameters_without_a_gradient_are_not_touched(check):
    # the second parameter never gets a gradient; with weight decay on, a wrong step() would still shrink it
    for name, spec in EVERYTHING.items():
        got = check(probe_steps, spec=spec, params=[[1.0, 2.0], [3.0, -4.0]],
                    grads=[[[0.5, -0.5], None], [[0.25, 1.0], None]], what=f"{name} with a gradient-less parameter")
        assert_close([step[1] for step in got["trajectory"]], [np.array([3.0, -4.0])] * 2, EXACT,
                     f"{name}: the parameter whose grad is None (unchanged)", mistakes=(
                         Mistake("weight decay (or momentum) moved a parameter whose grad is None; skip it entirely",
                                 lambda got, want: True),))
        assert_close(got["steps"], [2, 0], EXACT, f"{name}: optimizer.steps (the skipped parameter has had none)")


def probe_zero_grad(m, spec: dict, params: list, grads: list) -> dict:
    ps = tensors(m, params)
    opt = optimizer(m, ps, spec)
    set_grads(ps, grads)
    opt.step()
    before = opt.state_dict()
    after_one = [p.data.copy() for p in ps]
    opt.zero_grad()
    cleared = [p.grad is None for p in ps]
    opt.step()  # every grad is None now: nothing may change
    return {"cleared": cleared, "moved": [bool(np.any(p.data != a)) for p, a in zip(ps, after_one)],
            "state_before": before, "state_after": opt.state_dict()}


@pytest.mark.concept("zero-grad")
def test_zero_grad_sets_grads_to_none_so_the_next_step_does_nothing(check):
    for name, spec in EVERYTHING.items():
        got = check(probe_zero_grad, spec=spec, params=[[1.0, 2.0], [[3.0]]], grads=[[0.5, -0.5], [[2.0]]],
                    what=f"{name}: zero_grad then step")
        assert_close(got["cleared"], [True, True], EXACT, f"{name}: p.grad is None after zero_grad()", mistakes=(
            Mistake("zero_grad filled the grads with zeros; set p.grad = None (a zero gradient would still be "
                    "decayed and pushed by momentum)", lambda got, want: True),))
        assert_close(got["moved"], [False, False], EXACT, f"{name}: did a step after zero_grad() move a parameter?")
        assert_close(got["state_after"], got["state_before"], EXACT, f"{name}: state after a step with no gradients")


# ---------------------------------------------------------------- state_dict and resuming


def probe_resume(m, spec: dict, params: list, a: np.ndarray, b: np.ndarray, lrs: list, split: int) -> dict:
    """Run len(lrs) steps straight through; and run `split` steps, save (parameters + optimizer state), build fresh
    parameters and a fresh optimizer, load, and run the rest. Both trajectories are returned."""
    def run(ps, opt, ks):
        out = []
        for k in ks:
            set_grads(ps, least_squares_gradient([p.data for p in ps], a, b))
            opt.lr = lrs[k]
            opt.step()
            out.append([p.data.copy() for p in ps])
        return out

    ps = tensors(m, params)
    straight = run(ps, optimizer(m, ps, spec), range(len(lrs)))

    ps = tensors(m, params)
    opt = optimizer(m, ps, spec)
    first = run(ps, opt, range(split))
    saved_params, saved_state = [p.data.copy() for p in ps], opt.state_dict()
    del ps, opt
    ps = tensors(m, [np.zeros_like(s) for s in saved_params])  # fresh objects, wrong values until loaded
    opt = optimizer(m, ps, spec)
    for p, saved in zip(ps, saved_params):
        p.data[...] = saved
    opt.load_state_dict(saved_state)
    return {"straight": straight, "resumed": first + run(ps, opt, range(split, len(lrs)))}


def probe_trajectory(m, spec: dict, params: list, a: np.ndarray, b: np.ndarray, lrs: list) -> dict:
    """len(lrs) steps on the least-squares problem, setting optimizer.lr = lrs[k] before step k: the parameters after
    each step and the final state_dict. (Used by test_optim_torch.py; it lives here because a probe's module is
    imported by the sandboxed worker, which refuses torch.)"""
    ps = tensors(m, params)
    opt = optimizer(m, ps, spec)
    trajectory = []
    for lr in lrs:
        set_grads(ps, least_squares_gradient([p.data for p in ps], a, b))
        opt.lr = lr
        opt.step()
        trajectory.append([p.data.copy() for p in ps])
    return {"trajectory": trajectory, "state": opt.state_dict()}


@pytest.mark.concept("state-dict")
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(check):
    inputs = resume_inputs(503)
    lrs = [0.05 * (k + 1) / 3 if k < 3 else 0.05 * (0.5 + 0.5 * math.cos(math.pi * (k - 3) / 7)) for k in range(10)]
    for name, spec in EVERYTHING.items():
        got = check(probe_resume, spec=spec, lrs=lrs, split=5, tol=F64, what=f"{name}: resume", **inputs)
        assert_close(got["resumed"], got["straight"], EXACT, f"{name}: 5 steps + save/load + 5 steps vs 10 steps",
                     mistakes=(Mistake("the first step after loading differs: state_dict must carry every buffer and "
                                       "the per-parameter step counts (Adam's bias correction depends on them)",
                                       lambda got, want: not np.array_equal(got[5][0], want[5][0])),))


def probe_state_dict_copy(m, spec: dict, params: list, grads: list) -> dict:
    ps = tensors(m, params)
    opt = optimizer(m, ps, spec)
    set_grads(ps, grads)
    opt.step()
    saved = opt.state_dict()
    kept = {k: np.array(v, copy=True) for k, v in saved.items()}
    opt.step()  # must not change `saved`
    unchanged_by_step = all(np.array_equal(saved[k], kept[k]) for k in kept)
    current = opt.state_dict()
    for value in saved.values():  # scribbling on the saved copy must not reach the optimizer
        value[...] = 123.0
    return {"keys": sorted(saved), "dtypes": {k: str(v.dtype) for k, v in kept.items()},
            "unchanged_by_step": unchanged_by_step, "optimizer_untouched": all(
                np.array_equal(opt.state_dict()[k], current[k]) for k in current)}


@pytest.mark.concept("state-dict")
def test_state_dict_is_a_flat_copy_with_the_documented_keys(check):
    params, grads = [[1.0, 2.0], [[3.0, 4.0]]], [[0.5, -0.5], [[2.0, 1.0]]]
    keys = {"SGD": ["lr", "steps"], "sgd-nesterov": ["lr", "momentum_buffer.0", "momentum_buffer.1", "steps"],
            "adam-l2": ["exp_avg.0", "exp_avg.1", "exp_avg_sq.0", "exp_avg_sq.1", "lr", "steps"]}
    specs = {"SGD": {"kind": "SGD", "lr": 0.1}, **EVERYTHING}
    for name, spec in specs.items():
        got = check(probe_state_dict_copy, spec=spec, params=params, grads=grads, tol=EXACT, what=f"{name} state_dict")
        if name in keys:
            assert_close(got["keys"], keys[name], EXACT, f"{name}: state_dict keys")
        assert_close(got["dtypes"]["lr"], "float64", EXACT, f"{name}: dtype of state_dict()['lr']")
        assert_close(got["dtypes"]["steps"], "int64", EXACT, f"{name}: dtype of state_dict()['steps']")
        assert_true(got["unchanged_by_step"], f"{name}: a later step() changed a state_dict() returned earlier: "
                                              f"return copies (array.copy()), not the optimizer's own arrays")
        assert_true(got["optimizer_untouched"], f"{name}: writing into a returned state_dict changed the optimizer")


# ---------------------------------------------------------------- dtypes and in-place updates


def probe_float32(m, spec: dict, params: list, grads: list) -> dict:
    ps = tensors(m, params, dtype=np.float32)
    arrays = [p.data for p in ps]
    opt = optimizer(m, ps, spec)
    for step_grads in grads:
        set_grads(ps, step_grads, dtype=np.float32)
        opt.step()
    state = opt.state_dict()
    return {"params": [p.data.astype(np.float64) for p in ps], "dtypes": [str(p.data.dtype) for p in ps],
            "state_dtypes": sorted({str(v.dtype) for k, v in state.items() if k not in ("lr", "steps")}),
            "same_arrays": all(p.data is a for p, a in zip(ps, arrays))}


@pytest.mark.concept("in-place")
def test_float32_parameters_stay_float32_and_are_updated_in_place(check, target):
    rng = seeded(504)
    params = [rng.normal(size=(4, 3)), rng.normal(size=3)]
    grads = [[rng.normal(size=(4, 3)), rng.normal(size=3)] for _ in range(3)]
    for name, spec in EVERYTHING.items():
        got = check(probe_float32, spec=spec, params=params, grads=grads, tol=F32, what=f"{name} in float32",
                    mistakes=(NOT_IN_PLACE,))
        assert_close(got["dtypes"], ["float32", "float32"], EXACT, f"{name}: parameter dtypes after 3 steps")
        assert_close(got["state_dtypes"], ["float32"], EXACT, f"{name}: dtypes of the state arrays (the parameter's; "
                                                              f"np.zeros_like(p.data))")
        assert_true(got["same_arrays"], f"{name}: p.data must be updated in place, not replaced by a new array")
        # float32 follows the float64 trajectory to float32 precision
        want = target.run(probe_steps, spec=spec, params=params, grads=grads)["trajectory"][-1]
        assert_close(got["params"], want, Tol(1e-4, 1e-5, "3 steps in float32 vs float64"),
                     f"{name}: float32 parameters vs the same steps in float64")
