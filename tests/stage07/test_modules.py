"""Stage 07 (transformer blocks), visible suite: the modules LayerNorm, RMSNorm, MLP, SwiGLU, Dropout and Block.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: the same computation written out in NumPy from the module's own parameters, an invariant,
a statistical property at a stated tolerance, or central differences of YOUR forward pass (float64, GRADCHECK).
Parameters are overwritten by name (sorted) with seeded values before values are compared, so the order in which
your constructors draw their initial weights does not matter; the parameter NAMES do (exercises/blocks.py).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import randomise_parameters, EXACT, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, raised, seeded
from tests.stage06.helpers import GrowingCache

COMPOSED = Tol(1e-8, 1e-10, "float64; the module and its composition round differently")
NUMPY = Tol(1e-9, 1e-11, "float64; the module and the NumPy formula round differently")
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _numpy_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _numpy_silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _numpy_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """LayerNorm when bias is given, RMSNorm when it is None."""
    centered = x - x.mean(axis=-1, keepdims=True) if bias is not None else x
    out = centered / np.sqrt((centered ** 2).mean(axis=-1, keepdims=True) + eps) * weight
    return out + bias if bias is not None else out


def _names(module) -> list:
    return [name for name, _ in module.named_parameters()]


# ---------------------------------------------------------------- LayerNorm and RMSNorm


def probe_norm_modules(m, x: np.ndarray, weight: np.ndarray) -> dict:
    result = {}
    for label, module in (("layer", m.LayerNorm(6)), ("rms", m.RMSNorm(6, eps=0.1))):
        fresh = {name: p.data.copy() for name, p in module.named_parameters()}
        dtypes = [str(p.dtype) for p in module.parameters()]
        out_default = module(m.Tensor(x)).data  # float32, with weight 1 (and bias 0)
        module.weight.data[...] = weight  # the forward must read the module's own parameter
        result[label] = {"names": _names(module), "fresh": fresh, "dtypes": dtypes, "eps": float(module.eps),
                         "out_default": out_default, "out": module(m.Tensor(x)).data}
    return result


@pytest.mark.concept("norm-modules")
def test_norm_modules_own_their_parameters_and_eps(check):
    rng = seeded(741)
    x = (rng.normal(size=(2, 3, 6)) * 2.0 + 1.0).astype(np.float32)
    weight = rng.normal(size=6).astype(np.float32)
    got = check(probe_norm_modules, x=x, weight=weight, tol=Tol(1e-5, 1e-6, "float32"), what="LayerNorm(6), "
                "RMSNorm(6, eps=0.1)")
    layer, rms = got["layer"], got["rms"]
    assert_close(layer["names"], ["weight", "bias"], EXACT, "LayerNorm parameter names")
    assert_close(rms["names"], ["weight"], EXACT, "RMSNorm parameter names (no bias)")
    assert_close([layer["fresh"]["weight"], layer["fresh"]["bias"], rms["fresh"]["weight"]],
                 [np.ones(6), np.zeros(6), np.ones(6)], EXACT, "initial weight (ones) and bias (zeros)")
    assert_close(layer["dtypes"] + rms["dtypes"], ["float32"] * 3, EXACT, "parameter dtypes")
    assert_close([layer["eps"], rms["eps"]], [1e-5, 0.1], EXACT, "eps (default 1e-5; RMSNorm given 0.1)")
    tol = Tol(1e-5, 1e-5, "float32 vs the NumPy formula in float64")
    assert_close(layer["out_default"], _numpy_norm(x.astype(np.float64), 1.0, 0.0, 1e-5), tol, "LayerNorm(6)(x)")
    assert_close(layer["out"], _numpy_norm(x.astype(np.float64), weight, 0.0, 1e-5), tol,
                 "LayerNorm(6)(x) after setting its weight")
    assert_close(rms["out"], _numpy_norm(x.astype(np.float64), weight, None, 0.1), tol,
                 "RMSNorm(6, eps=0.1)(x) after setting its weight", mistakes=(
                     Mistake("the module's eps is not passed on to rms_norm",
                             lambda got, want: np.allclose(got, _numpy_norm(x.astype(np.float64), weight, None, 1e-5),
                                                           atol=1e-5)),))


# ---------------------------------------------------------------- MLP and SwiGLU


def probe_feed_forward(m, kind: str, width: int, hidden: int, x: np.ndarray, seed: int) -> dict:
    module = getattr(m, kind)(width, hidden, rng=seeded(seed))
    shapes = {name: list(p.shape) for name, p in module.named_parameters()}
    dtype32 = str(module(m.Tensor(x.astype(np.float32))).dtype)
    randomise_parameters(module, seed + 1)
    return {"names": _names(module), "shapes": shapes, "float32_out": dtype32, "state": module.state_dict(),
            "out": module(m.Tensor(x, dtype=np.float64)).data}


@pytest.mark.concept("mlp")
def test_mlp_shapes_and_values_vs_its_composition(check):
    x = seeded(751).normal(size=(2, 3, 5))
    got = check(probe_feed_forward, kind="MLP", width=5, hidden=12, x=x, seed=752, tol=COMPOSED, what="MLP(5, 12)")
    assert_close(got["names"], ["up.weight", "up.bias", "down.weight", "down.bias"], EXACT, "MLP parameter names")
    assert_close(got["shapes"], {"up.weight": [5, 12], "up.bias": [12], "down.weight": [12, 5], "down.bias": [5]},
                 EXACT, "MLP parameter shapes")
    assert_close(got["float32_out"], "float32", EXACT, "dtype of MLP(float32 x)")
    s = got["state"]
    want = _numpy_gelu(x @ s["up.weight"] + s["up.bias"]) @ s["down.weight"] + s["down.bias"]  # (2, 3, 5)
    assert_close(got["out"], want, NUMPY, "MLP(x) vs down(gelu(up(x))) in NumPy", mistakes=(
        Mistake("ReLU (or another activation) instead of the tanh-form GELU", lambda got, want: np.allclose(
            got, np.maximum(x @ s["up.weight"] + s["up.bias"], 0) @ s["down.weight"] + s["down.bias"])),))


@pytest.mark.concept("swiglu")
def test_swiglu_shapes_and_values_vs_its_composition(check):
    x = seeded(753).normal(size=(3, 4, 6))
    got = check(probe_feed_forward, kind="SwiGLU", width=6, hidden=16, x=x, seed=754, tol=COMPOSED,
                what="SwiGLU(6, 16)")
    assert_close(got["names"], ["gate.weight", "up.weight", "down.weight"], EXACT, "SwiGLU parameter names (no biases)")
    assert_close(got["shapes"], {"gate.weight": [6, 16], "up.weight": [6, 16], "down.weight": [16, 6]}, EXACT,
                 "SwiGLU parameter shapes")
    assert_close(got["float32_out"], "float32", EXACT, "dtype of SwiGLU(float32 x)")
    s = got["state"]
    gate, up = x @ s["gate.weight"], x @ s["up.weight"]  # (3, 4, 16) each
    assert_close(got["out"], (_numpy_silu(gate) * up) @ s["down.weight"], NUMPY,
                 "SwiGLU(x) vs down(silu(gate(x)) ⊙ up(x)) in NumPy", mistakes=(
                     Mistake("silu is applied to up(x) instead of gate(x)",
                             lambda got, want: np.allclose(got, (gate * _numpy_silu(up)) @ s["down.weight"])),))


# ---------------------------------------------------------------- Dropout


def probe_dropout(m, p: float, seed: int, x: np.ndarray) -> dict:
    """Two forwards of one Dropout, one of a twin made with the same seed, then eval; with x's gradient."""
    dropout, twin = m.Dropout(p, rng=seeded(seed)), m.Dropout(p, rng=seeded(seed))
    leaf = m.Tensor(x, requires_grad=True, dtype=x.dtype)
    first = dropout(leaf)
    first.backward(np.ones_like(x))
    second = dropout(m.Tensor(x, dtype=x.dtype)).data
    from_twin = twin(m.Tensor(x, dtype=x.dtype)).data
    dropout.eval()
    evaluated = dropout(m.Tensor(x, dtype=x.dtype)).data
    return {"first": first.data, "second": second, "twin": from_twin, "eval": evaluated, "grad": leaf.grad,
            "dtype": str(first.dtype)}


