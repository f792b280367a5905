"""Stage 08: byte-level BPE.

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
### BEGIN SOLUTION
# A safe place to cut a stream: between a non-whitespace character and a whitespace one (docs/08-bpe.md, "Streaming").
# (?r) searches from the end, so the first match is the last such place. Same \s as the pattern, not str.isspace.
_LAST_SAFE_CUT = regex.compile(r"(?r)\S(?=\s)")
_CACHE_LIMIT = 1 << 16  # pre-tokens remembered by a Tokenizer; cleared when full so a stream's memory stays bounded
### END SOLUTION


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
    ### BEGIN SOLUTION
    if not special_tokens:
        return [text] if text else []
    longest_first = sorted(special_tokens, key=len, reverse=True)  # an alternation tries its options in order
    pattern = "(" + "|".join(regex.escape(token) for token in longest_first) + ")"
    return [piece for piece in regex.split(pattern, text) if piece]
    ### END SOLUTION


def count_pretokens(text: str, special_tokens: Sequence[str] = ()) -> dict[bytes, int]:
    """How often each distinct pre-token occurs, keyed by its UTF-8 bytes.

    The text is first cut with `split_on_special`; special tokens are dropped (they separate documents and are never
    part of a merge), and every other piece is split with `pretokenize`. Training then works on these counts: a
    pre-token that occurs 1,000 times is stored once with multiplicity 1,000.

    count_pretokens("the cat the") -> {b"the": 1, b" cat": 1, b" the": 1}
    """
    ### BEGIN SOLUTION
    specials = set(special_tokens)
    counts: Counter[bytes] = Counter()
    for piece in split_on_special(text, special_tokens):
        if piece not in specials:
            counts.update(word.encode("utf-8") for word in pretokenize(piece))
    return dict(counts)
    ### END SOLUTION


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of the adjacent `pair` in `ids` by `new_id`, scanning left to right.

    Occurrences are taken greedily from the left and do not overlap: merging (a, a) in [a, a, a] gives
    [new, a]. Returns a new list; `ids` is unchanged. No occurrence gives a copy of `ids`.
    """
    ### BEGIN SOLUTION
    first, second = pair
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == first and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged
    ### END SOLUTION


### BEGIN SOLUTION
def _number_of_merges(vocab_size: int, special_tokens: Sequence[str]) -> int:
    _check_special_tokens(special_tokens)
    smallest = 256 + len(special_tokens)
    if vocab_size < smallest:
        raise ValueError(f"vocab_size {vocab_size} is too small: the 256 byte tokens and {len(special_tokens)} "
                         f"special tokens need vocab_size >= {smallest}")
    return vocab_size - smallest


def _check_special_tokens(special_tokens: Sequence[str]) -> None:
    if isinstance(special_tokens, str):
        raise ValueError(f"special_tokens must be a sequence of strings, got the string {special_tokens!r}")
    for token in special_tokens:
        if not isinstance(token, str) or not token or regex.search(r"\s", token):
            raise ValueError(f"special token {token!r} must be a non-empty string without whitespace")
    duplicated = sorted(token for token, count in Counter(special_tokens).items() if count > 1)
    if duplicated:
        raise ValueError(f"special tokens must be distinct; repeated: {duplicated}")


def _descending(token: bytes) -> tuple[int, ...]:
    """A key whose ascending order is the descending order of byte strings (so a min-heap pops the greatest).

    A differing byte c becomes 255 - c; the end of the string becomes 256, above any byte, so a prefix sorts after
    the longer string, as b"a" < b"aa" requires.
    """
    return tuple(255 - byte for byte in token) + (256,)
### END SOLUTION


