"""Stage 14 (adapting a pretrained model), visible suite: the chat template, the loss mask and the grown vocabulary.

The template's ids and mask are checked token by token on hand-made chats (which target positions count, exactly),
one chat per row is checked against the rule written out here, and extend_vocabulary must keep every old row, draw
the new ones from N(0, 0.02²) in the documented order, and round-trip through GPT.save / GPT.load.
Conventions: exercises/finetune.py and docs/14-finetune.md, section 3.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, seeded
from tests.stage14.helpers import (IGNORE, MERGED, RELOADED, TEXT, TINY, masked_targets, probe_chat, probe_decode,
                                   probe_extend, probe_extend_refusal, probe_sft_batch, probe_sft_batch_refusal,
                                   probe_sft_targets)

U, A, E = 20, 21, 22  # the specials after TEXT's 20 characters: <|user|>, <|assistant|>, <|end|>


def ids_of(text: str) -> list:
    return [sorted(set(TEXT)).index(ch) for ch in text]


@pytest.mark.concept("chat-template")
def test_template_by_hand(check):
    # "ab" -> "9": [U] a b [A] 9 [E]; the mask is True on "9" and on the end token only.
    got = check(probe_chat, prompt="ab", response="9", tol=EXACT, what="encode_chat('ab', '9')")
    assert_close(got["ids"], np.array([U, *ids_of("ab"), A, *ids_of("9"), E]), EXACT, "ids of [U] ab [A] 9 [E]",
                 mistakes=(Mistake("the specials come right after the base vocabulary: user = V, assistant = V + 1, "
                                   "end = V + 2", lambda g, w: True),))
    assert_close(got["mask"], np.array([False, False, False, False, True, True]), EXACT, "mask of [U] ab [A] 9 [E]",
                 mistakes=(Mistake("the end token is part of the response: the model must learn to stop",
                                   lambda g, w: not g[-1]),
                           Mistake("the assistant token belongs to the prompt (it is given, not written)",
                                   lambda g, w: g[3])))
    assert_close(got["prompt"], np.array([U, *ids_of("ab"), A]), EXACT, "encode_prompt('ab')")
    assert_close([got["specials"], got["vocab_size"], got["dtypes"]], [[U, A, E], 23, ["int64", "bool", "int64"]],
                 EXACT, "user, assistant, end ids; vocab_size; dtypes of ids, mask, prompt")
    assert_close([got["decoded"], got["decoded_prompt"]], ["<|user|>ab<|assistant|>9<|end|>", "<|user|>ab<|assistant|>"],
                 EXACT, "decode of the chat and of the prompt")


@pytest.mark.concept("chat-template")
def test_template_empty_response_and_decode(check):
    got = check(probe_chat, prompt="h 12: ", response="", tol=EXACT, what="encode_chat with an empty response")
    assert_close(got["mask"], np.array([False] * 8 + [True]), EXACT, "an empty response: only the end token counts")
    # ids 3 and 0 of the sorted vocabulary " 0123456789:abcdefgh" are "2" and " "
    got = check(probe_decode, ids=[3, E, E, 0, U], tol=EXACT, what="decode of base ids between specials")
    assert_close(got, "2<|end|><|end|> <|user|>", EXACT, "decode of [2, E, E, ' ', U]")


@pytest.mark.concept("loss-mask")
def test_targets_count_exactly_the_response(check):
    # [U] a b [A] 9 8 [E]: inputs are the first 6 ids; a target counts where the NEXT token is a response token:
    # position 3 ([A]) predicts 9, position 4 predicts 8, position 5 predicts [E]; positions 0..2 are prompt.
    ids = [U, *ids_of("ab"), A, *ids_of("98"), E]
    mask = [False, False, False, False, True, True, True]
    got = check(probe_sft_targets, ids=ids, mask=mask, tol=EXACT, what="sft_targets of [U] ab [A] 98 [E]")
    assert_close(got["targets"], np.array([IGNORE, IGNORE, IGNORE, ids[4], ids[5], E]), EXACT,
                 "targets: -100 except at positions 3, 4, 5",
                 mistakes=(Mistake("the mask must be shifted with the targets: target t is ids[t + 1], scored when "
                                   "mask[t + 1]", lambda g, w: g[2] != IGNORE or g[5] == IGNORE),))
    assert_close(got["inputs"], np.array(ids[:-1]), EXACT, "inputs: every id but the last")
    # an irregular mask (a multi-turn chat would have one): the rule, position by position
    rng = seeded(1420)
    for _ in range(3):
        ids, mask = rng.integers(0, 23, 9).tolist(), (rng.random(9) < 0.5).tolist()
        got = check(probe_sft_targets, ids=ids, mask=mask, tol=EXACT, what=f"sft_targets, mask {mask}")
        assert_close(got["targets"], np.array(masked_targets(ids, mask)), EXACT, "targets by the rule")


@pytest.mark.concept("sft-batch")
def test_one_chat_per_row(check):
    pairs = [([1, 2, 3, 4], [False, False, True, True]), ([5, 6], [False, True]), ([7, 8, 9, 1, 2, 3], [False] * 3 +
                                                                                   [True] * 3)]
    got = check(probe_sft_batch, pairs=pairs, context=8, tol=EXACT, what="sft_batch of three chats")
    want_inputs = np.array([[1, 2, 3, 0, 0], [5, 0, 0, 0, 0], [7, 8, 9, 1, 2]])
    want_targets = np.array([[IGNORE, 3, 4, IGNORE, IGNORE], [6, IGNORE, IGNORE, IGNORE, IGNORE],
                             [IGNORE, IGNORE, 1, 2, 3]])
    assert_close([got["inputs"], got["targets"], got["dtypes"]], [want_inputs, want_targets, ["int64", "int64"]],
                 EXACT, "inputs and targets (padding: input 0, target -100)",
                 mistakes=(Mistake("padding must never be scored: its targets are -100", lambda g, w: True),))
    check(probe_sft_batch_refusal, length=10, context=8, tol=EXACT, what="10 tokens need 9 positions > context 8")
    got = check(probe_sft_batch_refusal, length=9, context=8, tol=EXACT, what="9 tokens need 8 positions: fits")
    assert_true("returned" in got, "sft_batch of a 9-token chat with context 8 must run")


@pytest.mark.concept("extend-vocabulary")
def test_extend_vocabulary_keeps_the_old_rows(check):
    ids = seeded(1421).integers(0, TINY["vocab_size"], (2, 6))
    for name, fields in (("tied", TINY), ("untied head", dict(TINY, tie_embeddings=False))):
        got = check(probe_extend, fields=fields, seed=1421, new_vocab=14, rng_seed=1422, ids=ids, tol=F64,
                    what=f"extend_vocabulary(11 -> 14), {name}")
        rng = seeded(1422)
        rows = rng.standard_normal((3, 16)) * 0.02  # the embedding's rows first, then the head's columns
        assert_close(got["embedding"], np.concatenate([got["old_embedding"], rows]), F64,
                     f"{name}: the grown embedding (old rows, then N(0, 0.02²) rows of one call)",
                     mistakes=(Mistake("new rows go BELOW the old ones (ids 11, 12, 13), and the old rows stay",
                                       lambda g, w: True),))
        if got["head"] is not None:
            assert_close(got["head"][:, 11:], rng.standard_normal((16, 3)) * 0.02, F64,
                         f"{name}: the head's new columns (a second call, after the rows)")
        assert_close([got["vocab_size"], got["loaded_vocab"], got["same_model"], got["dtype"]],
                     [14, 14, True, "float64"], EXACT, f"{name}: config.vocab_size, after GPT.load, returned model, "
                     "dtype")
        assert_close(got["after"][..., :11], got["before"], MERGED, f"{name}: logits of the old ids are unchanged")
        assert_close(got["reloaded"], got["grown"], RELOADED, f"{name}: logits after GPT.save / GPT.load")


@pytest.mark.concept("extend-vocabulary")
def test_extend_vocabulary_refuses_to_shrink(check):
    check(probe_extend_refusal, new_vocab=10, tol=EXACT, what="extend_vocabulary(11 -> 10)")
    got = check(probe_extend_refusal, new_vocab=11, tol=EXACT, what="extend_vocabulary(11 -> 11) is a no-op")
    assert_true("returned" in got, "extend_vocabulary to the same size must run")
