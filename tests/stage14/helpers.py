"""Stage 14 helpers shared by the visible suites and the hidden one (a helper exists once): float64 models on the
target's own earlier stages, the probes both suites run, test-side references (the LoRA formula, the masked targets,
the packing mask), and the tolerances with their reasons."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from grader.harness import Tol, central_difference, randomise_parameters, raised, seeded, sibling
from tests.stage09.helpers import model_of  # noqa: F401 (the suites import it from here)

TINY = {"vocab_size": 11, "context": 24, "layers": 2, "heads": 4, "width": 16}  # small enough for many probes
LEARNED = dict(TINY, position="learned", norm="layer", feed_forward="gelu", kv_heads=2)
TEXT = "abcdefgh 0123456789:"  # a character vocabulary of 20 symbols for the chat template's tests
IGNORE = -100

# merge adds D = scale · A B to W and unmerge subtracts it: (W + D) - D equals W up to two roundings of numbers of
# size |W| + |D| (<= ~5 here), each at most 2^-53 relative: 4e-15 is a few ulps, never a missing or doubled update.
ROUND_TRIP = Tol(0.0, 4e-15, "float64: (W + D) - D is W up to two roundings of ~|W| + |D|")
# The merged layer computes x (W + D) and the unmerged one x W + (x A) B s: the same sums in another order, float64.
MERGED = Tol(1e-12, 1e-13, "float64; x (W + s A B) and x W + (x A) B s differ only in the order of the sums")
# A packed example and the same example alone: masked keys add exact zeros (exp(-inf) = 0), but the attention sums
# run over more keys in another order, so only the last digits may differ.
PACKED = Tol(1e-10, 1e-12, "float64; masked keys add exact zeros, but the sums run over more keys in another order")
# GPT.load builds a float32 model: the saved float64 weights rounded to float32 (2^-24 relative) move logits of size
# ~3 by ~1e-6; a lost or doubled adapter, or a wrong row, moves them by O(0.1).
RELOADED = Tol(1e-5, 1e-5, "GPT.load keeps float32: the float64 weights rounded to float32 (2^-24 relative)")
# float64 gradients and central differences (eps 1e-6) of forwards that agree to ~1e-15 agree to ~1e-8 relative
GRADIENTS = Tol(1e-6, 1e-8, "float64 backward vs central differences with eps 1e-6: truncation O(eps²), rounding "
                            "O(1e-16 / eps)")


def saved_and_loaded(m, model):
    """The model GPT.save writes, read back by the target's own GPT.load (stage 09) from a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        return sibling(m, "gpt").GPT.load(path)


def linear_of(m, fan_in: int, fan_out: int, seed: int, bias: bool = True):
    """The target's own stage-04 Linear, float64, with seeded weight and bias."""
    nn = sibling(m, "nn")
    linear = nn.Linear(fan_in, fan_out, bias=bias, rng=seeded(seed), dtype=np.float64)
    rng = seeded(seed + 1)
    linear.weight.data[...] = rng.standard_normal((fan_in, fan_out))
    if bias:
        linear.bias.data[...] = rng.standard_normal(fan_out)
    return linear


def chat_of(m):
    """ChatTokenizer around the target's stage-01 CharTokenizer of TEXT (20 symbols: specials at 20, 21, 22)."""
    return m.ChatTokenizer(sibling(m, "ngram").CharTokenizer(TEXT))


def lora_formula(x: np.ndarray, w: np.ndarray, b: np.ndarray, a: np.ndarray, bb: np.ndarray, scale: float):
    """y = x W + b + (x A) B · scale, in NumPy (test-side)."""
    return x @ w + b + (x @ a) @ bb * scale


def masked_targets(ids, mask) -> list:
    """The SFT targets by the rule, test-side: position t scores ids[t + 1] when mask[t + 1], else -100."""
    return [int(ids[t + 1]) if mask[t + 1] else IGNORE for t in range(len(ids) - 1)]


def block_causal(segments: np.ndarray) -> np.ndarray:
    """visible[b, i, j] = same segment and j <= i, test-side, as booleans (B, T, T)."""
    T = segments.shape[1]
    return (segments[:, :, None] == segments[:, None, :]) & (np.arange(T)[None, :] <= np.arange(T)[:, None])


