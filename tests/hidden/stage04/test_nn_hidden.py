"""Stage 04 (a neural language model), hidden suite: other shapes, seeds and edge cases than the visible suite.

Tuples, deeper nesting and tied weights in the module walk; atomic loading; 1-D and 4-D inputs to Linear; bad ids and
targets; 0-d cross-entropy and upstream scaling; the edges of get_batch; a float64 gradcheck of the whole MLP; and a
context-6 MLP beating a trigram on text whose next character copies the one 4 back.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import (EXACT, F32, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference,
                            raised, seeded, sibling)
from tests.stage04.helpers import grad_or_zeros


def build_deep(m, seed: int):
    """Three levels of nesting, a tuple of modules, a list mixing a parameter, a number and a module, and an output
    layer whose weight is tied to (the same Tensor as) the embedding's."""
    T = sibling(m, "tensor")
    rng = np.random.default_rng(seed)

    class Inner(m.Module):
        def __init__(self) -> None:
            self.lin = m.Linear(2, 2, rng=rng)

        def forward(self, h):
            return self.lin(h)

    class Middle(m.Module):
        def __init__(self) -> None:
            self.inner = Inner()
            self.scale = T.Tensor(np.full(2, 0.5), requires_grad=True)

        def forward(self, h):
            return self.inner(h) * self.scale

    class Deep(m.Module):
        def __init__(self) -> None:
            self.embed = m.Embedding(4, 2, rng=rng)
            self.stages = (Middle(), Middle())
            self.extras = [T.Tensor(np.zeros(2), requires_grad=True), 3, Inner()]
            self.cache = np.arange(4.0)  # a buffer
            self.tied = self.embed.weight  # the same Tensor again: listed once, under its first name

        def forward(self, ids):
            h = self.embed(ids)
            for stage in self.stages:
                h = stage(h)
            return self.extras[2](h + self.extras[0]) @ self.tied.transpose(1, 0)

    return Deep()


DEEP_NAMES = ["embed.weight", "stages.0.inner.lin.weight", "stages.0.inner.lin.bias", "stages.0.scale",
              "stages.1.inner.lin.weight", "stages.1.inner.lin.bias", "stages.1.scale", "extras.0",
              "extras.2.lin.weight", "extras.2.lin.bias"]


def probe_deep_names(m, seed: int) -> dict:
    deep = build_deep(m, seed)
    named = deep.named_parameters()
    return {"names": [name for name, _ in named], "state keys": list(deep.state_dict()),
            "parameters are named": [p is q for p, (_, q) in zip(deep.parameters(), named)],
            "count": len(deep.parameters())}


@pytest.mark.concept("named-parameters")
def test_tuples_deep_nesting_mixed_lists_and_tied_weights(check):
    got = check(probe_deep_names, seed=901, tol=EXACT, what="names of the deep model", mistakes=(
        Mistake("the tied weight was listed twice: list a Tensor reached twice once, under its first name",
                lambda got, want: "tied" in got["names"]),
        Mistake("tuples of modules were skipped: treat tuples like lists",
                lambda got, want: not any(n.startswith("stages") for n in got["names"]))))
    assert_close(got["names"], DEEP_NAMES, EXACT, "names (tuple items, list items, 3 levels, tied weight once)")
    assert_close(got["state keys"], DEEP_NAMES, EXACT, "state_dict keys")
    assert_close(got["count"], 10, EXACT, "number of parameters")
    assert_true(all(got["parameters are named"]), "parameters() must match named_parameters() object by object")


def probe_train_subtree(m, seed: int) -> dict:
    deep = build_deep(m, seed)
    modules = [deep, deep.embed, deep.stages[0], deep.stages[0].inner, deep.stages[0].inner.lin, deep.stages[1],
               deep.extras[2], deep.extras[2].lin]
    deep.stages[0].eval()  # a subtree only
    subtree = [module.training for module in modules]
    returned = deep.eval().train(True)
    return {"subtree": subtree, "chained": returned is deep, "after": [module.training for module in modules],
            "types": [type(module.training).__name__ for module in modules]}


@pytest.mark.concept("train-eval")
def test_eval_on_a_subtree_stays_in_the_subtree(check):
    got = check(probe_train_subtree, seed=902, tol=EXACT, what="training flags")
    assert_close(got, {"subtree": [True, True, False, False, False, True, True, True], "chained": True,
                       "after": [True] * 8, "types": ["bool"] * 8}, EXACT,
                 "stages[0].eval() turns off stages[0] and its descendants only; eval().train(True) turns all on")


