"""Stage 01 helpers shared by the visible and the hidden suite (a helper exists once)."""
from __future__ import annotations

import numpy as np

VALUE_ERROR = {"raised": "ValueError"}  # judged by the harness: the builtin ValueError itself, any wording


def all_contexts(vocab_size: int, order: int) -> list:
    """Every history of an order-`order` model over `vocab_size` tokens, as lists of order - 1 ids, in index order."""
    return [list(c) for c in np.ndindex(*(vocab_size,) * (order - 1))]
