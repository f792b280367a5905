"""Stage 09 (the GPT), visible suite: the config, the model's structure and initialisation, the forward pass and its
loss, gradients by central differences, tied embeddings, causality, counting parameters and FLOPs, saving and loading.

Every test runs a probe on your module and, where values can be compared, on the reference, and also checks something
that does not trust the reference: the same forward written out from your model's own submodules, a hand count,
central differences of the reference's forward with the same weights (float64, GRADCHECK), or an invariant such as
causality. A call that must raise is judged by the exact builtin exception and what its message names, and next to
it a call that must work.
Before values are compared, parameters are overwritten by name (sorted) with seeded float64 values, so the order in
which your constructor draws its initial weights does not matter; the parameter NAMES do (exercises/gpt.py).
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, Tol, assert_close, assert_true, raised, randomise_parameters, seeded
from tests.stage06.helpers import GrowingCache
from tests.stage09.helpers import (COMPOSED, FLOAT32, SAME_MODEL, TIED_MISTAKES, TINY, build, judge_causality,
                                   judge_gradients, names_a_mismatch, numpy_cross_entropy, parameter_count,
                                   probe_causality, probe_counts, probe_gradients, probe_initial_loss,
                                   probe_load_other_weights, probe_structure, probe_tied_vs_untied)


# ---------------------------------------------------------------- structure and initialisation


def block_names(i: int, names: list) -> list:
    return [f"blocks.{i}.{name}" for name in names]


@pytest.mark.concept("structure")
def test_tied_rotary_model_has_the_named_parameters(check):
    fields = dict(TINY)
    got = check(probe_structure, fields=fields, seed=901, tol=EXACT, what="GPT(vocab 7, width 8, 2 layers, 2 heads)")
    per_block = ["attention_norm.weight", "attention.query.weight", "attention.key.weight", "attention.value.weight",
                 "attention.output.weight", "feed_forward_norm.weight", "feed_forward.gate.weight",
                 "feed_forward.up.weight", "feed_forward.down.weight"]
    want = ["token_embedding.weight", *block_names(0, per_block), *block_names(1, per_block), "final_norm.weight"]
    assert_close(got["names"], want, EXACT, "parameter names, in order (tied: no head.weight)")
    assert_close(got["shapes"]["token_embedding.weight"], [7, 8], EXACT, "token_embedding.weight shape (V, C)")
    assert_close(got["shapes"]["blocks.1.feed_forward.gate.weight"], [8, 24], EXACT, "SwiGLU gate (C, 8·ceil(C/3))")
    assert_close(got["dtypes"], ["float32"], EXACT, "parameter dtypes")
    assert_close([got["head"], got["position_embedding"]], [True, True], EXACT,
                 "[head is None, position_embedding is None] for a tied rotary model")
    assert_close(got["rotary"], [True, True], EXACT, "each block's attention is rotary")
    assert_close(got["rope_positions"], [6, 6], EXACT, "rotary tables sized max_positions = config.context",
                 mistakes=(Mistake("Block's default max_positions (1024) instead of config.context",
                                   lambda got, want: got == [1024, 1024]),))


@pytest.mark.concept("structure")
def test_untied_learned_model_has_a_head_and_a_position_table(check):
    fields = {**TINY, "layers": 1, "kv_heads": 1, "norm": "layer", "feed_forward": "gelu", "position": "learned",
              "tie_embeddings": False}
    got = check(probe_structure, fields=fields, seed=902, tol=EXACT, what="untied, learned, LayerNorm, GELU, GQA")
    per_block = ["attention_norm.weight", "attention_norm.bias", "attention.query.weight", "attention.key.weight",
                 "attention.value.weight", "attention.output.weight", "feed_forward_norm.weight",
                 "feed_forward_norm.bias", "feed_forward.up.weight", "feed_forward.up.bias",
                 "feed_forward.down.weight", "feed_forward.down.bias"]
    want = ["token_embedding.weight", "position_embedding.weight", *block_names(0, per_block), "final_norm.weight",
            "final_norm.bias", "head.weight"]
    assert_close(got["names"], want, EXACT, "parameter names, in order")
    assert_close({k: got["shapes"][k] for k in ("position_embedding.weight", "head.weight",
                                                "blocks.0.attention.key.weight")},
                 {"position_embedding.weight": [6, 8], "head.weight": [8, 7], "blocks.0.attention.key.weight": [8, 4]},
                 EXACT, "shapes: positions (context, C), head (C, V) as Linear, key (C, kv_heads · Dh)")
    assert_close([got["head"], got["position_embedding"], got["rotary"]], [False, False, [False]], EXACT,
                 "[head is None, position_embedding is None, rotary blocks] for an untied learned model")


def probe_initial_statistics(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    parameters = dict(model.named_parameters())
    stds = {name: float(parameters[name].data.std()) for name in
            ("token_embedding.weight", "position_embedding.weight", "head.weight", "blocks.0.attention.query.weight",
             "blocks.1.attention.output.weight", "blocks.1.feed_forward.down.weight")}
    logits, loss = model(ids, targets)
    return {"std": stds, "loss": loss.item(), "logits_std": float(logits.data.std())}


@pytest.mark.concept("init")
def test_weights_start_from_n_0_002_with_scaled_residual_projections(target):
    fields = {"vocab_size": 300, "context": 32, "layers": 2, "heads": 4, "width": 64, "position": "learned",
              "tie_embeddings": False}
    rng = seeded(903)
    ids, targets = rng.integers(0, 300, (4, 32)), rng.integers(0, 300, (4, 32))
    got = target.run(probe_initial_statistics, fields=fields, seed=904, ids=ids, targets=targets)
    statistical = Tol(0.06, 0.0, "the std of >= 2048 draws is within 6% of the true std (about 4 standard errors)")
    want = {"token_embedding.weight": 0.02, "position_embedding.weight": 0.02, "head.weight": 0.02,
            "blocks.0.attention.query.weight": 0.02, "blocks.1.attention.output.weight": 0.02 / math.sqrt(4),
            "blocks.1.feed_forward.down.weight": 0.02 / math.sqrt(4)}
    assert_close(got["std"], want, statistical, "std of the initial weights", mistakes=(
        Mistake("Embedding's default std 1 (or Linear's 1/sqrt(fan_in)): pass std=0.02",
                lambda got, want: got["token_embedding.weight"] > 0.1 or got["head.weight"] > 0.05),
        Mistake("the blocks are built without layers=config.layers, so the residual projections use 0.02/sqrt(2)",
                lambda got, want: abs(got["blocks.1.attention.output.weight"] - 0.02 / math.sqrt(2)) < 0.0015)))
    assert_true(abs(got["loss"] - math.log(300)) < 0.1,
                f"initial loss on random targets should be within 0.1 of ln(300) = {math.log(300):.4f} (near-uniform "
                f"predictions from small weights), got {got['loss']:.4f}; logits std {got['logits_std']:.4f}")


@pytest.mark.concept("init")
def test_initial_loss_of_the_default_tied_model_is_near_ln_vocab(target):
    fields = {"vocab_size": 64, "context": 16, "layers": 2, "heads": 4, "width": 32}
    rng = seeded(905)
    ids, targets = rng.integers(0, 64, (8, 16)), rng.integers(0, 64, (8, 16))
    got = target.run(probe_initial_loss, fields=fields, seed=906, ids=ids, targets=targets)
    assert_close(got["dtype"], "float32", EXACT, "logits dtype of a freshly built model")
    assert_true(abs(got["loss"] - math.log(64)) < 0.1,
                f"initial loss of a tied model (vocab 64, width 32) on random targets should be within 0.1 of "
                f"ln(64) = {math.log(64):.4f}, got {got['loss']:.4f} (logits std {got['logits_std']:.4f}); tied "
                "logits are x̂ · token_embedding.weightᵀ with a 0.02-std embedding (docs/09-gpt.md, section 3)")


# ---------------------------------------------------------------- the forward pass and the loss


def probe_forward(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    """The model's logits and loss, and the same computed from its own submodules step by step."""
    model = build(m, fields, seed)
    logits, loss = model(ids, targets)
    logits_only, no_loss = model(ids)
    features = model.features(ids)
    x = model.token_embedding.weight.data[ids]  # (B, T, C)
    if model.position_embedding is not None:
        x = x + model.position_embedding.weight.data[:ids.shape[1]]
    x = m.Tensor(x, dtype=np.float64)
    for block in model.blocks:
        x = block(x)
    before_norm = x.data
    x = model.final_norm(x).data
    head = model.head.weight.data if model.head is not None else model.token_embedding.weight.data.T  # (C, V)
    return {"logits": logits.data, "loss": loss.item(), "loss_method": model.loss(ids, targets).item(),
            "logits_without_targets": logits_only.data, "no_targets": no_loss, "composed": x @ head,
            "features": features.data, "features_composed": x, "features_through_head": features.data @ head,
            "without_final_norm": before_norm @ head, "dtype": str(logits.dtype), "targets": targets}


