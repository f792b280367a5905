"""Stage 14 (adapting a pretrained model), visible suite: a classifier on the GPT.

The vector a classifier reads is the hidden state at the LAST REAL token of a right-padded row, position length - 1
(a hand case, gradient included); what the padding holds must not change a prediction, and a padded row must score
as the same tokens alone (causal attention). The logits are the head on that vector, the loss stage 04's
cross-entropy, and its gradient reaches the head as hᵀ (softmax - one_hot) / B (float64 central differences and the
hand formula). set_trainable freezes the GPT for each mode: the counts are worked out by hand, and a backward must
reach exactly the Tensors left trainable.
Conventions: exercises/finetune.py and docs/14-finetune.md, section 2.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, seeded
from tests.stage14.helpers import (GRADIENTS, TINY, UNPADDED, padded_ids, probe_classifier,
                                   probe_classifier_gradients, probe_last_token_refusal, probe_last_token_states,
                                   probe_padding, probe_set_trainable, probe_set_trainable_refusal,
                                   softmax_cross_entropy)

LENGTHS = [5, 2, 7, 1]  # ragged rows, right-padded to T = 7; one row of a single token, one with no padding


@pytest.mark.concept("last-token")
def test_last_token_states_by_hand(check):
    # hidden[b, t] = [100 b + 10 t, 100 b + 10 t + 1]: the value names its row and position. Lengths 3, 1, 4 take
    # positions 2, 0, 3: [20, 21], [100, 101], [230, 231]. The gradient lands on those three positions only.
    hidden = np.arange(3)[:, None, None] * 100.0 + np.arange(4)[None, :, None] * 10 + np.arange(2)  # (3, 4, 2)
    upstream = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    got = check(probe_last_token_states, hidden=hidden, lengths=[3, 1, 4], upstream=upstream, tol=EXACT,
                what="last_token_states, lengths 3, 1, 4")
    assert_close(got["out"], np.array([[20.0, 21.0], [100.0, 101.0], [230.0, 231.0]]), EXACT,
                 "the vectors taken (row b, position lengths[b] - 1)",
                 mistakes=(Mistake("the last slot (hidden[:, -1]) is padding for a short row: take position "
                                   "lengths[b] - 1", lambda got, want: got[0, 0] == 30.0),
                           Mistake("position lengths[b] is the first padding slot; the last real token is at "
                                   "lengths[b] - 1", lambda got, want: got[1, 0] == 110.0)))
    want = np.zeros((3, 4, 2))
    want[0, 2], want[1, 0], want[2, 3] = upstream
    assert_close(got["grad"], want, EXACT, "the gradient of sum(out · upstream) w.r.t. hidden")


@pytest.mark.concept("last-token")
def test_last_token_states_refuses_lengths_outside_the_row(check):
    # a length of 0 would read position -1 (the last padding slot) and one of T + 1 a slot that is not there
    for lengths in ([0, 2], [3, 4], [2]):
        check(probe_last_token_refusal, shape=[2, 3, 4], lengths=lengths, tol=EXACT, what=f"lengths {lengths}, T = 3")
    got = check(probe_last_token_refusal, shape=[2, 3, 4], lengths=[1, 3], tol=EXACT, what="lengths 1 and T = 3")
    assert_true("returned" in got, "last_token_states with lengths 1 and 3 (T = 3) must return")


@pytest.mark.concept("classifier-head")
def test_classifier_logits_are_the_head_on_the_last_real_token(check):
    ids = padded_ids(1450, LENGTHS, TINY["vocab_size"])
    labels = [0, 2, 1, 2]
    got = check(probe_classifier, fields=TINY, seed=1450, ids=ids, lengths=LENGTHS, labels=labels, tol=F64,
                what="SequenceClassifier on a tiny GPT")
    lengths = np.array(LENGTHS)
    pooled = got["features"][np.arange(4), lengths - 1]  # (B, C), test-side
    want = pooled @ got["weight"] + got["bias"]
    assert_close(got["logits"], want, F64, "logits vs head(features[b, lengths[b] - 1]) computed here",
                 mistakes=(Mistake("the head must read the LAST REAL token, position lengths[b] - 1, not the last "
                                   "slot or a mean over positions", lambda g, w: True),))
    assert_close(got["loss"], softmax_cross_entropy(want, np.array(labels))[0], F64,
                 "loss vs the mean cross-entropy of the labels under those logits")
    # the head: Linear(C, classes, std=0.02) on the classifier's rng, seeded 1459 here: ONE draw (C, classes)
    assert_close(got["fresh_weight"], seeded(1459).standard_normal((16, 4)) * 0.02, F64,
                 "a fresh head's weight = rng.standard_normal((C, classes)) * 0.02",
                 mistakes=(Mistake("std=0.02: the default 1/sqrt(C) starts with confident, random logits",
                                   lambda g, w: np.abs(g).max() > 0.2),))
    assert_close([got["fresh_bias"], got["fresh_dtype"]], [np.zeros(4), "float64"], EXACT,
                 "a fresh head's bias (zeros) and dtype (the GPT's)")


@pytest.mark.concept("padding")
def test_padding_does_not_change_the_prediction(check):
    # fills: id 0, id 10, random ids. The real tokens never attend to a later slot, so the logits are the same
    got = check(probe_padding, fields=TINY, seed=1451, lengths=LENGTHS, fills=[0, 10, -1], tol=UNPADDED,
                what="the classifier under three paddings")
    for k in (1, 2):
        assert_close(got["padded"][k], got["padded"][0], EXACT, f"logits with padding fill #{k} vs fill 0",
                     mistakes=(Mistake("the padding reached the prediction: read position lengths[b] - 1, which "
                                       "causal attention keeps from every later slot", lambda g, w: True),))
    for b, n in enumerate(LENGTHS):
        assert_close(got["padded"][0][b], got["alone"][b], UNPADDED, f"row {b} padded vs its {n} tokens alone")


@pytest.mark.concept("classifier-gradient")
def test_classifier_loss_gradients(check):
    ids = padded_ids(1452, LENGTHS, TINY["vocab_size"])
    labels = [1, 0, 2, 2]
    got = check(probe_classifier_gradients, fields=TINY, seed=1452, ids=ids, lengths=LENGTHS, labels=labels,
                tol=GRADIENTS, what="the classifier's loss backward")
    for name, grad, numeric in zip(("head weight", "head bias", "last block's attention norm"), got["grads"],
                                   got["numeric"]):
        assert_close(grad, numeric, GRADIENTS, f"d loss / d {name} vs central differences")
    _, dlogits = softmax_cross_entropy(got["logits"], np.array(labels))  # (B, K): (softmax - one_hot) / B
    assert_close(got["grads"][0], got["pooled"].T @ dlogits, F64, "d loss / d head weight vs hᵀ (p - y) / B",
                 mistakes=(Mistake("the loss is the MEAN over the batch: divide by B", lambda g, w: True),))
    assert_close(got["grads"][1], dlogits.sum(axis=0), F64, "d loss / d head bias vs sum_b (p - y) / B")


# TINY: width 16, 2 blocks, SwiGLU hidden 8 · ceil(16 / 3) = 48, no biases in the GPT; 3 classes.
HEAD = 16 * 3 + 3  # the head's weight and bias: 51
BLOCK = 2 * 16 + 4 * 16 * 16 + 3 * 16 * 48  # two norms, q k v o, gate up down: 3360
LORA = 2 * 2 * (16 * 2 + 2 * 16)  # rank 2 on query and value of both blocks: A (16, 2) and B (2, 16) each: 256
MODES = {"head": (["head.weight", "head.bias"], HEAD),
         "last-blocks": ([f"gpt.blocks.1.{p}" for p in ("attention_norm.weight", "attention.query.weight",
                                                        "attention.key.weight", "attention.value.weight",
                                                        "attention.output.weight", "feed_forward_norm.weight",
                                                        "feed_forward.gate.weight", "feed_forward.up.weight",
                                                        "feed_forward.down.weight")]
                         + ["gpt.final_norm.weight", "head.weight", "head.bias"], BLOCK + 16 + HEAD),
         "lora": ([f"gpt.blocks.{i}.attention.{p}.{ab}" for i in (0, 1) for p in ("query", "value") for ab in "AB"]
                  + ["head.weight", "head.bias"], LORA + HEAD)}


@pytest.mark.concept("freeze")
@pytest.mark.parametrize("mode", sorted(MODES))
def test_set_trainable_freezes_by_mode(check, mode):
    ids = padded_ids(1453, LENGTHS, TINY["vocab_size"])
    got = check(probe_set_trainable, fields=TINY, seed=1453, mode=mode, blocks=1, rank=2, targets=["query", "value"],
                ids=ids, lengths=LENGTHS, labels=[0, 1, 2, 0], tol=EXACT, what=f"set_trainable(mode={mode!r})")
    names, count = MODES[mode]
    assert_close(got["names"], names, EXACT, f"{mode}: the classifier's parameters (what the optimizer updates)",
                 mistakes=(Mistake("last-blocks trains the LAST `blocks` blocks and the final norm after them",
                                   lambda g, w: any(".blocks.0." in n for n in g) or "gpt.final_norm.weight" not in g),
                           Mistake("the head must stay trainable in every mode", lambda g, w: "head.weight" not in g)))
    assert_close(got["count"], count, EXACT, f"{mode}: the count set_trainable returns (worked out by hand)")
    assert_close(got["with_grad"], sorted(names), EXACT,
                 f"{mode}: the Tensors a backward of the loss reaches: exactly the trainable ones")


@pytest.mark.concept("freeze")
def test_set_trainable_refuses_unknown_modes_and_block_counts(check):
    check(probe_set_trainable_refusal, mode="all", blocks=1, tol=EXACT, what="mode 'all'")
    for blocks in (0, 3):
        check(probe_set_trainable_refusal, mode="last-blocks", blocks=blocks, tol=EXACT, what=f"{blocks} blocks of 2")
    got = check(probe_set_trainable_refusal, mode="last-blocks", blocks=2, tol=EXACT, what="2 blocks of 2")
    assert_close(got.get("returned"), HEAD + 2 * BLOCK + 16, EXACT, "set_trainable('last-blocks', blocks=2) count")
