"""Stage 14: adapting a pretrained model (your turn: replace every NotImplementedError).

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
        raise NotImplementedError("stage 14 (adapting a pretrained model): LoRALinear.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out): base(x) + ((x @ A) @ B) · scale, or base(x) alone once merged (the update
        is then inside the base weight). x may be an array (a constant of the weight's dtype) or 1-D, as for Linear."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): LoRALinear.forward")

    def merge(self) -> None:
        """Fold the update into the base weight in place, W <- W + scale · A B, and set merged; forward is then one
        matmul. ValueError when already merged (folding twice would add the update twice)."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): LoRALinear.merge")

    def unmerge(self) -> None:
        """Take the update back out, W <- W - scale · A B, and clear merged. ValueError when not merged."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): LoRALinear.unmerge")


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
    raise NotImplementedError("stage 14 (adapting a pretrained model): apply_lora")


def merge_lora(model: Module) -> Module:
    """Fold every LoRALinear into its base (merge it unless merged), put the base Linear back in its place, and make
    every Tensor of the model trainable again (requires_grad True): the model is a plain one that GPT.save writes and
    GPT.load reads. Returns `model`."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): merge_lora")


def trainable_parameters(model: Module) -> int:
    """The number of scalars the optimizer updates: sum of p.size over model.parameters() (frozen ones are not in it)."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): trainable_parameters")


def total_parameters(model: Module) -> int:
    """The number of scalars of every Tensor in the tree, trainable or frozen (each Tensor once)."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): total_parameters")


# ---------------------------------------------------------------------- classification (stage 14, part 2)


MODES = ("head", "last-blocks", "lora")  # what set_trainable leaves trainable besides the classifier's head


def last_token_states(hidden: Tensor, lengths: np.ndarray) -> Tensor:
    """hidden (B, T, C), lengths (B,) ints -> (B, C): row b's vector at position lengths[b] - 1, the last REAL token
    of a right-padded row (under causal attention, the only position that has read all of it). One fancy index,
    hidden[arange(B), lengths - 1], so the gradient reaches those B positions only. ValueError naming the lengths
    when one is outside 1 .. T (0 would silently read position -1, a padding slot) or there is not one per row."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): last_token_states")


class SequenceClassifier(Module):
    """A GPT that reads a sequence and scores `classes` labels: logits = head(features(ids)[b, lengths[b] - 1])."""

    def __init__(self, gpt: GPT, classes: int, *, rng: np.random.Generator) -> None:
        """Keep `gpt` (the pretrained body, whose own LM head goes unused) and make
            head = Linear(C, classes, rng=rng, std=0.02, dtype=the token embedding's dtype)
        (small logits: the first predictions are near uniform, the loss starts near ln(classes))."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): SequenceClassifier.__init__")

    def forward(self, ids: np.ndarray, lengths: np.ndarray) -> Tensor:
        """ids (B, T) right-padded token ids (row b's real tokens are ids[b, :lengths[b]], anything after is padding),
        lengths (B,) -> logits (B, classes): the head on last_token_states(gpt.features(ids), lengths).
        Causal attention keeps the padding out: position lengths[b] - 1 never attends to a later slot."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): SequenceClassifier.forward")

    def loss(self, ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> Tensor:
        """The mean cross-entropy (stage 04) of the integer labels (B,) under forward(ids, lengths)."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): SequenceClassifier.loss")


def set_trainable(classifier: SequenceClassifier, mode: str, *, blocks: int = 1, rank: int = 8, alpha: float = 16.0,
                  rng: np.random.Generator | None = None, targets: tuple[str, ...] = ("query", "value")) -> int:
    """Freeze the classifier's GPT for `mode`, keep the head trainable, return trainable_parameters(classifier):

        "head"          the GPT frozen whole (freeze): only head.weight and head.bias learn
        "last-blocks"   the GPT frozen, then its last `blocks` blocks and its final_norm trainable again
                        (requires_grad True on every Tensor in them: _tensors(module) walks them)
        "lora"          apply_lora(gpt, rank, alpha, rng=rng, targets=targets): the adapters and the head learn

    ValueError for another mode, or for blocks outside 1 .. the number of blocks in "last-blocks".
    """
    raise NotImplementedError("stage 14 (adapting a pretrained model): set_trainable")


# ---------------------------------------------------------------------- instruction tuning


class ChatTokenizer:
    """A base tokenizer (stage 01's CharTokenizer or stage 08's Tokenizer) plus the chat template's special tokens."""

    SPECIALS = ("<|user|>", "<|assistant|>", "<|end|>")

    def __init__(self, base) -> None:
        """Keep `base`; the specials take the ids right after the base vocabulary: `user` = base.vocab_size,
        `assistant` = base.vocab_size + 1, `end` = base.vocab_size + 2; `vocab_size` = base.vocab_size + 3."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): ChatTokenizer.__init__")

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """[user] + base.encode(prompt) + [assistant], int64 (n,): a prompt ready for the model to answer."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): ChatTokenizer.encode_prompt")

    def encode_chat(self, prompt: str, response: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), mask bool (n,)): ids = encode_prompt(prompt) + base.encode(response) + [end];
        mask is True exactly on the response tokens and the end token (what the model must learn to write)."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): ChatTokenizer.encode_chat")

    def decode(self, ids) -> str:
        """The text of ids, each special written as its name ("<|end|>"); runs of base ids go through base.decode."""
        raise NotImplementedError("stage 14 (adapting a pretrained model): ChatTokenizer.decode")


