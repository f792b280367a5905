"""Stage 08 helpers shared by the visible and the hidden suite (a helper exists once)."""
from __future__ import annotations

import numpy as np

EOT = "<|endoftext|>"

# Multi-byte characters (2, 3 and 4 bytes), emoji with a skin tone and a zero-width joiner, combining marks, and
# whitespace of every kind, so that round trips and streaming meet every awkward case.
ALPHABET = ["a", "b", "e", "s", "t", " ", " ", "  ", "\n", "\t", "\r\n", "é", "ß", "中", "文", "😀", "👍🏽", "👩‍💻",
            "e\u0301", "n\u0303", "\u00a0", "\u3000", "'s", "'ll", "7", "42", "!", "?!", ".", "𝔸", "한"]


def random_string(rng: np.random.Generator, length: int, alphabet: list = ALPHABET) -> str:
    return "".join(rng.choice(alphabet, size=length).tolist())


def merges_as_lists(merges) -> list:
    """A tokenizer's merges as plain [[a, b], ...] with Python ints (tuples and NumPy ints do not cross as data)."""
    return [[int(a), int(b)] for a, b in merges]
