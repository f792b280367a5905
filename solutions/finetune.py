"""Stage 14: adapting a pretrained model.

Three ways to make the stage-10 GPT do something new, all from its own weights:
  - LoRA: a trainable low-rank update B·A·(alpha / r) beside a frozen Linear, zero at the start, foldable into the
    weight and back (merge / unmerge), training a few percent of the parameters;
  - a classifier: a head on the GPT's hidden states (part 2);
  - instruction tuning: a chat template with three special tokens, a loss on the response tokens only, and packing
    several examples into one sequence with a block-diagonal causal mask and positions restarted per example.
The derivations are in docs/14-finetune.md; the runs (`python -m solutions.finetune sft`, ...) in finetune_runs.py.

Conventions (the tests and stage 15 rely on them):
  - LoRALinear(base, rank, alpha): A (in, r) ~ N(0, 1/in), B (r, out) = 0, y = base(x) + (x A) B · alpha / r; the
    base weight and bias are frozen (requires_grad False: not parameters, no gradient).
  - Chat ids: the base vocabulary, then <|user|>, <|assistant|>, <|end|> at base_vocab, base_vocab + 1, + 2.
    A chat is [user] prompt [assistant] response [end]; the loss mask is True on the response and the end token.
  - Targets are -100 (cross_entropy's ignore_index) wherever the next token is not a response token or is padding.
  - Packing: segments number the examples of a row 1, 2, ... (0 is padding, at the end of the row); a query sees a
    key when both are in the same segment and the key is not in its future; positions restart at 0 in each example.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .attention import scaled_dot_product_attention
from .gpt import GPT
from .nn import Linear, Module, cross_entropy
from .tensor import Tensor, op

IGNORE = -100  # cross_entropy's ignore_index: a target that is not scored


def child_modules(module: Module):
    """(holder, key, child) for every Module attribute or list item of `module`, one level down, in attribute order
    (given: LoRA here and stage 16's quantize_model walk models with it)."""
    for name, value in vars(module).items():
        if isinstance(value, Module):
            yield module, name, value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, Module):
                    yield value, i, item


def _tensors(module: Module):
    """Every Tensor attribute anywhere in the tree, frozen or not (parameters() lists only those requiring grad)."""
    for value in vars(module).values():
        if isinstance(value, Tensor):
            yield value
    for _, _, child in child_modules(module):
        yield from _tensors(child)


def _replace(holder, key, child) -> None:
    if isinstance(holder, list):
        holder[key] = child
    else:
        setattr(holder, key, child)


# ---------------------------------------------------------------------- LoRA


class LoRALinear(Module):
    """A frozen Linear plus a trainable low-rank update: y = base(x) + (x A) B · scale, scale = alpha / rank."""

    def __init__(self, base: Linear, rank: int, alpha: float, *, rng: np.random.Generator) -> None:
        """Keep `base` (and freeze it: requires_grad False on its weight and bias), then make, in this order,
            A = Tensor(rng.standard_normal((in, rank)) / sqrt(in))   (one call; the base weight's dtype)
            B = Tensor(zeros((rank, out)))                           (the base weight's dtype)
        both requires_grad=True; `scale` = alpha / rank; `merged` = False. B = 0 makes the layer equal to the base
        at the start; A random lets B's gradient be non-zero from the first step. ValueError for rank < 1.
        """
        ### BEGIN SOLUTION
        if rank < 1:
            raise ValueError(f"LoRALinear: rank must be >= 1, got {rank}")
        fan_in, fan_out = base.weight.shape
        dtype = base.weight.dtype
        self.base = base
        for tensor in (base.weight, base.bias):
            if tensor is not None:
                tensor.requires_grad = False  # frozen: not a parameter, and no gradient flows into it
        self.A = Tensor((rng.standard_normal((fan_in, rank)) / math.sqrt(fan_in)).astype(dtype), requires_grad=True,
                        dtype=dtype)  # (in, r)
        self.B = Tensor(np.zeros((rank, fan_out), dtype=dtype), requires_grad=True, dtype=dtype)  # (r, out)
        self.scale = alpha / rank
        self.merged = False
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out): base(x) + ((x @ A) @ B) · scale, or base(x) alone once merged (the update
        is then inside the base weight). x may be an array (a constant of the weight's dtype) or 1-D, as for Linear."""
        ### BEGIN SOLUTION
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.A.dtype)
        if self.merged:
            return self.base(x)
        if x.ndim == 1:  # matmul wants 2-D, as in Linear
            return self.forward(x.reshape(1, -1)).reshape(-1)
        return self.base(x) + ((x @ self.A) @ self.B) * self.scale  # (..., out); (x A) is (..., r): cheap
        ### END SOLUTION

    def merge(self) -> None:
        """Fold the update into the base weight in place, W <- W + scale · A B, and set merged; forward is then one
        matmul. ValueError when already merged (folding twice would add the update twice)."""
        ### BEGIN SOLUTION
        if self.merged:
            raise ValueError("LoRALinear.merge: already merged")
        self.base.weight.data += (self.scale * (self.A.data @ self.B.data)).astype(self.base.weight.dtype)  # (in, out)
        self.merged = True
        ### END SOLUTION

    def unmerge(self) -> None:
        """Take the update back out, W <- W - scale · A B, and clear merged. ValueError when not merged."""
        ### BEGIN SOLUTION
        if not self.merged:
            raise ValueError("LoRALinear.unmerge: not merged")
        self.base.weight.data -= (self.scale * (self.A.data @ self.B.data)).astype(self.base.weight.dtype)
        self.merged = False
        ### END SOLUTION


