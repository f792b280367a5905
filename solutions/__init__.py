"""The reference implementation: the same modules as exercises/, filled in."""
from . import threads

threads.from_command_line()  # `python -m solutions.train --threads N`: set before any module imports NumPy (threads.py)