# ---------------------------------------------------------------- LoRA probes


def _set_adapter(layer, a: np.ndarray | None, b: np.ndarray | None) -> None:
    if a is not None:
        layer.A.data[...] = a
    if b is not None:
        layer.B.data[...] = b


def probe_lora_init(m, fan_in: int, fan_out: int, rank: int, alpha: float, seed: int, x: np.ndarray) -> dict:
    """A fresh LoRALinear: its shapes, scale, draws, trainable names, frozen base, and its output against the base."""
    tensor = sibling(m, "tensor")
    base = linear_of(m, fan_in, fan_out, seed)
    with tensor.no_grad():
        before = base(tensor.Tensor(x, dtype=np.float64)).data
    layer = m.LoRALinear(base, rank, alpha, rng=seeded(seed + 2))
    with tensor.no_grad():
        after = layer(tensor.Tensor(x, dtype=np.float64)).data
    return {"A": layer.A.data, "B": layer.B.data, "scale": float(layer.scale), "merged": bool(layer.merged),
            "names": [name for name, _ in layer.named_parameters()], "dtypes": [str(layer.A.dtype), str(layer.B.dtype)],
            "base_requires_grad": [bool(base.weight.requires_grad), bool(base.bias.requires_grad)],
            "out": after, "base_out": before}


def probe_lora_forward(m, fan_in: int, fan_out: int, rank: int, alpha: float, seed: int, a: np.ndarray,
                       b: np.ndarray, x: np.ndarray) -> dict:
    """A LoRALinear with given A, B: output, then merged (output, weight), then unmerged (output, weight)."""
    tensor = sibling(m, "tensor")
    base = linear_of(m, fan_in, fan_out, seed)
    weight = base.weight.data.copy()
    layer = m.LoRALinear(base, rank, alpha, rng=seeded(seed + 2))
    _set_adapter(layer, a, b)
    xs = tensor.Tensor(x, dtype=np.float64)
    with tensor.no_grad():
        out = layer(xs).data
        layer.merge()
        merged_out, merged_weight, merged_flag = layer(xs).data, base.weight.data.copy(), bool(layer.merged)
        layer.unmerge()
        unmerged_out = layer(xs).data
    return {"out": out, "merged_out": merged_out, "merged_weight": merged_weight, "merged_flag": merged_flag,
            "unmerged_out": unmerged_out, "unmerged_weight": base.weight.data.copy(), "weight": weight,
            "bias": base.bias.data.copy(), "flag_after_unmerge": bool(layer.merged)}


def probe_lora_refusals(m, calls: list) -> dict:
    """Calls on a fresh layer, the last one recorded: ["merge", "merge"] (refused), ["merge", "unmerge"] (accepted)."""
    layer = m.LoRALinear(linear_of(m, 3, 2, 1401), 2, 4.0, rng=seeded(1402))
    for name in calls[:-1]:
        getattr(layer, name)()
    return raised(getattr(layer, calls[-1]), mentions=(["merged", "merge"],))


def probe_lora_rank_refusal(m, rank: int) -> dict:
    return raised(m.LoRALinear, linear_of(m, 3, 2, 1403), rank, 1.0, rng=seeded(1404), mentions=("rank",))


def probe_lora_gradients(m, fan_in: int, fan_out: int, rank: int, alpha: float, seed: int, a: np.ndarray,
                         b: np.ndarray, x: np.ndarray, upstream: np.ndarray) -> dict:
    """Backward of L = sum(layer(x) · upstream) to A, B and x; the base's grads; central differences of L."""
    tensor = sibling(m, "tensor")
    base = linear_of(m, fan_in, fan_out, seed)
    layer = m.LoRALinear(base, rank, alpha, rng=seeded(seed + 2))
    _set_adapter(layer, a, b)
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
    (layer(leaf) * tensor.Tensor(upstream, dtype=np.float64)).sum().backward()
    grads = {"A": layer.A.grad, "B": layer.B.grad, "x": leaf.grad}
    frozen = [base.weight.grad is None, base.bias.grad is None]

    def loss() -> float:  # reads A, B and x, which central_difference perturbs in place
        with tensor.no_grad():
            return float((layer(tensor.Tensor(x_array, dtype=np.float64)).data * upstream).sum())

    x_array = x.copy()
    numeric = {"A": central_difference(loss, layer.A.data), "B": central_difference(loss, layer.B.data),
               "x": central_difference(loss, x_array)}
    return {"grads": grads, "numeric": numeric, "base_grad_is_none": frozen}


