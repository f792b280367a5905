"""Stage 09: the GPT (your turn: replace every NotImplementedError).

The whole language model, from the pieces of stages 04 to 07: token embeddings (and learned positions, or rotary ones
inside attention), a stack of pre-norm transformer blocks, a final normalisation and a head that turns each position's
vector into logits over the vocabulary, tied to the token embedding by default. One call gives the logits and the
mean next-token cross-entropy; `loss.backward()` reaches every parameter through the fused ops of the earlier stages.
A config dataclass describes the model; `save` and `load` keep the config inside the weights file, so a checkpoint
rebuilds its own model. docs/09-gpt.md derives the counts and the conventions.

Conventions (the tests and the later stages rely on them):
  - ids and targets are (B, T) integer arrays with T <= config.context; targets[b, t] is the token after ids[b, t].
  - Weights start from N(0, 0.02²): the token and position embeddings and the untied head here, the block matrices
    in Block (whose residual projections use 0.02 / sqrt(2 · layers)); norm weights one, biases zero.
  - Tied embeddings: logits = x @ token_embedding.weightᵀ, one matmul against a transposed view; the embedding then
    receives the gradient of both of its uses, the lookup and the head.
  - The checkpoint is an .npz holding every parameter under its dotted name and the config, as JSON, under "config".
  - Decoding: forward(ids, cache=cache) runs new tokens after those a key/value cache holds (stage 11's KVCache), with
    the same modules and the same code as training; only the positions and the attention's keys change.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np

from .blocks import Block, Dropout, LayerNorm, RMSNorm
from .nn import Embedding, Linear, Module, cross_entropy
from .tensor import Tensor

CONFIG_KEY = "config"  # the checkpoint entry that holds the config; parameter names always contain a dot
OPTIONS = {"norm": ("rms", "layer"), "feed_forward": ("swiglu", "gelu"), "position": ("rotary", "learned")}


@dataclass
class GPTConfig:
    """Everything that decides the model's shapes: a checkpoint stores it, and GPT(config, rng=...) rebuilds the model.

    vocab_size      V, the number of token ids (ids are 0 .. V - 1)
    context         the longest sequence the model reads (T <= context); the size of the position tables
    layers, heads   the number of blocks, and of query heads in each (heads must divide width)
    kv_heads        key/value heads (grouped-query attention; must divide heads); None means heads
    width           C, the size of every position's vector in the residual stream
    norm            "rms" (RMSNorm) or "layer" (LayerNorm), in the blocks and as the final norm
    feed_forward    "swiglu" (hidden 8 · ceil(C / 3)) or "gelu" (an MLP with hidden 4 · C)
    position        "rotary" (RoPE on queries and keys) or "learned" (an Embedding of context x C added to the tokens)
    tie_embeddings  True: the head is the token embedding's transpose; False: a separate Linear head
    dropout         the dropout probability after the embeddings and on each sublayer's output (0: none)
    """

    vocab_size: int
    context: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None
    width: int = 128
    norm: str = "rms"
    feed_forward: str = "swiglu"
    position: str = "rotary"
    tie_embeddings: bool = True
    dropout: float = 0.0

    def to_dict(self) -> dict:
        """The fields as a plain dict of JSON-ready values, e.g. {"vocab_size": 65, "context": 64, ...}."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> GPTConfig:
        """The config with these fields (the others take their defaults).

        ValueError naming them for unknown fields (a file written by another version) or a missing vocab_size.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown or "vocab_size" not in fields:
            raise ValueError(f"GPTConfig.from_dict: unknown fields {unknown}, vocab_size "
                             f"{'given' if 'vocab_size' in fields else 'missing'}; the fields are {sorted(known)}")
        return cls(**fields)


class GPT(Module):
    """A decoder-only transformer language model: logits for the next token at every position.

    x = token_embedding(ids) (+ position_embedding(0 .. T-1));  x = dropout(x)
    x = block(x) for each of the blocks;  x = final_norm(x)      (`features`: the hidden states)
    logits = x @ token_embedding.weightᵀ (tied) or head(x) (untied)
    """

    def __init__(self, config: GPTConfig, *, rng: np.random.Generator) -> None:
        """Submodules in this order, every random draw from `rng` (so a seed fixes the model):

            token_embedding     Embedding(V, C, std=0.02)
            position_embedding  Embedding(context, C, std=0.02) when position == "learned", else None
            dropout             Dropout(config.dropout) sharing rng (applied to the embeddings)
            blocks              a list of `layers` Block(C, heads, kv_heads, norm=..., feed_forward=...,
                                rotary=position == "rotary", max_positions=context, dropout=..., layers=layers)
            final_norm          RMSNorm(C) or LayerNorm(C), as config.norm
            head                Linear(C, V, bias=False, std=0.02) when tie_embeddings is False, else None

        Keeps `config`. ValueError naming the option for a norm, feed_forward or position that is not one of the
        choices in GPTConfig (Block and MultiHeadAttention check the head counts).
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.__init__")

    def features(self, ids: np.ndarray, cache=None) -> Tensor:
        """ids: (B, T) integer token ids -> the final hidden states (B, T, C): everything but the head.

        x = token_embedding(ids) (+ position_embedding rows), dropout, every block, final_norm. `forward` puts the head
        on these; a classifier (stage 14) or a reward model (stage 15) puts its own head on the same vectors.
        Without a cache the positions are 0 .. T - 1.

        cache: None, or a key/value cache for decoding (stage 11's KVCache; anything with an int `length`,
        `update(layer, k, v)` as MultiHeadAttention.forward uses it, and `advance(steps)`). ids are then the T tokens
        that follow the cache.length tokens already in it: positions length .. length + T - 1 (learned positions look
        up those rows; rotary ones rotate by them inside attention), block i passes layer index i to its attention,
        and cache.advance(T) counts the new tokens once every block has stored them.
        ValueError, before anything changes, when ids is not 2-D or when length + T > config.context (there are no
        positions for them).
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.features")

    def forward(self, ids: np.ndarray, targets: np.ndarray | None = None,
                cache=None) -> tuple[Tensor, Tensor | None]:
        """ids: (B, T) integer token ids -> (logits (B, T, V), loss): the head on features(ids, cache).

        logits[b, t] scores the token that follows ids[b, t], seeing only ids[b, :t + 1] (causal).
        loss: cross_entropy(logits, targets), the mean over all B · T positions (targets equal to -100 are skipped),
        or None when targets is None.
        The tied head is ONE matmul against a view, x @ token_embedding.weight.transpose(1, 0): the same Tensor as the
        lookup's, so its gradient sums both uses (a copy of weight.data.T would cut the head's part off).

        cache: as in `features` (decoding: ids follow the cache.length cached tokens, and the logits equal the last T
        of one call on all length + T tokens). Its ValueErrors are features'.
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.forward")

    def loss(self, ids: np.ndarray, targets: np.ndarray) -> Tensor:
        """The loss of forward(ids, targets) alone, so that nn.estimate_loss (which calls model.loss(x, y)) works."""
        raise NotImplementedError("stage 09 (the GPT): GPT.loss")

    def num_parameters(self) -> int:
        """The number of scalars in parameters(): a tied embedding counts once (there is no separate head)."""
        raise NotImplementedError("stage 09 (the GPT): GPT.num_parameters")

    def flops_per_token(self) -> int:
        """Floating-point operations to train on one token (forward and backward), as an int:

            6 · N + 12 · layers · width · context

        N is the number of parameters that multiply something: num_parameters() minus the lookup tables, i.e. minus
        the position embedding, and minus the token embedding when the head is separate (a tied embedding does the
        head's matmul). Each of those costs 2 FLOPs per token forward (a multiply and an add) and 4 backward (the
        gradients of the input and of the weight). Attention adds, per layer, q · kᵀ and P · v against `context` keys:
        2 · 2 · width · context forward, times 3 with backward.
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.flops_per_token")

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz to exactly `path`: every state_dict() entry under its name, and the config as a JSON string
        under "config" (a 0-d string array: loadable with allow_pickle=False).

        Written to `path + ".tmp"` first, then renamed: a crash mid-write never leaves half a checkpoint at `path`.
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.save")

    @classmethod
    def load(cls, path: str | os.PathLike) -> GPT:
        """The model that `save` wrote to `path`: GPT(config from the file, rng=np.random.default_rng(0)) with the
        file's weights copied in (dtype float32, as saved).

        FileNotFoundError naming `path` when there is no such file. ValueError, before anything is copied, when the
        file has no "config" entry, or when its weights do not fit the model its config describes: the checks are
        Module.load_state_dict's (stage 04), whose KeyError or ValueError names the missing and unexpected keys, or
        the key whose shape differs and both shapes; load raises it again as a ValueError that adds the path.
        """
        raise NotImplementedError("stage 09 (the GPT): GPT.load")
