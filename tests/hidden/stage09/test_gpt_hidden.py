"""Stage 09 (the GPT), hidden suite: other configurations, seeds and edge cases than the visible suite.

The same rule holds: each test compares with the reference and also checks something that does not trust it; a call
that must raise is judged by the exact builtin exception (and what its message names), beside a call that must work.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage09.helpers import (COMPOSED, FLOAT32, SAME_MODEL, TIED_MISTAKES, TINY, build, judge_causality,
                                   judge_gradients, names_a_mismatch, numpy_cross_entropy, parameter_count,
                                   probe_causality, probe_counts, probe_gradients, probe_initial_loss,
                                   probe_load_other_weights, probe_structure, probe_tied_vs_untied)

UNTIED = {"vocab_size": 5, "context": 5, "layers": 2, "heads": 2, "kv_heads": 1, "width": 8, "norm": "layer",
          "feed_forward": "gelu", "position": "learned", "tie_embeddings": False}


@pytest.mark.concept("gradients")
def test_gradients_of_an_untied_learned_gqa_model_match_central_differences(target, reference):
    rng = seeded(1901)
    ids, targets = rng.integers(0, 5, (2, 5)), rng.integers(0, 5, (2, 5))
    inputs = {"fields": UNTIED, "seed": 1902, "ids": ids, "targets": targets, "rows": 5,
              "names": ["position_embedding.weight", "head.weight", "final_norm.bias", "token_embedding.weight",
                        "blocks.0.attention.key.weight", "blocks.1.feed_forward.up.bias",
                        "blocks.0.attention_norm.bias"]}
    judge_gradients(target.run(probe_gradients, **inputs), reference.run(probe_gradients, **inputs),
                    "untied learned-position GQA GPT (LayerNorm, GELU), float64")


@pytest.mark.concept("tied")
def test_tied_gradient_with_learned_positions_and_layer_norm(check):
    rng = seeded(1903)
    fields = {**TINY, "position": "learned", "norm": "layer", "feed_forward": "gelu", "kv_heads": 1}
    ids, targets = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    got = check(probe_tied_vs_untied, fields=fields, seed=1904, ids=ids, targets=targets, tol=SAME_MODEL,
                what="tied vs untied twin", mistakes=TIED_MISTAKES)
    lookup, head = got["untied"]["embedding_grad"], got["untied"]["head_grad"]
    assert_close(got["tied"]["logits"], got["untied"]["logits"], COMPOSED, "logits, tied vs untied twin")
    assert_close(got["tied"]["embedding_grad"], lookup + head, COMPOSED, "tied embedding gradient vs lookup + headᵀ",
                 mistakes=(Mistake("only the lookup's gradient reaches the tied embedding (the head used a copy)",
                                   lambda g, w: np.allclose(g, lookup)),))


@pytest.mark.concept("causal")
def test_causality_of_an_untied_learned_gqa_model(check):
    rng = seeded(1905)
    ids, replacements = rng.integers(0, 5, (3, 5)), rng.integers(0, 5, (3, 5))
    replacements = np.where(replacements == ids, (replacements + 2) % 5, replacements)
    got = check(probe_causality, fields=UNTIED, seed=1906, ids=ids, replacements=replacements, tol=SAME_MODEL,
                what="logits under edits of later tokens")
    judge_causality(got, ids, replacements, "untied learned-position GQA GPT")


def probe_rows_and_prefixes(m, fields: dict, seed: int, ids: np.ndarray, other_row: np.ndarray) -> dict:
    model = build(m, fields, seed)
    edited = ids.copy()
    edited[1] = other_row
    return {"logits": model(ids)[0].data, "edited_row_1": model(edited)[0].data,
            "prefixes": [model(ids[:, :k])[0].data for k in range(1, ids.shape[1] + 1)],
            "one_token": list(model(ids[:, :1])[0].shape)}


@pytest.mark.concept("context")
def test_rows_are_independent_and_a_prefix_gives_the_same_logits(check):
    rng = seeded(1907)
    for position in ("rotary", "learned"):
        ids, other = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, 6)
        got = check(probe_rows_and_prefixes, fields={**TINY, "position": position}, seed=1908, ids=ids,
                    other_row=other, tol=SAME_MODEL, what=f"{position}: rows and prefixes")
        exact = Tol(0.0, 1e-12, "float64; rows of a batch and later tokens must not leak into these logits")
        assert_close(got["edited_row_1"][0], got["logits"][0], exact, f"{position}: logits of row 0 after changing "
                     "row 1 (the rows of a batch are independent sequences)")
        for k, prefix in enumerate(got["prefixes"], start=1):
            assert_close(prefix, got["logits"][:, :k], exact, f"{position}: logits of ids[:, :{k}] vs the first {k} "
                         "positions of logits of ids (each call's positions start at 0)")
        assert_close(got["one_token"], [2, 1, 7], EXACT, f"{position}: logits shape for one token")


def probe_bad_ids(m, fields: dict, ids: np.ndarray) -> dict:
    model = build(m, fields, 1909, dtype=None)
    return {"one_dimensional": raised(model, ids[0]), "three_dimensional": raised(model, ids[None]),
            "two_dimensional": list(model(ids)[0].shape)}


@pytest.mark.concept("context")
def test_ids_must_be_a_two_dimensional_batch(check):
    ids = seeded(1910).integers(0, 7, (2, 4))
    got = check(probe_bad_ids, fields=TINY, ids=ids, tol=EXACT, what="forward of 1-D, 3-D and 2-D ids")
    assert_close(got, {"one_dimensional": {"raised": "ValueError"}, "three_dimensional": {"raised": "ValueError"},
                       "two_dimensional": [2, 4, 7]}, EXACT,
                 "forward of ids (4,) and (1, 2, 4) (not a (B, T) batch), then the logits shape of ids (2, 4)")


@pytest.mark.concept("count")
def test_num_parameters_of_more_configs_by_hand(check):
    for fields in ({"vocab_size": 17, "context": 7, "layers": 1, "heads": 4, "kv_heads": 2, "width": 24,
                    "tie_embeddings": False},
                   {"vocab_size": 5, "context": 11, "layers": 3, "heads": 2, "width": 6, "norm": "layer",
                    "feed_forward": "gelu", "position": "learned"}):
        got = check(probe_counts, fields=fields, seed=1911, tol=EXACT, what="counts")
        assert_close(got["num_parameters"], parameter_count(fields), EXACT, f"num_parameters() of {fields}")
        assert_close(got["num_parameters"], got["state_size"], EXACT, "num_parameters() vs the sizes in state_dict()")


@pytest.mark.concept("flops")
def test_flops_grow_by_the_attention_term_with_the_context(check):
    for extra in ({}, {"position": "learned", "tie_embeddings": False, "kv_heads": 1}):
        fields = {"vocab_size": 10, "layers": 2, "heads": 2, "width": 8, **extra}
        short = check(probe_counts, fields={**fields, "context": 10}, seed=1912, tol=EXACT, what="counts")
        long = check(probe_counts, fields={**fields, "context": 30}, seed=1912, tol=EXACT, what="counts")
        difference = long["flops_per_token"] - short["flops_per_token"]
        assert_close(difference, 12 * 2 * 8 * 20, EXACT, f"{extra or 'tied rotary'}: flops_per_token() at context "
                     "30 minus at context 10 (= 12 · layers · width · 20; the position table is a lookup)",
                     mistakes=(Mistake("the position table is counted in N", lambda g, w: g == w + 6 * 20 * 8),))


def probe_save_twice(m, first: dict, second: dict, ids: np.ndarray) -> dict:
    models = [build(m, fields, 1913 + i, dtype=np.float32) for i, fields in enumerate((first, second))]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "checkpoint.npz")
        for model in models:
            model.save(path)  # the second save replaces the first
        files = sorted(os.listdir(folder))
        loaded = m.GPT.load(path).eval()
    return {"files": files, "config": loaded.config.to_dict(), "want_config": models[1].config.to_dict(),
            "training": loaded.training, "logits": loaded(ids)[0].data, "want": models[1].eval()(ids)[0].data}


@pytest.mark.concept("save-load")
def test_saving_twice_keeps_the_second_model_with_its_whole_config(check):
    ids = seeded(1914).integers(0, 5, (2, 5))
    second = {**UNTIED, "dropout": 0.25, "kv_heads": 2}
    got = check(probe_save_twice, first=dict(TINY), second=second, ids=ids, tol=FLOAT32, what="save, save, load")
    assert_close(got["files"], ["checkpoint.npz"], EXACT, "files after two saves to the same path")
    assert_close(got["config"], got["want_config"], EXACT, "the loaded config (dropout and kv_heads included)")
    assert_close(got["logits"], got["want"], EXACT, "logits of the loaded model vs the second saved model (eval)")


def probe_load_broken(m, fields: dict, other: dict, seed: int, key: str) -> dict:
    """Two broken checkpoints: one without its config; one whose config has other layers than its weights (the
    message names a `key`* weight, missing or unexpected)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        m.GPT(m.GPTConfig(**other), rng=seeded(seed)).save(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        for label, config in (("no_config", None), ("fields", fields)):
            edited = {k: v for k, v in arrays.items() if k != "config"}
            if config is not None:
                edited["config"] = np.array(json.dumps(m.GPTConfig(**config).to_dict()))
            with open(path, "wb") as file:
                np.savez(file, **edited)
            results[label] = raised(m.GPT.load, path, mentions=[key] if config is not None else [])
    return results


@pytest.mark.concept("load-errors")
def test_a_checkpoint_without_config_or_with_other_layers_raises_value_error(check):
    for fields, other, key in ((dict(TINY), {**TINY, "layers": 1}, "blocks.1."),
                               ({**TINY, "layers": 1}, dict(TINY), "blocks.1.")):
        got = check(probe_load_broken, fields=fields, other=other, seed=1915, key=key, tol=EXACT,
                    what=f"GPT.load of weights with {other['layers']} layers")
        assert_close(got["no_config"], {"raised": "ValueError"}, EXACT, "GPT.load of a checkpoint without a "
                     "'config' entry")
        assert_close(got["fields"], {"raised": "ValueError", "mentions": [key]}, EXACT,
                     f"GPT.load of a config of {fields['layers']} layers with weights of {other['layers']} (the "
                     f"message names the {key}* key that is missing or unexpected)")


@pytest.mark.concept("load-errors")
def test_weights_of_another_vocabulary_raise_value_error_naming_the_key(check):
    fields, other = {**UNTIED}, {**UNTIED, "vocab_size": 9}
    got = check(probe_load_other_weights, fields=fields, other=other, seed=1916,
                mentions=[["token_embedding.weight", "head.weight"]], tol=EXACT,
                what="GPT.load of weights of another vocabulary")
    assert_close(got["result"], {"raised": "ValueError", "mentions": [["token_embedding.weight", "head.weight"]]},
                 EXACT, "GPT.load of weights of vocabulary 9 under a config of vocabulary 5")
    wanted = check(probe_structure, fields=fields, seed=1916, tol=EXACT, what="the config's shapes")["shapes"]
    assert_true(names_a_mismatch(got["result"]["message"], got["shapes"], wanted),
                f"the ValueError should name a key whose shape differs (token_embedding.weight or head.weight) and "
                f"both shapes, got {got['result']}")


def probe_dropout(m, fields: dict, seed: int, ids: np.ndarray) -> dict:
    model = build(m, fields, seed)
    twin = m.GPT(m.GPTConfig(**{**fields, "dropout": 0.0}), rng=seeded(seed))
    twin_parameters = dict(twin.named_parameters())
    for name, value in model.state_dict().items():
        twin_parameters[name].data = value.copy()
    training = [model(ids)[0].data, model(ids)[0].data]
    model.eval()
    return {"training": training, "eval": [model(ids)[0].data, model(ids)[0].data], "twin": twin(ids)[0].data,
            "p": [float(model.dropout.p)] + [float(block.dropout.p) for block in model.blocks]}


@pytest.mark.concept("dropout")
def test_dropout_is_random_in_training_and_off_in_eval(target):
    ids = seeded(1917).integers(0, 7, (2, 6))
    got = target.run(probe_dropout, fields={**TINY, "dropout": 0.3}, seed=1918, ids=ids)
    assert_true(not np.allclose(got["training"][0], got["training"][1]),
                "two training-mode forwards with dropout 0.3 should differ (a new mask each call)")
    assert_close(got["eval"][0], got["twin"], EXACT, "eval-mode logits vs a dropout-0 twin with the same weights",
                 mistakes=(Mistake("config.dropout is not passed on, or dropout still acts in eval mode",
                                   lambda g, w: not np.allclose(g, w)),))
    assert_close(got["eval"][1], got["eval"][0], EXACT, "two eval-mode forwards")
    assert_close(got["p"], [0.3, 0.3, 0.3], EXACT, "dropout p of [model.dropout (after the embeddings), each block]")


@pytest.mark.concept("init")
def test_initial_loss_of_an_untied_learned_model_is_near_ln_vocab(target):
    fields = {"vocab_size": 100, "context": 12, "layers": 3, "heads": 2, "width": 48, "position": "learned",
              "tie_embeddings": False, "norm": "layer", "feed_forward": "gelu"}
    rng = seeded(1919)
    ids, targets = rng.integers(0, 100, (6, 12)), rng.integers(0, 100, (6, 12))
    got = target.run(probe_initial_loss, fields=fields, seed=1920, ids=ids, targets=targets)
    assert_true(abs(got["loss"] - math.log(100)) < 0.1,
                f"initial loss on random targets should be within 0.1 of ln(100) = {math.log(100):.4f}, got "
                f"{got['loss']:.4f} (logits std {got['logits_std']:.4f}; std 0.02 for the head and the embeddings)")


def probe_ignored_targets(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    logits, loss = build(m, fields, seed)(ids, targets)
    return {"logits": logits.data, "loss": loss.item()}


@pytest.mark.concept("loss")
def test_targets_equal_to_minus_100_are_not_scored(check):
    rng = seeded(1921)
    ids, targets = rng.integers(0, 5, (3, 5)), rng.integers(0, 5, (3, 5))
    targets[0, :2] = -100
    targets[2, 4] = -100
    got = check(probe_ignored_targets, fields=UNTIED, seed=1922, ids=ids, targets=targets, tol=SAME_MODEL,
                what="loss with ignored targets")
    kept = targets != -100
    assert_close(got["loss"], numpy_cross_entropy(got["logits"][kept], targets[kept]), COMPOSED,
                 "loss vs the mean cross-entropy over the targets that are not -100 (pass targets to "
                 "nn.cross_entropy as they are)")


def probe_sgd_overfit(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray, steps: int, lr: float,
                      momentum: float) -> dict:
    """SGD with momentum (written here) on one batch, from the model's own initialisation."""
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    parameters = model.parameters()
    buffers = [np.zeros_like(p.data) for p in parameters]
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = model(ids, targets)[1]
        loss.backward()
        losses.append(loss.item())
        for p, buffer in zip(parameters, buffers):
            buffer *= momentum
            buffer += p.grad
            p.data -= lr * buffer
    return {"losses": losses, "final": model(ids, targets)[1].item()}


@pytest.mark.concept("training")
def test_sgd_overfits_one_batch_with_an_untied_learned_model(target):
    rng = seeded(1931)
    ids, targets = rng.integers(0, 9, (3, 6)), rng.integers(0, 9, (3, 6))
    fields = {"vocab_size": 9, "context": 6, "layers": 2, "heads": 2, "width": 24, "norm": "layer",
              "feed_forward": "gelu", "position": "learned", "tie_embeddings": False}
    got = target.run(probe_sgd_overfit, fields=fields, seed=5, ids=ids, targets=targets, steps=150, lr=0.1,
                     momentum=0.9)
    assert_true(got["final"] < 0.05,
                f"150 steps of SGD (lr 0.1, momentum 0.9) on one batch of 18 random targets should memorise it "
                f"(loss < 0.05); losses went {got['losses'][0]:.3f} -> {got['losses'][49]:.3f} -> "
                f"{got['losses'][99]:.3f} -> {got['final']:.4f}")
