"""The reference implementation: the same modules as exercises/, filled in."""