def probe_atomic_load(m, seed: int) -> dict:
    deep = build_deep(m, seed)
    before = deep.state_dict()
    bad = {name: array + 1.0 for name, array in before.items()}  # every value changed...
    bad["extras.2.lin.bias"] = np.zeros(3, dtype=np.float32)  # ...and the last one mis-shaped
    record = raised(deep.load_state_dict, bad, mentions=["extras.2.lin.bias", "(3,)", "(2,)"])
    unchanged = [bool(np.array_equal(a, b)) for a, b in zip(deep.state_dict().values(), before.values())]
    good = {name: (array * 2).astype(np.float64) for name, array in before.items()}  # float64 into float32
    deep.load_state_dict(good)
    loaded = deep.state_dict()
    good["embed.weight"] += 100.0  # the loaded model must not share memory with the state it came from
    ids = np.array([[0, 3, 1]])
    return {"error": record, "unchanged": unchanged, "dtypes": [str(a.dtype) for a in loaded.values()],
            "loaded": loaded, "expected": {n: (a * 2).astype(np.float32) for n, a in before.items()},
            "not aliased": bool(np.array_equal(deep.embed.weight.data, loaded["embed.weight"])),
            "tied still tied": deep.tied is deep.embed.weight, "runs": deep(ids).data}


@pytest.mark.concept("state-dict")
def test_load_state_dict_is_all_or_nothing_casts_and_copies(check):
    got = check(probe_atomic_load, seed=903, tol=F32, what="loading into the deep model")
    assert_close(got["error"], {"raised": "ValueError", "mentions": ["extras.2.lin.bias", "(3,)", "(2,)"]}, EXACT,
                 "load_state_dict with a mis-shaped key (the message names the key and both shapes)")
    assert_true(all(got["unchanged"]), f"after a failed load the model must be unchanged (check everything before "
                                       f"copying anything): {got['unchanged']}")
    assert_close(got["dtypes"], ["float32"] * 10, EXACT, "a float64 state loaded into a float32 model stays float32")
    assert_close(got["loaded"], got["expected"], EXACT, "the loaded values")
    assert_true(got["not aliased"], "editing the state after loading changed the model: copy the arrays in")
    assert_true(got["tied still tied"], "loading must copy into the existing Tensors: the tied weight came untied")


