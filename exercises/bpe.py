"""Stage 08: byte-level BPE (your turn: replace every NotImplementedError).

Byte-pair encoding over UTF-8 bytes, as in GPT-2: split the text into pre-tokens with the GPT-2 pattern, learn merges
of adjacent token pairs inside pre-tokens (incrementally, and naively as a check), then encode and decode any string
losslessly, keep special tokens whole, save and load the merges, and encode a large file as a stream.
The derivations and conventions are in docs/08-bpe.md.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from typing import Iterable, Iterator, Sequence

import numpy as np
import regex

# GPT-2's pre-tokenization pattern: contractions, letter runs, digit runs and runs of other symbols (each may take one
# leading space), then whitespace. `\s+(?!\S)` leaves the last space of a run to start the next word.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKEN = regex.compile(GPT2_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split `text` into GPT-2 pre-tokens: `regex.findall(GPT2_PATTERN, text)`.

    The pieces cover the text exactly ("".join(pretokenize(t)) == t) and BPE never merges across them.
    Example: "I'll go  now!" -> ["I", "'ll", " go", " ", " now", "!"].
    """
    return _PRETOKEN.findall(text)


def split_on_special(text: str, special_tokens: Sequence[str]) -> list[str]:
    """Cut `text` around every occurrence of a special token; the special tokens stay as pieces of their own.

    Scanning left to right, the leftmost occurrence of any special token is cut out first; when several special
    tokens match at that position the longest wins. The result is the non-empty pieces in order, so
    "".join(result) == text, and a piece is a special token exactly when it equals one of `special_tokens`.
    No special tokens (or an empty text) gives [text] (or []).

    split_on_special("a<|endoftext|>b", ["<|endoftext|>"]) -> ["a", "<|endoftext|>", "b"]
    """
    raise NotImplementedError("stage 08 (byte-level BPE): split_on_special")


