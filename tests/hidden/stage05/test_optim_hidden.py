"""Stage 05 (optimizers), hidden suite: other shapes, seeds, hyperparameters and edge cases than the visible suite."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage05.helpers import (NOT_IN_PLACE, adam_by_hand, least_squares_gradient, optimizer, probe_clip,
                                   probe_schedule, probe_steps, resume_inputs, set_grads, tensors)


def sgd_by_hand(params: list, grads: list, lrs: list, momentum: float, nesterov: bool, weight_decay: float) -> list:
    """SGD's class docstring, written out for several parameters; the trajectory."""
    params = [np.array(p, dtype=np.float64) for p in params]
    buffers = [np.zeros_like(p) for p in params]
    out = []
    for step_grads, lr in zip(grads, lrs):
        for i, g in enumerate(step_grads):
            g = np.array(g) + weight_decay * params[i]
            buffers[i] = momentum * buffers[i] + g
            direction = g + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = params[i] - lr * direction
        out.append([p.copy() for p in params])
    return out


# ---------------------------------------------------------------- SGD


@pytest.mark.concept("momentum")
@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
def test_sgd_with_every_term_on_two_parameters_and_a_changing_lr(check, nesterov):
    rng = seeded(551)
    params = [rng.normal(size=(2, 3)), rng.normal(size=4)]
    grads = [[rng.normal(size=(2, 3)), rng.normal(size=4)] for _ in range(4)]
    lrs = [0.1, 0.05, 0.2, 0.01]
    spec = {"kind": "SGD", "lr": 0.1, "momentum": 0.7, "nesterov": nesterov, "weight_decay": 0.3}
    got = check(probe_steps, spec=spec, params=params, grads=grads, lrs=lrs, what=f"SGD {spec}",
                mistakes=(NOT_IN_PLACE,))
    assert_close(got["trajectory"], sgd_by_hand(params, grads, lrs, 0.7, nesterov, 0.3), F64,
                 "four SGD steps, from the equations", mistakes=(
                     Mistake("the weight decay is missing or not inside the momentum buffer (g <- g + wd * p first)",
                             lambda got, want: np.allclose(got, sgd_by_hand(params, grads, lrs, 0.7, nesterov, 0.0))),
                     Mistake("nesterov was ignored (or applied when False)", lambda got, want: np.allclose(
                         got, sgd_by_hand(params, grads, lrs, 0.7, not nesterov, 0.3))),
                 ))
    assert_true(got["same_arrays"], "p.data must be updated in place")
    assert_close(got["steps"], [4, 4], EXACT, "optimizer.steps")


# ---------------------------------------------------------------- Adam and AdamW


@pytest.mark.concept("weight-decay")
def test_adam_l2_weight_decay_enters_both_moments(check):
    rng = seeded(552)
    p0 = rng.normal(size=6) * 3
    grads = [[rng.normal(size=6)] for _ in range(3)]
    spec = {"kind": "Adam", "lr": 0.02, "weight_decay": 0.5}
    got = check(probe_steps, spec=spec, params=[p0], grads=grads, what="Adam with L2 weight decay")
    want = adam_by_hand(p0, [g[0] for g in grads], [0.02] * 3, 0.9, 0.999, 1e-8, 0.5, decoupled=False)
    assert_close(got["trajectory"], want, F64, "three Adam + L2 steps, from the equations", mistakes=(
        Mistake("Adam's weight_decay was decoupled (that is AdamW); Adam adds weight_decay * p to the gradient",
                lambda got, want: np.allclose(got, adam_by_hand(p0, [g[0] for g in grads], [0.02] * 3, 0.9, 0.999,
                                                                1e-8, 0.5, decoupled=True))),))
    assert_close(got["grads_after"][-1], [grads[-1][0]], EXACT, "p.grad after step() (must not include the decay)")


