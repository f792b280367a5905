"""The runs of stage 14 (given whole: nothing to implement here): presets, the training loops and the command behind
`python -m solutions.finetune`.

    python -m solutions.finetune sft [--init docs/figures/model] [--out runs/sft] [--seed 0] [--preset default]

Supervised fine-tuning of a pretrained GPT on the generated instructions of tasks.py: the vocabulary grown by the
three chat specials, LoRA adapters on the block matrices (and the token embedding trained, since its three new rows
start random), the loss masked to the response tokens, several chats packed per row, AdamW with a cosine schedule.
It writes to --out: model.npz (GPT.save of the model with LoRA merged), tokenizer.json (the BASE tokenizer;
ChatTokenizer(base) rebuilds the template) and log.json (the loss curve, and held-out exact-match accuracy per task
kind before and after, by greedy decoding with the key/value cache until <|end|>).
`load_chat_model(folder)` reads such a folder back as (GPT, ChatTokenizer); stage 15 starts from it.

    python -m solutions.finetune classify [--mode head|last-blocks|lora] [--init docs/figures/model] [--seed 0]
                                          [--out runs/classify] [--plot docs/figures/14-genre-confusion.png]

A genre classifier (tasks.py's First Folio comedy, history, tragedy) on the pretrained GPT, trained on passages of
29 plays and scored on 9 held-out ones, beside the majority class and two bag-of-characters baselines on the same
passages; log.json holds the accuracies and confusion matrices (docs/14-finetune.md, section 2).
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
from .corpus import load_tokenizer, save_tokenizer
from .finetune import (MODES, ChatTokenizer, SequenceClassifier, apply_lora, extend_vocabulary, merge_lora, pack,
                       set_trainable, sft_loss, total_parameters, trainable_parameters)
from .generate import KVCache, forward_cached
from .gpt import GPT
from .optim import AdamW, clip_grad_norm, cosine_schedule
from .tensor import no_grad

MODEL_FILE = "model.npz"
LOG_FILE = "log.json"


# ---------------------------------------------------------------------- loading and decoding


def load_chat_model(folder: str | Path, *, seed: int = 0) -> tuple[GPT, ChatTokenizer]:
    """The GPT in folder/model.npz and ChatTokenizer(the tokenizer in folder/tokenizer.json).

    A model whose vocabulary is still the base one (a pretrained checkpoint, before any fine-tuning) is grown by the
    three specials with extend_vocabulary(..., rng=default_rng(seed)); a fine-tuned one already has them."""
    folder = Path(folder)
    model = GPT.load(folder / MODEL_FILE)
    chat = ChatTokenizer(load_tokenizer(folder))
    if model.config.vocab_size == chat.base.vocab_size:
        extend_vocabulary(model, chat.vocab_size, rng=np.random.default_rng(seed))
    elif model.config.vocab_size != chat.vocab_size:
        raise ValueError(f"{folder}: the model has {model.config.vocab_size} token ids, the tokenizer "
                         f"{chat.base.vocab_size} (+ 3 specials)")
    return model, chat


def respond(model: GPT, chat: ChatTokenizer, prompt: str, max_new_tokens: int = 24) -> str:
    """The model's greedy answer to one prompt: stage 11's cached decoding from encode_prompt(prompt), one argmax
    token at a time, stopping after <|end|> (included in the text) or after max_new_tokens."""
    ids = chat.encode_prompt(prompt)[None, :]  # (1, P)
    max_new_tokens = min(max_new_tokens, model.config.context - ids.shape[1] + 1)
    was_training = model.training
    model.eval()
    try:
        cache = KVCache.for_model(model, 1)
        new: list[int] = []
        fed = ids
        for _ in range(max_new_tokens):
            token = int(np.argmax(forward_cached(model, fed, cache)[0, -1]))
            new.append(token)
            if token == chat.end:
                break
            fed = np.array([[token]], dtype=np.int64)
    finally:
        model.train(was_training)
    return chat.decode(new)


def accuracy(model: GPT, chat: ChatTokenizer, examples: list[tasks.Example]) -> dict[str, float]:
    """Held-out exact-match accuracy per task kind (tasks.reward of the greedy answer), and "all"."""
    scores: dict[str, list[float]] = {}
    for example in examples:
        scores.setdefault(example.kind, []).append(tasks.reward(example, respond(model, chat, example.prompt)))
    result = {kind: float(np.mean(values)) for kind, values in scores.items()}
    result["all"] = float(np.mean([value for values in scores.values() for value in values]))
    return result


# ---------------------------------------------------------------------- supervised fine-tuning


@dataclass
class SFTConfig:
    """One SFT run. `default` finishes in a few minutes on 2 cores from the stage-10 checkpoint."""

    steps: int = 1500
    chats_per_step: int = 32  # packed into rows of `context` tokens (10 to 15 rows of 64 for these tasks)
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0  # the adapters start at zero: decaying them pulls towards the base, which is the point
    clip: float = 1.0
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "output", "down")  # attention and the feed-forward's down
    lora: bool = True  # False: full fine-tuning of every weight
    train_embedding: bool = True  # the three new rows start random: the embedding must learn them
    train_chats: int = 20_000  # training chats (prompts may repeat), cycled through
    mix: tuple[str, ...] = ("add", "add", "reverse", "sort")  # kinds in turn: addition, the hardest, twice as often
    held_out: int = 100  # held-out prompts per task kind for the accuracy
    eval_every: int = 100  # held-out accuracy during training every so many steps (0: only before and after)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "default": SFTConfig(),
    "tiny": SFTConfig(steps=3, chats_per_step=6, train_chats=60, held_out=1, rank=2),  # a smoke test, seconds
}


def sft(config: SFTConfig, init: str | Path, out: str | Path, *, log_every: int = 25) -> dict:
    """Fine-tune the model in `init` on the instructions, write out/model.npz, tokenizer.json, log.json; return the
    log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, chat = load_chat_model(init, seed=config.seed)
    held_out = tasks.make_instructions(config.held_out * len(tasks.KINDS), seed=config.seed + 1, split="held_out")
    train = tasks.make_instructions(config.train_chats, seed=config.seed, kinds=config.mix, split="train",
                                    distinct=False)
    log: dict = {"config": config.to_dict(), "init": str(init), "accuracy_before": accuracy(model, chat, held_out)}
    print(f"held-out accuracy before: {log['accuracy_before']}", flush=True)

    rng = np.random.default_rng(config.seed + 2)
    if config.lora:
        apply_lora(model, config.rank, config.alpha, rng=rng, targets=config.targets)
        if config.train_embedding:
            model.token_embedding.weight.requires_grad = True
    log["trainable_parameters"] = trainable_parameters(model)
    log["total_parameters"] = total_parameters(model)
    print(f"training {log['trainable_parameters']:,} of {log['total_parameters']:,} parameters", flush=True)
    optimizer = AdamW(model.parameters(), lr=config.max_lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    chats = [chat.encode_chat(example.prompt, example.answer) for example in train]
    order = rng.permutation(len(chats))
    log.update(step=[], loss=[], lr=[], rows=[])
    model.train()
    start = time.perf_counter()
    for step in range(config.steps):
        # each step takes the next chats_per_step chats of a fixed shuffled order and packs them into rows
        picked = [chats[order[(step * config.chats_per_step + i) % len(chats)]] for i in range(config.chats_per_step)]
        inputs, targets, positions, segments = pack(picked, model.config.context)
        lr = cosine_schedule(step, max_lr=config.max_lr, min_lr=config.min_lr,
                             warmup_steps=min(config.warmup_steps, config.steps), total_steps=config.steps)
        optimizer.lr = lr
        optimizer.zero_grad()
        loss = sft_loss(model, inputs, targets, positions, segments)  # the response tokens only
        loss.backward()
        clip_grad_norm(optimizer.params, config.clip)  # one bad batch cannot throw the adapters far
        optimizer.step()
        log["step"].append(step)
        log["loss"].append(float(loss.item()))
        log["lr"].append(lr)
        log["rows"].append(int(inputs.shape[0]))
        if step % log_every == 0 or step == config.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  lr {lr:.2e}  rows {inputs.shape[0]}  "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            evaluating = time.perf_counter()
            log.setdefault("accuracy_during", []).append({"step": step + 1, **accuracy(model, chat, held_out)})
            print(f"  held-out accuracy after {step + 1} steps: {log['accuracy_during'][-1]}", flush=True)
            start += time.perf_counter() - evaluating  # train_seconds counts training only
    log["train_seconds"] = time.perf_counter() - start

    merge_lora(model)  # a plain GPT again: the adapters folded into the weights
    model.eval()
    log["accuracy_after"] = accuracy(model, chat, held_out)
    print(f"held-out accuracy after: {log['accuracy_after']}", flush=True)
    log["examples"] = [{"prompt": e.prompt, "answer": e.answer, "reply": respond(model, chat, e.prompt)}
                       for e in held_out[:9]]
    model.save(out / MODEL_FILE)
    save_tokenizer(chat.base, out)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    return log


# ---------------------------------------------------------------------- classifying passages by genre (part 2)


@dataclass
class ClassifyConfig:
    """One genre-classification run: passages of the plays (tasks.py's genres: the First Folio's comedy, history,
    tragedy), split by play, a SequenceClassifier on the pretrained GPT, and the two baselines on the same passages.
    `default` finishes in a few minutes on 2 cores from the stage-10 checkpoint."""

    mode: str = "last-blocks"  # finetune.MODES: what trains besides the head
    blocks: int = 2  # last-blocks: how many of the last blocks train (and the final norm)
    rank: int = 8  # lora
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "output", "down")
    length: int = 64  # the longest passage, in characters: the checkpoint's context
    min_length: int | None = None  # None: every passage `length` long; 32: 32 .. 64, right-padded batches
    held_out_per_genre: int = 3  # plays of each genre kept out of training
    train_per_play: int = 600
    held_out_per_play: int = 150
    steps: int = 1000
    batch_size: int = 32
    max_lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 30
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CLASSIFY_PRESETS = {
    "default": ClassifyConfig(),
    "tiny": ClassifyConfig(steps=3, batch_size=4, train_per_play=2, held_out_per_play=2, rank=2),  # seconds
}