@pytest.mark.concept("dropout")
def test_dropout_same_seed_same_mask_and_the_stated_mask(check):
    x = seeded(761).normal(size=(4, 5, 6)).astype(np.float32)
    got = check(probe_dropout, p=0.25, seed=762, x=x, tol=EXACT, what="Dropout(0.25) masks")
    assert_close(got["twin"], got["first"], EXACT, "a Dropout made with the same seed gives the same first mask")
    u = seeded(762).random(x.shape)  # the convention: keep where u >= p, u = rng.random(x.shape), one call per forward
    want = np.where(u >= 0.25, x / np.float32(0.75), np.float32(0.0))
    assert_close(got["first"], want, Tol(1e-6, 0, "float32 division"), "Dropout(0.25)(x): zeros where u < p, "
                 "x / (1 - p) elsewhere", mistakes=(
                     Mistake("the survivors are not scaled by 1/(1 - p)",
                             lambda got, want: np.allclose(got, np.where(u >= 0.25, x, 0))),
                     Mistake("kept where u < p: the mask keeps each element with probability 1 - p (u >= p)",
                             lambda got, want: np.allclose(got, np.where(u < 0.25, x / 0.75, 0), rtol=1e-6)),))
    assert_true(not np.array_equal(got["second"], got["first"]),
                "a second forward must draw a new mask from the module's generator, but it repeated the first")
    assert_close(got["dtype"], "float32", EXACT, "dtype of Dropout(float32 x)")