def judge_forward(got: dict, what: str) -> None:
    assert_close(got["logits"], got["composed"], COMPOSED, f"{what}: logits vs the same forward composed from your "
                 "own submodules (docs/09-gpt.md, section 1)", mistakes=(
                     Mistake("the final norm is missing", lambda g, w: np.allclose(g, got["without_final_norm"])),))
    assert_close(got["logits_without_targets"], got["logits"], EXACT, "logits of forward(ids) vs forward(ids, targets)")
    assert_close(got["features"], got["features_composed"], COMPOSED, f"{what}: features(ids) vs final_norm(blocks("
                 "embeddings)) composed from your own submodules: the hidden states before the head")
    assert_close(got["features_through_head"], got["logits"], COMPOSED, "features(ids) @ head vs forward's logits: "
                 "forward is the head on features")
    assert_close(got["no_targets"], None, EXACT, "the loss of forward(ids) without targets")
    assert_close(got["dtype"], "float64", EXACT, "logits dtype of a float64 model (no op may change the dtype)")


FORWARD_MISTAKES = (  # signatures read from the target's own output, so they also explain a mismatch with the reference
    Mistake("the final norm is missing (logits = blocks' output @ head)",
            lambda got, want: np.allclose(got["logits"], got["without_final_norm"])),
    Mistake("your logits differ from final_norm(blocks(embeddings)) @ head composed from your own submodules: check "
            "the order of section 1 and the position rows 0..T-1",
            lambda got, want: not np.allclose(got["logits"], got["composed"], rtol=1e-8, atol=1e-10)),
    Mistake("the loss is not cross_entropy over every position of your own logits",
            lambda got, want: not np.isclose(got["loss"], numpy_cross_entropy(got["logits"], got["targets"]))))