def freeze(module: Module) -> Module:
    """Set requires_grad False on every Tensor in the tree (so parameters() is empty); returns `module`."""
    for tensor in _tensors(module):
        tensor.requires_grad = False
    return module


def apply_lora(model: Module, rank: int, alpha: float, *, rng: np.random.Generator,
               targets: tuple[str, ...] = ("query", "value")) -> Module:
    """Freeze the whole model, then replace every Linear whose attribute name is in `targets` by
    LoRALinear(linear, rank, alpha, rng=rng), in place; returns `model`.

    The walk is depth-first in attribute order (the order of named_parameters), so a seed fixes every A; afterwards
    model.parameters() is exactly the adapters' A and B ("blocks.0.attention.query.A", ...). For a GPT the names are
    query, key, value, output (attention) and gate, up, down (SwiGLU) or up, down (MLP).
    """
    ### BEGIN SOLUTION
    freeze(model)

    def visit(module: Module) -> None:
        for holder, key, child in list(child_modules(module)):
            if isinstance(child, Linear) and key in targets:
                _replace(holder, key, LoRALinear(child, rank, alpha, rng=rng))
            else:
                visit(child)

    visit(model)
    return model
    ### END SOLUTION


def merge_lora(model: Module) -> Module:
    """Fold every LoRALinear into its base (merge it unless merged), put the base Linear back in its place, and make
    every Tensor of the model trainable again (requires_grad True): the model is a plain one that GPT.save writes and
    GPT.load reads. Returns `model`."""
    ### BEGIN SOLUTION
    def visit(module: Module) -> None:
        for holder, key, child in list(child_modules(module)):
            if isinstance(child, LoRALinear):
                if not child.merged:
                    child.merge()
                _replace(holder, key, child.base)
            else:
                visit(child)

    visit(model)
    for tensor in _tensors(model):
        tensor.requires_grad = True
    return model
    ### END SOLUTION


def trainable_parameters(model: Module) -> int:
    """The number of scalars the optimizer updates: sum of p.size over model.parameters() (frozen ones are not in it)."""
    ### BEGIN SOLUTION
    return sum(parameter.size for parameter in model.parameters())
    ### END SOLUTION


def total_parameters(model: Module) -> int:
    """The number of scalars of every Tensor in the tree, trainable or frozen (each Tensor once)."""
    ### BEGIN SOLUTION
    unique = {id(tensor): tensor for tensor in _tensors(model)}  # a tied weight is one Tensor reached twice
    return sum(tensor.size for tensor in unique.values())
    ### END SOLUTION


# ---------------------------------------------------------------------- classification (stage 14, part 2)


MODES = ("head", "last-blocks", "lora")  # what set_trainable leaves trainable besides the classifier's head


def last_token_states(hidden: Tensor, lengths: np.ndarray) -> Tensor:
    """hidden (B, T, C), lengths (B,) ints -> (B, C): row b's vector at position lengths[b] - 1, the last REAL token
    of a right-padded row (under causal attention, the only position that has read all of it). One fancy index,
    hidden[arange(B), lengths - 1], so the gradient reaches those B positions only. ValueError naming the lengths
    when one is outside 1 .. T (0 would silently read position -1, a padding slot) or there is not one per row."""
    ### BEGIN SOLUTION
    lengths = np.asarray(lengths)
    B, T = hidden.shape[0], hidden.shape[1]
    if lengths.shape != (B,) or lengths.dtype.kind not in "iu" or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"last_token_states: lengths must be {B} integers in 1 .. {T} (one per row), got {lengths}")
    return hidden[np.arange(B), lengths - 1]  # (B, C)
    ### END SOLUTION