def probe_apply_lora(m, fields: dict, seed: int, rank: int, alpha: float, targets: list, ids: np.ndarray,
                     b_seed: int) -> dict:
    """apply_lora on a float64 GPT: trainable names and counts, logits at B = 0, with random B (set by sorted name),
    after merge_lora, and after a save/load round trip; the parameter names after merge_lora."""
    tensor = sibling(m, "tensor")
    model = model_of(m, fields, seed)
    with tensor.no_grad():
        base_logits = model(ids)[0].data
    names_before = [name for name, _ in model.named_parameters()]
    m.apply_lora(model, rank, alpha, rng=seeded(seed + 5), targets=tuple(targets))
    names = [name for name, _ in model.named_parameters()]
    counts = [int(m.trainable_parameters(model)), int(m.total_parameters(model))]
    with tensor.no_grad():
        init_logits = model(ids)[0].data
    rng = seeded(b_seed)
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        parameter.data[...] = rng.standard_normal(parameter.shape) * 0.3  # A and B alike, so target = reference
    with tensor.no_grad():
        adapted = model(ids)[0].data
    m.merge_lora(model)
    with tensor.no_grad():
        merged = model(ids)[0].data
    loaded = saved_and_loaded(m, model)
    with tensor.no_grad():
        reloaded = loaded(ids)[0].data
    return {"names": names, "counts": counts, "base_logits": base_logits, "init_logits": init_logits,
            "adapted": adapted, "merged": merged, "reloaded": reloaded, "names_after_merge":
            [name for name, _ in model.named_parameters()], "names_before": names_before}


def probe_model_gradients(m, fields: dict, seed: int, rank: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    """After apply_lora (with non-zero B), the loss's backward: which Tensors got a gradient, and d loss / d B of the
    first adapter against central differences."""
    model = model_of(m, fields, seed)
    m.apply_lora(model, rank, 2.0 * rank, rng=seeded(seed + 5), targets=("query", "value"))
    rng = seeded(seed + 6)
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        parameter.data[...] = rng.standard_normal(parameter.shape) * 0.3
    loss = model(ids, targets)[1]
    loss.backward()
    every = []
    pending = [("", model)]
    while pending:  # every Tensor anywhere in the tree, by path, and whether it has a gradient
        prefix, node = pending.pop()
        for key, value in vars(node).items():
            for index, item in (enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]):
                path = f"{prefix}{key}" + ("" if index is None else f".{index}")
                if isinstance(item, sibling(m, "tensor").Tensor):
                    every.append([path, item.grad is not None])
                elif isinstance(item, sibling(m, "nn").Module):
                    pending.append((path + ".", item))
    first = model.blocks[0].attention.query.B
    grad = first.grad.copy()
    tensor = sibling(m, "tensor")

    def value() -> float:
        with tensor.no_grad():
            return float(model(ids, targets)[1].item())

    return {"with_grad": sorted(path for path, has in every if has), "without_grad":
            sorted(path for path, has in every if not has), "grad": grad, "numeric": central_difference(value, first.data)}


# ---------------------------------------------------------------- chat probes


def probe_chat(m, prompt: str, response: str) -> dict:
    chat = chat_of(m)
    ids, mask = chat.encode_chat(prompt, response)
    prompt_ids = chat.encode_prompt(prompt)
    return {"ids": ids, "mask": mask, "dtypes": [str(ids.dtype), str(mask.dtype), str(prompt_ids.dtype)],
            "prompt": prompt_ids, "specials": [int(chat.user), int(chat.assistant), int(chat.end)],
            "vocab_size": int(chat.vocab_size), "decoded": chat.decode(ids), "decoded_prompt": chat.decode(prompt_ids)}


def probe_decode(m, ids: list) -> str:
    return chat_of(m).decode(np.array(ids, dtype=np.int64))