@pytest.mark.concept("adam-bias-correction")
def test_adam_counts_steps_per_parameter(check):
    # parameter 1 has no gradient at steps 1 and 2: at step 3 it takes ITS first step, bias-corrected with t = 1, so it
    # moves by lr * g / (|g| + eps) exactly like any first step; a global step count (t = 3) would move it by less.
    g0 = [[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1]]
    g1 = np.array([2.0, -0.01, 1e-6])
    grads = [[g0[0], None], [g0[1], None], [g0[2], g1]]
    for kind in ("Adam", "AdamW"):
        spec = {"kind": kind, "lr": 0.1, "betas": [0.9, 0.99], "weight_decay": 0.0}
        got = check(probe_steps, spec=spec, params=[[1.0, 1.0], [0.0, 0.0, 0.0]], grads=grads,
                    what=f"{kind} with a late gradient")
        assert_close(got["steps"], [3, 1], EXACT, f"{kind}: optimizer.steps (updates per parameter)")
        assert_close(got["trajectory"][2][1], -0.1 * g1 / (np.abs(g1) + 1e-8), F64,
                     f"{kind}: the late parameter's first update (bias correction at its own t = 1)", mistakes=(
                         Mistake("one global step count was used for the bias correction; count per parameter",
                                 lambda got, want: abs(got[0]) < 0.09),))
        want = adam_by_hand(np.ones(2), g0, [0.1] * 3, 0.9, 0.99, 1e-8, 0.0, decoupled=False)
        assert_close(got["trajectory"][2][0], want[2][0], F64, f"{kind}: the other parameter after three steps")


@pytest.mark.concept("adamw")
def test_adamw_four_steps_with_a_changing_lr(check):
    rng = seeded(553)
    p0 = rng.normal(size=(3, 2))
    grads = [[rng.normal(size=(3, 2))] for _ in range(4)]
    lrs = [0.01, 0.03, 0.02, 0.005]
    spec = {"kind": "AdamW", "lr": 0.01, "betas": [0.7, 0.8], "eps": 1e-5, "weight_decay": 0.4}
    got = check(probe_steps, spec=spec, params=[p0], grads=grads, lrs=lrs, what="AdamW with a changing lr")
    want = adam_by_hand(p0, [g[0] for g in grads], lrs, 0.7, 0.8, 1e-5, 0.4, decoupled=True)
    assert_close(got["trajectory"], want, F64, "four AdamW steps, from the equations (the decay uses the current "
                 "self.lr, like the rest of the update)")


# ---------------------------------------------------------------- clipping


@pytest.mark.concept("clipping")
def test_clip_uses_one_global_norm_over_many_float32_gradients(check):
    rng = seeded(554)
    grads = [rng.normal(size=(5, 4)).astype(np.float32), None, rng.normal(size=7).astype(np.float32),
             np.array([[[3.0]]], dtype=np.float32)]
    norm = math.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads if g is not None))
    got = check(probe_clip, grads=grads, max_norm=1.25, tol=F32, what="clip_grad_norm of float32 gradients")
    assert_close(got["norm"], norm, F32, "returned global norm (float64 sum of squares)")
    assert_close(got["type"], "float", EXACT, "type of the returned norm")
    after = math.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in got["grads"] if g is not None))
    assert_close(after, 1.25, F32, "global norm after clipping (= max_norm)", mistakes=(
        Mistake("each parameter was clipped by its own norm; one scale max_norm / total for all of them",
                lambda got, want: got > 1.3),))
    for i in (0, 2, 3):  # one common factor keeps the direction of the whole update
        assert_close(got["grads"][i], np.asarray(grads[i], np.float64) * (1.25 / norm), F32, f"gradient {i}")
    assert_close(got["grads"][1], None, EXACT, "a None gradient stays None")


def probe_clip_edges(m) -> dict:
    ps = tensors(m, [np.zeros(3), np.zeros(2)])
    set_grads(ps, [[1.0, np.inf, 2.0], [3.0, 4.0]])
    infinite = m.clip_grad_norm(ps, 1.0)
    untouched = [repr(p.grad.tolist()) for p in ps]  # as text: inf is not a number a tolerance can judge
    set_grads(ps, [[0.0, 3.0, 0.0], [0.0, 4.0]])
    zero = m.clip_grad_norm(ps, 0.0)
    return {"inf": str(infinite), "untouched": untouched, "zero_norm": zero, "zeroed": [p.grad.copy() for p in ps],
            "negative": raised(m.clip_grad_norm, ps, -1.0)}


