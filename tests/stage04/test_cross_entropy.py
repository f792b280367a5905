"""Stage 04 (a neural language model), visible suite: cross-entropy from logits, one fused op.

Values are checked against numbers worked out by hand, the backward against central differences in float64 and
against the same loss composed from the engine's primitive ops. Conventions: exercises/nn.py and docs/04-nn.md,
"Cross-entropy".
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import F32, F64, GRADCHECK, Mistake, assert_close, assert_true, central_difference, seeded, sibling
from tests.stage04.helpers import grad_or_zeros


def probe_cross_entropy(m, logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100) -> dict:
    """The loss, its dtype and shape, and d loss / d logits."""
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True, dtype=logits.dtype)
    loss = m.cross_entropy(z, targets, ignore_index=ignore_index)
    loss.backward()
    return {"loss": loss.data, "dtype": str(loss.dtype), "shape": list(loss.shape), "grad": grad_or_zeros(z)}


NO_MEAN = Mistake("the per-position losses were summed, not averaged over the N scored positions",
                  lambda got, want: np.isclose(got["loss"], 2 * want["loss"]))
SIGN = Mistake("the gradient's sign is flipped: d loss / d z = softmax - one_hot, not one_hot - softmax",
               lambda got, want: np.allclose(got["grad"], -want["grad"]))
GRAD_NOT_MEAN = Mistake("the gradient was not divided by N (the number of scored positions)",
                        lambda got, want: np.allclose(got["grad"], 2 * want["grad"]))


@pytest.mark.concept("cross-entropy")
def test_cross_entropy_by_hand(check):
    # logits (1, 2, 3), target 2: -log softmax_2 = log(e + e^2 + e^3) - 3
    one = math.log(math.e + math.e ** 2 + math.e ** 3) - 3  # 0.40760596
    # a second row of zeros: softmax uniform, -log(1/3) = ln 3 whatever the target
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    got = check(probe_cross_entropy, logits=logits, targets=np.array([2, 1]), tol=F64, what="cross_entropy",
                mistakes=(NO_MEAN, SIGN, GRAD_NOT_MEAN))
    assert_close(got["loss"], (one + math.log(3)) / 2, F64, "mean of log(e+e²+e³)-3 and ln 3", mistakes=(NO_MEAN,))
    assert_close([got["dtype"], got["shape"]], ["float64", []], F64, "dtype and shape of the loss (a scalar)")
    softmax = np.exp(logits[0]) / np.exp(logits[0]).sum()
    hand = np.array([softmax - [0, 0, 1], np.full(3, 1 / 3) - [0, 1, 0]]) / 2  # (softmax - one_hot) / N
    assert_close(got, {**got, "grad": hand}, F64, "d loss / d logits = (softmax - one_hot) / N",
                 mistakes=(SIGN, GRAD_NOT_MEAN))


def probe_gradcheck(m, logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100) -> dict:
    """Analytic d loss / d logits next to central differences of the target's own forward, in float64."""
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    m.cross_entropy(z, targets, ignore_index=ignore_index).backward()
    numeric = central_difference(
        lambda: m.cross_entropy(T.Tensor(logits, dtype=np.float64), targets, ignore_index=ignore_index).item(), logits)
    return {"analytic": grad_or_zeros(z), "numeric": numeric}


@pytest.mark.concept("cross-entropy-gradient")
def test_cross_entropy_gradient_matches_central_differences(target, reference):
    rng = seeded(420)
    logits = 3 * rng.standard_normal((3, 4, 6))  # (B, T, V)
    targets = rng.integers(0, 6, size=(3, 4))
    targets[0, 1] = targets[2, 3] = -100  # two ignored positions

    got = target.run(probe_gradcheck, logits=logits, targets=targets)
    assert_close(got["analytic"], got["numeric"], GRADCHECK, "backward vs central differences of your own forward")
    assert_close(got, reference.run(probe_gradcheck, logits=logits, targets=targets), GRADCHECK,
                 "gradient and central differences vs the reference's (a loss that ignores the logits has none)")


def probe_composed(m, logits: np.ndarray, targets: np.ndarray) -> dict:
    """The fused loss next to the same loss from primitives: -mean(log_softmax(z)[rows, targets])."""
    T = sibling(m, "tensor")
    fused_in = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    fused = m.cross_entropy(fused_in, targets)
    fused.backward()
    composed_in = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    flat = composed_in.reshape(-1, logits.shape[-1])  # (N, V)
    picked = T.log_softmax(flat)[np.arange(targets.size), targets.reshape(-1)]  # (N,)
    composed = -picked.mean()
    composed.backward()
    return {"fused": fused.data, "composed": composed.data, "fused grad": grad_or_zeros(fused_in),
            "composed grad": grad_or_zeros(composed_in)}