def probe_linear_shapes(m, seed: int, vector: np.ndarray, batch: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    layer = m.Linear(3, 4, bias=False, rng=np.random.default_rng(seed), std=0.5, dtype=np.float64)
    return {"names": [name for name, _ in layer.named_parameters()], "bias": layer.bias is None,
            "weight": layer.weight.data, "dtype": str(layer.weight.dtype),
            "vector": layer(T.Tensor(vector, dtype=np.float64)).data,
            "batch": layer(T.Tensor(batch, dtype=np.float64)).data}


@pytest.mark.concept("linear")
def test_linear_without_bias_on_a_vector_and_a_4d_batch(check):
    rng = seeded(904)
    vector, batch = rng.standard_normal(3), rng.standard_normal((2, 3, 2, 3))
    got = check(probe_linear_shapes, seed=905, vector=vector, batch=batch, tol=F64, what="bias-free Linear")
    weight = np.random.default_rng(905).standard_normal((3, 4)) * 0.5  # the stated draw with std=0.5, float64
    assert_close([got["names"], got["bias"], got["dtype"]], [["weight"], True, "float64"], EXACT,
                 "bias=False: only 'weight', self.bias is None; dtype float64 on request")
    assert_close(got["weight"], weight, F64, "weight = rng.standard_normal((3, 4)) * 0.5")
    assert_close(got["vector"], vector @ weight, F64, "a 1-D input (3,) gives (4,)")
    assert_close(got["batch"], batch @ weight, F64, "a (2, 3, 2, 3) input gives (2, 3, 2, 4)")


def probe_two_layer_gradcheck(m, x: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    rng = np.random.default_rng(906)
    first, second = m.Linear(3, 5, rng=rng, dtype=np.float64), m.Linear(5, 2, rng=rng, dtype=np.float64)
    first.bias.data[...] = rng.standard_normal(5)  # non-zero biases so their gradients are tested at a generic point

    def loss_of(inputs):
        return (second(first(inputs).tanh()) ** 2).sum()

    loss_of(T.Tensor(x, dtype=np.float64)).backward()
    params = [first.weight, first.bias, second.weight, second.bias]
    numeric = [central_difference(lambda: loss_of(T.Tensor(x, dtype=np.float64)).item(), p.data) for p in params]
    return {"analytic": [grad_or_zeros(p) for p in params], "numeric": numeric}


@pytest.mark.concept("linear")
def test_gradients_through_two_linear_layers_match_central_differences(target, reference):
    x = seeded(907).standard_normal((4, 3))
    got = target.run(probe_two_layer_gradcheck, x=x)
    assert_close(got["analytic"], got["numeric"], GRADCHECK, "Linear -> tanh -> Linear: backward vs central "
                                                             "differences of your own forward")
    assert_close(got, reference.run(probe_two_layer_gradcheck, x=x), GRADCHECK, "Linear -> tanh -> Linear: "
                 "gradients and central differences vs the reference's (the same seeded layers)")


def probe_embedding_edges(m, seed: int, ids: np.ndarray, upstream: np.ndarray) -> dict:
    table = m.Embedding(3, 2, rng=np.random.default_rng(seed), std=0.1, dtype=np.float64)
    out = table(ids)
    (out * upstream).sum().backward()
    return {"shape": list(out.shape), "values": out.data, "weight": table.weight.data,
            "grad": grad_or_zeros(table.weight),
            "dtype": str(table.weight.dtype), "too big": raised(table, np.array([0, 3]), mentions=["3"]),
            "negative": raised(table, np.array([[1, -1]]), mentions=["-1"])}


@pytest.mark.concept("embedding")
def test_embedding_3d_ids_heavy_repeats_and_ids_out_of_range(check):
    ids = np.zeros((2, 3, 4), dtype=np.int64)
    ids[1, 2, 3] = 2  # id 0 is used 23 times, id 2 once, id 1 never
    upstream = seeded(908).standard_normal((2, 3, 4, 2))
    got = check(probe_embedding_edges, seed=909, ids=ids, upstream=upstream, tol=F64, what="Embedding edges")
    hand = np.zeros((3, 2))
    hand[0] = upstream.reshape(-1, 2).sum(axis=0) - upstream[1, 2, 3]
    hand[2] = upstream[1, 2, 3]
    assert_close([got["shape"], got["dtype"]], [[2, 3, 4, 2], "float64"], EXACT, "output shape and dtype")
    assert_close(got["weight"], np.random.default_rng(909).standard_normal((3, 2)) * 0.1, F64,
                 "weight = rng.standard_normal((3, 2)) * std with std=0.1")
    assert_close(got["values"], got["weight"][ids], EXACT, "weight[ids] for (2, 3, 4) ids")
    assert_close(got["grad"], hand, F64, "id 0 used 23 times receives the sum of 23 gradients")
    for case, token in (("too big", "3"), ("negative", "-1")):  # a negative id must not wrap around
        assert_close(got[case], {"raised": "IndexError", "mentions": [token]}, EXACT,
                     f"an id outside [0, 3) ({case}, {token}): IndexError naming it")


def probe_ce_scalar_and_upstream(m, logits: np.ndarray, target: int, scale: float) -> dict:
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    loss = m.cross_entropy(z, np.array(target))  # logits (V,), a 0-d target
    (loss * scale).backward()
    return {"loss": loss.data, "shape": list(loss.shape), "grad": grad_or_zeros(z), "dtype": str(loss.dtype)}


@pytest.mark.concept("cross-entropy-gradient")
def test_cross_entropy_of_one_vector_and_the_upstream_gradient(check):
    logits = np.array([0.5, -1.0, 2.0, 0.0])
    got = check(probe_ce_scalar_and_upstream, logits=logits, target=1, scale=3.0, tol=F64, what="1-D cross-entropy",
                mistakes=(Mistake("the upstream gradient was ignored: multiply (softmax - one_hot) / N by it",
                                  lambda got, want: np.allclose(3 * got["grad"], want["grad"])),))
    softmax = np.exp(logits) / np.exp(logits).sum()
    assert_close(got["loss"], -math.log(softmax[1]), F64, "-log softmax(z)[1]")
    assert_close([got["shape"], got["dtype"]], [[], "float64"], EXACT, "a 0-d float64 loss")
    assert_close(got["grad"], 3.0 * (softmax - np.eye(4)[1]), F64, "gradient of 3 * loss = 3 (softmax - one_hot)")


def probe_ce_gradcheck(m, logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> dict:
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    loss = m.cross_entropy(z, targets, ignore_index=ignore_index)
    loss.backward()
    numeric = central_difference(
        lambda: m.cross_entropy(T.Tensor(logits, dtype=np.float64), targets, ignore_index=ignore_index).item(), logits)
    flat, kept = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1) != ignore_index
    log_probs = flat - np.log(np.exp(flat).sum(axis=-1, keepdims=True))
    return {"analytic": grad_or_zeros(z), "numeric": numeric, "loss": loss.item(),
            "by hand": float(-log_probs[kept, targets.reshape(-1)[kept]].mean())}


@pytest.mark.concept("ignore-index")
def test_cross_entropy_gradcheck_with_a_real_class_as_ignore_index(target, reference):
    rng = seeded(910)
    logits, targets = 4 * rng.standard_normal((2, 2, 3, 5)), rng.integers(0, 5, size=(2, 2, 3))
    targets[0, 0, 0] = targets[1, 1, 2] = 2  # at least two ignored
    inputs = dict(logits=logits, targets=targets, ignore_index=2)
    got = target.run(probe_ce_gradcheck, **inputs)
    assert_close(got["loss"], got["by hand"], F64, "4-D logits, ignore_index=2: the loss is the mean over targets != 2")
    assert_close(got["analytic"], got["numeric"], GRADCHECK, "4-D logits, ignore_index=2: backward vs central "
                                                             "differences of your own forward")
    assert_close(got, reference.run(probe_ce_gradcheck, **inputs), GRADCHECK, "4-D logits, ignore_index=2: "
                 "gradient and central differences vs the reference's")


def probe_ce_extreme(m, logits: np.ndarray, targets: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True)
    loss = m.cross_entropy(z, targets)
    loss.backward()
    return {"loss": loss.item(), "grad": grad_or_zeros(z)}


@pytest.mark.concept("stability")
def test_cross_entropy_extreme_float32_logits(check):
    logits = np.array([[3e4, 3e4, 3e4, 3e4], [-3e4, -3e4, -3e4, 2e4], [5e37, -5e37, 0.0, 0.0]], dtype=np.float32)
    targets = np.array([3, 0, 0])
    got = check(probe_ce_extreme, logits=logits, targets=targets, tol=F32, what="extreme logits")
    # row 0: four equal maxima, ln 4; row 1: 2e4 - (-3e4) = 5e4; row 2: the target is the maximum, 0
    assert_close(got["loss"], (math.log(4) + 5e4) / 3, F32, "(ln 4 + 5e4 + 0) / 3")
    assert_true(bool(np.all(np.isfinite(got["grad"]))), f"the gradient must be finite, got {got['grad']}")
    assert_close(got["grad"].sum(axis=-1), np.zeros(3), Tol(0.0, 1e-6, "float32 rounding of softmax sums"),
                 "each gradient row sums to 0 (softmax and one_hot both sum to 1)")


def probe_ce_errors(m, logits: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    z = T.Tensor(logits, requires_grad=True, dtype=np.float64)
    fine = m.cross_entropy(z, np.array([0, 1])).item()
    # the messages name the offending target, or both shapes (the docstring's promise)
    return {"fine": fine, "too big": raised(m.cross_entropy, z, np.array([0, 3]), mentions=["3"]),
            "negative": raised(m.cross_entropy, z, np.array([-1, 0]), mentions=["-1"]),
            "wrong shape": raised(m.cross_entropy, z, np.array([[0, 1]]), mentions=["(1, 2)", "(2,)"])}


@pytest.mark.concept("ignore-index")
def test_cross_entropy_rejects_targets_out_of_range_and_of_the_wrong_shape(check):
    logits = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = check(probe_ce_errors, logits=logits, tol=F64, what="cross_entropy errors")
    # row 0: uniform, ln 3; row 1 (1, 0, 0) with target 1: log(e + 1 + 1) - 0
    assert_close(got["fine"], (math.log(3) + math.log(2 + math.e)) / 2, F64, "the valid case, (ln 3 + ln(e + 2)) / 2")
    for case, why, mentions in (
            ("too big", "target 3 with V = 3", ["3"]),
            ("negative", "target -1 (not the ignore_index -100; it must not wrap around to the last class)", ["-1"]),
            ("wrong shape", "targets (1, 2) for logits (2, 3)", ["(1, 2)", "(2,)"])):
        assert_close(got[case], {"raised": "ValueError", "mentions": mentions}, EXACT, f"cross_entropy, {why}")


def probe_batch_edges(m, tokens: list, context: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x, y = m.get_batch(np.asarray(tokens, dtype=np.int32), 3, context, rng)
    return {"x": x, "y": y, "dtypes": [str(x.dtype), str(y.dtype)],
            "too short": raised(m.get_batch, np.asarray(tokens[:context]), 2, context, rng)}


@pytest.mark.concept("get-batch")
def test_get_batch_with_exactly_one_window_and_too_few_tokens(check):
    tokens = [4, 8, 15, 16, 23, 42]
    got = check(probe_batch_edges, tokens=tokens, context=5, seed=911, tol=EXACT, what="get_batch edges")
    assert_close([got["x"], got["y"], got["dtypes"]], [np.array([tokens[:5]] * 3), np.array([tokens[1:]] * 3),
                                                       ["int64", "int64"]], EXACT,
                 "6 tokens, context 5: the only window is tokens[0:5] with targets tokens[1:6] (int64 from int32)")
    assert_close(got["too short"], {"raised": "ValueError"}, EXACT,
                 "get_batch of 5 tokens with context 5 (no window of 5 plus a target)")


def probe_batch_starts(m, tokens: np.ndarray, context: int, seed: int, calls: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([m.get_batch(tokens, 16, context, rng)[0][:, 0] for _ in range(calls)])


@pytest.mark.concept("get-batch")
def test_get_batch_reaches_every_start_including_the_last(check):
    tokens = np.arange(20)  # context 5: starts 0..14, the last window is 14..18 with target 19
    starts = check(probe_batch_starts, tokens=tokens, context=5, seed=912, calls=40, tol=EXACT, what="window starts",
                   mistakes=(Mistake("the last start N - T - 1 is never drawn: rng.integers' high is exclusive, "
                                     "use high = len(tokens) - context", lambda got, want: got.max() < 14),))
    assert_close(sorted(set(starts.tolist())), list(range(15)), EXACT, "the set of starts drawn in 640 windows")


def probe_mlp_seeds(m, seed: int, x: np.ndarray, y: np.ndarray) -> dict:
    one = m.MLPLanguageModel(50, 3, 4, 24, rng=np.random.default_rng(seed))
    same = m.MLPLanguageModel(50, 3, 4, 24, rng=np.random.default_rng(seed))
    other = m.MLPLanguageModel(50, 3, 4, 24, rng=np.random.default_rng(seed + 1))
    other_logits = other(x).data.copy()
    other.load_state_dict(one.state_dict())
    return {"same seed": [bool(np.array_equal(a, b)) for a, b in zip(one.state_dict().values(),
                                                                      same.state_dict().values())],
            "other seed differs": not np.allclose(other_logits, one(x).data),
            "loaded": other(x).data, "logits": one(x).data, "loss": one.loss(x, y).item(),
            "stated": one.state_dict(), "wrong context": raised(one, x[:, :2]),
            "attributes": [one.vocab_size, one.context]}


@pytest.mark.concept("mlp-lm")
def test_mlp_seeding_reloading_and_window_length(check):
    x, y = seeded(913).integers(0, 50, size=(2, 32, 3))
    got = check(probe_mlp_seeds, seed=914, x=x, y=y, tol=F32, what="MLP seeds")
    assert_true(all(got["same seed"]) and got["other seed differs"], "the same seed must give the same model, "
                                                                     "another seed another one")
    assert_close(got["loaded"], got["logits"], EXACT, "logits after load_state_dict from the other model")
    rng = np.random.default_rng(914)  # the stated draws, in order: embedding, hidden, output (std 0.01)
    embedding = rng.standard_normal((50, 4)).astype(np.float32)
    hidden = (rng.standard_normal((12, 24)) / np.sqrt(12)).astype(np.float32)
    output = (rng.standard_normal((24, 50)) * 0.01).astype(np.float32)
    assert_close([got["stated"]["embedding.weight"], got["stated"]["hidden.weight"], got["stated"]["output.weight"]],
                 [embedding, hidden, output], EXACT, "weights drawn in the order embedding, hidden, output")
    assert_close(got["loss"], math.log(50), Tol(0.0, 0.03, "nearly zero logits"), "initial loss ≈ ln 50")
    assert_close(got["wrong context"], {"raised": "ValueError"}, EXACT, "a window of 2 tokens for a context-3 model")
    assert_close(got["attributes"], [50, 3], EXACT, "model.vocab_size and model.context")


def probe_mlp_gradcheck(m, x: np.ndarray, y: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    model = m.MLPLanguageModel(4, 3, 2, 5, rng=np.random.default_rng(915))
    for p in model.parameters():  # float64 for the central differences
        p.data = p.data.astype(np.float64)
    model.output.weight.data *= 30  # logits of order 1, so every gradient is well away from 0
    model.loss(x, y).backward()
    analytic = [grad_or_zeros(p) for p in model.parameters()]
    with T.no_grad():
        numeric = [central_difference(lambda: model.loss(x, y).item(), p.data) for p in model.parameters()]
    return {"analytic": analytic, "numeric": numeric}


@pytest.mark.concept("mlp-lm")
def test_mlp_gradients_match_central_differences_in_float64(target, reference):
    x, y = seeded(916).integers(0, 4, size=(2, 6, 3))
    got = target.run(probe_mlp_gradcheck, x=x, y=y)
    assert_close(got["analytic"], got["numeric"], GRADCHECK, "MLP parameter gradients (embedding, hidden, output): "
                                                             "backward vs central differences of your own forward")
    assert_close(got, reference.run(probe_mlp_gradcheck, x=x, y=y), GRADCHECK, "MLP parameter gradients and central "
                 "differences vs the reference's (the same seeded model)")


def probe_estimate_more(m, tokens: np.ndarray, seed: int) -> dict:
    model = m.MLPLanguageModel(9, 5, 3, 8, rng=np.random.default_rng(seed))
    calls = []
    loss_method = model.loss
    model.loss = lambda x, y: (calls.append(x.shape), loss_method(x, y))[1]
    before = model.state_dict()
    model.eval()
    estimates = [m.estimate_loss(model, tokens, 4, 5, batches=6, seed=s) for s in (0, 1)]
    return {"estimates": estimates, "calls": [list(c) for c in calls], "training": model.training,
            "unchanged": [bool(np.array_equal(a, b)) for a, b in zip(before.values(), model.state_dict().values())]}


@pytest.mark.concept("estimate-loss")
def test_estimate_loss_draws_the_asked_batches_and_changes_nothing(check):
    tokens = seeded(917).integers(0, 9, size=200)
    got = check(probe_estimate_more, tokens=tokens, seed=918, tol=F32, what="estimate_loss")
    assert_close(got["calls"], [[4, 5]] * 12, EXACT, "shapes of the 6 + 6 batches passed to model.loss")
    assert_true(got["estimates"][0] != got["estimates"][1], "another seed must give other batches")
    assert_true(abs(got["estimates"][0] - math.log(9)) < 0.05, f"an untrained model estimates ≈ ln 9, got "
                                                               f"{got['estimates'][0]}")
    assert_true(got["training"] is False and all(got["unchanged"]),
                "a model in eval mode stays in eval mode and its parameters are untouched")


def probe_beats_trigram(m, text: str, steps: int, seed: int) -> dict:
    ngram = sibling(m, "ngram")
    tokenizer = ngram.CharTokenizer(text)
    train, val = ngram.train_val_split(tokenizer.encode(text), 0.25)
    trigram = ngram.NGramModel(3, tokenizer.vocab_size, alpha=0.05, lambdas=[0.1, 0.3, 0.6]).fit(train)
    rng = np.random.default_rng(seed)
    model = m.MLPLanguageModel(tokenizer.vocab_size, 6, 6, 32, rng=rng)
    for _ in range(steps):
        loss = model.loss(*m.get_batch(train, 32, 6, rng))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.5 * p.grad
    return {"trigram": trigram.cross_entropy(val), "mlp": m.estimate_loss(model, val, 128, 6, batches=8, seed=1)}


@pytest.mark.concept("beats-ngram")
def test_a_context_6_mlp_beats_an_interpolated_trigram_on_a_lag_4_rule(target):
    rng = np.random.default_rng(919)
    alphabet = list("stuvwxyz")
    chars = list(rng.choice(alphabet, size=4))
    for _ in range(6000):  # the character 4 back decides the next one 85% of the time
        chars.append(chars[-4] if rng.random() < 0.85 else str(rng.choice(alphabet)))
    got = target.run(probe_beats_trigram, text="".join(chars), steps=300, seed=920)
    assert_true(got["trigram"] > math.log(8) - 0.2, f"a trigram sees only 2 characters back: ≈ ln 8, got "
                                                    f"{got['trigram']:.3f}")
    assert_true(got["mlp"] < got["trigram"] - 0.8, f"the context-6 MLP must beat the trigram by > 0.8 nats on "
                                                   f"held-out text: MLP {got['mlp']:.3f}, trigram {got['trigram']:.3f}")