@pytest.mark.concept("dropout")
def test_dropout_is_the_identity_in_eval_mode_and_for_p_0(check):
    x = seeded(763).normal(size=(3, 7))
    got = check(probe_dropout, p=0.5, seed=764, x=x, tol=EXACT, what="Dropout(0.5)")
    assert_close(got["eval"], x, EXACT, "Dropout(0.5) in eval mode: x unchanged (no scaling either)")
    got = check(probe_dropout, p=0.0, seed=765, x=x, tol=EXACT, what="Dropout(0.0)")
    for key in ("first", "second", "eval"):
        assert_close(got[key], x, EXACT, f"Dropout(0.0) ({key} forward): x unchanged")
    assert_close(got["grad"], np.ones_like(x), EXACT, "Dropout(0.0): gradient 1")


@pytest.mark.concept("dropout")
def test_dropout_preserves_the_mean_and_its_gradient_is_the_mask(check):
    # x = 1 everywhere, N = 40,000 elements: each output is 0 or 1/(1 - p), mean 1, variance p/(1 - p) = 3/7, so the
    # sample mean has standard error sqrt(3/7 / N) = 0.0033 and the dropped fraction sqrt(p(1 - p)/N) = 0.0023.
    # Allowed: 5 standard errors (a false alarm has probability < 1e-6; the seed is fixed anyway).
    x = np.ones((200, 200))
    got = check(probe_dropout, p=0.3, seed=766, x=x, tol=EXACT, what="Dropout(0.3) of ones")
    mean_tol = Tol(0, 5 * math.sqrt(0.3 / 0.7 / x.size), "5 standard errors of the mean of 40,000 draws")
    assert_close(float(got["first"].mean()), 1.0, mean_tol, "mean of Dropout(0.3)(ones)", mistakes=(
        Mistake("the survivors are not scaled by 1/(1 - p): the mean drops to 1 - p",
                lambda got, want: abs(got - 0.7) < 0.02),))
    assert_close(float((got["first"] == 0).mean()), 0.3, Tol(0, 5 * math.sqrt(0.21 / x.size), "5 standard errors"),
                 "fraction of zeros of Dropout(0.3)")
    assert_close(got["grad"], got["first"], EXACT, "gradient of Dropout(0.3) for x = 1: the mask itself, "
                 "0 where dropped and 1/(1 - p) where kept")


def probe_bad_dropout(m, ps: list) -> dict:
    return {f"Dropout({p})": raised(m.Dropout, p, rng=seeded(0)) for p in ps}


@pytest.mark.concept("dropout")
def test_dropout_rejects_p_outside_0_1(check):
    ps = [1.0, -0.1, 1.5, 0.0, 0.5]  # p = 1 would drop everything and divide by 1 - p = 0; 0 and 0.5 are fine
    got = check(probe_bad_dropout, ps=ps, tol=EXACT, what="Dropout(p)")
    assert_close(got, {**{f"Dropout({p})": {"raised": "ValueError"} for p in ps[:3]},
                       **{f"Dropout({p})": {"returned": "<Dropout object>"} for p in ps[3:]}}, EXACT,
                 "Dropout(p): p must be in [0, 1)")


# ---------------------------------------------------------------- Block


DEFAULT = {"width": 8, "heads": 2}  # RMSNorm, SwiGLU (hidden 24), pre-norm
CLASSIC = {"width": 8, "heads": 4, "kv_heads": 2, "norm": "layer", "feed_forward": "gelu", "rotary": True}
BLOCK_NAMES = ["attention_norm.weight", "attention.query.weight", "attention.key.weight", "attention.value.weight",
               "attention.output.weight", "feed_forward_norm.weight", "feed_forward.gate.weight",
               "feed_forward.up.weight", "feed_forward.down.weight"]


