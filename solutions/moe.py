"""Stage 17: mixture of experts.

A feed-forward layer made of E experts (stage 07's SwiGLU or MLP) of which each token uses only k: a linear router
scores the experts, a softmax turns the scores into probabilities, each token goes to its top k experts and their
outputs are mixed with the probabilities as gates. Each expert takes at most `capacity` tokens per call; a token
that finds its expert full is dropped for that choice (the layer adds 0 for it, so the block's residual carries the
token on). An auxiliary loss (Switch Transformer's) pushes the router towards spreading tokens evenly.
docs/17-moe.md derives the capacity, the balance loss and every gradient.

Conventions (the tests rely on them):
  - Router: logits = x @ router.weight (no bias), probabilities = softmax over the E experts, per token.
  - Top k: the k most probable experts in decreasing order of probability; among equal probabilities the LOWER expert
    id comes first (a stable sort of -p).
  - Gates are the softmax probabilities of the chosen experts, NOT renormalised over the top k: with k = 1 the gate
    is p(chosen) < 1, which is the router's only gradient from the task loss (a renormalised gate would be 1).
  - Capacity C = ceil(capacity_factor · tokens · k / E). Slots are claimed by choice rank, then token order: every
    token's first choice in token order, then every token's second choice in token order, ... An expert keeps the
    first C claims it receives and drops the rest.
  - Balance loss = E · sum_e f_e · P_e, f_e = (number of the N·k choices that name e, before any drop) / (N·k),
    P_e = mean over tokens of p_e. f is piecewise constant (no gradient); the gradient flows through P.
    It is exactly 1 when every p_e = 1/E, and exactly 1 when every f_e = 1/E (whatever the probabilities).
  - The gradient of the top-k choice is 0 almost everywhere: gradients reach the router only through the kept gates
    and the balance loss.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .blocks import MLP, SwiGLU
from .gpt import GPT, GPTConfig, OPTIONS
from .nn import Linear, Module
from .tensor import Tensor, op, softmax

FEED_FORWARDS = {"swiglu": SwiGLU, "gelu": MLP}  # the expert kinds: stage 07's two feed-forward networks


def expert_capacity(tokens: int, experts: int, top_k: int, capacity_factor: float) -> int:
    """The most tokens one expert takes in one call: ceil(capacity_factor · tokens · top_k / experts), an int.

    tokens · top_k choices spread evenly would give each expert tokens · top_k / experts; the factor is the slack for
    uneven routing (1.25 in the Switch Transformer). e.g. 8 tokens, 4 experts, k = 1, factor 1.25: ceil(2.5) = 3.
    ValueError naming the argument for experts < 1, top_k outside 1 .. experts, or capacity_factor <= 0.
    """
    ### BEGIN SOLUTION
    if experts < 1 or not 1 <= top_k <= experts:
        raise ValueError(f"expert_capacity: need experts >= 1 and 1 <= top_k <= experts, got experts={experts}, "
                         f"top_k={top_k}")
    if not capacity_factor > 0:
        raise ValueError(f"expert_capacity: capacity_factor must be > 0, got {capacity_factor}")
    return math.ceil(capacity_factor * tokens * top_k / experts)
    ### END SOLUTION


def top_k_experts(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The k most probable experts of each token: (N, E) -> (N, k) int64, in decreasing order of probability.

    Ties go to the lower expert id: with p = [0.4, 0.2, 0.4] and k = 1 the choice is expert 0, with k = 2 it is
    [0, 2]. (A stable sort of -p keeps equal values in id order; np.argsort's default quicksort does not promise it.)
    """
    ### BEGIN SOLUTION
    return np.argsort(-probabilities, axis=-1, kind="stable")[:, :k].astype(np.int64)  # (N, k)
    ### END SOLUTION


def claim_slots(choices: np.ndarray, experts: int, capacity: int) -> np.ndarray:
    """Which choices get a slot: choices (N, k) expert ids -> kept (N, k) bool.

    Claims arrive by choice rank, then token order: choices[0, 0], choices[1, 0], ..., choices[N-1, 0], then
    choices[0, 1], ..., so a token's first choice never loses its slot to another token's second choice. Each expert
    keeps its first `capacity` claims. e.g. choices [[1], [1], [0], [1]], capacity 2: kept [[T], [T], [T], [F]].
    """
    ### BEGIN SOLUTION
    by_rank = choices.T.reshape(-1)  # (k·N,): rank 0 of every token first, in token order
    claims = np.zeros((by_rank.size, experts), dtype=np.int64)
    claims[np.arange(by_rank.size), by_rank] = 1  # (k·N, E) one-hot
    position = (np.cumsum(claims, axis=0) - 1)[np.arange(by_rank.size), by_rank]  # the place in its expert's queue
    return (position < capacity).reshape(choices.T.shape).T  # (N, k)
    ### END SOLUTION