@pytest.mark.concept("cross-entropy")
def test_fused_cross_entropy_equals_the_loss_composed_from_primitives(check):
    rng = seeded(421)
    logits, targets = 2 * rng.standard_normal((4, 5, 7)), rng.integers(0, 7, size=(4, 5))
    got = check(probe_composed, logits=logits, targets=targets, tol=F64, what="fused and composed losses", mistakes=(
        Mistake("the fused gradient's sign is flipped: softmax - one_hot, not one_hot - softmax",
                lambda got, want: np.allclose(got["fused grad"], -want["fused grad"])),))
    assert_close(got["fused"], got["composed"], F64, "fused cross_entropy vs -mean(log_softmax(z)[i, t_i])")
    assert_close(got["fused grad"], got["composed grad"], F64, "their gradients")


@pytest.mark.concept("ignore-index")
def test_ignored_positions_are_left_out_of_the_mean_and_the_gradient(check):
    rng = seeded(422)
    logits = rng.standard_normal((2, 3, 4))
    targets = np.array([[0, -100, 3], [-100, 2, -100]])  # 3 scored positions out of 6
    got = check(probe_cross_entropy, logits=logits, targets=targets, tol=F64, what="cross_entropy with ignored",
                mistakes=(Mistake("divided by all 6 positions instead of the 3 that are not ignored",
                                  lambda got, want: np.isclose(got["loss"], want["loss"] / 2)), SIGN))
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))  # (2, 3, 4)
    hand = -(log_probs[0, 0, 0] + log_probs[0, 2, 3] + log_probs[1, 1, 2]) / 3
    assert_close(got["loss"], hand, F64, "mean over the 3 scored positions")
    for b, t in ((0, 1), (1, 0), (1, 2)):
        assert_true(not np.any(got["grad"][b, t]), f"the gradient at ignored position {(b, t)} must be exactly 0, "
                                                   f"got {got['grad'][b, t]}")
    # another ignore_index: class 1 is ignored wherever it is the target
    targets = np.array([[1, 0, 1], [2, 1, 3]])
    got = check(probe_cross_entropy, logits=logits, targets=targets, ignore_index=1, tol=F64,
                what="cross_entropy with ignore_index=1")
    hand = -(log_probs[0, 1, 0] + log_probs[1, 0, 2] + log_probs[1, 2, 3]) / 3
    assert_close(got["loss"], hand, F64, "ignore_index=1: mean over the 3 targets that are not 1")
    # every target ignored: the stated convention is a loss of 0 with a zero gradient (not NaN)
    got = check(probe_cross_entropy, logits=logits, targets=np.full((2, 3), -100), tol=F64,
                what="cross_entropy with every target ignored")
    assert_close([got["loss"], got["grad"]], [0.0, np.zeros((2, 3, 4))], F64,
                 "every target ignored: loss 0 and gradient 0 (the convention), not NaN")


@pytest.mark.concept("stability")
def test_cross_entropy_is_stable_for_huge_logits(check):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4], [1e4, 0.0, -1e4]], dtype=np.float32)
    # row 0, target 0: log-sum-exp = 1e4 exactly in float32, loss 0; row 1, target 2: two equal maxima, loss ln 2;
    # row 2, target 1: loss 1e4 - 0 = 1e4. Mean (0 + ln 2 + 1e4) / 3.
    got = check(probe_cross_entropy, logits=logits, targets=np.array([0, 2, 1]), tol=F32, what="huge logits",
                mistakes=(Mistake("exp overflowed: subtract each row's maximum before exponentiating",
                                  lambda got, want: not np.isfinite(got["loss"])), SIGN))
    assert_close(got["loss"], (math.log(2) + 1e4) / 3, F32, "loss of logits ±1e4 (float32)")
    hand = np.array([[0, 0, 0], [0, 0.5, -0.5], [1, -1, 0]]) / 3  # (softmax - one_hot) / 3
    assert_close(got["grad"], hand, F32, "gradient of logits ±1e4: finite, (softmax - one_hot) / N")
    assert_close(got["dtype"], "float32", F32, "a float32 loss for float32 logits")