def train_naive(text: str, vocab_size: int, special_tokens: Sequence[str] = ()) -> list[tuple[int, int]]:
    """The same merges as `train`, computed the slow, obviously right way: recount every pair before every merge.

    Each step counts all adjacent pairs of all pre-tokens (weighted by their multiplicity), takes the winner by the
    rule in `train`'s docstring, and rewrites every pre-token with `merge_pair`. Cost: O(corpus) per merge.
    Same arguments, result and errors as `train`; tests compare the two.
    """
    ### BEGIN SOLUTION
    n_merges = _number_of_merges(vocab_size, special_tokens)
    counts = count_pretokens(text, special_tokens)
    words = [list(word) for word in counts]  # each distinct pre-token as a list of byte ids
    frequencies = list(counts.values())
    vocab = [bytes([byte]) for byte in range(256)]
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        pair_counts: Counter[tuple[int, int]] = Counter()
        for word, frequency in zip(words, frequencies):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += frequency
        if not pair_counts:
            break  # every pre-token is a single token: nothing left to merge
        best = max(pair_counts, key=lambda pair: (pair_counts[pair], vocab[pair[0]], vocab[pair[1]]))
        new_id = 256 + len(merges)
        words = [merge_pair(word, best, new_id) for word in words]
        merges.append(best)
        vocab.append(vocab[best[0]] + vocab[best[1]])
    return merges
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    n_merges = _number_of_merges(vocab_size, special_tokens)
    counts = count_pretokens(text, special_tokens)
    words = [list(word) for word in counts]  # each distinct pre-token as a list of byte ids
    frequencies = list(counts.values())
    vocab = [bytes([byte]) for byte in range(256)]
    keys = [_descending(token) for token in vocab]  # keys[id]: tie-break key of vocab[id]

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    holders: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of the words that contain it
    for index, (word, frequency) in enumerate(zip(words, frequencies)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += frequency
            holders[pair].add(index)
    # Min-heap: the largest count first, then the greatest byte pair. An entry is stale once its count is not the
    # pair's current count; every change pushes a fresh entry, so the first valid entry popped is the winner.
    heap = [(-count, keys[a], keys[b], (a, b)) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and heap:
        negative_count, _, _, best = heapq.heappop(heap)
        if pair_counts.get(best, 0) != -negative_count:
            continue  # stale
        new_id = 256 + len(merges)
        merges.append(best)
        vocab.append(vocab[best[0]] + vocab[best[1]])
        keys.append(_descending(vocab[-1]))

        changed: dict[tuple[int, int], int] = defaultdict(int)  # pair -> change of its count in this merge
        for index in holders.pop(best):
            word, frequency = words[index], frequencies[index]
            merged = merge_pair(word, best, new_id)
            for pair in zip(word, word[1:]):
                changed[pair] -= frequency
            for pair in zip(merged, merged[1:]):
                changed[pair] += frequency
                holders[pair].add(index)  # words that lost a pair stay listed: merging them later is a no-op
            words[index] = merged
        for pair, change in changed.items():
            if change == 0:
                continue
            count = pair_counts[pair] + change
            if count > 0:
                pair_counts[pair] = count
                heapq.heappush(heap, (-count, keys[pair[0]], keys[pair[1]], pair))
            else:
                del pair_counts[pair]
                holders.pop(pair, None)
    return merges
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        _check_special_tokens(special_tokens)
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.special_tokens = list(special_tokens)
        self.vocab = {byte: bytes([byte]) for byte in range(256)}
        for rank, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + rank and 0 <= b < 256 + rank):
                raise ValueError(f"merge {rank} = ({a}, {b}) uses an id that does not exist before it "
                                 f"(ids so far: 0..{256 + rank - 1})")
            self.vocab[256 + rank] = self.vocab[a] + self.vocab[b]
        self.special_ids = {token: 256 + len(self.merges) + k for k, token in enumerate(self.special_tokens)}
        for token, token_id in self.special_ids.items():
            self.vocab[token_id] = token.encode("utf-8")
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}  # pair -> rank, lower merges first
        self._cache: dict[str, list[int]] = {}  # pre-token -> its ids
        ### END SOLUTION

    @property
    def vocab_size(self) -> int:
        """256 + len(merges) + len(special_tokens)."""
        return len(self.vocab)

    ### BEGIN SOLUTION
    def _encode_pretoken(self, word: str) -> list[int]:
        """The ids of one pre-token: its bytes, then merges by rank until no adjacent pair is a merge."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids = list(word.encode("utf-8"))
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda pair: self._ranks.get(pair, len(self._ranks)))
            rank = self._ranks.get(best)
            if rank is None:
                break  # no adjacent pair is a merge
            ids = merge_pair(ids, best, 256 + rank)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids
    ### END SOLUTION

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
        ### BEGIN SOLUTION
        ids: list[int] = []
        pieces = split_on_special(text, self.special_tokens) if allow_special else [text]
        for piece in pieces:
            if allow_special and piece in self.special_ids:
                ids.append(self.special_ids[piece])
                continue
            for word in pretokenize(piece):
                ids.extend(self._encode_pretoken(word))
        return ids
        ### END SOLUTION

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of `ids` (a list or a 1-D integer array): the bytes of every id joined, decoded as UTF-8.

        decode(encode(text)) == text for every string. A sequence cut inside a multi-byte character is not valid
        UTF-8: such bytes become U+FFFD (errors="replace"). An id outside [0, vocab_size) raises ValueError naming it.
        """
        ### BEGIN SOLUTION
        parts = []
        for token in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if token not in self.vocab:
                raise ValueError(f"id {token} is outside the vocabulary [0, {self.vocab_size})")
            parts.append(self.vocab[token])
        return b"".join(parts).decode("utf-8", errors="replace")
        ### END SOLUTION

    def encode_iterable(self, pieces: Iterable[str], allow_special: bool = False) -> Iterator[int]:
        """Encode a stream of strings lazily, yielding exactly the ids of `encode("".join(pieces), allow_special)`.

        The pieces may be cut anywhere (inside a word, a whitespace run or a special token). Keep a buffer; after
        each piece, find the last safe cut in it: a position p where buffer[p - 1] is not whitespace and
        buffer[p] is (whitespace as the pattern's \\s defines it, e.g. regex `\\S(?=\\s)`, not str.isspace).
        No pre-token spans such a cut and no special token does (they contain no whitespace), so encode
        buffer[:p], yield its ids and keep buffer[p:]. At the end, encode what is left.
        Memory: the buffer holds at most one piece plus the text since the last safe cut.
        """
        ### BEGIN SOLUTION
        buffer = ""
        for piece in pieces:
            buffer += piece
            cut = _LAST_SAFE_CUT.search(buffer)
            if cut is not None:
                yield from self.encode(buffer[: cut.end()], allow_special)
                buffer = buffer[cut.end():]
        yield from self.encode(buffer, allow_special)
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        data = {"format": "byte-level-bpe", "version": 1, "special_tokens": self.special_tokens,
                "merges": [[a, b] for a, b in self.merges],
                "vocab": {str(token): piece.hex() for token, piece in sorted(self.vocab.items())}}
        with open(path, "w", encoding="utf-8") as file:
            json.dump(data, file, ensure_ascii=False, indent=1)
        ### END SOLUTION

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        """Read a tokenizer written by `save`: Tokenizer.load(p) has the same merges, special tokens, vocab and ids.

        A file that is not this format (another "format" or "version") or whose "vocab" disagrees with the vocabulary
        rebuilt from its merges raises ValueError.
        """
        ### BEGIN SOLUTION
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if not isinstance(data, dict) or data.get("format") != "byte-level-bpe" or data.get("version") != 1:
            raise ValueError(f"{path} is not a byte-level BPE tokenizer file (format 'byte-level-bpe', version 1)")
        tokenizer = cls([tuple(pair) for pair in data["merges"]], data["special_tokens"])
        saved = {int(token): bytes.fromhex(piece) for token, piece in data.get("vocab", {}).items()}
        if saved and saved != tokenizer.vocab:
            raise ValueError(f"{path}: the saved vocab disagrees with the vocabulary rebuilt from the merges")
        return tokenizer
        ### END SOLUTION
