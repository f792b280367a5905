"""Stage 06 helpers shared by the visible suites, the hidden one and later stages (a helper exists once): the
probes of the fused attention, RoPE and ALiBi, plain NumPy versions of each (test-side, the forward oracles), the
mistakes their signatures reveal, a module builder, and a key/value cache grown by concatenation."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from grader.harness import F64, GRADCHECK, Mistake, assert_close, central_difference, seeded, sibling


def attention_inputs(seed: int, B: int, H: int, Hkv: int, T: int, S: int, Dh: int, bias_shape=None) -> dict:
    """q, k, v, an upstream gradient `weights` (the loss is sum(out * weights)) and an optional bias; float64."""
    rng = seeded(seed)
    inputs = {"q": rng.standard_normal((B, H, T, Dh)), "k": rng.standard_normal((B, Hkv, S, Dh)),
              "v": rng.standard_normal((B, Hkv, S, Dh)), "weights": rng.standard_normal((B, H, T, Dh)), "bias": None}
    if bias_shape is not None:
        inputs["bias"] = rng.standard_normal(bias_shape)
    return inputs


def probe_attention(m, q, k, v, weights, causal: bool = False, bias=None, dtype: str = "float64") -> dict:
    """The fused op's output and backward()'s gradients of L = sum(out * weights) for q, k and v."""
    tensor = sibling(m, "tensor")
    leaves = [tensor.Tensor(x.astype(dtype), requires_grad=True, dtype=dtype) for x in (q, k, v)]
    out = m.scaled_dot_product_attention(*leaves, causal=causal, bias=bias)
    out.backward(weights.astype(dtype))
    result = {"out": out.data}
    for name, leaf in zip("qkv", leaves):
        result[f"grad_{name}"] = leaf.grad
    return result


def probe_attention_numeric(m, q, k, v, weights, causal: bool = False, bias=None) -> dict:
    """Central differences of L = sum(out * weights) through the target's forward pass, in float64."""
    tensor = sibling(m, "tensor")
    arrays = [q, k, v]  # perturbed in place by central_difference

    def loss() -> float:
        constants = [tensor.Tensor(x, dtype=np.float64) for x in arrays]
        return float((m.scaled_dot_product_attention(*constants, causal=causal, bias=bias).data * weights).sum())

    return {f"grad_{name}": central_difference(loss, x) for name, x in zip("qkv", arrays)}


def probe_composed_attention(m, q, k, v, weights, causal: bool = False, bias=None) -> dict:
    """The same attention composed from primitive tensor ops: matmul, softmax, indexing and adding a constant mask.

    Slow and memory-hungry (k and v are copied per query head, every step is its own node) but obviously right.
    """
    tensor = sibling(m, "tensor")
    Q, K, V = (tensor.Tensor(x, requires_grad=True, dtype=np.float64) for x in (q, k, v))
    (B, H, T, Dh), (Hkv, S) = q.shape, k.shape[1:3]
    kv_head = np.arange(H) // (H // Hkv)  # query head h reads key/value head h // (H / Hkv)
    keys, values = K[:, kv_head], V[:, kv_head]  # (B, H, S, Dh): copies; indexing sums their gradients back
    scores = (Q @ keys.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(Dh))  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if causal:
        visible = np.tri(T, S, S - T, dtype=bool)  # key j <= S - T + i
        scores = scores + np.where(visible, 0.0, -1e30)  # exp(-1e30 - max) is exactly 0 in float64
    out = tensor.softmax(scores, axis=-1) @ values  # (B, H, T, Dh)
    out.backward(weights)
    return {"out": out.data, "grad_q": Q.grad, "grad_k": K.grad, "grad_v": V.grad}


