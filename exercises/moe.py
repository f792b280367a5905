"""Stage 17: mixture of experts (your turn: replace every NotImplementedError).

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
    raise NotImplementedError("stage 17 (mixture of experts): expert_capacity")


def top_k_experts(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The k most probable experts of each token: (N, E) -> (N, k) int64, in decreasing order of probability.

    Ties go to the lower expert id: with p = [0.4, 0.2, 0.4] and k = 1 the choice is expert 0, with k = 2 it is
    [0, 2]. (A stable sort of -p keeps equal values in id order; np.argsort's default quicksort does not promise it.)
    """
    raise NotImplementedError("stage 17 (mixture of experts): top_k_experts")


def claim_slots(choices: np.ndarray, experts: int, capacity: int) -> np.ndarray:
    """Which choices get a slot: choices (N, k) expert ids -> kept (N, k) bool.

    Claims arrive by choice rank, then token order: choices[0, 0], choices[1, 0], ..., choices[N-1, 0], then
    choices[0, 1], ..., so a token's first choice never loses its slot to another token's second choice. Each expert
    keeps its first `capacity` claims. e.g. choices [[1], [1], [0], [1]], capacity 2: kept [[T], [T], [T], [F]].
    """
    raise NotImplementedError("stage 17 (mixture of experts): claim_slots")


def index_add(values: Tensor, rows: np.ndarray, size: int) -> Tensor:
    """Scatter rows into a zero matrix, one fused op: out = zeros((size, C)); out[rows[i]] += values[i] for every i.

    values: (n, C), rows: (n,) ints in 0 .. size - 1 (repeats add up)  ->  (size, C), in values' dtype.
    Backward: each value was added to one output row, so dL/dvalues[i] = G[rows[i]].
    """
    raise NotImplementedError("stage 17 (mixture of experts): index_add")


def load_balancing_loss(probabilities: Tensor, choices: np.ndarray, experts: int) -> Tensor:
    """Switch Transformer's auxiliary loss: E · sum_e f_e · P_e, a scalar Tensor.

    probabilities: (N, E) the router's softmax; choices: (N, k) the top-k expert ids (before capacity drops).
    f_e = (count of e in choices) / (N · k), a constant; P_e = probabilities[:, e].mean(), differentiable.
    dL/dp[n, e] = E · f_e / N. Uniform probabilities (P_e = 1/E) or a balanced assignment (f_e = 1/E) give exactly 1.
    """
    raise NotImplementedError("stage 17 (mixture of experts): load_balancing_loss")


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
        raise NotImplementedError("stage 17 (mixture of experts): MoE.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width). Flatten to N tokens, route, give each expert its kept tokens (in token
        order) as one batch, scale each output row by its gate, index_add the rows back; a dropped choice adds 0.
        Sets aux_loss = load_balancing_loss(probabilities, choices, E), and choices and kept."""
        raise NotImplementedError("stage 17 (mixture of experts): MoE.forward")


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
        raise NotImplementedError("stage 17 (mixture of experts): MoEGPT.__init__")

    def forward(self, ids: np.ndarray, targets: np.ndarray | None = None,
                cache=None) -> tuple[Tensor, Tensor | None]:
        """GPT.forward, and then: self.aux_loss = the sum over blocks of feed_forward.aux_loss (a Tensor); with
        targets the loss is cross-entropy + config.aux_loss_weight · self.aux_loss."""
        raise NotImplementedError("stage 17 (mixture of experts): MoEGPT.forward")
