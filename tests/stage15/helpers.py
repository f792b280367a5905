"""Stage 15 helpers shared by the visible suites and the hidden one (a helper exists once): float64 models on the
target's own earlier stages, the probes both suites run, and the tolerances with their reasons."""
from __future__ import annotations

import math

import numpy as np

from grader.harness import Tol, central_difference, raised, randomise_parameters, seeded, sibling
from tests.stage09.helpers import model_of  # noqa: F401 (the suites import it from here)

TINY = {"vocab_size": 11, "context": 16, "layers": 2, "heads": 2, "width": 8}  # small enough for many probes


def sigmoid(x: float) -> float:
    """σ(x), written out for hand computations (both branches finite)."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# float64 sequence log-probabilities are sums of a few dozen log-softmax entries of O(1): a handful of roundings.
LOGPROB = Tol(1e-10, 1e-12, "float64 sums of a few dozen log-probabilities; only the order of summation may differ")
# Gradients of whole models against central differences: truncation O(eps^2) on a few-layer network, in float64.
MODEL_GRADCHECK = Tol(1e-5, 1e-8, "central differences (eps 1e-6) through a 2-layer float64 GPT: O(eps^2) truncation")


def leaf(m, values) -> object:
    """A float64 Tensor of `values` that requires grad (a fresh copy)."""
    tensor = sibling(m, "tensor")
    return tensor.Tensor(np.array(values, dtype=np.float64), requires_grad=True, dtype=np.float64)


def grad_of(t, like) -> np.ndarray:
    return t.grad if t.grad is not None else np.zeros_like(np.asarray(like, dtype=np.float64))


# ---------------------------------------------------------------- 1. the reward model


def probe_log_sigmoid(m, x: list, weights: list, dtype: str = "float64") -> dict:
    """log_sigmoid(x) and the gradient of sum(out · weights); in float32 no gradient is taken."""
    tensor = sibling(m, "tensor")
    x_leaf = tensor.Tensor(np.array(x, dtype=dtype), requires_grad=True, dtype=dtype)
    out = m.log_sigmoid(x_leaf)
    (out * np.array(weights, dtype=dtype)).sum().backward()
    return {"out": out.data, "grad": grad_of(x_leaf, x), "dtype": str(out.dtype)}


def probe_pairwise_gradcheck(m, function: str, chosen: np.ndarray, rejected: np.ndarray, extra: dict) -> dict:
    """A pairwise loss (bradley_terry_loss, or dpo_loss with extra = reference_chosen, reference_rejected, beta) and
    its gradients: backward beside central differences of the target's own forward."""
    tensor = sibling(m, "tensor")
    chosen, rejected = chosen.copy(), rejected.copy()
    loss_fn = getattr(m, function)

    def value() -> float:
        with tensor.no_grad():
            return float(loss_fn(tensor.Tensor(chosen, dtype=np.float64), tensor.Tensor(rejected, dtype=np.float64),
                                 **extra).item())

    c, r = leaf(m, chosen), leaf(m, rejected)
    loss = loss_fn(c, r, **extra)
    loss.backward()
    return {"loss": float(loss.item()), "shape": list(loss.shape), "grad_chosen": grad_of(c, chosen),
            "grad_rejected": grad_of(r, rejected), "numeric_chosen": central_difference(value, chosen),
            "numeric_rejected": central_difference(value, rejected)}


def reward_model_of(m, fields: dict, seed: int):
    """RewardModel on a float64 GPT, its head drawn from seeded(seed + 2), then given float64 seeded weights."""
    model = model_of(m, fields, seed)
    reward = m.RewardModel(model, rng=seeded(seed + 2))
    head_shape = list(reward.head.weight.shape)
    randomise_parameters(reward.head, seed + 3, np.float64, spread=0.5)
    return reward, head_shape


