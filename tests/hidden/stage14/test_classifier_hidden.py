"""Stage 14 (adapting a pretrained model), hidden suite: the classifier on other configs, lengths, classes and modes
than the visible one. Like the visible suites, every test compares with the reference AND checks a hand value or an
invariant of your own output."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, assert_close, assert_true
from tests.stage14.helpers import (GRADIENTS, LEARNED, TINY, UNPADDED, padded_ids, probe_classifier,
                                   probe_classifier_gradients, probe_last_token_refusal, probe_last_token_states,
                                   probe_padding, probe_set_trainable, probe_set_trainable_adapters,
                                   softmax_cross_entropy)

RAGGED = [3, 9, 1, 9, 6]  # two full rows (no padding at all), a single token, T = 9


@pytest.mark.concept("last-token")
def test_last_token_states_full_rows_and_repeats(check):
    # every row full (lengths = T = 3) takes the last slot; one row repeated keeps each row's own vector
    hidden = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    upstream = np.array([[1.0, -1.0], [2.0, 0.5]])
    got = check(probe_last_token_states, hidden=hidden, lengths=[3, 3], upstream=upstream, tol=EXACT,
                what="lengths equal to T")
    assert_close(got["out"], hidden[:, -1], EXACT, "full rows: the last slot is the last real token")
    want = np.zeros_like(hidden)
    want[:, -1] = upstream
    assert_close(got["grad"], want, EXACT, "the gradient, on the last slot of each row only")
    got = check(probe_last_token_states, hidden=hidden, lengths=[1, 2], upstream=upstream, tol=EXACT,
                what="lengths 1 and 2 of T = 3")
    assert_close(got["out"], np.array([hidden[0, 0], hidden[1, 1]]), EXACT, "positions 0 and 1")
    check(probe_last_token_refusal, shape=[3, 5, 2], lengths=[2, -1, 3], tol=EXACT, what="a negative length")
    check(probe_last_token_refusal, shape=[1, 5, 2], lengths=[6], tol=EXACT, what="a length of T + 1 in one row")


@pytest.mark.concept("classifier-head")
@pytest.mark.parametrize("name,fields", [("learned positions, layer norm, GELU, 2 kv heads", LEARNED),
                                         ("3 layers, width 24, 3 heads", dict(TINY, layers=3, width=24, heads=3))])
def test_classifier_logits_on_other_configs(check, name, fields):
    ids = padded_ids(1490, RAGGED, fields["vocab_size"])
    labels = [2, 0, 1, 1, 0]
    got = check(probe_classifier, fields=fields, seed=1490, ids=ids, lengths=RAGGED, labels=labels, tol=F64,
                what=f"SequenceClassifier on {name}")
    pooled = got["features"][np.arange(5), np.array(RAGGED) - 1]
    want = pooled @ got["weight"] + got["bias"]
    assert_close(got["logits"], want, F64, f"{name}: logits vs the head on features[b, lengths[b] - 1]")
    assert_close(got["loss"], softmax_cross_entropy(want, np.array(labels))[0], F64, f"{name}: the loss")


@pytest.mark.concept("padding")
def test_padding_on_learned_positions(check):
    # learned positions are looked up per slot: the real tokens keep rows 0 .. length - 1 whatever follows them
    got = check(probe_padding, fields=LEARNED, seed=1491, lengths=RAGGED, fills=[3, -1], tol=UNPADDED,
                what="learned positions, two paddings")
    assert_close(got["padded"][1], got["padded"][0], EXACT, "logits under a random padding vs padding with id 3")
    for b, n in enumerate(RAGGED):
        assert_close(got["padded"][0][b], got["alone"][b], UNPADDED, f"row {b} padded vs its {n} tokens alone")


@pytest.mark.concept("classifier-gradient")
def test_classifier_gradients_on_learned_positions(check):
    ids = padded_ids(1492, RAGGED, LEARNED["vocab_size"])
    labels = [0, 0, 2, 1, 2]
    got = check(probe_classifier_gradients, fields=LEARNED, seed=1492, ids=ids, lengths=RAGGED, labels=labels,
                tol=GRADIENTS, what="the classifier's backward, learned positions")
    for name, grad, numeric in zip(("head weight", "head bias", "last block's attention norm"), got["grads"],
                                   got["numeric"]):
        assert_close(grad, numeric, GRADIENTS, f"d loss / d {name} vs central differences")
    _, dlogits = softmax_cross_entropy(got["logits"], np.array(labels))
    assert_close(got["grads"][0], got["pooled"].T @ dlogits, F64, "d loss / d head weight vs hᵀ (p - y) / B")


# LEARNED: width 16, 2 blocks of LayerNorm (weight and bias), attention q 16x16, k and v 16x8 (2 kv heads of 4),
# o 16x16, a GELU MLP 16 -> 64 -> 16 with biases; 3 classes.
HEAD = 16 * 3 + 3
BLOCK = 2 * 32 + (256 + 128 + 128 + 256) + (16 * 64 + 64 + 64 * 16 + 16)  # 2960
LORA = 2 * ((16 + 16) + (16 + 8) + (16 + 8) + (16 + 16))  # rank 1 on q, k, v, o of both blocks: r (in + out) each


@pytest.mark.concept("freeze")
@pytest.mark.parametrize("mode,blocks,targets,count", [("last-blocks", 2, ["query"], HEAD + 2 * BLOCK + 32),
                                                       ("lora", 1, ["query", "key", "value", "output"], HEAD + LORA)])
def test_set_trainable_other_modes(check, mode, blocks, targets, count):
    ids = padded_ids(1493, RAGGED, LEARNED["vocab_size"])
    got = check(probe_set_trainable, fields=LEARNED, seed=1493, mode=mode, blocks=blocks, rank=1, targets=targets,
                ids=ids, lengths=RAGGED, labels=[1, 2, 0, 0, 1], tol=EXACT, what=f"set_trainable({mode!r}), LEARNED")
    assert_close(got["count"], count, EXACT, f"{mode}: the trainable count (worked out by hand)")
    assert_close(got["with_grad"], sorted(got["names"]), EXACT, f"{mode}: the Tensors a backward reaches")
    assert_close(got["requires_grad"], sorted(got["names"]), EXACT, f"{mode}: the Tensors left trainable")
    assert_true(not any("embedding" in name for name in got["names"]),
                f"{mode}: the embeddings must stay frozen, got trainable {got['names']}")


@pytest.mark.concept("freeze")
def test_set_trainable_passes_rank_alpha_and_rng_to_apply_lora(check):
    # apply_lora walks the blocks in order and draws each A from the rng it is given: the same rng, rank and alpha
    # give the reference's adapters; scale = alpha / rank = 6 / 3
    got = check(probe_set_trainable_adapters, fields=TINY, seed=1494, rank=3, alpha=6.0, targets=["key", "down"],
                tol=F64, what="set_trainable('lora', rank=3, alpha=6.0, targets=('key', 'down'))")
    assert_close(sorted(got), ["0.down", "0.key", "1.down", "1.key"], EXACT, "the adapted layers")
    assert_close([got[name]["scale"] for name in sorted(got)], [2.0] * 4, EXACT, "each adapter's scale")
