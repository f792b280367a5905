"""Stage 12 (where the time and memory go), visible suite: the accounting, predicted and measured.

Each formula is compared with the reference's on the same config (exact integers) AND with something that does not
trust the reference: a count worked out by hand in the comments, or the measurement on your own model (stages 03-09)
with your own FlopCounter and saved_bytes: parameters, gradients, AdamW state and matmul FLOPs must equal the
prediction exactly; the activations must exceed it by no more than the terms the formula leaves out (their bytes are
derived in tests/stage12/helpers.py, activation_allowance, and docs/12-systems.md, section 3).
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, sibling
from tests.stage12.helpers import (ACTIVATION_MISTAKES, TINY, judge_activations, keeping, probe_formulas,
                                   probe_measured, probe_saved_bytes)

VARIANTS = {  # every option the formulas branch on
    "default (rms, swiglu, rotary, tied)": {},
    "layer norm, gelu, learned positions, untied head": {"norm": "layer", "feed_forward": "gelu",
                                                         "position": "learned", "tie_embeddings": False},
    "grouped-query, kv_heads = 2": {"kv_heads": 2},
}


# ---------------------------------------------------------------- parameters


@pytest.mark.concept("parameters")
def test_parameter_count_worked_out_by_hand(check):
    # TINY: V = 13, C = 16, L = 2, H = 4 (Dh = 4), swiglu F = 8 · ceil(16 / 3) = 48, rms norms, rotary, tied.
    # A block: q and output 2 · 16·16 = 512; k and v 2 · 16·16 = 512; swiglu 3 · 16·48 = 2304; norms 2 · 16 = 32.
    # 3360 per block; the model: 13·16 = 208 (token table) + 2 · 3360 + 16 (final norm) = 6944.
    got = check(probe_formulas, fields=TINY, batch=2, length=16, tol=EXACT, what="formulas for TINY")
    assert_close(got["parameters"], 6944, EXACT, "parameter_count(TINY), worked out by hand in the test's comment",
                 mistakes=(Mistake("the head was counted although it is tied (it IS the token table)",
                                   lambda got, want: got == want + 208),
                           Mistake("each norm counted a bias: RMSNorm has only a weight",
                                   lambda got, want: got == want + 5 * 16)))


@pytest.mark.concept("parameters")
def test_parameter_count_equals_your_model(target, check):
    for name, changes in VARIANTS.items():
        fields = dict(TINY, **changes)
        check(probe_formulas, fields=fields, batch=2, length=16, tol=EXACT, what=f"formulas, {name}")
        got = target.run(probe_measured, fields=fields, seed=1201, batch=2, length=8)
        assert_close(got["predicted_memory"]["parameters"] // 4, got["model_parameters"], EXACT,
                     f"{name}: parameter_count(config) vs your GPT(config).num_parameters()")


# ---------------------------------------------------------------- FLOPs


@pytest.mark.concept("flops")
def test_step_flops_worked_out_by_hand(check):
    # TINY, B = 2, T = 16. Weights that multiply: per block 2·256 + 2·256 + 3·16·48 = 3328, two blocks 6656, and the
    # tied head 16·13 = 208: M = 6864. Forward: 2·M·B·T = 2·6864·32 = 439,296, attention 4·L·B·T²·C =
    # 4·2·2·256·16 = 65,536: 504,832. Backward: twice, 1,009,664.
    got = check(probe_formulas, fields=TINY, batch=2, length=16, tol=EXACT, what="formulas for TINY")
    assert_close(got["flops"], {"forward": 504_832, "backward": 1_009_664}, EXACT,
                 "step_flops(TINY, batch=2, length=16), worked out by hand in the test's comment", mistakes=(
                     Mistake("the norm weights were counted as multiplying weights (6N of stage 09 counts them; a "
                             "matmul count does not)",
                             lambda got, want: got["forward"] == want["forward"] + 2 * 32 * 80),
                     Mistake("attention's q kᵀ and P v are missing (4·L·B·T²·C)",
                             lambda got, want: got["forward"] == want["forward"] - 65_536),
                     Mistake("the causal mask was taken to halve attention: the dense products are computed anyway",
                             lambda got, want: got["forward"] == want["forward"] - 32_768)))
    default = check(probe_formulas, fields=TINY, batch=2, length=None, tol=EXACT, what="formulas, length omitted")
    assert_close(default, got, EXACT, "length=None means the config's context (16 for TINY)")


def probe_matmul_flops(m, pairs: list) -> list:
    return [m.matmul_flops(tuple(a), tuple(b)) for a, b in pairs]


@pytest.mark.concept("flop-counter")
def test_matmul_flops_of_broadcast_products(check):
    pairs = [[(3, 4), (4, 5)],  # 2·3·4·5 = 120
             [(2, 3, 4), (4, 5)],  # two (3, 4) @ (4, 5): 240
             [(5, 1, 3, 4), (2, 4, 6)],  # batch broadcasts to (5, 2): 10 · 2·3·4·6 = 1440
             [(1, 7), (7, 1)]]  # a dot product: 14
    got = check(probe_matmul_flops, pairs=pairs, tol=EXACT, what="matmul_flops")
    assert_close(got, [120, 240, 1440, 14], EXACT, "matmul_flops, by hand", mistakes=(
        Mistake("a multiply-add was counted as one FLOP: a product costs 2·n·k·m",
                lambda got, want: got[0] == want[0] // 2),
        Mistake("only a's batch axes were counted: broadcast both (np.broadcast_shapes)",
                lambda got, want: got[2] == 720)))


@pytest.mark.concept("flop-counter")
def test_flop_counter_measures_what_step_flops_predicts(target, check):
    for name, changes in VARIANTS.items():
        fields = dict(TINY, **changes)
        for length in (16, 5):  # the full context, and shorter sequences
            got = target.run(probe_measured, fields=fields, seed=1202, batch=3, length=length)
            assert_close(got["flops"], got["predicted_flops"], EXACT,
                         f"{name}, B=3, T={length}: FlopCounter on your model vs your step_flops", mistakes=(
                             Mistake("the counter sees no attention: wrap attention.scaled_dot_product_attention (the "
                                     "module attribute MultiHeadAttention calls), not a name imported elsewhere",
                                     lambda got, want: got["forward"] < want["forward"]),
                             Mistake("backward counts once per product instead of twice (both inputs' gradients)",
                                     lambda got, want: got["backward"] == want["backward"] // 2)))
    check(probe_measured, fields=TINY, seed=1203, batch=2, length=16, tol=EXACT, what="measured on TINY")


def probe_counter_rules(m) -> dict:
    """One (2, 3) @ (3, 4) product inside the counter, its backward after the `with`, a product after the `with`,
    and an exception inside a second counter."""
    tensor = sibling(m, "tensor")
    a = tensor.Tensor(np.ones((2, 3)), requires_grad=True, dtype=np.float64)
    b = tensor.Tensor(np.ones((3, 4)), requires_grad=True, dtype=np.float64)
    original = tensor.Tensor.__matmul__
    with m.FlopCounter() as counter:
        out = a @ b
    inside = {"forward": counter.forward, "backward": counter.backward}
    out.backward(np.ones((2, 4)))  # after the with: still counted
    (a @ b).sum()  # not counted: the counter is off
    after = {"forward": counter.forward, "backward": counter.backward}
    try:
        with m.FlopCounter():
            raise KeyError("boom")
    except KeyError:
        pass
    return {"inside": inside, "after": after, "restored": tensor.Tensor.__matmul__ is original,
            "gradient": a.grad}


@pytest.mark.concept("flop-counter")
def test_flop_counter_counts_backward_later_and_restores_the_originals(check):
    got = check(probe_counter_rules, tol=EXACT, what="FlopCounter on one product")
    assert_close(got["inside"], {"forward": 48, "backward": 0}, EXACT, "(2, 3) @ (3, 4) inside the counter: "
                 "2·2·3·4 = 48 forward, nothing backward yet")
    assert_close(got["after"], {"forward": 48, "backward": 96}, EXACT, "after backward (run after the `with`): "
                 "2 · 48 backward; a product made after the `with` is not counted")
    assert_true(got["restored"] is True, "Tensor.__matmul__ must be the original again after the counter exits, "
                "also when an exception leaves the `with` (restore in __exit__)")
    assert_close(got["gradient"], np.full((2, 3), 4.0), EXACT, "the wrapped backward must still return the gradients")


# ---------------------------------------------------------------- activations


@pytest.mark.concept("saved-bytes")
def test_saved_bytes_of_graphs_built_by_hand(check):
    shapes = [[3, 4], [5, 2], [7]]
    # float64, 8 bytes an element. leaf (3, 4): a parameter, never counted. first keeps `kept` (5, 2): 80 bytes.
    # second keeps a VIEW of `kept` (the same buffer: counted once) and the leaf's array (a parameter): still 80.
    # third keeps `second` (its data, (3, 4): 96), a tuple holding `first` (its data, 96) and a (7,) array (56):
    # 80 + 96 + 96 + 56 = 328.
    got = check(probe_saved_bytes, shapes=shapes, tol=EXACT, what="saved_bytes of hand-built graphs")
    assert_close(got, {"leaf": 0, "first": 80, "second": 80, "third": 328}, EXACT,
                 "saved_bytes, worked out by hand in the test's comment", mistakes=(
                     Mistake("a view was counted as a buffer of its own: follow .base to the owning array",
                             lambda got, want: got["second"] > want["second"] and got["second"] != 176),
                     Mistake("the leaf's (parameter's) array was counted", lambda got, want: got["second"] == 176),
                     Mistake("tuples (or Tensors inside them) in a closure were not looked into",
                             lambda got, want: got["third"] == want["third"] - 152)))


@pytest.mark.concept("activations")
def test_activations_predicted_and_measured(target, check):
    for name, changes in VARIANTS.items():
        fields = dict(TINY, **changes)
        want = check(probe_formulas, fields=fields, batch=2, length=16, tol=EXACT, what=f"formulas, {name}")
        got = target.run(probe_measured, fields=fields, seed=1204, batch=2, length=16)
        assert_close(got["predicted_activations"], want["activations"], EXACT, f"{name}: activation_bytes",
                     ACTIVATION_MISTAKES)
        judge_activations(got, fields, 2, 16, f"{name}, B=2, T=16")


@pytest.mark.concept("activations")
def test_activations_worked_out_by_hand(check):
    # TINY, B = 2, T = 16, float32. Per layer: 6·B·T·C = 3072; keys and values 2·B·T·16 = 1024; P: B·H·T² = 2048;
    # swiglu 5·B·T·48 = 7680: 13,824 elements. Two layers 27,648, then the final norm 2·B·T·C = 1024 and
    # cross-entropy 2·B·T·V = 832: 29,504 elements, 118,016 bytes. Checkpointed: a layer keeps B·T·C = 512:
    # 2·512 + 1024 + 832 = 2880 elements, 11,520 bytes.
    got = check(probe_formulas, fields=TINY, batch=2, length=16, tol=EXACT, what="formulas for TINY")
    assert_close([got["activations"], got["checkpointed"]], [118_016, 11_520], EXACT,
                 "activation_bytes(TINY, 2, 16) and with checkpointed=True, worked out by hand", ACTIVATION_MISTAKES)
    # dropout 0.1: a (B, T, C) mask after each sublayer and after the embeddings, 2·2 + 1 = 5 masks of 512: 128,256
    got = check(probe_formulas, fields=dict(TINY, dropout=0.1), batch=2, length=16, tol=EXACT, what="with dropout")
    assert_close(got["activations"], 128_256, EXACT, "activation_bytes with dropout 0.1: five (B, T, C) masks more",
                 mistakes=(Mistake("the embeddings' mask is missing (2·L masks in the blocks, one after the "
                                   "embeddings)", lambda got, want: got == want - 2048),))


@pytest.mark.concept("memory")
def test_training_memory_equals_the_arrays(target, check):
    for name, changes in VARIANTS.items():
        fields = dict(TINY, **changes)
        got = target.run(probe_measured, fields=fields, seed=1205, batch=2, length=16)
        predicted = {key: got["predicted_memory"][key] for key in ("parameters", "gradients", "optimizer")}
        assert_close(got["memory"], predicted, EXACT, f"{name}: the bytes of your model's parameters, gradients and "
                     "AdamW moments vs training_memory", mistakes=(
                         Mistake("AdamW keeps TWO moments per parameter (exp_avg and exp_avg_sq)",
                                 lambda got, want: got["optimizer"] == 2 * want["optimizer"]),))
        assert_close(got["predicted_memory"]["activations"], got["predicted_activations"], EXACT,
                     f"{name}: training_memory's activations are activation_bytes")
    check(probe_formulas, fields=TINY, batch=3, length=10, itemsize=8, tol=EXACT, what="formulas in float64")


def probe_deep_chain(m, length: int) -> dict:
    """A chain of `length` nodes, each keeping a fresh (4,) float64 array and the previous node's Tensor (whose data
    is a (2,) array): every buffer once."""
    tensor = sibling(m, "tensor")
    node = tensor.Tensor(np.zeros(2), requires_grad=True, dtype=np.float64)
    for _ in range(length):
        node = tensor.op(node.data + 1.0, (node,), keeping(np.ones(4), node))
    return {"saved": m.saved_bytes(node)}


@pytest.mark.concept("saved-bytes")
def test_saved_bytes_of_a_deep_chain(check):
    # 3000 nodes, each keeping a (4,) array (32 bytes) and the previous node (16 bytes; the first previous is the
    # leaf, not counted): 3000 · 32 + 2999 · 16 = 143,984. A recursive walk overflows Python's stack long before.
    got = check(probe_deep_chain, length=3000, tol=EXACT, what="saved_bytes of a 3000-node chain")
    assert_close(got["saved"], 3000 * 32 + 2999 * 16, EXACT, "saved_bytes of a 3000-node chain, by hand")