@pytest.mark.concept("forward")
def test_forward_is_embedding_blocks_final_norm_then_tied_head(check):
    rng = seeded(907)
    ids, targets = rng.integers(0, 7, (3, 5)), rng.integers(0, 7, (3, 5))
    got = check(probe_forward, fields=TINY, seed=908, ids=ids, targets=targets, tol=SAME_MODEL,
                what="tied rotary GPT forward", mistakes=FORWARD_MISTAKES)
    judge_forward(got, "final_norm(blocks(token_embedding(ids))) @ token_embedding.weightᵀ")


@pytest.mark.concept("forward")
def test_forward_with_learned_positions_and_an_untied_head(check):
    rng = seeded(909)
    ids, targets = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    fields = {**TINY, "position": "learned", "tie_embeddings": False, "norm": "layer"}
    got = check(probe_forward, fields=fields, seed=910, ids=ids, targets=targets, tol=SAME_MODEL,
                what="untied learned-position GPT forward", mistakes=FORWARD_MISTAKES)
    judge_forward(got, "head(final_norm(blocks(token_embedding(ids) + position_embedding(0..T-1))))")


@pytest.mark.concept("loss")
def test_loss_is_the_mean_cross_entropy_over_every_position(check):
    rng = seeded(911)
    ids, targets = rng.integers(0, 7, (4, 6)), rng.integers(0, 7, (4, 6))
    got = check(probe_forward, fields=TINY, seed=912, ids=ids, targets=targets, tol=SAME_MODEL, what="GPT loss",
                mistakes=(Mistake("only the last position is scored", lambda got, want: np.isclose(
                    got["loss"], numpy_cross_entropy(got["logits"][:, -1], targets[:, -1]))), *FORWARD_MISTAKES))
    last_only = numpy_cross_entropy(got["logits"][:, -1], targets[:, -1])
    assert_close(got["loss"], numpy_cross_entropy(got["logits"], targets), COMPOSED, "loss vs the mean over all B·T "
                 "positions of -log softmax(logits)[target], in NumPy", mistakes=(
                     Mistake("only the last position is scored", lambda g, w: np.isclose(g, last_only)),))
    assert_close(got["loss_method"], got["loss"], EXACT, "model.loss(ids, targets) vs forward(ids, targets)[1]")


