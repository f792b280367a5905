"""Stage 15: aligning a model (your turn: replace every NotImplementedError).

Stage 14's supervised fine-tuning teaches the model a format (a prompt, then an answer ending with <|end|>) by
imitation. Alignment goes further with a signal that says which answer is BETTER:
  - a reward model: the GPT with a scalar head on the last real token (stage 14's last_token_states), trained on
    (chosen, rejected) pairs with the Bradley-Terry loss;
  - DPO: the policy trained directly on the pairs, against a frozen reference, with no reward model and no sampling;
  - GRPO: the policy samples a group of answers per prompt, a verifiable reward scores them, each answer's advantage
    is its reward against the group's, and a clipped policy-ratio objective (with an optional KL penalty to the
    reference) moves the policy towards the better answers.
docs/15-align.md derives every loss and gradient.

Conventions (the tests rely on them):
  - Sequences are right-padded: ids (B, T) int64; a mask (B, T) bool is True on the response tokens (the answer and
    its <|end|>, as stage 14's ChatTokenizer.encode_chat gives it), False on the prompt and the padding.
  - Token t is predicted by the logits at position t - 1: per-token log-probabilities are (B, T - 1), aligned with
    ids[:, 1:] and mask[:, 1:] (the first token has no prediction, so mask[:, 0] must be False).
  - log σ(x) = -log(1 + e^-x) is computed with np.logaddexp, never log(sigmoid(x)) (log 0 = -inf once σ underflows).
  - Every loss is a mean over the batch (of pairs, or of sampled responses), so its size does not set the step.
  - Reference log-probabilities are computed under no_grad: the reference is a constant, never trained.
"""
from __future__ import annotations

import numpy as np

from .finetune import last_token_states
from .generate import KVCache, forward_cached, sample
from .gpt import GPT
from .nn import Linear, Module
from .optim import clip_grad_norm
from .tensor import Tensor, log_softmax, no_grad, op

# ---------------------------------------------------------------------- 1. the reward model


def log_sigmoid(x: Tensor) -> Tensor:
    """log σ(x) = -log(1 + e^-x) elementwise, one fused node, finite for every finite x.

    Forward: -np.logaddexp(0, -x) (logaddexp never exponentiates a large positive number: x = -1000 gives -1000,
    where log(sigmoid(x)) gives log 0 = -inf).
    Backward: d/dx log σ(x) = 1 - σ(x) = σ(-x), written exp(-logaddexp(0, x)) so that it cannot overflow either.
    x: (...) -> (...), same dtype.
    """
    raise NotImplementedError("stage 15 (aligning a model): log_sigmoid")


class RewardModel(Module):
    """A GPT that scores a whole sequence with one number: a Linear(C, 1) head on the last real token's state.

    reward(ids, lengths) = head(last_token_states(gpt.features(ids), lengths)), shape (B,): stage 14's pooling, the
    state of each row's last real token (rows are right-padded, so position lengths[b] - 1; a causal model's state
    there has read the whole sequence and none of the padding).
    """

    def __init__(self, gpt: GPT, *, rng: np.random.Generator) -> None:
        """Keep `gpt` (its lm head goes unused) and add head = Linear(config.width, 1, rng=rng, std=0.02): a small
        start, so that the first rewards are near 0 and the first loss near log 2."""
        raise NotImplementedError("stage 15 (aligning a model): RewardModel.__init__")

    def forward(self, ids: np.ndarray, lengths: np.ndarray) -> Tensor:
        """ids (B, T) right-padded, lengths (B,) -> rewards (B,)."""
        raise NotImplementedError("stage 15 (aligning a model): RewardModel.forward")


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Mean over the pairs of -log σ(r_chosen - r_rejected): the negative log-likelihood of the Bradley-Terry model
    P(chosen beats rejected) = σ(r_c - r_r). chosen, rejected: (B,) -> scalar. Only the difference matters: adding a
    constant to every reward changes nothing."""
    raise NotImplementedError("stage 15 (aligning a model): bradley_terry_loss")


def preference_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """The fraction of pairs ranked right: mean of chosen > rejected (a tie counts as wrong), as a Python float."""
    raise NotImplementedError("stage 15 (aligning a model): preference_accuracy")


# ---------------------------------------------------------------------- 2. direct preference optimisation


def token_logprobs(model: GPT, ids: np.ndarray) -> Tensor:
    """log p(ids[b, t] | ids[b, :t]) for t = 1 .. T - 1: ids (B, T) -> (B, T - 1), with the graph to the model.

    One forward over ids[:, :-1] (position t - 1 predicts token t), log_softmax of the logits, and the entry of each
    target gathered with ONE fancy index [rows, positions, targets].
    """
    raise NotImplementedError("stage 15 (aligning a model): token_logprobs")


def sequence_logprobs(model: GPT, ids: np.ndarray, mask: np.ndarray) -> Tensor:
    """log π(response | prompt) per row: the sum of token_logprobs over the response tokens. (B, T), (B, T) -> (B,).

    mask[:, 1:] selects the predicted tokens that are response tokens; prompt and padding add nothing (and get no
    gradient). ValueError when mask's shape is not ids' or when mask[:, 0] is True (nothing predicts a first token).
    """
    raise NotImplementedError("stage 15 (aligning a model): sequence_logprobs")


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, reference_chosen: np.ndarray,
             reference_rejected: np.ndarray, beta: float) -> Tensor:
    """The DPO loss, mean over the pairs of -log σ(β [(π_c - ref_c) - (π_r - ref_r)]), all sequence log-probs (B,).

    π are Tensors (the policy, with its graph); ref are arrays (the frozen reference: constants). The gradient
    (docs/15-align.md, section 3): with Δ the bracket, dL/dπ_c = -β σ(-βΔ) / B and dL/dπ_r = +β σ(-βΔ) / B: pairs the
    policy already ranks far better than the reference does (βΔ >> 0) stop pulling. ValueError unless beta > 0.
    """
    raise NotImplementedError("stage 15 (aligning a model): dpo_loss")


def implicit_rewards(policy: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """DPO's implicit reward of each sequence, β (log π - log π_ref): (B,), (B,) -> float64 (B,). The reward under
    which the policy is optimal for the KL-regularised objective, up to a per-prompt constant that cancels in pairs."""
    raise NotImplementedError("stage 15 (aligning a model): implicit_rewards")


def dpo_batch_loss(policy: GPT, reference: GPT, chosen: tuple, rejected: tuple, beta: float) -> tuple[Tensor, dict]:
    """The DPO loss of a batch of pairs, and what to watch while it trains.

    chosen, rejected: (ids (B, T), mask (B, T)) each, row b of both from the same prompt. The reference's sequence
    log-probs are computed under no_grad (no graph: it is never trained); the policy's with the graph.
    Returns (loss, stats) with stats floats: "chosen_reward", "rejected_reward" (means of implicit_rewards), "margin"
    (mean of chosen - rejected implicit rewards) and "accuracy" (the fraction of pairs whose margin is > 0).
    """
    raise NotImplementedError("stage 15 (aligning a model): dpo_batch_loss")


# ---------------------------------------------------------------------- 3. group relative policy optimisation


def sample_responses(model: GPT, prompt: np.ndarray, group: int, max_new_tokens: int, *, end: int,
                     rng: np.random.Generator, temperature: float = 1.0) -> list[np.ndarray]:
    """`group` responses to one prompt, sampled together with stage 11's KV cache; each stops at its first `end`.

    prompt: int (P,). The group is one batch of `group` copies: prefill them with one forward_cached, then per step
    ONE sample(logits of the last position, rng, temperature=...) for all rows and one forward_cached of the drawn
    tokens. A row that has drawn `end` is finished (it keeps being fed, its draws are ignored); the loop stops when
    every row has finished or after max_new_tokens draws, or when the context is full (the cache never holds more
    than config.context tokens: at most config.context - P + 1 draws). Eval mode, restored afterwards.
    Returns a list of `group` int64 arrays: each row's drawn tokens up to and including its first `end` (all of
    them when it never drew one).
    """
    raise NotImplementedError("stage 15 (aligning a model): sample_responses")


def group_advantages(rewards: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Each response's reward against its group's: (r - mean) / (std + eps) along the last axis (the group).

    rewards: (..., G) -> float64 (..., G). std is the population standard deviation (np.std, ddof 0). A group whose
    rewards are all equal teaches nothing about which answer is better: its advantages are exactly 0 (0 / eps).
    """
    raise NotImplementedError("stage 15 (aligning a model): group_advantages")


