"""Stage 04: a neural language model (your turn: replace every NotImplementedError).

A small module system on the tensor engine (a `Module` finds its parameters by looking at its attributes), the two
layers every language model starts with (`Linear`, `Embedding`), cross-entropy from logits as ONE fused op, a seeded
batcher, and a Bengio-style MLP language model that reads a fixed window of characters and predicts the next one.
The derivations and conventions are in docs/04-nn.md.

Conventions (the tests and the later stages rely on them):
  - A parameter is a Tensor attribute with requires_grad=True. np.ndarray attributes are constant buffers and are
    neither parameters nor part of the state dict. Order: attribute assignment order, depth first.
  - Every initialisation draws from the `rng` it is given, in a stated order, so a seed fixes every weight.
  - cross_entropy averages over the targets that are not `ignore_index`; when every target is ignored it returns 0
    with a zero gradient (there is nothing to score, and a NaN would poison a whole training run).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from .tensor import Tensor, no_grad, op


class Module:
    """A piece of a network: its parameters are the Tensor attributes that require grad, found by walking attributes.

    Subclasses set their parameters and submodules as attributes in __init__ (no registration call, no need to call
    super().__init__()) and define `forward`; `module(x)` calls `module.forward(x)`. Submodules may also sit in lists
    or tuples (`self.blocks = [Block(...), Block(...)]`), named by their index ("blocks.0.attention.query.weight").
    """

    training: bool = True  # the class default; train()/eval() set it on every instance of the tree

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        """Every parameter with its dotted path from this module, in a stable order.

        Walk `vars(self)` in insertion order (the order the attributes were first assigned). For an attribute `name`:
          - a Tensor with requires_grad=True is the parameter `name`;
          - a Module contributes its own named_parameters, each prefixed `name.`;
          - a list or tuple contributes its items the same way, the i-th named `name.i` (a Tensor item that requires
            grad is `name.i`, a Module item contributes `name.i.<its names>`);
          - anything else (numbers, np.ndarray buffers, Tensors without requires_grad) is skipped.
        A parameter reached twice (a weight shared by two layers) is listed once, under the first name it is reached by.
        Returns a list of (name, Tensor) pairs; e.g. [("embedding.weight", ...), ("blocks.0.weight", ...), ...].
        """
        raise NotImplementedError("stage 04 (a neural language model): Module.named_parameters")

    def parameters(self) -> list[Tensor]:
        """The parameters of named_parameters(), in the same order, without their names."""
        raise NotImplementedError("stage 04 (a neural language model): Module.parameters")

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (Tensor.zero_grad on each), so that the next backward starts afresh."""
        raise NotImplementedError("stage 04 (a neural language model): Module.zero_grad")

    def train(self, mode: bool = True) -> Module:
        """Set `training = mode` on this module and every submodule (also those in lists and tuples); return self.

        Layers that behave differently while training (dropout) read `self.training` in forward.
        """
        raise NotImplementedError("stage 04 (a neural language model): Module.train")

    def eval(self) -> Module:
        """Evaluation mode: the same as train(False). Returns self, so `model.eval()` can be chained."""
        raise NotImplementedError("stage 04 (a neural language model): Module.eval")

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: a COPY of the parameter's data} for every named parameter, in named_parameters order.

        Copies, so that training the model afterwards does not change a saved state (and editing the state does not
        change the model).
        """
        raise NotImplementedError("stage 04 (a neural language model): Module.state_dict")

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy `state`'s arrays into the parameters of the same names, in place (parameter.data[...] = array): each
        parameter keeps its own array, which an optimizer may hold, and its dtype.

        The keys must be exactly the names of named_parameters():
          - a name missing from `state`, or a key of `state` that is no parameter, raises KeyError whose message
            lists the missing and the unexpected names;
          - an array whose shape differs from its parameter's raises ValueError naming the key and both shapes.
        Everything is checked before anything is copied: after an error the model is unchanged.
        """
        raise NotImplementedError("stage 04 (a neural language model): Module.load_state_dict")


class Linear(Module):
    """y = x @ weight + bias: an affine map of the last axis."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng: np.random.Generator,
                 std: float | None = None, dtype: Any = np.float32) -> None:
        """weight: (in_features, out_features), so that y = x @ weight with no transpose; bias: (out_features,) or None.

        weight ~ N(0, std²) with std = 1/sqrt(in_features) unless given: each output sums in_features terms, so with
        inputs of unit variance the outputs have unit variance too. Drawn with ONE call,
            weight = (rng.standard_normal((in_features, out_features)) * std).astype(dtype),
        so a seed fixes the weights. bias starts at zeros (it draws nothing); with bias=False, self.bias is None.
        Both are Tensors with requires_grad=True and the given dtype (float32 by default).
        """
        raise NotImplementedError("stage 04 (a neural language model): Linear.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features). A 1-D x (in_features,) gives (out_features,).

        x may be a Tensor or an array (an array becomes a constant Tensor of the weight's dtype).
        """
        raise NotImplementedError("stage 04 (a neural language model): Linear.forward")