# ---------------------------------------------------------------- gradients


@pytest.mark.concept("gradients")
def test_gradients_of_a_tiny_tied_model_match_central_differences(target, reference):
    rng = seeded(913)
    ids, targets = rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 4))
    inputs = {"fields": TINY, "seed": 914, "ids": ids, "targets": targets, "rows": 7,
              "names": ["token_embedding.weight", "blocks.0.attention.query.weight",
                        "blocks.1.feed_forward.down.weight", "blocks.1.attention_norm.weight", "final_norm.weight"]}
    judge_gradients(target.run(probe_gradients, **inputs), reference.run(probe_gradients, **inputs),
                    "tied rotary GPT (vocab 7, width 8, 2 layers), float64")


@pytest.mark.concept("tied")
def test_tied_embedding_gets_the_lookup_gradient_plus_the_head_gradient(check):
    rng = seeded(915)
    ids, targets = rng.integers(0, 7, (3, 6)), rng.integers(0, 7, (3, 6))
    got = check(probe_tied_vs_untied, fields=TINY, seed=916, ids=ids, targets=targets, tol=SAME_MODEL,
                what="tied vs untied twin", mistakes=TIED_MISTAKES)
    tied, untied = got["tied"], got["untied"]
    assert_close(tied["logits"], untied["logits"], COMPOSED, "logits of the tied model vs an untied twin whose head "
                 "is the embedding's transpose")
    lookup, head = untied["embedding_grad"], untied["head_grad"]
    assert_close(tied["embedding_grad"], lookup + head, COMPOSED, "tied token_embedding.weight.grad vs (lookup "
                 "gradient + head gradientᵀ) of the untied twin", mistakes=(
                     Mistake("only the lookup's gradient reaches the tied embedding: the head multiplies a copy "
                             "(e.g. Tensor(weight.data.T)) instead of weight.transpose(1, 0)",
                             lambda got, want: np.allclose(got, lookup)),
                     Mistake("only the head's gradient reaches the tied embedding",
                             lambda got, want: np.allclose(got, head))))


# ---------------------------------------------------------------- causality and the context


@pytest.mark.concept("causal")
def test_logits_at_t_do_not_depend_on_later_tokens(check):
    rng = seeded(917)
    ids, replacements = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    replacements = np.where(replacements == ids, (replacements + 1) % 7, replacements)  # every token really changes
    got = check(probe_causality, fields=TINY, seed=918, ids=ids, replacements=replacements, tol=SAME_MODEL,
                what="logits under edits of later tokens")
    judge_causality(got, ids, replacements, "tied rotary GPT")


def probe_context(m, fields: dict, seed: int, ids: np.ndarray) -> dict:
    model = build(m, fields, seed, dtype=None)
    context = model.config.context
    return {"fits": list(model(ids[:, :context])[0].shape),
            "too_long": raised(model, ids[:, :context + 1])}


@pytest.mark.concept("context")
def test_more_tokens_than_the_context_raise_value_error(check):
    ids = seeded(919).integers(0, 7, (2, 9))
    for position in ("rotary", "learned"):
        got = check(probe_context, fields={**TINY, "position": position}, seed=920, ids=ids, tol=EXACT,
                    what=f"{position} positions, context 6: forward of 6 tokens, then of 7")
        assert_close(got["fits"], [2, 6, 7], EXACT, f"{position}: logits shape for T = context = 6")
        assert_close(got["too_long"], {"raised": "ValueError"}, EXACT, f"{position}: forward of 7 tokens with "
                     "context 6 (there are no positions for the 7th)")


