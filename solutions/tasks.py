"""Data for stages 14 and 15 (given whole: nothing to implement here).

A generated, verifiable instruction set: every example is a prompt, the one right answer and its kind, made
deterministically from a seed, in the characters of the Shakespeare vocabulary (letters, digits, space, punctuation;
there is no "+" or "=", so the prompts are written in words). Short enough that the chat template of stage 14 fits a
context of 64 tokens:

    add       "add 12 and 35"            -> "47"             (two numbers of 0 .. 99)
    reverse   "reverse: cat dog sun"     -> "sun dog cat"    (two or three short words, reversed in order)
    sort      "sort: dbca"               -> "abcd"           (three to five distinct letters, in alphabetical order)

Held-out prompts never appear in training: a prompt belongs to the held-out split when the CRC-32 of its text is
0 mod 5 (about a fifth of all prompts), to the training split otherwise, whatever the seed. `make_instructions(...,
split="held_out")` draws only held-out prompts, so no seed can leak an evaluation prompt into training.

Preference pairs (stage 15) are the same prompts with the right answer "chosen" and a plausible wrong one "rejected"
(an addition off by one or ten, the words left in order or only partly reversed, the letters unsorted or reversed).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

KINDS = ("add", "reverse", "sort")
SPLITS = ("train", "held_out")
HELD_OUT_MODULUS = 5  # a prompt is held out when crc32(prompt) % 5 == 0: about 20 % of every kind
WORDS = ("cat", "dog", "sun", "sea", "king", "lord", "rose", "moon", "star", "fire", "wind", "gold", "love", "hand",
         "eye", "day", "night", "sword", "crown", "horse", "bird", "tree", "ship", "wolf")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
END_TEXT = "<|end|>"  # the end token as ChatTokenizer.decode writes it (stage 14)


@dataclass(frozen=True)
class Example:
    """One instruction: the prompt the user writes, the one right answer, and the task kind."""

    prompt: str
    answer: str
    kind: str


@dataclass(frozen=True)
class Preference:
    """One prompt with a right ("chosen") and a plausible wrong ("rejected") answer."""

    prompt: str
    chosen: str
    rejected: str
    kind: str


def is_held_out(prompt: str) -> bool:
    """True for the prompts reserved for evaluation: crc32(prompt) % 5 == 0 (fixed, independent of any seed)."""
    return zlib.crc32(prompt.encode("utf-8")) % HELD_OUT_MODULUS == 0


def _draw(kind: str, rng: np.random.Generator) -> Example:
    """One random example of `kind` (either split)."""
    if kind == "add":
        a, b = (int(n) for n in rng.integers(0, 100, size=2))
        return Example(f"add {a} and {b}", str(a + b), kind)
    if kind == "reverse":
        count = int(rng.integers(2, 4))  # two or three words
        words = [WORDS[i] for i in rng.choice(len(WORDS), size=count, replace=False)]
        return Example("reverse: " + " ".join(words), " ".join(reversed(words)), kind)
    if kind == "sort":
        count = int(rng.integers(3, 6))  # three to five distinct letters
        letters = "".join(LETTERS[i] for i in rng.choice(len(LETTERS), size=count, replace=False))
        return Example(f"sort: {letters}", "".join(sorted(letters)), kind)
    raise ValueError(f"unknown task kind {kind!r}; the kinds are {KINDS}")


def make_instructions(count: int, *, seed: int, kinds: tuple[str, ...] = KINDS, split: str = "train",
                      distinct: bool = True) -> list[Example]:
    """`count` examples of `split`, kinds in turn (example i has kind kinds[i % len(kinds)]), from np.random
    default_rng(seed): the same arguments always give the same list.

    split "train" keeps only prompts with is_held_out False, "held_out" only those with it True. distinct: no prompt
    twice in the list (the evaluation sets count each prompt once). ValueError for an unknown kind or split, or when
    the split has fewer distinct prompts of a kind than asked.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}; the kinds are {KINDS}")
    rng = np.random.default_rng(seed)
    held_out = split == "held_out"
    examples: list[Example] = []
    seen: set[str] = set()
    for i in range(count):
        kind = kinds[i % len(kinds)]
        for _ in range(100_000):  # rejection: at least ~1/5 of the draws belong to each split
            example = _draw(kind, rng)
            if is_held_out(example.prompt) == held_out and not (distinct and example.prompt in seen):
                break
        else:
            raise ValueError(f"make_instructions: not enough distinct {split} prompts of kind {kind!r} for {count}")
        seen.add(example.prompt)
        examples.append(example)
    return examples


def answer_of(text: str) -> str:
    """The answer part of a generated text: everything before the first end token (the whole text without one)."""
    return text.split(END_TEXT, 1)[0]


def reward(example: Example, text: str) -> float:
    """1.0 when the generated text, up to the end token, is exactly the answer; 0.0 otherwise (a verifiable reward).

    text is what the model wrote after the prompt (ChatTokenizer.decode of the new tokens); anything after the first
    "<|end|>" is ignored, and a text that never ends counts as its whole self ("47" ran out of tokens: still 1.0;
    "47 and" is wrong).
    """
    return 1.0 if answer_of(text) == example.answer else 0.0


def _wrong(example: Example, rng: np.random.Generator) -> str:
    """A plausible wrong answer: the kind of mistake a half-trained model makes."""
    if example.kind == "add":
        total = int(example.answer)
        choices = [total + d for d in (-10, -1, 1, 10) if total + d >= 0]
        return str(choices[int(rng.integers(len(choices)))])
    if example.kind == "reverse":
        words = example.prompt.removeprefix("reverse: ").split(" ")
        partly = words[1:] + words[:1]  # rotated: right length, right words, wrong order
        options = [" ".join(words)] + ([" ".join(partly)] if partly != words[::-1] else [])
        return options[int(rng.integers(len(options)))]
    letters = example.prompt.removeprefix("sort: ")
    options = [letters] if letters != example.answer else []
    options.append(example.answer[::-1])  # sorted the wrong way
    return options[int(rng.integers(len(options)))]


def preference_pairs(count: int, *, seed: int, kinds: tuple[str, ...] = KINDS,
                     split: str = "train") -> list[Preference]:
    """`count` preference pairs on the prompts of make_instructions(count, seed=seed, kinds=kinds, split=split):
    chosen is the right answer, rejected a plausible wrong one (never equal to chosen), drawn from
    default_rng(seed + 1)."""
    rng = np.random.default_rng(seed + 1)
    pairs = []
    for example in make_instructions(count, seed=seed, kinds=kinds, split=split):
        rejected = _wrong(example, rng)
        assert rejected != example.answer, example
        pairs.append(Preference(example.prompt, example.answer, rejected, example.kind))
    return pairs


# ---------------------------------------------------------------------- genres (stage 14, part 2)