class Embedding(Module):
    """A table of learned vectors, one row per token id: forward(ids) = weight[ids]."""

    def __init__(self, num_embeddings: int, dim: int, *, rng: np.random.Generator, std: float = 1.0,
                 dtype: Any = np.float32) -> None:
        """weight: (num_embeddings, dim) ~ N(0, std²), drawn with ONE call,
            weight = (rng.standard_normal((num_embeddings, dim)) * std).astype(dtype),
        a Tensor with requires_grad=True and the given dtype.
        """
        raise NotImplementedError("stage 04 (a neural language model): Embedding.__init__")

    def forward(self, ids: np.ndarray) -> Tensor:
        """ids: integer array of any shape (...) -> (..., dim), out[..., :] = weight[ids[...], :].

        The backward of the lookup adds each output row's gradient into the row of its id, so an id used k times
        receives the sum of k gradients (the engine's indexing does this). An id outside [0, num_embeddings) raises
        IndexError naming it (a negative id must not wrap around to the end of the table).
        """
        raise NotImplementedError("stage 04 (a neural language model): Embedding.forward")


def cross_entropy(logits: Tensor, targets: np.ndarray, ignore_index: int = -100) -> Tensor:
    """Mean negative log-likelihood of `targets` under softmax(logits), as ONE fused op. Returns a scalar Tensor.

    logits: (..., V) Tensor; targets: (...) integers, each in [0, V) or equal to ignore_index.
    For each position i with target t_i != ignore_index (there are N of them):
        loss_i = logsumexp(z_i) - z_i[t_i],    logsumexp(z) = m + log(sum_j exp(z_j - m)),  m = max_j z_j
    (subtracting m keeps exp() from overflowing, so logits of 1e4 are fine), and the result is sum_i loss_i / N.
    Backward: d loss / d z_i = (softmax(z_i) - one_hot(t_i)) / N for the N scored positions, 0 for ignored ones,
    times the upstream gradient. When N == 0 (every target ignored) the loss is 0 and the gradient 0.
    The result has the logits' dtype. A target outside [0, V) that is not ignore_index raises ValueError naming it;
    targets whose shape is not logits.shape[:-1] raise ValueError naming both shapes.
    """
    raise NotImplementedError("stage 04 (a neural language model): cross_entropy")


def get_batch(tokens: np.ndarray, batch_size: int, context: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """B random windows of T = context consecutive tokens, and the same windows shifted one token to the right.

    starts = rng.integers(0, len(tokens) - context, size=batch_size)  (ONE call: a seed fixes the batch)
    x[b] = tokens[starts[b] : starts[b] + T],  y[b] = tokens[starts[b] + 1 : starts[b] + T + 1]
    so y[b, t] is the token that follows x[b, t], and every window (with its last target) lies inside `tokens`.
    tokens: (N,) ids, N > context (otherwise ValueError)  ->  x, y: (B, T) int64.
    """
    raise NotImplementedError("stage 04 (a neural language model): get_batch")


class MLPLanguageModel(Module):
    """Bengio et al. (2003): embed the last `context` tokens, concatenate, one tanh hidden layer, logits of the next.

    logits = output(tanh(hidden(concat(embedding(x_1), ..., embedding(x_T)))))
    """

    def __init__(self, vocab_size: int, context: int, embed_dim: int, hidden: int, *,
                 rng: np.random.Generator) -> None:
        """Three submodules, made in this order from `rng` (so a seed fixes the model):
            self.embedding = Embedding(vocab_size, embed_dim, rng=rng)                  # std 1
            self.hidden    = Linear(context * embed_dim, hidden, rng=rng)              # std 1/sqrt(fan-in)
            self.output    = Linear(hidden, vocab_size, rng=rng, std=0.01)             # small: logits start near 0
        Also stores self.vocab_size and self.context. Near-zero logits make the first prediction almost uniform,
        so the initial loss is close to ln(vocab_size) instead of a confident, wrong guess.
        """
        raise NotImplementedError("stage 04 (a neural language model): MLPLanguageModel.__init__")

    def forward(self, x: np.ndarray) -> Tensor:
        """x: (B, context) token ids -> logits (B, vocab_size) for the token that follows each window.

        The concatenation is row-major: features [t * embed_dim : (t + 1) * embed_dim] are the embedding of x[:, t].
        A window of another length raises ValueError.
        """
        raise NotImplementedError("stage 04 (a neural language model): MLPLanguageModel.forward")

    def loss(self, x: np.ndarray, y: np.ndarray) -> Tensor:
        """Cross-entropy of the next token after each window: cross_entropy(self(x), y[:, -1]).

        x, y: (B, context) from get_batch(tokens, B, context, rng); y[:, -1] is the token after the window x[b].
        """
        raise NotImplementedError("stage 04 (a neural language model): MLPLanguageModel.loss")


def estimate_loss(model: Module, tokens: np.ndarray, batch_size: int, context: int, batches: int = 10,
                  seed: int = 0) -> float:
    """The mean of model.loss(x, y) over `batches` batches of get_batch(tokens, batch_size, context, rng), as a float.

    rng = np.random.default_rng(seed), made here, so the same model and tokens always give the same estimate.
    Runs in eval mode and under no_grad() (no graph, no gradients), then puts back the training mode the model had.
    `model` is anything with .loss(x, y) -> scalar Tensor, .training, .train(mode) and .eval().
    """
    raise NotImplementedError("stage 04 (a neural language model): estimate_loss")