def count_pretokens(text: str, special_tokens: Sequence[str] = ()) -> dict[bytes, int]:
    """How often each distinct pre-token occurs, keyed by its UTF-8 bytes.

    The text is first cut with `split_on_special`; special tokens are dropped (they separate documents and are never
    part of a merge), and every other piece is split with `pretokenize`. Training then works on these counts: a
    pre-token that occurs 1,000 times is stored once with multiplicity 1,000.

    count_pretokens("the cat the") -> {b"the": 1, b" cat": 1, b" the": 1}
    """
    raise NotImplementedError("stage 08 (byte-level BPE): count_pretokens")


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of the adjacent `pair` in `ids` by `new_id`, scanning left to right.

    Occurrences are taken greedily from the left and do not overlap: merging (a, a) in [a, a, a] gives
    [new, a]. Returns a new list; `ids` is unchanged. No occurrence gives a copy of `ids`.
    """
    raise NotImplementedError("stage 08 (byte-level BPE): merge_pair")


def train_naive(text: str, vocab_size: int, special_tokens: Sequence[str] = ()) -> list[tuple[int, int]]:
    """The same merges as `train`, computed the slow, obviously right way: recount every pair before every merge.

    Each step counts all adjacent pairs of all pre-tokens (weighted by their multiplicity), takes the winner by the
    rule in `train`'s docstring, and rewrites every pre-token with `merge_pair`. Cost: O(corpus) per merge.
    Same arguments, result and errors as `train`; tests compare the two.
    """
    raise NotImplementedError("stage 08 (byte-level BPE): train_naive")


def train(text: str, vocab_size: int, special_tokens: Sequence[str] = ()) -> list[tuple[int, int]]:
    """Learn BPE merges from `text` until the vocabulary has `vocab_size` tokens; return the merges in order.

    The vocabulary: ids 0..255 are the single bytes; merge r (0-based) makes id 256 + r, whose bytes are the bytes
    of its two parts joined; the special tokens come last (see `Tokenizer`). So at most
    vocab_size - 256 - len(special_tokens) merges are learned; fewer when the corpus runs out of pairs (every
    pre-token already a single token): training then stops early and returns the merges it has.
    vocab_size < 256 + len(special_tokens) raises ValueError naming vocab_size. Special tokens must be distinct,
    non-empty and free of whitespace (else ValueError); in `text` they only separate pre-tokens.

    Each merge takes the adjacent pair (a, b) with the largest count, summed over all pre-tokens of
    `count_pretokens(text, special_tokens)` with their multiplicities (overlapping occurrences both count: [a, a, a]
    holds (a, a) twice). Ties go to the lexicographically greatest pair of byte strings (vocab[a], vocab[b]),
    compared as Python bytes (b"b" > b"a", b"aa" > b"a", and the first string decides before the second).
    The winner is then merged in every pre-token with `merge_pair`.

    Incremental: count the pairs once, keeping pair -> count and pair -> set of pre-tokens that contain it; after a
    merge, only the pre-tokens that contained the pair change: subtract their old pairs, add their new pairs, and
    update the two tables. Do not recount the corpus (that is `train_naive`). A heap of (count, pair) entries whose
    stale entries are skipped on pop finds the winner without scanning every pair.

    Returns [(a, b), ...] as ints: merges[r] = (a, b) means id 256 + r = a followed by b.
    """
    raise NotImplementedError("stage 08 (byte-level BPE): train")


class Tokenizer:
    """Text <-> ids with byte-level BPE: the 256 bytes, the merges in order, then the special tokens."""

    def __init__(self, merges: Sequence[tuple[int, int]], special_tokens: Sequence[str] = ()) -> None:
        """Build the vocabulary from the merges and the special tokens.

        Sets `self.merges` (list of (a, b) int tuples), `self.special_tokens` (list of str) and `self.vocab`,
        a dict id -> bytes: ids 0..255 are the single bytes, id 256 + r is vocab[a] + vocab[b] for
        merges[r] = (a, b), and special token k has id 256 + len(merges) + k (its UTF-8 bytes).
        A merge that uses an id not yet defined (a or b >= 256 + r) raises ValueError naming the merge's index r;
        special tokens must be distinct, non-empty and free of whitespace (else ValueError).
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.__init__")

    @property
    def vocab_size(self) -> int:
        """256 + len(merges) + len(special_tokens)."""
        return len(self.vocab)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """The ids of `text`, a list of ints; every Unicode string (without lone surrogates) round-trips.

        Special tokens: with allow_special=True every occurrence of a special token in `text` (found by
        `split_on_special`: leftmost, then longest) becomes its one id. With allow_special=False (the default) the
        text is all ordinary: "<|endoftext|>" is encoded from its bytes like any other text, so a special id is
        never produced from ordinary text unless the caller allows it.

        Ordinary text is split with `pretokenize`; each pre-token becomes its UTF-8 bytes (ids 0..255), then the
        merges are applied by rank: repeatedly merge (with `merge_pair`) the adjacent pair whose merge was learned
        earliest, until no adjacent pair is a merge. This gives the same tokens as replaying the training merges in
        order; bytes never seen in training simply stay byte tokens. Cache the ids of each pre-token.
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.encode")

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of `ids` (a list or a 1-D integer array): the bytes of every id joined, decoded as UTF-8.

        decode(encode(text)) == text for every string. A sequence cut inside a multi-byte character is not valid
        UTF-8: such bytes become U+FFFD (errors="replace"). An id outside [0, vocab_size) raises ValueError naming it.
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.decode")

    def encode_iterable(self, pieces: Iterable[str], allow_special: bool = False) -> Iterator[int]:
        """Encode a stream of strings lazily, yielding exactly the ids of `encode("".join(pieces), allow_special)`.

        The pieces may be cut anywhere (inside a word, a whitespace run or a special token). Keep a buffer; after
        each piece, find the last safe cut in it: a position p where buffer[p - 1] is not whitespace and
        buffer[p] is (whitespace as the pattern's \\s defines it, e.g. regex `\\S(?=\\s)`, not str.isspace).
        No pre-token spans such a cut and no special token does (they contain no whitespace), so encode
        buffer[:p], yield its ids and keep buffer[p:]. At the end, encode what is left.
        Memory: the buffer holds at most one piece plus the text since the last safe cut.
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.encode_iterable")

    def encode_file(self, path: str, chunk_size: int = 1 << 16, allow_special: bool = False) -> Iterator[int]:
        """Encode a UTF-8 text file as a stream, reading `chunk_size` characters at a time.

        Gives the ids of `encode(open(path, encoding="utf-8", newline="").read(), allow_special)` (newline=""
        keeps "\\r\\n" as it is) without holding the file in memory. Reading characters, not bytes, never cuts a
        multi-byte character; `encode_iterable` takes care of cuts inside words.
        """
        with open(path, encoding="utf-8", newline="") as file:
            yield from self.encode_iterable(iter(lambda: file.read(chunk_size), ""), allow_special)

    def save(self, path: str) -> None:
        """Write the tokenizer to `path` as UTF-8 JSON (the format is in docs/08-bpe.md, "Saving"):

            {"format": "byte-level-bpe", "version": 1, "special_tokens": [...], "merges": [[a, b], ...],
             "vocab": {"<id>": "<hex of its bytes>", ...}}

        "merges" and "special_tokens" define the tokenizer; "vocab" (every id, as a decimal string, to the hex of
        its bytes, e.g. "256": "6161") is there for people to read and for `load` to check.
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.save")

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        """Read a tokenizer written by `save`: Tokenizer.load(p) has the same merges, special tokens, vocab and ids.

        A file that is not this format (another "format" or "version") or whose "vocab" disagrees with the vocabulary
        rebuilt from its merges raises ValueError.
        """
        raise NotImplementedError("stage 08 (byte-level BPE): Tokenizer.load")