def probe_reward_model(m, fields: dict, seed: int, ids: np.ndarray, lengths: list) -> dict:
    """Rewards of a right-padded batch, each row's reward alone (its real tokens only), the rewards with the padding
    replaced by other tokens, the parameter names, and the head as drawn (float32 GPT, so as built)."""
    reward, head_shape = reward_model_of(m, fields, seed)
    tensor = sibling(m, "tensor")
    lengths = np.array(lengths, dtype=np.int64)
    with tensor.no_grad():
        batch = reward(ids, lengths).data
        alone = [float(reward(ids[b:b + 1, :n], np.array([n])).data[0]) for b, n in enumerate(lengths)]
        other = ids.copy()
        for b, n in enumerate(lengths):
            other[b, n:] = (other[b, n:] + 1) % fields["vocab_size"]
        repadded = reward(other, lengths).data
    gpt = sibling(m, "gpt")
    fresh = m.RewardModel(gpt.GPT(gpt.GPTConfig(**fields), rng=seeded(seed)), rng=seeded(seed + 2))
    return {"batch": batch, "alone": alone, "repadded": repadded, "head_shape": head_shape,
            "names": sorted(name for name, _ in reward.named_parameters()), "initial_head": fresh.head.weight.data,
            "initial_bias": fresh.head.bias.data if fresh.head.bias is not None else np.zeros(0)}


def probe_reward_training(m, fields: dict, seed: int, steps: int, lr: float) -> dict:
    """Bradley-Terry on a tiny reward model: chosen sequences end in token 1, rejected ones in token 2 (a rule the
    pooled state can see); the loss and held-out accuracy (other sequences) at every step."""
    tensor, optim = sibling(m, "tensor"), sibling(m, "optim")
    gpt = sibling(m, "gpt")
    reward = m.RewardModel(gpt.GPT(gpt.GPTConfig(**fields), rng=seeded(seed)), rng=seeded(seed + 1))
    rng = seeded(seed + 2)
    vocab = fields["vocab_size"]

    def pairs(count):
        body = rng.integers(3, vocab, (count, 6))
        lengths = rng.integers(3, 7, count)
        chosen, rejected = body.copy(), body.copy()
        chosen[np.arange(count), lengths - 1] = 1
        rejected[np.arange(count), lengths - 1] = 2
        return chosen, rejected, lengths

    train, held = pairs(16), pairs(16)
    optimizer = optim.AdamW(reward.parameters(), lr=lr, weight_decay=0.0)
    losses, accuracy = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = m.bradley_terry_loss(reward(train[0], train[2]), reward(train[1], train[2]))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        with tensor.no_grad():
            accuracy.append(m.preference_accuracy(reward(held[0], held[2]).data, reward(held[1], held[2]).data))
    return {"losses": losses, "accuracy": accuracy}


# ---------------------------------------------------------------- 2. DPO


def probe_token_logprobs(m, fields: dict, seed: int, ids: np.ndarray) -> dict:
    """token_logprobs beside a test-side log-softmax of the target's own forward logits, gathered by loops."""
    model = model_of(m, fields, seed)
    got = m.token_logprobs(model, ids)
    tensor = sibling(m, "tensor")
    with tensor.no_grad():
        logits = model(ids[:, :-1])[0].data  # (B, T - 1, V)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    B, T = ids.shape
    wanted = np.array([[log_probs[b, t, ids[b, t + 1]] for t in range(T - 1)] for b in range(B)])
    return {"got": got.data, "by_hand": wanted, "shape": list(got.shape)}


def probe_sequence_logprobs(m, fields: dict, seed: int, ids: np.ndarray, mask: np.ndarray,
                            padded_from: list) -> dict:
    """sequence_logprobs; the same with every token at or after padded_from[b] changed (padding must not count);
    the token_logprobs it should sum; and the gradient norm reaching the model."""
    model = model_of(m, fields, seed)
    got = m.sequence_logprobs(model, ids, mask)
    got.sum().backward()
    grad_norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters() if p.grad is not None))
    tensor = sibling(m, "tensor")
    other = ids.copy()
    for b, start in enumerate(padded_from):
        other[b, start:] = (other[b, start:] + 3) % fields["vocab_size"]
    with tensor.no_grad():
        repadded = m.sequence_logprobs(model, other, mask).data
        tokens = m.token_logprobs(model, ids).data
    return {"got": got.data, "repadded": repadded, "summed": (tokens * mask[:, 1:]).sum(axis=1),
            "grad_norm": grad_norm}