def probe_cached_forward(m, fields: dict, seed: int, ids: np.ndarray, chunks: list) -> dict:
    """The model (eval) on ids fed in chunks through a test-side cache, and on all of ids at once; then one token
    more than the context holds."""
    model = build(m, fields, seed).eval()
    cache, pieces, lengths, start = GrowingCache(), [], [], 0
    for size in chunks:
        pieces.append(model(ids[:, start:start + size], cache=cache)[0].data)  # (B, size, V)
        lengths.append(cache.length)
        start += size
    keys = cache.keys[len(cache.keys) - 1].copy()
    return {"cached": np.concatenate(pieces, axis=1), "full": model(ids)[0].data, "lengths": lengths,
            "layers": sorted(cache.keys), "past_context": raised(model, ids[:, :1], cache=cache),
            "length_after": cache.length, "unchanged": bool(np.array_equal(keys, cache.keys[len(cache.keys) - 1]))}


@pytest.mark.concept("forward")
@pytest.mark.parametrize("position", ["rotary", "learned"])
def test_forward_through_a_cache_continues_where_the_cached_tokens_stop(check, position):
    fields = {**TINY, "position": position, "tie_embeddings": position == "rotary"}
    ids = seeded(921).integers(0, 7, (2, 6))
    got = check(probe_cached_forward, fields=fields, seed=922, ids=ids, chunks=[3, 1, 2], tol=COMPOSED,
                what=f"{position} positions: forward with a cache in chunks 3, 1, 2")
    assert_close(got["cached"], got["full"], COMPOSED, f"{position}: logits of chunks 3, 1, 2 through a cache vs one "
                 "forward over all 6 tokens", mistakes=(
                     Mistake("the first chunk matches but later ones do not: with a cache the new tokens sit at "
                             "positions cache.length .. cache.length + T - 1 (learned rows np.arange(length, "
                             "length + T)), and every block needs the cache and its own layer index",
                             lambda got_, want: np.allclose(got_[:, :3], want[:, :3])),))
    assert_close(got["lengths"], [3, 4, 6], EXACT, "cache.length after each call: forward advances the cache by T "
                 "once, after the last block")
    assert_close(got["layers"], [0, 1], EXACT, "the cache layers written: block i uses layer i")
    assert_close(got["past_context"], {"raised": "ValueError"}, EXACT, "one token more with 6 cached and context 6")
    assert_true(got["length_after"] == 6 and got["unchanged"], f"the refused call changed the cache (length "
                f"{got['length_after']}, keys unchanged: {got['unchanged']}): check the context before any block runs")


# ---------------------------------------------------------------- it learns


def probe_overfit(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray, steps: int, lr: float) -> dict:
    """Adam (written here, not stage 05's) on one batch, from the model's own float32 initialisation."""
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    parameters = model.parameters()
    first = [np.zeros_like(p.data) for p in parameters]
    second = [np.zeros_like(p.data) for p in parameters]
    losses = []
    for step in range(1, steps + 1):
        model.zero_grad()
        loss = model(ids, targets)[1]
        loss.backward()
        losses.append(loss.item())
        for p, m1, m2 in zip(parameters, first, second):
            m1 *= 0.9
            m1 += 0.1 * p.grad
            m2 *= 0.999
            m2 += 0.001 * p.grad * p.grad
            p.data -= lr * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
    return {"losses": losses, "final": model(ids, targets)[1].item()}


@pytest.mark.concept("training")
def test_adam_overfits_one_batch_to_near_zero_loss(target):
    rng = seeded(921)
    # distinct tokens in each row, different first tokens: every prefix differs, so every target can be memorised
    # (rotary positions are relative: with "a a" the model could not tell position 1 from position 0)
    ids = np.stack([rng.permutation(11)[:8], rng.permutation(11)[:8]])
    ids[1, 0] = (ids[0, 0] + 1) % 11 if ids[1, 0] == ids[0, 0] else ids[1, 0]
    targets = rng.integers(0, 11, (2, 8))  # random targets: only memorising the batch brings the loss down
    fields = {"vocab_size": 11, "context": 8, "layers": 2, "heads": 2, "width": 32}
    got = target.run(probe_overfit, fields=fields, seed=922, ids=ids, targets=targets, steps=150, lr=1e-2)
    assert_true(abs(got["losses"][0] - math.log(11)) < 0.2,
                f"first loss {got['losses'][0]:.4f} should be near ln(11) = {math.log(11):.4f}")
    assert_true(got["final"] < 0.05,
                f"150 Adam steps (lr 1e-2) on one batch of 16 random targets should memorise it (loss < 0.05); "
                f"losses went {got['losses'][0]:.3f} -> {got['losses'][49]:.3f} -> {got['losses'][99]:.3f} -> "
                f"{got['final']:.4f}")


