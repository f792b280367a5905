"""Your package: one module per stage. Each stub raises NotImplementedError naming its stage; replace the bodies."""
from . import threads

threads.from_command_line()  # `python -m exercises.train --threads N`: set before any module imports NumPy (threads.py)