def pad_right(sequences: list, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token id sequences -> (ids (B, T) int64, lengths (B,) int64): row b is sequences[b] followed by pad_id up to
    the longest, T. What the padding holds does not matter: the classifier reads position lengths[b] - 1 only."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    ids = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = sequence
    return ids, lengths


def predict(classifier: SequenceClassifier, sequences: list, batch_size: int = 256) -> np.ndarray:
    """The argmax class of each sequence, int64 (n,), in eval mode and without a graph, a batch at a time."""
    was_training = classifier.training
    classifier.eval()
    predictions = []
    try:
        with no_grad():
            for start in range(0, len(sequences), batch_size):
                logits = classifier(*pad_right(sequences[start:start + batch_size]))  # (B, classes)
                predictions.append(np.argmax(logits.data, axis=-1))
    finally:
        classifier.train(was_training)
    return np.concatenate(predictions).astype(np.int64)


def character_counts(sequences: list, vocab_size: int) -> np.ndarray:
    """A bag of characters: counts[i, v] = how many times id v occurs in sequence i, float64 (n, V)."""
    return np.stack([np.bincount(sequence, minlength=vocab_size) for sequence in sequences]).astype(np.float64)


def bag_of_characters(train: np.ndarray, labels: np.ndarray, held_out: np.ndarray, classes: int, *,
                      steps: int = 500, lr: float = 0.5, l2: float = 1e-3) -> dict[str, np.ndarray]:
    """The baselines on character counts (n, V): predictions on `held_out` of
        "logistic"     multinomial logistic regression on standardised counts, full-batch gradient descent on the
                       mean cross-entropy + l2/2 |W|² (gradient (softmax - one_hot) / n, as stage 04's), from zeros;
        "naive_bayes"  multinomial naive Bayes: log p(class) + sum_v count_v log p(v | class), add-one smoothing.
    Neither sees the order of the characters: what the GPT adds over them is what order tells."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-9  # a character absent from training stays 0
    x, z = (train - mean) / std, (held_out - mean) / std  # (n, V), (m, V)
    one_hot = np.eye(classes)[labels]  # (n, K)
    weight, bias = np.zeros((x.shape[1], classes)), np.zeros(classes)
    for _ in range(steps):
        logits = x @ weight + bias  # (n, K)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        grad = (probs - one_hot) / len(x)  # d mean cross-entropy / d logits
        weight -= lr * (x.T @ grad + l2 * weight)
        bias -= lr * grad.sum(axis=0)
    counts = np.stack([train[labels == k].sum(axis=0) for k in range(classes)]) + 1.0  # (K, V) add-one
    log_likelihood = np.log(counts / counts.sum(axis=1, keepdims=True))  # (K, V)
    log_prior = np.log(np.bincount(labels, minlength=classes) / len(labels))  # (K,)
    return {"logistic": np.argmax(z @ weight + bias, axis=1),
            "naive_bayes": np.argmax(held_out @ log_likelihood.T + log_prior, axis=1)}


def confusion(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """counts[i, j] = held-out passages of class i predicted as j, int64 (K, K)."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def classify(config: ClassifyConfig, init: str | Path, out: str | Path, *, plot: str | Path | None = None,
             log_every: int = 50) -> dict:
    """Train a genre classifier from the model in `init`, compare it with the baselines on the held-out plays, write
    out/log.json (and a confusion-matrix figure to `plot`); return the log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(init)
    train_plays, held_out_plays = tasks.split_plays(tasks.load_plays(), held_out_per_genre=config.held_out_per_genre,
                                                    seed=config.seed)
    cut = dict(length=config.length, min_length=config.min_length)
    train_text, train_labels = tasks.genre_passages(train_plays, per_play=config.train_per_play, seed=config.seed,
                                                    **cut)
    held_text, held_labels = tasks.genre_passages(held_out_plays, per_play=config.held_out_per_play,
                                                  seed=config.seed + 1, **cut)
    train_ids = [np.asarray(tokenizer.encode(text), dtype=np.int64) for text in train_text]
    held_ids = [np.asarray(tokenizer.encode(text), dtype=np.int64) for text in held_text]
    classes = len(tasks.GENRES)
    majority = int(np.argmax(np.bincount(train_labels, minlength=classes)))  # the most common training genre
    baselines = bag_of_characters(character_counts(train_ids, tokenizer.vocab_size), train_labels,
                                  character_counts(held_ids, tokenizer.vocab_size), classes)
    log: dict = {"config": config.to_dict(), "init": str(init), "genres": list(tasks.GENRES),
                 "train_plays": [play.name for play in train_plays],
                 "held_out_plays": [play.name for play in held_out_plays],
                 "train_passages": len(train_ids), "held_out_passages": len(held_ids),
                 "held_out_counts": np.bincount(held_labels, minlength=classes).tolist(),
                 "majority_class": tasks.GENRES[majority],
                 "accuracy": {"majority": float(np.mean(held_labels == majority))}}
    for name, predictions in baselines.items():
        log["accuracy"][name] = float(np.mean(predictions == held_labels))

    rng = np.random.default_rng(config.seed)
    classifier = SequenceClassifier(GPT.load(Path(init) / MODEL_FILE), classes, rng=rng)
    log["trainable_parameters"] = set_trainable(classifier, config.mode, blocks=config.blocks, rank=config.rank,
                                                alpha=config.alpha, rng=rng, targets=config.targets)
    log["total_parameters"] = total_parameters(classifier)
    print(f"{len(train_ids)} training passages from {len(train_plays)} plays, {len(held_ids)} held-out from "
          f"{len(held_out_plays)}; {config.mode}: training {log['trainable_parameters']:,} of "
          f"{log['total_parameters']:,} parameters", flush=True)
    optimizer = AdamW(classifier.parameters(), lr=config.max_lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    log.update(step=[], loss=[])
    classifier.train()
    start = time.perf_counter()
    for step in range(config.steps):
        rows = rng.integers(0, len(train_ids), size=config.batch_size)  # a fresh random batch of passages
        ids, lengths = pad_right([train_ids[row] for row in rows])
        optimizer.lr = cosine_schedule(step, max_lr=config.max_lr, min_lr=config.min_lr,
                                       warmup_steps=min(config.warmup_steps, config.steps), total_steps=config.steps)
        optimizer.zero_grad()
        loss = classifier.loss(ids, lengths, train_labels[rows])  # cross-entropy of the genre at the last token
        loss.backward()
        clip_grad_norm(optimizer.params, config.clip)  # one odd batch cannot throw the head far
        optimizer.step()
        log["step"].append(step)
        log["loss"].append(float(loss.item()))
        if step % log_every == 0 or step == config.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f}s", flush=True)
    log["train_seconds"] = time.perf_counter() - start

    predictions = predict(classifier, held_ids)
    log["accuracy"]["gpt"] = float(np.mean(predictions == held_labels))
    log["confusion"] = {"gpt": confusion(held_labels, predictions, classes).tolist(),
                        **{name: confusion(held_labels, guess, classes).tolist() for name, guess in baselines.items()}}
    print("held-out accuracy: " + ", ".join(f"{name} {value:.3f}" for name, value in log["accuracy"].items()),
          flush=True)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    if plot is not None:
        plot_confusion(log, plot)
    return log


def plot_confusion(log: dict, path: str | Path) -> None:
    """The held-out confusion matrices of the GPT classifier and the logistic bag of characters, row-normalised."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    genres = log["genres"]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for axis, (name, title) in zip(axes, (("gpt", f"GPT classifier ({log['config']['mode']})"),
                                          ("logistic", "bag of characters (logistic)"))):
        counts = np.asarray(log["confusion"][name], dtype=np.float64)
        share = counts / counts.sum(axis=1, keepdims=True)  # each true genre's row sums to 1
        axis.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(genres)):
            for j in range(len(genres)):
                axis.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center",
                          color="white" if share[i, j] > 0.6 else "black")
        axis.set_xticks(range(len(genres)), genres)
        axis.set_yticks(range(len(genres)), genres)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true genre (held-out plays)")
        axis.set_title(f"{title}: {log['accuracy'][name]:.1%}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> dict:
    """python -m solutions.finetune {sft,classify} [options] [--threads N]: run one of stage 14's fine-tunings."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.finetune", description=main.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("sft", help="instruction tuning with LoRA, masked loss and packing")
    run.add_argument("--init", default="docs/figures/model", help="a folder with model.npz and tokenizer.json")
    run.add_argument("--out", default="runs/sft", help="where model.npz, tokenizer.json and log.json go")
    run.add_argument("--preset", choices=sorted(PRESETS), default="default")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    run.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    threads.add_argument(run)

    run = commands.add_parser("classify", help="a genre classifier on the GPT against two baselines, held-out plays")
    run.add_argument("--init", default="docs/figures/model", help="a folder with model.npz and tokenizer.json")
    run.add_argument("--out", default="runs/classify", help="where log.json goes")
    run.add_argument("--preset", choices=sorted(CLASSIFY_PRESETS), default="default")
    run.add_argument("--mode", choices=MODES, default=None, help="what trains besides the head (default: the preset's)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    run.add_argument("--min-length", type=int, default=None, help="passages of min-length .. 64 characters "
                                                                   "(right-padded batches) instead of 64")
    run.add_argument("--plot", default=None, help="write the confusion matrices there, e.g. "
                                                 "docs/figures/14-genre-confusion.png")
    threads.add_argument(run)

    args = parser.parse_args(argv)
    note = threads.too_late(args.threads)
    if note:
        print(note, file=sys.stderr)
    if args.command == "sft":
        config = dataclasses.replace(PRESETS[args.preset], seed=args.seed)
        if args.steps is not None:
            config = dataclasses.replace(config, steps=args.steps)
        if args.full:
            config = dataclasses.replace(config, lora=False)
        return sft(config, args.init, args.out)
    if args.command == "classify":
        config = dataclasses.replace(CLASSIFY_PRESETS[args.preset], seed=args.seed)
        for field in ("mode", "steps", "min_length"):
            if getattr(args, field) is not None:
                config = dataclasses.replace(config, **{field: getattr(args, field)})
        return classify(config, args.init, args.out, plot=args.plot)
    parser.error(f"unknown command {args.command!r}")
    return {}


if __name__ == "__main__":
    main()
