"""Stage 01: n-gram language models.

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
        ### BEGIN SOLUTION
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        self.vocab = sorted(set(text))
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        ### END SOLUTION

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters, V."""
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of `text`: shape (len(text),), dtype int64 ('' gives an empty array).

        A character that is not in the vocabulary raises ValueError whose message names the character as
        `repr(ch)` (e.g. 'z') and its index in `text` as `position i`, e.g. "unknown character 'z' at position 3".
        """
        ### BEGIN SOLUTION
        ids = np.empty(len(text), dtype=np.int64)  # (len(text),)
        for position, ch in enumerate(text):
            if ch not in self.stoi:
                raise ValueError(f"unknown character {ch!r} at position {position}: not in the vocabulary "
                                 f"of {self.vocab_size} characters")
            ids[position] = self.stoi[ch]
        return ids
        ### END SOLUTION

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of a sequence of ids (a list or a 1-D integer array); the inverse of `encode`.

        An id outside [0, V) raises ValueError naming the id (a negative id must not wrap around to the end).
        """
        ### BEGIN SOLUTION
        chars = []
        for token in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"id {token} is outside the vocabulary [0, {self.vocab_size})")
            chars.append(self.vocab[token])
        return "".join(chars)
        ### END SOLUTION


def train_val_split(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token sequence into a training head and a validation tail: (tokens[:n_train], tokens[n_train:]).

    n_val = round(val_fraction * len(tokens)) (Python's round) and n_train = len(tokens) - n_val.
    The split is contiguous and cannot leak: every position of the validation range comes after every position of the
    training range, no position is in both, and concatenating the two gives back `tokens`. (A random split of
    positions would leak: the model would have counted the very n-grams it is validated on.)

    tokens: (N,) ids. val_fraction must be in (0, 1), and both parts must be non-empty; otherwise ValueError.
    """
    ### BEGIN SOLUTION
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = round(val_fraction * len(tokens))
    n_train = len(tokens) - n_val
    if n_val < 1 or n_train < 1:
        raise ValueError(f"val_fraction {val_fraction} of {len(tokens)} tokens leaves {n_train} for training and "
                         f"{n_val} for validation; both must be at least 1")
    return tokens[:n_train], tokens[n_train:]
    ### END SOLUTION


def ngram_counts(tokens: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """How often each n-gram occurs in `tokens`: counts[t_1, ..., t_n] = #{i : tokens[i:i+n] == (t_1, ..., t_n)}.

    Every window of n consecutive tokens is counted once, so the counts sum to len(tokens) - n + 1 (0 if shorter).
    Vectorized: build all windows at once and add them into the table with np.add.at (or np.bincount on the
    flattened index); no Python loop over the corpus.

    tokens: (N,) ints in [0, V)  ->  (V,)*n int64. Memory: V**n * 8 bytes (V=65: 34 KB at n=2, 2.2 MB at n=3,
    143 MB at n=4), so a dense table is for small V and n <= 4.
    """
    ### BEGIN SOLUTION
    tokens = np.asarray(tokens, dtype=np.int64)
    shape = (vocab_size,) * n
    if len(tokens) < n:
        return np.zeros(shape, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(tokens, n)  # (N-n+1, n)
    flat = np.ravel_multi_index(tuple(windows.T), shape)  # (N-n+1,) one integer per n-gram
    return np.bincount(flat, minlength=vocab_size**n).reshape(shape)
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        if int(order) != order or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order}")
        if int(vocab_size) != vocab_size or vocab_size < 1:
            raise ValueError(f"vocab_size must be an integer >= 1, got {vocab_size}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if lambdas is None:
            lambdas = [0.0] * (order - 1) + [1.0]
        lambdas = np.asarray(lambdas, dtype=np.float64).reshape(-1)
        if len(lambdas) != order:
            raise ValueError(f"expected {order} interpolation weights (one per order 1..{order}), "
                             f"got {len(lambdas)}")
        if np.any(lambdas < 0):
            raise ValueError(f"interpolation weights must be >= 0, got {lambdas.tolist()}")
        if abs(lambdas.sum() - 1.0) > 1e-9:
            raise ValueError(f"interpolation weights must sum to 1, they sum to {lambdas.sum():.12g}")
        self.order = int(order)
        self.vocab_size = int(vocab_size)
        self.alpha = float(alpha)
        self.lambdas = lambdas  # (n,)
        self.counts: list[np.ndarray] = []
        ### END SOLUTION

    def fit(self, tokens: np.ndarray) -> NGramModel:
        """Count the k-grams of `tokens` for every order k = 1..n; return self.

        Sets `self.counts`, a list of n tables: counts[k-1] = ngram_counts(tokens, k, V), shape (V,)*k. Fitting
        again replaces the counts. A token outside [0, V) raises ValueError naming it (a negative id would
        otherwise wrap around silently and count as the last character).
        """
        ### BEGIN SOLUTION
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        outside = (tokens < 0) | (tokens >= self.vocab_size)
        if outside.any():
            position = int(np.argmax(outside))
            raise ValueError(f"token {tokens[position]} at position {position} is outside the vocabulary "
                             f"[0, {self.vocab_size})")
        self.counts = [ngram_counts(tokens, k, self.vocab_size) for k in range(1, self.order + 1)]
        return self
        ### END SOLUTION

    def distribution(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """P(next = w | context) for every w: shape (V,), float64, sums to 1.

        Only the last n-1 tokens of `context` matter; a shorter context raises ValueError. For each order k the
        history h is the last k-1 of them and

            P_k(w | h) = (c_k(h, w) + alpha) / (sum_w' c_k(h, w') + alpha * V)

        with c_k = counts[k-1]. When the denominator is 0 (alpha = 0 and h never seen followed by anything) P_k is
        uniform, 1/V. The result mixes the orders: P(w | context) = sum_k lambdas[k-1] * P_k(w | h_k).
        """
        ### BEGIN SOLUTION
        context = np.asarray(context, dtype=np.int64).reshape(-1)
        if len(context) < self.order - 1:
            raise ValueError(f"an order-{self.order} model needs at least {self.order - 1} context tokens, "
                             f"got {len(context)}")
        mixed = np.zeros(self.vocab_size)  # (V,)
        for k, weight in enumerate(self.lambdas, start=1):
            history = tuple(context[len(context) - (k - 1):].tolist())  # the last k-1 tokens
            row = self.counts[k - 1][history] + self.alpha  # (V,)
            total = row.sum()
            mixed += weight * (row / total if total > 0 else np.full(self.vocab_size, 1.0 / self.vocab_size))
        return mixed
        ### END SOLUTION

    def prob(self, context: Sequence[int] | np.ndarray, token: int) -> float:
        """P(next = token | context), as a Python float: distribution(context)[token]."""
        ### BEGIN SOLUTION
        return float(self.distribution(context)[token])
        ### END SOLUTION

    def log_likelihood(self, tokens: np.ndarray) -> float:
        """sum_{i = n-1}^{N-1} ln P(tokens[i] | tokens[i-n+1 : i]), in nats (natural log).

        The start convention: the first n-1 tokens are context only and are not scored, so N - n + 1 tokens are
        scored, each with its full context. Fewer than n tokens raises ValueError. A token of probability 0 gives
        -inf (an unsmoothed model meeting an unseen n-gram).
        """
        ### BEGIN SOLUTION
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        n, V = self.order, self.vocab_size
        if len(tokens) < n:
            raise ValueError(f"an order-{n} model scores sequences of at least {n} tokens, got {len(tokens)}")
        windows = np.lib.stride_tricks.sliding_window_view(tokens, n)  # (M, n), M = N-n+1 scored positions
        probs = np.zeros(len(windows))  # (M,)
        for k, weight in enumerate(self.lambdas, start=1):
            grams = windows[:, n - k:]  # (M, k): the last k tokens of each window
            counts = self.counts[k - 1][tuple(grams.T)] + self.alpha  # (M,) c_k(h, w) + alpha
            totals = self.counts[k - 1].sum(axis=-1)[tuple(grams[:, :-1].T)] + self.alpha * V  # (M,)
            safe = np.where(totals > 0, totals, 1.0)  # unseen history: uniform instead of 0/0
            probs += weight * np.where(totals > 0, counts / safe, 1.0 / V)
        with np.errstate(divide="ignore"):
            return float(np.log(probs).sum())
        ### END SOLUTION

    def cross_entropy(self, tokens: np.ndarray) -> float:
        """Average negative log-likelihood per scored token, in nats: -log_likelihood(tokens) / (N - n + 1)."""
        ### BEGIN SOLUTION
        tokens = np.asarray(tokens).reshape(-1)
        return -self.log_likelihood(tokens) / (len(tokens) - self.order + 1)
        ### END SOLUTION

    def perplexity(self, tokens: np.ndarray) -> float:
        """exp(cross_entropy): the size of a uniform choice that would be as surprised (V for a uniform model)."""
        ### BEGIN SOLUTION
        return float(np.exp(self.cross_entropy(tokens)))
        ### END SOLUTION

    def bits_per_char(self, tokens: np.ndarray) -> float:
        """Cross-entropy in bits per token, which is per character for a character tokenizer: nats / ln 2."""
        ### BEGIN SOLUTION
        return self.cross_entropy(tokens) / np.log(2.0)
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        history = list(np.asarray(context, dtype=np.int64).reshape(-1).tolist())
        if len(history) < self.order - 1:
            raise ValueError(f"an order-{self.order} model needs at least {self.order - 1} context tokens, "
                             f"got {len(history)}")
        out = np.empty(length, dtype=np.int64)  # (length,)
        for i in range(length):
            p = self.distribution(history[len(history) - (self.order - 1):])  # (V,)
            if temperature == 0:
                token = int(np.argmax(p))
            else:
                with np.errstate(divide="ignore"):
                    logits = np.log(p)  # (V,) -inf where p == 0
                q = np.exp((logits - logits.max()) / temperature)  # (V,) the largest becomes exactly 1
                token = int(rng.choice(self.vocab_size, p=q / q.sum()))
            out[i] = token
            history.append(token)
        return out
        ### END SOLUTION
