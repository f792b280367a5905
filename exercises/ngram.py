"""Stage 01: n-gram language models (your turn: replace every NotImplementedError).

A character tokenizer, a leak-free train/validation split, and an n-gram model of any order with add-alpha smoothing
and interpolation with lower orders; scored in nats, perplexity and bits per character, and sampled with a temperature.
The derivations and conventions are in docs/01-ngram.md.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class CharTokenizer:
    """Characters <-> integer ids, with the vocabulary read from a text."""

    def __init__(self, text: str) -> None:
        """Build the vocabulary: the distinct characters of `text`, sorted by code point (`sorted(set(text))`).

        Sets `self.vocab` (list of the characters; id i is `self.vocab[i]`) and `self.stoi` (dict character -> id).
        An empty text has no vocabulary: raise ValueError.
        """
        raise NotImplementedError("stage 01 (n-gram language models): CharTokenizer.__init__")

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters, V."""
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of `text`: shape (len(text),), dtype int64 ('' gives an empty array).

        A character that is not in the vocabulary raises ValueError whose message names the character as
        `repr(ch)` (e.g. 'z') and its index in `text` as `position i`, e.g. "unknown character 'z' at position 3".
        """
        raise NotImplementedError("stage 01 (n-gram language models): CharTokenizer.encode")

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of a sequence of ids (a list or a 1-D integer array); the inverse of `encode`.

        An id outside [0, V) raises ValueError naming the id (a negative id must not wrap around to the end).
        """
        raise NotImplementedError("stage 01 (n-gram language models): CharTokenizer.decode")


def train_val_split(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token sequence into a training head and a validation tail: (tokens[:n_train], tokens[n_train:]).

    n_val = round(val_fraction * len(tokens)) (Python's round) and n_train = len(tokens) - n_val.
    The split is contiguous and cannot leak: every position of the validation range comes after every position of the
    training range, no position is in both, and concatenating the two gives back `tokens`. (A random split of
    positions would leak: the model would have counted the very n-grams it is validated on.)

    tokens: (N,) ids. val_fraction must be in (0, 1), and both parts must be non-empty; otherwise ValueError.
    """
    raise NotImplementedError("stage 01 (n-gram language models): train_val_split")


def ngram_counts(tokens: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """How often each n-gram occurs in `tokens`: counts[t_1, ..., t_n] = #{i : tokens[i:i+n] == (t_1, ..., t_n)}.

    Every window of n consecutive tokens is counted once, so the counts sum to len(tokens) - n + 1 (0 if shorter).
    Vectorized: build all windows at once and add them into the table with np.add.at (or np.bincount on the
    flattened index); no Python loop over the corpus.

    tokens: (N,) ints in [0, V)  ->  (V,)*n int64. Memory: V**n * 8 bytes (V=65: 34 KB at n=2, 2.2 MB at n=3,
    143 MB at n=4), so a dense table is for small V and n <= 4.
    """
    raise NotImplementedError("stage 01 (n-gram language models): ngram_counts")


class NGramModel:
    """P(next token | previous order-1 tokens), from counts, add-alpha smoothing and interpolation with lower orders."""

    def __init__(self, order: int, vocab_size: int, alpha: float = 0.0,
                 lambdas: Sequence[float] | None = None) -> None:
        """Store and validate the hyperparameters; the model has no counts until `fit`.

        order       n >= 1: the next token depends on the previous n-1 (order 1 = unigram, 2 = bigram, ...).
        vocab_size  V >= 1.
        alpha       add-alpha pseudo-count >= 0, added to every count of every order (0 = maximum likelihood).
        lambdas     Jelinek-Mercer weights, one per order: lambdas[k-1] weighs the order-k model, k = 1..n.
                    Each >= 0 and together they sum to 1 (within 1e-9). None means (0, ..., 0, 1): the order-n model
                    alone. Stored as `self.lambdas`, a float64 array of shape (n,).

        Anything invalid raises ValueError saying what is wrong (for lambdas: how many weights were expected and
        how many came, which one is negative, or what they sum to).
        """
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.__init__")

    def fit(self, tokens: np.ndarray) -> NGramModel:
        """Count the k-grams of `tokens` for every order k = 1..n; return self.

        Sets `self.counts`, a list of n tables: counts[k-1] = ngram_counts(tokens, k, V), shape (V,)*k. Fitting
        again replaces the counts. A token outside [0, V) raises ValueError naming it (a negative id would
        otherwise wrap around silently and count as the last character).
        """
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.fit")

    def distribution(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """P(next = w | context) for every w: shape (V,), float64, sums to 1.

        Only the last n-1 tokens of `context` matter; a shorter context raises ValueError. For each order k the
        history h is the last k-1 of them and

            P_k(w | h) = (c_k(h, w) + alpha) / (sum_w' c_k(h, w') + alpha * V)

        with c_k = counts[k-1]. When the denominator is 0 (alpha = 0 and h never seen followed by anything) P_k is
        uniform, 1/V. The result mixes the orders: P(w | context) = sum_k lambdas[k-1] * P_k(w | h_k).
        """
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.distribution")

    def prob(self, context: Sequence[int] | np.ndarray, token: int) -> float:
        """P(next = token | context), as a Python float: distribution(context)[token]."""
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.prob")

    def log_likelihood(self, tokens: np.ndarray) -> float:
        """sum_{i = n-1}^{N-1} ln P(tokens[i] | tokens[i-n+1 : i]), in nats (natural log).

        The start convention: the first n-1 tokens are context only and are not scored, so N - n + 1 tokens are
        scored, each with its full context. Fewer than n tokens raises ValueError. A token of probability 0 gives
        -inf (an unsmoothed model meeting an unseen n-gram).
        """
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.log_likelihood")

    def cross_entropy(self, tokens: np.ndarray) -> float:
        """Average negative log-likelihood per scored token, in nats: -log_likelihood(tokens) / (N - n + 1)."""
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.cross_entropy")

    def perplexity(self, tokens: np.ndarray) -> float:
        """exp(cross_entropy): the size of a uniform choice that would be as surprised (V for a uniform model)."""
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.perplexity")

    def bits_per_char(self, tokens: np.ndarray) -> float:
        """Cross-entropy in bits per token, which is per character for a character tokenizer: nats / ln 2."""
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.bits_per_char")

    def sample(self, context: Sequence[int] | np.ndarray, length: int, rng: np.random.Generator,
               temperature: float = 1.0) -> np.ndarray:
        """Generate `length` new tokens after `context` (which needs at least n-1 tokens); return only the new ones.

        Each step: p = distribution(last n-1 tokens of context + tokens generated so far), then
            temperature == 0: the next token is np.argmax(p) (greedy; the lowest id wins a tie; rng unused);
            temperature > 0:  q ∝ p ** (1 / temperature), computed as exp((ln p - max ln p) / temperature) so
                              that small temperatures do not underflow to 0/0 (zero-probability tokens stay 0),
                              and the next token is rng.choice(V, p=q): one call per token, so a seed fixes the text.
        temperature < 0 raises ValueError. Returns shape (length,), int64.
        """
        raise NotImplementedError("stage 01 (n-gram language models): NGramModel.sample")