def probe_sequence_refusals(m, fields: dict) -> dict:
    model = model_of(m, fields, 1500)
    ids = np.array([[1, 2, 3, 4]])
    mask = np.array([[False, False, True, True]])

    def shape_of(*args):
        return list(m.sequence_logprobs(model, *args).shape)

    return {"accepted": raised(shape_of, ids, mask),
            "first": raised(m.sequence_logprobs, model, ids, np.array([[True, False, True, True]]),
                            mentions=("mask",)),
            "shape": raised(m.sequence_logprobs, model, ids, np.array([[False, True, True]]), mentions=("mask",))}


def probe_dpo_loss(m, policy_chosen: list, policy_rejected: list, reference_chosen: list, reference_rejected: list,
                   beta: float) -> dict:
    c, r = leaf(m, policy_chosen), leaf(m, policy_rejected)
    loss = m.dpo_loss(c, r, np.array(reference_chosen), np.array(reference_rejected), beta)
    loss.backward()
    return {"loss": float(loss.item()), "grad_chosen": grad_of(c, policy_chosen),
            "grad_rejected": grad_of(r, policy_rejected)}


def probe_dpo_beta_refusal(m, beta: float) -> dict:
    values = np.array([-1.0, -2.0])

    def loss_of(b):
        return float(m.dpo_loss(leaf(m, values), leaf(m, values), values, values, b).item())

    return raised(loss_of, beta, mentions=("beta",))


def probe_implicit_rewards(m, policy: list, reference: list, beta: float) -> np.ndarray:
    return m.implicit_rewards(np.array(policy), np.array(reference), beta)


def pair_batch(seed: int, vocab: int, batch: int, length: int) -> dict:
    """Right-padded chosen and rejected batches sharing prompts: ids and masks (prompt 3 tokens, responses of 1 to
    length - 3 tokens, padding 0)."""
    rng = seeded(seed)
    out = {}
    prompts = rng.integers(1, vocab, (batch, 3))
    for side in ("chosen", "rejected"):
        ids = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=bool)
        for b in range(batch):
            n = int(rng.integers(1, length - 2))
            ids[b, :3] = prompts[b]
            ids[b, 3:3 + n] = rng.integers(1, vocab, n)
            mask[b, 3:3 + n] = True
        out[side] = (ids, mask)
    return {"chosen_ids": out["chosen"][0], "chosen_mask": out["chosen"][1], "rejected_ids": out["rejected"][0],
            "rejected_mask": out["rejected"][1]}


def probe_dpo_batch(m, fields: dict, seeds: list, beta: float, chosen_ids: np.ndarray, chosen_mask: np.ndarray,
                    rejected_ids: np.ndarray, rejected_mask: np.ndarray) -> dict:
    """dpo_batch_loss of a policy and a reference (seeds[0], seeds[1]); after backward: which models got gradients,
    and the loss and stats recomputed test-side from the target's sequence_logprobs."""
    policy, reference = model_of(m, fields, seeds[0]), model_of(m, fields, seeds[1])
    graphs = []  # for each reference forward: did its logits carry a graph?
    forward = reference.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        graphs.append(bool(out[0].requires_grad))
        return out

    reference.forward = spy  # Module.__call__ calls self.forward: the instance's attribute
    loss, stats = m.dpo_batch_loss(policy, reference, (chosen_ids, chosen_mask), (rejected_ids, rejected_mask), beta)
    reference.forward = forward
    loss.backward()
    tensor = sibling(m, "tensor")
    with tensor.no_grad():
        pc, pr = (m.sequence_logprobs(policy, chosen_ids, chosen_mask).data,
                  m.sequence_logprobs(policy, rejected_ids, rejected_mask).data)
        rc, rr = (m.sequence_logprobs(reference, chosen_ids, chosen_mask).data,
                  m.sequence_logprobs(reference, rejected_ids, rejected_mask).data)
    delta = beta * ((pc - rc) - (pr - rr))
    return {"loss": float(loss.item()), "stats": {k: float(v) for k, v in sorted(stats.items())},
            "by_hand": {"loss": float(np.mean(np.logaddexp(0.0, -delta))), "margin": float(delta.mean()),
                        "chosen_reward": float(beta * (pc - rc).mean()),
                        "rejected_reward": float(beta * (pr - rr).mean()),
                        "accuracy": float(np.mean(delta > 0))},
            "reference_graphs": graphs,
            "reference_grads": sum(p.grad is not None and bool(np.any(p.grad)) for p in reference.parameters()),
            "policy_grads": sum(p.grad is not None and bool(np.any(p.grad)) for p in policy.parameters()),
            "policy_parameters": len(policy.parameters())}


