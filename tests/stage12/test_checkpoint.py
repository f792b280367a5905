"""Stage 12 (where the time and memory go), visible suite: activation checkpointing.

A checkpointed function must give bit-identical values and gradients to the plain run (float64: the recomputation
runs the very same operations on the very same numbers), and its graph must keep only its inputs: checked with your
saved_bytes (deterministic) against hand counts and against activation_bytes(..., checkpointed=True).
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, sibling
from tests.stage06.helpers import GrowingCache
from tests.stage12.helpers import (IDENTICAL, TINY, judge_activations, model_of, probe_checkpoint_model,
                                   probe_measured)


def probe_checkpoint_function(m, x: np.ndarray, y: np.ndarray, weights: np.ndarray, wrap: bool) -> dict:
    """f(a, b) = exp(a · b) + a, with a = 2x and b = y + 1 made by ops (so they are activations, not leaves)."""
    tensor = sibling(m, "tensor")
    x_leaf = tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64)
    y_leaf = tensor.Tensor(y.copy(), requires_grad=True, dtype=np.float64)
    a, b = x_leaf * 2.0, y_leaf + 1.0

    def f(a, b):
        return (a * b).exp() + a

    out = m.checkpoint(f, a, b) if wrap else f(a, b)
    saved = m.saved_bytes(out)
    out.backward(weights)
    return {"out": out.data, "grad_x": x_leaf.grad, "grad_y": y_leaf.grad, "saved": saved}


@pytest.mark.concept("checkpoint")
def test_checkpoint_of_a_function_keeps_only_its_inputs(target, check):
    shape = (3, 4)  # float64: 96 bytes an array
    rng = np.random.default_rng(1220)
    inputs = {"x": rng.standard_normal(shape) * 0.5, "y": rng.standard_normal(shape) * 0.5,
              "weights": rng.standard_normal(shape)}
    wrapped = check(probe_checkpoint_function, wrap=True, tol=F64, what="checkpoint(f, a, b)", **inputs)
    plain = target.run(probe_checkpoint_function, wrap=False, **inputs)
    for key in ("out", "grad_x", "grad_y"):
        assert_close(wrapped[key], plain[key], IDENTICAL, f"checkpoint(f, a, b) vs f(a, b): {key}")
    # plain: a·b keeps a and b (192), exp keeps its output (96): 288. Checkpointed: only the inputs a and b: 192.
    assert_close([plain["saved"], wrapped["saved"]], [288, 192], EXACT, "saved_bytes of f(a, b), plain and "
                 "checkpointed (see the test's comment)", mistakes=(
                     Mistake("the checkpointed forward built a graph: run fn under no_grad() and wrap its output "
                             "in ONE op whose parents are the inputs", lambda got, want: got[1] >= want[0]),))


def probe_checkpoint_gradcheck(m, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> dict:
    """backward() through checkpoint(f, x, y) with y a constant, and central differences of it, for x."""
    tensor = sibling(m, "tensor")
    x_leaf = tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64)
    constant = tensor.Tensor(y.copy(), dtype=np.float64)  # needs no gradient: its slot gets None

    def f(a, b):
        return (a * b).tanh() * a

    m.checkpoint(f, x_leaf, constant).backward(weights)
    point = x.copy()

    def loss() -> float:
        return float((m.checkpoint(f, tensor.Tensor(point, dtype=np.float64), constant).data * weights).sum())

    return {"analytic": x_leaf.grad, "numeric": central_difference(loss, point),
            "constant_grad_is_none": constant.grad is None}


@pytest.mark.concept("checkpoint")
def test_checkpoint_gradients_against_central_differences(target, reference):
    rng = np.random.default_rng(1221)
    inputs = {name: rng.standard_normal((2, 3)) for name in ("x", "y", "weights")}
    for who in (target, reference):
        got = who.run(probe_checkpoint_gradcheck, **inputs)
        assert_close(got["analytic"], got["numeric"], GRADCHECK, f"{who.target}: d L / d x through checkpoint(f, x, "
                     "constant) vs central differences")
        assert_true(got["constant_grad_is_none"], f"{who.target}: an input that needs no gradient gets none")


@pytest.mark.concept("checkpoint")
def test_checkpointed_model_has_the_plain_gradients(target, check):
    fields = dict(TINY, layers=3)
    plain = check(probe_checkpoint_model, fields=fields, seed=1222, batch=2, length=16, checkpointed=[],
                  tol=F64, what="the plain float64 model")
    for checkpointed in ([0, 1, 2], [1]):
        got = target.run(probe_checkpoint_model, fields=fields, seed=1222, batch=2, length=16,
                         checkpointed=checkpointed)
        assert_close(got["loss"], plain["loss"], IDENTICAL, f"blocks {checkpointed} checkpointed: the loss")
        assert_close(got["grads"], plain["grads"], IDENTICAL, f"blocks {checkpointed} checkpointed: every "
                     "parameter's gradient, in parameters() order", mistakes=(
                         Mistake("the block's parameters got no gradient: backward must run the recomputed "
                                 "output's backward(grad), which accumulates into the parameters' .grad",
                                 lambda got, want: any(g is None for g in got)),))


@pytest.mark.concept("checkpoint")
def test_checkpointed_model_keeps_a_layer_input(target, check):
    # Every block checkpointed keeps only its input, B·T·C: the activations fall to what
    # activation_bytes(..., checkpointed=True) predicts, plus the same left-out terms as the plain model has outside
    # the blocks (the final norm's statistic, the int64 indices).
    fields = dict(TINY, layers=3)
    got = target.run(probe_measured, fields=fields, seed=1223, batch=2, length=16, float64=True, checkpointed=True)
    judge_activations(got, fields, 2, 16, "all 3 blocks checkpointed, float64", itemsize=8, checkpointed=True)
    plain = target.run(probe_measured, fields=fields, seed=1223, batch=2, length=16, float64=True)
    saved = plain["predicted_activations"] - got["predicted_activations"]
    assert_close(saved, 3 * 8 * (13_824 - 512), EXACT, "bytes saved by checkpointing every block of TINY with "
                 "3 layers, float64: 3 layers · (13,824 − 512) elements · 8 (see test_activations_worked_out_by_hand)")
    check(probe_measured, fields=fields, seed=1223, batch=2, length=16, float64=True, checkpointed=True, tol=F64,
          what="checkpointed float64 model, measured")


def probe_checkpoint_decoding(m, fields: dict, seed: int) -> dict:
    """Logits of a model with Checkpointed blocks fed through a growing cache, and of the plain model's full pass."""
    model = model_of(m, fields, seed, np.float64).eval()
    ids = np.random.default_rng(seed).integers(0, fields["vocab_size"], (1, 6))
    full = model(ids)[0].data
    model.blocks = [m.Checkpointed(block) for block in model.blocks]
    cache = GrowingCache()
    pieces = [model(ids[:, :4], cache=cache)[0].data, model(ids[:, 4:], cache=cache)[0].data]
    return {"full": full, "cached": np.concatenate(pieces, axis=1)}


@pytest.mark.concept("checkpoint")
def test_checkpointed_blocks_decode_through_a_cache(check):
    got = check(probe_checkpoint_decoding, fields=TINY, seed=1260, tol=F64, what="decoding with Checkpointed blocks")
    assert_close(got["cached"], got["full"], Tol(1e-12, 1e-12, "float64; only the order of BLAS sums differs"),
                 "Checkpointed blocks with a key/value cache vs the plain model's one pass")