def probe_sft_targets(m, ids: list, mask: list) -> dict:
    inputs, targets = m.sft_targets(np.array(ids, dtype=np.int64), np.array(mask, dtype=bool))
    return {"inputs": inputs, "targets": targets}


def probe_sft_batch(m, pairs: list, context: int) -> dict:
    inputs, targets = m.sft_batch([(np.array(i, dtype=np.int64), np.array(k, dtype=bool)) for i, k in pairs], context)
    return {"inputs": inputs, "targets": targets, "dtypes": [str(inputs.dtype), str(targets.dtype)]}


def probe_sft_batch_refusal(m, length: int, context: int) -> dict:
    pairs = [(np.arange(length) % 5, np.arange(length) % 2 == 0), (np.arange(3), np.ones(3, dtype=bool))]
    return raised(m.sft_batch, pairs, context, mentions=("context",))


def probe_extend(m, fields: dict, seed: int, new_vocab: int, rng_seed: int, ids: np.ndarray) -> dict:
    """extend_vocabulary on a float64 GPT: the tables, the config, logits of old ids, a save/load round trip."""
    tensor = sibling(m, "tensor")
    model = model_of(m, fields, seed)
    old_embedding = model.token_embedding.weight.data.copy()
    with tensor.no_grad():
        before = model(ids)[0].data
    returned = m.extend_vocabulary(model, new_vocab, rng=seeded(rng_seed))
    with tensor.no_grad():
        after = model(ids)[0].data
    loaded = saved_and_loaded(m, model)
    with tensor.no_grad():
        reloaded = loaded(np.array([[new_vocab - 1, 0]]))[0].data
        grown = model(np.array([[new_vocab - 1, 0]]))[0].data
    head = None if model.head is None else model.head.weight.data
    return {"embedding": model.token_embedding.weight.data, "old_embedding": old_embedding, "head": head,
            "vocab_size": int(model.config.vocab_size), "loaded_vocab": int(loaded.config.vocab_size),
            "before": before, "after": after, "reloaded": reloaded.astype(np.float64), "grown": grown,
            "same_model": returned is model, "dtype": str(model.token_embedding.weight.dtype)}


def probe_extend_refusal(m, new_vocab: int) -> dict:
    model = model_of(m, TINY, 1405)
    return raised(m.extend_vocabulary, model, new_vocab, rng=seeded(0), mentions=(["vocab", "grow", "shrink"],))


# ---------------------------------------------------------------- packing probes


