"""Stage 10 (training), visible suite: the conventions of the docstrings that the other tests' inputs do not expose
(a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible mistake
gives a different answer; tests/mutants/stage10.toml lists those mistakes.
"""
from __future__ import annotations

import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, raised, seeded, sibling
from tests.stage10.helpers import QUICK, build, config, probe_resume, run, verse

SMALL_GPT = {"vocab_size": 11, "context": 8, "layers": 2, "heads": 2, "width": 8}


def probe_bpe_merges(m, text: str, val_fraction: float, vocab_size: int) -> dict:
    """prepare_tokens with BPE, and the target's own bpe.train on the training part alone."""
    bpe, corpus = sibling(m, "bpe"), sibling(m, "corpus")
    with tempfile.TemporaryDirectory() as directory:
        m.prepare_tokens(text, directory, tokenizer="bpe", bpe_vocab_size=vocab_size, val_fraction=val_fraction)
        saved = [list(pair) for pair in corpus.load_tokenizer(directory).merges]
    train_text = m.split_text(text, val_fraction)[0]
    return {"saved": saved, "trained on the training part": [list(pair) for pair in bpe.train(train_text, vocab_size)]}


@pytest.mark.concept("tokens")
def test_bpe_is_trained_on_the_training_part_only(check):
    # The validation part (the last 30%) repeats "zzq": merges learned from the whole text would include z+z.
    text = "the cat sat on the mat. " * 14 + "zzq zzq zzq " * 12
    leak = Mistake("BPE was trained on the whole text: train it on the training part only, or its merges have seen "
                   "the validation text", lambda got, want: got["saved"] != got["trained on the training part"])
    got = check(probe_bpe_merges, text=text, val_fraction=0.3, vocab_size=262, tol=EXACT,
                what="prepare_tokens(tokenizer='bpe') merges", mistakes=(leak,))
    assert_close(got["saved"], got["trained on the training part"], EXACT,
                 "the saved tokenizer's merges vs bpe.train(train part, 262)",
                 mistakes=(Mistake(leak.description, lambda got, want: True),))


def probe_non_finite_step(m, fields: dict, seed: int, x: list, y: list) -> dict:
    optim = sibling(m, "optim")
    model = build(m, fields, seed)
    model.token_embedding.weight.data[3] = 1e200  # squared inside the norms: inf, and NaN gradients
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    optimizer = optim.AdamW(model.parameters(), lr=1e-2)
    outcome = raised(m.train_step, model, optimizer, [(np.array(x), np.array(y))], lr=1e-2, clip=1.0)
    unchanged = [name for name, p in model.named_parameters() if np.array_equal(p.data, before[name], equal_nan=True)]
    return {"outcome": outcome.get("raised", "returned"), "unchanged": len(unchanged) == len(before)}


@pytest.mark.concept("clipping")
def test_a_non_finite_gradient_norm_raises_before_stepping(check):
    rng = seeded(1001)
    x, y = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
    x[0, 0] = 3  # the poisoned embedding row is read
    stepped = Mistake("the step was taken with a NaN or infinite gradient norm: check math.isfinite(grad_norm) after "
                      "clipping and raise before optimizer.step()", lambda got, want: got["outcome"] == "returned")
    with np.errstate(all="ignore"):
        got = check(probe_non_finite_step, fields=SMALL_GPT, seed=1002, x=x.tolist(), y=y.tolist(), tol=EXACT,
                    what="train_step with an overflowing weight", mistakes=(stepped,))
    assert_close(got, {"outcome": "FloatingPointError", "unchanged": True}, EXACT,
                 "train_step when the gradient norm is not finite: FloatingPointError, and no parameter changed",
                 mistakes=(stepped,))


@pytest.mark.concept("resume")
def test_a_resumed_run_with_dropout_repeats_the_uninterrupted_one(target):
    # The model's Dropout holds rngs["model"]: load_checkpoint must restore that very generator in place.
    got = target.run(probe_resume, text=verse(1003, 40), overrides={**QUICK, "steps": 8, "dropout": 0.2}, stop=4)
    assert_close(got["first"] + got["second"], got["full"], EXACT,
                 "training losses with dropout 0.2, stopped at 4 and resumed, against an uninterrupted run", mistakes=(
                     Mistake("the steps after the resume differ: restore each generator in place "
                             "(rng.bit_generator.state = ...), since the model's Dropout holds rngs['model'] itself",
                             lambda got, want: got[:4] == want[:4]),))


def probe_loop_edges(m, text: str, overrides: dict) -> dict:
    """A run's validation steps, and its first loss against one computed here from the generators the docstring
    names: the model from default_rng([seed, 0]), the first batch from default_rng([seed, 1])."""
    gpt, nn, corpus = sibling(m, "gpt"), sibling(m, "nn"), sibling(m, "corpus")
    train_config = config(m, overrides)
    with tempfile.TemporaryDirectory() as directory:
        summary = run(m, directory, text, overrides)
        vocab_size = corpus.load_tokenizer(directory).vocab_size
        tokens = m.read_tokens(f"{directory}/train.bin")
        model = gpt.GPT(train_config.gpt_config(vocab_size), rng=np.random.default_rng([train_config.seed, 0]))
        x, y = nn.get_batch(tokens, train_config.batch_size, train_config.context,
                            np.random.default_rng([train_config.seed, 1]))
        first = model.loss(x, y).item()
    return {"validated at": [step for step, _ in summary["val_losses"]], "first loss": summary["losses"][0],
            "first loss by hand": first}


@pytest.mark.concept("loop")
def test_the_final_model_is_validated_and_the_generators_are_seeded_as_stated(target):
    # steps 10 with eval_every 4: validation at 0, 4, 8 and at the end, 10 (not a multiple of 4).
    got = target.run(probe_loop_edges, text=verse(1004, 40), overrides={**QUICK, "steps": 10})
    assert_close(got["validated at"], [0, 4, 8, 10], EXACT, "the steps validated (eval_every 4, and steps = 10)",
                 mistakes=(Mistake("the final model was not validated: validate when step % eval_every == 0 OR "
                                   "step == steps", lambda got, want: got == [0, 4, 8]),))
    assert_close(got["first loss"], got["first loss by hand"], EXACT,
                 "the first step's loss vs model.loss on get_batch(train, B, T, default_rng([seed, 1])) of a GPT "
                 "built with default_rng([seed, 0])", mistakes=(
                     Mistake("the generators are not the documented ones: rngs = {'model': default_rng([seed, 0]), "
                             "'batches': default_rng([seed, 1])}", lambda got, want: True),))