def _block(m, config: dict, seed: int, **overrides):
    options = dict(config, **overrides)
    return m.Block(options.pop("width"), options.pop("heads"), options.pop("kv_heads", None), rng=seeded(seed),
                   **options)


def probe_block_wiring(m, config: dict, x: np.ndarray, seed: int) -> dict:
    """The block's output, and both residual wirings composed by hand from its own submodules."""
    block = _block(m, config, seed)
    randomise_parameters(block, seed + 1)
    h = m.Tensor(x, dtype=np.float64)
    norm_a, attention, norm_f, feed_forward = (block.attention_norm, block.attention, block.feed_forward_norm,
                                               block.feed_forward)
    pre = h + attention(norm_a(h))
    pre = pre + feed_forward(norm_f(pre))
    post = norm_a(h + attention(h))
    post = norm_f(post + feed_forward(post))
    return {"out": block(h).data, "pre": pre.data, "post": post.data}


@pytest.mark.concept("block-wiring")
@pytest.mark.parametrize("config", [DEFAULT, CLASSIC], ids=["rms-swiglu", "layer-gelu-gqa-rotary"])
def test_pre_norm_block_is_x_plus_attention_of_norm_then_x_plus_feed_forward_of_norm(check, config):
    x = seeded(771).normal(size=(2, 5, 8))
    got = check(probe_block_wiring, config=dict(config, pre_norm=True), x=x, seed=772, tol=COMPOSED,
                what="pre-norm Block")
    assert_close(got["out"], got["pre"], COMPOSED, "pre-norm Block(x) vs x + attention(norm(x)), then "
                 "x + feed_forward(norm(x))", mistakes=(
                     Mistake("this is the post-norm wiring", lambda got_, want: np.allclose(got_, got["post"])),))
    assert_true(np.abs(got["pre"] - got["post"]).max() > 1e-2, "pre-norm and post-norm wirings should differ here")


@pytest.mark.concept("block-wiring")
@pytest.mark.parametrize("config", [DEFAULT, CLASSIC], ids=["rms-swiglu", "layer-gelu-gqa-rotary"])
def test_post_norm_block_is_norm_of_x_plus_attention_then_norm_of_x_plus_feed_forward(check, config):
    x = seeded(773).normal(size=(2, 4, 8))
    got = check(probe_block_wiring, config=dict(config, pre_norm=False), x=x, seed=774, tol=COMPOSED,
                what="post-norm Block")
    assert_close(got["out"], got["post"], COMPOSED, "post-norm Block(x) vs norm(x + attention(x)), then "
                 "norm(x + feed_forward(x))", mistakes=(
                     Mistake("this is the pre-norm wiring: pre_norm=False must normalise after each residual sum",
                             lambda got_, want: np.allclose(got_, got["pre"])),))
    assert_true(np.abs(got["out"] - got["pre"]).max() > 1e-2, "the post-norm output equals the pre-norm one")


def probe_block_cached(m, config: dict, x: np.ndarray, seed: int, chunks: list) -> dict:
    """The block (eval mode) on x fed in chunks through a test-side cache, and on all of x at once."""
    block = _block(m, config, seed, dropout=0.5).eval()  # eval: dropout off, so both passes are deterministic
    randomise_parameters(block, seed + 1)
    cache, pieces, start = GrowingCache(), [], 0
    for size in chunks:
        pieces.append(block(m.Tensor(x[:, start:start + size], dtype=np.float64), cache, 1).data)
        cache.advance(size)
        start += size
    return {"cached": np.concatenate(pieces, axis=1), "full": block(m.Tensor(x, dtype=np.float64)).data,
            "layers": sorted(cache.keys)}


@pytest.mark.concept("block-wiring")
@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-norm", "post-norm"])
def test_a_block_fed_in_pieces_through_a_cache_equals_one_pass(check, pre_norm):
    x = seeded(775).normal(size=(2, 6, 8))
    got = check(probe_block_cached, config=dict(CLASSIC, pre_norm=pre_norm), x=x, seed=776, chunks=[2, 1, 3],
                tol=COMPOSED, what=f"{'pre' if pre_norm else 'post'}-norm Block with a cache")
    assert_close(got["cached"], got["full"], COMPOSED, f"{'pre' if pre_norm else 'post'}-norm Block: chunks 2, 1, 3 "
                 "through a cache vs one pass over all 6 positions", mistakes=(
                     Mistake("the first chunk matches but later ones do not: pass cache and layer on to the "
                             "attention, in both wirings", lambda got_, want: np.allclose(got_[:, :2], want[:, :2])),))
    assert_close(got["layers"], [1], EXACT, "the cache layers written: the block passes its `layer` on")