# ---------------------------------------------------------------- counting


@pytest.mark.concept("count")
def test_num_parameters_of_a_tied_rotary_model_by_hand(check):
    fields = {"vocab_size": 11, "context": 10, "layers": 3, "heads": 3, "width": 12}
    got = check(probe_counts, fields=fields, seed=923, tol=EXACT, what="counts", mistakes=(
        Mistake("the tied embedding is counted twice",
                lambda got, want: got["num_parameters"] == want["num_parameters"] + 11 * 12),))
    # 11·12 embedding + 3 · (2·12 norms + 4·144 attention + 3·12·32 SwiGLU) + 12 final norm
    assert_close(got["num_parameters"], parameter_count(fields), EXACT, "num_parameters(), tied rotary", mistakes=(
        Mistake("the tied embedding is counted twice", lambda got, want: got == want + 11 * 12),))
    assert_close(got["num_parameters"], got["state_size"], EXACT, "num_parameters() vs the sizes in state_dict()")
    assert_close(got["types"], ["int", "int"], EXACT, "types of num_parameters() and flops_per_token()")


@pytest.mark.concept("count")
def test_num_parameters_of_an_untied_learned_gqa_model_by_hand(check):
    fields = {"vocab_size": 13, "context": 9, "layers": 2, "heads": 4, "kv_heads": 2, "width": 16, "norm": "layer",
              "feed_forward": "gelu", "position": "learned", "tie_embeddings": False}
    got = check(probe_counts, fields=fields, seed=924, tol=EXACT, what="counts")
    assert_close(got["num_parameters"], parameter_count(fields), EXACT,
                 "num_parameters(), untied learned LayerNorm GELU with kv_heads=2")


@pytest.mark.concept("flops")
def test_flops_per_token_is_6n_plus_the_attention_term(check):
    for fields, lookups in (({"vocab_size": 11, "context": 10, "layers": 3, "heads": 3, "width": 12}, 0),
                            ({"vocab_size": 13, "context": 9, "layers": 2, "heads": 4, "width": 16,
                              "position": "learned", "tie_embeddings": False}, 9 * 16 + 13 * 16)):
        got = check(probe_counts, fields=fields, seed=925, tol=EXACT, what="counts", mistakes=(
            Mistake("the attention term 12 · layers · width · context is missing",
                    lambda got, want: got["flops_per_token"] == 6 * (got["num_parameters"] - lookups)),
            Mistake("the lookup tables are counted in N (6 FLOPs per weight only for weights that multiply)",
                    lambda got, want: got["flops_per_token"] > want["flops_per_token"] and lookups > 0)))
        N = parameter_count(fields) - lookups  # the position table and an untied embedding are lookups: no matmul
        want = 6 * N + 12 * fields["layers"] * fields["width"] * fields["context"]
        assert_close(got["flops_per_token"], want, EXACT, f"flops_per_token() of {fields}", mistakes=(
            Mistake("the lookup tables are counted as matmul parameters",
                    lambda got, want: got == want + 6 * lookups and lookups > 0),
            Mistake("the attention term 12 · layers · width · context is missing", lambda got, want: got == 6 * N),))


# ---------------------------------------------------------------- saving and loading


def probe_save_load(m, fields: dict, seed: int, ids: np.ndarray) -> dict:
    model = build(m, fields, seed, dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        files = sorted(os.listdir(folder))
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files)
            stored_config = json.loads(str(archive["config"]))
        loaded = m.GPT.load(path)
    return {"files": files, "keys": keys, "stored_config": stored_config, "config": loaded.config.to_dict(),
            "logits": model(ids)[0].data, "loaded_logits": loaded(ids)[0].data,
            "loaded_dtypes": sorted({str(p.dtype) for p in loaded.parameters()})}


