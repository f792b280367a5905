"""Stage 05 (optimizers), visible suite: the conventions of the docstrings that the other tests' inputs do not expose
(a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible mistake
gives a different answer; tests/mutants/stage05.toml lists those mistakes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, raised
from tests.stage05.helpers import adam_by_hand, optimizer, probe_steps, set_grads, tensors

# ---------------------------------------------------------------- hyperparameters


def probe_bad_hyperparameters(m, cases: dict, accepted: dict) -> dict:
    params = tensors(m, [[1.0, 2.0]])
    result = {name: raised(lambda spec: optimizer(m, params, spec), spec) for name, spec in cases.items()}
    result.update({name: type(optimizer(m, tensors(m, [[1.0, 2.0]]), spec)).__name__
                   for name, spec in accepted.items()})
    return result


@pytest.mark.concept("validation")
def test_impossible_hyperparameters_raise_value_error(check):
    cases = {"SGD, nesterov with momentum 0": {"kind": "SGD", "lr": 0.1, "nesterov": True},
             "Adam, beta1 = 1": {"kind": "Adam", "betas": [1.0, 0.999]},
             "AdamW, beta2 = 1": {"kind": "AdamW", "betas": [0.9, 1.0]}}
    accepted = {"SGD, nesterov with momentum 0.9": {"kind": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                "Adam, beta1 = 0.999999": {"kind": "Adam", "betas": [0.999999, 0.999]},
                "AdamW, beta2 = 0": {"kind": "AdamW", "betas": [0.9, 0.0]}}
    got = check(probe_bad_hyperparameters, cases=cases, accepted=accepted, tol=EXACT,
                what="optimizers made with impossible settings, then with settings at the edge")
    for name in cases:
        assert_close(got[name], {"raised": "ValueError"}, EXACT,
                     f"{name}: ValueError (Nesterov needs a momentum buffer; beta = 1 makes the bias correction "
                     f"divide by 1 - 1^t = 0)")
    for name, spec in accepted.items():
        assert_close(got[name], spec["kind"], EXACT, f"{name}: a valid setting, so the optimizer is made")


# ---------------------------------------------------------------- Adam's per-parameter step count


@pytest.mark.concept("adam-bias-correction")
def test_adam_counts_steps_per_parameter(check):
    # The second parameter has no gradient at the first step: its first update is at optimizer step 2, where ITS t is
    # 1, so it moves by lr * g / (|g| + eps), about lr * sign(g). A shared step count would correct it with t = 2.
    spec = {"kind": "Adam", "lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8}
    grads = [[[0.5, -0.5], None], [[0.25, 1.0], [2.0, -3.0]], [[-1.0, 0.5], [1.0, 1.0]]]
    got = check(probe_steps, spec=spec, params=[[1.0, 2.0], [3.0, -4.0]], grads=grads, what="Adam, a late gradient")
    late = [step[0] for step in adam_by_hand(np.array([3.0, -4.0]), [g[1] for g in grads[1:]], [0.1, 0.1], 0.9, 0.999,
                                             1e-8, 0.0, False)]
    assert_close([step[1] for step in got["trajectory"][1:]], late, F64,
                 "the late parameter after optimizer steps 2 and 3 (its own t = 1 and 2)", mistakes=(
                     Mistake("one step count was shared by all parameters: Adam's t is per parameter "
                             "(self.steps[i]), and a parameter skipped for a while has had fewer updates",
                             lambda got, want: not np.allclose(got[0][0], [2.9, -3.9], atol=1e-6)),))
    assert_close(got["steps"], [3, 2], EXACT, "optimizer.steps after three steps")


# ---------------------------------------------------------------- load_state_dict


def probe_load_contract(m, spec: dict, grads: list, bad_key: str) -> dict:
    ps = tensors(m, [[1.0, 2.0], [3.0]])
    opt = optimizer(m, ps, spec)
    set_grads(ps, grads)
    opt.step()
    saved = opt.state_dict()
    fresh = optimizer(m, tensors(m, [[1.0, 2.0], [3.0]]), {**spec, "lr": 0.5})
    before = fresh.state_dict()
    bad = dict(saved, **{bad_key: np.zeros(1)})  # (1,) where the state holds (2,): np.copyto would broadcast it
    result = {"wrong shape": raised(fresh.load_state_dict, bad, mentions=[bad_key, "(2,)", "(1,)"])}
    result["unchanged after the error"] = fresh.state_dict()
    fresh.load_state_dict(saved)
    result["lr"] = fresh.lr
    result["steps"] = [int(s) for s in fresh.steps]
    result["before"] = before
    return result


@pytest.mark.concept("state-dict")
def test_load_state_dict_restores_lr_and_steps_and_checks_shapes_first(check):
    for spec, key in (({"kind": "SGD", "lr": 0.1, "momentum": 0.9}, "momentum_buffer.0"),
                      ({"kind": "Adam", "lr": 0.1}, "exp_avg_sq.0")):
        name = spec["kind"]
        got = check(probe_load_contract, spec=spec, grads=[[0.5, -0.5], None], bad_key=key, tol=EXACT,
                    what=f"{name}: load_state_dict")
        assert_close(got["wrong shape"], {"raised": "ValueError", "mentions": [key, "(2,)", "(1,)"]}, EXACT,
                     f"{name}: loading a state whose {key} has shape (1,) instead of (2,)")
        assert_close(got["unchanged after the error"], got["before"], EXACT,
                     f"{name}: the optimizer's state after a load that failed (must be unchanged)")
        assert_close([got["lr"], got["steps"]], [0.1, [1, 0]], EXACT,
                     f"{name}: [lr, steps] after loading the state of an optimizer at lr 0.1 that stepped once "
                     f"(the fresh one was made with lr 0.5)", mistakes=(
                         Mistake("load_state_dict must restore self.lr from 'lr' (a schedule may have changed it)",
                                 lambda got, want: got[0] == 0.5),))


# ---------------------------------------------------------------- clipping


def probe_clip_dtype(m, grads: list, max_norm: float, dtype: str) -> dict:
    ps = tensors(m, [np.zeros(np.shape(g)) for g in grads], dtype=np.dtype(dtype))
    set_grads(ps, grads, dtype=np.dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):  # a wrong clip may overflow; the judge reports it
        total = m.clip_grad_norm(ps, max_norm)
    return {"norm": total, "grads": [p.grad.copy() for p in ps], "dtypes": [str(p.grad.dtype) for p in ps]}


@pytest.mark.concept("clipping")
def test_clip_sums_squares_in_float64(check):
    # float32 tops out at 3.4e38: each square (1e19)^2 = 1e38 fits, their sum 4e38 does not (in float64 it does).
    # The norm is sqrt(4e38) = 2e19, so the gradients are scaled by 1 / 2e19 to 0.5 each.
    got = check(probe_clip_dtype, grads=[[1e19, 1e19, 1e19, 1e19]], max_norm=1.0, dtype="float32",
                tol=Tol(1e-6, 0.0, "float32 gradients; the norm itself is computed in float64"),
                what="clip_grad_norm of the float32 gradient (1e19, 1e19, 1e19, 1e19)", mistakes=(
                    Mistake("the squares were summed in float32 and overflowed: sum them in float64 "
                            "(np.sum(np.square(g), dtype=np.float64))", lambda got, want: math.isinf(got["norm"])),))
    assert_close(got["norm"], 2e19, Tol(1e-6, 0.0, "float32 inputs"), "the norm before clipping")
    assert_close(got["grads"], [np.full(4, 0.5)], Tol(1e-6, 0.0, "float32"), "the gradient after clipping to norm 1")
    assert_close(got["dtypes"], ["float32"], EXACT, "the gradient's dtype (scaled in place)")


@pytest.mark.concept("clipping")
def test_clip_leaves_non_finite_gradients_alone(check):
    for bad in (math.inf, math.nan):
        grads = [[1.0, bad], [2.0, 2.0]]
        got = check(probe_clip_dtype, grads=grads, max_norm=1.0, dtype="float64", tol=EXACT,
                    what=f"clip_grad_norm with a {bad} in a gradient", mistakes=(
                        Mistake("a non-finite norm scaled the gradients (by 0 or NaN): return it and leave them "
                                "alone, so the caller can skip the step", lambda got, want: True),))
        assert_close(got["grads"], [np.array(g) for g in grads], EXACT,
                     f"gradients after clip_grad_norm found a norm of {bad} (unchanged)")