class SequenceClassifier(Module):
    """A GPT that reads a sequence and scores `classes` labels: logits = head(features(ids)[b, lengths[b] - 1])."""

    def __init__(self, gpt: GPT, classes: int, *, rng: np.random.Generator) -> None:
        """Keep `gpt` (the pretrained body, whose own LM head goes unused) and make
            head = Linear(C, classes, rng=rng, std=0.02, dtype=the token embedding's dtype)
        (small logits: the first predictions are near uniform, the loss starts near ln(classes))."""
        ### BEGIN SOLUTION
        self.gpt = gpt
        self.head = Linear(gpt.config.width, classes, rng=rng, std=0.02, dtype=gpt.token_embedding.weight.dtype)
        ### END SOLUTION

    def forward(self, ids: np.ndarray, lengths: np.ndarray) -> Tensor:
        """ids (B, T) right-padded token ids (row b's real tokens are ids[b, :lengths[b]], anything after is padding),
        lengths (B,) -> logits (B, classes): the head on last_token_states(gpt.features(ids), lengths).
        Causal attention keeps the padding out: position lengths[b] - 1 never attends to a later slot."""
        ### BEGIN SOLUTION
        return self.head(last_token_states(self.gpt.features(ids), lengths))  # (B, classes)
        ### END SOLUTION

    def loss(self, ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> Tensor:
        """The mean cross-entropy (stage 04) of the integer labels (B,) under forward(ids, lengths)."""
        ### BEGIN SOLUTION
        return cross_entropy(self.forward(ids, lengths), labels)
        ### END SOLUTION


def set_trainable(classifier: SequenceClassifier, mode: str, *, blocks: int = 1, rank: int = 8, alpha: float = 16.0,
                  rng: np.random.Generator | None = None, targets: tuple[str, ...] = ("query", "value")) -> int:
    """Freeze the classifier's GPT for `mode`, keep the head trainable, return trainable_parameters(classifier):

        "head"          the GPT frozen whole (freeze): only head.weight and head.bias learn
        "last-blocks"   the GPT frozen, then its last `blocks` blocks and its final_norm trainable again
                        (requires_grad True on every Tensor in them: _tensors(module) walks them)
        "lora"          apply_lora(gpt, rank, alpha, rng=rng, targets=targets): the adapters and the head learn

    ValueError for another mode, or for blocks outside 1 .. the number of blocks in "last-blocks".
    """
    ### BEGIN SOLUTION
    if mode not in MODES:
        raise ValueError(f"set_trainable: mode must be one of {MODES}, got {mode!r}")
    gpt = classifier.gpt
    if mode == "lora":
        apply_lora(gpt, rank, alpha, rng=rng, targets=targets)  # freezes the GPT, then adds trainable A and B
    else:
        freeze(gpt)
    if mode == "last-blocks":
        if not 1 <= blocks <= len(gpt.blocks):
            raise ValueError(f"set_trainable: blocks must be in 1 .. {len(gpt.blocks)}, got {blocks}")
        for module in [*gpt.blocks[-blocks:], gpt.final_norm]:
            for tensor in _tensors(module):
                tensor.requires_grad = True
    return trainable_parameters(classifier)
    ### END SOLUTION


# ---------------------------------------------------------------------- instruction tuning


class ChatTokenizer:
    """A base tokenizer (stage 01's CharTokenizer or stage 08's Tokenizer) plus the chat template's special tokens."""

    SPECIALS = ("<|user|>", "<|assistant|>", "<|end|>")

    def __init__(self, base) -> None:
        """Keep `base`; the specials take the ids right after the base vocabulary: `user` = base.vocab_size,
        `assistant` = base.vocab_size + 1, `end` = base.vocab_size + 2; `vocab_size` = base.vocab_size + 3."""
        ### BEGIN SOLUTION
        self.base = base
        self.user, self.assistant, self.end = (base.vocab_size + i for i in range(3))
        self.vocab_size = base.vocab_size + len(self.SPECIALS)
        ### END SOLUTION

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """[user] + base.encode(prompt) + [assistant], int64 (n,): a prompt ready for the model to answer."""
        ### BEGIN SOLUTION
        body = np.asarray(self.base.encode(prompt), dtype=np.int64).reshape(-1)
        return np.concatenate([[self.user], body, [self.assistant]]).astype(np.int64)
        ### END SOLUTION

    def encode_chat(self, prompt: str, response: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), mask bool (n,)): ids = encode_prompt(prompt) + base.encode(response) + [end];
        mask is True exactly on the response tokens and the end token (what the model must learn to write)."""
        ### BEGIN SOLUTION
        prompt_ids = self.encode_prompt(prompt)
        answer = np.concatenate([np.asarray(self.base.encode(response), dtype=np.int64).reshape(-1), [self.end]])
        ids = np.concatenate([prompt_ids, answer]).astype(np.int64)  # (n,)
        mask = np.concatenate([np.zeros(prompt_ids.size, dtype=bool), np.ones(answer.size, dtype=bool)])  # (n,)
        return ids, mask
        ### END SOLUTION

    def decode(self, ids) -> str:
        """The text of ids, each special written as its name ("<|end|>"); runs of base ids go through base.decode."""
        ### BEGIN SOLUTION
        pieces, run = [], []
        for token in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if token in (self.user, self.assistant, self.end):
                pieces.append(self.base.decode(run) if run else "")
                pieces.append(self.SPECIALS[token - self.user])
                run = []
            else:
                run.append(token)
        pieces.append(self.base.decode(run) if run else "")
        return "".join(pieces)
        ### END SOLUTION


def extend_vocabulary(model: GPT, new_vocab_size: int, *, rng: np.random.Generator) -> GPT:
    """Grow the model's vocabulary to new_vocab_size in place (returns `model`): the token embedding gets
    n = new_vocab_size - vocab_size new rows, rng.standard_normal((n, C)) * 0.02 (one call), appended below the
    old ones; an untied head gets n new columns, rng.standard_normal((C, n)) * 0.02 (a second call); both keep their
    dtype and their Tensor (its .data is replaced). model.config becomes a copy with vocab_size = new_vocab_size, so
    GPT.save / GPT.load round-trip the grown model. ValueError when new_vocab_size < vocab_size.
    """
    ### BEGIN SOLUTION
    old = model.config.vocab_size
    if new_vocab_size < old:
        raise ValueError(f"extend_vocabulary can only grow the vocabulary: {new_vocab_size} < {old}")
    extra = new_vocab_size - old
    embedding = model.token_embedding.weight  # (V, C)
    rows = rng.standard_normal((extra, embedding.shape[1])) * 0.02  # (n, C): GPT's N(0, 0.02²)
    embedding.data = np.concatenate([embedding.data, rows.astype(embedding.dtype)])  # (V + n, C)
    if model.head is not None:
        head = model.head.weight  # (C, V)
        columns = rng.standard_normal((head.shape[0], extra)) * 0.02  # (C, n)
        head.data = np.concatenate([head.data, columns.astype(head.dtype)], axis=1)  # (C, V + n)
    model.config = dataclasses.replace(model.config, vocab_size=new_vocab_size)
    return model
    ### END SOLUTION


def rotate(x: Tensor, cos: np.ndarray, sin: np.ndarray) -> Tensor:
    """Stage 06's rotary rotation with a table per token, one fused op: x (B, H, T, Dh), cos and sin (B, 1, T, Dh/2)
    (cos[b, 0, t] = cos of row b's position at slot t). With a, b the halves of x:
        out = [a c - b s, b c + a s];   backward (the inverse rotation): [ga c + gb s, gb c - ga s]."""
    ### BEGIN SOLUTION
    half = x.shape[-1] // 2
    c, s = cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False)
    a, b = x.data[..., :half], x.data[..., half:]  # (B, H, T, Dh/2) each
    out = np.concatenate([a * c - b * s, b * c + a * s], axis=-1)  # (B, H, T, Dh)

    def backward(grad: np.ndarray) -> tuple[np.ndarray]:
        grad_a, grad_b = grad[..., :half], grad[..., half:]
        return (np.concatenate([grad_a * c + grad_b * s, grad_b * c - grad_a * s], axis=-1),)  # rotate back

    return op(out, (x,), backward)
    ### END SOLUTION


def attention_with_bias(attention, x: Tensor, positions: np.ndarray, bias: np.ndarray, cache=None,
                        layer: int = 0) -> Tensor:
    """Stage 06's MultiHeadAttention.forward with a position per token and an attention bias: x (B, T, C) ->
    (B, T, C), keeping the graph (training) or not (under no_grad).

    Project and split heads as MultiHeadAttention does; when attention.rotary, rotate q and k with `rotate` and
    cos = attention.rope_cos[positions][:, None] (B, 1, T, Dh/2), positions (B, T) ints. With a cache, store k, v
    as MultiHeadAttention.forward does (cache.update(layer, k.data, v.data), the returned keys an op whose gradient
    reaches the new positions only). Attend with scaled_dot_product_attention(q, k, v, causal=attention.causal,
    bias=bias), bias (B, 1, T, S) of 0 and -inf; merge the heads; attention.output.
    """
    ### BEGIN SOLUTION
    B, T, _ = x.shape
    offset = 0 if cache is None else cache.length
    q = attention.query(x).reshape(B, T, attention.heads, -1).transpose(0, 2, 1, 3)  # (B, H, T, Dh)
    k = attention.key(x).reshape(B, T, attention.kv_heads, -1).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
    v = attention.value(x).reshape(B, T, attention.kv_heads, -1).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
    if attention.rotary:
        cos = attention.rope_cos[positions][:, None]  # (B, 1, T, Dh/2): each token its own angles
        sin = attention.rope_sin[positions][:, None]
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    if cache is not None:
        keys, values = cache.update(layer, k.data, v.data)  # (B, Hkv, offset + T, Dh)
        k = op(keys, (k,), lambda g: (g[:, :, offset:],))  # only the last T positions are this call's k
        v = op(values, (v,), lambda g: (g[:, :, offset:],))
    y = scaled_dot_product_attention(q, k, v, causal=attention.causal, bias=bias)  # (B, H, T, Dh)
    return attention.output(y.transpose(0, 2, 1, 3).reshape(B, T, -1))  # (B, T, C)
    ### END SOLUTION


def masked_features(model: GPT, ids: np.ndarray, positions: np.ndarray, bias: np.ndarray, cache=None) -> Tensor:
    """GPT.features with a position per token and an attention bias: ids, positions (B, T) ints, bias (B, 1, T, S)
    -> (B, T, C). Embeddings (learned positions: position_embedding.weight[positions], a lookup with a gradient),
    model.dropout, then each block as Block.forward runs it (pre- or post-norm, its dropout on each sublayer) with
    attention_with_bias(block.attention, ..., positions, bias, cache, layer) in place of its attention, then
    final_norm. With a cache: cache.advance(T) after the blocks, as GPT.features does."""
    ### BEGIN SOLUTION
    x = model.token_embedding(ids)  # (B, T, C)
    if model.position_embedding is not None:
        x = x + model.position_embedding.weight[positions]  # (B, T, C): each row its own positions
    x = model.dropout(x)
    for layer, block in enumerate(model.blocks):
        if block.pre_norm:
            h = attention_with_bias(block.attention, block.attention_norm(x), positions, bias, cache, layer)
            x = x + block.dropout(h)  # (B, T, C)
            x = x + block.dropout(block.feed_forward(block.feed_forward_norm(x)))
        else:
            h = attention_with_bias(block.attention, x, positions, bias, cache, layer)
            x = block.attention_norm(x + block.dropout(h))
            x = block.feed_forward_norm(x + block.dropout(block.feed_forward(x)))
    if cache is not None:
        cache.advance(ids.shape[1])
    return model.final_norm(x)  # (B, T, C)
    ### END SOLUTION


def lm_head(model: GPT, x: Tensor) -> Tensor:
    """The GPT's head on hidden states (B, T, C) -> logits (B, T, V): tied (x @ token_embedding.weightᵀ) or not."""
    if model.head is None:
        return x @ model.token_embedding.weight.transpose(1, 0)
    return model.head(x)


def sft_targets(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One chat (ids, mask) (n,) -> (inputs (n - 1,), targets (n - 1,)) int64: inputs = ids[:-1]; targets[t] =
    ids[t + 1] where mask[t + 1] (the next token is a response or end token), IGNORE (-100) elsewhere."""
    ### BEGIN SOLUTION
    ids, mask = np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool)
    return ids[:-1], np.where(mask[1:], ids[1:], IGNORE).astype(np.int64)
    ### END SOLUTION


def sft_batch(pairs: list, context: int) -> tuple[np.ndarray, np.ndarray]:
    """One chat per row: pairs of (ids, mask) -> (inputs, targets) int64 (B, T), T = the longest n - 1. Row b holds
    sft_targets(ids_b, mask_b) on the left, then padding: input 0, target IGNORE. ValueError when an example has
    n - 1 > context (it cannot be trained on whole)."""
    ### BEGIN SOLUTION
    rows = [sft_targets(ids, mask) for ids, mask in pairs]
    T = max(inputs.size for inputs, _ in rows)
    if T > context:
        raise ValueError(f"sft_batch: an example of {T + 1} tokens needs {T} positions, more than the context {context}")
    inputs = np.zeros((len(rows), T), dtype=np.int64)  # (B, T) padding id 0
    targets = np.full((len(rows), T), IGNORE, dtype=np.int64)  # (B, T) padding not scored
    for row, (x, y) in enumerate(rows):
        inputs[row, :x.size], targets[row, :y.size] = x, y
    return inputs, targets
    ### END SOLUTION


def pack(pairs: list, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Several chats per row: pairs of (ids, mask) -> (inputs, targets, positions, segments), int64 (B, T).

    Take the examples in order, each as sft_targets(ids, mask) (m = n - 1 positions), and put it in the FIRST row
    with m free slots left (of `context`), opening a new row when none has room. In its row an example is the
    segment k = 1, 2, ... (its order there) with positions 0 .. m - 1. T is the fullest row's length; the slots after
    a row's last example are padding: input 0, target IGNORE, position 0, segment 0. ValueError when m > context.
    """
    ### BEGIN SOLUTION
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
    used: list[int] = []
    for ids, mask in pairs:
        example = sft_targets(ids, mask)
        m = example[0].size
        if m > context:
            raise ValueError(f"pack: an example of {m + 1} tokens needs {m} positions, more than the context {context}")
        row = next((r for r, filled in enumerate(used) if filled + m <= context), None)  # first fit
        if row is None:
            rows.append([])
            used.append(0)
            row = len(rows) - 1
        rows[row].append(example)
        used[row] += m
    B, T = len(rows), max(used)
    inputs = np.zeros((B, T), dtype=np.int64)
    targets = np.full((B, T), IGNORE, dtype=np.int64)
    positions = np.zeros((B, T), dtype=np.int64)
    segments = np.zeros((B, T), dtype=np.int64)
    for r, examples in enumerate(rows):
        start = 0
        for k, (x, y) in enumerate(examples, start=1):
            end = start + x.size
            inputs[r, start:end], targets[r, start:end] = x, y
            positions[r, start:end] = np.arange(x.size)  # restart: each example sits at 0 .. m - 1 as if alone
            segments[r, start:end] = k
            start = end
    return inputs, targets, positions, segments
    ### END SOLUTION


def packing_bias(segments: np.ndarray) -> np.ndarray:
    """The block-diagonal causal mask of packed rows: segments (B, T) -> bias (B, 1, T, T), float64, 0 where key j
    is visible from query i (same segment and j <= i), -inf elsewhere. A padding slot (segment 0) sees the padding
    before it and itself, so no row of the softmax is all -inf."""
    ### BEGIN SOLUTION
    T = segments.shape[1]
    same = segments[:, :, None] == segments[:, None, :]  # (B, T, T): query i, key j in one example
    visible = same & np.tri(T, T, dtype=bool)  # and j <= i
    return np.where(visible, 0.0, -np.inf)[:, None]  # (B, 1, T, T), one mask for every head
    ### END SOLUTION


def sft_loss(model: GPT, inputs: np.ndarray, targets: np.ndarray, positions: np.ndarray | None = None,
             segments: np.ndarray | None = None) -> Tensor:
    """The masked next-token loss: the mean cross-entropy over the targets that are not IGNORE (the response and end
    tokens), a scalar Tensor. Unpacked (positions None): model(inputs, targets)'s loss. Packed: lm_head on
    masked_features(model, inputs, positions, packing_bias(segments)), then cross_entropy against targets."""
    ### BEGIN SOLUTION
    if positions is None:
        return model(inputs, targets)[1]
    logits = lm_head(model, masked_features(model, inputs, positions, packing_bias(segments)))  # (B, T, V)
    return cross_entropy(logits, targets)
    ### END SOLUTION


def _main() -> None:
    """python -m solutions.finetune sft|classify ...: the runs are given, in finetune_runs.py (imported here, when
    the command runs, so that importing this module never needs them)."""
    from .finetune_runs import main

    main()


if __name__ == "__main__":
    _main()