def extend_vocabulary(model: GPT, new_vocab_size: int, *, rng: np.random.Generator) -> GPT:
    """Grow the model's vocabulary to new_vocab_size in place (returns `model`): the token embedding gets
    n = new_vocab_size - vocab_size new rows, rng.standard_normal((n, C)) * 0.02 (one call), appended below the
    old ones; an untied head gets n new columns, rng.standard_normal((C, n)) * 0.02 (a second call); both keep their
    dtype and their Tensor (its .data is replaced). model.config becomes a copy with vocab_size = new_vocab_size, so
    GPT.save / GPT.load round-trip the grown model. ValueError when new_vocab_size < vocab_size.
    """
    raise NotImplementedError("stage 14 (adapting a pretrained model): extend_vocabulary")


def rotate(x: Tensor, cos: np.ndarray, sin: np.ndarray) -> Tensor:
    """Stage 06's rotary rotation with a table per token, one fused op: x (B, H, T, Dh), cos and sin (B, 1, T, Dh/2)
    (cos[b, 0, t] = cos of row b's position at slot t). With a, b the halves of x:
        out = [a c - b s, b c + a s];   backward (the inverse rotation): [ga c + gb s, gb c - ga s]."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): rotate")


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
    raise NotImplementedError("stage 14 (adapting a pretrained model): attention_with_bias")


def masked_features(model: GPT, ids: np.ndarray, positions: np.ndarray, bias: np.ndarray, cache=None) -> Tensor:
    """GPT.features with a position per token and an attention bias: ids, positions (B, T) ints, bias (B, 1, T, S)
    -> (B, T, C). Embeddings (learned positions: position_embedding.weight[positions], a lookup with a gradient),
    model.dropout, then each block as Block.forward runs it (pre- or post-norm, its dropout on each sublayer) with
    attention_with_bias(block.attention, ..., positions, bias, cache, layer) in place of its attention, then
    final_norm. With a cache: cache.advance(T) after the blocks, as GPT.features does."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): masked_features")


def lm_head(model: GPT, x: Tensor) -> Tensor:
    """The GPT's head on hidden states (B, T, C) -> logits (B, T, V): tied (x @ token_embedding.weightᵀ) or not."""
    if model.head is None:
        return x @ model.token_embedding.weight.transpose(1, 0)
    return model.head(x)


def sft_targets(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One chat (ids, mask) (n,) -> (inputs (n - 1,), targets (n - 1,)) int64: inputs = ids[:-1]; targets[t] =
    ids[t + 1] where mask[t + 1] (the next token is a response or end token), IGNORE (-100) elsewhere."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): sft_targets")


def sft_batch(pairs: list, context: int) -> tuple[np.ndarray, np.ndarray]:
    """One chat per row: pairs of (ids, mask) -> (inputs, targets) int64 (B, T), T = the longest n - 1. Row b holds
    sft_targets(ids_b, mask_b) on the left, then padding: input 0, target IGNORE. ValueError when an example has
    n - 1 > context (it cannot be trained on whole)."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): sft_batch")


def pack(pairs: list, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Several chats per row: pairs of (ids, mask) -> (inputs, targets, positions, segments), int64 (B, T).

    Take the examples in order, each as sft_targets(ids, mask) (m = n - 1 positions), and put it in the FIRST row
    with m free slots left (of `context`), opening a new row when none has room. In its row an example is the
    segment k = 1, 2, ... (its order there) with positions 0 .. m - 1. T is the fullest row's length; the slots after
    a row's last example are padding: input 0, target IGNORE, position 0, segment 0. ValueError when m > context.
    """
    raise NotImplementedError("stage 14 (adapting a pretrained model): pack")


def packing_bias(segments: np.ndarray) -> np.ndarray:
    """The block-diagonal causal mask of packed rows: segments (B, T) -> bias (B, 1, T, T), float64, 0 where key j
    is visible from query i (same segment and j <= i), -inf elsewhere. A padding slot (segment 0) sees the padding
    before it and itself, so no row of the softmax is all -inf."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): packing_bias")


def sft_loss(model: GPT, inputs: np.ndarray, targets: np.ndarray, positions: np.ndarray | None = None,
             segments: np.ndarray | None = None) -> Tensor:
    """The masked next-token loss: the mean cross-entropy over the targets that are not IGNORE (the response and end
    tokens), a scalar Tensor. Unpacked (positions None): model(inputs, targets)'s loss. Packed: lm_head on
    masked_features(model, inputs, positions, packing_bias(segments)), then cross_entropy against targets."""
    raise NotImplementedError("stage 14 (adapting a pretrained model): sft_loss")


def _main() -> None:
    """python -m solutions.finetune sft|classify ...: the runs are given, in finetune_runs.py (imported here, when
    the command runs, so that importing this module never needs them)."""
    from .finetune_runs import main

    main()


if __name__ == "__main__":
    _main()