@pytest.mark.concept("clipping")
def test_clip_leaves_non_finite_gradients_alone_and_rejects_a_negative_max(check):
    got = check(probe_clip_edges, tol=EXACT, what="clip_grad_norm edge cases")
    assert_close(got["inf"], "inf", EXACT, "clip_grad_norm with an inf gradient returns inf")
    assert_close(got["untouched"], ["[1.0, inf, 2.0]", "[3.0, 4.0]"], EXACT,
                 "gradients with an inf (left alone: scaling would turn them into NaN)")
    assert_close(got["zero_norm"], 5.0, F64, "the norm returned with max_norm 0")
    assert_close(got["zeroed"], [np.zeros(3), np.zeros(2)], EXACT, "gradients clipped to max_norm 0")
    assert_close(got["negative"], {"raised": "ValueError"}, EXACT, "clip_grad_norm with max_norm -1")


# ---------------------------------------------------------------- the schedule


def probe_schedule_edges(m) -> dict:
    def lr(step, warmup, total):
        return m.cosine_schedule(step, max_lr=3e-4, min_lr=3e-5, warmup_steps=warmup, total_steps=total)

    def error(step, warmup, total):
        return raised(m.cosine_schedule, step, max_lr=3e-4, min_lr=3e-5, warmup_steps=warmup, total_steps=total)
    return {"no_warmup": [lr(s, 0, 100) for s in (0, 50, 100, 101)],
            "one_step_warmup": [lr(s, 1, 5) for s in (0, 1, 3, 5)],
            "only_warmup": [lr(s, 4, 4) for s in (0, 3, 4, 9)],
            "errors": [error(-1, 2, 10), error(0, -1, 10), error(0, 5, 4)]}


@pytest.mark.concept("schedule")
def test_schedule_edge_cases(check):
    got = check(probe_schedule_edges, what="cosine_schedule edge cases")
    # no warmup: cosine from step 0 (max), midpoint 50 ((max + min) / 2), 100 and after (min)
    assert_close(got["no_warmup"], [3e-4, 1.65e-4, 3e-5, 3e-5], F64, "warmup_steps=0 at steps 0, 50, 100, 101")
    # one warmup step: step 0 gets max * 1/1; cosine over steps 1..4: step 3 is progress 2/4 -> the midpoint
    assert_close(got["one_step_warmup"], [3e-4, 3e-4, 1.65e-4, 3e-5], F64, "warmup_steps=1 at steps 0, 1, 3, 5")
    # warmup_steps == total_steps: warmup 1/4, 4/4, then min_lr with no cosine (and no division by zero)
    assert_close(got["only_warmup"], [7.5e-5, 3e-4, 3e-5, 3e-5], F64, "warmup_steps=total_steps=4 at 0, 3, 4, 9")
    for record, case in zip(got["errors"], ("step -1", "warmup_steps -1", "total_steps < warmup_steps")):
        assert_close(record, {"raised": "ValueError"}, EXACT, f"cosine_schedule with {case}")


def probe_schedule_many(m, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> list:
    return probe_schedule(m, list(range(total_steps + 3)), max_lr, min_lr, warmup_steps, total_steps)["values"]


@pytest.mark.concept("schedule")
def test_schedule_matches_its_formula_at_every_step(check):
    max_lr, min_lr, warmup, total = 6e-4, 0.0, 7, 40
    got = check(probe_schedule_many, max_lr=max_lr, min_lr=min_lr, warmup_steps=warmup, total_steps=total,
                what="cosine_schedule at every step")
    want = [max_lr * (s + 1) / warmup if s < warmup else
            min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) / 2
            if s < total else min_lr for s in range(total + 3)]
    assert_close(got, want, F64, "cosine_schedule(step) for steps 0..42 (min_lr 0)")


# ---------------------------------------------------------------- state_dict, load_state_dict, in place


def probe_load_errors(m) -> dict:
    ps = tensors(m, [np.ones((2, 2)), np.ones(3)])
    adam = optimizer(m, ps, {"kind": "Adam", "lr": 0.1})
    set_grads(ps, [np.full((2, 2), 0.5), np.full(3, -0.5)])
    adam.step()
    good = adam.state_dict()
    before = adam.state_dict()
    missing = dict(good)
    del missing["exp_avg_sq.1"]
    extra = {**good, "momentum_buffer.0": np.zeros((2, 2))}
    wrong_shape = {**good, "exp_avg.0": np.zeros((2, 3))}
    sgd_state = optimizer(m, tensors(m, [np.ones((2, 2)), np.ones(3)]), {"kind": "SGD", "lr": 0.1,
                                                                          "momentum": 0.9}).state_dict()
    # each message names the keys (and for a shape, both shapes): the docstring's promise
    records = {case: raised(adam.load_state_dict, state, mentions=LOAD_ERRORS[case][1])
               for case, state in (("missing", missing), ("unexpected", extra), ("shape", wrong_shape),
                                   ("sgd_into_adam", sgd_state))}
    unchanged = all(np.array_equal(adam.state_dict()[k], before[k]) for k in before)
    # a good load copies: changing the dict afterwards must not reach the optimizer
    fresh = optimizer(m, tensors(m, [np.ones((2, 2)), np.ones(3)]), {"kind": "Adam", "lr": 0.5})
    source = {k: v.copy() for k, v in good.items()}
    fresh.load_state_dict(source)
    for value in source.values():
        value[...] = 7
    return {**records, "unchanged_after_failures": unchanged, "loaded": fresh.state_dict(), "good": good}