def probe_block_init(m, config: dict, layers: int, seed: int) -> dict:
    block = _block(m, config, seed, layers=layers)
    stats = {name: {"std": float(p.data.std()), "mean": float(p.data.mean()), "size": int(p.size),
                    "dtype": str(p.dtype), "min": float(p.data.min()), "max": float(p.data.max())}
             for name, p in block.named_parameters()}
    return {"names": _names(block), "stats": stats}


@pytest.mark.concept("residual-init")
def test_residual_projections_are_initialised_with_std_002_over_sqrt_2_layers(target, reference):
    # The sample std of n normal draws has relative standard error 1/sqrt(2n): 1.1% for the smallest matrix here
    # (64 x 64). Allowed: 6% (over 5 standard errors). The mean must be within 5 · std/sqrt(n) of 0.
    layers, width = 4, 64
    residual = {"attention.output.weight", "feed_forward.down.weight"}
    for who in (target, reference):
        got = who.run(probe_block_init, config={"width": width, "heads": 4}, layers=layers, seed=781)
        assert_close(got["names"], BLOCK_NAMES, EXACT, f"{who.target}: Block parameter names (default options)")
        for name, s in got["stats"].items():
            assert_close(s["dtype"], "float32", EXACT, f"{who.target}: dtype of {name}")
            if name.endswith("norm.weight"):
                assert_close([s["min"], s["max"]], [1.0, 1.0], EXACT, f"{who.target}: {name} starts at ones")
                continue
            want = 0.02 / math.sqrt(2 * layers) if name in residual else 0.02
            assert_close(s["std"], want, Tol(0.06, 0, "6%: over 5 standard errors of a sample std"),
                         f"{who.target}: std of {name} ({'residual projection' if name in residual else 'matrix'}, "
                         f"layers={layers})", mistakes=(
                             Mistake("the residual projections are not scaled: 0.02/sqrt(2·layers) for "
                                     "attention.output and feed_forward.down", lambda g, w: abs(g - 0.02) < 0.002),
                             Mistake("scaled by 1/sqrt(layers) instead of 1/sqrt(2·layers)",
                                     lambda g, w: abs(g - 0.02 / math.sqrt(layers)) < 0.0005),
                             Mistake("Linear's default std 1/sqrt(fan_in) was kept; the Block redraws every matrix",
                                     lambda g, w: g > 0.05)))
            assert_close(s["mean"], 0.0, Tol(0, 5 * want / math.sqrt(s["size"]), "5 standard errors of the mean"),
                         f"{who.target}: mean of {name}")


def probe_causal(m, config: dict, x: np.ndarray, later: np.ndarray, t: int, seed: int) -> dict:
    block = _block(m, config, seed)
    randomise_parameters(block, seed + 1)
    perturbed = x.copy()
    perturbed[:, t + 1:] += later  # change only the inputs after position t
    leaf = m.Tensor(x, requires_grad=True, dtype=np.float64)
    out = block(leaf)
    upstream = np.zeros_like(x)
    upstream[:, t] = 1.0  # d(sum of the outputs at position t) / dx
    out.backward(upstream)
    return {"out": out.data, "perturbed": block(m.Tensor(perturbed, dtype=np.float64)).data, "grad": leaf.grad}


@pytest.mark.concept("block-causal")
def test_block_output_at_t_does_not_depend_on_later_inputs(check):
    rng = seeded(791)
    x, later, t = rng.normal(size=(2, 6, 8)), rng.normal(size=(2, 3, 8)), 2
    got = check(probe_causal, config=CLASSIC, x=x, later=later, t=t, seed=792, tol=COMPOSED, what="causal Block")
    assert_close(got["perturbed"][:, :t + 1], got["out"][:, :t + 1], Tol(0, 1e-12, "float64 rounding"),
                 f"outputs at positions 0..{t} after changing the inputs at {t + 1}..5")
    assert_true(np.abs(got["perturbed"][:, t + 1:] - got["out"][:, t + 1:]).min() > 0,
                "outputs after position t must change when their inputs change")
    assert_close(got["grad"][:, t + 1:], np.zeros((2, 6 - t - 1, 8)), EXACT,
                 f"d(output at {t}) / d(inputs after {t}): a causal block has none")
    assert_true(np.abs(got["grad"][:, :t + 1]).min() > 0, f"d(output at {t}) / d(inputs 0..{t}) should be nonzero")