def probe_dpo_gradcheck(m, fields: dict, seeds: list, beta: float, chosen_ids: np.ndarray, chosen_mask: np.ndarray,
                        rejected_ids: np.ndarray, rejected_mask: np.ndarray, names: list) -> dict:
    """dpo_batch_loss's gradient for a few of the policy's parameters against central differences of its loss."""
    policy, reference = model_of(m, fields, seeds[0]), model_of(m, fields, seeds[1])
    tensor = sibling(m, "tensor")
    batch = ((chosen_ids, chosen_mask), (rejected_ids, rejected_mask))

    def value() -> float:
        with tensor.no_grad():
            return float(m.dpo_batch_loss(policy, reference, *batch, beta)[0].item())

    loss, _ = m.dpo_batch_loss(policy, reference, *batch, beta)
    loss.backward()
    named = dict(policy.named_parameters())
    return {"analytic": {name: grad_of(named[name], named[name].data) for name in names},
            "numeric": {name: central_difference(value, named[name].data) for name in names}}


# ---------------------------------------------------------------- 3. GRPO


def probe_advantages(m, rewards: np.ndarray, eps: float = 1e-6) -> dict:
    got = m.group_advantages(np.asarray(rewards), eps)
    return {"advantages": got, "dtype": str(np.asarray(got).dtype)}


def probe_kl(m, logprobs: list, reference: list) -> dict:
    x = leaf(m, logprobs)
    out = m.kl_penalty(x, np.array(reference, dtype=np.float64))
    out.sum().backward()
    return {"out": out.data, "grad": grad_of(x, logprobs)}


def probe_grpo_loss(m, logprobs: np.ndarray, old: np.ndarray, advantages: list, mask: np.ndarray, clip: float,
                    reference: np.ndarray | None, kl_coef: float) -> dict:
    """grpo_loss and its gradient with respect to the per-token log-probs, beside central differences."""
    tensor = sibling(m, "tensor")
    logprobs = logprobs.copy()
    options = {"clip": clip, "reference_logprobs": reference, "kl_coef": kl_coef}

    def value() -> float:
        with tensor.no_grad():
            return float(m.grpo_loss(tensor.Tensor(logprobs, dtype=np.float64), old, np.array(advantages), mask,
                                     **options).item())

    x = leaf(m, logprobs)
    loss = m.grpo_loss(x, old, np.array(advantages), mask, **options)
    loss.backward()
    return {"loss": float(loss.item()), "shape": list(loss.shape), "grad": grad_of(x, logprobs),
            "numeric": central_difference(value, logprobs)}


class _Recorder:
    """Wraps a Generator: counts random() calls, so a test can see one draw per step for the whole group."""

    def __init__(self, seed: int) -> None:
        self.rng, self.calls = seeded(seed), []

    def random(self, *args, **kwargs):
        values = self.rng.random(*args, **kwargs)
        self.calls.append(list(np.shape(values)))
        return values