LOAD_ERRORS = {"missing": ("KeyError", ["exp_avg_sq.1"]), "unexpected": ("KeyError", ["momentum_buffer.0"]),
               "sgd_into_adam": ("KeyError", ["momentum_buffer.0", "exp_avg.0"]),
               "shape": ("ValueError", ["exp_avg.0", "(2, 2)", "(2, 3)"])}


@pytest.mark.concept("state-dict")
def test_load_state_dict_checks_keys_and_shapes_and_copies(check):
    got = check(probe_load_errors, what="load_state_dict")
    for case, (kind, words) in LOAD_ERRORS.items():
        assert_close(got[case], {"raised": kind, "mentions": words}, EXACT, f"load_state_dict ({case})")
    assert_true(got["unchanged_after_failures"], "a load_state_dict that raised must leave the optimizer unchanged "
                                                 "(check everything before copying anything)")
    assert_close(got["loaded"], got["good"], EXACT, "state after load_state_dict (then the source dict was changed)",
                 mistakes=(Mistake("load_state_dict kept references to the given arrays; copy the values in "
                                   "(np.copyto or array[...] = value)",
                                   lambda got, want: any(np.any(np.asarray(v) == 7) for v in got.values())),))


def probe_state_identity(m, spec: dict) -> dict:
    ps = tensors(m, [np.ones((3, 2)), np.ones(4)], dtype=np.float32)
    opt = optimizer(m, ps, spec)
    arrays = {name: list(values) for name, values in opt.state.items()}
    for k in range(3):
        set_grads(ps, [np.full((3, 2), 0.1 * (k + 1)), np.full(4, -0.2)], dtype=np.float32)
        opt.step()
    opt.load_state_dict(opt.state_dict())
    return {"names": sorted(opt.state), "same": all(a is b for name, values in arrays.items()
                                                    for a, b in zip(values, opt.state[name])),
            "dtypes": sorted({str(a.dtype) for values in opt.state.values() for a in values}),
            "shapes": {name: [list(a.shape) for a in values] for name, values in opt.state.items()},
            "moved": [bool(np.any(a != 0)) for values in opt.state.values() for a in values]}


@pytest.mark.concept("in-place")
def test_state_arrays_are_allocated_once_in_the_parameter_dtype(check):
    for spec, names in (({"kind": "SGD", "lr": 0.1, "momentum": 0.9}, ["momentum_buffer"]),
                        ({"kind": "Adam", "lr": 0.1}, ["exp_avg", "exp_avg_sq"]),
                        ({"kind": "AdamW", "lr": 0.1}, ["exp_avg", "exp_avg_sq"])):
        got = check(probe_state_identity, spec=spec, tol=EXACT, what=f"{spec['kind']} state arrays")
        assert_close(got["names"], names, EXACT, f"{spec['kind']}: the names in optimizer.state")
        assert_close(got["shapes"], {n: [[3, 2], [4]] for n in names}, EXACT, f"{spec['kind']}: state shapes")
        assert_close(got["dtypes"], ["float32"], EXACT, f"{spec['kind']}: state dtypes for float32 parameters")
        assert_true(all(got["moved"]), f"{spec['kind']}: the state arrays allocated in __init__ never changed: the "
                                       f"updates went into new arrays (m = beta1 * m + ...) instead of in place")
        assert_true(got["same"], f"{spec['kind']}: optimizer.state holds new arrays after step()/load_state_dict(); "
                                 f"update the arrays allocated in __init__ in place (m *= beta1; m += ...)")