def probe_block_gradients(m, config: dict, x: np.ndarray, upstream: np.ndarray, seed: int) -> dict:
    block = _block(m, config, seed)
    randomise_parameters(block, seed + 1)
    block(m.Tensor(x, dtype=np.float64)).backward(upstream)
    return {"names": _names(block), "grads": {name: p.grad for name, p in block.named_parameters()}}


@pytest.mark.concept("block-gradients")
def test_gradients_reach_every_parameter(check):
    rng = seeded(801)
    x, upstream = rng.normal(size=(2, 5, 8)), rng.normal(size=(2, 5, 8))
    for config in (DEFAULT, dict(CLASSIC, pre_norm=False)):
        got = check(probe_block_gradients, config=config, x=x, upstream=upstream, seed=802, tol=COMPOSED,
                    what=f"Block gradients ({config})")
        for name in got["names"]:
            grad = got["grads"][name]
            assert_true(grad is not None, f"{name}.grad is None: no gradient reached it")
            assert_true(np.isfinite(grad).all() and np.abs(grad).max() > 0, f"{name}.grad is zero or not finite")
    assert_close(got["names"], ["attention_norm.weight", "attention_norm.bias", "attention.query.weight",
                                "attention.key.weight", "attention.value.weight", "attention.output.weight",
                                "feed_forward_norm.weight", "feed_forward_norm.bias", "feed_forward.up.weight",
                                "feed_forward.up.bias", "feed_forward.down.weight", "feed_forward.down.bias"],
                 EXACT, "Block parameter names with norm='layer', feed_forward='gelu'")


def probe_block_gradcheck(m, x: np.ndarray, upstream: np.ndarray, seed: int) -> dict:
    """RMSNorm + SwiGLU + grouped-query attention (2 query heads, 1 key/value head) + rotary; width 4, float64."""
    block = m.Block(4, 2, 1, rng=seeded(seed), norm="rms", feed_forward="swiglu", rotary=True, max_positions=8)
    randomise_parameters(block, seed + 1)
    leaf = m.Tensor(x, requires_grad=True, dtype=np.float64)
    block(leaf).backward(upstream)

    def loss() -> float:
        return float((block(m.Tensor(x, dtype=np.float64)).data * upstream).sum())

    named = block.named_parameters()
    return {"grads": {"x": leaf.grad, **{name: p.grad for name, p in named}},
            "numeric": {"x": central_difference(loss, x), **{name: central_difference(loss, p.data)
                                                             for name, p in named}}}


@pytest.mark.concept("block-gradients")
def test_rms_swiglu_gqa_rotary_block_gradcheck(check):
    rng = seeded(811)
    x, upstream = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 3, 4))
    got = check(probe_block_gradcheck, x=x, upstream=upstream, seed=812, tol=COMPOSED, what="tiny Block gradients")
    for name, numeric in got["numeric"].items():
        assert_close(got["grads"][name], numeric, GRADCHECK, f"d/d{name} of the tiny Block (backward vs central "
                     "differences)")


def probe_block_dropout(m, x: np.ndarray, seed: int) -> dict:
    with_dropout, without = _block(m, DEFAULT, seed, dropout=0.5), _block(m, DEFAULT, seed)
    randomise_parameters(with_dropout, seed + 1)
    randomise_parameters(without, seed + 1)
    h = m.Tensor(x, dtype=np.float64)
    training = with_dropout(h).data
    with_dropout.eval()
    return {"train": training, "eval": with_dropout(h).data, "without": without(h).data}


@pytest.mark.concept("block-dropout")
def test_block_dropout_acts_while_training_and_is_the_identity_in_eval(target, reference):
    x = seeded(821).normal(size=(2, 4, 8))
    for who in (target, reference):  # the masks depend on the generator's draws so far: compare within one target
        got = who.run(probe_block_dropout, x=x, seed=822)
        assert_close(got["eval"], got["without"], COMPOSED, f"{who.target}: Block(dropout=0.5) in eval mode vs "
                     "Block(dropout=0.0) with the same parameters")
        assert_true(np.abs(got["train"] - got["without"]).max() > 1e-3,
                    f"{who.target}: Block(dropout=0.5) in training mode should drop something")