@pytest.mark.concept("save-load")
def test_save_then_load_gives_the_same_model(check):
    ids = seeded(926).integers(0, 7, (2, 6))
    fields = {**TINY, "kv_heads": 1}
    got = check(probe_save_load, fields=fields, seed=927, ids=ids, tol=FLOAT32, what="save and load")
    assert_close(got["files"], ["model.npz"], EXACT, "files in the folder after save(folder/model.npz)")
    per_block = ["attention_norm.weight", "attention.query.weight", "attention.key.weight", "attention.value.weight",
                 "attention.output.weight", "feed_forward_norm.weight", "feed_forward.gate.weight",
                 "feed_forward.up.weight", "feed_forward.down.weight"]
    want_keys = sorted(["config", "token_embedding.weight", "final_norm.weight", *block_names(0, per_block),
                        *block_names(1, per_block)])
    assert_close(got["keys"], want_keys, EXACT, "entries of the .npz: every parameter by name, and 'config'")
    full = {"context": 64, "layers": 4, "heads": 4, "kv_heads": None, "width": 128, "norm": "rms",
            "feed_forward": "swiglu", "position": "rotary", "tie_embeddings": True, "dropout": 0.0, **fields}
    assert_close(got["stored_config"], full, EXACT, "the JSON config stored in the file")
    assert_close(got["config"], full, EXACT, "the loaded model's config")
    assert_close(got["loaded_logits"], got["logits"], EXACT, "logits of the loaded model vs the saved one")
    assert_close(got["loaded_dtypes"], ["float32"], EXACT, "dtypes of the loaded parameters")


def probe_load_missing(m, folder_name: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, folder_name, "missing.npz")
        return raised(m.GPT.load, path, mentions=["missing.npz"])


@pytest.mark.concept("load-errors")
def test_loading_a_missing_file_raises_file_not_found(check):
    got = check(probe_load_missing, folder_name="checkpoints", tol=EXACT, what="GPT.load of a missing file")
    assert_close(got, {"raised": "FileNotFoundError", "mentions": ["missing.npz"]}, EXACT,
                 "GPT.load of folder/checkpoints/missing.npz (the message names the path)")


@pytest.mark.concept("load-errors")
def test_weights_of_another_config_raise_value_error_naming_the_key(check):
    fields, other = dict(TINY), {**TINY, "width": 12, "heads": 3}
    got = check(probe_load_other_weights, fields=fields, other=other, seed=928, mentions=[], tol=EXACT,
                what="GPT.load of a file whose weights do not fit its config")
    assert_close(got["result"], {"raised": "ValueError"}, EXACT, "GPT.load of weights of width 12 under a config "
                 "of width 8")
    message = got["result"]["message"]
    wanted = check(probe_structure, fields=fields, seed=928, tol=EXACT, what="the config's shapes")["shapes"]
    assert_true(names_a_mismatch(message, got["shapes"], wanted),
                f"the ValueError should name a key whose shape differs and both shapes (e.g. 'token_embedding.weight' "
                f"(7, 12) vs (7, 8)), got {got['result']}")