BAD_HYPERPARAMETERS = {  # case -> (optimizer, keyword arguments, parameter list: "p", "p p" or "")
    "negative lr": ("SGD", {"lr": -0.1}, "p"),
    "negative momentum": ("SGD", {"lr": 0.1, "momentum": -0.5}, "p"),
    "nesterov without momentum": ("SGD", {"lr": 0.1, "nesterov": True}, "p"),
    "negative weight decay": ("SGD", {"lr": 0.1, "weight_decay": -1.0}, "p"),
    "beta1 = 1": ("Adam", {"betas": [1.0, 0.999]}, "p"),
    "beta2 < 0": ("AdamW", {"betas": [0.9, -0.1]}, "p"),
    "negative eps": ("Adam", {"eps": -1e-8}, "p"),
    "negative AdamW decay": ("AdamW", {"weight_decay": -0.01}, "p"),
    "no parameters": ("Adam", {}, ""),
    "the same parameter twice": ("SGD", {"lr": 0.1}, "p p"),
}


def probe_bad_hyperparameters(m, cases: dict, grad: list) -> dict:
    (p,) = tensors(m, [np.ones(2)])
    result = {name: raised(getattr(m, kind), [p] * len(params.split()),
                           **{k: tuple(v) if k == "betas" else v for k, v in kwargs.items()})
              for name, (kind, kwargs, params) in cases.items()}
    # the edges that are allowed: lr 0, momentum 0, betas (0, 0) and eps 0; each takes a step
    for name, spec in (("SGD lr 0", {"kind": "SGD", "lr": 0.0, "momentum": 0.0}),
                       ("Adam betas (0, 0) eps 0", {"kind": "Adam", "lr": 0.1, "betas": [0.0, 0.0], "eps": 0.0})):
        (q,) = tensors(m, [np.ones(2)])
        opt = optimizer(m, [q], spec)
        set_grads([q], [grad])
        opt.step()
        result[name] = q.data.copy()
    return result


@pytest.mark.concept("validation")
def test_bad_hyperparameters_raise_value_error(check):
    grad = [0.5, -2.0]
    got = check(probe_bad_hyperparameters, cases=BAD_HYPERPARAMETERS, grad=grad, tol=F64,
                what="optimizers with bad (and edge) hyperparameters")
    for case, (kind, kwargs, params) in BAD_HYPERPARAMETERS.items():
        assert_close(got[case], {"raised": "ValueError"}, EXACT, f"{kind}([{', '.join(params.split())}], "
                     f"{', '.join(f'{k}={v}' for k, v in kwargs.items())}): {case}")
    # lr 0 leaves p alone; Adam with betas (0, 0) and eps 0 steps by lr * g / |g| = lr * sign(g)
    assert_close({"SGD lr 0": got["SGD lr 0"], "Adam betas (0, 0) eps 0": got["Adam betas (0, 0) eps 0"]},
                 {"SGD lr 0": np.ones(2), "Adam betas (0, 0) eps 0": np.array([0.9, 1.1])}, F64,
                 "one step with the edge hyperparameters that are allowed (lr 0; betas (0, 0) and eps 0)")


@pytest.mark.concept("state-dict")
def test_resume_is_bit_identical_in_float32_and_restores_lr(check):
    # float32, a split after 3 of 7 steps, and a learning rate that is not reset after loading: it must come from
    # the state (resume_float32 sets it only before the first part).
    inputs = resume_inputs(556, dtype=np.float32)
    for spec in ({"kind": "SGD", "lr": 0.01, "momentum": 0.95, "weight_decay": 0.05},
                 {"kind": "Adam", "lr": 0.01, "betas": [0.9, 0.95]},
                 {"kind": "AdamW", "lr": 0.01, "weight_decay": 0.3}):
        got = check(probe_resume_float32, spec=spec, tol=F32, what=f"{spec['kind']}: float32 resume", **inputs)
        assert_close(got["lr_after_load"], 0.02, EXACT, f"{spec['kind']}: self.lr after load_state_dict (the saved "
                                                        f"lr, not the constructor's)")
        assert_close(got["resumed"], got["straight"], EXACT, f"{spec['kind']}: resumed vs uninterrupted (float32)")
        assert_close(got["dtypes"], ["float32"], EXACT, f"{spec['kind']}: parameter dtypes after resuming")