def _pairs(lengths: list, seed: int, vocab: int) -> list:
    """Chats of the given lengths with random ids and a prompt/response mask (the last third or so is response)."""
    rng = seeded(seed)
    pairs = []
    for n in lengths:
        ids = rng.integers(0, vocab, n)
        mask = np.arange(n) >= n - max(1, n // 3)
        pairs.append((ids, mask))
    return pairs


def probe_pack(m, lengths: list, seed: int, context: int) -> dict:
    pairs = _pairs(lengths, seed, 11)
    inputs, targets, positions, segments = m.pack(pairs, context)
    return {"inputs": inputs, "targets": targets, "positions": positions, "segments": segments,
            "pairs": [[ids, mask] for ids, mask in pairs]}


def probe_packing_bias(m, segments: np.ndarray) -> np.ndarray:
    return m.packing_bias(np.asarray(segments, dtype=np.int64))


def probe_packed_equals_alone(m, fields: dict, seed: int, lengths: list, context: int, post_norm: bool = False) -> dict:
    """Packed rows through masked_features and sft_loss against each example run alone through the model (its blocks
    made post-norm when asked: Block supports both, GPTConfig builds pre-norm)."""
    tensor = sibling(m, "tensor")
    model = model_of(m, fields, seed)
    for block in model.blocks:
        block.pre_norm = not post_norm
    pairs = _pairs(lengths, seed + 7, fields["vocab_size"])
    inputs, targets, positions, segments = m.pack(pairs, context)
    with tensor.no_grad():
        features = m.masked_features(model, inputs, positions, m.packing_bias(segments)).data
        packed_loss = float(m.sft_loss(model, inputs, targets, positions, segments).item())
        together, alone, nll, scored = [], [], 0.0, 0
        for row in range(inputs.shape[0]):
            for k in range(1, int(segments[row].max()) + 1):
                slots = segments[row] == k
                together.append(features[row, slots])
                alone.append(model.features(inputs[row:row + 1, slots]).data[0])
                logits = model(inputs[row:row + 1, slots])[0].data[0]  # (m, V)
                y = targets[row, slots]
                shifted = logits - logits.max(axis=-1, keepdims=True)
                log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
                nll -= float(sum(log_probs[t, y[t]] for t in range(y.size) if y[t] != IGNORE))
                scored += int((y != IGNORE).sum())
    return {"together": together, "alone": alone, "loss": packed_loss, "loss_alone": nll / scored}


def probe_sft_loss_gradients(m, fields: dict, seed: int, lengths: list, context: int, packed: bool) -> dict:
    """d sft_loss / d (a block's feed-forward down weight and the token embedding), packed or one chat per row,
    against central differences of the same loss."""
    model = model_of(m, fields, seed)
    pairs = _pairs(lengths, seed + 7, fields["vocab_size"])
    if packed:
        arrays = m.pack(pairs, context)
    else:
        arrays = m.sft_batch(pairs, context) + (None, None)
    model.zero_grad()
    m.sft_loss(model, *arrays).backward()
    weights = [model.blocks[-1].feed_forward.down.weight, model.token_embedding.weight]
    grads = [w.grad.copy() for w in weights]
    tensor = sibling(m, "tensor")

    def value() -> float:
        with tensor.no_grad():
            return float(m.sft_loss(model, *arrays).item())

    return {"grads": grads, "numeric": [central_difference(value, w.data) for w in weights]}


def probe_attention_with_bias(m, fields: dict, seed: int, x: np.ndarray, bias: np.ndarray | None,
                              cached: int) -> dict:
    """attention_with_bias at positions 0 .. T-1 (after `cached` tokens through a cache) against the attention's own
    forward with the same cache state: with a zero bias they must agree; with `bias`, the returned output."""
    tensor, generate = sibling(m, "tensor"), sibling(m, "generate")
    model = model_of(m, fields, seed)
    attention = model.blocks[0].attention
    B, T, _ = x.shape
    positions = np.broadcast_to(np.arange(cached, cached + T), (B, T)).copy()
    zero = np.zeros((B, 1, T, cached + T)) if bias is None else np.asarray(bias)
    outs = []
    for own in (False, True):
        cache = generate.KVCache.for_model(model, B)
        with tensor.no_grad():
            if cached:
                attention(tensor.Tensor(x[:, :cached] * 0.5, dtype=np.float64), cache, 0)
                cache.advance(cached)
            xs = tensor.Tensor(x, dtype=np.float64)
            outs.append(m.attention_with_bias(attention, xs, positions, zero, cache, 0).data if own
                        else attention(xs, cache, 0).data)
    return {"own": outs[0], "with_bias": outs[1]}


def probe_rotate(m, x: np.ndarray, positions: np.ndarray, upstream: np.ndarray) -> dict:
    """rotate with per-token angles of stage 06's rope_cache, its gradient and central differences."""
    attention, tensor = sibling(m, "attention"), sibling(m, "tensor")
    cos, sin = attention.rope_cache(x.shape[-1], 32)
    c, s = cos[positions][:, None], sin[positions][:, None]  # (B, 1, T, Dh/2)
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
    out = m.rotate(leaf, c, s)
    (out * tensor.Tensor(upstream, dtype=np.float64)).sum().backward()
    x_array = x.copy()

    def value() -> float:
        with tensor.no_grad():
            return float((m.rotate(tensor.Tensor(x_array, dtype=np.float64), c, s).data * upstream).sum())

    row = [attention.apply_rope(tensor.Tensor(x[b:b + 1], dtype=np.float64), cos, sin, int(positions[b, 0])).data[0]
           for b in range(x.shape[0])]
    return {"out": out.data, "grad": leaf.grad, "numeric": central_difference(value, x_array), "apply_rope": row}


# ================================================================ classification (stage 14, part 2), by "14-classifier"
# The classifier's probes and test-side references; the visible test_classifier.py and the hidden suite import them.

CLASSES = 3  # genre classes in the classifier tests (the run's comedy, history, tragedy)
# The same real tokens with other padding after them: under causal attention the real positions never read a later
# slot, and masked keys add exact zeros (exp(-inf) = 0). Run alone, the sums are over fewer keys, in another order.
UNPADDED = Tol(1e-10, 1e-12, "float64; a padded row vs the same tokens alone: the attention sums run over more keys "
                             "(masked, exact zeros) in another order")


def classifier_of(m, fields: dict, seed: int, classes: int = CLASSES):
    """SequenceClassifier(the target's float64 GPT, classes, rng=seeded(seed + 3)), its head set by sorted name (so
    target and reference hold the same weights), in eval mode."""
    classifier = m.SequenceClassifier(model_of(m, fields, seed), classes, rng=seeded(seed + 3))
    randomise_parameters(classifier.head, seed + 4, np.float64, spread=0.5)
    classifier.eval()
    return classifier


def padded_ids(seed: int, lengths: list, vocab: int, fill: int | None = None) -> np.ndarray:
    """(B, max length) random ids in [0, vocab); the slots after row b's length hold `fill` (random ids when None)."""
    rng = seeded(seed)
    ids = rng.integers(0, vocab, (len(lengths), max(lengths)))
    padding = rng.integers(0, vocab, ids.shape) if fill is None else np.full(ids.shape, fill)
    return np.where(np.arange(ids.shape[1])[None, :] < np.array(lengths)[:, None], ids, padding)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Test-side: the mean cross-entropy of labels under softmax(logits) (B, K), and its gradient (p - onehot) / B."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    B = len(labels)
    grad = np.exp(log_probs)
    grad[np.arange(B), labels] -= 1.0
    return float(-log_probs[np.arange(B), labels].mean()), grad / B


def probe_last_token_states(m, hidden: np.ndarray, lengths: list, upstream: np.ndarray) -> dict:
    """last_token_states on a float64 leaf: the vectors taken and the gradient of sum(out · upstream)."""
    tensor = sibling(m, "tensor")
    leaf = tensor.Tensor(hidden, requires_grad=True, dtype=np.float64)
    out = m.last_token_states(leaf, np.array(lengths, dtype=np.int64))
    (out * tensor.Tensor(upstream, dtype=np.float64)).sum().backward()
    return {"out": out.data, "grad": leaf.grad}


def probe_last_token_refusal(m, shape: list, lengths: list) -> dict:
    hidden = sibling(m, "tensor").Tensor(np.zeros(shape), dtype=np.float64)
    return raised(m.last_token_states, hidden, np.array(lengths, dtype=np.int64), mentions=("length",))


def probe_classifier(m, fields: dict, seed: int, ids: np.ndarray, lengths: list, labels: list) -> dict:
    """A classifier's logits and loss, the GPT's features on the same ids, its head, and a fresh head's draw."""
    tensor = sibling(m, "tensor")
    classifier = classifier_of(m, fields, seed)
    lengths = np.array(lengths, dtype=np.int64)
    with tensor.no_grad():
        logits = classifier(ids, lengths).data
        loss = float(classifier.loss(ids, lengths, np.array(labels, dtype=np.int64)).item())
        features = classifier.gpt.features(ids).data
    fresh = m.SequenceClassifier(classifier.gpt, 4, rng=seeded(seed + 9))
    return {"logits": logits, "loss": loss, "features": features, "weight": classifier.head.weight.data,
            "bias": classifier.head.bias.data, "fresh_weight": fresh.head.weight.data,
            "fresh_bias": fresh.head.bias.data, "fresh_dtype": str(fresh.head.weight.dtype)}


def probe_padding(m, fields: dict, seed: int, lengths: list, fills: list) -> dict:
    """The logits of the same real tokens under several paddings (a fill id each; -1: random ids), and of each row
    run alone (T = its length, no padding at all)."""
    tensor = sibling(m, "tensor")
    classifier = classifier_of(m, fields, seed)
    lengths_array = np.array(lengths, dtype=np.int64)
    padded = []
    with tensor.no_grad():
        for fill in fills:
            ids = padded_ids(seed + 5, lengths, fields["vocab_size"], None if fill < 0 else fill)
            padded.append(classifier(ids, lengths_array).data)
        alone = [classifier(ids[b:b + 1, :n], np.array([n]))[0].data for b, n in enumerate(lengths)]
    return {"padded": padded, "alone": alone}


def probe_classifier_gradients(m, fields: dict, seed: int, ids: np.ndarray, lengths: list, labels: list) -> dict:
    """d loss / d (head weight, head bias, the last block's attention norm weight: the way back through attention)
    after loss.backward(), against central differences of the same loss; the last-token features and logits for the
    hand-derived head gradient."""
    tensor = sibling(m, "tensor")
    classifier = classifier_of(m, fields, seed)
    classifier.zero_grad()
    lengths, labels = np.array(lengths, dtype=np.int64), np.array(labels, dtype=np.int64)
    classifier.loss(ids, lengths, labels).backward()
    weights = [classifier.head.weight, classifier.head.bias, classifier.gpt.blocks[-1].attention_norm.weight]
    grads = [w.grad.copy() for w in weights]

    def value() -> float:
        with tensor.no_grad():
            return float(classifier.loss(ids, lengths, labels).item())

    with tensor.no_grad():
        pooled = classifier.gpt.features(ids).data[np.arange(len(lengths)), lengths - 1]  # (B, C)
        logits = classifier(ids, lengths).data
    return {"grads": grads, "numeric": [central_difference(value, w.data) for w in weights], "pooled": pooled,
            "logits": logits}


def probe_set_trainable(m, fields: dict, seed: int, mode: str, blocks: int, rank: int, targets: list,
                        ids: np.ndarray, lengths: list, labels: list) -> dict:
    """set_trainable's count, the trainable names, every Tensor's requires_grad, and which Tensors a backward of the
    loss reaches (by path in the tree, frozen ones included)."""
    classifier = classifier_of(m, fields, seed)
    count = m.set_trainable(classifier, mode, blocks=blocks, rank=rank, alpha=2.0 * rank, rng=seeded(seed + 6),
                            targets=tuple(targets))
    names = [name for name, _ in classifier.named_parameters()]
    classifier.loss(ids, np.array(lengths, dtype=np.int64), np.array(labels, dtype=np.int64)).backward()
    Tensor, Module = sibling(m, "tensor").Tensor, sibling(m, "nn").Module
    with_grad, trainable = [], []
    pending = [("", classifier)]
    while pending:  # every Tensor anywhere in the tree, by path
        prefix, node = pending.pop()
        for key, value in vars(node).items():
            for index, item in (enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]):
                path = f"{prefix}{key}" + ("" if index is None else f".{index}")
                if isinstance(item, Tensor):
                    if item.grad is not None:
                        with_grad.append(path)
                    if item.requires_grad:
                        trainable.append(path)
                elif isinstance(item, Module):
                    pending.append((path + ".", item))
    return {"count": int(count), "names": names, "with_grad": sorted(with_grad), "requires_grad": sorted(trainable)}


def probe_set_trainable_refusal(m, mode: str, blocks: int) -> dict:
    classifier = classifier_of(m, TINY, 1460)
    return raised(m.set_trainable, classifier, mode, blocks=blocks, rng=seeded(0),
                  mentions=("mode" if mode not in ("head", "last-blocks", "lora") else "blocks",))


def probe_set_trainable_adapters(m, fields: dict, seed: int, rank: int, alpha: float, targets: list) -> dict:
    """set_trainable(mode="lora") with rng=seeded(seed + 6): every adapter's A and scale, by name."""
    classifier = classifier_of(m, fields, seed)
    m.set_trainable(classifier, "lora", rank=rank, alpha=alpha, rng=seeded(seed + 6), targets=tuple(targets))
    adapters = {}
    for index, block in enumerate(classifier.gpt.blocks):
        for name in targets:
            layer = getattr(block.attention, name, None)
            layer = getattr(block.feed_forward, name) if layer is None else layer
            adapters[f"{index}.{name}"] = {"A": layer.A.data, "scale": float(layer.scale)}
    return adapters