def kl_penalty(logprobs: Tensor, reference_logprobs: np.ndarray) -> Tensor:
    """The k3 estimator of KL(π || π_ref) per token: exp(ref - π) - (ref - π) - 1, elementwise (>= 0, 0 where the
    log-probs agree). With samples from π its mean is the KL, with less variance than π - ref.
    Gradient with respect to π: 1 - exp(ref - π)."""
    raise NotImplementedError("stage 15 (aligning a model): kl_penalty")


def grpo_loss(logprobs: Tensor, old_logprobs: np.ndarray, advantages: np.ndarray, mask: np.ndarray, *,
              clip: float = 0.2, reference_logprobs: np.ndarray | None = None, kl_coef: float = 0.0) -> Tensor:
    """The clipped policy-ratio loss (negated objective) of a batch of B sampled responses.

    logprobs (B, T) Tensor: the policy's per-token log-probs now; old_logprobs (B, T): those of the policy that sampled
    (constants); advantages (B,): one per response, shared by its tokens; mask (B, T) bool: the response tokens.
    Per token: ratio = exp(logπ - logπ_old), objective = min(ratio · A, clip(ratio, 1 - clip, 1 + clip) · A), and
    loss_t = -objective + kl_coef · kl_penalty(logπ, reference_logprobs) (no KL term when kl_coef == 0).
    Normalisation (the GRPO paper's, and CS336's masked mean): each response's mean over ITS response tokens, then the
    mean over the B responses. The min passes the gradient where the unclipped term is the smaller (or equal) one;
    where the clipped term wins it is a constant and the token gets no gradient.
    """
    raise NotImplementedError("stage 15 (aligning a model): grpo_loss")


def grpo_step(policy: GPT, optimizer, ids: np.ndarray, mask: np.ndarray, old_logprobs: np.ndarray,
              advantages: np.ndarray, *, clip: float = 0.2, reference_logprobs: np.ndarray | None = None,
              kl_coef: float = 0.0, max_norm: float = 1.0) -> dict:
    """One update of the policy on a batch of sampled responses: zero the gradients, token_logprobs(policy, ids)
    with the graph, grpo_loss on mask[:, 1:], backward, clip_grad_norm(policy.parameters(), max_norm), step.

    ids, mask (B, T); old_logprobs and reference_logprobs (B, T - 1), aligned with ids[:, 1:]; advantages (B,).
    Returns floats: "loss", "grad_norm" (before clipping) and "clipped" (the fraction of response tokens whose ratio
    lies outside [1 - clip, 1 + clip]). FloatingPointError, before any update, when the gradient norm is not finite.
    """
    raise NotImplementedError("stage 15 (aligning a model): grpo_step")


def _main() -> None:
    """python -m solutions.align reward|dpo|grpo ...: the runs are given, in align_runs.py (imported here, when the
    command runs, so that importing this module never needs them)."""
    from .align_runs import main

    main()


if __name__ == "__main__":
    _main()