def probe_resume_float32(m, spec: dict, params: list, a: np.ndarray, b: np.ndarray) -> dict:
    def run(ps, opt, steps):
        out = []
        for k in steps:
            grads = least_squares_gradient([p.data for p in ps], a, b)
            set_grads(ps, [grads[0], grads[1] if k % 2 == 0 else None], dtype=np.float32)  # the bias: every other step
            opt.step()
            out.append([p.data.copy() for p in ps])
        return out

    ps = tensors(m, params, dtype=np.float32)
    opt = optimizer(m, ps, spec)
    opt.lr = 0.02  # not the constructor's
    straight = run(ps, opt, range(7))
    ps = tensors(m, params, dtype=np.float32)
    opt = optimizer(m, ps, spec)
    opt.lr = 0.02
    first = run(ps, opt, range(3))
    saved_params, saved_state = [p.data.copy() for p in ps], opt.state_dict()
    ps = tensors(m, saved_params, dtype=np.float32)
    opt = optimizer(m, ps, spec)  # lr back to the constructor's until the state is loaded
    opt.load_state_dict(saved_state)
    lr_after_load = opt.lr
    resumed = first + run(ps, opt, range(3, 7))
    return {"straight": straight, "resumed": resumed, "dtypes": sorted({str(p.data.dtype) for p in ps}),
            "lr_after_load": lr_after_load}


# ---------------------------------------------------------------- convergence, zero_grad


def probe_least_squares(m, spec: dict, a: np.ndarray, b: np.ndarray, steps: int) -> list:
    ps = tensors(m, [np.zeros((a.shape[1], b.shape[1])), np.zeros(b.shape[1])])
    opt = optimizer(m, ps, spec)
    for _ in range(steps):
        set_grads(ps, least_squares_gradient([p.data for p in ps], a, b))
        opt.step()
    return [p.data.copy() for p in ps]


@pytest.mark.concept("convergence")
def test_optimizers_solve_least_squares(check):
    rng = seeded(557)
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    # the least-squares solution of [a, 1] @ [w; c] = b, from NumPy's solver
    solution = np.linalg.lstsq(np.hstack([a, np.ones((20, 1))]), b, rcond=None)[0]  # (4, 2)
    for spec in ({"kind": "SGD", "lr": 0.02, "momentum": 0.9}, {"kind": "SGD", "lr": 0.02, "momentum": 0.9,
                 "nesterov": True}, {"kind": "Adam", "lr": 0.05}):
        got = check(probe_least_squares, spec=spec, a=a, b=b, steps=400, tol=Tol(1e-7, 1e-9, "400 steps, near 0 "
                    "relative differences of order 1e-9 are rounding"), what=f"{spec} on least squares")
        error = float(np.abs(np.vstack([got[0], got[1][None]]) - solution).max())
        assert_true(error < 1e-8, f"{spec}: after 400 steps the parameters should be within 1e-8 of the "
                                  f"least-squares solution, but the largest difference is {error:.3g}")


def probe_zero_grad_partial(m, spec: dict) -> dict:
    ps = tensors(m, [np.ones(2), np.ones(3)])
    opt = optimizer(m, ps, spec)
    set_grads(ps, [[0.5, 0.5], [1.0, 1.0, 1.0]])
    opt.step()
    after_one = [p.data.copy() for p in ps]
    opt.zero_grad()
    set_grads(ps[:1], [[0.25, -0.25]])  # only the first parameter takes part in the next loss
    opt.step()
    return {"moved": [bool(np.any(p.data != a)) for p, a in zip(ps, after_one)], "steps": list(opt.steps),
            "second_grad_is_none": ps[1].grad is None}


@pytest.mark.concept("zero-grad")
def test_after_zero_grad_only_parameters_with_new_gradients_move(check):
    for spec in ({"kind": "SGD", "lr": 0.1, "momentum": 0.9}, {"kind": "AdamW", "lr": 0.1, "weight_decay": 0.5}):
        got = check(probe_zero_grad_partial, spec=spec, tol=EXACT, what=f"{spec['kind']}: zero_grad, then one grad")
        assert_close(got["moved"], [True, False], EXACT, f"{spec['kind']}: which parameters moved at the second "
                                                         f"step (only the one with a gradient)", mistakes=(
            Mistake("zero_grad left zeros instead of None, so momentum or decay still moved the other parameter",
                    lambda got, want: got == [True, True]),))
        assert_close(got["steps"], [2, 1], EXACT, f"{spec['kind']}: optimizer.steps")
