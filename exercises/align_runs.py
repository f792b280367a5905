"""The runs of stage 15 (given whole: nothing to implement here): presets, the training loops and the command behind
`python -m solutions.align`.

    python -m solutions.align reward [--init runs/sft] [--out runs/reward] [--seed 0] [--preset default]
    python -m solutions.align dpo    [--init runs/sft] [--out runs/dpo]    [--seed 0] [--preset default]
                                     [--pairs policy|rule] [--nll 0]
    python -m solutions.align grpo   [--init runs/sft] [--out runs/grpo]   [--seed 0] [--preset default]

Each starts from the instruction-tuned model of stage 14 (`python -m solutions.finetune sft` writes runs/sft) and
writes --out/log.json (the config, the curves and the measured figures before and after); dpo and grpo also write the
aligned policy (model.npz, tokenizer.json: `python -m solutions.finetune`'s load_chat_model reads it back).
  - reward: a RewardModel (the SFT GPT with a scalar head) trained with the Bradley-Terry loss on preference pairs;
    held-out pair accuracy before (a random head) and after.
  - dpo: the policy trained with the DPO loss against a frozen copy of itself, on on-policy pairs (the right answer
    chosen, the SFT model's own likeliest wrong sample rejected; prompts it never gets wrong give none) or, with
    --pairs rule, on tasks.preference_pairs' made-up ones; on the held-out pairs, before and after: the policy's own
    preference accuracy (log π(chosen) > log π(rejected)), the implicit-reward accuracy and margin; on the held-out
    prompts: greedy exact match and the mean reward of sampled answers.
  - grpo: on the addition prompts, groups of sampled answers scored by tasks.reward; held-out mean reward (sampled at
    temperature 1, and greedy) of the SFT model and of the policy every eval_every steps.
Every random draw comes from the seed: the same command gives the same numbers (on the same machine and BLAS).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tasks, threads
from .align import (RewardModel, bradley_terry_loss, dpo_batch_loss, group_advantages, grpo_step, preference_accuracy,
                    sample_responses, sequence_logprobs, token_logprobs)
from .corpus import save_tokenizer
from .finetune import apply_lora, merge_lora
from .finetune_runs import MODEL_FILE, accuracy, load_chat_model
from .optim import AdamW, clip_grad_norm
from .tensor import no_grad

LOG_FILE = "log.json"


# ---------------------------------------------------------------------- batches


def pad_right(sequences: list, masks: list | None = None, pad: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad int sequences to one (B, T) array: (ids, mask, lengths). mask is each sequence's mask (False on the
    padding), or True on every real token when masks is None; lengths (B,) the real tokens per row."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)  # (B,)
    ids = np.full((len(sequences), int(lengths.max())), pad, dtype=np.int64)  # (B, T)
    mask = np.zeros(ids.shape, dtype=bool)  # (B, T)
    for b, sequence in enumerate(sequences):
        ids[b, :lengths[b]] = sequence
        mask[b, :lengths[b]] = True if masks is None else masks[b]
    return ids, mask, lengths


def encode_pairs(chat, pairs: list) -> tuple[tuple, tuple]:
    """Preference pairs as two right-padded batches, chosen and rejected: (ids, mask, lengths) each, the mask True on
    the response tokens and <|end|> (ChatTokenizer.encode_chat)."""
    sides = []
    for answer in ("chosen", "rejected"):
        encoded = [chat.encode_chat(pair.prompt, getattr(pair, answer)) for pair in pairs]
        sides.append(pad_right([ids for ids, _ in encoded], [mask for _, mask in encoded]))
    return sides[0], sides[1]


def load_start(init: str | Path, seed: int):
    """The SFT model and its ChatTokenizer from `init`, or FileNotFoundError saying how to make it."""
    if not (Path(init) / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{init} has no {MODEL_FILE}: stage 15 starts from the instruction-tuned model; run "
                                f"`python -m solutions.finetune sft` first (it writes runs/sft), or pass --init FOLDER")
    return load_chat_model(init, seed=seed)


def adapt(policy, rank: int, seed: int):
    """rank > 0: LoRA adapters (stage 14) on the policy's block matrices, everything else frozen; 0: every weight
    trains. Returns the policy."""
    if rank > 0:
        apply_lora(policy, rank, 2.0 * rank, rng=np.random.default_rng(seed + 4),
                   targets=("query", "key", "value", "output", "down"))
    return policy


def save_policy(model, chat, out: Path) -> None:
    merge_lora(model)  # a plain GPT again (a no-op without adapters)
    model.save(out / MODEL_FILE)
    save_tokenizer(chat.base, out)


def batches(count: int, batch: int, rng: np.random.Generator):
    """Endless shuffled index batches over range(count): a new permutation each epoch, from rng."""
    while True:
        order = rng.permutation(count)
        for start in range(0, count - batch + 1, batch):
            yield order[start:start + batch]


def take(side: tuple, rows: np.ndarray) -> tuple:
    """Rows of a padded (ids, mask, lengths) batch, cut to their longest row."""
    ids, mask, lengths = (part[rows] for part in side)
    width = int(lengths.max())
    return ids[:, :width], mask[:, :width], lengths


# ---------------------------------------------------------------------- the reward model


@dataclass
class RewardConfig:
    steps: int = 300
    batch: int = 16  # pairs per step
    lr: float = 3e-4
    train_pairs: int = 2400
    held_out: int = 240
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def reward_accuracy(model: RewardModel, chosen: tuple, rejected: tuple, kinds: list,
                    batch: int = 64) -> tuple[dict, float]:
    """(held-out accuracy per task kind and "all", mean reward margin) of the reward model on padded pair batches."""
    scores = {"chosen": [], "rejected": []}
    with no_grad():
        for start in range(0, len(chosen[0]), batch):
            rows = np.arange(start, min(start + batch, len(chosen[0])))
            for name, side in (("chosen", chosen), ("rejected", rejected)):
                ids, _, lengths = take(side, rows)
                scores[name].append(model(ids, lengths).data)
    c, r = np.concatenate(scores["chosen"]), np.concatenate(scores["rejected"])
    kinds = np.array(kinds)
    result = {kind: preference_accuracy(c[kinds == kind], r[kinds == kind]) for kind in dict.fromkeys(kinds.tolist())}
    result["all"] = preference_accuracy(c, r)
    return result, float(np.mean(c - r))


def train_reward(config: RewardConfig, init: str | Path, out: str | Path) -> dict:
    gpt, chat = load_start(init, config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = RewardModel(gpt, rng=np.random.default_rng(config.seed))
    train_chosen, train_rejected = encode_pairs(chat, tasks.preference_pairs(config.train_pairs, seed=config.seed))
    held_pairs = tasks.preference_pairs(config.held_out, seed=config.seed + 1, split="held_out")
    held_chosen, held_rejected = encode_pairs(chat, held_pairs)
    kinds = [pair.kind for pair in held_pairs]
    log: dict = {"command": "reward", "config": config.to_dict(), "init": str(init)}
    log["accuracy_before"], log["margin_before"] = reward_accuracy(model, held_chosen, held_rejected, kinds)
    print(f"held-out pair accuracy before: {log['accuracy_before']}", flush=True)
    optimizer = AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    order = batches(len(train_chosen[0]), config.batch, np.random.default_rng(config.seed + 2))
    log.update(step=[], loss=[], accuracy=[])
    model.train()
    start = time.perf_counter()
    for step in range(config.steps):
        rows = next(order)
        (c_ids, _, c_len), (r_ids, _, r_len) = take(train_chosen, rows), take(train_rejected, rows)
        optimizer.zero_grad()
        chosen, rejected = model(c_ids, c_len), model(r_ids, r_len)  # (B,) each
        loss = bradley_terry_loss(chosen, rejected)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        log["step"].append(step)
        log["loss"].append(float(loss.item()))
        log["accuracy"].append(preference_accuracy(chosen.data, rejected.data))  # on the training batch
        if step % 25 == 0 or step == config.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  batch accuracy {log['accuracy'][-1]:.2f}  "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    log["train_seconds"] = time.perf_counter() - start
    model.eval()
    log["accuracy_after"], log["margin_after"] = reward_accuracy(model, held_chosen, held_rejected, kinds)
    print(f"held-out pair accuracy after: {log['accuracy_after']}, mean margin {log['margin_after']:.3f}", flush=True)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    return log


# ---------------------------------------------------------------------- DPO


@dataclass
class DPOConfig:
    steps: int = 240  # about 3 epochs of the ~1300 on-policy pairs
    batch: int = 16  # pairs per step
    lr: float = 1e-5
    beta: float = 2.0  # see docs/15-align.md, section 7: smaller β or larger lr lower the chosen answers too
    lora: int = 0  # LoRA rank of the policy's adapters; 0: full fine-tuning
    nll: float = 0.0  # weight of the chosen answers' NLL per token added to the DPO loss (as RPO); 0: DPO alone
    pairs: str = "policy"  # "policy": the SFT model's own wrong samples; "rule": tasks.preference_pairs' made-up ones
    train_prompts: int = 2400  # prompts sampled ("policy": those the model never gets wrong give no pair)
    held_out: int = 600  # held-out prompts, 200 per kind: their pairs are measured, and their greedy exact match
    samples: int = 8  # "policy": answers sampled per prompt
    temperature: float = 1.0
    max_new_tokens: int = 20  # as GRPOConfig's: every kind's answer and <|end|>
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def response_logprobs(model, prompt: np.ndarray, responses: list) -> np.ndarray:
    """log π(response | prompt) of each response (int arrays after the int prompt (P,)): (len(responses),) float."""
    ids, mask, _ = pad_right([np.concatenate([prompt, r]) for r in responses],
                             [np.arange(prompt.size + len(r)) >= prompt.size for r in responses])
    with no_grad():
        return sequence_logprobs(model, ids, mask).data


def policy_pairs(model, chat, examples: list, config: DPOConfig,
                 rng: np.random.Generator) -> tuple[list, list, dict[str, float]]:
    """On-policy preference pairs, as with a verifier: `config.samples` answers per example sampled from `model`
    (stage 11's KV cache, through sample_responses) and scored by tasks.reward. chosen: the right answer; rejected:
    the wrong sample the model itself finds likeliest (the first drawn among equals), so each pair ranks the mistake
    the model is nearest to making. A prompt whose samples are all right gives no pair.
    Returns (pairs, the rejected answers' tokens exactly as drawn (their text may not re-encode: a sample can hold a
    special token), the mean sampled reward per task kind and "all")."""
    pairs, drawn, rewards = [], [], {}
    for example in examples:
        prompt = chat.encode_prompt(example.prompt)
        responses = sample_responses(model, prompt, config.samples, config.max_new_tokens, end=chat.end, rng=rng,
                                     temperature=config.temperature)
        answers = [tasks.answer_of(chat.decode(response)) for response in responses]
        scores = [tasks.reward(example, answer) for answer in answers]
        rewards.setdefault(example.kind, []).extend(scores)
        wrong = [response for response, right in zip(responses, scores) if not right]
        if wrong:  # the likeliest of the wrong answers: the mistake the model finds most plausible
            i = int(np.argmax(response_logprobs(model, prompt, wrong)))  # argmax keeps the first of equals
            pairs.append(tasks.Preference(example.prompt, example.answer, tasks.answer_of(chat.decode(wrong[i])),
                                          example.kind))
            drawn.append(wrong[i])
    sampled = {kind: float(np.mean(values)) for kind, values in rewards.items()}
    sampled["all"] = float(np.mean([value for values in rewards.values() for value in values]))
    return pairs, drawn, sampled


def dpo_pairs(model, chat, config: DPOConfig, split: str) -> tuple[list, tuple, tuple, list, dict]:
    """One split's pairs: (pairs, chosen and rejected batches (ids, mask, lengths), the split's prompts as Examples,
    the mean sampled reward ({} for "rule")). "train" from the seed, "held_out" from seed + 1; the sampling draws
    from default_rng(seed + 5) and (seed + 6)."""
    count, offset = (config.train_prompts, 0) if split == "train" else (config.held_out, 1)
    examples = tasks.make_instructions(count, seed=config.seed + offset, split=split)
    if config.pairs == "rule":  # the same prompts (preference_pairs draws them with make_instructions)
        pairs = tasks.preference_pairs(count, seed=config.seed + offset, split=split)
        return (pairs, *encode_pairs(chat, pairs), examples, {})
    if config.pairs != "policy":
        raise ValueError(f"DPOConfig.pairs must be 'policy' or 'rule', got {config.pairs!r}")
    pairs, drawn, sampled = policy_pairs(model, chat, examples, config,
                                         np.random.default_rng(config.seed + 5 + offset))
    if not pairs:
        raise ValueError(f"the model answered every sampled {split} prompt right: no on-policy pair to learn from or "
                         f"measure (sample more answers per prompt, or use --pairs rule)")
    encoded = [chat.encode_chat(pair.prompt, pair.chosen) for pair in pairs]
    chosen = pad_right([ids for ids, _ in encoded], [mask for _, mask in encoded])
    prompts = [chat.encode_prompt(pair.prompt) for pair in pairs]  # the rejected side: the drawn tokens after them
    rejected = pad_right([np.concatenate([p, r]) for p, r in zip(prompts, drawn)],
                         [np.arange(p.size + len(r)) >= p.size for p, r in zip(prompts, drawn)])
    return pairs, chosen, rejected, examples, sampled


def pair_counts(pairs: list) -> dict[str, int]:
    """How many pairs of each task kind, and "all"."""
    kinds = [pair.kind for pair in pairs]
    return {**{kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}, "all": len(kinds)}


def preference_figures(policy, reference, chosen: tuple, rejected: tuple, beta: float, kinds: list,
                       batch: int = 64) -> dict:
    """On held-out pairs: "accuracy" (log π(chosen) > log π(rejected): the policy itself prefers the right answer),
    also per task kind, "margin" and "reward_accuracy" (DPO's implicit rewards β (log π - log π_ref): the mean
    margin, and how often it is > 0) and the mean log-probs."""
    logp = {"pc": [], "pr": [], "rc": [], "rr": []}
    with no_grad():
        for start in range(0, len(chosen[0]), batch):
            rows = np.arange(start, min(start + batch, len(chosen[0])))
            (c_ids, c_mask, _), (r_ids, r_mask, _) = take(chosen, rows), take(rejected, rows)
            logp["pc"].append(sequence_logprobs(policy, c_ids, c_mask).data)
            logp["pr"].append(sequence_logprobs(policy, r_ids, r_mask).data)
            logp["rc"].append(sequence_logprobs(reference, c_ids, c_mask).data)
            logp["rr"].append(sequence_logprobs(reference, r_ids, r_mask).data)
    pc, pr, rc, rr = (np.concatenate(logp[key]).astype(np.float64) for key in ("pc", "pr", "rc", "rr"))
    margins = beta * ((pc - rc) - (pr - rr))
    kinds = np.array(kinds)
    by_kind = {kind: preference_accuracy(pc[kinds == kind], pr[kinds == kind])
               for kind in dict.fromkeys(kinds.tolist())}
    return {"accuracy": preference_accuracy(pc, pr), "accuracy_by_kind": by_kind, "margin": float(margins.mean()),
            "reward_accuracy": preference_accuracy(margins, np.zeros_like(margins)),
            "logp_chosen": float(pc.mean()), "logp_rejected": float(pr.mean())}


def train_dpo(config: DPOConfig, init: str | Path, out: str | Path) -> dict:
    policy, chat = load_start(init, config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference, _ = load_start(init, config.seed)  # a second copy: frozen, only ever run under no_grad
    reference.eval()
    start = time.perf_counter()
    train_pairs, train_chosen, train_rejected, _, train_sampled = dpo_pairs(reference, chat, config, "train")
    held_pairs, held_chosen, held_rejected, held_examples, held_sampled = dpo_pairs(reference, chat, config,
                                                                                    "held_out")
    log: dict = {"command": "dpo", "config": config.to_dict(), "init": str(init),
                 "pairs": {"train": pair_counts(train_pairs), "held_out": pair_counts(held_pairs)},
                 "sampled_reward": {"train": train_sampled, "held_out_before": held_sampled},
                 "pair_seconds": time.perf_counter() - start,
                 "examples": [dataclasses.asdict(pair) for pair in held_pairs[:9]]}
    print(f"{config.pairs} pairs: {log['pairs']} ({log['pair_seconds']:.0f}s); mean sampled reward {held_sampled}",
          flush=True)
    log["before"] = preference_figures(policy, reference, held_chosen, held_rejected, config.beta,
                                       [p.kind for p in held_pairs])
    log["exact_match_before"] = accuracy(policy, chat, held_examples)
    print(f"before: {log['before']}, exact match {log['exact_match_before']}", flush=True)
    optimizer = AdamW(adapt(policy, config.lora, config.seed).parameters(), lr=config.lr, weight_decay=0.0)
    order = batches(len(train_chosen[0]), config.batch, np.random.default_rng(config.seed + 2))
    log.update(step=[], loss=[], margin=[], accuracy=[], nll=[])
    start = time.perf_counter()
    for step in range(config.steps):
        rows = next(order)
        (c_ids, c_mask, _), (r_ids, r_mask, _) = take(train_chosen, rows), take(train_rejected, rows)
        optimizer.zero_grad()
        loss, stats = dpo_batch_loss(policy, reference, (c_ids, c_mask), (r_ids, r_mask), config.beta)
        if config.nll:  # the chosen answers' mean NLL per token: DPO alone lowers them too (docs/15-align.md, 7)
            nll = -sequence_logprobs(policy, c_ids, c_mask).sum() / c_mask[:, 1:].sum()
            loss = loss + nll * config.nll
            log["nll"].append(float(nll.item()))
        loss.backward()
        clip_grad_norm(policy.parameters(), 1.0)
        optimizer.step()
        log["step"].append(step)
        log["loss"].append(float(loss.item()))
        log["margin"].append(stats["margin"])
        log["accuracy"].append(stats["accuracy"])
        if step % 20 == 0 or step == config.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  margin {stats['margin']:.3f}  "
                  f"reward accuracy {stats['accuracy']:.2f}  {time.perf_counter() - start:.0f}s", flush=True)
    log["train_seconds"] = time.perf_counter() - start
    policy.eval()
    log["after"] = preference_figures(policy, reference, held_chosen, held_rejected, config.beta,
                                       [p.kind for p in held_pairs])
    log["exact_match_after"] = accuracy(policy, chat, held_examples)
    print(f"after: {log['after']}, exact match {log['exact_match_after']}", flush=True)
    if config.pairs == "policy":  # the held-out prompts sampled again, from the policy, with the same seed
        rng = np.random.default_rng(config.seed + 6)
        after_pairs, _, sampled = policy_pairs(policy, chat, held_examples, config, rng)
        log["sampled_reward"]["held_out_after"], log["pairs"]["held_out_after"] = sampled, pair_counts(after_pairs)
        print(f"mean sampled reward after: {log['sampled_reward']['held_out_after']}", flush=True)
    save_policy(policy, chat, out)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    return log


# ---------------------------------------------------------------------- GRPO


@dataclass
class GRPOConfig:
    steps: int = 120
    prompts: int = 32  # prompts per step
    group: int = 8  # sampled answers per prompt
    max_new_tokens: int = 20  # enough for every kind's answer and <|end|> ("sword crown horse": 18 tokens)
    temperature: float = 1.0
    epochs: int = 1  # updates per batch of samples; from the second on the ratios differ from 1 and the clip acts
    lr: float = 1e-5
    lora: int = 0  # LoRA rank of the policy's adapters; 0: full fine-tuning
    clip: float = 0.2
    kl_coef: float = 0.02
    kinds: tuple[str, ...] = ("add",)
    train_prompts: int = 2000
    held_out: int = 160  # held-out prompts for the evaluations
    eval_group: int = 8  # sampled answers per held-out prompt
    eval_every: int = 20
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def score(chat, examples: list, responses: list) -> np.ndarray:
    """tasks.reward of each decoded response: (len(examples), group) float64."""
    return np.array([[tasks.reward(example, chat.decode(r)) for r in group] for example, group in
                     zip(examples, responses)], dtype=np.float64)


def sampled_reward(policy, chat, examples: list, config: GRPOConfig, seed: int) -> dict[str, float]:
    """The held-out mean reward of eval_group answers per prompt sampled at the run's temperature, per task kind and
    "all" (a fixed seed, so every evaluation draws the same uniforms)."""
    rng = np.random.default_rng(seed)
    responses = [sample_responses(policy, chat.encode_prompt(e.prompt), config.eval_group, config.max_new_tokens,
                                  end=chat.end, rng=rng, temperature=config.temperature) for e in examples]
    rewards = score(chat, examples, responses).mean(axis=1)  # (prompts,)
    kinds = np.array([e.kind for e in examples])
    result = {kind: float(rewards[kinds == kind].mean()) for kind in dict.fromkeys(kinds.tolist())}
    result["all"] = float(rewards.mean())
    return result


def train_grpo(config: GRPOConfig, init: str | Path, out: str | Path) -> dict:
    policy, chat = load_start(init, config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference, _ = load_start(init, config.seed)
    reference.eval()
    train = tasks.make_instructions(config.train_prompts, seed=config.seed, kinds=config.kinds, split="train")
    held_out = tasks.make_instructions(config.held_out, seed=config.seed + 1, kinds=config.kinds, split="held_out")
    evaluate_seed = config.seed + 3

    def evaluate(step: int) -> None:
        sampled = sampled_reward(policy, chat, held_out, config, evaluate_seed)
        greedy = accuracy(policy, chat, held_out)
        log["eval_step"].append(step)
        log["eval_sampled"].append(sampled["all"])
        log["eval_greedy"].append(greedy["all"])
        log["eval_by_kind"].append({"sampled": sampled, "greedy": greedy})
        print(f"step {step:4d}  held-out reward: sampled {sampled}, greedy {greedy}", flush=True)

    log: dict = {"command": "grpo", "config": config.to_dict(), "init": str(init), "eval_step": [],
                 "eval_sampled": [], "eval_greedy": [], "eval_by_kind": [], "step": [], "reward": [], "loss": [],
                 "clipped": [], "kl": []}
    evaluate(0)
    optimizer = AdamW(adapt(policy, config.lora, config.seed).parameters(), lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(config.seed + 2)
    start = time.perf_counter()
    for step in range(config.steps):
        # 1. sample a group of answers per prompt from the current policy, and score them
        examples = [train[i] for i in rng.choice(len(train), size=config.prompts, replace=False)]
        prompts = [chat.encode_prompt(e.prompt) for e in examples]
        responses = [sample_responses(policy, p, config.group, config.max_new_tokens, end=chat.end, rng=rng,
                                      temperature=config.temperature) for p in prompts]
        rewards = score(chat, examples, responses)  # (prompts, group)
        # 2. each answer's advantage against its own group
        advantages = group_advantages(rewards).reshape(-1)  # (prompts * group,)
        sequences = [np.concatenate([p, r]) for p, group in zip(prompts, responses) for r in group]
        masks = [np.arange(len(p) + len(r)) >= len(p) for p, group in zip(prompts, responses) for r in group]
        ids, mask, _ = pad_right(sequences, masks)
        # 3. the sampling policy's and the reference's log-probs: constants for every update on this batch
        with no_grad():
            old = token_logprobs(policy, ids).data  # (B, T - 1)
            ref = token_logprobs(reference, ids).data if config.kl_coef else None
        # 4. a few clipped updates on the same samples
        policy.train()
        for _ in range(config.epochs):
            stats = grpo_step(policy, optimizer, ids, mask, old, advantages, clip=config.clip,
                              reference_logprobs=ref, kl_coef=config.kl_coef)
        policy.eval()
        response = mask[:, 1:]
        kl = float(np.mean((np.exp(ref - old) - (ref - old) - 1.0)[response])) if ref is not None else 0.0
        log["step"].append(step)
        log["reward"].append(float(rewards.mean()))
        log["loss"].append(stats["loss"])
        log["clipped"].append(stats["clipped"])
        log["kl"].append(kl)
        if step % 10 == 0 or step == config.steps - 1:
            print(f"step {step:4d}  reward {rewards.mean():.3f}  loss {stats['loss']:+.4f}  clipped "
                  f"{stats['clipped']:.2f}  kl {kl:.4f}  {time.perf_counter() - start:.0f}s", flush=True)
        if (step + 1) % config.eval_every == 0 or step == config.steps - 1:
            evaluate(step + 1)
    log["train_seconds"] = time.perf_counter() - start
    save_policy(policy, chat, out)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    return log


# ---------------------------------------------------------------------- the command

PRESETS = {
    "reward": {"default": RewardConfig(), "tiny": RewardConfig(steps=2, batch=4, train_pairs=12, held_out=6)},
    "dpo": {"default": DPOConfig(),
            "tiny": DPOConfig(steps=2, batch=4, train_prompts=12, held_out=6, samples=2, max_new_tokens=4)},
    "grpo": {"default": GRPOConfig(),
             "tiny": GRPOConfig(steps=2, prompts=2, group=3, train_prompts=10, held_out=2, eval_group=2,
                                eval_every=1)},
}
RUNS = {"reward": train_reward, "dpo": train_dpo, "grpo": train_grpo}


def main(argv: list[str] | None = None) -> dict:
    """python -m solutions.align {reward,dpo,grpo} [options] [--threads N]: run one of stage 15's alignments."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.align", description=main.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {"reward": "a reward model trained with the Bradley-Terry loss on preference pairs",
             "dpo": "direct preference optimisation against a frozen reference",
             "grpo": "group relative policy optimisation on the addition prompts"}
    for name, text in helps.items():
        run = commands.add_parser(name, help=text)
        run.add_argument("--init", default="runs/sft", help="the SFT folder (model.npz and tokenizer.json)")
        run.add_argument("--out", default=f"runs/{name}", help="where log.json (and the policy) go")
        run.add_argument("--preset", choices=sorted(PRESETS[name]), default="default")
        run.add_argument("--seed", type=int, default=0)
        run.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
        if name == "dpo":
            run.add_argument("--pairs", choices=("policy", "rule"), default=None,
                             help="policy: the SFT model's own wrong samples (the default); rule: made-up wrong ones")
            run.add_argument("--nll", type=float, default=None,
                             help="weight of the chosen answers' NLL added to the DPO loss (the preset's: 0)")
        if name == "grpo":
            run.add_argument("--kinds", nargs="+", choices=tasks.KINDS, default=None,
                             help="the task kinds to train and evaluate on (default: the preset's)")
        threads.add_argument(run)
    args = parser.parse_args(argv)
    note = threads.too_late(args.threads)
    if note:
        print(note, file=sys.stderr)
    config = dataclasses.replace(PRESETS[args.command][args.preset], seed=args.seed)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    if getattr(args, "pairs", None):
        config = dataclasses.replace(config, pairs=args.pairs)
    if getattr(args, "nll", None) is not None:
        config = dataclasses.replace(config, nll=args.nll)
    if getattr(args, "kinds", None):
        config = dataclasses.replace(config, kinds=tuple(args.kinds))
    try:
        return RUNS[args.command](config, args.init, args.out)
    except FileNotFoundError as error:
        parser.error(str(error))
    return {}


if __name__ == "__main__":
    main()