def numpy_attention(q, k, v, weights, causal=False, bias=None, *, scale=None, grouping="consecutive",
                    top_left_mask=False, softmax_axis=-1, rowsum=True, backward_scale=True, sum_groups=True) -> dict:
    """A plain NumPy attention with its backward (test-side), and the usual mistakes as switches.

    With the defaults it is the right answer; the switches produce the signatures the `Mistake`s below recognise.
    """
    (B, H, T, Dh), (Hkv, S) = q.shape, k.shape[1:3]
    G = H // Hkv
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale
    kv_head = np.arange(H) // G if grouping == "consecutive" else np.arange(H) % Hkv
    keys, values = k[:, kv_head], v[:, kv_head]  # (B, H, S, Dh)
    scores = q @ keys.swapaxes(-1, -2) * scale  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = np.where(np.tri(T, S, 0 if top_left_mask else S - T, dtype=bool), scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=softmax_axis, keepdims=True))
    probs = probs / probs.sum(axis=softmax_axis, keepdims=True)
    out = probs @ values
    grad_values = probs.swapaxes(-1, -2) @ weights  # (B, H, S, Dh)
    grad_p = weights @ values.swapaxes(-1, -2)
    grad_s = probs * (grad_p - (grad_p * probs).sum(axis=-1, keepdims=True)) if rowsum else probs * grad_p
    grad_s = grad_s * scale if backward_scale else grad_s
    grad_keys = grad_s.swapaxes(-1, -2) @ q  # (B, H, S, Dh)
    if sum_groups:
        grad_k, grad_v = np.zeros_like(k), np.zeros_like(v)
        np.add.at(grad_k, (slice(None), kv_head), grad_keys)
        np.add.at(grad_v, (slice(None), kv_head), grad_values)
    else:  # only the first query head of each group
        grad_k, grad_v = grad_keys[:, ::G], grad_values[:, ::G]
    return {"out": out, "grad_q": grad_s @ keys, "grad_k": grad_k, "grad_v": grad_v}


def signature(wrong: dict, keys) -> Callable:
    """A `Mistake.matches` that recognises `wrong` on `keys`, in a probe's dict or in one of its arrays."""
    def matches(got, want) -> bool:
        if not isinstance(got, dict):
            got, want = {keys[0]: got}, {keys[0]: want}
            if len(keys) != 1:
                return False
        return all(np.shape(got[key]) == np.shape(wrong[key]) and np.allclose(got[key], wrong[key], rtol=1e-6,
                                                                               atol=1e-9) for key in keys)
    return matches


def attention_mistakes(inputs: dict, keys=("out", "grad_q", "grad_k", "grad_v")) -> tuple:
    """The mistakes whose exact signature these inputs can show, judged on `keys` of probe_attention's result."""
    q, k, bias = inputs["q"], inputs["k"], inputs.get("bias")
    H, T, Dh, Hkv, S = q.shape[1], q.shape[2], q.shape[3], k.shape[1], k.shape[2]
    causal = inputs.get("causal", False)
    forward, backward = ("out",), ("grad_q", "grad_k", "grad_v")
    variants = [
        ("the scores are not scaled: divide q kᵀ by sqrt(Dh)", forward, {"scale": 1.0}),
        ("the scores are divided by Dh; the scale is 1 / sqrt(Dh)", forward, {"scale": 1.0 / Dh}),
        ("softmax runs over the query axis; it must normalise over the keys (the last axis)", forward,
         {"softmax_axis": -2}),
        ("dS = P ⊙ dP misses the softmax term: dS = P ⊙ (dP − rowsum(dP ⊙ P))", backward, {"rowsum": False}),
        ("dQ and dK miss the factor 1/sqrt(Dh) of the forward's scale", backward, {"backward_scale": False}),
        ("query heads are grouped round-robin (h % Hkv); query head h must use key/value head h // (H / Hkv)",
         forward, {"grouping": "round-robin"}),
        ("dK and dV keep the first query head of each group; they must SUM over the group's query heads",
         backward, {"sum_groups": False}),
        ("the causal mask ignores cached keys: query i sits at position S - T + i, so use np.tri(T, S, S - T), "
         "not np.tri(T, S)", forward, {"top_left_mask": True}),
    ]
    arrays = {name: inputs[name] for name in ("q", "k", "v", "weights")}
    with np.errstate(invalid="ignore"):  # a softmax over the wrong axis may meet a column of -inf
        right = numpy_attention(**arrays, causal=causal, bias=bias)
        found = []
        for description, changed, switches in variants:
            found.append((description, changed, numpy_attention(**arrays, causal=causal, bias=bias, **switches)))
        if bias is not None:
            found.append(("the bias is scaled with the scores; add it to q kᵀ / sqrt(Dh), after the scaling",
                          forward, numpy_attention(**arrays, causal=causal, bias=bias / math.sqrt(Dh))))
    mistakes = []
    for description, changed, wrong in found:
        judged = tuple(key for key in keys if key in changed)
        if judged and not signature(right, judged)(wrong, None):  # skip a mistake these inputs cannot reveal
            mistakes.append(Mistake(description, signature(wrong, judged)))
    return tuple(mistakes)


