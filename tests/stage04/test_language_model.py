"""Stage 04 (a neural language model), visible suite: the batcher, the MLP language model, the loss estimate, and
the payoff: a context-8 MLP beats the stage-01 bigram on held-out text whose next character depends on more than the
previous one. Conventions: exercises/nn.py and docs/04-nn.md, "Batches" and "The MLP language model".
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, Mistake, Tol, assert_close, assert_true, seeded, sibling


# ---------------------------------------------------------------- get_batch


def probe_get_batch(m, tokens: np.ndarray, batch_size: int, context: int, seed: int, calls: int) -> list:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(calls):
        x, y = m.get_batch(tokens, batch_size, context, rng)
        batches.append({"x": x, "y": y, "dtypes": [str(x.dtype), str(y.dtype)]})
    return batches


@pytest.mark.concept("get-batch")
def test_get_batch_windows_are_in_range_and_y_is_x_shifted(check):
    tokens = np.arange(50) + 1000  # each token names its own position: token 1000 + i sits at index i
    got = check(probe_get_batch, tokens=tokens, batch_size=16, context=7, seed=440, calls=1, tol=EXACT,
                what="get_batch(arange, 16, 7)")[0]
    x, y = got["x"], got["y"]
    assert_close([list(x.shape), list(y.shape), got["dtypes"]], [[16, 7], [16, 7], ["int64", "int64"]], EXACT,
                 "shapes (B, T) and dtypes of x and y")
    assert_close(y, x + 1, EXACT, "y = x shifted by one token (y[b, t] follows x[b, t])", mistakes=(
        Mistake("y is x itself: the targets must be the NEXT tokens",
                lambda got, want: np.array_equal(got, want - 1)),))
    assert_close(np.diff(x, axis=1), np.ones((16, 6), dtype=np.int64), EXACT, "each x row is consecutive tokens")
    assert_true(x.min() >= 1000 and y.max() <= 1049, f"every window lies inside the tokens, got positions "
                                                     f"{x.min() - 1000}..{y.max() - 1000} of 0..49")
    starts = np.random.default_rng(440).integers(0, 50 - 7, size=16)  # the stated draw: one call, high = N - T
    assert_close(x[:, 0] - 1000, starts, EXACT, "window starts vs rng.integers(0, len(tokens) - context, size=B)")


@pytest.mark.concept("get-batch")
def test_get_batch_follows_the_seed(target, reference):
    tokens = seeded(441).integers(0, 30, size=400)
    for who in (target, reference):
        first = who.run(probe_get_batch, tokens=tokens, batch_size=4, context=9, seed=442, calls=3)
        again = who.run(probe_get_batch, tokens=tokens, batch_size=4, context=9, seed=442, calls=3)
        other = who.run(probe_get_batch, tokens=tokens, batch_size=4, context=9, seed=443, calls=1)
        assert_close(again, first, EXACT, f"{who.target}: the same seed gives the same batches")
        assert_true(not np.array_equal(first[0]["x"], first[1]["x"]),
                    f"{who.target}: successive calls with one rng must give different batches")
        assert_true(not np.array_equal(first[0]["x"], other[0]["x"]), f"{who.target}: another seed, another batch")
    assert_close(target.run(probe_get_batch, tokens=tokens, batch_size=4, context=9, seed=442, calls=3), first, EXACT,
                 "batches vs the reference's (one rng.integers call per batch)")


# ---------------------------------------------------------------- the MLP language model


def probe_mlp(m, vocab_size: int, context: int, embed_dim: int, hidden: int, seed: int, x: np.ndarray,
              y: np.ndarray) -> dict:
    model = m.MLPLanguageModel(vocab_size, context, embed_dim, hidden, rng=np.random.default_rng(seed))
    logits = model(x)
    return {"names": [name for name, _ in model.named_parameters()],
            "shapes": [list(p.shape) for p in model.parameters()], "state": model.state_dict(),
            "logits": logits.data, "loss": model.loss(x, y).item()}


def _manual_logits(state: dict, x: np.ndarray, order: str = "C") -> np.ndarray:
    """The MLP in plain NumPy from its state dict: embed, concatenate (row-major), tanh hidden, logits."""
    embedded = state["embedding.weight"][x]  # (B, T, E)
    if order == "transposed":  # the wrong concatenation: all first features, then all second features, ...
        embedded = embedded.transpose(0, 2, 1)
    features = embedded.reshape(len(x), -1)  # (B, T * E)
    hidden = np.tanh(features @ state["hidden.weight"] + state["hidden.bias"])  # (B, H)
    return hidden @ state["output.weight"] + state["output.bias"]  # (B, V)


@pytest.mark.concept("mlp-lm")
def test_mlp_language_model_structure_forward_and_initial_loss(check):
    V, T, E, H = 27, 5, 6, 40
    x, y = seeded(450).integers(0, V, size=(2, 64, T))
    got = check(probe_mlp, vocab_size=V, context=T, embed_dim=E, hidden=H, seed=451, x=x, y=y, tol=F32,
                what="MLP language model")
    assert_close(got["names"], ["embedding.weight", "hidden.weight", "hidden.bias", "output.weight", "output.bias"],
                 EXACT, "parameter names")
    assert_close(got["shapes"], [[V, E], [T * E, H], [H], [H, V], [V]], EXACT, "parameter shapes")
    wrong = _manual_logits(got["state"], x, "transposed")
    assert_close(got["logits"], _manual_logits(got["state"], x), F32, "logits vs NumPy from the state dict", mistakes=(
        Mistake("the embeddings were concatenated feature-major: reshape (B, T, E) to (B, T*E) directly",
                lambda got, want: np.allclose(got, wrong, rtol=1e-4, atol=1e-6)),))
    # output weights ~ N(0, 0.01²) make the logits nearly 0, so the first prediction is nearly uniform
    assert_close(got["loss"], math.log(V), Tol(0.0, 0.03, "logits within ~0.05 of 0 move the loss by < 0.03 nats"),
                 "initial loss ≈ ln(V)", mistakes=(
                     Mistake("the output layer was not initialised small (std 0.01): confident random guesses",
                             lambda got, want: got > want + 0.1),))


def probe_estimate_loss(m, tokens: np.ndarray, seed: int) -> dict:
    model = m.MLPLanguageModel(12, 4, 3, 16, rng=np.random.default_rng(seed))
    seen = []
    loss_method = model.loss

    def spy(x, y):  # records how loss was called: under no_grad, in eval mode
        out = loss_method(x, y)
        seen.append([bool(out.requires_grad), bool(model.training)])
        return out

    model.loss = spy
    estimate = m.estimate_loss(model, tokens, 8, 4, batches=3, seed=5)
    after_training = model.training
    again = m.estimate_loss(model, tokens, 8, 4, batches=3, seed=5)
    model.eval()
    m.estimate_loss(model, tokens, 8, 4, batches=1, seed=5)
    after_eval = model.training
    model.loss = loss_method
    rng = np.random.default_rng(5)  # the stated batches: get_batch with default_rng(seed)
    by_hand = [model.loss(*m.get_batch(tokens, 8, 4, rng)).item() for _ in range(3)]
    return {"estimate": estimate, "again": again, "by hand": float(np.mean(by_hand)), "calls": seen[:3],
            "mode after (was training)": after_training, "mode after (was eval)": after_eval,
            "grads": [p.grad is None for p in model.parameters()]}


@pytest.mark.concept("estimate-loss")
def test_estimate_loss_is_a_seeded_mean_in_eval_mode_without_gradients(check):
    tokens = seeded(452).integers(0, 12, size=300)
    got = check(probe_estimate_loss, tokens=tokens, seed=453, tol=F32, what="estimate_loss")
    assert_close(got["estimate"], got["by hand"], F32, "estimate vs the mean of model.loss over the 3 seeded batches")
    assert_close(got["again"], got["estimate"], EXACT, "the same seed gives the same estimate")
    assert_close(got["calls"], [[False, False]] * 3, EXACT, "[loss.requires_grad, model.training] during each of the "
                 "3 batches: no graph (no_grad) and eval mode")
    assert_close([got["mode after (was training)"], got["mode after (was eval)"]], [True, False], EXACT,
                 "the model's training mode after estimate_loss (put back as it was)")
    assert_true(all(got["grads"]), "estimate_loss must not leave gradients on the parameters")


# ---------------------------------------------------------------- the payoff: beating the n-gram


def lagged_text(seed: int, length: int, alphabet: str, lag: int, keep: float) -> str:
    """Random text whose character at i copies the one at i - lag with probability `keep`, else is uniform.

    The previous character says almost nothing about the next (the pair at distance 1 is nearly independent), so a
    bigram cannot do much better than ln(V); a model that sees `lag` characters back can reach the entropy of the
    copy rule, -keep' ln keep' - (V - 1) q ln q with keep' = keep + q and q = (1 - keep) / V.
    """
    rng = np.random.default_rng(seed)
    chars = list(rng.choice(list(alphabet), size=lag))
    copies, fresh = rng.random(length) < keep, rng.choice(list(alphabet), size=length)
    for i in range(lag, length):
        chars.append(chars[i - lag] if copies[i] else fresh[i])
    return "".join(chars)


def probe_beats_ngram(m, text: str, context: int, steps: int, lr: float, seed: int) -> dict:
    """Train the MLP briefly with plain SGD and score it and a bigram on the same held-out tail, same tokenizer."""
    ngram = sibling(m, "ngram")
    tokenizer = ngram.CharTokenizer(text)
    train, val = ngram.train_val_split(tokenizer.encode(text), 0.2)
    bigram = ngram.NGramModel(2, tokenizer.vocab_size, alpha=0.1).fit(train)

    rng = np.random.default_rng(seed)
    model = m.MLPLanguageModel(tokenizer.vocab_size, context, 8, 32, rng=rng)
    for _ in range(steps):
        loss = model.loss(*m.get_batch(train, 32, context, rng))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad  # plain SGD (optimizers are stage 05)

    windows = np.lib.stride_tricks.sliding_window_view(val, context + 1)  # every held-out window, exactly once
    with sibling(m, "tensor").no_grad():
        mlp_loss = model.loss(windows[:, :-1], windows[:, 1:]).item()
    return {"bigram": bigram.cross_entropy(val), "mlp": mlp_loss, "vocab": tokenizer.vocab_size,
            "estimate": m.estimate_loss(model, val, 64, context, batches=8, seed=0)}


@pytest.mark.concept("beats-ngram")
def test_a_context_8_mlp_beats_the_bigram_on_held_out_text(target):
    text = lagged_text(454, 6000, "abcdefghij", lag=3, keep=0.9)
    got = target.run(probe_beats_ngram, text=text, context=8, steps=300, lr=0.5, seed=455)
    q = 0.1 / 10
    floor = -(0.9 + q) * math.log(0.9 + q) - 9 * q * math.log(q)  # 0.50 nats: the copy rule's own entropy
    assert_true(got["bigram"] > math.log(10) - 0.15, f"the bigram should be near ln 10 = 2.30 on this text (the "
                                                     f"previous character says little), got {got['bigram']:.3f}")
    # the held-out mean over ~1,200 windows has a standard error of ~0.04 nats: the lower bound allows 5 of them
    assert_true(floor - 0.2 < got["mlp"] < floor + 0.5,
                f"after 300 SGD steps the context-8 MLP should score within 0.5 nats of the copy rule's entropy "
                f"{floor:.3f} on the held-out tail, got {got['mlp']:.3f} (bigram: {got['bigram']:.3f})")
    assert_true(got["mlp"] < got["bigram"] - 1.0, f"the MLP must beat the bigram by more than 1 nat on held-out "
                                                  f"text: MLP {got['mlp']:.3f}, bigram {got['bigram']:.3f}")
    assert_close(got["estimate"], got["mlp"], Tol(0.0, 0.25, "512 sampled windows estimate the mean over ~1,200 "
                                                             "to within 0.06 nats (one standard error)"),
                 "estimate_loss on the held-out tail vs the exact mean over every window")