def probe_load_edited(m, fields: dict, seed: int, drop: str, extra: str) -> dict:
    """Two edited checkpoints: one without the weight `drop`, one with an extra array named `extra`."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "edited.npz")
        m.GPT(m.GPTConfig(**fields), rng=seeded(seed)).save(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        for label, edited in (("missing", {k: v for k, v in arrays.items() if k != drop}),
                              ("unexpected", {**arrays, extra: np.zeros(3, dtype=np.float32)})):
            with open(path, "wb") as file:
                np.savez(file, **edited)
            results[label] = raised(m.GPT.load, path, mentions=[drop if label == "missing" else extra])
    return results


@pytest.mark.concept("load-errors")
def test_a_missing_or_an_extra_weight_raises_value_error_naming_it(check):
    drop, extra = "blocks.1.attention.value.weight", "blocks.2.attention.value.weight"
    got = check(probe_load_edited, fields=dict(TINY), seed=931, drop=drop, extra=extra, tol=EXACT,
                what="GPT.load of a checkpoint with a weight missing, then one too many")
    for label, key in (("missing", drop), ("unexpected", extra)):
        assert_close(got[label], {"raised": "ValueError", "mentions": [key]}, EXACT, f"GPT.load of a checkpoint "
                     f"with {label} key {key!r} (load_state_dict's check, raised again as a ValueError)")


# ---------------------------------------------------------------- every variant


VARIANTS = [{"norm": norm, "feed_forward": ff, "position": position, "tie_embeddings": tie, "kv_heads": kv}
            for norm, ff, position, tie, kv in [
                ("rms", "swiglu", "rotary", True, None), ("layer", "gelu", "learned", False, None),
                ("rms", "gelu", "learned", True, 2), ("layer", "swiglu", "rotary", False, 2),
                ("rms", "swiglu", "learned", False, 1), ("layer", "gelu", "rotary", True, 1)]]


def probe_variants(m, variants: list, seed: int, ids: np.ndarray, targets: np.ndarray) -> list:
    results = []
    for i, variant in enumerate(variants):
        model = m.GPT(m.GPTConfig(vocab_size=9, context=8, layers=2, heads=4, width=16, **variant),
                      rng=seeded(seed + i))
        randomise_parameters(model, seed + 100 + i, np.float32)
        logits, loss = model(ids, targets)
        loss.backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None or not np.all(np.isfinite(p.grad))]
        results.append({"loss": loss.item(), "shape": list(logits.shape), "dtype": str(logits.dtype),
                        "without_gradient": missing, "num_parameters": model.num_parameters()})
    return results


@pytest.mark.concept("variants")
def test_every_config_variant_runs_with_finite_loss_and_gradients(check):
    rng = seeded(929)
    ids, targets = rng.integers(0, 9, (2, 8)), rng.integers(0, 9, (2, 8))
    got = check(probe_variants, variants=VARIANTS, seed=930, ids=ids, targets=targets, tol=FLOAT32,
                what="norm / feed_forward / position / tying / kv_heads variants")
    for variant, result in zip(VARIANTS, got):
        assert_true(np.isfinite(result["loss"]), f"{variant}: loss {result['loss']} is not finite")
        assert_close(result["shape"], [2, 8, 9], EXACT, f"{variant}: logits shape")
        assert_close(result["dtype"], "float32", EXACT, f"{variant}: logits dtype of a float32 model")
        assert_close(result["without_gradient"], [], EXACT, f"{variant}: parameters without a finite gradient")
        assert_close(result["num_parameters"], parameter_count({"vocab_size": 9, "context": 8, "layers": 2,
                                                                "heads": 4, "width": 16, **variant}),
                     EXACT, f"{variant}: num_parameters()")


def probe_options(m, refused: dict, accepted: dict) -> dict:
    """GPT with an unknown option (what it raised), and with a known one in its place (the model's parameter names)."""
    (name, value), = refused.items()
    unknown = m.GPTConfig(vocab_size=7, width=8, heads=2, layers=1, **refused)
    known = m.GPT(m.GPTConfig(vocab_size=7, width=8, heads=2, layers=1, **accepted), rng=seeded(0))
    return {"refused": raised(m.GPT, unknown, rng=seeded(0), mentions=[[name, value]]),
            "accepted": [parameter for parameter, _ in known.named_parameters()]}


@pytest.mark.concept("variants")
def test_unknown_options_raise_value_error_naming_them(check):
    for refused, accepted in (({"position": "alibi"}, {"position": "learned"}), ({"norm": "batch"}, {"norm": "layer"}),
                              ({"feed_forward": "relu"}, {"feed_forward": "gelu"})):
        got = check(probe_options, refused=refused, accepted=accepted, tol=EXACT,
                    what=f"GPT with {refused} (refused) and with {accepted} (built)")
        (name, value), = refused.items()
        assert_close(got["refused"], {"raised": "ValueError", "mentions": [[name, value]]}, EXACT,
                     f"GPT(GPTConfig(..., {name}={value!r})): an option that is not one of the choices")
