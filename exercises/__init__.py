"""Your package: one module per stage. Each stub raises NotImplementedError naming its stage; replace the bodies."""