def index_add(values: Tensor, rows: np.ndarray, size: int) -> Tensor:
    """Scatter rows into a zero matrix, one fused op: out = zeros((size, C)); out[rows[i]] += values[i] for every i.

    values: (n, C), rows: (n,) ints in 0 .. size - 1 (repeats add up)  ->  (size, C), in values' dtype.
    Backward: each value was added to one output row, so dL/dvalues[i] = G[rows[i]].
    """
    ### BEGIN SOLUTION
    out = np.zeros((size, values.shape[-1]), dtype=values.dtype)
    np.add.at(out, rows, values.data)  # out[rows] += values would keep only one of repeated rows
    return op(out, (values,), lambda g: (g[rows],))
    ### END SOLUTION


def load_balancing_loss(probabilities: Tensor, choices: np.ndarray, experts: int) -> Tensor:
    """Switch Transformer's auxiliary loss: E · sum_e f_e · P_e, a scalar Tensor.

    probabilities: (N, E) the router's softmax; choices: (N, k) the top-k expert ids (before capacity drops).
    f_e = (count of e in choices) / (N · k), a constant; P_e = probabilities[:, e].mean(), differentiable.
    dL/dp[n, e] = E · f_e / N. Uniform probabilities (P_e = 1/E) or a balanced assignment (f_e = 1/E) give exactly 1.
    """
    ### BEGIN SOLUTION
    fraction = np.bincount(choices.reshape(-1), minlength=experts) / choices.size  # (E,), sums to 1
    return (probabilities.mean(axis=0) * fraction.astype(probabilities.dtype)).sum() * float(experts)
    ### END SOLUTION