def judge_attention(target, reference, what: str, **inputs) -> dict:
    """Forward vs the reference; backward vs central differences of the target's own forward; backward vs reference;
    and all of it vs the test's own NumPy attention."""
    mistakes = attention_mistakes(inputs)
    got = target.run(probe_attention, **inputs)
    want = reference.run(probe_attention, **inputs)
    assert_close(got["out"], want["out"], F64, f"{what}: output", attention_mistakes(inputs, keys=("out",)))
    numeric = target.run(probe_attention_numeric, **inputs)
    for name in ("grad_q", "grad_k", "grad_v"):
        assert_close(got[name], numeric[name], GRADCHECK,
                     f"{what}: {name} from backward() vs central differences of your own forward",
                     attention_mistakes(inputs, keys=(name,)))
    assert_close(got, want, F64, what, mistakes)
    assert_close(got, numpy_attention(**inputs), F64, f"{what} vs a plain NumPy attention")
    return got


def probe_outputs(m, q, k, v, causal: bool = True, bias=None) -> np.ndarray:
    tensor = sibling(m, "tensor")
    return m.scaled_dot_product_attention(*(tensor.Tensor(x, dtype=np.float64) for x in (q, k, v)),
                                          causal=causal, bias=bias).data


def numpy_rope(x: np.ndarray, offset: int = 0, base: float = 10000.0, interleaved: bool = False,
               inverse: bool = False) -> np.ndarray:
    """Test-side RoPE: rotate (x_i, x_{i + Dh/2}) (or neighbours, `interleaved`, a mistake) by (offset + t) θ_i."""
    Dh, T = x.shape[-1], x.shape[-2]
    theta = base ** (-np.arange(0, Dh, 2) / Dh)  # (Dh/2,)
    angles = (offset + np.arange(T))[:, None] * theta * (-1 if inverse else 1)  # (T, Dh/2)
    c, s = np.cos(angles), np.sin(angles)
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :Dh // 2], x[..., Dh // 2:])
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = a * c - b * s, b * c + a * s
    else:
        out[..., :Dh // 2], out[..., Dh // 2:] = a * c - b * s, b * c + a * s
    return out


def probe_rope(m, x, weights, max_positions: int, base: float = 10000.0, offset: int = 0) -> dict:
    """The tables, apply_rope's output and backward()'s gradient of L = sum(out * weights), in float64."""
    tensor = sibling(m, "tensor")
    cos, sin = m.rope_cache(x.shape[-1], max_positions, base)
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
    out = m.apply_rope(leaf, cos, sin, offset=offset)
    out.backward(weights)
    return {"cos": np.asarray(cos), "sin": np.asarray(sin), "out": out.data, "grad": leaf.grad}


def looks_like(expected: np.ndarray, key: str = "out"):
    """A `Mistake.matches` recognising `expected` as a probe's `key` entry or as the array judged itself."""
    def matches(got, want) -> bool:
        got = got[key] if isinstance(got, dict) else got
        return np.shape(got) == np.shape(expected) and np.allclose(got, expected)
    return matches


def rope_mistakes(x: np.ndarray, offset: int = 0, base: float = 10000.0, key: str = "out") -> tuple:
    return (
        Mistake("pairs are neighbours (x[2i], x[2i+1]); this stage rotates (x[i], x[i + Dh/2]) (rotate half)",
                looks_like(numpy_rope(x, offset, base, interleaved=True), key)),
        Mistake("positions start at 1; they are 0-indexed (the first token is not rotated)",
                looks_like(numpy_rope(x, offset + 1, base), key)),
        Mistake("the rotation goes the wrong way: out_a = a cos - b sin, out_b = b cos + a sin",
                looks_like(numpy_rope(x, offset, base, inverse=True), key)),
    )


def probe_rope_numeric(m, x, weights, max_positions: int, offset: int = 0) -> np.ndarray:
    tensor = sibling(m, "tensor")
    cos, sin = m.rope_cache(x.shape[-1], max_positions)
    return central_difference(
        lambda: float((m.apply_rope(tensor.Tensor(x, dtype=np.float64), cos, sin, offset=offset).data * weights).sum()),
        x)


def probe_alibi(m, heads: int, T: int, S: int) -> np.ndarray:
    return np.asarray(m.alibi_bias(heads, T, S))


def alibi_mistakes(slopes: np.ndarray, T: int, S: int) -> tuple:
    def bias(slopes, offset):
        return slopes[:, None, None] * (np.arange(S)[None, :] - (offset + np.arange(T))[:, None])
    H = len(slopes)
    mistakes = [
        Mistake("the sign is flipped: the bias is slope · (j − i), negative for keys in the past",
                looks_like(-bias(slopes, S - T))),
        Mistake("the slopes are in reverse order: head 0 has the steepest slope, 2^(-8/H)",
                looks_like(bias(slopes[::-1], S - T))),
        Mistake("the heads are counted from 0: slope_h = 2^(-8h/H) for h = 1..H, so head 0 has 2^(-8/H), not 1",
                looks_like(bias(2.0 ** (-8.0 * np.arange(H) / H), S - T))),
    ]
    if S != T:
        mistakes.append(Mistake("query i is placed at position i; with S > T keys it sits at S − T + i",
                                looks_like(bias(slopes, 0))))
    return tuple(mistakes)


def build(m, width: int, heads: int, kv_heads, seed: int, rotary: bool = False, causal: bool = True,
          bias: bool = False, float64: bool = True):
    """A MultiHeadAttention from a seed, its parameters cast to float64 (the probes compare in float64)."""
    module = m.MultiHeadAttention(width, heads, kv_heads, rng=np.random.default_rng(seed), rotary=rotary,
                                  max_positions=16, causal=causal, bias=bias)
    if float64:
        for parameter in module.parameters():
            parameter.data = parameter.data.astype(np.float64)
    return module


def probe_module(m, x, weights, width: int, heads: int, kv_heads, seed: int, rotary: bool = False,
                 causal: bool = True, bias: bool = False, numeric: bool = False) -> dict:
    """Output, parameters, and gradients of L = sum(out * weights) (and central differences for x, if asked)."""
    tensor = sibling(m, "tensor")
    module = build(m, width, heads, kv_heads, seed, rotary, causal, bias)
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
    out = module(leaf)
    out.backward(weights)
    result = {"out": out.data, "grad_x": leaf.grad,
              "parameters": {name: p.data for name, p in module.named_parameters()},
              "grads": {name: p.grad for name, p in module.named_parameters()}}
    if numeric:
        result["numeric_x"] = central_difference(
            lambda: float((module(tensor.Tensor(x, dtype=np.float64)).data * weights).sum()), x)
    return result


def numpy_module(x: np.ndarray, parameters: dict, heads: int, kv_heads: int, rotary: bool, causal: bool,
                 split_heads_wrong: bool = False) -> np.ndarray:
    """Multi-head attention in plain NumPy from the module's own weights (test-side)."""
    B, T, width = x.shape
    Dh = width // heads

    def project(name: str, y: np.ndarray) -> np.ndarray:
        return y @ parameters[f"{name}.weight"] + parameters.get(f"{name}.bias", 0.0)

    def split(y: np.ndarray, n: int) -> np.ndarray:  # (B, T, n·Dh) -> (B, n, T, Dh)
        return y.reshape(B, n, T, Dh) if split_heads_wrong else y.reshape(B, T, n, Dh).transpose(0, 2, 1, 3)

    q = split(project("query", x), heads)  # (B, H, T, Dh)
    k, v = split(project("key", x), kv_heads), split(project("value", x), kv_heads)  # (B, Hkv, T, Dh)
    if rotary:
        q, k = numpy_rope(q), numpy_rope(k)
    y = numpy_attention(q, k, v, np.zeros_like(q), causal=causal)["out"]  # (B, H, T, Dh)
    return project("output", y.transpose(0, 2, 1, 3).reshape(B, T, heads * Dh))


class GrowingCache:
    """A key/value cache with the interface MultiHeadAttention.forward documents (`length`, `update(layer, k, v)`;
    `advance(steps)` for GPT.forward), grown by concatenation: test-side and obviously right, where stage 11's KVCache
    is preallocated. Shared with the suites of stages 07 and 09."""

    def __init__(self) -> None:
        self.length, self.keys, self.values = 0, {}, {}

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        past_keys = self.keys.get(layer, k[:, :, :0])[:, :, :self.length]  # (B, Hkv, length, Dh)
        past_values = self.values.get(layer, v[:, :, :0])[:, :, :self.length]
        self.keys[layer] = np.concatenate([past_keys, k], axis=2)  # (B, Hkv, length + T, Dh)
        self.values[layer] = np.concatenate([past_values, v], axis=2)
        return self.keys[layer], self.values[layer]

    def advance(self, steps: int) -> None:
        self.length += steps
