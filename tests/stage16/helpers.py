"""Stage 16 helpers shared by the visible suites and the hidden one (a helper exists once): seeded weights with
adversarial columns, float64 models on the target's own earlier stages, a scripted generator, the probes both suites
run, and the tolerances with their reasons."""
from __future__ import annotations

import numpy as np

from grader.harness import Tol, seeded, sibling
from tests.stage09.helpers import model_of  # noqa: F401 (the suites import it from here)

TINY = {"vocab_size": 11, "context": 24, "layers": 2, "heads": 4, "width": 16}  # small enough for many probes
DRAFT = dict(TINY, layers=1)


# The error bound |w - q·s| <= s/2 holds in exact arithmetic. The dequantized weight is a float32 product q·s, rounded
# once: at most 2^-24 relative, |q·s| <= |w| + s/2. The allowance is twice that, 2^-23 (|w| + s): a rounding, never a
# wrong step (a wrong rounding or a clipped outlier errs by a whole fraction of s, millions of times more).
def bound_allowance(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return 2.0**-23 * (np.abs(w) + scale)



# float64 models: padding masks add exact zeros (exp(-inf) = 0) but the matmuls sum over more keys in another order,
# so only the last digits may differ from the sequence run alone.
PADDED = Tol(1e-10, 1e-12, "float64; masked keys add exact zeros, but the sums run over more keys in another order")
PROBABILITY = Tol(0.0, 4e-16, "float64 probabilities of size <= 1; a handful of roundings of 2^-53 each")


def weights_with_outliers(seed: int, rows: int, columns: int) -> np.ndarray:
    """Gaussian weights (rows, columns) whose column 1 is all zeros and column 2 holds one outlier 1000x the rest;
    the last column's largest magnitude is negative (the symmetric scale must use |w|, not max w)."""
    w = seeded(seed).standard_normal((rows, columns))
    w[:, 1] = 0.0
    w[rows // 3, 2] = 1000.0
    w[rows // 2, -1] = -40.0
    return w


class ScriptedRng:
    """A generator whose random() returns the given numbers in order: the accept/reject rule made visible."""

    def __init__(self, draws: list) -> None:
        self.draws, self.used = list(draws), 0

    def random(self, *args):
        if args:
            raise AssertionError("accept_drafts draws one number per call: rng.random(), no shape")
        self.used += 1
        return self.draws.pop(0)


# ---------------------------------------------------------------- probes


def probe_int8(m, w: np.ndarray) -> dict:
    q, scale = m.quantize_int8(w)
    deq = m.dequantize_int8(q, scale)
    return {"q": q, "scale": scale, "deq": deq, "dtypes": [str(q.dtype), str(scale.dtype), str(deq.dtype)]}


def probe_int4(m, w: np.ndarray, group: int) -> dict:
    packed, scale = m.quantize_int4(w, group)
    deq = m.dequantize_int4(packed, scale, w.shape[0])
    return {"packed": packed, "scale": scale, "deq": deq, "q": m.unpack_int4(packed),
            "dtypes": [str(packed.dtype), str(scale.dtype), str(deq.dtype)]}


def probe_pack(m, q: np.ndarray) -> dict:
    packed = m.pack_int4(q)
    return {"packed": packed, "dtype": str(packed.dtype), "unpacked": m.unpack_int4(packed)}


def probe_quantized_linear(m, w: np.ndarray, bias: np.ndarray, x: np.ndarray, bits: int, group: int) -> dict:
    nn, tensor = sibling(m, "nn"), sibling(m, "tensor")
    linear = nn.Linear(w.shape[0], w.shape[1], rng=seeded(0), dtype=np.float32)
    linear.weight.data[...] = w
    linear.bias.data[...] = bias
    layer = m.QuantizedLinear(linear, bits=bits, group=group)
    with tensor.no_grad():
        y = layer(tensor.Tensor(x, dtype=np.float32)).data
    return {"y": y, "weight": layer.weight(), "nbytes": layer.nbytes(), "dtype": str(y.dtype)}


def probe_quantized_model(m, fields: dict, seed: int, bits: int, group: int, ids: np.ndarray) -> dict:
    nn, tensor = sibling(m, "nn"), sibling(m, "tensor")
    model = sibling(m, "gpt").GPT(sibling(m, "gpt").GPTConfig(**fields), rng=seeded(seed))  # float32 as built
    before = m.weight_bytes(model)
    m.quantize_model(model, bits, group)
    left = []
    pending = [model]
    while pending:  # every Linear left anywhere in the tree (there must be none)
        node = pending.pop()
        for value in vars(node).values():
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(item, nn.Linear):
                    left.append(type(item).__name__)
                elif isinstance(item, nn.Module):
                    pending.append(item)
    with tensor.no_grad():
        logits = model(ids)[0].data
    return {"bytes_before": before, "bytes_after": m.weight_bytes(model), "linears_left": left, "logits": logits}


def probe_truncate(m, fields: dict, seed: int, ids: np.ndarray, keep: int, again: np.ndarray) -> dict:
    """Feed ids, truncate to `keep`, feed `again`: the logits must be those of ids[:, :keep] + again in one pass."""
    model = model_of(m, fields, seed)
    generate = sibling(m, "generate")
    cache = m.SpeculativeCache.for_model(model, ids.shape[0])
    generate.forward_cached(model, ids, cache)
    cache.truncate(keep)
    length = cache.length
    logits = generate.forward_cached(model, again, cache)
    return {"length_after_truncate": length, "length": cache.length, "logits": logits}


def probe_accept(m, target_probs: np.ndarray, draft_probs: np.ndarray, drafts: list, draws: list) -> dict:
    rng = ScriptedRng(draws)
    accepted, token = m.accept_drafts(target_probs, draft_probs, np.array(drafts, dtype=np.int64), rng)
    return {"accepted": int(accepted), "token": int(token), "draws_used": rng.used}


def probe_first_token_distribution(m, p: np.ndarray, q: np.ndarray) -> dict:
    """The exact law of the first emitted token for one draft (k = 1): draw d ~ q, accept with min(1, p(d)/q(d)),
    else draw from residual(p, q):  P(x) = q(x) min(1, p(x)/q(x)) + (1 - sum_d q(d) min(1, p(d)/q(d))) r(x)."""
    r = m.residual(p, q)
    accept = np.where(q > 0, np.minimum(1.0, p / np.where(q > 0, q, 1.0)), 0.0)  # (V,)
    kept = q * accept  # (V,) = min(p, q)
    return {"residual": r, "law": kept + (1.0 - kept.sum()) * r}


def probe_speculative(m, fields: dict, draft_fields: dict, seeds: list, prompt: np.ndarray, tokens: int, k: int,
                      temperature: float, rng_seed: int) -> dict:
    target, draft = model_of(m, fields, seeds[0]), model_of(m, draft_fields, seeds[1])
    ids, stats = m.speculative_generate(target, draft, prompt, tokens, rng=seeded(rng_seed), k=k,
                                       temperature=temperature)
    alone = sibling(m, "generate").generate(target, prompt, tokens, rng=seeded(rng_seed), temperature=0.0)
    return {"ids": ids, "stats": {key: int(stats[key]) for key in ("rounds", "drafted", "accepted",
                                                                    "target_forwards")},
            "target_alone_greedy": alone}


def probe_padded_forward(m, fields: dict, seed: int, ids: np.ndarray, pads: list) -> dict:
    """padded_forward on left-padded rows against each row's real tokens run alone through the model."""
    model = model_of(m, fields, seed)
    tensor = sibling(m, "tensor")
    cache = sibling(m, "generate").KVCache.for_model(model, ids.shape[0])
    logits = m.padded_forward(model, ids, np.array(pads, dtype=np.int64), cache)
    alone = []
    with tensor.no_grad():
        for row, pad in enumerate(pads):
            alone.append(model(ids[row:row + 1, pad:])[0].data[0])
    return {"rows": [logits[row, pad:] for row, pad in enumerate(pads)], "alone": alone, "length": cache.length}


def probe_batched(m, fields: dict, seed: int, prompts: list, tokens: int) -> dict:
    model = model_of(m, fields, seed)
    together = m.batched_generate(model, [np.array(p, dtype=np.int64) for p in prompts], tokens)
    generate = sibling(m, "generate")
    alone = [generate.generate(model, np.array(p, dtype=np.int64), tokens, rng=seeded(0), temperature=0.0)
             for p in prompts]
    return {"together": list(together), "alone": alone}


def _softmax64(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _cell_middles(probs: np.ndarray) -> list:
    """For each token with probability > 0, the u in the middle of its inverse-CDF interval [c_{x-1}, c_x)."""
    upper = np.cumsum(probs)
    lower = upper - probs
    return [(x, (lower[x] + upper[x]) / 2) for x in range(probs.size) if probs[x] > 0]


def probe_pipeline_first_token(m, fields: dict, draft_fields: dict, seeds: list, prompt: np.ndarray) -> dict:
    """The exact law of the first token speculative_generate emits (k = 1, temperature 1), cell by cell.

    The three uniforms it draws (the draft's token, accept or not, the residual's token) cut [0, 1)^3 into cells on
    which its output is constant: run it once per cell with u at the cell's middle (a ScriptedRng) and add the cell's
    probability, q(d) · a_d (accepted) or q(d) · (1 - a_d) · r_d(x) (rejected, then x), to the token it emitted.
    a_d = min(1, p(d)/q(d)) and r = max(0, p - q) / sum are the documented rule, computed here, not by the target."""
    target, draft = model_of(m, fields, seeds[0]), model_of(m, draft_fields, seeds[1])
    tensor = sibling(m, "tensor")
    with tensor.no_grad():
        p = _softmax64(target(prompt[None, :])[0].data[0, -1].astype(np.float64))  # (V,)
        q = _softmax64(draft(prompt[None, :])[0].data[0, -1].astype(np.float64))
    left = np.maximum(p - q, 0.0)
    r = left / left.sum()
    law = np.zeros_like(p)

    def first(draws):
        ids, _ = m.speculative_generate(target, draft, prompt, 2, rng=ScriptedRng(draws + [0.5] * 4), k=1,
                                        temperature=1.0)
        return int(ids[prompt.size])

    for d, u_draft in _cell_middles(q):
        accept = min(1.0, p[d] / q[d])
        if accept > 0:
            law[first([u_draft, accept / 2])] += q[d] * accept
        if accept < 1:
            for x, u_residual in _cell_middles(r):
                law[first([u_draft, (1 + accept) / 2, u_residual])] += q[d] * (1 - accept) * r[x]
    return {"law": law, "target": p}