class MoE(Module):
    """A mixture-of-experts feed-forward: y[n] = sum over the kept choices e of token n of p_e(x[n]) · expert_e(x[n]).

    After each forward: `aux_loss` (the balance loss of that call, a scalar Tensor), `choices` (N, k) and `kept`
    (N, k) (numpy, for inspection), with N = the number of tokens of the call (all leading axes flattened).
    """

    def __init__(self, width: int, hidden: int, experts: int, top_k: int = 1, capacity_factor: float = 1.25, *,
                 rng: np.random.Generator, feed_forward: str = "swiglu", layers: int = 1) -> None:
        """Submodules in this order: `router` = Linear(width, experts, bias=False), then `experts`, a list of
        `experts` SwiGLU(width, hidden) (or MLP for feed_forward "gelu"), all drawn from `rng` in that order.
        Keeps top_k and capacity_factor.

        Initialisation as Block's (GPT-2's): every matrix is then redrawn in place from N(0, 0.02²), in
        named_parameters order, except each expert's `down`, drawn with std 0.02 / sqrt(2 · layers).
        ValueError naming the option for an unknown feed_forward, or the arguments expert_capacity refuses.
        """
        ### BEGIN SOLUTION
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"MoE: feed_forward must be one of {sorted(FEED_FORWARDS)}, got {feed_forward!r}")
        expert_capacity(1, experts, top_k, capacity_factor)  # checks the arguments
        self.top_k, self.capacity_factor = top_k, capacity_factor
        self.router = Linear(width, experts, bias=False, rng=rng)
        self.experts = [FEED_FORWARDS[feed_forward](width, hidden, rng=rng) for _ in range(experts)]
        for name, parameter in self.named_parameters():
            if parameter.ndim == 2:  # a matrix; biases keep their zeros
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("down.weight") else 0.02
                parameter.data[...] = rng.standard_normal(parameter.shape) * std  # in place: keeps the dtype
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width). Flatten to N tokens, route, give each expert its kept tokens (in token
        order) as one batch, scale each output row by its gate, index_add the rows back; a dropped choice adds 0.
        Sets aux_loss = load_balancing_loss(probabilities, choices, E), and choices and kept."""
        ### BEGIN SOLUTION
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, C)
        N, experts = tokens.shape[0], len(self.experts)
        probabilities = softmax(self.router(tokens))  # (N, E)
        self.choices = top_k_experts(probabilities.data, self.top_k)  # (N, k)
        capacity = expert_capacity(N, experts, self.top_k, self.capacity_factor)
        self.kept = claim_slots(self.choices, experts, capacity)  # (N, k)
        self.aux_loss = load_balancing_loss(probabilities, self.choices, experts)
        out = None
        for e, expert in enumerate(self.experts):
            rows, ranks = np.nonzero((self.choices == e) & self.kept)  # token order: row-major nonzero
            if rows.size == 0:
                continue  # an idle expert: no work, no gradient
            gates = probabilities[rows, np.full_like(rows, e)].reshape(-1, 1)  # (n_e, 1), not renormalised
            part = index_add(expert(tokens[rows]) * gates, rows, N)  # (N, C), zero outside `rows`
            out = part if out is None else out + part
        if out is None:  # every choice dropped: the layer adds nothing
            out = tokens * 0.0
        return out.reshape(*shape)
        ### END SOLUTION


@dataclass
class MoEConfig(GPTConfig):
    """A GPTConfig whose blocks use an MoE feed-forward: feed_forward = "moe" (stage 09 knows only "swiglu" and
    "gelu"; MoEGPT builds the model from this config, so stage 09 needs no change).

    expert_feed_forward  the kind of each expert, "swiglu" or "gelu", with the dense hidden size: with top_k = 1 a
                         token uses exactly the parameters of one dense feed-forward (plus the router's C · E)
    experts, top_k       E, and the experts each token uses
    capacity_factor      slack of expert_capacity
    aux_loss_weight      α: the returned loss is cross-entropy + α · (sum over layers of the balance loss)
    """

    feed_forward: str = "moe"
    expert_feed_forward: str = "swiglu"
    experts: int = 4
    top_k: int = 1
    capacity_factor: float = 1.25
    aux_loss_weight: float = 0.01


def expert_hidden(config: MoEConfig) -> int:
    """An expert's hidden size: the dense feed-forward's (Block's rule), 8 · ceil(C / 3) for swiglu, 4 · C for gelu."""
    return 8 * math.ceil(config.width / 3) if config.expert_feed_forward == "swiglu" else 4 * config.width


class MoEGPT(GPT):
    """stage 09's GPT with every block's feed_forward an MoE; forward adds the weighted balance loss to the loss."""

    def __init__(self, config: MoEConfig, *, rng: np.random.Generator) -> None:
        """Build GPT with the dense twin of config (feed_forward = expert_feed_forward), then replace each block's
        `feed_forward`, block by block, by MoE(width, expert_hidden(config), experts, top_k, capacity_factor,
        rng=rng, feed_forward=expert_feed_forward, layers=layers). Keeps `config` (the MoEConfig).
        ValueError naming the option when feed_forward is not "moe".
        """
        ### BEGIN SOLUTION
        if config.feed_forward != "moe" or config.expert_feed_forward not in OPTIONS["feed_forward"]:
            raise ValueError(f"MoEGPT: feed_forward must be 'moe' and expert_feed_forward one of "
                             f"{OPTIONS['feed_forward']}; got {config.feed_forward!r}, "
                             f"{config.expert_feed_forward!r}")
        dense = GPTConfig(**{field.name: getattr(config, field.name) for field in dataclasses.fields(GPTConfig)})
        dense.feed_forward = config.expert_feed_forward  # stage 09 builds the blocks; their feed_forward is replaced
        super().__init__(dense, rng=rng)
        self.config = config
        for block in self.blocks:
            block.feed_forward = MoE(config.width, expert_hidden(config), config.experts, config.top_k,
                                     config.capacity_factor, rng=rng, feed_forward=config.expert_feed_forward,
                                     layers=config.layers)
        ### END SOLUTION

    def forward(self, ids: np.ndarray, targets: np.ndarray | None = None,
                cache=None) -> tuple[Tensor, Tensor | None]:
        """GPT.forward, and then: self.aux_loss = the sum over blocks of feed_forward.aux_loss (a Tensor); with
        targets the loss is cross-entropy + config.aux_loss_weight · self.aux_loss."""
        ### BEGIN SOLUTION
        logits, loss = super().forward(ids, targets, cache)
        self.aux_loss = sum((block.feed_forward.aux_loss for block in self.blocks[1:]),
                            self.blocks[0].feed_forward.aux_loss)
        if loss is not None:
            loss = loss + self.aux_loss * self.config.aux_loss_weight
        return logits, loss
        ### END SOLUTION