def probe_sample_responses(m, fields: dict, seed: int, prompt: list, group: int, max_new_tokens: int, end: int,
                           rng_seed: int, temperature: float) -> dict:
    """sample_responses, the rng calls it made, and stage 11's generate on the group (same seed, as many tokens)."""
    model = model_of(m, fields, seed).train()  # dropout 0: the same numbers, but the mode must come back
    recorder = _Recorder(rng_seed)
    responses = m.sample_responses(model, np.array(prompt), group, max_new_tokens, end=end, rng=recorder,
                                   temperature=temperature)
    generate = sibling(m, "generate")
    steps = min(max_new_tokens, fields["context"] - len(prompt) + 1)
    full = generate.generate(model, np.tile(np.array(prompt), (group, 1)), steps, rng=seeded(rng_seed),
                             temperature=temperature)[:, len(prompt):]
    return {"responses": [np.asarray(r) for r in responses], "calls": recorder.calls, "generated": full,
            "training": bool(model.training)}


def rollout_batch(seed: int, vocab: int, batch: int, length: int) -> dict:
    """ids (B, T) with a 3-token prompt and a response of 2 .. T - 3 tokens each, right-padded; the response mask."""
    rng = seeded(seed)
    ids = rng.integers(1, vocab, (batch, length))
    mask = np.zeros((batch, length), dtype=bool)
    for b in range(batch):
        n = int(rng.integers(2, length - 2))
        mask[b, 3:3 + n] = True
        ids[b, 3 + n:] = 0
    return {"ids": ids, "mask": mask}


def probe_grpo_step(m, fields: dict, seeds: list, ids: np.ndarray, mask: np.ndarray, advantages: list,
                    shift: float, clip: float, kl_coef: float, lr: float, steps: int = 1) -> dict:
    """`steps` grpo_step calls on one batch by a float64 policy (AdamW, no weight decay) whose old log-probs are its
    own (before the first step) minus `shift` (so the first ratios are exp(shift)), with the reference's log-probs
    when kl_coef > 0: the stats of each step and every parameter after."""
    policy, reference = model_of(m, fields, seeds[0]), model_of(m, fields, seeds[1])
    tensor, optim = sibling(m, "tensor"), sibling(m, "optim")
    with tensor.no_grad():
        old = m.token_logprobs(policy, ids).data - shift
        ref = m.token_logprobs(reference, ids).data if kl_coef else None
    optimizer = optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    before = {name: p.data.copy() for name, p in policy.named_parameters()}
    history = [m.grpo_step(policy, optimizer, ids, mask, old, np.array(advantages), clip=clip,
                           reference_logprobs=ref, kl_coef=kl_coef, max_norm=1.0) for _ in range(steps)]
    moved = sum(bool(np.any(p.data != before[name])) for name, p in policy.named_parameters())
    return {"stats": {k: float(v) for k, v in sorted(history[0].items())},
            "later": [{k: float(v) for k, v in sorted(stats.items())} for stats in history[1:]], "moved": moved,
            "after": {name: p.data for name, p in policy.named_parameters()}}


def probe_grpo_training(m, fields: dict, seed: int, steps: int, group: int, lr: float) -> dict:
    """A toy GRPO run: reward 1 for a response whose first token is 3. Per step: sample a group from one prompt,
    advantages within the group, one grpo_step; the mean reward of every group."""
    tensor, optim, gpt = sibling(m, "tensor"), sibling(m, "optim"), sibling(m, "gpt")
    policy = gpt.GPT(gpt.GPTConfig(**fields), rng=seeded(seed))
    optimizer = optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng = seeded(seed + 1)
    prompt = np.array([1, 2])
    means = []
    for _ in range(steps):
        responses = m.sample_responses(policy, prompt, group, 3, end=0, rng=rng)
        rewards = np.array([float(r[0] == 3) for r in responses])
        means.append(float(rewards.mean()))
        length = 2 + max(len(r) for r in responses)
        ids = np.zeros((group, length), dtype=np.int64)
        mask = np.zeros((group, length), dtype=bool)
        for b, r in enumerate(responses):
            ids[b, :2], ids[b, 2:2 + len(r)], mask[b, 2:2 + len(r)] = prompt, r, True
        with tensor.no_grad():
            old = m.token_logprobs(policy, ids).data
        m.grpo_step(policy, optimizer, ids, mask, old, m.group_advantages(rewards), max_norm=1.0)
    return {"rewards": means}
